// Package registrytest starts real sr-registry servers for other packages'
// tests: in-process (Start) or as the built sr-registry binary in its own
// process (BuildBinary, StartProcess; Launch without a testing.TB, for
// benchmarks), always on 127.0.0.1 with a temporary data dir, or on etcd
// (WithEtcd, or --store for a process), where several servers given the
// same etcd and prefix are frontends of one registry.
//
// It is test support, not a fake: the servers are internal/server with its
// real stores, so what a test sees is what production does. It holds no
// package-level state; every helper registers its own cleanup with t.
//
//	reg := registrytest.Start(t)                 // dev mode: any username works
//	id := reg.Authenticate(t, "alice")           // token + tenant URL
//	// ... point the client at reg.URL / reg.AuthURL ...
//	reg.Restart()                                // same data dir, same port
package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// How long helpers wait for a server to start or stop before failing the
// test.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 15 * time.Second
)

// Registry is a real server running in the test's process.
type Registry struct {
	// URL is the API base, ending in /v1.0 (http://127.0.0.1:PORT/v1.0);
	// clients append "/<tenant>/<path>".
	URL string
	// AuthURL is the identity base: POST AuthURL+"/v2.0/tokens".
	AuthURL string
	// Addr is the listening address, 127.0.0.1:PORT. It stays the same
	// across Restart.
	Addr string

	t   testing.TB
	cfg server.Config

	mu      sync.Mutex
	srv     *server.Server
	cancel  context.CancelFunc
	done    chan error
	running bool
}

// Option changes how Start configures the server.
type Option func(*server.Config)

// WithCredentials replaces dev mode with these accounts: only they can
// authenticate, each with its own tenant.
func WithCredentials(creds ...server.Credential) Option {
	return func(c *server.Config) {
		c.Dev = false
		c.Credentials = append(c.Credentials, creds...)
	}
}

// WithLimits sets the per-account resource limits (zero fields keep the
// defaults 100 sessions, 200 services, 1000 configuration values).
func WithLimits(l api.ResourceLimits) Option { return func(c *server.Config) { c.Limits = l } }

// WithTokenTTL sets the lifetime of identity tokens (default 24h).
func WithTokenTTL(d time.Duration) Option { return func(c *server.Config) { c.TokenTTL = d } }

// WithEtcd keeps the server's state in etcd (endpoints host:port, keys
// under prefix) instead of a temporary data dir: several servers started
// with the same endpoints and prefix are frontends of one registry.
func WithEtcd(endpoints []string, prefix string) Option {
	return func(c *server.Config) {
		c.DataDir = ""
		c.Etcd = &etcdconf.Config{Endpoints: endpoints, Prefix: prefix}
	}
}

// Start starts a server in dev mode on 127.0.0.1 with a free port and a
// temporary data dir, and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	cfg := server.Config{Dev: true, DataDir: t.TempDir()}
	for _, o := range opts {
		o(&cfg)
	}
	r := &Registry{t: t, cfg: cfg}
	r.start("127.0.0.1:0")
	t.Cleanup(r.Stop)
	return r
}

