package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

func withRateLimit(l ratelimit.Limit) registrytest.Option {
	return func(c *server.Config) { c.RateLimit = l }
}

// rate is the tenant's rate limit as GET /limits reports it (a request
// that counts itself).
func (c *client) rate() api.RateLimit {
	c.t.Helper()
	var lim api.Limits
	c.do(http.MethodGet, "/limits", nil).want(c.t, http.StatusOK).decode(c.t, &lim)
	return lim.Rate["/.*"]
}

// untilRateLimited sends GET /sessions until one is refused with
// rateLimitReached (at most max) and returns how many were answered. The
// refusal's Retry-After is the seconds left in the tenant's window.
func (c *client) untilRateLimited(max int, window time.Duration) int {
	c.t.Helper()
	for i := range max {
		r := c.do(http.MethodGet, "/sessions", nil)
		if r.StatusCode == http.StatusOK {
			continue
		}
		f := r.fault(c.t, http.StatusBadRequest, api.FaultRateLimitReached)
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > int(window/time.Second) {
			c.t.Fatalf("Retry-After %q, want the seconds left in the window", r.Header.Get("Retry-After"))
		}
		if f.Details == "" {
			c.t.Fatalf("rateLimitReached without details: %s", r.body)
		}
		return i
	}
	c.t.Fatalf("no rateLimitReached within %d requests", max)
	return max
}

// A tenant at its rate limit is refused everything but heartbeats (never
// counted, never refused: its sessions live on), deletions of sessions
// and services, and GET /limits (counted, never refused).
func TestRateLimitSparesHeartbeats(t *testing.T) {
	forEachStore(t, testRateLimitSparesHeartbeats)
}

