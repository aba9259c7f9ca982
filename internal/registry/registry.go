// Package registry defines the backend-neutral interface through which the
// wrapper keeps one service registered for as long as its child lives.
//
// A Registry opens Sessions. A Session expires unless it is heartbeated
// within its TTL, and the services registered in it vanish with it. The
// split between stopping heartbeats (the session then expires by itself,
// which is what a crash looks like) and Close (which ends it now, so that
// its services disappear at once) is the whole difference between a crash
// and a clean exit.
//
// Backends live in subpackages (srapi for the HTTP API, etcd for etcd v3)
// and never import the supervisor. This package holds no I/O.
package registry

import (
	"context"
	"errors"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// Service is what the wrapper registers.
type Service struct {
	ID       string
	Tags     []string
	Metadata map[string]string
}

// Validate checks the id, tags and metadata against the API's rules, which
// every backend applies so that a service valid for one is valid for all.
func (s Service) Validate() error {
	for _, err := range []error{
		api.ValidateServiceID(s.ID),
		api.ValidateTags(s.Tags),
		api.ValidateMetadata("metadata", s.Metadata),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// SessionOptions describe a session to create.
type SessionOptions struct {
	// TTL is the heartbeat timeout: the session expires when no heartbeat
	// arrives for this long. Whole seconds, 3s..30s for the HTTP API.
	TTL time.Duration
	// Metadata is attached to the session; nil means none.
	Metadata map[string]string
}

// ValidateMetadata checks the session metadata against the API's rules.
// The TTL's bounds depend on the backend, which checks it itself.
func (o SessionOptions) ValidateMetadata() error {
	return api.ValidateMetadata("session metadata", o.Metadata)
}

// Registry is a backend: something that can hold sessions.
type Registry interface {
	// CreateSession creates a new session. It authenticates first when
	// the backend needs it.
	CreateSession(ctx context.Context, opts SessionOptions) (Session, error)
	// Close releases the backend's connections. Sessions are not ended.
	Close() error
	// String names the backend for logs, without secrets.
	String() string
}

// Session is one live session in a registry. Its methods are safe for
// concurrent use: the heartbeat loop calls them, and Close may end the
// session while one of its calls is still in flight.
type Session interface {
	// ID is the registry's id of the session.
	ID() string
	// TTL is the heartbeat timeout the session was created with.
	TTL() time.Duration
	// Heartbeat extends the session by its TTL. It returns an error
	// wrapping ErrSessionLost when the registry no longer knows the
	// session; a new one must then be created.
	Heartbeat(ctx context.Context) error
	// Register adds a service to the session. It returns an error
	// wrapping ErrServiceExists when another, live session holds the id,
	// and ErrSessionLost when this session is gone.
	Register(ctx context.Context, svc Service) error
	// Deregister removes a service from the session and keeps the
	// session alive. Removing a service that is not there is not an error.
	Deregister(ctx context.Context, serviceID string) error
	// Close ends the session now, so that its services disappear at
	// once rather than after the TTL. A session that is already gone is
	// not an error.
	Close(ctx context.Context) error
}

// Errors that callers act on. Backends wrap them (errors.Is matches) with
// the details of the call that failed.
var (
	// ErrSessionLost means the registry no longer has the session: it
	// expired, was deleted, or the registry lost its state.
	ErrSessionLost = errors.New("session lost")
	// ErrServiceExists means another session still holds the service id,
	// typically an earlier instance whose session has not expired yet.
	ErrServiceExists = errors.New("service id held by another session")
	// ErrPermanent marks failures that retrying cannot fix: a rejected
	// request (400), a forbidden tenant (403), bad credentials.
	ErrPermanent = errors.New("permanent failure")
)

// IsPermanent reports whether err is a failure that retrying cannot fix.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// RetryAfter is how long the registry asked, with the reply that err
// carries, to wait before trying again (a Retry-After header); 0 when it
// did not say. Backends' errors say it with a RetryAfter method.
func RetryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}
