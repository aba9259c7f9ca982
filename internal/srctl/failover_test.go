package srctl_test

// srctl given several frontends of one registry: two fault proxies in front
// of one real sr-registry share its state, as sr-registry's frontends on
// etcd do.

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
)

const movedMsg = "registry frontend failed; moving to the next"

// deadURL is a registry URL where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String() + "/v1.0"
	_ = l.Close()
	return u
}

// twoFrontends puts two fault proxies in front of h's registry and returns
// them with the --registry list of both.
func twoFrontends(t *testing.T, h *harness) (p1, p2 *faultproxy.Proxy, list string) {
	t.Helper()
	p1 = faultproxy.StartT(t, h.reg.URL)
	p2 = faultproxy.StartT(t, h.reg.URL)
	return p1, p2, p1.URL().String() + "," + p2.URL().String()
}

func TestServicesListFromTheNextFrontend(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", []string{"web"}, nil)
	dead := deadURL(t)
	r := h.runRaw("--registry", dead+","+h.reg.URL, "--username", h.user, "--api-key", testKey, "services", "list")
	if r.code != srctl.ExitOK || !strings.Contains(r.stdout, "web1") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the list from the second frontend", r.code, r.stdout, r.stderr)
	}
	// One line says which frontend failed and why.
	if !strings.Contains(r.stderr, movedMsg) || !strings.Contains(r.stderr, dead) ||
		!strings.Contains(r.stderr, "connection refused") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("stderr %q; want one line naming the dead frontend", r.stderr)
	}
}

// TestStaleCacheWhenEveryFrontendIsDown: the cached list is the list of the
// registry, whichever frontend gave it; the warning names every frontend.
func TestStaleCacheWhenEveryFrontendIsDown(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", nil, nil)
	p1, p2, list := twoFrontends(t, h)
	args := []string{"--registry", list, "--username", h.user, "--api-key", testKey, "services", "list"}
	fresh := h.runRaw(args...)
	if fresh.code != srctl.ExitOK {
		t.Fatalf("%+v", fresh)
	}
	p1.SetDown(true)
	p2.SetDown(true)
	r := h.runRaw(args...)
	if r.code != srctl.ExitStale || r.stdout != fresh.stdout {
		t.Fatalf("exit %d, stdout %q; want 3 and the cached list %q; stderr %s", r.code, r.stdout, fresh.stdout, r.stderr)
	}
	var warning string
	for line := range strings.Lines(r.stderr) {
		if strings.HasPrefix(line, "warning: registry unreachable") {
			warning = line
		}
	}
	for _, want := range []string{"all 2 registry frontends failed", "POST http://" + p1.URL().Host + "/", "POST http://" + p2.URL().Host + "/", "showing the cached list, stale"} {
		if !strings.Contains(warning, want) {
			t.Errorf("warning %q lacks %q", warning, want)
		}
	}
}

// TestFollowGoesOnWhenItsFrontendDies: every event once, in order, across
// the death of the frontend that was being polled.
func TestFollowGoesOnWhenItsFrontendDies(t *testing.T) {
	h := setup(t)
	p1, p2, list := twoFrontends(t, h)
	f := h.followAt(list, "events", "follow", "--interval", "100ms")
	f.out.waitFor(t, 10*time.Second, "TYPE")
	h.setConfig("/before/the_death", "x")
	f.out.waitFor(t, 10*time.Second, "/before/the_death")
	if p2.Requests() != 0 {
		t.Fatalf("%d requests to the second frontend while the first works", p2.Requests())
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	h.setConfig("/after/the_death", "y")
	f.out.waitFor(t, 10*time.Second, "/after/the_death")
	f.err.waitFor(t, 10*time.Second, movedMsg, p1.URL().String())
	if code := f.stop(t); code != srctl.ExitOK {
		t.Fatalf("follow ended with %d", code)
	}
	out := f.out.String()
	if strings.Count(out, "/before/the_death") != 1 || strings.Count(out, "/after/the_death") != 1 ||
		strings.Index(out, "/before/the_death") > strings.Index(out, "/after/the_death") {
		t.Fatalf("events printed:\n%s\nwant each once, in order", out)
	}
}

// TestFollowStopsOnBadCredentialsWithSeveralFrontends: the identity
// endpoint's 401 is an answer whichever frontend gives it.
func TestFollowStopsOnBadCredentialsWithSeveralFrontends(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithCredentials(server.Credential{Username: "alice", APIKey: testKey, Tenant: "1000"}))
	p1 := faultproxy.StartT(t, reg.URL)
	p2 := faultproxy.StartT(t, reg.URL)
	h := &harness{t: t, reg: reg, user: "alice", cacheDir: t.TempDir()}
	var out, errb bytes.Buffer
	code := srctl.RunEnv(h.ctx(runTimeout), h.env(),
		[]string{"--registry", p1.URL().String() + "," + p2.URL().String(), "--username", "alice", "--api-key", "wrong", "events", "follow"}, &out, &errb)
	if code != srctl.ExitError || !strings.Contains(errb.String(), "401") || strings.Contains(errb.String(), "retrying") {
		t.Fatalf("exit %d, stderr %q; want 1 at once with the 401", code, errb.String())
	}
	if p2.Requests() != 0 {
		t.Fatalf("%d requests to the second frontend after the first refused the credentials", p2.Requests())
	}
}

func TestRegistryListUsageErrors(t *testing.T) {
	h := setup(t)
	for _, tt := range []struct{ registry, want string }{
		{h.reg.URL + ",", "srctl: --registry: registry URL 2 of 2 is empty (a stray comma?)"},
		{h.reg.URL + ",https://127.0.0.1:1/v1.0", "every URL of the list must have the same scheme"},
		{"etcd://127.0.0.1:2379,127.0.0.2:2379/sr", "srctl speaks the Service Registry API"},
	} {
		r := h.runRaw("--registry", tt.registry, "--username", h.user, "--api-key", testKey, "services", "list")
		if r.code != srctl.ExitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("--registry %s: exit %d, stderr %q; want 2 and %q", tt.registry, r.code, r.stderr, tt.want)
		}
	}
}
