package srctl_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const eventsPath = "/v1.0/*/events"

// TestFollowSeesAJoinAndATimeout follows from now on: an event from before
// is not shown, a service created while following is, and so is its
// session's expiry.
func TestFollowSeesAJoinAndATimeout(t *testing.T) {
	h := setup(t)
	h.setConfig("/before/follow", "old")
	f := h.follow("events", "follow", "--interval", "100ms")
	header := f.out.waitFor(t, 10*time.Second, "ID", "TIME", "TYPE", "DETAILS")

	sid, _ := h.session(3, nil) // never heartbeated: expires in 3 s
	h.service(sid, "joiner", []string{"web"}, map[string]string{"port": "80"})
	join := f.out.waitFor(t, 10*time.Second, "service.join")
	if !strings.Contains(join, "joiner session="+sid+" tags=web metadata=port=80") {
		t.Fatalf("join line %q", join)
	}
	timeout := f.out.waitFor(t, 20*time.Second, "services.timeout")
	if !strings.Contains(timeout, "session="+sid+" services=joiner") {
		t.Fatalf("timeout line %q", timeout)
	}
	if code := f.stop(t); code != srctl.ExitOK {
		t.Fatalf("follow ended with %d after its cancellation, want 0", code)
	}
	out := f.out.snapshot()
	if len(out) != 3 || out[0] != header {
		t.Fatalf("follow printed:\n%s\nwant the header, the join and the timeout only", strings.Join(out, "\n"))
	}
	// Columns line up under the header.
	if i := strings.Index(header, "TYPE"); !strings.HasPrefix(join[i:], "service.join") || !strings.HasPrefix(timeout[i:], "services.timeout") {
		t.Errorf("columns do not line up:\n%s\n%s\n%s", header, join, timeout)
	}
	if e := f.err.String(); e != "" {
		t.Errorf("stderr: %s", e)
	}
}

// TestFollowAfterAMarkerPrintsTheAPIsEventsAsJSONLines resumes after a
// given event and stops after --limit events.
func TestFollowAfterAMarkerPrintsTheAPIsEventsAsJSONLines(t *testing.T) {
	h := setup(t)
	h.setConfig("/seen/value_a", "1")
	marker := h.lastEventID()
	h.setConfig("/new/value_b", "2")
	h.setConfig("/new/value_b", "3")
	h.setConfig("/new/value_c", "4")
	h.setConfig("/new/value_d", "5")

	f := h.follow("events", "follow", "--after", marker, "--output", "json", "--limit", "3", "--page-size", "2", "--interval", "100ms")
	if code := f.wait(t, 20*time.Second); code != srctl.ExitOK {
		t.Fatalf("follow --limit 3 ended with %d; stderr:\n%s", code, f.err.String())
	}
	feed := h.rawValues("/events?marker=" + url.QueryEscape(marker))
	out := f.out.snapshot()
	if len(out) != 3 {
		t.Fatalf("printed %d lines, want 3:\n%s", len(out), strings.Join(out, "\n"))
	}
	for i, line := range out {
		sameJSON(t, "event line", line, feed[i+1])
	}
}

// TestFollowSurvivesARegistryRestart stops the registry while following,
// starts it again, and checks that every event of the feed was printed
// once, in order.
func TestFollowSurvivesARegistryRestart(t *testing.T) {
	h := setup(t)
	f := h.follow("events", "follow", "--interval", "100ms", "--page-size", "2")
	f.out.waitFor(t, 10*time.Second, "TYPE")

	h.setConfig("/restart/value_a", "before")
	h.setConfig("/restart/value_b", "before")
	f.out.waitFor(t, 10*time.Second, "/restart/value_b")

	h.reg.Stop()
	f.err.waitFor(t, 10*time.Second, "warning: following events:", "connection refused", "retrying in")
	h.reg.Restart() // identity tokens are gone: the next poll logs in again
	f.err.waitFor(t, 15*time.Second, "note: registry reachable again; following resumes after event")

	for _, v := range []string{"c", "d", "e", "f", "g"} {
		h.setConfig("/restart/value_"+v, "after")
	}
	f.out.waitFor(t, 10*time.Second, "/restart/value_g")
	if code := f.stop(t); code != srctl.ExitOK {
		t.Fatalf("follow ended with %d, want 0", code)
	}

	var printed []string
	for _, line := range f.out.snapshot()[1:] {
		printed = append(printed, strings.Fields(line)[0])
	}
	var want []string
	for _, e := range h.rawValues("/events?marker=" + url.QueryEscape(printed[0])) {
		want = append(want, e.(map[string]any)["id"].(string))
	}
	if strings.Join(printed, " ") != strings.Join(want, " ") {
		t.Fatalf("printed events\n %v\nwant every event of the feed once, in order\n %v", printed, want)
	}
	if len(printed) != 7 {
		t.Fatalf("printed %d events, want 7", len(printed))
	}
}

