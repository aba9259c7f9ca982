package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// These tests run in real time with the smallest timeout the API allows
// (3 s); they run in parallel so that the package stays fast.

// expiryBound is the promise: gone within one second after the timeout.
const expiryBound = time.Second

// exists reports whether GET path answers 200 (false on 404).
func (c *client) exists(path string) bool {
	c.t.Helper()
	r := c.do(http.MethodGet, path, nil)
	switch r.StatusCode {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	c.t.Fatalf("GET %s: %d %s", path, r.StatusCode, r.body)
	return false
}

// waitTimeoutEvents waits until the feed holds at least n services.timeout
// events and returns them all (the services each lists).
func waitTimeoutEvents(t testing.TB, c *client, n int) [][]api.Service {
	t.Helper()
	var evs [][]api.Service
	waitFor(t, 3*time.Second+expiryBound+3*time.Second, fmt.Sprintf("%d services.timeout events", n), func() bool {
		evs = timeoutEvents(t, c)
		return len(evs) >= n
	})
	return evs
}

func timeoutEvents(t testing.TB, c *client) [][]api.Service {
	t.Helper()
	var out [][]api.Service
	for _, e := range eventsOfType(c.events(""), api.EventServicesTimeout) {
		var svcs []api.Service
		if err := json.Unmarshal(e.Payload, &svcs); err != nil {
			t.Fatalf("services.timeout payload %s: %v", e.Payload, err)
		}
		out = append(out, svcs)
	}
	return out
}

func TestExpiryRemovesSessionAndServicesWithOneEvent(t *testing.T) {
	t.Parallel()
	forEachStore(t, testExpiryRemovesSessionAndServicesWithOneEvent)
}

func testExpiryRemovesSessionAndServicesWithOneEvent(t *testing.T, st storeKind) {
	t.Parallel()
	reg := st.start(t)
	c := newClient(t, reg, "alice")

	// A heartbeated session must outlive its timeout meanwhile.
	alive, aliveTok := c.createSession(3, nil)
	c.createService("keeper", alive, nil, nil).want(t, http.StatusCreated)

	sent := time.Now()
	sid, _ := c.createSession(3, nil)
	created := time.Now()
	c.createService("web-1", sid, []string{"www"}, nil).want(t, http.StatusCreated)
	c.createService("web-2", sid, nil, map[string]string{"k": "v"}).want(t, http.StatusCreated)

	lastBeat := time.Now()
	gone := waitFor(t, 3*time.Second+expiryBound+2*time.Second, "session expiry", func() bool {
		if time.Since(lastBeat) > time.Second {
			var next api.HeartbeatToken
			c.heartbeat(alive, aliveTok).want(t, http.StatusOK).decode(t, &next)
			aliveTok, lastBeat = next.Token, time.Now()
		}
		return !c.exists("/sessions/" + sid)
	})
	if early := gone.Sub(sent); early < 3*time.Second {
		t.Fatalf("session expired %s after its creation was sent, before its 3 s timeout", early)
	}
	if late := gone.Sub(created) - 3*time.Second; late > expiryBound {
		t.Fatalf("session expired %s after its timeout, want within %s", late, expiryBound)
	}
	for _, id := range []string{"web-1", "web-2"} {
		if c.exists("/services/" + id) {
			t.Fatalf("service %s outlived its session", id)
		}
	}
	c.heartbeat(sid, aliveTok).fault(t, http.StatusNotFound, api.FaultNotFound)

	evs := waitTimeoutEvents(t, c, 1)
	want := []api.Service{
		{ID: "web-1", SessionID: sid, Tags: []string{"www"}, Metadata: map[string]string{}},
		{ID: "web-2", SessionID: sid, Tags: []string{}, Metadata: map[string]string{"k": "v"}},
	}
	if len(evs) != 1 || !reflect.DeepEqual(evs[0], want) {
		t.Fatalf("services.timeout events %+v, want exactly one listing %+v", evs, want)
	}
	if !c.exists("/sessions/"+alive) || !c.exists("/services/keeper") {
		t.Fatal("the heartbeated session or its service disappeared")
	}
}

func TestDeleteSessionRemovesServicesAtOnceWithoutEvent(t *testing.T) {
	t.Parallel()
	forEachStore(t, testDeleteSessionRemovesServicesAtOnceWithoutEvent)
}

func testDeleteSessionRemovesServicesAtOnceWithoutEvent(t *testing.T, st storeKind) {
	t.Parallel()
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	sid, _ := c.createSession(3, nil)
	c.createService("web-1", sid, nil, nil).want(t, http.StatusCreated)
	c.createService("web-2", sid, nil, nil).want(t, http.StatusCreated)
	c.do(http.MethodDelete, "/sessions/"+sid, nil).want(t, http.StatusNoContent)
	if c.exists("/services/web-1") || c.exists("/services/web-2") {
		t.Fatal("services survived the deletion of their session")
	}
	var l api.List[api.Service]
	c.do(http.MethodGet, "/services", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 0 {
		t.Fatalf("services listed after delete: %+v", l.Values)
	}
	// The ids are free again at once.
	s2, _ := c.createSession(30, nil)
	c.createService("web-1", s2, nil, nil).want(t, http.StatusCreated)

	// A canary with the same timeout, created after the delete, expires
	// after the old session's deadline: sessions expire in deadline order,
	// so had the deleted one still been timing out, its event would be
	// there by the canary's.
	canary, _ := c.createSession(3, nil)
	c.createService("canary", canary, nil, nil).want(t, http.StatusCreated)
	evs := waitTimeoutEvents(t, c, 1)
	if len(evs) != 1 || len(evs[0]) != 1 || evs[0][0].ID != "canary" {
		t.Fatalf("services.timeout events %+v, want only the canary's: a deleted session timed out too", evs)
	}
	if !c.exists("/services/web-1") {
		t.Fatal("the re-registered service vanished")
	}
}

func TestShorterTimeoutTakesEffect(t *testing.T) {
	t.Parallel()
	forEachStore(t, testShorterTimeoutTakesEffect)
}

func testShorterTimeoutTakesEffect(t *testing.T, st storeKind) {
	t.Parallel()
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	sid, _ := c.createSession(30, nil)
	created := time.Now()
	c.do(http.MethodPut, "/sessions/"+sid, `{"heartbeat_timeout":3}`).want(t, http.StatusNoContent)
	gone := waitFor(t, 6*time.Second, "expiry after shortening the timeout", func() bool {
		return !c.exists("/sessions/" + sid)
	})
	if late := gone.Sub(created) - 3*time.Second; late > expiryBound {
		t.Fatalf("expired %s after the shortened timeout", late)
	}
}

func TestMassExpiryStaysWithinTheBound(t *testing.T) {
	t.Parallel()
	forEachStore(t, testMassExpiryStaysWithinTheBound)
}

func testMassExpiryStaysWithinTheBound(t *testing.T, st storeKind) {
	t.Parallel()
	const n = 500
	reg := st.start(t, registrytest.WithLimits(api.ResourceLimits{Session: n, Service: n}))
	c := newClient(t, reg, "alice")
	ids := make([]string, n)
	errs := make(chan error, 16)
	for w := range 16 {
		go func() {
			var err error
			defer func() { errs <- err }()
			for i := w; i < n; i += 16 {
				r := c.do(http.MethodPost, "/sessions", `{"heartbeat_timeout":3}`)
				if r.StatusCode != http.StatusCreated {
					err = fmt.Errorf("create session: %d %s", r.StatusCode, r.body)
					return
				}
				loc := r.Header.Get("Location")
				ids[i] = loc[strings.LastIndex(loc, "/")+1:]
				if r := c.createService(fmt.Sprintf("svc-%04d", i), ids[i], nil, nil); r.StatusCode != http.StatusCreated {
					err = fmt.Errorf("create service: %d %s", r.StatusCode, r.body)
					return
				}
			}
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	created := time.Now()
	// Every create answered 201 with its own id. (Counting the live
	// sessions here would race their expiry: under load the first ones
	// may time out before the last are created. That each of the n
	// existed shows again below, in its services.timeout event.)
	if distinct := len(slices.Compact(slices.Sorted(slices.Values(ids)))); distinct != n || slices.Contains(ids, "") {
		t.Fatalf("%d distinct session ids created, want %d", distinct, n)
	}
	count := func() int {
		var l api.List[api.Session]
		c.do(http.MethodGet, "/sessions?limit=1000", nil).want(t, http.StatusOK).decode(t, &l)
		return len(l.Values)
	}
	gone := waitFor(t, 3*time.Second+expiryBound+3*time.Second, "every session to expire", func() bool { return count() == 0 })
	if late := gone.Sub(created) - 3*time.Second; late > expiryBound {
		t.Fatalf("the last of %d sessions expired %s after its timeout, want within %s", n, late, expiryBound)
	}
	evs := waitTimeoutEvents(t, c, n)
	seen := map[string]bool{}
	for _, svcs := range evs {
		if len(svcs) != 1 || seen[svcs[0].ID] || !slices.Contains(ids, svcs[0].SessionID) {
			t.Fatalf("timeout event %+v: want one per created session, each with its one service", svcs)
		}
		seen[svcs[0].ID] = true
	}
	if len(evs) != n {
		t.Fatalf("%d timeout events, want %d", len(evs), n)
	}
}
