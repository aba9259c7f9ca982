// Package store is the contract between sr-registry's HTTP handlers
// (internal/server) and the places that keep the registry's state: the
// Store interface, the values that cross it, its errors, and the rules both
// implementations share (the heartbeat token chain, the form of event ids).
//
// The implementations are internal/server/boltstore (one process: memory
// first, every change committed to a bbolt file) and
// internal/server/etcdstore (any number of identical frontends: all shared
// state in etcd). Handlers, validation and faults never know which one
// runs; one conformance suite runs against both.
//
// It is not where requests are validated: a Store gets values the handlers
// have already checked against the API's rules (internal/api), and checks
// only what depends on the state (does the session exist, is the id taken,
// is a limit reached, does the token chain).
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// Store keeps the state of every tenant. Every method is safe for
// concurrent use. A mutation that returned nil is durable (it survives a
// kill -9 of the process, and with etcd the loss of any frontend); reads
// see every mutation that returned before they started, whichever frontend
// made it.
//
// Errors: ErrNotFound, *ServiceExistsError, *LimitError and
// ErrTokenMismatch are answers about the state; an error wrapping
// ErrUnavailable means the store cannot answer now (closing, or its
// dependency is down or too slow) and the client should retry; anything
// else is a failure of the store.
type Store interface {
	// CreateSession creates a session and returns its id ("se" and 8
	// alphanumerics). Its token chain starts at s.Token.
	CreateSession(ctx context.Context, tenant string, s NewSession) (id string, err error)
	// Session returns one session.
	Session(ctx context.Context, tenant, id string) (api.Session, error)
	// Sessions returns every session of the tenant, in no order.
	Sessions(ctx context.Context, tenant string) ([]api.Session, error)
	// UpdateSession changes a session's timeout and/or metadata.
	UpdateSession(ctx context.Context, tenant, id string, u SessionUpdate) error
	// DeleteSession removes a session and its services at once, without
	// a services.timeout event.
	DeleteSession(ctx context.Context, tenant, id string) error
	// Heartbeat keeps a session alive and advances its token chain (see
	// Chain.Advance), returning the token of the next heartbeat. next is
	// the new token to use when the chain advances.
	Heartbeat(ctx context.Context, tenant, id string, token, next uuid.UUID) (uuid.UUID, error)

	// CreateService registers a service in its session (ErrNotFound: no
	// such session) and appends its service.join event.
	CreateService(ctx context.Context, tenant string, svc api.Service) error
	// Service returns one service.
	Service(ctx context.Context, tenant, id string) (api.Service, error)
	// Services returns every service of the tenant, in no order.
	Services(ctx context.Context, tenant string) ([]api.Service, error)
	// UpdateService changes a service's tags and/or metadata.
	UpdateService(ctx context.Context, tenant, id string, u ServiceUpdate) error
	// DeleteService removes one service.
	DeleteService(ctx context.Context, tenant, id string) error
	// Overview returns every session with its services (sorted by id),
	// sessions in no order.
	Overview(ctx context.Context, tenant string) ([]api.OverviewEntry, error)

	// ConfigValue returns one configuration value.
	ConfigValue(ctx context.Context, tenant, id string) (api.ConfigurationValue, error)
	// ConfigValues returns the values whose id starts with prefix ("" for
	// all), in no order.
	ConfigValues(ctx context.Context, tenant, prefix string) ([]api.ConfigurationValue, error)
	// SetConfigValue creates or replaces a value and appends its
	// configuration_value.update event.
	SetConfigValue(ctx context.Context, tenant, id, value string) error
	// DeleteConfigValue removes a value and appends its
	// configuration_value.remove event.
	DeleteConfigValue(ctx context.Context, tenant, id string) error

	// Events returns up to limit+1 events of the tenant with ids >= from,
	// in id order (which is the order they were committed in). The one
	// beyond limit, if any, is the next page's first.
	Events(ctx context.Context, tenant, from string, limit int) ([]api.Event, error)

	// IssueToken returns an identity token for the user of tenant under
	// the key stamp, valid for the store's token lifetime. A store may
	// hand back the user's current token, of the same tenant and stamp,
	// while it has more than half its life left.
	IssueToken(ctx context.Context, user, tenant, stamp string) (Token, error)
	// LookupToken returns the live token with that id (ErrNotFound when
	// it is unknown or expired).
	LookupToken(ctx context.Context, id string) (Token, error)

	// ShareRequests records this process's counts of requests in the
	// rate-limit window that starts at start and lasts length (each
	// tenant's total here since the window began: a retry after a failure
	// is the same call with larger counts) and returns each tenant's total
	// in the window over every process sharing the store. On etcd that is
	// every frontend's; with one process, counts itself. A store forgets a
	// window's counts some time after it ends.
	ShareRequests(ctx context.Context, start time.Time, length time.Duration, counts map[string]int64) (totals map[string]int64, err error)

	// Counts returns how many sessions and services are live, over every
	// tenant: on etcd, the whole registry's (every frontend's), as etcd
	// holds them now.
	Counts(ctx context.Context) (Counts, error)

	// Ready returns nil when the store answers requests now.
	Ready(ctx context.Context) error
	// Close stops the store's background work and releases it. Every
	// mutation that returned nil is already durable. Safe to call more
	// than once.
	Close() error
}

