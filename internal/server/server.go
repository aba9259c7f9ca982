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
	EventRetention = 7 * 24 * time.Hour

	// shutdownGrace bounds how long Serve waits for in-flight requests.
	shutdownGrace = 10 * time.Second
	// housekeepingEvery is how often expired identity tokens are purged.
	housekeepingEvery = time.Minute
	// pruneEvery is how often old events are pruned.
	pruneEvery = time.Hour
)

// Config configures a Server. Zero values mean the documented default.
type Config struct {
	// DataDir holds the bbolt file (registry.db). Required; created if
	// missing.
	DataDir string
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
}

// Server is the registry: the in-memory state, its bbolt store, the expiry
// loop and the HTTP handler. Create it with New, serve it with Serve (or
// mount Handler), release it with Close.
type Server struct {
	log     *zap.Logger
	limits  api.ResourceLimits
	maxBody int64
	store   *store
	ids     *identity
	exp     *expirer
	// base is the origin of the monotonic clock used for deadlines, so
	// that a wall clock step neither expires nor immortalises sessions.
	base      time.Time
	txnPrefix string
	txnSeq    atomic.Uint64

	mu      sync.RWMutex
	tenants map[string]*tenant

	stop      chan struct{}
	bg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New opens (or creates) the store in cfg.DataDir, restores its sessions,
// services and configuration, and starts the expiry loop. Restored
// sessions get a full fresh timeout.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("new server: data dir is required")
	}
	if !cfg.Dev && len(cfg.Credentials) == 0 {
		return nil, errors.New("new server: no way to authenticate: enable dev mode or give credentials")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	limits := cfg.Limits
	if limits.Session <= 0 {
		limits.Session = DefaultSessionLimit
	}
	if limits.Service <= 0 {
		limits.Service = DefaultServiceLimit
	}
	if limits.ConfigurationValue <= 0 {
		limits.ConfigurationValue = DefaultConfigLimit
	}
	ttl := cfg.TokenTTL
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	ids, err := newIdentity(cfg.Dev, cfg.Credentials, ttl)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("new server: create data dir: %w", err)
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	if cfg.Dev {
		if err := moveOldDevTenants(st, cfg.Credentials, log); err != nil {
			_ = st.close()
			return nil, fmt.Errorf("new server: %w", err)
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	s := &Server{
		log:       log,
		limits:    limits,
		maxBody:   maxBody,
		store:     st,
		ids:       ids,
		exp:       newExpirer(),
		base:      time.Now(),
		txnPrefix: "sr-" + hex.EncodeToString(rnd[:]) + "-",
		tenants:   map[string]*tenant{},
		stop:      make(chan struct{}),
	}
	if err := s.restore(); err != nil {
		_ = st.close()
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.runExpiry(s.stop) }()
	go func() { defer s.bg.Done(); s.housekeeping(s.stop) }()
	return s, nil
}

// moveOldDevTenants gives the dev tenants of a data dir written before
// tenant ids fit 32 bits the ids their usernames have now, so that a
// restart after the upgrade loses nobody's state (see movedDevTenant).
// Tenants of the credentials are never moved, whatever their id.
func moveOldDevTenants(st *store, creds []Credential, log *zap.Logger) error {
	named := map[string]bool{}
	for _, c := range creds {
		named[c.Tenant] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	moves, err := st.moveTenants(ctx, func(id string) (string, bool) {
		if named[id] {
			return "", false
		}
		return movedDevTenant(id)
	})
	if err != nil {
		return err
	}
	for _, m := range moves {
		if m.taken {
			log.Warn("dev tenant of the old 10-digit form not moved: its new id already has state; its state stays unreachable under the old id",
				zap.String("old_tenant", m.from), zap.String("new_tenant", m.to))
			continue
		}
		log.Info("dev tenant moved to its 32-bit id", zap.String("old_tenant", m.from), zap.String("new_tenant", m.to))
	}
	return nil
}

// restore loads the durable state. Sessions come back with a fresh
// timeout and an unknown token chain (see the package documentation).
func (s *Server) restore() error {
	tenants, err := s.store.load()
	if err != nil {
		return err
	}
	now := s.mono()
	var nSessions, nServices, nConfig int
	for _, rt := range tenants {
		t := newTenant(rt.id)
		t.config = rt.config
		for _, ss := range rt.sessions {
			sess := &session{
				t:        t,
				id:       ss.ID,
				timeout:  int32(ss.HeartbeatTimeout),
				restored: true,
				created:  ss.Created,
				metadata: emptyToNil(ss.Metadata),
				deadline: now + int64(time.Duration(ss.HeartbeatTimeout)*time.Second),
			}
			t.sessions[sess.id] = sess
			s.exp.push(sess)
		}
		for _, sv := range rt.services {
			sess := t.sessions[sv.SessionID]
			if sess == nil {
				// Cannot happen with atomic commits; keep going rather
				// than refuse to start.
				s.log.Warn("restore: service without session, skipped",
					zap.String("tenant", rt.id), zap.String("service_id", sv.ID), zap.String("session_id", sv.SessionID))
				continue
			}
			svc := &service{sess: sess, id: sv.ID, tags: sv.Tags, metadata: emptyToNil(sv.Metadata)}
			t.services[svc.id] = svc
			sess.services = append(sess.services, svc)
		}
		nSessions += len(t.sessions)
		nServices += len(t.services)
		nConfig += len(t.config)
		s.tenants[t.id] = t
	}
	s.log.Info("state restored",
		zap.Int("tenants", len(tenants)),
		zap.Int("sessions", nSessions),
		zap.Int("services", nServices),
		zap.Int("configuration_values", nConfig))
	return nil
}

// Handler returns the HTTP handler of the identity endpoint
// (/v2.0/tokens) and the API (/v1.0/{tenant}/...).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Serve serves HTTP on l until ctx is done, then shuts down gracefully: it
// stops accepting, lets in-flight requests finish (up to 10 s), and closes
// the server (Close). It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than any client's heartbeat interval (at most 0.8 × 30 s),
		// so heartbeats keep reusing their connection.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zap.NewStdLog(s.log.Named("http").WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		closeErr := s.Close()
		return errors.Join(fmt.Errorf("serve on %s: %w", l.Addr(), err), closeErr)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", zap.String("addr", l.Addr().String()))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	shutErr := hs.Shutdown(sctx)
	if shutErr != nil {
		shutErr = fmt.Errorf("shut down HTTP server on %s: %w", l.Addr(), shutErr)
		_ = hs.Close()
	}
	<-errc
	return errors.Join(shutErr, s.Close())
}

// Close stops the expiry loop and closes the store. Every mutation that was
// answered is already on disk. Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.bg.Wait()
		s.closeErr = s.store.close()
	})
	return s.closeErr
}

// mono is the monotonic clock of deadlines, in ns.
func (s *Server) mono() int64 { return int64(time.Since(s.base)) }

func (s *Server) nextTxn() string {
	return s.txnPrefix + strconv.FormatUint(s.txnSeq.Add(1), 36)
}

// tenant returns the live state of a tenant, creating it on first use.
func (s *Server) tenant(id string) *tenant {
	s.mu.RLock()
	t := s.tenants[id]
	s.mu.RUnlock()
	if t != nil {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t = s.tenants[id]; t == nil {
		t = newTenant(id)
		s.tenants[id] = t
	}
	return t
}

func (s *Server) housekeeping(stop <-chan struct{}) {
	tick := time.NewTicker(housekeepingEvery)
	defer tick.Stop()
	var lastPrune time.Time
	for {
		now := time.Now()
		s.ids.purge(now)
		if now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			n, err := s.store.pruneEvents(ctx, now.Add(-EventRetention).UnixMilli())
			cancel()
			switch {
			case err != nil && !errors.Is(err, errStoreClosed):
				s.log.Error("prune events", zap.Error(err))
			case n > 0:
				s.log.Info("pruned old events", zap.Int("events", n), zap.Duration("retention", EventRetention))
			}
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
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
