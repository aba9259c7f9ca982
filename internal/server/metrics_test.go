package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// The tests of this file read GET /metrics as Prometheus does (the text
// format, parsed by Prometheus's own parser) and check that its numbers
// follow what the test did to the registry, on both stores.

// exposition is one scrape of /metrics.
type exposition struct {
	text     string
	families map[string]*dto.MetricFamily
}

// scrapeURL GETs url and parses the exposition.
func scrapeURL(t testing.TB, url string) exposition {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, resp.StatusCode, err, body)
	}
	return parseExposition(t, string(body))
}

// scrapeHandler GETs /metrics from h itself (no network).
func scrapeHandler(t testing.TB, h http.Handler) exposition {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return parseExposition(t, rec.Body.String())
}

func parseExposition(t testing.TB, text string) exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	return exposition{text: text, families: mfs}
}

// sample returns the value of the metric name with (at least) the labels
// given as name, value pairs: a counter's or gauge's value, a histogram's
// count of observations; ok is false when there is no such series.
func (e exposition) sample(name string, labels ...string) (v float64, ok bool) {
	mf := e.families[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if labelValue(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// value is sample, failing the test when the series is missing.
func (e exposition) value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := e.sample(name, labels...)
	if !ok {
		t.Fatalf("no %s%v in /metrics:\n%s", name, labels, e.grep(name))
	}
	return v
}

// count is sample of a histogram, 0 when the series does not exist yet.
func (e exposition) count(name string, labels ...string) float64 {
	v, _ := e.sample(name, labels...)
	return v
}

// grep returns the exposition's lines that mention s.
func (e exposition) grep(s string) string {
	var out []string
	for line := range strings.Lines(e.text) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func labelValue(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// noSecrets fails the test when the exposition holds any of secrets,
// anywhere: in a label, a name or a help text.
func (e exposition) noSecrets(t testing.TB, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			t.Fatal("noSecrets: an empty secret")
		}
		if strings.Contains(e.text, s) {
			t.Errorf("/metrics holds %q:\n%s", s, e.grep(s))
		}
	}
}

const (
	mSessions   = "sr_registry_sessions"
	mServices   = "sr_registry_services"
	mHeartbeats = "sr_registry_heartbeats_total"
	mExpiries   = "sr_registry_session_expiries_total"
	mEvents     = "sr_registry_events_total"
	mRequests   = "sr_registry_http_request_duration_seconds"
	mCommits    = "sr_registry_store_commit_duration_seconds"

	heartbeatRoute = "/v1.0/{tenant}/sessions/{id}/heartbeat"
)

// A session's life as /metrics tells it: the gauges rise and fall with
// sessions and services, every accepted heartbeat counts (a refused one
// does not), every event counts by its type, the requests histogram names
// routes by their pattern, the store's commits are timed, and nothing a
// client sent (tenant, ids, tokens, keys) appears anywhere.
func TestMetricsFollowWhatTheRegistryDoes(t *testing.T) {
	forEachStore(t, func(t *testing.T, st storeKind) {
		reg := st.start(t)
		scrape := func() exposition { return scrapeURL(t, reg.AuthURL+"/metrics") }
		id := reg.Authenticate(t, "alice")
		c := clientOf(t, id)

		m0 := scrape()
		for _, name := range []string{mSessions, mServices, mHeartbeats, mExpiries} {
			if v := m0.value(t, name); v != 0 {
				t.Fatalf("%s is %v on a new registry", name, v)
			}
		}
		for _, typ := range []string{api.EventServiceJoin, api.EventServicesTimeout, api.EventConfigurationUpdate, api.EventConfigurationRemove} {
			if v := m0.value(t, mEvents, "type", typ); v != 0 {
				t.Fatalf("events of type %s: %v on a new registry", typ, v)
			}
		}
		for _, family := range []string{"go_goroutines", "process_cpu_seconds_total", "sr_registry_build_info"} {
			m0.value(t, family)
		}
		commits0 := m0.count(mCommits, "kind", "mutations")

		sid, tok := c.createSession(30, map[string]string{"host": "host-of-alice"})
		var next api.HeartbeatToken
		c.heartbeat(sid, tok).want(t, http.StatusOK).decode(t, &next)
		c.heartbeat(sid, next.Token).want(t, http.StatusOK)
		c.heartbeat(sid, "6ba7b810-9dad-11d1-80b4-00c04fd430c8").fault(t, http.StatusBadRequest, api.FaultBadRequest)
		c.createService("web-1", sid, []string{"www"}, map[string]string{"port": "8080"}).want(t, http.StatusCreated)
		c.createService("web-2", sid, nil, nil).want(t, http.StatusCreated)
		c.do(http.MethodPut, "/configuration/production/dbs", `{"value":"db-one-value"}`).want(t, http.StatusNoContent)
		c.do(http.MethodPut, "/configuration/production/dbs", `{"value":"db-two-value"}`).want(t, http.StatusNoContent)
		c.do(http.MethodDelete, "/configuration/production/dbs", nil).want(t, http.StatusNoContent)

		m1 := scrape()
		want := []struct {
			name   string
			labels []string
			v      float64
		}{
			{mSessions, nil, 1},
			{mServices, nil, 2},
			{mHeartbeats, nil, 2},
			{mExpiries, nil, 0},
			{mEvents, []string{"type", api.EventServiceJoin}, 2},
			{mEvents, []string{"type", api.EventConfigurationUpdate}, 2},
			{mEvents, []string{"type", api.EventConfigurationRemove}, 1},
			{mEvents, []string{"type", api.EventServicesTimeout}, 0},
			{mRequests, []string{"route", heartbeatRoute, "method", "POST", "code", "200"}, 2},
			{mRequests, []string{"route", heartbeatRoute, "method", "POST", "code", "400"}, 1},
			{mRequests, []string{"route", "/v1.0/{tenant}/sessions", "method", "POST", "code", "201"}, 1},
			{mRequests, []string{"route", "/v1.0/{tenant}/services", "method", "POST", "code", "201"}, 2},
			{mRequests, []string{"route", "/v1.0/{tenant}/configuration/{id}", "method", "PUT", "code", "204"}, 2},
			{mRequests, []string{"route", "/v2.0/tokens", "method", "POST", "code", "200"}, 1},
		}
		for _, w := range want {
			if got := m1.value(t, w.name, w.labels...); got != w.v {
				t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.v)
			}
		}
		// Six durable mutations: at least one commit each on etcd, fewer
		// when bbolt's group commit shares one.
		if got := m1.count(mCommits, "kind", "mutations"); got <= commits0 {
			t.Errorf("store commits %v after six mutations, %v before", got, commits0)
		}
		if st.etcd {
			if got := m1.count(mCommits, "kind", "heartbeats"); got < 2 {
				t.Errorf("etcd heartbeat transactions %v after two heartbeats", got)
			}
		}

		// Deleting the session takes its services with it, without an
		// event.
		c.do(http.MethodDelete, "/sessions/"+sid, nil).want(t, http.StatusNoContent)
		m2 := scrape()
		if s, v := m2.value(t, mSessions), m2.value(t, mServices); s != 0 || v != 0 {
			t.Errorf("after deleting the session: %v sessions, %v services, want 0 and 0", s, v)
		}
		for _, typ := range []string{api.EventServiceJoin, api.EventServicesTimeout} {
			if a, b := m1.value(t, mEvents, "type", typ), m2.value(t, mEvents, "type", typ); a != b {
				t.Errorf("events of type %s went from %v to %v on a delete", typ, a, b)
			}
		}
		if got := m2.value(t, mRequests, "route", "/v1.0/{tenant}/sessions/{id}", "method", "DELETE", "code", "204"); got != 1 {
			t.Errorf("DELETE of the session counted %v times", got)
		}
		m2.noSecrets(t, id.TenantID, id.Token, sid, tok, next.Token, "web-1", "web-2", "production", "db-one-value", "db-two-value", "alice", "host-of-alice")
	})
}

// An expiry is counted once it is durable: the counter, its
// services.timeout event, and the gauges that fall with it.
func TestSessionExpiryIsCounted(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st storeKind) {
		reg := st.start(t)
		scrape := func() exposition { return scrapeURL(t, reg.AuthURL+"/metrics") }
		c := newClient(t, reg, "alice")
		sid, _ := c.createSession(api.MinHeartbeatTimeout, nil)
		c.createService("web-1", sid, nil, nil).want(t, http.StatusCreated)
		c.createSession(30, nil) // lives on
		waitTimeoutEvents(t, c, 1)
		// The counter follows the commit's reply to the store, which can
		// come a moment after the event is readable.
		var m exposition
		waitFor(t, 5*time.Second, "the expiry to be counted", func() bool {
			m = scrape()
			return m.value(t, mExpiries) > 0
		})
		for _, w := range []struct {
			name   string
			labels []string
			v      float64
		}{
			{mExpiries, nil, 1},
			{mEvents, []string{"type", api.EventServicesTimeout}, 1},
			{mSessions, nil, 1},
			{mServices, nil, 0},
		} {
			if got := m.value(t, w.name, w.labels...); got != w.v {
				t.Errorf("%s%v = %v after one expiry, want %v", w.name, w.labels, got, w.v)
			}
		}
	})
}