// proxiedHarness puts a fault proxy between srctl and the registry.
func proxiedHarness(t *testing.T) (*harness, *faultproxy.Proxy, string) {
	t.Helper()
	h := setup(t)
	p := faultproxy.StartT(t, h.reg.URL)
	return h, p, p.URL().String()
}

// TestFollowPollsOverOnePersistentConnection counts the connections that
// reach the registry while following.
func TestFollowPollsOverOnePersistentConnection(t *testing.T) {
	h, p, proxyURL := proxiedHarness(t)
	polls := p.Add(faultproxy.Rule{Method: http.MethodGet, Path: eventsPath})
	f := h.followAt(proxyURL, "events", "follow", "--interval", "100ms")
	f.out.waitFor(t, 10*time.Second, "TYPE")
	testsupport.EventuallyTrue(t, 15*time.Second, "10 polls", func() bool { return polls.Seen() >= 10 })
	if code := f.stop(t); code != srctl.ExitOK {
		t.Fatalf("follow ended with %d", code)
	}
	if n := p.Conns(); n != 1 {
		t.Fatalf("%d polls (and the login) took %d connections, want 1", polls.Seen(), n)
	}
}

// TestFollowRetriesA401ThatReauthenticationDidNotCure answers 401 to a
// poll and to its retry after the client's new login: following goes on,
// and the event that arrived meanwhile is printed once.
func TestFollowRetriesA401ThatReauthenticationDidNotCure(t *testing.T) {
	h, p, proxyURL := proxiedHarness(t)
	f := h.followAt(proxyURL, "events", "follow", "--interval", "100ms")
	f.out.waitFor(t, 10*time.Second, "TYPE")
	logins := p.Add(faultproxy.Rule{Method: http.MethodPost, Path: "/v2.0/tokens"})
	p.Add(faultproxy.Rule{Method: http.MethodGet, Path: eventsPath, Times: 2, Action: faultproxy.Respond(http.StatusUnauthorized, api.FaultUnauthorized)})
	f.err.waitFor(t, 10*time.Second, "warning: following events:", "401 unauthorizedError")
	h.setConfig("/after/the_401", "x")
	f.out.waitFor(t, 10*time.Second, "/after/the_401")
	if code := f.stop(t); code != srctl.ExitOK {
		t.Fatalf("follow ended with %d", code)
	}
	if logins.Seen() < 1 {
		t.Fatalf("the 401 led to no new login")
	}
	if n := strings.Count(f.out.String(), "/after/the_401"); n != 1 {
		t.Fatalf("the event was printed %d times", n)
	}
}

// TestFollowStopsOnAPermanentFault: a 400 will not go away by waiting.
func TestFollowStopsOnAPermanentFault(t *testing.T) {
	h, p, proxyURL := proxiedHarness(t)
	p.Add(faultproxy.Rule{Method: http.MethodGet, Path: eventsPath, Action: faultproxy.Respond(http.StatusBadRequest, api.FaultBadRequest)})
	f := h.followAt(proxyURL, "events", "follow", "--interval", "100ms")
	if code := f.wait(t, 10*time.Second); code != srctl.ExitError {
		t.Fatalf("follow ended with %d, want 1; stderr %s", code, f.err.String())
	}
	errs := f.err.snapshot()
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "srctl: GET "+proxyURL) || !strings.Contains(errs[0], "400 badRequest") {
		t.Fatalf("stderr: %q", errs)
	}
}

// TestFollowTablePrintsEveryEventType covers the rows of the
// configuration events too.
func TestFollowTablePrintsEveryEventType(t *testing.T) {
	h := setup(t)
	h.setConfig("/production/seed_value", "x")
	marker := h.lastEventID()
	h.setConfig("/production/db_host", "10.0.0.4")
	if err := h.c.DeleteConfiguration(h.ctx(10*time.Second), "/production/db_host"); err != nil {
		t.Fatal(err)
	}
	args := []string{"events", "follow", "--after", marker, "--limit", "2", "--interval", "100ms"}
	f := h.follow(args...)
	if code := f.wait(t, 10*time.Second); code != srctl.ExitOK {
		t.Fatalf("follow ended with %d; stderr %s", code, f.err.String())
	}
	out := f.out.snapshot()
	if len(out) != 3 || !strings.Contains(out[1], `configuration_value.update  /production/db_host: (new) -> "10.0.0.4"`) ||
		!strings.Contains(out[2], `configuration_value.remove  /production/db_host: "10.0.0.4" -> (removed)`) {
		t.Fatalf("follow printed:\n%s", strings.Join(out, "\n"))
	}
}
