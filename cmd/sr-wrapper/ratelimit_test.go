package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// A tenant that reached its rate limit keeps its wrapped services: the
// wrapper's heartbeats are neither counted nor refused, its session
// outlives several timeouts, and its deregistration at exit still goes
// through. The registry's state is read from /metrics, which the tenant's
// limit does not apply to.
func TestRateLimitedTenantKeepsItsServices(t *testing.T) {
	t.Parallel()
	const limit = 20
	window := registrytest.RateWindow(t, time.Hour, 10*time.Minute)
	reg := registrytest.Start(t, func(c *server.Config) { c.RateLimit = ratelimit.Limit{Requests: limit, Window: window} })
	acct := newAccount(t, reg.URL)
	w := startWrapper(t, cmdline(acct.flags(reg.URL, "limited"), fakeproc("--ready", "--exit-on-term", "0")...))
	w.ready()
	w.waitLog(eventWait, "service registered")

	id := reg.AuthenticateKey(t, acct.User, acct.Key)
	call := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, id.TenantURL+path, nil)
		req.Header.Set("X-Auth-Token", id.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	refused := false
	for range 2 * limit {
		code, body := call(http.MethodGet, "/services")
		if code == http.StatusBadRequest && strings.Contains(body, api.FaultRateLimitReached) {
			refused = true
			break
		}
		if code != http.StatusOK {
			t.Fatalf("GET /services: %d %s", code, body)
		}
	}
	if !refused {
		t.Fatalf("no rateLimitReached within %d requests", 2*limit)
	}

	// Two session timeouts and some heartbeats later, the tenant still
	// has its one session and service.
	beats, limited := metric(t, reg, "sr_registry_heartbeats_total"), time.Now()
	testsupport.EventuallyTrue(t, 4*ttl, "two timeouts of heartbeats", func() bool {
		return time.Since(limited) > 2*ttl && metric(t, reg, "sr_registry_heartbeats_total") >= beats+3
	})
	if s, v := metric(t, reg, "sr_registry_sessions"), metric(t, reg, "sr_registry_services"); s != 1 || v != 1 {
		t.Fatalf("%v sessions and %v services at the limit, want 1 and 1", s, v)
	}
	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("the wrapper created %d sessions, want 1 (its session was never lost)", n)
	}
	code, body := call(http.MethodGet, "/limits")
	var lim api.Limits
	if err := json.Unmarshal([]byte(body), &lim); code != http.StatusOK || err != nil {
		t.Fatalf("GET /limits at the limit: %d %s", code, body)
	}
	// Heartbeats are not in the count: the wrapper's session and service
	// creation, the GETs up to the limit, and this GET /limits.
	if r := lim.Rate["/.*"]; r.Used != limit+1 {
		t.Fatalf("used %d, want %d: heartbeats must not count", r.Used, limit+1)
	}

	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	w.waitLog(eventWait, "deregistered")
	testsupport.Eventually(t, eventWait, "the service to be deregistered", func() error {
		if v := metric(t, reg, "sr_registry_services"); v != 0 {
			return fmt.Errorf("%v services", v)
		}
		return nil
	})
}

// metric reads one unlabelled sample from the registry's /metrics.
func metric(t *testing.T, reg *registrytest.Registry, name string) float64 {
	t.Helper()
	v, ok := registrytest.Metrics(t, http.DefaultClient, reg.AuthURL+"/metrics")[name]
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	return v
}