// With three frontends on a three-member etcd, every frontend times every
// session and tries each expiry, but only the transaction that wins counts
// it: summed over the frontends, each expiry is counted exactly once. The
// gauges are the registry's totals, the same on every frontend; the
// heartbeat counter is each frontend's own (their registries are apart).
func TestExpiriesAreCountedOnceAcrossFrontends(t *testing.T) {
	t.Parallel()
	cluster := sharedCluster(t)
	prefix := uniquePrefix(t)
	type frontend struct {
		srv *server.Server
		url string
	}
	fronts := make([]frontend, 3)
	for i := range fronts {
		srv, err := server.New(server.Config{Dev: true, Etcd: &etcdconf.Config{Endpoints: cluster.Endpoints(), Prefix: prefix}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		waitFor(t, 20*time.Second, "the etcd store to be ready", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return srv.Ready(ctx) == nil
		})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		fronts[i] = frontend{srv: srv, url: ts.URL}
	}
	ar := devLogin(t, fronts[0].srv.Handler(), "alice")
	clients := make([]*client, len(fronts))
	for i, f := range fronts {
		clients[i] = &client{t: t, base: f.url + "/v1.0/" + ar.TenantID(), token: ar.Access.Token.ID, hc: &http.Client{Timeout: 10 * time.Second}}
	}

	// Four sessions that will expire, created and heartbeated through
	// different frontends (frontend i serves i+1 heartbeats), and one that
	// lives on.
	const expiring = 4
	for i := range expiring {
		c := clients[i%len(clients)]
		sid, _ := c.createSession(api.MinHeartbeatTimeout, nil)
		c.createService(fmt.Sprintf("web-%d", i), sid, nil, nil).want(t, http.StatusCreated)
	}
	keepID, tok := clients[0].createSession(30, nil)
	for i, c := range clients {
		for range i + 1 {
			var next api.HeartbeatToken
			c.heartbeat(keepID, tok).want(t, http.StatusOK).decode(t, &next)
			tok = next.Token
		}
	}

	waitTimeoutEvents(t, clients[1], expiring)
	sum := func(name string, labels ...string) float64 {
		var total float64
		for _, f := range fronts {
			total += scrapeURL(t, f.url+"/metrics").value(t, name, labels...)
		}
		return total
	}
	waitFor(t, 10*time.Second, "every expiry to be counted", func() bool { return sum(mExpiries) >= expiring })
	for i, f := range fronts {
		m := scrapeURL(t, f.url+"/metrics")
		if s, v := m.value(t, mSessions), m.value(t, mServices); s != 1 || v != 0 {
			t.Errorf("frontend %d: %v sessions, %v services; want the registry's 1 and 0", i, s, v)
		}
	}
	// Closing a store waits for its expiry transactions in flight: after
	// that no frontend can count an expiry late.
	for _, f := range fronts {
		if err := f.srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var expiries, timeoutEvents float64
	for i, f := range fronts {
		m := scrapeHandler(t, f.srv.Handler())
		expiries += m.value(t, mExpiries)
		timeoutEvents += m.value(t, mEvents, "type", api.EventServicesTimeout)
		if got := m.value(t, mHeartbeats); got != float64(i+1) {
			t.Errorf("frontend %d counted %v heartbeats, it served %d", i, got, i+1)
		}
		if _, ok := m.sample(mSessions); ok {
			t.Errorf("frontend %d reports a session count after its store closed", i)
		}
	}
	if expiries != expiring || timeoutEvents != expiring {
		t.Fatalf("over the three frontends: %v expiries and %v services.timeout events counted, want %d of each", expiries, timeoutEvents, expiring)
	}
}

// Every request is labelled with the pattern of its route, never its
// path: ids, tenants, junk paths and unknown methods give a bounded set
// of label values.
func TestRequestsAreLabelledByRoutePattern(t *testing.T) {
	forEachStore(t, func(t *testing.T, st storeKind) {
		reg := st.start(t)
		id := reg.Authenticate(t, "alice")
		c := clientOf(t, id)
		other := reg.Authenticate(t, "bob")
		sid, _ := c.createSession(30, nil)
		c.createService("web-1", sid, nil, nil).want(t, http.StatusCreated)
		root := strings.TrimSuffix(reg.URL, "/v1.0")
		tenant := "/v1.0/" + id.TenantID

		type req struct {
			method, path string
			auth         bool
			route        string
			code         int
		}
		reqs := []req{
			{"GET", tenant + "/sessions/" + sid, true, "/v1.0/{tenant}/sessions/{id}", 200},
			{"GET", tenant + "/sessions/seNOPE0000", true, "/v1.0/{tenant}/sessions/{id}", 404},
			{"GET", tenant + "/sessions/" + sid + "/heartbeat", true, heartbeatRoute, 405},
			{"POST", tenant + "/sessions/" + sid + "/heartbeat", false, heartbeatRoute, 401},
			{"GET", tenant + "/sessions/" + sid + "/extra", true, "unmatched", 404},
			{"GET", tenant + "/services", true, "/v1.0/{tenant}/services", 200},
			{"GET", "/v1.0/" + other.TenantID + "/services", true, "/v1.0/{tenant}/services", 403},
			{"GET", tenant + "/services/web-1", true, "/v1.0/{tenant}/services/{id}", 200},
			{"GET", tenant + "/configuration", true, "/v1.0/{tenant}/configuration", 200},
			{"GET", tenant + "/configuration/production/", true, "/v1.0/{tenant}/configuration/{namespace}/", 200},
			{"GET", tenant + "/configuration//production/dbs", true, "/v1.0/{tenant}/configuration/{id}", 404},
			{"GET", tenant + "/events", true, "/v1.0/{tenant}/events", 200},
			{"GET", tenant + "/limits", true, "/v1.0/{tenant}/limits", 200},
			{"GET", tenant + "/views/overview", true, "/v1.0/{tenant}/views/overview", 200},
			{"GET", tenant + "/views/other", true, "unmatched", 404},
			{"GET", "/healthz", false, "/healthz", 200},
			{"GET", "/readyz", false, "/readyz", 200},
			{"GET", "/ui/", false, "/ui/", 200},
			{"GET", "/ui/app.js", false, "/ui/{file}", 200},
			{"GET", "/ui/no-such-file.png", false, "/ui/{file}", 404},
			{"BREW", "/v2.0/tokens", false, "/v2.0/tokens", 405},
		}
		table := len(reqs)
		// Junk of the kind scanners send, each path different.
		for range 40 {
			var b [6]byte
			_, _ = rand.Read(b[:])
			junk := hex.EncodeToString(b[:])
			reqs = append(reqs,
				req{"GET", "/" + junk, false, "unmatched", 404},
				req{"GET", "/v1.0/" + junk + "/" + junk, false, "unmatched", 401},
			)
		}
		hc := &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		for _, r := range reqs {
			hr, err := http.NewRequest(r.method, root+r.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.auth {
				hr.Header.Set("X-Auth-Token", id.Token)
			}
			resp, err := hc.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != r.code {
				t.Fatalf("%s %s: %d, want %d", r.method, r.path, resp.StatusCode, r.code)
			}
		}

		m := scrapeURL(t, root+"/metrics")
		for _, r := range reqs[:table] {
			method := r.method
			if method == "BREW" {
				method = "other"
			}
			if got := m.count(mRequests, "route", r.route, "method", method, "code", fmt.Sprint(r.code)); got < 1 {
				t.Errorf("%s %s: no observation under route %q, method %s, code %d", r.method, r.path, r.route, method, r.code)
			}
		}
		patterns := []string{
			"unmatched", "/v2.0/tokens", "/healthz", "/readyz", "/metrics", "/", "/ui", "/ui/", "/ui/{file}",
			"/v1.0/{tenant}/sessions", "/v1.0/{tenant}/sessions/{id}", heartbeatRoute,
			"/v1.0/{tenant}/services", "/v1.0/{tenant}/services/{id}",
			"/v1.0/{tenant}/configuration", "/v1.0/{tenant}/configuration/{namespace}/", "/v1.0/{tenant}/configuration/{id}",
			"/v1.0/{tenant}/events", "/v1.0/{tenant}/limits", "/v1.0/{tenant}/views/overview",
		}
		methods := []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
		series := m.families[mRequests].GetMetric()
		for _, s := range series {
			if r := labelValue(s, "route"); !slices.Contains(patterns, r) {
				t.Errorf("route label %q is not a route pattern", r)
			}
			if v := labelValue(s, "method"); !slices.Contains(methods, v) {
				t.Errorf("method label %q", v)
			}
		}
		// 80 junk requests added two series, not 80.
		if len(series) > 40 {
			t.Errorf("%d series of %s after %d requests: cardinality follows the paths", len(series), mRequests, len(reqs))
		}
		m.noSecrets(t, id.TenantID, other.TenantID, id.Token, sid, "web-1", "seNOPE0000", "no-such-file")
	})
}

// With SeparateMetrics, /metrics is served by ServeMetrics on a listener
// of its own (with the probes), and the API listener answers 404 for it;
// stopping the metrics listener leaves the server running.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	forEachStore(t, func(t *testing.T, st storeKind) {
		srv := st.newServer(t, server.Config{Dev: true, SeparateMetrics: true})
		apiSrv := httptest.NewServer(srv.Handler())
		t.Cleanup(apiSrv.Close)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- srv.ServeMetrics(ctx, l) }()
		metricsURL := "http://" + l.Addr().String()

		status := func(method, url string) int {
			t.Helper()
			req, err := http.NewRequest(method, url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, url, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		for _, tc := range []struct {
			method, url string
			want        int
		}{
			{"GET", apiSrv.URL + "/metrics", http.StatusNotFound},
			{"GET", apiSrv.URL + "/healthz", http.StatusOK},
			{"GET", apiSrv.URL + "/readyz", http.StatusOK},
			{"GET", metricsURL + "/healthz", http.StatusOK},
			{"GET", metricsURL + "/readyz", http.StatusOK},
			{"POST", metricsURL + "/metrics", http.StatusMethodNotAllowed},
			{"GET", metricsURL + "/v2.0/tokens", http.StatusNotFound},
			{"GET", metricsURL + "/ui/", http.StatusNotFound},
		} {
			if got := status(tc.method, tc.url); got != tc.want {
				t.Errorf("%s %s: %d, want %d", tc.method, tc.url, got, tc.want)
			}
		}

		// What the API listener does shows on the metrics listener.
		ar := devLogin(t, srv.Handler(), "alice")
		c := &client{t: t, base: apiSrv.URL + "/v1.0/" + ar.TenantID(), token: ar.Access.Token.ID, hc: &http.Client{Timeout: 10 * time.Second}}
		sid, tok := c.createSession(30, nil)
		c.heartbeat(sid, tok).want(t, http.StatusOK)
		m := scrapeURL(t, metricsURL+"/metrics")
		if got := m.value(t, mHeartbeats); got != 1 {
			t.Errorf("heartbeats %v on the metrics listener after one", got)
		}
		if got := m.value(t, mSessions); got != 1 {
			t.Errorf("sessions %v on the metrics listener, want 1", got)
		}

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ServeMetrics: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("ServeMetrics did not return after its context ended")
		}
		if got := status("GET", apiSrv.URL+"/readyz"); got != http.StatusOK {
			t.Fatalf("/readyz %d after the metrics listener stopped: the server must go on", got)
		}
	})
}
