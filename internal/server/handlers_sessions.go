package server

import (
	"bytes"
	"errors"
	"net/http"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

func (s *Server) createSession(c *call) {
	var req api.CreateSessionRequest
	if !c.decode(&req) {
		return
	}
	if !c.valid(api.ValidateHeartbeatTimeout(req.HeartbeatTimeout), api.ValidateMetadata("metadata", req.Metadata)) {
		return
	}
	// Version 1 UUIDs cannot fail to generate (uuid v1.6.0 has no error
	// path left in NewUUID).
	token := uuid.Must(uuid.NewUUID())
	id, err := s.store.CreateSession(c.r.Context(), c.tenant, store.NewSession{
		HeartbeatTimeout: req.HeartbeatTimeout,
		Metadata:         req.Metadata,
		Token:            token,
	})
	if err != nil {
		c.storeFault(err, "create the session", "Session", "")
		return
	}
	s.log.Debug("session created", zap.String("tenant", c.tenant), zap.String("session_id", id),
		zap.Int("heartbeat_timeout", req.HeartbeatTimeout))
	c.created(c.tenantURL("/sessions/"+id), api.HeartbeatToken{Token: token.String()})
}

func (s *Server) getSession(c *call, id string) {
	v, err := s.store.Session(c.r.Context(), c.tenant, id)
	getOne(c, v, err, "Session", id)
}

// getOne answers a GET of one object (its id already checked by
// routeItem) that the store returned as v or err.
func getOne[T any](c *call, v T, err error, kind, id string) {
	if err != nil {
		c.storeFault(err, "read the "+kind, kind, id)
		return
	}
	c.json(http.StatusOK, v)
}

// listOf answers a GET of a list: all is every item as the store returned
// it (or err), and the page asked for is cut out of them sorted by id.
func listOf[T any](c *call, all []T, err error, what string, id func(T) string) {
	p, ok := c.pageParams()
	if !ok {
		return
	}
	if err != nil {
		c.storeFault(err, "list the "+what, "", "")
		return
	}
	sortByID(all, id)
	values, next := paginate(all, id, p)
	listReply(c, values, p, next)
}

func (s *Server) listSessions(c *call) {
	all, err := s.store.Sessions(c.r.Context(), c.tenant)
	listOf(c, all, err, "sessions", func(v api.Session) string { return v.ID })
}

func (s *Server) updateSession(c *call, id string) {
	var req api.UpdateSessionRequest
	if !c.decode(&req) {
		return
	}
	var timeoutErr error
	if req.HeartbeatTimeout != nil {
		timeoutErr = api.ValidateHeartbeatTimeout(*req.HeartbeatTimeout)
	}
	if !c.valid(timeoutErr, api.ValidateMetadata("metadata", req.Metadata)) {
		return
	}
	err := s.store.UpdateSession(c.r.Context(), c.tenant, id, store.SessionUpdate{HeartbeatTimeout: req.HeartbeatTimeout, Metadata: req.Metadata})
	if err != nil {
		c.storeFault(err, "update the session", "Session", id)
		return
	}
	c.updated(c.tenantURL("/sessions/" + id))
}

func (s *Server) deleteSession(c *call, id string) {
	if err := s.store.DeleteSession(c.r.Context(), c.tenant, id); err != nil {
		c.storeFault(err, "delete the session", "Session", id)
		return
	}
	s.log.Debug("session deleted", zap.String("tenant", c.tenant), zap.String("session_id", id))
	c.noContent()
}

// heartbeat advances the session's token chain (store.Chain.Advance): the
// current token returns a new one and becomes the previous one; the
// previous token (a retry whose reply was lost) gets the same reply again;
// anything else is 400.
func (s *Server) heartbeat(c *call, id string) {
	body, ok := c.body()
	if !ok {
		return
	}
	req, ok := fastHeartbeatToken(body)
	if !ok && !c.unmarshal(body, &req) {
		return
	}
	if req.Token == "" {
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Validation error", "token is required: send the token of the previous heartbeat (or of the session's creation)")
		return
	}
	got, err := uuid.Parse(req.Token)
	if err != nil {
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Validation error", "token must be a UUID, got "+quote(req.Token))
		return
	}
	reply, err := s.store.Heartbeat(c.r.Context(), c.tenant, id, got, uuid.Must(uuid.NewUUID()))
	if errors.Is(err, store.ErrTokenMismatch) {
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Invalid heartbeat token",
			"token "+quote(req.Token)+" is neither the current token of session "+id+
				" nor the previous one; heartbeats must chain: send the token returned by the last heartbeat")
		return
	}
	if err != nil {
		c.storeFault(err, "heartbeat the session", "Session", id)
		return
	}
	s.metrics.heartbeats.Inc()
	c.json(http.StatusOK, api.HeartbeatToken{Token: reply.String()})
}

// fastHeartbeatToken decodes the body every client sends,
// {"token":"<uuid>"} with no spaces, without encoding/json, which was a
// sixth of the server's CPU per heartbeat. Anything else returns false and
// goes through encoding/json.
func fastHeartbeatToken(body []byte) (api.HeartbeatToken, bool) {
	const prefix, suffix = `{"token":"`, `"}`
	if len(body) != len(prefix)+36+len(suffix) || !bytes.HasPrefix(body, []byte(prefix)) || !bytes.HasSuffix(body, []byte(suffix)) {
		return api.HeartbeatToken{}, false
	}
	tok := body[len(prefix) : len(prefix)+36]
	// Only the bytes a UUID can hold: then JSON has nothing to unescape
	// or replace.
	for _, b := range tok {
		if !('0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F' || b == '-') {
			return api.HeartbeatToken{}, false
		}
	}
	return api.HeartbeatToken{Token: string(tok)}, true
}
