package srapi_test

// A registry given as several frontends. Frontends that share state (as
// sr-registry's do on etcd) are two fault proxies in front of one real
// registry; frontends that do not are two real registries.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

const movedMsg = "registry frontend failed; moving to the next"

// frontends puts two fault proxies in front of reg, as two frontends of one
// registry, and returns them with a configuration listing both, first p1.
func frontends(t *testing.T, reg *registrytest.Registry) (p1, p2 *faultproxy.Proxy, cfg srapi.Config) {
	t.Helper()
	p1 = faultproxy.StartT(t, reg.URL)
	p2 = faultproxy.StartT(t, reg.URL)
	cfg = configFor(reg)
	cfg.RegistryURL = p1.URL().String() + "," + p2.URL().String()
	cfg.AuthURL = "" // each frontend's own identity endpoint
	return p1, p2, cfg
}

// count adds a rule that counts method requests to path.
func count(p *faultproxy.Proxy, method, path string) *faultproxy.Handle {
	return p.Add(faultproxy.Rule{Method: method, Path: path})
}

// TestFailoverKeepsTheSessionAndItsTokenChain: the frontend that created
// the session dies; heartbeats go on through the other, in the same
// session, each token following the last.
func TestFailoverKeepsTheSessionAndItsTokenChain(t *testing.T) {
	reg := registrytest.Start(t)
	p1, p2, cfg := frontends(t, reg)
	direct := clientFor(t, configFor(reg))
	created := count(p1, http.MethodPost, "/v1.0/*/sessions")
	beats2 := count(p2, http.MethodPost, heartbeatPath)
	ctx := ctxFor(t, 20*time.Second)

	s := newSession(t, cfg)
	if err := s.Register(ctx, registry.Service{ID: "fails-over"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if created.Seen() != 1 || p2.Requests() != 0 {
		t.Fatalf("session created through the first frontend %d times, %d requests to the second; want 1 and 0", created.Seen(), p2.Requests())
	}

	if err := p1.Close(); err != nil { // the frontend in use dies
		t.Fatal(err)
	}
	for i := range 3 {
		before := s.Token()
		if err := s.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat %d after the first frontend died: %v", i+1, err)
		}
		if s.Token() == before {
			t.Fatalf("heartbeat %d: the token chain did not advance", i+1)
		}
	}
	if beats2.Seen() != 3 {
		t.Fatalf("%d heartbeats through the second frontend, want 3", beats2.Seen())
	}
	got, err := direct.GetService(ctx, "fails-over")
	if err != nil || got.SessionID != s.ID() {
		t.Fatalf("service after the failover: %+v, %v; want it in session %s", got, err, s.ID())
	}
	if l, err := direct.ListSessions(ctx, srapi.ListOptions{}); err != nil || len(l.Values) != 1 || l.Values[0].ID != s.ID() {
		t.Fatalf("sessions after the failover: %+v, %v; want %s alone", l, err, s.ID())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close through the second frontend: %v", err)
	}
	if _, err := direct.GetService(ctx, "fails-over"); !srapi.IsNotFound(err) {
		t.Fatalf("service after close: %v, want 404", err)
	}
}

// TestFailoverRetriesALostHeartbeatReplyOnTheNextFrontend: the first
// frontend takes a heartbeat and dies before replying; the same token sent
// to the next one gets the same reply, and the chain goes on.
func TestFailoverRetriesALostHeartbeatReplyOnTheNextFrontend(t *testing.T) {
	reg := registrytest.Start(t)
	p1, p2, cfg := frontends(t, reg)
	lost := p1.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Times: 1, Action: faultproxy.DropReply()})
	beats2 := count(p2, http.MethodPost, heartbeatPath)
	s := newSession(t, cfg)
	ctx := ctxFor(t, 10*time.Second)
	for i := range 3 {
		if err := s.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat %d: %v", i+1, err)
		}
	}
	// The server took the first beat through p1 (its reply lost), then the
	// same token again through p2: had it refused the replay, the session
	// would be lost (400) rather than beat twice more.
	if lost.Applied() != 1 || lost.Seen() != 1 || beats2.Seen() != 3 {
		t.Fatalf("heartbeats: %d through the first frontend (%d reply lost), %d through the second; want 1 (1), 3",
			lost.Seen(), lost.Applied(), beats2.Seen())
	}
}

