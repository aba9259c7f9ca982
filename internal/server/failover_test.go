package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// The failures of a cluster: kill -9 of a frontend under load, the loss of
// one etcd member of three, the loss of etcd's quorum and its return.

// tryClient is a client of one tenant that reports failures instead of
// failing the test: under faults a call may fail, and the caller decides.
type tryClient struct {
	base, token string
	hc          *http.Client
}

func newTryClient(baseURL string, id registrytest.Identity) *tryClient {
	return &tryClient{base: baseURL + "/" + id.TenantID, token: id.Token, hc: &http.Client{Timeout: 10 * time.Second}}
}

// do sends the request and returns the status and body, or the transport
// error (status 0).
func (c *tryClient) do(method, path, body string) (int, string, http.Header, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

func TestKill9OfAFrontendUnderLoadLosesNothing(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	c := sharedCluster(t)
	url := c.URL(uniquePrefix(t))
	fronts := make([]*registrytest.Process, 3)
	for i := range fronts {
		fronts[i] = registrytest.StartProcess(t, bin, "--store", url)
	}
	id := fronts[0].Authenticate(t, "alice")
	clients := make([]*tryClient, 3)
	for i, f := range fronts {
		clients[i] = newTryClient(f.URL, id)
	}

	// Workers create a session, register a service in it, set a
	// configuration value and heartbeat, each call on the next frontend;
	// a call that fails (the killed frontend) is retried on the next one.
	// What was answered with success is recorded, to be found afterwards.
	type created struct {
		session, service, config string
	}
	const workers, rounds = 6, 12
	var (
		mu       sync.Mutex
		done     []created
		calls    atomic.Int64
		failures atomic.Int64
	)
	killAt := int64(workers * rounds) // calls made before the kill -9
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			next := w
			// call sends one request, moving to the next frontend until
			// one answers (a create retried after a lost reply may find
			// its own earlier success: want says which answers count).
			call := func(method, path, body string, want ...int) (string, http.Header) {
				for attempt := 0; attempt < 30; attempt++ {
					if calls.Add(1) == killAt {
						fronts[0].Kill9()
						close(killed)
					}
					code, reply, h, err := clients[next%3].do(method, path, body)
					next++
					for _, wc := range want {
						if code == wc {
							return reply, h
						}
					}
					if err == nil && code < 500 {
						t.Errorf("%s %s: %d %s", method, path, code, reply)
						return "", nil
					}
					failures.Add(1)
				}
				t.Errorf("%s %s: no frontend answered", method, path)
				return "", nil
			}
			for r := range rounds {
				_, h := call(http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`, http.StatusCreated)
				if h == nil {
					return
				}
				loc := h.Get("Location")
				sid := loc[strings.LastIndex(loc, "/")+1:]
				svc := fmt.Sprintf("w%d-r%02d", w, r)
				if _, h := call(http.MethodPost, "/services", fmt.Sprintf(`{"id":%q,"session_id":%q}`, svc, sid), http.StatusCreated, http.StatusBadRequest); h == nil {
					return
				}
				cfg := fmt.Sprintf("/configuration/w%d-r%02d", w, r)
				if _, h := call(http.MethodPut, cfg, `{"value":"v"}`, http.StatusNoContent); h == nil {
					return
				}
				mu.Lock()
				done = append(done, created{session: sid, service: svc, config: cfg})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("the load ended after %d calls, before the kill -9", calls.Load())
	}
	t.Logf("%d calls, %d failed and were retried on another frontend", calls.Load(), failures.Load())

	// Everything answered is there, on both survivors, and so are its
	// events; the sessions keep heartbeating.
	for _, cl := range clients[1:] {
		cc := &client{t: t, base: cl.base, token: cl.token, hc: cl.hc}
		var sessions api.List[api.Session]
		cc.do(http.MethodGet, "/sessions?limit=1000", nil).want(t, http.StatusOK).decode(t, &sessions)
		have := map[string]bool{}
		for _, s := range sessions.Values {
			have[s.ID] = true
		}
		joins := map[string]bool{}
		updates := map[string]bool{}
		for _, e := range cc.events("") {
			switch e.Type {
			case api.EventServiceJoin:
				joins[string(e.Payload)] = true
			case api.EventConfigurationUpdate:
				updates[string(e.Payload)] = true
			}
		}
		for _, d := range done {
			if !have[d.session] {
				t.Errorf("session %s was created but is gone", d.session)
			}
			cc.do(http.MethodGet, "/services/"+d.service, nil).want(t, http.StatusOK)
			cc.do(http.MethodGet, d.config, nil).want(t, http.StatusOK)
			found := false
			for p := range joins {
				found = found || strings.Contains(p, `"id":"`+d.service+`"`)
			}
			if !found {
				t.Errorf("no service.join event for %s", d.service)
			}
		}
		if len(done) != workers*rounds {
			t.Errorf("%d rounds done, want %d", len(done), workers*rounds)
		}
	}
	fronts[0].Restart()
	restarted := &client{t: t, base: fronts[0].URL + "/" + id.TenantID, token: id.Token, hc: &http.Client{Timeout: 10 * time.Second}}
	var l api.List[api.Service]
	restarted.do(http.MethodGet, "/services?limit=1000", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != workers*rounds {
		t.Errorf("the restarted frontend lists %d services, want %d", len(l.Values), workers*rounds)
	}
}

// leaderOf returns the index of the member that leads c.
func leaderOf(t *testing.T, c *etcdtest.Cluster) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, ep := range c.Endpoints() {
		st, err := c.Client().Status(ctx, ep)
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no etcd member leads")
	return -1
}

// heartbeater heartbeats one session every interval through the frontends
// in turn, following the token chain, and counts what it got.
type heartbeater struct {
	ok, unavailable, other atomic.Int64
	lastErr                atomic.Value
	stop                   chan struct{}
	done                   chan struct{}
	once                   sync.Once
}

func startHeartbeater(clients []*tryClient, sid, token string, every time.Duration) *heartbeater {
	h := &heartbeater{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for i := 0; ; i++ {
			select {
			case <-h.stop:
				return
			case <-time.After(every):
			}
			code, body, _, err := clients[i%len(clients)].do(http.MethodPost, "/sessions/"+sid+"/heartbeat", `{"token":"`+token+`"}`)
			switch {
			case err == nil && code == http.StatusOK:
				h.ok.Add(1)
				token = body[strings.Index(body, `"token":"`)+9:][:36]
			case err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, api.FaultSystemFailure):
				h.unavailable.Add(1)
			default:
				h.other.Add(1)
				h.lastErr.Store(fmt.Sprintf("%d %s %v", code, body, err))
			}
		}
	}()
	return h
}