// Options are what both stores need from the server's configuration.
type Options struct {
	// Limits are the per-account resource limits; every field must be
	// positive.
	Limits api.ResourceLimits
	// TokenTTL is the lifetime of identity tokens; it must be positive.
	TokenTTL time.Duration
	// Metrics are the instruments the store reports to; nil discards.
	Metrics *Metrics
}

// NewSession is a session to create.
type NewSession struct {
	HeartbeatTimeout int // seconds
	Metadata         map[string]string
	// Token is the first token of its chain (the reply to the create).
	Token uuid.UUID
}

// SessionUpdate is a change of a session; nil fields stay as they are.
type SessionUpdate struct {
	HeartbeatTimeout *int
	Metadata         map[string]string
}

// ServiceUpdate is a change of a service; nil fields stay as they are.
type ServiceUpdate struct {
	Tags     []string
	Metadata map[string]string
}

// Token is an identity token.
type Token struct {
	ID     string
	User   string
	Tenant string
	// Stamp names the account's key the token was issued under (empty
	// for dev users and for tokens stored before stamps existed): a
	// token issued under another key is no longer current.
	Stamp   string
	Expires time.Time
}

var (
	// ErrNotFound: no such session, service, configuration value or
	// token.
	ErrNotFound = errors.New("not found")
	// ErrTokenMismatch: a heartbeat's token is neither the current nor
	// the previous one of the session's chain.
	ErrTokenMismatch = errors.New("token mismatch")
	// ErrUnavailable: the store cannot answer now (it is closing, or its
	// dependency is down or did not answer in time); the call may be
	// retried.
	ErrUnavailable = errors.New("store unavailable")
)

// ServiceExistsError: the service id is held by a session that has not
// been deleted and has not expired.
type ServiceExistsError struct {
	ID        string
	SessionID string // the holder
}

func (e *ServiceExistsError) Error() string {
	return fmt.Sprintf("service %q is registered by session %s", e.ID, e.SessionID)
}

// LimitError: creating one more would exceed the account's limit.
type LimitError struct {
	Resource string // "sessions", "services", "configuration values"
	Limit    int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the account may hold at most %d %s", e.Limit, e.Resource)
}

// Unavailable wraps err so that it matches ErrUnavailable (and still
// matches err).
func Unavailable(err error) error { return &unavailableError{err} }

type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

const sessionIDAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// NewSessionID returns "se" and 8 random alphanumerics, like the hosted
// service's ids (seMkzI0mxC).
func NewSessionID() string {
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

// NewTokenID returns a new identity token id: 32 random hex digits.
func NewTokenID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // cannot fail, as above
	return hex.EncodeToString(b[:])
}