// TestFailoverOn5xxSticksToTheFrontendThatWorks: a 5xx moves the client on,
// and it stays on the frontend that works, even once the first is well
// again, until that one fails in turn.
func TestFailoverOn5xxSticksToTheFrontendThatWorks(t *testing.T) {
	reg := registrytest.Start(t)
	p1, p2, cfg := frontends(t, reg)
	sick := p1.Add(faultproxy.Rule{Action: faultproxy.Respond(http.StatusServiceUnavailable, api.FaultSystemFailure)})
	c := clientFor(t, cfg)
	ctx := ctxFor(t, 20*time.Second)
	for i := range 5 {
		if _, err := c.Limits(ctx); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	// The identity request met the 503 and went on; nothing came back.
	if p1.Requests() != 1 || sick.Applied() != 1 {
		t.Fatalf("%d requests to the failing frontend, want 1 (the first)", p1.Requests())
	}
	p1.Remove(sick)
	if _, err := c.Limits(ctx); err != nil || p1.Requests() != 1 {
		t.Fatalf("with both well: %v, %d requests to the first frontend; want the second still in use", err, p1.Requests())
	}
	p2.SetDown(true)
	if _, err := c.Limits(ctx); err != nil {
		t.Fatalf("second frontend down: %v", err)
	}
	if p1.Requests() != 2 {
		t.Fatalf("%d requests to the first frontend, want 2: back to it when the second failed", p1.Requests())
	}
}

// TestFailoverNeverOn4xx: a 4xx is the registry's answer, whichever
// frontend gives it.
func TestFailoverNeverOn4xx(t *testing.T) {
	reg := registrytest.Start(t)
	for _, tt := range []struct {
		status int
		fault  string
	}{
		{http.StatusBadRequest, api.FaultBadRequest},
		{http.StatusBadRequest, api.FaultRateLimitReached},
		{http.StatusUnauthorized, api.FaultUnauthorized},
		{http.StatusForbidden, api.FaultForbidden},
		{http.StatusNotFound, api.FaultNotFound},
		{http.StatusTooManyRequests, ""},
	} {
		t.Run(tt.fault+" "+http.StatusText(tt.status), func(t *testing.T) {
			p1, p2, cfg := frontends(t, reg)
			c := clientFor(t, cfg)
			ctx := ctxFor(t, 10*time.Second)
			if _, err := c.Limits(ctx); err != nil { // authenticated, through p1
				t.Fatal(err)
			}
			p1.Add(faultproxy.Rule{Method: http.MethodGet, Path: "/v1.0/*/limits", Action: faultproxy.Respond(tt.status, tt.fault)})
			_, err := c.Limits(ctx)
			if srapi.StatusCode(err) != tt.status {
				t.Fatalf("error %v, want the first frontend's %d", err, tt.status)
			}
			if _, ok := errors.AsType[*srapi.FrontendsError](err); ok || p2.Requests() != 0 {
				t.Fatalf("failed over on a %d: %v, %d requests to the second frontend", tt.status, err, p2.Requests())
			}
		})
	}
}

// TestFailoverWhenEveryFrontendFails: the error names every frontend and
// what each did, and stays transient; the single-URL form keeps its own
// error.
func TestFailoverWhenEveryFrontendFails(t *testing.T) {
	reg := registrytest.Start(t)
	p1, p2, cfg := frontends(t, reg)
	s := newSession(t, cfg)
	p1.SetDown(true)
	sick := p2.Add(faultproxy.Rule{Action: faultproxy.Respond(http.StatusServiceUnavailable, api.FaultSystemFailure)})
	ctx := ctxFor(t, 20*time.Second)

	err := s.Heartbeat(ctx)
	fe, ok := errors.AsType[*srapi.FrontendsError](err)
	if !ok || len(fe.Errs) != 2 {
		t.Fatalf("heartbeat with both frontends failing: %v, want a FrontendsError of 2", err)
	}
	for _, want := range []string{
		"all 2 registry frontends failed: ",
		"POST " + p1.URL().String() + "/",
		"POST " + p2.URL().String() + "/",
		"503 systemFailureError",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !srapi.IsTransient(err) || registry.IsPermanent(err) || errors.Is(err, registry.ErrSessionLost) {
		t.Fatalf("error %v: want transient, not permanent, not session lost", err)
	}

	p2.Remove(sick)
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatalf("heartbeat once the second frontend is well: %v", err)
	}

	one := cfg
	one.RegistryURL = p1.URL().String()
	_, err = clientFor(t, one).Limits(ctx)
	if _, ok := errors.AsType[*srapi.FrontendsError](err); ok || !srapi.IsTransient(err) {
		t.Fatalf("one URL, down: %v, want its own transient error", err)
	}
}

// TestFailoverFromAHungFrontend: a frontend that accepts and never answers
// costs the call that meets it its deadline; the next call goes to the
// next frontend.
func TestFailoverFromAHungFrontend(t *testing.T) {
	reg := registrytest.Start(t)
	p1, p2, cfg := frontends(t, reg)
	s := newSession(t, cfg)
	p1.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Action: faultproxy.Delay(time.Hour)})
	beats2 := count(p2, http.MethodPost, heartbeatPath)

	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Heartbeat(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("heartbeat at the hung frontend: %v, want the caller's deadline", err)
	}
	if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil || beats2.Seen() != 1 {
		t.Fatalf("next heartbeat: %v, %d through the second frontend; want it there", err, beats2.Seen())
	}
}

