package srapi

// Unit tests of the client's own behaviour against httptest servers that
// play a minimal identity endpoint plus whatever route a test needs. What
// the API does is tested against the real server in integration_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
)

const (
	testUser   = "alice"
	testKey    = "sekrit-api-key-0123456789"
	testTenant = "t1000"
)

// fakeAPI is an httptest server with an identity endpoint handing out
// numbered tokens; routes added to mux answer under /v1.0/t1000/.
type fakeAPI struct {
	srv    *httptest.Server
	mux    *http.ServeMux
	auths  atomic.Int64
	tokens sync.Map // valid identity tokens
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{mux: http.NewServeMux()}
	f.mux.HandleFunc("POST /v2.0/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req api.AuthRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Auth.APIKeyCredentials == nil ||
			req.Auth.APIKeyCredentials.APIKey != testKey {
			// Echo the key, as a careless server might: it must not
			// reach the client's errors or logs.
			key := ""
			if req.Auth.APIKeyCredentials != nil {
				key = req.Auth.APIKeyCredentials.APIKey
			}
			writeJSON(w, http.StatusUnauthorized, map[string]any{"unauthorized": map[string]any{
				"code": 401, "message": "bad key " + key}})
			return
		}
		n := f.auths.Add(1)
		tok := fmt.Sprintf("identity-token-%d", n)
		f.tokens.Store(tok, true)
		var ar api.AuthResponse
		ar.Access.Token = api.Token{ID: tok, Expires: time.Now().Add(time.Hour).Format(time.RFC3339)}
		ar.Access.ServiceCatalog = []api.CatalogEntry{{Name: api.CatalogComputeName,
			Endpoints: []api.Endpoint{{TenantID: testTenant}}}}
		writeJSON(w, http.StatusOK, ar)
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1.0/") {
			if _, ok := f.tokens.Load(r.Header.Get("X-Auth-Token")); !ok {
				writeJSON(w, http.StatusUnauthorized, api.Fault{Type: api.FaultUnauthorized, Code: 401, Message: "no"})
				return
			}
		}
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// purgeTokens forgets every issued token, as a restarted registry does.
func (f *fakeAPI) purgeTokens() {
	f.tokens.Range(func(k, _ any) bool { f.tokens.Delete(k); return true })
}

func (f *fakeAPI) config() Config {
	return Config{RegistryURL: f.srv.URL + "/v1.0", Username: testUser, APIKey: testKey}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestEndpointsFromConfig(t *testing.T) {
	tests := []struct {
		name         string
		registry     string
		auth         string
		wantRegistry string
		wantTokens   string
		wantErr      string
	}{
		{"default auth is the registry's own", "http://127.0.0.1:8181/v1.0", "",
			"http://127.0.0.1:8181/v1.0", "http://127.0.0.1:8181/v2.0/tokens", ""},
		{"trailing slash", "http://h:1/v1.0/", "", "http://h:1/v1.0", "http://h:1/v2.0/tokens", ""},
		{"empty path gets /v1.0", "https://h", "", "https://h/v1.0", "https://h/v2.0/tokens", ""},
		{"empty registry is the default", "", "", DefaultRegistryURL, "http://127.0.0.1:8181/v2.0/tokens", ""},
		{"rackspace us", "https://dfw.registry.api.rackspacecloud.com/v1.0", RackspaceUSAuthURL,
			"https://dfw.registry.api.rackspacecloud.com/v1.0", "https://identity.api.rackspacecloud.com/v2.0/tokens", ""},
		{"auth without version", "http://h/v1.0", "http://id:5000", "http://h/v1.0", "http://id:5000/v2.0/tokens", ""},
		{"auth with version and slash", "http://h/v1.0", "http://id/v2.0/", "http://h/v1.0", "http://id/v2.0/tokens", ""},
		{"etcd scheme", "etcd://h:2379", "", "", "", "scheme must be http or https"},
		{"no host", "http:///v1.0", "", "", "", "no host"},
		{"user info", "http://bob:pw@h/v1.0", "", "", "", "must not carry user info"},
		{"query", "http://h/v1.0?x=1", "", "", "", "query"},
		{"user info with another scheme", "ftp://bob:pw@h/v1.0", "", "", "", "must not carry user info"},
		{"user info with a bad port", "http://bob:pw@h:port/v1.0", "", "", "", "must not carry user info"},
		{"bad auth scheme", "http://h/v1.0", "ftp://id", "", "", "auth URL"},

		// Several frontends: each is its own identity endpoint, unless
		// an auth URL is given.
		{"list", "http://a:1/v1.0, http://b:2/v1.0/,http://c:3", "",
			"http://a:1/v1.0,http://b:2/v1.0,http://c:3/v1.0", "http://a:1/v2.0/tokens,http://b:2/v2.0/tokens,http://c:3/v2.0/tokens", ""},
		{"list with an auth URL", "https://a/v1.0,https://b/v1.0", "https://id/v2.0",
			"https://a/v1.0,https://b/v1.0", "https://id/v2.0/tokens", ""},
		{"list with a stray comma", "http://a/v1.0,,http://b/v1.0", "", "", "", "registry URL 2 of 3 is empty (a stray comma?)"},
		{"list with a trailing comma", "http://a/v1.0,", "", "", "", "registry URL 2 of 2 is empty"},
		{"list mixing http and https", "https://a/v1.0,http://b/v1.0", "", "", "",
			`registry URL 2 of 2 "http://b/v1.0": every URL of the list must have the same scheme, and the first is https://`},
		{"list with an etcd URL", "http://a/v1.0,etcd://h:2379", "", "", "", `registry URL 2 of 2 "etcd://h:2379": scheme must be http or https`},
		{"list with a bad URL", "http://a/v1.0,http:///v1.0", "", "", "", `registry URL 2 of 2 "http:///v1.0": no host`},
		{"list with user info", "http://a/v1.0,http://bob:pw@b/v1.0", "", "", "", "registry URL 2 of 2: must not carry user info"},
		{"a comma in a path stays escaped", "http://a/api%2Cv1/v1.0,http://b/v1.0", "",
			"http://a/api%2Cv1/v1.0,http://b/v1.0", "http://a/v2.0/tokens,http://b/v2.0/tokens", ""},
		{"list naming a frontend twice", "http://a/v1.0,http://a/v1.0/", "", "", "", `registry URL 2 of 2 "http://a/v1.0/": the same frontend as URL 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := parseEndpoints(Config{RegistryURL: tt.registry, AuthURL: tt.auth})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Fatalf("error leaks the URL's password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, tokens := ep.registryList(), ep.tokensList(); got != tt.wantRegistry || tokens != tt.wantTokens {
				t.Fatalf("got %q, %q; want %q, %q", got, tokens, tt.wantRegistry, tt.wantTokens)
			}
		})
	}
}

func TestAuthURLForRegion(t *testing.T) {
	tests := []struct{ region, want, wantErr string }{
		{"us", RackspaceUSAuthURL, ""},
		{"UK", RackspaceUKAuthURL, ""},
		{"mars", "", "region must be us or uk"},
	}
	for _, tt := range tests {
		got, err := AuthURLForRegion(tt.region)
		if got != tt.want || (err == nil) != (tt.wantErr == "") ||
			(err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("AuthURLForRegion(%q) = %q, %v", tt.region, got, err)
		}
	}
}

func TestIDFromLocation(t *testing.T) {
	tests := []struct{ loc, want, wantErr string }{
		{"http://127.0.0.1:8181/v1.0/t1/sessions/seMkzI0mxC", "seMkzI0mxC", ""},
		{"https://h/v1.0/t1/services/web-1/", "web-1", ""},
		{"/v1.0/t1/services/db.1", "db.1", ""},
		{"http://h/v1.0/t1/services/a%20b", "a b", ""},
		{"", "", "no Location header"},
		{"http://h/", "", "names no id"},
		{"http://h/%zz", "", "parse Location"},
	}
	for _, tt := range tests {
		got, err := idFromLocation(tt.loc)
		if got != tt.want || (err == nil) != (tt.wantErr == "") ||
			(err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("idFromLocation(%q) = %q, %v; want %q, error containing %q", tt.loc, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCreateSessionWithoutLocationFails(t *testing.T) {
	f := newFakeAPI(t)
	f.mux.HandleFunc("POST /v1.0/t1000/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, api.HeartbeatToken{Token: "t0"})
	})
	c := newTestClient(t, f.config())
	_, _, err := c.CreateSession(testContext(t), api.CreateSessionRequest{HeartbeatTimeout: 10})
	if err == nil || !strings.Contains(err.Error(), "no Location header") {
		t.Fatalf("err = %v, want a missing Location error", err)
	}
}

func TestAPIErrorText(t *testing.T) {
	e := &APIError{Method: "POST", URL: "http://h/v1.0/t/services", Status: 400, Fault: api.Fault{
		Type: api.FaultServiceWithThisIDExists, Code: 400, Message: "Service with this id already exists",
		Details: "web-1", TxnID: "tx1"}}
	want := "POST http://h/v1.0/t/services: 400 serviceWithThisIdExists: Service with this id already exists (web-1) [txnId tx1]"
	if e.Error() != want {
		t.Fatalf("got  %s\nwant %s", e.Error(), want)
	}
	bare := &APIError{Method: "GET", URL: "http://h/x", Status: 502}
	if got := bare.Error(); got != "GET http://h/x: 502 Bad Gateway" {
		t.Fatalf("got %s", got)
	}
}

func TestClassification(t *testing.T) {
	apiErr := func(status int, typ string) error {
		return fmt.Errorf("context: %w", &APIError{Method: "GET", URL: "u", Status: status, Fault: api.Fault{Type: typ}})
	}
	tests := []struct {
		name                 string
		err                  error
		transient, permanent bool
	}{
		{"nil", nil, false, false},
		{"500", apiErr(500, api.FaultInternal), true, false},
		{"503", apiErr(503, api.FaultSystemFailure), true, false},
		{"429", apiErr(429, ""), true, false},
		{"408", apiErr(408, ""), true, false},
		{"400 rate limit", apiErr(400, api.FaultRateLimitReached), true, false},
		{"400 bad request", apiErr(400, api.FaultBadRequest), false, true},
		{"400 exists", apiErr(400, api.FaultServiceWithThisIDExists), false, true},
		{"401 from the identity service", apiErr(401, api.FaultUnauthorized), false, true},
		{"401 from the registry", fmt.Errorf("context: %w", &APIError{Method: "GET", URL: "u", Status: 401,
			Fault: api.Fault{Type: api.FaultUnauthorized}, fromRegistry: true}), true, false},
		{"403 from the registry", fmt.Errorf("context: %w", &APIError{Method: "GET", URL: "u", Status: 403,
			Fault: api.Fault{Type: api.FaultForbidden}, fromRegistry: true}), false, true},
		{"403", apiErr(403, api.FaultForbidden), false, true},
		{"404", apiErr(404, api.FaultNotFound), false, true},
		{"transport", &TransportError{Method: "GET", URL: "u", Err: io.ErrUnexpectedEOF}, true, false},
		{"timeout", &TransportError{Method: "GET", URL: "u", Err: context.DeadlineExceeded}, true, false},
		{"caller cancelled", &TransportError{Method: "GET", URL: "u", Err: context.Canceled}, false, false},
		{"other", errors.New("decode reply"), false, false},

		{"certificate", &TransportError{Method: "GET", URL: "u", Err: &TLSError{msg: "certificate signed by unknown authority"}}, false, true},
		{"TLS files", fmt.Errorf("GET u: %w", &TLSError{msg: "--cacert f: no PEM certificate"}), false, true},
		{"every frontend: refused and 503", &FrontendsError{Frontends: 2, Errs: []error{
			&TransportError{Method: "GET", URL: "a", Err: io.ErrUnexpectedEOF}, &APIError{Status: 503, fromRegistry: true}}}, true, false},
		{"every frontend: certificates", &FrontendsError{Frontends: 2, Errs: []error{
			&TransportError{Method: "GET", URL: "a", Err: &TLSError{msg: "x"}}, &TransportError{Method: "GET", URL: "b", Err: &TLSError{msg: "y"}}}}, false, true},
		{"every frontend: a certificate and a refusal", &FrontendsError{Frontends: 2, Errs: []error{
			&TransportError{Method: "GET", URL: "a", Err: &TLSError{msg: "x"}}, &TransportError{Method: "GET", URL: "b", Err: io.ErrUnexpectedEOF}}}, true, false},
		{"frontends until the caller cancelled", &FrontendsError{Frontends: 3, Errs: []error{
			&TransportError{Method: "GET", URL: "a", Err: io.ErrUnexpectedEOF}, &TransportError{Method: "GET", URL: "b", Err: context.Canceled}}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.transient {
				t.Errorf("IsTransient = %v", got)
			}
			if got := IsPermanent(tt.err); got != tt.permanent {
				t.Errorf("IsPermanent = %v", got)
			}
		})
	}
}

func TestConnectionRefusedIsTransientWithMethodAndURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newTestClient(t, Config{RegistryURL: "http://" + addr + "/v1.0", Username: testUser, APIKey: testKey})
	_, err = c.Limits(testContext(t))
	if !IsTransient(err) {
		t.Fatalf("err = %v, want transient", err)
	}
	if want := "POST http://" + addr + "/v2.0/tokens: "; !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
}

// TestSecretsNeverLogged runs calls in debug mode, including failed ones,
// and greps the log and the errors for the API key and the tokens.
func TestSecretsNeverLogged(t *testing.T) {
	f := newFakeAPI(t)
	f.mux.HandleFunc("POST /v1.0/t1000/sessions/s1/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var in api.HeartbeatToken
		_ = json.NewDecoder(r.Body).Decode(&in)
		writeJSON(w, http.StatusOK, api.HeartbeatToken{Token: "next-heartbeat-token"})
	})
	f.mux.HandleFunc("GET /v1.0/t1000/limits", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusInternalServerError, api.Fault{Type: api.FaultInternal, Code: 500,
			Message: "oops " + testKey, Details: "key was " + testKey, TxnID: "tx9"})
	})

	var logs bytes.Buffer
	log, err := logging.New(logging.Options{Format: logging.FormatJSON, Level: "debug", Output: &logs})
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.config()
	cfg.Logger, cfg.Debug = log, true
	ctx := testContext(t)
	c := newTestClient(t, cfg)

	var errs []error
	next, err := c.Heartbeat(ctx, "s1", "first-heartbeat-token")
	if err != nil || next != "next-heartbeat-token" {
		t.Fatalf("heartbeat: %q, %v", next, err)
	}
	_, err = c.Limits(ctx)
	if StatusCode(err) != 500 {
		t.Fatalf("limits: %v, want a 500", err)
	}
	errs = append(errs, err)
	bad := cfg
	bad.APIKey = "wrong-" + testKey
	_, err = newTestClient(t, bad).Limits(ctx)
	if !IsPermanent(err) || !strings.Contains(err.Error(), "401 unauthorized") {
		t.Fatalf("bad key: %v, want a permanent 401", err)
	}
	errs = append(errs, err)

	out := logs.String()
	for _, want := range []string{`"method":"POST"`, `/v2.0/tokens`, `"status":200`, `"status":500`,
		`"X-Auth-Token":"REDACTED"`, `\"apiKey\":\"REDACTED\"`, `\"token\":\"REDACTED\"`, `\"id\":\"REDACTED\"`, `tx9`} {
		if !strings.Contains(out, want) {
			t.Errorf("debug log lacks %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{testKey, "identity-token-", "first-heartbeat-token", "next-heartbeat-token"} {
		if strings.Contains(out, secret) {
			t.Errorf("debug log contains secret %q:\n%s", secret, out)
		}
		for _, e := range errs {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("error contains secret %q: %v", secret, e)
			}
		}
	}
	asJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var zapped bytes.Buffer
	zl, _ := logging.New(logging.Options{Format: logging.FormatJSON, Output: &zapped})
	zl.Info("config", zap.Any("cfg", cfg), zap.Any("cfgp", &cfg))
	if !strings.Contains(zapped.String(), testUser) {
		t.Fatalf("zap did not log the config: %s", zapped.String())
	}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), c.String(),
		string(asJSON), zapped.String()} {
		if strings.Contains(s, testKey) {
			t.Errorf("printed config contains the key: %s", s)
		}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.String(); strings.Contains(s, testKey) || !strings.Contains(s, testUser) || !strings.Contains(s, "/v1.0") {
		t.Errorf("Registry.String() = %q", s)
	}
}

func TestRedactBody(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"heartbeat", `{"token":"abc"}`, `{"token":"REDACTED"}`},
		{"identity reply", `{"access":{"token":{"id":"tok","expires":"x","tenant":{"id":"t1"}}}}`,
			`{"access":{"token":{"expires":"x","id":"REDACTED","tenant":{"id":"t1"}}}}`},
		{"credentials", `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"u","apiKey":"k"}}}`,
			`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"apiKey":"REDACTED","username":"u"}}}`},
		{"list keeps ids", `{"values":[{"id":"se1"}]}`, `{"values":[{"id":"se1"}]}`},
		{"not json, literal secret", `oops the-key`, `oops REDACTED`},
		{"empty", ``, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redactBody([]byte(tt.in), "the-key")
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// Short secrets are replaced where they stand alone, long ones wherever
// they are.
func TestScrub(t *testing.T) {
	tests := []struct{ name, in, secret, want string }{
		{"short key inside words", "the account may make 1 request", "k", "the account may make 1 request"},
		{"short key alone", `bad key "k" for user k`, "k", `bad key "REDACTED" for user REDACTED`},
		{"short key at the ends", "k=k", "k", "REDACTED=REDACTED"},
		{"short key next to a digit", "k1 and 1k", "k", "k1 and 1k"},
		{"overlapping occurrences", "aaa aa", "aa", "aaa REDACTED"},
		{"short key with punctuation", "key -x-, not a-x", "-x-", "key REDACTED, not a-x"},
		{"long key everywhere", "xx0123456789abcdefyy", "0123456789abcdef", "xxREDACTEDyy"},
		{"no secret", "as it was", "", "as it was"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scrub(tt.in, tt.secret); got != tt.want {
				t.Fatalf("scrub(%q, %q) = %q, want %q", tt.in, tt.secret, got, tt.want)
			}
		})
	}
}

// TestReauthenticatesOnceOn401 purges the server's tokens: the next call
// gets a 401, re-authenticates and succeeds; concurrent calls share one
// new token.
func TestReauthenticatesOnceOn401(t *testing.T) {
	f := newFakeAPI(t)
	f.mux.HandleFunc("GET /v1.0/t1000/limits", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Limits{Resource: api.ResourceLimits{Session: 100}})
	})
	c := newTestClient(t, f.config())
	ctx := testContext(t)

	limitsConcurrently(t, ctx, c, 8)
	if n := f.auths.Load(); n != 1 {
		t.Fatalf("8 concurrent first calls authenticated %d times, want 1", n)
	}

	f.purgeTokens()
	limitsConcurrently(t, ctx, c, 8)
	if n := f.auths.Load(); n != 2 {
		t.Fatalf("after a purge, 8 concurrent calls brought authentications to %d, want 2", n)
	}
}

// limitsConcurrently calls Limits n times at once and fails the test on
// any error.
func limitsConcurrently(t *testing.T, ctx context.Context, c *Client, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := c.Limits(ctx)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPersistent401IsReturnedAfterOneRetry(t *testing.T) {
	f := newFakeAPI(t)
	var calls atomic.Int64
	f.mux.HandleFunc("GET /v1.0/t1000/limits", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		f.purgeTokens()
		writeJSON(w, http.StatusUnauthorized, api.Fault{Type: api.FaultUnauthorized, Code: 401})
	})
	c := newTestClient(t, f.config())
	_, err := c.Limits(testContext(t))
	if StatusCode(err) != 401 || calls.Load() != 2 || f.auths.Load() != 2 {
		t.Fatalf("err %v after %d calls and %d authentications; want a 401 after 2 and 2", err, calls.Load(), f.auths.Load())
	}
	// The identity service took the credentials: the registry refusing
	// its token is worth retrying (it may have restarted once more).
	if !IsTransient(err) || IsPermanent(err) {
		t.Fatalf("err %v: a registry's 401 after re-authenticating must be transient", err)
	}
}

func TestRequestTimeoutIsTransient(t *testing.T) {
	f := newFakeAPI(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.mux.HandleFunc("GET /v1.0/t1000/limits", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	cfg := f.config()
	cfg.RequestTimeout = 200 * time.Millisecond
	_, err := newTestClient(t, cfg).Limits(testContext(t))
	if !IsTransient(err) || !strings.Contains(err.Error(), "GET "+f.srv.URL+"/v1.0/t1000/limits") {
		t.Fatalf("err = %v, want a transient error naming the call", err)
	}
}

// TestCloseFallsBackToDeletingServices plays servers without session
// deletion: Close must then delete the services the session registered.
func TestCloseFallsBackToDeletingServices(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		faultType string
	}{
		{"405 method not allowed", http.StatusMethodNotAllowed, ""},
		{"501 not implemented", http.StatusNotImplemented, api.FaultNotImplemented},
		{"404 route unknown", http.StatusNotFound, ""},
		{"404 session gone", http.StatusNotFound, api.FaultNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t)
			var mu sync.Mutex
			services := map[string]bool{}
			f.mux.HandleFunc("POST /v1.0/t1000/sessions", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "http://"+r.Host+r.URL.Path+"/seABCDEFGH")
				writeJSON(w, http.StatusCreated, api.HeartbeatToken{Token: "t0"})
			})
			f.mux.HandleFunc("POST /v1.0/t1000/services", func(w http.ResponseWriter, r *http.Request) {
				var in api.CreateServiceRequest
				_ = json.NewDecoder(r.Body).Decode(&in)
				mu.Lock()
				services[in.ID] = true
				mu.Unlock()
				w.Header().Set("Location", "http://"+r.Host+r.URL.Path+"/"+in.ID)
				w.WriteHeader(http.StatusCreated)
			})
			f.mux.HandleFunc("DELETE /v1.0/t1000/services/{id}", func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if !services[r.PathValue("id")] {
					writeJSON(w, http.StatusNotFound, api.Fault{Type: api.FaultNotFound, Code: 404})
					return
				}
				delete(services, r.PathValue("id"))
				w.WriteHeader(http.StatusNoContent)
			})
			f.mux.HandleFunc("DELETE /v1.0/t1000/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
				if tt.faultType == "" {
					http.Error(w, "nope", tt.status)
					return
				}
				writeJSON(w, tt.status, api.Fault{Type: tt.faultType, Code: tt.status})
			})

			reg, err := New(f.config())
			if err != nil {
				t.Fatal(err)
			}
			ctx := testContext(t)
			s, err := reg.CreateSession(ctx, registry.SessionOptions{TTL: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if s.ID() != "seABCDEFGH" || s.TTL() != 10*time.Second {
				t.Fatalf("session %q ttl %v", s.ID(), s.TTL())
			}
			for _, id := range []string{"web-1", "web-2"} {
				if err := s.Register(ctx, registry.Service{ID: id}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(ctx); err != nil {
				t.Fatalf("close: %v", err)
			}
			mu.Lock()
			left := len(services)
			mu.Unlock()
			if left != 0 {
				t.Fatalf("%d services left after Close", left)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatalf("second close: %v", err)
			}
			if err := s.Heartbeat(ctx); !errors.Is(err, ErrSessionClosed) || errors.Is(err, registry.ErrSessionLost) {
				t.Fatalf("heartbeat after close: %v, want ErrSessionClosed only", err)
			}
		})
	}
}

