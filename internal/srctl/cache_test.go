package srctl_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
)

// staleWarning is the one line on stderr when the cached list is shown.
var staleWarning = regexp.MustCompile(`^warning: registry unreachable \((.+)\); showing the cached list, stale, from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((\d+[smhd])+ ago\)\n$`)

func TestStaleCacheShownWhenTheRegistryIsStopped(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", []string{"web"}, map[string]string{"port": "80"})
	h.service(sid, "web2", []string{"web"}, nil)
	h.service(sid, "db1", []string{"db"}, nil)
	fresh := h.ok("services", "list")
	freshWeb := h.ok("services", "list", "--tag", "web", "-o", "json")

	files, err := filepath.Glob(filepath.Join(h.cacheDir, "*"))
	if err != nil || len(files) != 1 || !strings.HasPrefix(filepath.Base(files[0]), "services-") {
		t.Fatalf("cache directory holds %v (%v); want one services-*.json", files, err)
	}
	fi, err := os.Stat(files[0])
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file %v, %v; want mode 0600", fi.Mode(), err)
	}
	body, err := os.ReadFile(files[0])
	if err != nil || strings.Contains(string(body), testKey) {
		t.Fatalf("cache file holds the API key, or %v", err)
	}

	h.reg.Stop()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"table", []string{"services", "list"}, fresh},
		{"json with a tag", []string{"services", "list", "--tag", "web", "-o", "json"}, freshWeb},
		{"limit", []string{"services", "list", "--limit", "1"}, "ID   SESSION     TAGS  METADATA\ndb1  " + sid + "  db    -\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.run(tt.args...)
			if r.code != srctl.ExitStale {
				t.Fatalf("exit %d, want 3; stderr %s", r.code, r.stderr)
			}
			m := staleWarning.FindStringSubmatch(r.stderr)
			if m == nil || !strings.Contains(m[1], "connection refused") {
				t.Fatalf("stderr %q; want the stale warning naming the error", r.stderr)
			}
			if r.stdout != tt.want {
				t.Fatalf("stdout:\n%s\nwant the cached list:\n%s", r.stdout, tt.want)
			}
		})
	}

	t.Run("no cache for another user", func(t *testing.T) {
		r := h.runRaw("--registry", h.reg.URL, "--username", "bob", "--api-key", testKey, "services", "list")
		if r.code != srctl.ExitError || r.stdout != "" || !strings.HasPrefix(r.stderr, `srctl: authenticate as "bob": POST `) ||
			!strings.Contains(r.stderr, "connection refused") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("%+v; want exit 1 and the error alone", r)
		}
	})
	t.Run("other commands have no cache", func(t *testing.T) {
		if r := h.run("sessions", "list"); r.code != srctl.ExitError || r.stdout != "" {
			t.Fatalf("%+v", r)
		}
	})
}

// TestStaleCacheShownOnServerFailureNotOnRefusal: a 5xx is an unreachable
// registry, a 4xx an answer.
func TestStaleCacheShownOnServerFailureNotOnRefusal(t *testing.T) {
	h, p, proxyURL := proxiedHarness(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", nil, nil)
	list := func() result {
		return h.runRaw("--registry", proxyURL, "--username", h.user, "--api-key", testKey, "-o", "json", "services", "list")
	}
	fresh := list()
	if fresh.code != 0 {
		t.Fatalf("%+v", fresh)
	}

	rule := p.Add(faultproxy.Rule{Method: http.MethodGet, Path: "/v1.0/*/services", Action: faultproxy.Respond(http.StatusServiceUnavailable, api.FaultSystemFailure)})
	r := list()
	m := staleWarning.FindStringSubmatch(r.stderr)
	if r.code != srctl.ExitStale || m == nil || !strings.Contains(m[1], "503 systemFailureError") || r.stdout != fresh.stdout {
		t.Fatalf("on a 503: %+v", r)
	}
	p.Remove(rule)

	p.Add(faultproxy.Rule{Method: http.MethodGet, Path: "/v1.0/*/services", Action: faultproxy.Respond(http.StatusForbidden, api.FaultForbidden)})
	r = list()
	if r.code != srctl.ExitError || r.stdout != "" || !strings.Contains(r.stderr, "403 forbiddenError") || strings.Contains(r.stderr, "warning") {
		t.Fatalf("on a 403: %+v", r)
	}
}

// TestPartialListsDoNotReplaceTheCache: a list cut by --limit is not the
// whole list.
func TestPartialListsDoNotReplaceTheCache(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", nil, nil)
	h.service(sid, "web2", nil, nil)
	h.ok("services", "list")
	h.ok("services", "list", "--limit", "1")
	h.reg.Stop()
	r := h.run("services", "list", "-o", "json")
	var got []api.Service
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != srctl.ExitStale || len(got) != 2 {
		t.Fatalf("exit %d, %d services (%v); want the whole cached list of 2", r.code, len(got), err)
	}
}
