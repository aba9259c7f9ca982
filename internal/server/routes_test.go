package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

func TestRouteOf(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"/v2.0/tokens", "/v2.0/tokens"},
		{"/v2.0/tokens/", "/v2.0/tokens"},
		{"/v2.0/tokens/x", "unmatched"},
		{"/v1.0/123/sessions", "/v1.0/{tenant}/sessions"},
		{"/v1.0/123/sessions/", "/v1.0/{tenant}/sessions"},
		{"/v1.0/123/sessions/seAbc12345", "/v1.0/{tenant}/sessions/{id}"},
		{"/v1.0/123/sessions/seAbc12345/", "/v1.0/{tenant}/sessions/{id}"},
		{"/v1.0/123/sessions/seAbc12345/heartbeat", "/v1.0/{tenant}/sessions/{id}/heartbeat"},
		{"/v1.0/123/sessions/seAbc12345/heartbeat/", "/v1.0/{tenant}/sessions/{id}/heartbeat"},
		{"/v1.0/123/sessions//heartbeat", "unmatched"},
		{"/v1.0/123/sessions/seAbc12345/other", "unmatched"},
		{"/v1.0/123/services", "/v1.0/{tenant}/services"},
		{"/v1.0/123/services/web-1", "/v1.0/{tenant}/services/{id}"},
		{"/v1.0/123/services/web-1/x", "unmatched"},
		{"/v1.0/123/configuration", "/v1.0/{tenant}/configuration"},
		{"/v1.0/123/configuration/", "/v1.0/{tenant}/configuration"},
		{"/v1.0/123/configuration//", "/v1.0/{tenant}/configuration"},
		{"/v1.0/123/configuration/configId", "/v1.0/{tenant}/configuration/{id}"},
		{"/v1.0/123/configuration//production/cassandra/port", "/v1.0/{tenant}/configuration/{id}"},
		{"/v1.0/123/configuration/production/cassandra/port", "/v1.0/{tenant}/configuration/{id}"},
		{"/v1.0/123/configuration/production/cassandra/", "/v1.0/{tenant}/configuration/{namespace}/"},
		{"/v1.0/123/configuration//production/", "/v1.0/{tenant}/configuration/{namespace}/"},
		{"/v1.0/123/events", "/v1.0/{tenant}/events"},
		{"/v1.0/123/events/", "/v1.0/{tenant}/events"},
		{"/v1.0/123/events/x", "unmatched"},
		{"/v1.0/123/limits", "/v1.0/{tenant}/limits"},
		{"/v1.0/123/views/overview", "/v1.0/{tenant}/views/overview"},
		{"/v1.0/123/views/overview/", "/v1.0/{tenant}/views/overview"},
		{"/v1.0/123/views", "unmatched"},
		{"/v1.0/123", "unmatched"},
		{"/v1.0/123/", "unmatched"},
		{"/v1.0//sessions", "unmatched"},
		{"/v1.0/", "unmatched"},
		{"/v1.0", "unmatched"},
		{"/healthz", "/healthz"},
		{"/readyz", "/readyz"},
		{"/metrics", "/metrics"},
		{"/", "/"},
		{"/ui", "/ui"},
		{"/ui/", "/ui/"},
		{"/ui/app.js", "/ui/{file}"},
		{"/ui/../../etc/passwd", "/ui/{file}"},
		{"/wp-login.php", "unmatched"},
		{"", "unmatched"},
	}
	for _, tc := range tests {
		if got := routePatterns[routeOf(tc.path)]; got != tc.want {
			t.Errorf("routeOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestMethodOf(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if got := methodNames[methodOf(m)]; got != m {
			t.Errorf("methodOf(%q) is %q", m, got)
		}
	}
	for _, m := range []string{"BREW", "get", "", "PROPFIND"} {
		if got := methodOf(m); got != methodOther {
			t.Errorf("methodOf(%q) is %q, want other", m, methodNames[got])
		}
	}
}

// routerProbe answers GET requests of an authenticated tenant on a real
// server (bbolt store), to compare what the router does with routeOf.
type routerProbe struct {
	h      http.Handler
	tenant string
	token  string
}

func newRouterProbe(tb testing.TB) *routerProbe {
	tb.Helper()
	srv, err := New(Config{Dev: true, DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	tenant := DevTenantID("alice")
	tok, err := srv.store.IssueToken(context.Background(), "alice", tenant, "")
	if err != nil {
		tb.Fatal(err)
	}
	return &routerProbe{h: srv.Handler(), tenant: tenant, token: tok.ID}
}

// unrouted reports whether GET path is answered with the fault of a path
// that no route takes (notFoundPath).
func (p *routerProbe) unrouted(path string) bool {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.URL.Path = path
	r.Header.Set(headerAuthToken, p.token)
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	var f api.Fault
	return rec.Code == http.StatusNotFound && json.Unmarshal(rec.Body.Bytes(), &f) == nil && f.Message == "Not found"
}

// routeOf says a path is unmatched exactly when the router answers that
// no route takes it: the two routings agree.
func FuzzRouteOfAgreesWithTheRouter(f *testing.F) {
	for _, rest := range []string{
		"", "sessions", "sessions/", "sessions//", "sessions/seAbc12345", "sessions/seAbc12345/",
		"sessions/seAbc12345/heartbeat", "sessions/seAbc12345/heartbeat/", "sessions//heartbeat",
		"sessions/seAbc12345/x", "sessions/a/b/c", "services", "services/", "services/web-1",
		"services/web-1/", "services/a/b", "configuration", "configuration/", "configuration//",
		"configuration/configId", "configuration//production/db/", "configuration/production/db",
		"configuration/production/", "configurationx", "events", "events/", "events/x", "limits",
		"limits/", "limits/x", "views", "views/", "views/overview", "views/overview/", "views/x",
		"other", "/", "//sessions", "sessions/%2F/heartbeat",
	} {
		f.Add(rest)
	}
	p := newRouterProbe(f)
	f.Fuzz(func(t *testing.T, rest string) {
		path := "/v1.0/" + p.tenant + "/" + rest
		unmatched := routeOf(path) == routeUnmatched
		if unrouted := p.unrouted(path); unrouted != unmatched {
			t.Fatalf("GET %q: the router answers not-found-path %v, routeOf says %q", path, unrouted, routePatterns[routeOf(path)])
		}
	})
}

// The paths outside a tenant agree too (the dashboard's 404s are its own,
// under its route).
func TestRouteOfAgreesWithTheRouterOutsideTenants(t *testing.T) {
	p := newRouterProbe(t)
	for _, path := range []string{
		"/", "/ui", "/ui/", "/v2.0/tokens", "/v2.0/tokens/", "/v2.0/tokens/x", "/v2.0", "/v1.0", "/v1.0/",
		"/v1.0//sessions", "/healthz", "/healthz/", "/readyz", "/metrics", "/metrics/", "/x", "/.env",
	} {
		unmatched := routeOf(path) == routeUnmatched
		if unrouted := p.unrouted(path); unrouted != unmatched {
			t.Errorf("GET %q: the router answers not-found-path %v, routeOf says %q", path, unrouted, routePatterns[routeOf(path)])
		}
	}
}
