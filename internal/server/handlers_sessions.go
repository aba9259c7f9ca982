package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

const sessionIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newSessionID returns "se" and 8 random alphanumerics, like the hosted
// service's ids (seMkzI0mxC).
func newSessionID() (string, error) {
	b := []byte("se00000000")
	max := big.NewInt(int64(len(sessionIDAlphabet)))
	for i := 2; i < len(b); i++ {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b[i] = sessionIDAlphabet[n.Int64()]
	}
	return string(b), nil
}

func (s *Server) createSession(c *call) {
	var req api.CreateSessionRequest
	if !c.decode(&req) {
		return
	}
	if err := api.ValidateHeartbeatTimeout(req.HeartbeatTimeout); err != nil {
		c.badRequest("Validation error", err)
		return
	}
	if err := api.ValidateMetadata("metadata", req.Metadata); err != nil {
		c.badRequest("Validation error", err)
		return
	}
	token, err := uuid.NewUUID()
	if err != nil {
		c.storeFailed("generate a heartbeat token", err)
		return
	}
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()

	t.mu.Lock()
	n := len(t.sessions)
	var id string
	for id == "" || t.sessions[id] != nil {
		if id, err = newSessionID(); err != nil {
			break
		}
	}
	t.mu.Unlock()
	if err != nil {
		c.storeFailed("generate a session id", err)
		return
	}
	if n >= s.limits.Session {
		c.limitReached("sessions", s.limits.Session)
		return
	}
	sess := &session{
		t:        t,
		id:       id,
		timeout:  int32(req.HeartbeatTimeout),
		created:  time.Now().UnixMilli(),
		metadata: emptyToNil(req.Metadata),
		cur:      token,
	}
	rec := sess.stored()
	err = s.store.commit(c.r.Context(), func(tx *bolt.Tx) error {
		tb, err := writeTenant(tx, t.id)
		if err != nil {
			return err
		}
		return putJSON(tb.sessions, id, rec)
	})
	if err != nil {
		c.storeFailed("create the session", err)
		return
	}
	t.mu.Lock()
	sess.deadline = s.mono() + int64(time.Duration(sess.timeout)*time.Second)
	t.sessions[id] = sess
	s.exp.push(sess)
	t.mu.Unlock()
	s.log.Debug("session created", zap.String("tenant", t.id), zap.String("session_id", id),
		zap.Int("heartbeat_timeout", req.HeartbeatTimeout))
	c.created(c.tenantURL("/sessions/"+id), api.HeartbeatToken{Token: token.String()})
}

func (s *Server) getSession(c *call, id string) {
	getOne(c, "Session", id, api.ValidateSessionID, func(t *tenant) (api.Session, bool) {
		if sess := t.liveSession(id); sess != nil {
			return sess.view(), true
		}
		return api.Session{}, false
	})
}

// getOne answers a GET of one object: 400 for an id that breaks its rule,
// 404 for one that is not there, else the object. lookup runs under the
// tenant's lock and must copy what it returns.
func getOne[T any](c *call, kind, id string, validate func(string) error, lookup func(*tenant) (T, bool)) {
	if err := validate(id); err != nil {
		c.badRequest("Invalid "+strings.ToLower(kind)+" id", err)
		return
	}
	c.t.mu.Lock()
	v, ok := lookup(c.t)
	c.t.mu.Unlock()
	if !ok {
		c.notFound(kind, id)
		return
	}
	c.json(http.StatusOK, v)
}

func (s *Server) listSessions(c *call) {
	p, ok := c.pageParams()
	if !ok {
		return
	}
	t := c.t
	t.mu.Lock()
	all := make([]api.Session, 0, len(t.sessions))
	for _, sess := range t.sessions {
		if !sess.gone {
			all = append(all, sess.view())
		}
	}
	t.mu.Unlock()
	sortByID(all, func(v api.Session) string { return v.ID })
	values, next := paginate(all, func(v api.Session) string { return v.ID }, p)
	listReply(c, values, p, next)
}

