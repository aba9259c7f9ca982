package srapi_test

// Integration tests: the client and the backend against the real
// sr-registry (internal/registrytest), and through faultproxy for the
// faults the real server cannot produce.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const (
	itUser = "integration-user"
	itKey  = "integration-api-key"

	heartbeatPath = "/v1.0/*/sessions/*/heartbeat"
	tokensPath    = "/v2.0/tokens"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func configFor(reg *registrytest.Registry) srapi.Config {
	return srapi.Config{RegistryURL: reg.URL, AuthURL: reg.AuthURL, Username: itUser, APIKey: itKey}
}

func clientFor(t *testing.T, cfg srapi.Config) *srapi.Client {
	t.Helper()
	c, err := srapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func backendFor(t *testing.T, cfg srapi.Config) *srapi.Registry {
	t.Helper()
	r, err := srapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// proxied puts a fault proxy in front of reg, registry and identity alike,
// and returns it with a config pointing at it.
func proxied(t *testing.T, reg *registrytest.Registry) (*faultproxy.Proxy, srapi.Config) {
	t.Helper()
	p := faultproxy.StartT(t, reg.URL)
	cfg := configFor(reg)
	cfg.RegistryURL = p.URL().String()
	cfg.AuthURL = "" // the registry's own identity endpoint, through the proxy
	return p, cfg
}

func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

// TestClientSpeaksEveryCall walks the whole reference through the Client.
func TestClientSpeaksEveryCall(t *testing.T) {
	reg := registrytest.Start(t)
	c := clientFor(t, configFor(reg))
	ctx := ctxFor(t, 20*time.Second)

	tenant, err := c.TenantID(ctx)
	if err != nil || tenant == "" {
		t.Fatalf("tenant %q, %v", tenant, err)
	}

	// Sessions.
	sid, tok0, err := c.CreateSession(ctx, api.CreateSessionRequest{HeartbeatTimeout: 30,
		Metadata: map[string]string{"host": "h1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sid, "se") || tok0 == "" {
		t.Fatalf("session %q token %q", sid, tok0)
	}
	s, err := c.GetSession(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != sid || s.HeartbeatTimeout != 30 || s.Metadata["host"] != "h1" {
		t.Fatalf("GetSession = %+v", s)
	}
	tok1, err := c.Heartbeat(ctx, sid, tok0)
	if err != nil || tok1 == tok0 {
		t.Fatalf("heartbeat: %q, %v", tok1, err)
	}
	// The previous token again (a retry whose reply was lost) gets the
	// same reply; the current one advances the chain.
	if again, err := c.Heartbeat(ctx, sid, tok0); err != nil || again != tok1 {
		t.Fatalf("replayed heartbeat: %q, %v; want %q", again, err, tok1)
	}
	tok2, err := c.Heartbeat(ctx, sid, tok1)
	if err != nil || tok2 == tok1 {
		t.Fatalf("heartbeat 2: %q, %v", tok2, err)
	}
	if _, err := c.Heartbeat(ctx, sid, "not-a-token"); srapi.StatusCode(err) != 400 {
		t.Fatalf("heartbeat with a foreign token: %v, want 400", err)
	}
	timeout := 20
	if err := c.UpdateSession(ctx, sid, api.UpdateSessionRequest{HeartbeatTimeout: &timeout,
		Metadata: map[string]string{"host": "h2"}}); err != nil {
		t.Fatal(err)
	}
	if s, err = c.GetSession(ctx, sid); err != nil || s.HeartbeatTimeout != 20 || s.Metadata["host"] != "h2" || s.LastSeen == nil {
		t.Fatalf("after update: %+v, %v", s, err)
	}
	sessions, err := c.ListSessions(ctx, srapi.ListOptions{})
	if err != nil || len(sessions.Values) != 1 || sessions.Values[0].ID != sid {
		t.Fatalf("ListSessions = %+v, %v", sessions, err)
	}

	// Services.
	marker := ""
	if evs, err := c.ListEvents(ctx, srapi.ListOptions{}); err != nil {
		t.Fatal(err)
	} else if n := len(evs.Values); n > 0 {
		marker = evs.Values[n-1].ID
	}
	id, err := c.CreateService(ctx, api.CreateServiceRequest{ID: "web-1", SessionID: sid,
		Tags: []string{"www", "prod"}, Metadata: map[string]string{"port": "80"}})
	if err != nil || id != "web-1" {
		t.Fatalf("CreateService = %q, %v", id, err)
	}
	if _, err := c.CreateService(ctx, api.CreateServiceRequest{ID: "db-1", SessionID: sid, Tags: []string{"db"}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateService(ctx, api.CreateServiceRequest{ID: "web-1", SessionID: sid})
	if !srapi.HasFault(err, api.FaultServiceWithThisIDExists) || !strings.Contains(err.Error(), "POST "+reg.URL+"/"+tenant+"/services: 400 serviceWithThisIdExists") {
		t.Fatalf("duplicate service: %v", err)
	}
	if _, err := c.CreateService(ctx, api.CreateServiceRequest{ID: "orphan", SessionID: "seNOPE12345"}); !srapi.IsNotFound(err) {
		t.Fatalf("service in an unknown session: %v, want 404", err)
	}
	svc, err := c.GetService(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "GetService", svc, &api.Service{ID: "web-1", SessionID: sid, Tags: []string{"www", "prod"},
		Metadata: map[string]string{"port": "80"}})
	all, err := c.ListServices(ctx, srapi.ListOptions{})
	if err != nil || len(all.Values) != 2 || all.Values[0].ID != "db-1" {
		t.Fatalf("ListServices = %+v, %v", all, err)
	}
	tagged, err := c.ListServices(ctx, srapi.ListOptions{Tag: "www"})
	if err != nil || len(tagged.Values) != 1 || tagged.Values[0].ID != "web-1" {
		t.Fatalf("ListServices(tag www) = %+v, %v", tagged, err)
	}
	if err := c.UpdateService(ctx, "web-1", api.UpdateServiceRequest{Tags: []string{"www"},
		Metadata: map[string]string{"port": "8080"}}); err != nil {
		t.Fatal(err)
	}
	if svc, err = c.GetService(ctx, "web-1"); err != nil || !slices.Equal(svc.Tags, []string{"www"}) || svc.Metadata["port"] != "8080" {
		t.Fatalf("after update: %+v, %v", svc, err)
	}
	if err := c.DeleteService(ctx, "db-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetService(ctx, "db-1"); !srapi.IsNotFound(err) {
		t.Fatalf("deleted service: %v, want 404", err)
	}

	// Configuration.
	for id, v := range map[string]string{
		"/production/cassandra/listen_ip": "10.0.0.1",
		"production/cassandra/port":       "9160",
		"/production/web/port":            "80",
		"/api_key":                        "abc",
	} {
		if err := c.SetConfiguration(ctx, id, v); err != nil {
			t.Fatalf("set %s: %v", id, err)
		}
	}
	if err := c.SetConfiguration(ctx, "/production/web/port", "8080"); err != nil {
		t.Fatal(err)
	}
	v, err := c.GetConfiguration(ctx, "/production/cassandra/port")
	if err != nil || v.ID != "/production/cassandra/port" || v.Value != "9160" {
		t.Fatalf("GetConfiguration = %+v, %v", v, err)
	}
	cfgAll, err := c.ListConfiguration(ctx, srapi.ListOptions{})
	if err != nil || len(cfgAll.Values) != 4 {
		t.Fatalf("ListConfiguration = %+v, %v", cfgAll, err)
	}
	ns, err := c.ListConfigurationNamespace(ctx, "/production/cassandra/", srapi.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "namespace", ns.Values, []api.ConfigurationValue{
		{ID: "/production/cassandra/listen_ip", Value: "10.0.0.1"}, {ID: "/production/cassandra/port", Value: "9160"}})
	if ns2, err := c.ListConfigurationNamespace(ctx, "production", srapi.ListOptions{}); err != nil || len(ns2.Values) != 3 {
		t.Fatalf("namespace production: %+v, %v", ns2, err)
	}
	if err := c.DeleteConfiguration(ctx, "/api_key"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetConfiguration(ctx, "/api_key"); !srapi.IsNotFound(err) {
		t.Fatalf("deleted value: %v", err)
	}

	// Events since the marker: the join, then the configuration changes.
	evs, err := c.ListEvents(ctx, srapi.ListOptions{Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs.Values {
		if e.ID == marker {
			continue
		}
		types = append(types, e.Type)
	}
	wantTypes := []string{api.EventServiceJoin, api.EventServiceJoin,
		api.EventConfigurationUpdate, api.EventConfigurationUpdate, api.EventConfigurationUpdate,
		api.EventConfigurationUpdate, api.EventConfigurationUpdate, api.EventConfigurationRemove}
	mustEqual(t, "event types", types, wantTypes)

	// Limits and overview.
	lim, err := c.Limits(ctx)
	if err != nil || lim.Resource.Session != 100 || lim.Resource.Service != 200 || lim.Resource.ConfigurationValue != 1000 {
		t.Fatalf("Limits = %+v, %v", lim, err)
	}
	ov, err := c.Overview(ctx, srapi.ListOptions{})
	if err != nil || len(ov.Values) != 1 || ov.Values[0].Session.ID != sid ||
		len(ov.Values[0].Services) != 1 || ov.Values[0].Services[0].ID != "web-1" {
		t.Fatalf("Overview = %+v, %v", ov, err)
	}

	// Deleting the session removes its services at once.
	if err := c.DeleteSession(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSession(ctx, sid); !srapi.IsNotFound(err) {
		t.Fatalf("deleted session: %v", err)
	}
	if _, err := c.GetService(ctx, "web-1"); !srapi.IsNotFound(err) {
		t.Fatalf("service of a deleted session: %v", err)
	}
	if _, err := c.Heartbeat(ctx, sid, tok2); !srapi.IsNotFound(err) {
		t.Fatalf("heartbeat of a deleted session: %v", err)
	}
}

// TestPaginationHelpersCrossPages lists sessions, services and
// configuration in pages of 2 through All and Each.
func TestPaginationHelpersCrossPages(t *testing.T) {
	reg := registrytest.Start(t)
	c := clientFor(t, configFor(reg))
	ctx := ctxFor(t, 20*time.Second)

	var sids, svcIDs, cfgIDs []string
	for i := range 5 {
		sid, _, err := c.CreateSession(ctx, api.CreateSessionRequest{HeartbeatTimeout: 30})
		if err != nil {
			t.Fatal(err)
		}
		sids = append(sids, sid)
		id := fmt.Sprintf("svc-%d", i)
		if _, err := c.CreateService(ctx, api.CreateServiceRequest{ID: id, SessionID: sid, Tags: []string{"even", "odd"}[i%2:][:1]}); err != nil {
			t.Fatal(err)
		}
		svcIDs = append(svcIDs, id)
		cid := fmt.Sprintf("/nsx/key-%d", i)
		if err := c.SetConfiguration(ctx, cid, "v"); err != nil {
			t.Fatal(err)
		}
		cfgIDs = append(cfgIDs, cid)
	}
	slices.Sort(sids)
	page2 := srapi.ListOptions{Limit: 2}

	sessions, err := srapi.All(ctx, c.ListSessions, page2, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sessions {
		got = append(got, s.ID)
	}
	mustEqual(t, "all sessions", got, sids)

	services, err := srapi.All(ctx, c.ListServices, page2, 0)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, s := range services {
		got = append(got, s.ID)
	}
	mustEqual(t, "all services", got, svcIDs)

	even, err := srapi.All(ctx, c.ListServices, srapi.ListOptions{Limit: 1, Tag: "even"}, 0)
	if err != nil || len(even) != 3 {
		t.Fatalf("services tagged even: %+v, %v", even, err)
	}

	first3, err := srapi.All(ctx, c.ListServices, page2, 3)
	if err != nil || len(first3) != 3 || first3[2].ID != "svc-2" {
		t.Fatalf("first 3 services: %+v, %v", first3, err)
	}

	got = got[:0]
	nsPage := func(ctx context.Context, o srapi.ListOptions) (*api.List[api.ConfigurationValue], error) {
		return c.ListConfigurationNamespace(ctx, "/nsx/", o)
	}
	for v, err := range srapi.Each(ctx, nsPage, page2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v.ID)
	}
	mustEqual(t, "namespace values", got, cfgIDs)

	cfgs, err := srapi.All(ctx, c.ListConfiguration, srapi.ListOptions{Limit: 2, Marker: "/nsx/key-3"}, 0)
	if err != nil || len(cfgs) != 2 || cfgs[0].ID != "/nsx/key-3" {
		t.Fatalf("configuration from a marker: %+v, %v", cfgs, err)
	}

	ov, err := srapi.All(ctx, c.Overview, page2, 0)
	if err != nil || len(ov) != 5 {
		t.Fatalf("overview: %d entries, %v", len(ov), err)
	}
}

// TestEventPollerFollowsTheFeed polls in pages of 2 and sees every event
// once, in order, across polls.
func TestEventPollerFollowsTheFeed(t *testing.T) {
	reg := registrytest.Start(t)
	c := clientFor(t, configFor(reg))
	ctx := ctxFor(t, 20*time.Second)

	set := func(ids ...string) {
		for _, id := range ids {
			if err := c.SetConfiguration(ctx, id, "v"); err != nil {
				t.Fatal(err)
			}
		}
	}
	changed := func(evs []api.Event) []string {
		var out []string
		for _, e := range evs {
			var ch api.ConfigurationChange
			if err := json.Unmarshal(e.Payload, &ch); err != nil {
				t.Fatalf("payload of %s: %v", e.Type, err)
			}
			out = append(out, ch.ConfigurationValueID)
		}
		return out
	}

	set("/a-1", "/a-2", "/a-3")
	p := c.NewEventPoller("", 2)
	evs, err := p.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "first poll", changed(evs), []string{"/a-1", "/a-2", "/a-3"})
	if evs, err = p.Poll(ctx); err != nil || len(evs) != 0 {
		t.Fatalf("idle poll: %v, %v", evs, err)
	}
	set("/b-1", "/b-2", "/b-3", "/b-4", "/b-5")
	if evs, err = p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "second poll", changed(evs), []string{"/b-1", "/b-2", "/b-3", "/b-4", "/b-5"})

	// A poller resumed from a saved marker carries on where that one was.
	resumed := c.NewEventPoller(p.Marker(), 0)
	set("/c-1")
	for _, poller := range []*srapi.EventPoller{p, resumed} {
		evs, err := poller.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "after /c-1", changed(evs), []string{"/c-1"})
	}
}

// TestReauthenticatesAfterRegistryRestart: tokens live in memory, so a
// restarted registry answers 401; the client gets a new token and the
// call succeeds.
func TestReauthenticatesAfterRegistryRestart(t *testing.T) {
	reg := registrytest.Start(t)
	p, cfg := proxied(t, reg)
	tokens := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: tokensPath, Action: faultproxy.Forward()})
	c := clientFor(t, cfg)
	ctx := ctxFor(t, 20*time.Second)

	if err := c.SetConfiguration(ctx, "/k-1", "before"); err != nil {
		t.Fatal(err)
	}
	b := backendFor(t, cfg)
	s, err := b.CreateSession(ctx, registry.SessionOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	reg.Restart()
	v, err := c.GetConfiguration(ctx, "/k-1")
	if err != nil || v.Value != "before" {
		t.Fatalf("after restart: %+v, %v", v, err)
	}
	// The backend's own client re-authenticates too, and the restored
	// session takes the token chain up again.
	for i := range 2 {
		if err := s.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat %d after restart: %v", i, err)
		}
	}
	if tokens.Seen() != 4 {
		t.Fatalf("%d identity requests, want 4 (two clients, each before and after the restart)", tokens.Seen())
	}
}

// TestSessionLostAfterExpiry stops heartbeating a 3 s session until the
// registry has expired it: the next heartbeat says ErrSessionLost.
func TestSessionLostAfterExpiry(t *testing.T) {
	reg := registrytest.Start(t)
	b := backendFor(t, configFor(reg))
	ctx := ctxFor(t, 20*time.Second)

	s, err := b.CreateSession(ctx, registry.SessionOptions{TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register(ctx, registry.Service{ID: "expiring"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	testsupport.EventuallyTrue(t, 10*time.Second, "the session to expire", func() bool {
		_, err := b.Client().GetSession(ctx, s.ID())
		return srapi.IsNotFound(err)
	})
	err = s.Heartbeat(ctx)
	if !errors.Is(err, registry.ErrSessionLost) || registry.IsPermanent(err) {
		t.Fatalf("heartbeat after expiry: %v, want ErrSessionLost", err)
	}
	if err := s.Register(ctx, registry.Service{ID: "late"}); !errors.Is(err, registry.ErrSessionLost) {
		t.Fatalf("register after expiry: %v, want ErrSessionLost", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close of an expired session: %v", err)
	}
}

// TestBackendLifecycle: a service registered through one session is
// ErrServiceExists for another, visible with tags and metadata, and gone
// the moment its session is closed.
func TestBackendLifecycle(t *testing.T) {
	reg := registrytest.Start(t)
	b := backendFor(t, configFor(reg))
	c := b.Client()
	ctx := ctxFor(t, 20*time.Second)

	s1, err := b.CreateSession(ctx, registry.SessionOptions{TTL: 30 * time.Second, Metadata: map[string]string{"pid": "42"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSession(ctx, s1.ID())
	if err != nil || got.HeartbeatTimeout != 30 || got.Metadata["pid"] != "42" {
		t.Fatalf("session: %+v, %v", got, err)
	}
	want := registry.Service{ID: "db1", Tags: []string{"mysql"}, Metadata: map[string]string{"port": "3306"}}
	if err := s1.Register(ctx, want); err != nil {
		t.Fatal(err)
	}
	svc, err := c.GetService(ctx, "db1")
	if err != nil || svc.SessionID != s1.ID() || !slices.Equal(svc.Tags, want.Tags) || !maps.Equal(svc.Metadata, want.Metadata) {
		t.Fatalf("service: %+v, %v", svc, err)
	}

	s2, err := b.CreateSession(ctx, registry.SessionOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Register(ctx, registry.Service{ID: "db1"})
	if !errors.Is(err, registry.ErrServiceExists) || registry.IsPermanent(err) ||
		!strings.Contains(err.Error(), "serviceWithThisIdExists") || !strings.Contains(err.Error(), s2.ID()) {
		t.Fatalf("second register: %v, want ErrServiceExists naming the call", err)
	}
	// Registering again through the session that holds it is fine (a
	// retry whose first reply was lost).
	if err := s1.Register(ctx, want); err != nil {
		t.Fatalf("re-register in the owning session: %v", err)
	}
	if err := s1.Register(ctx, registry.Service{ID: "x"}); !registry.IsPermanent(err) {
		t.Fatalf("invalid id: %v, want permanent", err)
	}

	tok := s1.(*srapi.Session).Token()
	for range 3 {
		if err := s1.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s1.(*srapi.Session).Token() == tok {
		t.Fatal("heartbeats did not advance the token")
	}

	if err := s1.Deregister(ctx, "db1"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Deregister(ctx, "db1"); err != nil {
		t.Fatalf("deregister twice: %v", err)
	}
	if err := s2.Register(ctx, registry.Service{ID: "db1"}); err != nil {
		t.Fatalf("register after deregister: %v", err)
	}

	start := time.Now()
	if err := s2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetService(ctx, "db1"); !srapi.IsNotFound(err) {
		t.Fatalf("service after Close: %v, want 404", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("close and check took %v", took)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatalf("close twice: %v", err)
	}
}

// TestHeartbeatFaults drives heartbeats through the fault proxy.
func TestHeartbeatFaults(t *testing.T) {
	reg := registrytest.Start(t)

	t.Run("500 on the 3rd heartbeat is transient and the 4th works", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		rule := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Nth: 3, Times: 1,
			Action: faultproxy.Respond(500, api.FaultInternal)})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		for i := 1; i <= 4; i++ {
			err := s.Heartbeat(ctx)
			if i != 3 {
				if err != nil {
					t.Fatalf("heartbeat %d: %v", i, err)
				}
				continue
			}
			if !srapi.IsTransient(err) || registry.IsPermanent(err) || errors.Is(err, registry.ErrSessionLost) {
				t.Fatalf("heartbeat 3: %v, want a transient error", err)
			}
			if !strings.Contains(err.Error(), "500 internalError") || !strings.Contains(err.Error(), "txnId faultproxy-") {
				t.Fatalf("heartbeat 3 error lacks the fault: %v", err)
			}
		}
		if rule.Applied() != 1 {
			t.Fatalf("rule applied %d times", rule.Applied())
		}
	})

	t.Run("401 re-authenticates and the retry succeeds", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		tokens := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: tokensPath, Action: faultproxy.Forward()})
		rule := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Nth: 2, Times: 1,
			Action: faultproxy.Respond(401, api.FaultUnauthorized)})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		for i := 1; i <= 3; i++ {
			if err := s.Heartbeat(ctx); err != nil {
				t.Fatalf("heartbeat %d: %v", i, err)
			}
		}
		if rule.Applied() != 1 || rule.Seen() != 4 || tokens.Seen() != 2 {
			t.Fatalf("401 applied %d, heartbeats seen %d, identity requests %d; want 1, 4, 2",
				rule.Applied(), rule.Seen(), tokens.Seen())
		}
	})

	t.Run("a registry's 401 even after re-authenticating is transient", func(t *testing.T) {
		// As a registry restarted twice during the registration: the
		// token is refused, and so is the new one.
		p, cfg := proxied(t, reg)
		tokens := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: tokensPath, Action: faultproxy.Forward()})
		rule := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: "/v1.0/*/services", Times: 2,
			Action: faultproxy.Respond(401, api.FaultUnauthorized)})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		err := s.Register(ctx, registry.Service{ID: "refused-twice"})
		if srapi.StatusCode(err) != 401 || !srapi.IsTransient(err) || srapi.IsPermanent(err) ||
			registry.IsPermanent(err) || errors.Is(err, registry.ErrSessionLost) {
			t.Fatalf("register: %v, want a transient 401", err)
		}
		if rule.Applied() != 2 || tokens.Seen() != 2 {
			t.Fatalf("401 applied %d times, %d identity requests; want 2 and 2", rule.Applied(), tokens.Seen())
		}
		if err := s.Register(ctx, registry.Service{ID: "refused-twice"}); err != nil {
			t.Fatalf("register again: %v", err)
		}
	})

	t.Run("a 401 from the identity service is permanent", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		p.Add(faultproxy.Rule{Method: http.MethodPost, Path: tokensPath, Action: faultproxy.Respond(401, api.FaultUnauthorized)})
		_, err := backendFor(t, cfg).CreateSession(ctxFor(t, 10*time.Second), registry.SessionOptions{TTL: 30 * time.Second})
		if srapi.StatusCode(err) != 401 || srapi.IsTransient(err) || !registry.IsPermanent(err) {
			t.Fatalf("create session with refused credentials: %v, want a permanent 401", err)
		}
	})

	t.Run("a dropped connection is transient", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		p.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Nth: 2, Times: 1, Action: faultproxy.Drop()})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		if err := s.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		err := s.Heartbeat(ctx)
		if !srapi.IsTransient(err) || !strings.Contains(err.Error(), "POST "+cfg.RegistryURL) {
			t.Fatalf("dropped heartbeat: %v, want a transient error naming the call", err)
		}
		if err := s.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat after the drop: %v", err)
		}
	})

	t.Run("a lost reply keeps the token chain", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		p.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Nth: 2, Times: 2, Action: faultproxy.DropReply()})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		for i := 1; i <= 5; i++ {
			err := s.Heartbeat(ctx)
			if lost := i == 2 || i == 3; lost != (err != nil) {
				t.Fatalf("heartbeat %d: %v", i, err)
			}
		}
	})

	t.Run("a rejected heartbeat token loses the session and frees the service id", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		p.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath, Times: 1,
			Action: faultproxy.Respond(400, api.FaultBadRequest)})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		if err := s.Register(ctx, registry.Service{ID: "rejected-token"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Heartbeat(ctx); !errors.Is(err, registry.ErrSessionLost) {
			t.Fatalf("heartbeat: %v, want ErrSessionLost", err)
		}
		s2 := newSession(t, cfg)
		if err := s2.Register(ctx, registry.Service{ID: "rejected-token"}); err != nil {
			t.Fatalf("register in a new session at once: %v", err)
		}
	})

	t.Run("a lost register reply is not a conflict with itself", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		p.Add(faultproxy.Rule{Method: http.MethodPost, Path: "/v1.0/*/services", Times: 1, Action: faultproxy.DropReply()})
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		if err := s.Register(ctx, registry.Service{ID: "lost-reply"}); !srapi.IsTransient(err) {
			t.Fatalf("first register: %v, want transient", err)
		}
		if err := s.Register(ctx, registry.Service{ID: "lost-reply"}); err != nil {
			t.Fatalf("retried register: %v", err)
		}
	})

	t.Run("registry down then up", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		p.SetDown(true)
		if err := s.Heartbeat(ctx); !srapi.IsTransient(err) {
			t.Fatalf("heartbeat while down: %v", err)
		}
		p.SetDown(false)
		if err := s.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat when up again: %v", err)
		}
	})

	t.Run("20 heartbeats share one connection", func(t *testing.T) {
		p, cfg := proxied(t, reg)
		s := newSession(t, cfg)
		ctx := ctxFor(t, 10*time.Second)
		before := p.Conns()
		for i := range 20 {
			if err := s.Heartbeat(ctx); err != nil {
				t.Fatalf("heartbeat %d: %v", i, err)
			}
		}
		if n := p.Conns() - before; n != 0 || p.Conns() != 1 {
			t.Fatalf("connections: %d in all, %d new during 20 heartbeats; want 1 and 0", p.Conns(), n)
		}
	})
}