func TestCreateSessionRejectsBadOptionsAsPermanent(t *testing.T) {
	f := newFakeAPI(t)
	reg, err := New(f.config())
	if err != nil {
		t.Fatal(err)
	}
	tests := []registry.SessionOptions{
		{TTL: 2 * time.Second},
		{TTL: 31 * time.Second},
		{TTL: 10 * time.Second, Metadata: map[string]string{"k": ""}},
	}
	for _, opts := range tests {
		if _, err := reg.CreateSession(testContext(t), opts); !registry.IsPermanent(err) {
			t.Errorf("CreateSession(%+v) = %v, want a permanent error", opts, err)
		}
	}
	if n := f.auths.Load(); n != 0 {
		t.Fatalf("invalid options reached the server (%d authentications)", n)
	}
}

func TestNewRejectsMissingCredentials(t *testing.T) {
	for _, cfg := range []Config{{APIKey: "k"}, {Username: "u"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%v) accepted missing credentials", cfg)
		}
	}
}

// TestNoLogsWithoutDebug: Debug off, a debug-level logger gets no dump.
func TestNoLogsWithoutDebug(t *testing.T) {
	f := newFakeAPI(t)
	f.mux.HandleFunc("GET /v1.0/t1000/limits", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Limits{})
	})
	var logs bytes.Buffer
	log, _ := logging.New(logging.Options{Format: logging.FormatJSON, Level: "debug", Output: &logs})
	cfg := f.config()
	cfg.Logger = log
	if _, err := newTestClient(t, cfg).Limits(testContext(t)); err != nil {
		t.Fatal(err)
	}
	_ = log.Sync()
	if logs.Len() != 0 {
		t.Fatalf("logged without Debug: %s", logs.String())
	}
}
