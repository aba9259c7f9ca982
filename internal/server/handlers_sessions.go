package server

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

const sessionIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newSessionID returns "se" and 8 random alphanumerics, like the hosted
// service's ids (seMkzI0mxC).
func newSessionID() string {
	const n = len(sessionIDAlphabet)
	id := make([]byte, 2, 10)
	copy(id, "se")
	var buf [16]byte
	for len(id) < cap(id) {
		// Cannot fail: since Go 1.24 crypto/rand crashes the program
		// rather than return an error.
		_, _ = rand.Read(buf[:])
		for _, b := range buf {
			// Bytes from the last partial run of the alphabet would make
			// its first letters likelier: skip them.
			if int(b) < 256-256%n && len(id) < cap(id) {
				id = append(id, sessionIDAlphabet[int(b)%n])
			}
		}
	}
	return string(id)
}

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
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()

	t.mu.Lock()
	n := len(t.sessions)
	id := newSessionID()
	for t.sessions[id] != nil {
		id = newSessionID()
	}
	t.mu.Unlock()
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
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
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
	getOne(c, "Session", id, func(t *tenant) (api.Session, bool) {
		if sess := t.liveSession(id); sess != nil {
			return sess.view(), true
		}
		return api.Session{}, false
	})
}

// getOne answers a GET of one object (its id already checked by
// routeItem): 404 when it is not there, else the object. lookup runs under
// the tenant's lock and must copy what it returns.
func getOne[T any](c *call, kind, id string, lookup func(*tenant) (T, bool)) {
	c.t.mu.Lock()
	v, ok := lookup(c.t)
	c.t.mu.Unlock()
	if !ok {
		c.notFound(kind, id)
		return
	}
	c.json(http.StatusOK, v)
}

// listOf answers a GET of a list: collect gathers every item under the
// tenant's lock (copies, not live state), and the page asked for is cut
// out of them sorted by id.
func listOf[T any](c *call, id func(T) string, collect func(*tenant) []T) {
	p, ok := c.pageParams()
	if !ok {
		return
	}
	c.t.mu.Lock()
	all := collect(c.t)
	c.t.mu.Unlock()
	sortByID(all, id)
	values, next := paginate(all, id, p)
	listReply(c, values, p, next)
}

func (s *Server) listSessions(c *call) {
	listOf(c, func(v api.Session) string { return v.ID }, func(t *tenant) []api.Session {
		all := make([]api.Session, 0, len(t.sessions))
		for _, sess := range t.sessions {
			if !sess.gone {
				all = append(all, sess.view())
			}
		}
		return all
	})
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
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
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
	c.updated(c.tenantURL("/sessions/" + id))
}

func (s *Server) deleteSession(c *call, id string) {
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
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
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
	next := uuid.Must(uuid.NewUUID())
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