func (s *Server) updateSession(c *call, id string) {
	if err := api.ValidateSessionID(id); err != nil {
		c.badRequest("Invalid session id", err)
		return
	}
	var req api.UpdateSessionRequest
	if !c.decode(&req) {
		return
	}
	if req.HeartbeatTimeout != nil {
		if err := api.ValidateHeartbeatTimeout(*req.HeartbeatTimeout); err != nil {
			c.badRequest("Validation error", err)
			return
		}
	}
	if req.Metadata != nil {
		if err := api.ValidateMetadata("metadata", req.Metadata); err != nil {
			c.badRequest("Validation error", err)
			return
		}
	}
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	sess := t.liveSession(id)
	var rec storedSession
	if sess != nil {
		rec = sess.stored()
	}
	t.mu.Unlock()
	if sess == nil {
		c.notFound("Session", id)
		return
	}
	if req.HeartbeatTimeout != nil {
		rec.HeartbeatTimeout = *req.HeartbeatTimeout
	}
	if req.Metadata != nil {
		rec.Metadata = emptyToNil(req.Metadata)
	}
	err := s.store.commit(c.r.Context(), func(tx *bolt.Tx) error {
		tb, err := writeTenant(tx, t.id)
		if err != nil {
			return err
		}
		return putJSON(tb.sessions, id, rec)
	})
	if err != nil {
		c.storeFailed("update the session", err)
		return
	}
	t.mu.Lock()
	if old := int64(sess.timeout); int64(rec.HeartbeatTimeout) != old {
		// The deadline stays "last heartbeat (or creation) + timeout".
		sess.deadline += (int64(rec.HeartbeatTimeout) - old) * int64(time.Second)
		sess.timeout = int32(rec.HeartbeatTimeout)
		if sess.deadline < sess.queued {
			s.exp.push(sess)
		}
	}
	sess.metadata = rec.Metadata
	t.mu.Unlock()
	c.noContent()
}

func (s *Server) deleteSession(c *call, id string) {
	if err := api.ValidateSessionID(id); err != nil {
		c.badRequest("Invalid session id", err)
		return
	}
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	sess := t.liveSession(id)
	var serviceIDs []string
	if sess != nil {
		// Hidden at once: heartbeats get 404 while the removal commits.
		sess.gone = true
		for _, svc := range sess.services {
			serviceIDs = append(serviceIDs, svc.id)
		}
	}
	t.mu.Unlock()
	if sess == nil {
		c.notFound("Session", id)
		return
	}
	err := s.store.commit(c.r.Context(), func(tx *bolt.Tx) error {
		tb, err := writeTenant(tx, t.id)
		if err != nil {
			return err
		}
		if err := tb.sessions.Delete([]byte(id)); err != nil {
			return err
		}
		for _, sid := range serviceIDs {
			if err := tb.services.Delete([]byte(sid)); err != nil {
				return err
			}
		}
		return nil
	})
	t.mu.Lock()
	if err != nil {
		sess.gone = false
		t.mu.Unlock()
		c.storeFailed("delete the session", err)
		return
	}
	delete(t.sessions, id)
	for _, sid := range serviceIDs {
		delete(t.services, sid)
	}
	t.mu.Unlock()
	s.log.Debug("session deleted", zap.String("tenant", t.id), zap.String("session_id", id), zap.Int("services", len(serviceIDs)))
	c.noContent()
}

var errTokenMismatch = errors.New("token mismatch")

// heartbeat advances the session's token chain. It never touches the store:
// that is what lets one server hold 10,000 sessions heartbeating.
//
// The chain: the current token returns a new one and becomes the previous
// one; the previous token (a retry whose reply was lost) gets the same
// reply again; anything else is 400. A session restored from disk has lost
// its chain with the restart, so its first heartbeat accepts any well-formed
// token and starts a new chain from there: refusing it would make every
// client recreate its session and re-register its services after each
// restart, which is exactly what restoring sessions is meant to avoid.
func (s *Server) heartbeat(c *call, id string) {
	if err := api.ValidateSessionID(id); err != nil {
		c.badRequest("Invalid session id", err)
		return
	}
	body, ok := c.body()
	if !ok {
		return
	}
	req, ok := fastHeartbeatToken(body)
	if !ok && len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			c.fault(http.StatusBadRequest, api.FaultBadRequest, "Invalid request body", describeJSONError(err))
			return
		}
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
	next, err := uuid.NewUUID()
	if err != nil {
		c.storeFailed("generate a heartbeat token", err)
		return
	}
	t := c.t
	t.mu.Lock()
	sess := t.liveSession(id)
	if sess == nil {
		t.mu.Unlock()
		c.notFound("Session", id)
		return
	}
	var reply uuid.UUID
	switch {
	case sess.restored || got == sess.cur:
		sess.prev, sess.hasPrev, sess.restored = got, true, false
		sess.cur = next
		reply = next
	case sess.hasPrev && got == sess.prev:
		reply = sess.cur
	default:
		err = errTokenMismatch
	}
	if err == nil {
		sess.lastSeen = time.Now().UnixMilli()
		sess.deadline = s.mono() + int64(time.Duration(sess.timeout)*time.Second)
	}
	t.mu.Unlock()
	if err != nil {
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Invalid heartbeat token",
			"token "+quote(req.Token)+" is neither the current token of session "+id+
				" nor the previous one; heartbeats must chain: send the token returned by the last heartbeat")
		return
	}
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

func quote(s string) string { return `"` + truncate(s) + `"` }