func (r *Registry) start(addr string) {
	r.t.Helper()
	l, err := listenRetry(addr)
	if err != nil {
		r.t.Fatalf("registrytest: listen on %s: %v", addr, err)
	}
	srv, err := server.New(r.cfg)
	if err != nil {
		_ = l.Close()
		r.t.Fatalf("registrytest: start server on %s: %v", r.cfg.DataDir, err)
	}
	if err := waitReady(srv); err != nil {
		_ = l.Close()
		_ = srv.Close()
		r.t.Fatalf("registrytest: server on %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	r.mu.Lock()
	r.srv, r.cancel, r.done, r.running = srv, cancel, done, true
	r.Addr = l.Addr().String()
	r.URL = "http://" + r.Addr + "/v1.0"
	r.AuthURL = "http://" + r.Addr
	r.mu.Unlock()
}

// waitReady waits until the server's store answers (the etcd store
// connects in the background), so that a test's first request is not
// refused with 503.
func waitReady(srv *server.Server) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := srv.Ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("store not ready after %s: %w", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenRetry listens on addr, retrying briefly: right after a Stop the
// port of a Restart can still be held for a moment.
func listenRetry(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down gracefully (in-flight requests finish, the
// store is closed). Stopping a stopped server does nothing.
func (r *Registry) Stop() {
	r.t.Helper()
	r.mu.Lock()
	running, cancel, done := r.running, r.cancel, r.done
	r.running = false
	r.mu.Unlock()
	if !running {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			r.t.Errorf("registrytest: server on %s stopped with error: %v", r.Addr, err)
		}
	case <-time.After(stopTimeout):
		r.t.Errorf("registrytest: server on %s did not stop within %s", r.Addr, stopTimeout)
	}
}

// Restart stops the server (if running) and starts a new one on the same
// address and data dir. Sessions, services, configuration and events
// survive; identity tokens do not (clients get 401 and authenticate again).
func (r *Registry) Restart() {
	r.t.Helper()
	r.Stop()
	r.start(r.Addr)
}

// SetCredentials replaces the running server's accounts, as sr-registry's
// SIGHUP reload of --credentials does (tokens of accounts removed, moved
// or given another key stop working), and keeps them for a Restart.
func (r *Registry) SetCredentials(creds ...server.Credential) {
	r.t.Helper()
	r.mu.Lock()
	srv := r.srv
	r.cfg.Credentials = creds
	r.mu.Unlock()
	if err := srv.SetCredentials(creds); err != nil {
		r.t.Fatalf("registrytest: set credentials: %v", err)
	}
}

// Identity is what Authenticate and Login return.
type Identity struct {
	Token    string // the X-Auth-Token value
	TenantID string
	// TenantURL is URL + "/" + TenantID, as the identity reply's catalog
	// gives it: append "/sessions" etc.
	TenantURL string
}

// Authenticate gets a token for username (API key "key") from the server's
// identity endpoint. In dev mode any username works and is its own tenant.
func (r *Registry) Authenticate(t testing.TB, username string) Identity {
	t.Helper()
	return authenticate(t, r.AuthURL, username, "key")
}

// AuthenticateKey is Authenticate with an explicit API key, for servers
// started WithCredentials.
func (r *Registry) AuthenticateKey(t testing.TB, username, apiKey string) Identity {
	t.Helper()
	return authenticate(t, r.AuthURL, username, apiKey)
}

func authenticate(t testing.TB, authURL, username, apiKey string) Identity {
	t.Helper()
	id, err := Login(context.Background(), authURL, username, apiKey)
	if err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	return id
}

// NewClient is an API client of the registry at registryURL (authURL
// empty: the registry's own identity endpoint) for username, closed when
// the test ends.
func NewClient(t testing.TB, registryURL, authURL, username, apiKey string) *srapi.Client {
	t.Helper()
	c, err := srapi.NewClient(srapi.Config{RegistryURL: registryURL, AuthURL: authURL, Username: username, APIKey: apiKey})
	if err != nil {
		t.Fatalf("registrytest: client of %s for %q: %v", registryURL, username, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Login posts the API-key credentials to authURL+"/v2.0/tokens" and returns
// the token, the tenant and the tenant's URL from the catalog's registry
// entry.
func Login(ctx context.Context, authURL, username, apiKey string) (Identity, error) {
	body, err := json.Marshal(api.AuthRequest{Auth: api.AuthCredentials{
		APIKeyCredentials: &api.APIKeyCredentials{Username: username, APIKey: apiKey},
	}})
	if err != nil {
		return Identity{}, fmt.Errorf("authenticate %q: encode: %w", username, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, authURL+"/v2.0/tokens", bytes.NewReader(body))
	if err != nil {
		return Identity{}, fmt.Errorf("authenticate %q: %w", username, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("authenticate %q: %w", username, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var f api.Fault
		_ = json.NewDecoder(resp.Body).Decode(&f)
		return Identity{}, fmt.Errorf("authenticate %q: POST %s/v2.0/tokens: %s: %w", username, authURL, resp.Status, &f)
	}
	var ar api.AuthResponse
	if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
		return Identity{}, fmt.Errorf("authenticate %q: decode reply: %w", username, err)
	}
	if ar.Access.Token.ID == "" || ar.TenantID() == "" {
		return Identity{}, errors.New("authenticate " + username + ": reply without token or tenant")
	}
	for _, e := range ar.Access.ServiceCatalog {
		if e.Name == api.CatalogRegistryName && len(e.Endpoints) > 0 && e.Endpoints[0].PublicURL != "" {
			return Identity{Token: ar.Access.Token.ID, TenantID: ar.TenantID(), TenantURL: e.Endpoints[0].PublicURL}, nil
		}
	}
	return Identity{}, fmt.Errorf("authenticate %q: reply without a %s catalog entry", username, api.CatalogRegistryName)
}
