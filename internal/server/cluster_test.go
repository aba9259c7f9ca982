package server_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// The tests of this file run several frontends (sr-registry servers) on
// one three-member etcd cluster and check what must hold with N
// frontends (issue 11): any request on any frontend, one token chain,
// exactly one services.timeout event whoever is up, events paged across
// frontends, limits across frontends. The failure tests (kill -9 of a
// frontend, losing etcd members) are in failover_test.go.

// threeMembers is a three-member etcd shared by this file's tests, started
// on first use; each test's frontends have a prefix of their own.
var threeMembers = sync.OnceValues(func() (*etcdtest.Cluster, error) {
	c, stop, err := etcdtest.Launch(etcdtest.Options{Members: 3})
	if err == nil {
		stopShared = append(stopShared, stop)
	}
	return c, err
})

// stopShared stops the clusters started for the whole test binary.
var stopShared []func()

func sharedCluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	c, err := threeMembers()
	if err != nil {
		t.Fatalf("three-member etcd: %v", err)
	}
	return c
}

// startFrontends starts n in-process frontends of one registry: the same
// etcd cluster, the same fresh prefix.
func startFrontends(t *testing.T, c *etcdtest.Cluster, n int, opts ...registrytest.Option) []*registrytest.Registry {
	t.Helper()
	opts = append(opts, registrytest.WithEtcd(c.Endpoints(), uniquePrefix(t)))
	fronts := make([]*registrytest.Registry, n)
	for i := range fronts {
		fronts[i] = registrytest.Start(t, opts...)
	}
	return fronts
}

// clientsOf returns a client of id's tenant on each frontend (the token
// was issued by whichever frontend id came from).
func clientsOf(t *testing.T, fronts []*registrytest.Registry, id registrytest.Identity) []*client {
	out := make([]*client, len(fronts))
	for i, f := range fronts {
		c := clientOf(t, id)
		c.base = f.URL + "/" + id.TenantID
		out[i] = c
	}
	return out
}

func TestAnyRequestWorksOnAnyFrontend(t *testing.T) {
	fronts := startFrontends(t, sharedCluster(t), 3)
	// A token issued by A works on B and C.
	cs := clientsOf(t, fronts, fronts[0].Authenticate(t, "alice"))
	a, b, c := cs[0], cs[1], cs[2]

	// A session created on A is heartbeated on B and on C.
	sid, tok := a.createSession(30, map[string]string{"host": "h1"})
	var next api.HeartbeatToken
	b.heartbeat(sid, tok).want(t, http.StatusOK).decode(t, &next)
	c.heartbeat(sid, next.Token).want(t, http.StatusOK)

	// A service registered through A is visible on C at once; a change
	// made on B is read on A at once.
	a.createService("web-1", sid, []string{"www"}, nil).want(t, http.StatusCreated)
	var svc api.Service
	c.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK).decode(t, &svc)
	if svc.SessionID != sid || !slices.Equal(svc.Tags, []string{"www"}) {
		t.Fatalf("service on C: %+v", svc)
	}
	b.do(http.MethodPut, "/services/web-1", `{"tags":["api"]}`).want(t, http.StatusNoContent)
	a.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK).decode(t, &svc)
	if !slices.Equal(svc.Tags, []string{"api"}) {
		t.Fatalf("service on A after B's update: %+v", svc)
	}
	b.do(http.MethodPut, "/configuration/production/dbs", `{"value":"db1"}`).want(t, http.StatusNoContent)
	var cv api.ConfigurationValue
	c.do(http.MethodGet, "/configuration/production/dbs", nil).want(t, http.StatusOK).decode(t, &cv)
	if cv.Value != "db1" {
		t.Fatalf("configuration on C: %+v", cv)
	}
	// The service is taken on every frontend; deleted on C, it is gone on
	// A and free on B.
	a.createService("web-1", sid, nil, nil).fault(t, http.StatusBadRequest, api.FaultServiceWithThisIDExists)
	c.do(http.MethodDelete, "/sessions/"+sid, nil).want(t, http.StatusNoContent)
	a.do(http.MethodGet, "/services/web-1", nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	sid2, _ := b.createSession(30, nil)
	b.createService("web-1", sid2, nil, nil).want(t, http.StatusCreated)
}

