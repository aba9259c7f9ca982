package srapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
)

// ErrSessionClosed is returned by the methods of a Session after Close.
// It deliberately does not match registry.ErrSessionLost: a session that
// was ended on purpose must not be recreated.
var ErrSessionClosed = errors.New("session closed")

// Registry is the HTTP backend of the wrapper: registry.Registry on top of
// a Client.
type Registry struct {
	c   *Client
	log *zap.Logger
}

var (
	_ registry.Registry = (*Registry)(nil)
	_ registry.Session  = (*Session)(nil)
)

// New checks cfg (URLs, credentials) and returns a backend. It does no
// I/O: the first call authenticates.
func New(cfg Config) (*Registry, error) {
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Registry{c: c, log: c.log}, nil
}

// Client is the API client underneath, for calls the Registry interface
// does not cover.
func (r *Registry) Client() *Client { return r.c }

// String names the backend: registry URL and username, never the key.
func (r *Registry) String() string { return "srapi " + r.c.String() }

// Close releases idle connections. Sessions are not ended.
func (r *Registry) Close() error { return r.c.Close() }

// CreateSession opens a session whose heartbeat timeout is opts.TTL
// rounded to whole seconds (3..30).
func (r *Registry) CreateSession(ctx context.Context, opts registry.SessionOptions) (registry.Session, error) {
	secs := int((opts.TTL + time.Second/2) / time.Second)
	if err := api.ValidateHeartbeatTimeout(secs); err != nil {
		return nil, fmt.Errorf("create session: %w", mark(registry.ErrPermanent, err))
	}
	if err := opts.ValidateMetadata(); err != nil {
		return nil, fmt.Errorf("create session: %w", mark(registry.ErrPermanent, err))
	}
	id, token, err := r.c.CreateSession(ctx, api.CreateSessionRequest{HeartbeatTimeout: secs, Metadata: opts.Metadata})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", classify(err))
	}
	return &Session{
		r:        r,
		id:       id,
		ttl:      time.Duration(secs) * time.Second,
		token:    token,
		services: map[string]struct{}{},
	}, nil
}

// Session is a session of the HTTP API. It keeps the current heartbeat
// token and the ids of the services registered through it, under a lock:
// its methods are safe for concurrent use, as registry.Session requires
// (Close may end it while a heartbeat is in flight).
type Session struct {
	r   *Registry
	id  string
	ttl time.Duration

	mu       sync.Mutex
	token    string
	services map[string]struct{}
	closed   bool
}

// ID is the server's id of the session.
func (s *Session) ID() string { return s.id }

// TTL is the heartbeat timeout the session was created with.
func (s *Session) TTL() time.Duration { return s.ttl }

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Heartbeat extends the session and advances the token chain. After a
// failure the token stays where it was: if the server did take the beat
// and only the reply was lost, it answers the same token again to a retry.
// A 404 wraps registry.ErrSessionLost, and so does a token the server no
// longer accepts (400 badRequest, e.g. state restored without its tokens):
// the session is then deleted, so that its service id frees up at once
// for the replacement session.
func (s *Session) Heartbeat(ctx context.Context) error {
	s.mu.Lock()
	tok, closed := s.token, s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("heartbeat session %s: %w", s.id, ErrSessionClosed)
	}
	next, err := s.r.c.Heartbeat(ctx, s.id, tok)
	if err != nil {
		switch {
		case IsNotFound(err):
			err = mark(registry.ErrSessionLost, err)
		case StatusCode(err) == http.StatusBadRequest && HasFault(err, api.FaultBadRequest):
			if derr := s.r.c.DeleteSession(ctx, s.id); derr != nil && !IsNotFound(derr) {
				s.r.log.Warn("delete session whose heartbeat token was rejected",
					zap.String("session_id", s.id), zap.Error(derr))
			}
			err = mark(registry.ErrSessionLost, err)
		default:
			err = classify(err)
		}
		return fmt.Errorf("heartbeat session %s: %w", s.id, err)
	}
	s.mu.Lock()
	if s.token == tok {
		s.token = next
	}
	s.mu.Unlock()
	return nil
}