func (h *heartbeater) end() { h.once.Do(func() { close(h.stop) }); <-h.done }

func TestLosingOneEtcdMemberOfThreeTheServiceGoesOn(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	fronts := startFrontends(t, c, 3)
	id := fronts[0].Authenticate(t, "alice")
	cs := clientsOf(t, fronts, id)
	tries := make([]*tryClient, 3)
	for i, f := range fronts {
		tries[i] = newTryClient(f.URL, id)
	}
	sid, tok := cs[0].createSession(3, nil)
	cs[0].createService("web-1", sid, nil, nil).want(t, http.StatusCreated)
	hb := startHeartbeater(tries, sid, tok, 300*time.Millisecond)
	defer hb.end()
	waitFor(t, 5*time.Second, "heartbeats", func() bool { return hb.ok.Load() >= 3 })

	// Lose the leader, the worst member to lose: a new one is elected.
	lost := leaderOf(t, c)
	c.Stop(lost)
	before := hb.ok.Load()
	waitFor(t, 10*time.Second, "heartbeats after the leader was lost", func() bool { return hb.ok.Load() >= before+5 })
	// Every frontend still answers, reads and writes.
	for i, cl := range cs {
		cl.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK)
		cl.do(http.MethodPut, fmt.Sprintf("/configuration/after-loss-%d", i), `{"value":"v"}`).want(t, http.StatusNoContent)
	}
	hb.end()
	if n := hb.other.Load(); n > 0 {
		t.Fatalf("%d heartbeats failed other than with 503 (last: %v)", n, hb.lastErr.Load())
	}
	t.Logf("heartbeats: %d ok, %d answered 503 during the election", hb.ok.Load(), hb.unavailable.Load())
	cs[1].do(http.MethodGet, "/sessions/"+sid, nil).want(t, http.StatusOK)
}