func TestTheTokenChainIsSharedByEveryFrontend(t *testing.T) {
	fronts := startFrontends(t, sharedCluster(t), 3)
	cs := clientsOf(t, fronts, fronts[1].Authenticate(t, "alice"))
	sid, t0 := cs[0].createSession(30, nil)

	// Each heartbeat on the next frontend: the chain goes on.
	tokens := []string{t0}
	for i := range 6 {
		var next api.HeartbeatToken
		cs[i%3].heartbeat(sid, tokens[len(tokens)-1]).want(t, http.StatusOK).decode(t, &next)
		if slices.Contains(tokens, next.Token) {
			t.Fatalf("heartbeat %d returned a token of the chain again: %s", i, next.Token)
		}
		tokens = append(tokens, next.Token)
	}
	cur, prev := tokens[len(tokens)-1], tokens[len(tokens)-2]
	// A retry with the previous token (its reply lost) gets the same reply
	// on every frontend, and leaves the chain where it is.
	for i, c := range cs {
		var again api.HeartbeatToken
		c.heartbeat(sid, prev).want(t, http.StatusOK).decode(t, &again)
		if again.Token != cur {
			t.Fatalf("retry on frontend %d: %s, want %s", i, again.Token, cur)
		}
	}
	// Any older token is refused everywhere, by frontends whose cache saw
	// it current too.
	for _, c := range cs {
		for _, old := range tokens[:len(tokens)-2] {
			c.heartbeat(sid, old).fault(t, http.StatusBadRequest, api.FaultBadRequest)
		}
	}
	// Concurrent heartbeats with the current token on all three (one
	// client's retries racing): exactly one chain, whatever the order.
	var wg sync.WaitGroup
	replies := make([]string, 3)
	for i, c := range cs {
		wg.Go(func() {
			var r api.HeartbeatToken
			c.heartbeat(sid, cur).want(t, http.StatusOK).decode(t, &r)
			replies[i] = r.Token
		})
	}
	wg.Wait()
	if replies[0] != replies[1] || replies[1] != replies[2] || replies[0] == cur {
		t.Fatalf("concurrent heartbeats with the current token got %v: want one new token for all", replies)
	}
	cs[2].heartbeat(sid, replies[0]).want(t, http.StatusOK)
}

