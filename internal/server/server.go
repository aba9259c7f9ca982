package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/server/boltstore"
	"github.com/sr-wrapper/sr-wrapper/internal/server/etcdstore"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Defaults of Config's zero values.
const (
	DefaultTokenTTL     = 24 * time.Hour
	DefaultMaxBodyBytes = 64 << 10
	DefaultSessionLimit = 100
	DefaultServiceLimit = 200
	DefaultConfigLimit  = 1000

	// EventRetention is how long the events feed keeps an event. Without a
	// marker GET /events shows the last hour; with one, whatever is still
	// kept.
	EventRetention = store.EventRetention

	// shutdownGrace bounds how long Serve waits for in-flight requests.
	shutdownGrace = 10 * time.Second
)

// Config configures a Server. Zero values mean the documented default.
type Config struct {
	// DataDir holds the bbolt file (registry.db) of the default store.
	// Created if missing. Exclusive with Etcd.
	DataDir string
	// Etcd, when not nil, keeps the state in etcd instead
	// (internal/server/etcdstore), shared by every frontend on the same
	// etcd cluster and prefix.
	Etcd *etcdconf.Config
	// Dev accepts any username and API key; each username is its own
	// tenant, DevTenantID(username). Tenants of the older, 10-digit dev
	// ids are moved to their new ids at start (see the package
	// documentation).
	Dev bool
	// Credentials are the accounts that may authenticate (see
	// LoadCredentials). Without Dev at least one is required.
	Credentials []Credential
	// Logger receives the server's logs; nil discards them.
	Logger *zap.Logger
	// Limits are the per-account resource limits; each zero field takes
	// its default (100 sessions, 200 services, 1000 configuration values).
	Limits api.ResourceLimits
	// TokenTTL is the lifetime of identity tokens; zero means 24h.
	TokenTTL time.Duration
	// MaxBodyBytes bounds request bodies (413 beyond); zero means 64 KiB.
	MaxBodyBytes int64
	// RateLimit is each tenant's allowance of requests per window; the
	// zero value means ratelimit.Default (500,000 a day). Heartbeats are
	// exempt (see "Limits" in the package documentation).
	RateLimit ratelimit.Limit
	// SeparateMetrics serves GET /metrics only on a listener of its own
	// (ServeMetrics), not with the API (Handler, Serve).
	SeparateMetrics bool
	// Auth bounds the cost of logins (see AuthLimits).
	Auth AuthLimits
}

// Server is the registry's HTTP side: routing, validation, faults and
// authentication, over a store.Store that keeps the state. Create it with
// New, serve it with Serve (or mount Handler), release it with Close.
type Server struct {
	log       *zap.Logger
	limits    api.ResourceLimits
	maxBody   int64
	store     store.Store
	creds     atomic.Pointer[credentials]
	auth      *authGuard
	rates     *ratelimit.Counter
	stopRates func() // stops sharing the request counts, and waits
	txnPrefix string
	txnSeq    atomic.Uint64
	metrics   *metrics

	closeOnce sync.Once
	closeErr  error
}