func testRateLimitSparesHeartbeats(t *testing.T, st storeKind) {
	const limit = 20
	window := registrytest.RateWindow(t, time.Hour, 10*time.Minute)
	reg := st.start(t, withRateLimit(ratelimit.Limit{Requests: limit, Window: window}))
	c := newClient(t, reg, "alice")
	if r, want := c.rate(), (api.RateLimit{Limit: limit, Used: 1, Window: ratelimit.FormatWindow(window)}); r != want {
		t.Fatalf("GET /limits: rate %+v, want %+v", r, want)
	}
	sid, tok := c.createSession(3, nil)                               // 2
	c.createService("web", sid, nil, nil).want(t, http.StatusCreated) // 3
	c.createService("dbs", sid, nil, nil).want(t, http.StatusCreated) // 4
	keep, keepTok := c.createSession(3, nil)                          // 5
	r := c.heartbeat(sid, tok).want(t, http.StatusOK)                 // not counted
	tok = decodeToken(t, r)
	if got := c.rate().Used; got != 6 {
		t.Fatalf("used %d after 6 counted requests and a heartbeat, want 6", got)
	}
	if n := c.untilRateLimited(2*limit, window); n != limit-6 {
		t.Fatalf("%d requests answered before rateLimitReached, want %d", n, limit-6)
	}
	// Refused requests do not count; GET /limits counts itself.
	if got := c.rate().Used; got != limit+1 {
		t.Fatalf("used %d at the limit, want %d", got, limit+1)
	}
	c.do(http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`).fault(t, http.StatusBadRequest, api.FaultRateLimitReached)
	c.do(http.MethodPut, "/configuration/x", `{"value":"1"}`).fault(t, http.StatusBadRequest, api.FaultRateLimitReached)

	// Heartbeats go on past the sessions' timeout (3 s): they are never
	// refused, so the session never expires; one at a time, every 500 ms,
	// as a wrapper's heartbeats come, for 4 s (bounded).
	deadline := time.Now().Add(4 * time.Second)
	for beats := 0; time.Now().Before(deadline); beats++ {
		r := c.heartbeat(sid, tok).want(t, http.StatusOK)
		tok = decodeToken(t, r)
		r = c.heartbeat(keep, keepTok).want(t, http.StatusOK)
		keepTok = decodeToken(t, r)
		if beats > 20 {
			t.Fatal("more heartbeats than the loop allows")
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Deregistration still works at the limit, and counts.
	c.do(http.MethodDelete, "/services/web", nil).want(t, http.StatusNoContent)
	c.do(http.MethodDelete, "/sessions/"+sid, nil).want(t, http.StatusNoContent)
	if got := c.rate().Used; got != limit+4 {
		t.Fatalf("used %d after two deletions and two GET /limits at the limit, want %d", got, limit+4)
	}
	// The other session is alive: a heartbeat of a session that expired is 404.
	c.heartbeat(keep, keepTok).want(t, http.StatusOK)
	c.heartbeat(sid, tok).fault(t, http.StatusNotFound, api.FaultNotFound)

	// Another tenant has a count of its own.
	bob := newClient(t, reg, "bob")
	if got := bob.rate().Used; got != 1 {
		t.Fatalf("bob's used %d, want 1", got)
	}
}

func decodeToken(t *testing.T, r reply) string {
	t.Helper()
	var tok api.HeartbeatToken
	r.decode(t, &tok)
	return tok.Token
}

// With etcd the count is shared by the frontends: each counts on its own
// and flushes once a second, so a frontend learns of the others' requests
// within a flush, and the tenant is refused on every frontend once the
// total reaches the limit (past it by at most what a frontend admitted
// before its flush told it the total).
func TestRateLimitHoldsAcrossFrontends(t *testing.T) {
	const limit = 100
	prefix := uniquePrefix(t)
	window := registrytest.RateWindow(t, time.Hour, 10*time.Minute)
	opts := []registrytest.Option{withRateLimit(ratelimit.Limit{Requests: limit, Window: window}), registrytest.WithEtcd(sharedEtcd.Endpoints(), prefix)}
	a, b := registrytest.Start(t, opts...), registrytest.Start(t, opts...)
	id := a.Authenticate(t, "alice")
	cs := clientsOf(t, []*registrytest.Registry{a, b}, id)
	ca, cb := cs[0], cs[1]

	const fromA = 40
	for range fromA {
		ca.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK)
	}
	// b learns of a's requests once a has flushed and then b has (b
	// flushes because its GET /limits counts). Every 200 ms, so that b's
	// own GETs stay well below the limit.
	bLimits := 0
	testsupport.Eventually(t, 10*time.Second, "frontend b to see frontend a's requests", func() error {
		bLimits++
		if got := cb.rate().Used; got != fromA+bLimits {
			time.Sleep(200 * time.Millisecond)
			return fmt.Errorf("b's used %d, want %d of a + %d of b", got, fromA, bLimits)
		}
		return nil
	})
	// a idle, b's count is exact: b answers exactly what is left.
	if n := cb.untilRateLimited(2*limit, window); n != limit-fromA-bLimits {
		t.Fatalf("b answered %d before rateLimitReached, want %d", n, limit-fromA-bLimits)
	}
	// a does not know yet: it admits requests until its next flush tells
	// it the total (the documented slack), then refuses them too. One
	// request every 50 ms, for 5 s at most.
	admitted := 0
	testsupport.Eventually(t, 5*time.Second, "frontend a to refuse", func() error {
		r := ca.do(http.MethodGet, "/sessions", nil)
		if r.StatusCode == http.StatusOK {
			admitted++
			time.Sleep(50 * time.Millisecond)
			return fmt.Errorf("admitted %d past the total", admitted)
		}
		r.fault(t, http.StatusBadRequest, api.FaultRateLimitReached)
		return nil
	})
	// One flush period's worth of a's requests (about 20 at this pace),
	// with room for a slow machine.
	if admitted > 60 {
		t.Errorf("a admitted %d requests past the limit: more than a few flushes' worth", admitted)
	}
	// Both frontends then report one total (their GET /limits count too).
	testsupport.Eventually(t, 10*time.Second, "both frontends to report the shared total", func() error {
		ua, ub := ca.rate().Used, cb.rate().Used
		// Each GET /limits counts too, so the two can differ by the
		// polls not flushed yet: a flush period's worth at most.
		if ua < limit || ub < limit || max(ua-ub, ub-ua) > 40 {
			return fmt.Errorf("used %d on a, %d on b", ua, ub)
		}
		return nil
	})
}

// The count starts again in the next window (synctest's clock: windows of
// one minute pass at once). The bbolt store, in process, no network.
func TestRateLimitWindowRollsOver(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		l := ratelimit.Limit{Requests: 3, Window: time.Minute}
		srv, err := server.New(server.Config{Dev: true, DataDir: t.TempDir(), RateLimit: l})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		h := srv.Handler()
		ar := devLogin(t, h, "alice")
		get := func(path string) *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/v1.0/"+ar.TenantID()+path, nil)
			req.Header.Set("X-Auth-Token", ar.Access.Token.ID)
			h.ServeHTTP(rec, req)
			return rec
		}
		// Start at the beginning of a window.
		time.Sleep(time.Until(ratelimit.WindowStart(time.Now(), l.Window).Add(l.Window)))
		for window := range 3 {
			for i := range 3 {
				if rec := get("/sessions"); rec.Code != http.StatusOK {
					t.Fatalf("window %d, request %d: %d %s", window, i+1, rec.Code, rec.Body)
				}
			}
			rec := get("/sessions")
			if rec.Code != http.StatusBadRequest || !bytes.Contains(rec.Body.Bytes(), []byte(api.FaultRateLimitReached)) {
				t.Fatalf("window %d, request 4: %d %s, want rateLimitReached", window, rec.Code, rec.Body)
			}
			if ra := rec.Header().Get("Retry-After"); ra != "60" {
				t.Fatalf("Retry-After %q at the start of a one-minute window, want 60", ra)
			}
			time.Sleep(59 * time.Second)
			if rec := get("/sessions"); rec.Code != http.StatusBadRequest {
				t.Fatalf("window %d, a second before its end: %d, want still refused", window, rec.Code)
			}
			time.Sleep(time.Second)
		}
	})
}