// expirySetup creates n sessions of timeout 3 s on the first frontend,
// each with one service, and returns their ids and when they were created.
func expirySetup(t *testing.T, c *client, n int) ([]string, time.Time) {
	t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failure string
	for i := range n {
		wg.Go(func() {
			r := c.do(http.MethodPost, "/sessions", `{"heartbeat_timeout":3}`)
			loc := r.Header.Get("Location")
			if r.StatusCode != http.StatusCreated {
				mu.Lock()
				failure = fmt.Sprintf("create session: %d %s", r.StatusCode, r.body)
				mu.Unlock()
				return
			}
			ids[i] = loc[strings.LastIndex(loc, "/")+1:]
			if r := c.createService(fmt.Sprintf("svc-%02d", i), ids[i], nil, nil); r.StatusCode != http.StatusCreated {
				mu.Lock()
				failure = fmt.Sprintf("create service: %d %s", r.StatusCode, r.body)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failure != "" {
		t.Fatal(failure)
	}
	return ids, time.Now()
}

// checkOneTimeoutEach fails unless the feed (as c reads it) holds exactly
// one services.timeout event per session, listing its one service.
func checkOneTimeoutEach(t *testing.T, c *client, ids []string) {
	t.Helper()
	evs := timeoutEvents(t, c)
	seen := map[string]int{}
	for _, svcs := range evs {
		if len(svcs) != 1 {
			t.Fatalf("services.timeout event lists %+v, want the session's one service", svcs)
		}
		seen[svcs[0].SessionID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("session %s: %d services.timeout events, want exactly 1", id, seen[id])
		}
	}
	if len(evs) != len(ids) {
		t.Errorf("%d services.timeout events, want %d", len(evs), len(ids))
	}
}

func TestExactlyOneTimeoutEventWhicheverFrontendsAreUp(t *testing.T) {
	const n = 20
	c := sharedCluster(t)
	tests := []struct {
		name string
		// stop stops some frontends right after the sessions were
		// created; it returns the frontend to check with.
		stop func(fronts []*registrytest.Registry) int
	}{
		{"all three up", func([]*registrytest.Registry) int { return 2 }},
		{"two of three stopped before the expiry", func(fronts []*registrytest.Registry) int {
			fronts[0].Stop()
			fronts[1].Stop()
			return 2
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fronts := startFrontends(t, c, 3)
			id := fronts[0].Authenticate(t, "alice")
			cs := clientsOf(t, fronts, id)
			ids, created := expirySetup(t, cs[0], n)
			check := cs[tc.stop(fronts)]
			gone := waitFor(t, 3*time.Second+expiryBound+5*time.Second, "every session to expire", func() bool {
				var l api.List[api.Session]
				check.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK).decode(t, &l)
				return len(l.Values) == 0
			})
			if late := gone.Sub(created) - 3*time.Second; late > expiryBound {
				t.Errorf("the last session expired %s after its timeout, want within %s", late, expiryBound)
			}
			checkOneTimeoutEach(t, check, ids)
		})
	}
	t.Run("every frontend down when the leases expire", func(t *testing.T) {
		t.Parallel()
		fronts := startFrontends(t, c, 3)
		id := fronts[0].Authenticate(t, "alice")
		ids, created := expirySetup(t, clientsOf(t, fronts, id)[0], n)
		for _, f := range fronts {
			f.Stop()
		}
		// Wait past the leases (no frontend watches), then start the
		// frontends again, one at a time: the first reconciles.
		waitFor(t, 10*time.Second, "the leases to expire", func() bool { return time.Since(created) > 3*time.Second+expiryBound })
		var checks []*client
		for _, f := range fronts {
			f.Restart()
			checks = append(checks, clientsOf(t, []*registrytest.Registry{f}, id)[0])
		}
		waitFor(t, 5*time.Second, "the restarted frontends to expire the sessions", func() bool {
			var l api.List[api.Session]
			checks[0].do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK).decode(t, &l)
			return len(l.Values) == 0
		})
		for _, c := range checks {
			checkOneTimeoutEach(t, c, ids)
		}
	})
}

func TestEventsPagedAcrossFrontendsAreSeenOnceInOrder(t *testing.T) {
	fronts := startFrontends(t, sharedCluster(t), 3)
	id := fronts[0].Authenticate(t, "alice")
	cs := clientsOf(t, fronts, id)
	sid, _ := cs[0].createSession(30, nil)

	// Three writers, one per frontend, append events concurrently while a
	// reader pages through the feed two at a time, alternating frontends.
	const perWriter = 15
	var wg sync.WaitGroup
	for w, c := range cs {
		wg.Go(func() {
			for i := range perWriter {
				if i%3 == 0 {
					c.createService(fmt.Sprintf("w%d-%02d", w, i), sid, nil, nil).want(t, http.StatusCreated)
				} else {
					c.do(http.MethodPut, fmt.Sprintf("/configuration/w%d-%02d", w, i), `{"value":"v"}`).want(t, http.StatusNoContent)
				}
			}
		})
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	var seen []api.Event
	marker := ""
	done := false
	for page := 0; ; page++ {
		path := "/events?limit=2"
		if marker != "" {
			path += "&marker=" + marker
		}
		var l api.List[api.Event]
		cs[page%3].do(http.MethodGet, path, nil).want(t, http.StatusOK).decode(t, &l)
		values := l.Values
		if marker != "" && len(seen) > 0 && len(values) > 0 && values[0].ID == seen[len(seen)-1].ID {
			values = values[1:] // the marker itself, seen on the page before
		}
		seen = append(seen, values...)
		switch {
		case l.Metadata.NextMarker != nil:
			marker = *l.Metadata.NextMarker
		case len(seen) > 0:
			marker = seen[len(seen)-1].ID // the end for now: poll from the last one
		}
		if done && l.Metadata.NextMarker == nil {
			break
		}
		select {
		case <-writing:
			done = true // one more pass to the end
		default:
		}
	}
	all := cs[1].events("")
	if len(all) != 3*perWriter {
		t.Fatalf("%d events, want %d", len(all), 3*perWriter)
	}
	if !slices.Equal(eventIDs(seen), eventIDs(all)) {
		t.Fatalf("paging across frontends saw %v\nthe feed holds %v", eventIDs(seen), eventIDs(all))
	}
	if !slices.IsSorted(eventIDs(all)) {
		t.Fatalf("event ids out of order: %v", eventIDs(all))
	}
}

func TestLimitsHoldAcrossFrontends(t *testing.T) {
	const limit = 4
	fronts := startFrontends(t, sharedCluster(t), 3, registrytest.WithLimits(api.ResourceLimits{Session: limit, Service: limit, ConfigurationValue: limit}))
	cs := clientsOf(t, fronts, fronts[0].Authenticate(t, "alice"))

	// Twelve creates of each kind at once, four per frontend: exactly the
	// limit succeed, the others are limitReached.
	type outcome struct{ ok, limited int }
	race := func(create func(c *client, i int) reply) outcome {
		var mu sync.Mutex
		var o outcome
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				r := create(cs[i%3], i)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case r.StatusCode == http.StatusCreated || r.StatusCode == http.StatusNoContent:
					o.ok++
				case r.StatusCode == http.StatusBadRequest && strings.Contains(string(r.body), api.FaultLimitReached):
					o.limited++
				default:
					t.Errorf("create %d: %d %s", i, r.StatusCode, r.body)
				}
			})
		}
		wg.Wait()
		return o
	}
	var sessions []string
	var mu sync.Mutex
	if o := race(func(c *client, _ int) reply {
		r := c.do(http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`)
		if r.StatusCode == http.StatusCreated {
			loc := r.Header.Get("Location")
			mu.Lock()
			sessions = append(sessions, loc[strings.LastIndex(loc, "/")+1:])
			mu.Unlock()
		}
		return r
	}); o != (outcome{limit, 12 - limit}) {
		t.Fatalf("sessions: %+v, want %d created and %d limitReached", o, limit, 12-limit)
	}
	if o := race(func(c *client, i int) reply {
		return c.createService(fmt.Sprintf("svc-%02d", i), sessions[i%limit], nil, nil)
	}); o != (outcome{limit, 12 - limit}) {
		t.Fatalf("services: %+v, want %d created and %d limitReached", o, limit, 12-limit)
	}
	if o := race(func(c *client, i int) reply {
		return c.do(http.MethodPut, fmt.Sprintf("/configuration/k%02d", i), `{"value":"v"}`)
	}); o != (outcome{limit, 12 - limit}) {
		t.Fatalf("configuration values: %+v, want %d set and %d limitReached", o, limit, 12-limit)
	}
	// Deleting one on one frontend frees a place on another.
	cs[0].do(http.MethodDelete, "/sessions/"+sessions[0], nil).want(t, http.StatusNoContent)
	cs[2].do(http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`).want(t, http.StatusCreated)
	cs[1].do(http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`).fault(t, http.StatusBadRequest, api.FaultLimitReached)
}

// Unlike bbolt's restart, which restores sessions with a fresh timeout
// and an unknown chain (boltstore's tests), restarting the frontends of an
// etcd store changes nothing: the chain goes on and the leases keep
// running.
func TestRestartingEveryFrontendKeepsChainsAndLeases(t *testing.T) {
	fronts := startFrontends(t, sharedCluster(t), 2)
	id := fronts[0].Authenticate(t, "alice")
	cs := clientsOf(t, fronts, id)
	kept, tok := cs[0].createSession(3, nil)
	var t1 api.HeartbeatToken
	cs[1].heartbeat(kept, tok).want(t, http.StatusOK).decode(t, &t1)
	idle, _ := cs[0].createSession(3, nil)
	created := time.Now()
	for _, f := range fronts {
		f.Restart()
	}
	cs = clientsOf(t, fronts, id)                     // the same token: it is in etcd
	cs[0].heartbeat(kept, tok).want(t, http.StatusOK) // the previous token replays
	cs[1].heartbeat(kept, "6ba7b810-9dad-11d1-80b4-00c04fd430c8").fault(t, http.StatusBadRequest, api.FaultBadRequest)
	var t2 api.HeartbeatToken
	cs[1].heartbeat(kept, t1.Token).want(t, http.StatusOK).decode(t, &t2)
	gone := waitFor(t, 3*time.Second+expiryBound+3*time.Second, "the idle session to expire", func() bool {
		cs[0].heartbeat(kept, t2.Token).want(t, http.StatusOK).decode(t, &t2)
		return !cs[1].exists("/sessions/" + idle)
	})
	if late := gone.Sub(created) - 3*time.Second; late > expiryBound {
		t.Fatalf("the idle session expired %s after its timeout: the restart must not have given it a fresh one", late)
	}
	if !cs[1].exists("/sessions/" + kept) {
		t.Fatal("the heartbeated session is gone")
	}
}