// New opens (or creates) the store, restoring its sessions, services and
// configuration, and starts its expiry.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.DataDir == "" && cfg.Etcd == nil:
		return nil, errors.New("new server: data dir is required")
	case cfg.DataDir != "" && cfg.Etcd != nil:
		return nil, errors.New("new server: a data dir and an etcd store are exclusive: give one")
	}
	if !cfg.Dev && len(cfg.Credentials) == 0 {
		return nil, errors.New("new server: no way to authenticate: enable dev mode or give credentials")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	opts := store.Options{Limits: cfg.Limits, TokenTTL: cfg.TokenTTL}
	if opts.Limits.Session <= 0 {
		opts.Limits.Session = DefaultSessionLimit
	}
	if opts.Limits.Service <= 0 {
		opts.Limits.Service = DefaultServiceLimit
	}
	if opts.Limits.ConfigurationValue <= 0 {
		opts.Limits.ConfigurationValue = DefaultConfigLimit
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	rateLimit := cfg.RateLimit
	if rateLimit == (ratelimit.Limit{}) {
		rateLimit = ratelimit.Default
	}
	if err := rateLimit.Valid(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	creds, err := newCredentials(cfg.Dev, cfg.Credentials, log)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	auth, err := newAuthGuard(cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	metrics := newMetrics(log, !cfg.SeparateMetrics, cfg.Etcd != nil)
	opts.Metrics = metrics.store
	var st store.Store
	if cfg.Etcd != nil {
		st, err = etcdstore.Open(etcdstore.Config{Etcd: *cfg.Etcd, Store: opts, Logger: log})
	} else {
		bc := boltstore.Config{Dir: cfg.DataDir, Store: opts, Logger: log}
		if cfg.Dev {
			bc.MoveTenants = oldDevTenantMoves(cfg.Credentials)
		}
		st, err = boltstore.Open(bc)
	}
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	metrics.registerCounts(st, log, cfg.Etcd != nil)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	srv := &Server{
		metrics:   metrics,
		log:       log,
		limits:    opts.Limits,
		maxBody:   maxBody,
		store:     st,
		auth:      auth,
		rates:     ratelimit.NewCounter(rateLimit, nil),
		txnPrefix: "sr-" + hex.EncodeToString(rnd[:]) + "-",
	}
	srv.creds.Store(creds)
	srv.startRates()
	return srv, nil
}

// SetCredentials replaces the accounts that may authenticate (what SIGHUP
// does after reading --credentials again). Requests in flight finish with
// the accounts they started with; an error leaves the old ones in place.
// Dev mode stays as the server was created.
func (s *Server) SetCredentials(creds []Credential) error {
	old := s.creds.Load()
	if !old.dev && len(creds) == 0 {
		return errors.New("set credentials: no accounts: nobody could authenticate")
	}
	cs, err := newCredentials(old.dev, creds, s.log)
	if err != nil {
		return fmt.Errorf("set credentials: %w", err)
	}
	s.creds.Store(cs)
	return nil
}

// oldDevTenantMoves says which tenants of a data dir written before
// tenant ids fit 32 bits to move to the ids their usernames have now, so
// that a restart after the upgrade loses nobody's state (see
// movedDevTenant). Tenants of the credentials are never moved, whatever
// their id.
func oldDevTenantMoves(creds []Credential) func(string) (string, bool) {
	named := map[string]bool{}
	for _, c := range creds {
		named[c.Tenant] = true
	}
	return func(id string) (string, bool) {
		if named[id] {
			return "", false
		}
		return movedDevTenant(id)
	}
}

// Ready returns nil when the store answers requests now (what GET
// /readyz reports).
func (s *Server) Ready(ctx context.Context) error { return s.store.Ready(ctx) }

// Handler returns the HTTP handler of the identity endpoint
// (/v2.0/tokens) and the API (/v1.0/{tenant}/...).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve serves HTTP on l until ctx is done, then shuts down gracefully: it
// stops accepting, lets in-flight requests finish (up to 10 s), and closes
// the server (Close). It returns nil after a clean shutdown. The timeouts
// are HTTPLimits' defaults (ServeListeners chooses others).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.ServeListeners(ctx, l, nil, HTTPLimits{})
}

// freshConnGrace is how long a connection that has sent nothing may still
// send its first request once shutdown has begun.
const freshConnGrace = 200 * time.Millisecond

// freshConns are the connections that have not sent a request yet.
type freshConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		f.m[c] = struct{}{}
	} else {
		delete(f.m, c)
	}
}

func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.m {
		_ = c.Close()
		delete(f.m, c)
	}
}

// Close closes the store. Every mutation that was answered is already
// durable. Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stopRates()
		// The counts since the last flush, so that the other frontends
		// (and this one's successor) still count them.
		ctx, cancel := context.WithTimeout(context.Background(), rateFinalFlush)
		if err := s.rates.Flush(ctx, s.store.ShareRequests); err != nil {
			s.log.Warn("request counts of the last second not shared", zap.Error(err))
		}
		cancel()
		s.closeErr = s.store.Close()
	})
	return s.closeErr
}

// Request counts are shared with the store every rateFlushEvery (the
// slack of the limit across frontends, see ratelimit.Counter); Close
// waits up to rateFinalFlush to share the last ones.
const (
	rateFlushEvery = time.Second
	rateFinalFlush = 2 * time.Second
)

// startRates starts sharing the request counts with the store.
func (s *Server) startRates() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var warned time.Time
		s.rates.Run(ctx, rateFlushEvery, s.store.ShareRequests, func(err error) {
			// Not fatal: the next flush shares the counts again; until
			// then the other frontends see this one's counts late. Once
			// a minute at most: while etcd is down every flush fails,
			// and the requests' own 503s say so already.
			if time.Since(warned) >= time.Minute {
				warned = time.Now()
				s.log.Warn("request counts not shared with the other frontends yet; retrying every second", zap.Error(err))
			}
		})
	}()
	s.stopRates = func() { cancel(); <-done }
}

func (s *Server) nextTxn() string {
	return s.txnPrefix + strconv.FormatUint(s.txnSeq.Add(1), 36)
}

// DefaultDataDir is the per-user data directory of sr-registry:
// $XDG_DATA_HOME/sr-registry, else ~/.local/share/sr-registry.
func DefaultDataDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "sr-registry"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("default data dir: %w", err)
	}
	return filepath.Join(home, ".local", "share", "sr-registry"), nil
}