// TestFailoverOnceUnderConcurrentCalls: calls in flight together when the
// frontend dies move on together, with one log line.
func TestFailoverOnceUnderConcurrentCalls(t *testing.T) {
	reg := registrytest.Start(t)
	p1, _, cfg := frontends(t, reg)
	core, logs := observer.New(zap.InfoLevel)
	cfg.Logger = zap.New(core)
	c := clientFor(t, cfg)
	ctx := ctxFor(t, 20*time.Second)
	if _, err := c.Limits(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
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
	moved := logs.FilterMessage(movedMsg).All()
	if len(moved) != 1 {
		t.Fatalf("%d %q lines, want 1: %v", len(moved), movedMsg, moved)
	}
	if f := moved[0].ContextMap(); f["frontend"] != p1.URL().String() || !strings.Contains(f["error"].(string), "GET "+p1.URL().String()+"/") {
		t.Fatalf("log line %v: want the dead frontend and why", f)
	}
}

// TestFailoverBetweenRegistriesThatShareNothing: two real registries, one
// stopped. Each frontend is its own identity endpoint, so the client logs
// in again at the one it moved to (the other's token means nothing there),
// including when the first is down from the start.
func TestFailoverBetweenRegistriesThatShareNothing(t *testing.T) {
	a, b := registrytest.Start(t), registrytest.Start(t)
	ctx := ctxFor(t, 30*time.Second)
	for reg, v := range map[*registrytest.Registry]string{a: "a", b: "b"} {
		if err := clientFor(t, configFor(reg)).SetConfiguration(ctx, "/where", v); err != nil {
			t.Fatal(err)
		}
	}
	cfg := srapi.Config{RegistryURL: a.URL + "," + b.URL, Username: itUser, APIKey: itKey}
	where := func(c *srapi.Client) string {
		t.Helper()
		v, err := c.GetConfiguration(ctx, "/where")
		if err != nil {
			t.Fatal(err)
		}
		return v.Value
	}
	c := clientFor(t, cfg)
	if got := where(c); got != "a" {
		t.Fatalf("first frontend: %q", got)
	}
	a.Stop()
	if got := where(c); got != "b" {
		t.Fatalf("after the first stopped: %q, want the second's", got)
	}
	if got := where(clientFor(t, cfg)); got != "b" {
		t.Fatalf("a new client while the first is down: %q, want the second's", got)
	}
	a.Restart()
	if got := where(c); got != "b" {
		t.Fatalf("after the first came back: %q, want the second still", got)
	}
	b.Stop()
	if got := where(c); got != "a" {
		t.Fatalf("after the second stopped: %q, want the first again", got)
	}
}