// Register adds a service to the session. When the id is taken, it checks
// whether this very session holds it (a retry whose first reply was lost)
// and then succeeds; otherwise the error wraps registry.ErrServiceExists.
func (s *Session) Register(ctx context.Context, svc registry.Service) error {
	wrap := func(err error) error {
		return fmt.Errorf("register service %q in session %s: %w", svc.ID, s.id, err)
	}
	if s.isClosed() {
		return wrap(ErrSessionClosed)
	}
	if err := svc.Validate(); err != nil {
		return wrap(mark(registry.ErrPermanent, err))
	}
	_, err := s.r.c.CreateService(ctx, api.CreateServiceRequest{
		ID: svc.ID, SessionID: s.id, Tags: svc.Tags, Metadata: svc.Metadata,
	})
	switch {
	case err == nil:
	case HasFault(err, api.FaultServiceWithThisIDExists):
		got, gerr := s.r.c.GetService(ctx, svc.ID)
		if gerr != nil || got.SessionID != s.id {
			return wrap(mark(registry.ErrServiceExists, err))
		}
	case IsNotFound(err):
		return wrap(mark(registry.ErrSessionLost, err))
	default:
		return wrap(classify(err))
	}
	s.mu.Lock()
	s.services[svc.ID] = struct{}{}
	s.mu.Unlock()
	return nil
}

// Deregister removes a service; one that is not there is not an error.
func (s *Session) Deregister(ctx context.Context, serviceID string) error {
	if err := s.r.c.DeleteService(ctx, serviceID); err != nil && !IsNotFound(err) {
		return fmt.Errorf("deregister service %q of session %s: %w", serviceID, s.id, classify(err))
	}
	s.mu.Lock()
	delete(s.services, serviceID)
	s.mu.Unlock()
	return nil
}

// Close deletes the session, so that its services vanish now. Where the
// server lacks session deletion (404, 405 or 501 to DELETE /sessions/{id})
// it deletes the services registered through this session instead and
// leaves the session to expire; for a session that is already gone those
// deletes find nothing, which is fine. Closing twice is not an error.
func (s *Session) Close(ctx context.Context) error {
	if s.isClosed() {
		return nil
	}
	err := s.r.c.DeleteSession(ctx, s.id)
	if err != nil {
		switch st := StatusCode(err); {
		case st == http.StatusNotFound || st == http.StatusMethodNotAllowed || st == http.StatusNotImplemented:
			if st != http.StatusNotFound {
				s.r.log.Info("registry cannot delete sessions; deleting the session's services instead",
					zap.String("session_id", s.id), zap.Error(err))
			}
			if ferr := s.deleteServices(ctx); ferr != nil {
				return fmt.Errorf("close session %s: %w (and deleting its services: %w)", s.id, err, ferr)
			}
		default:
			return fmt.Errorf("close session %s: %w", s.id, classify(err))
		}
	}
	s.mu.Lock()
	s.closed = true
	s.services = map[string]struct{}{}
	s.mu.Unlock()
	return nil
}

func (s *Session) deleteServices(ctx context.Context) error {
	s.mu.Lock()
	ids := make([]string, 0, len(s.services))
	for id := range s.services {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		if err := s.r.c.DeleteService(ctx, id); err != nil && !IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// classify marks err with registry.ErrPermanent when retrying cannot help.
func classify(err error) error {
	if IsPermanent(err) {
		return mark(registry.ErrPermanent, err)
	}
	return err
}

// mark makes errors.Is(err, kind) true without changing err's text: the
// sentinel's words would add nothing to the call, status and fault.
func mark(kind, err error) error { return &markedError{kind: kind, err: err} }

type markedError struct{ kind, err error }

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.kind, e.err} }