func newSession(t *testing.T, cfg srapi.Config) *srapi.Session {
	t.Helper()
	b := backendFor(t, cfg)
	s, err := b.CreateSession(ctxFor(t, 10*time.Second), registry.SessionOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*srapi.Session)
}

// A tenant at its rate limit is refused with the seconds left in its
// window as Retry-After, and the error says so through the backend's
// wrapping (registry.RetryAfter), which is what paces the Keeper's
// retries; the session's heartbeat is still answered.
func TestRateLimitRefusalCarriesRetryAfter(t *testing.T) {
	window := registrytest.RateWindow(t, time.Hour, 10*time.Minute)
	reg := registrytest.Start(t, func(c *server.Config) { c.RateLimit = ratelimit.Limit{Requests: 1, Window: window} })
	ctx := ctxFor(t, 20*time.Second)
	s, err := backendFor(t, configFor(reg)).CreateSession(ctx, registry.SessionOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Register(ctx, registry.Service{ID: "limited"})
	if err == nil || registry.IsPermanent(err) || !strings.Contains(err.Error(), api.FaultRateLimitReached) {
		t.Fatalf("register past the limit: %v, want a transient rateLimitReached", err)
	}
	left := time.Until(ratelimit.WindowStart(time.Now(), window).Add(window))
	if ra := registry.RetryAfter(err); ra < left-2*time.Second || ra > left+2*time.Second {
		t.Fatalf("Retry-After %s, want the %s left in the window", ra, left.Round(time.Second))
	}
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatalf("heartbeat at the limit: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"86400", 24 * time.Hour},
		{"86401", 24 * time.Hour},                // bounded
		{"99999999999999999999", 24 * time.Hour}, // bounded, no overflow
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"Wed, 02 Dec 2026 15:01:30 GMT", 90 * time.Second},
		{"Wed, 02 Dec 2026 14:59:00 GMT", 0}, // already over
		{"Thu, 02 Dec 2027 15:00:00 GMT", 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := srapi.ParseRetryAfter(tt.header, now); got != tt.want {
			t.Errorf("Retry-After %q: %s, want %s", tt.header, got, tt.want)
		}
	}
}

// With APIKeyFile the client reads the key again at each authentication:
// a key rotated on disk and then in the registry is used without a
// restart, and a file that cannot be read keeps the last key, with a
// warning.
func TestKeyFileIsReadAgainAtEachAuthentication(t *testing.T) {
	account := func(key string) server.Credential {
		return server.Credential{Username: itUser, APIKey: key, Tenant: "100044"}
	}
	reg := registrytest.Start(t, registrytest.WithCredentials(account("first-key-0123")))
	keyFile := filepath.Join(t.TempDir(), "api-key")
	write := func(key string) {
		t.Helper()
		if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-key-0123")
	core, logs := observer.New(zap.InfoLevel)
	cfg := configFor(reg)
	cfg.APIKey, cfg.APIKeyFile, cfg.Logger = "first-key-0123", keyFile, zap.New(core)
	c := clientFor(t, cfg)
	ctx := ctxFor(t, 20*time.Second)
	call := func(when string) {
		t.Helper()
		if _, err := c.Limits(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	call("the first call")

	// Unreadable: the restart forgets every token, the client logs in
	// again with the key it has.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	reg.Restart()
	call("with the key file gone")
	if n := logs.FilterMessage("cannot read the API key file again; authenticating with the key read before").Len(); n != 1 {
		t.Fatalf("%d warnings of the unreadable file, want 1", n)
	}

	// Rotated: on disk first, then in the registry, whose reload ends the
	// old key's token.
	write("second-key-0123")
	reg.SetCredentials(account("second-key-0123"))
	call("after the rotation")
	if n := logs.FilterMessage("the API key file holds a new key: authenticating with it").Len(); n != 1 {
		t.Fatalf("%d notices of the new key, want 1", n)
	}
	for _, e := range logs.All() {
		if s := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(s, "first-key") || strings.Contains(s, "second-key") {
			t.Fatalf("a key in the log: %s", s)
		}
	}
}