func TestLosingEtcdsQuorumAnswers503QuicklyAndSessionsOutliveIt(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	fronts := startFrontends(t, c, 3)
	id := fronts[0].Authenticate(t, "alice")
	cs := clientsOf(t, fronts, id)
	tries := make([]*tryClient, 3)
	for i, f := range fronts {
		tries[i] = newTryClient(f.URL, id)
	}
	// One session outlives the outage (its timeout is longer), one does
	// not.
	long, tok := cs[0].createSession(15, nil)
	cs[0].createService("web-1", long, nil, nil).want(t, http.StatusCreated)
	var next api.HeartbeatToken
	cs[1].heartbeat(long, tok).want(t, http.StatusOK).decode(t, &next)
	short, _ := cs[2].createSession(3, nil)
	cs[2].createService("short-1", short, nil, nil).want(t, http.StatusCreated)

	c.Stop(0)
	c.Stop(1)
	lostAt := time.Now()

	// Every call, heartbeats included, on every frontend: 503
	// systemFailureError, within the bound (2 s per etcd call, and a call
	// makes at most two in a row).
	const bound = 5 * time.Second
	calls := []struct{ method, path, body string }{
		{http.MethodPost, "/sessions/" + long + "/heartbeat", `{"token":"` + next.Token + `"}`},
		{http.MethodGet, "/sessions/" + long, ""},
		{http.MethodGet, "/services", ""},
		{http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`},
		{http.MethodPut, "/configuration/during-loss", `{"value":"v"}`},
		{http.MethodGet, "/events", ""},
	}
	var wg sync.WaitGroup
	for i, tc := range tries {
		for _, call := range calls {
			wg.Go(func() {
				start := time.Now()
				code, body, _, err := tc.do(call.method, call.path, call.body)
				took := time.Since(start)
				if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, api.FaultSystemFailure) {
					t.Errorf("frontend %d: %s %s without quorum: %d %s %v, want 503 systemFailureError", i, call.method, call.path, code, body, err)
				}
				if took > bound {
					t.Errorf("frontend %d: %s %s took %s without quorum, want within %s", i, call.method, call.path, took, bound)
				}
			})
		}
		wg.Go(func() {
			resp, err := http.Get(fronts[i].AuthURL + "/readyz")
			if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("frontend %d: /readyz without quorum: %v %v, want 503", i, resp, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// Keep quorum away for longer than the short session's timeout.
	waitFor(t, 10*time.Second, "the short session's timeout to pass", func() bool { return time.Since(lostAt) > 4*time.Second })

	c.Restart(0)
	c.Restart(1)
	// Once quorum is back, the session that outlived the outage is still
	// there with its service and its token chain; the one whose timeout
	// passed during it expires (its wrapper registers again), with one
	// event.
	waitFor(t, 15*time.Second, "the frontends to answer again", func() bool {
		code, _, _, err := tries[2].do(http.MethodGet, "/sessions/"+long, "")
		return err == nil && code == http.StatusOK
	})
	var again api.HeartbeatToken
	cs[2].heartbeat(long, next.Token).want(t, http.StatusOK).decode(t, &again)
	cs[0].do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK)
	cs[1].heartbeat(long, again.Token).want(t, http.StatusOK)
	waitFor(t, 10*time.Second, "the short session to expire", func() bool {
		return !cs[0].exists("/sessions/" + short)
	})
	checkOneTimeoutEach(t, cs[1], []string{short})
	if !cs[0].exists("/sessions/" + long) {
		t.Fatal("the session that outlived the outage expired")
	}
}
