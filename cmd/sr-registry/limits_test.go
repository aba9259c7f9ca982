package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
)

// Bad --rate-limit and account limits stop sr-registry before it starts,
// with exit status 2 and a message that names the flag (and the form).
func TestLimitFlagsAreValidated(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"rate limit without window", []string{"--rate-limit", "500000"}, []string{"--rate-limit", "want N/DURATION"}},
		{"rate limit zero", []string{"--rate-limit", "0/24h"}, []string{"--rate-limit", "N must be positive"}},
		{"rate limit negative", []string{"--rate-limit=-1/24h"}, []string{"--rate-limit", "not a positive integer"}},
		{"rate limit window too short", []string{"--rate-limit", "10/500ms"}, []string{"--rate-limit", "shorter than 1s"}},
		{"rate limit window not a duration", []string{"--rate-limit", "10/day"}, []string{"--rate-limit", "not a duration", "e.g. 500000/24h"}},
		{"rate limit with spaces", []string{"--rate-limit", "10 / 1h"}, []string{"--rate-limit"}},
		{"max sessions zero", []string{"--max-sessions", "0"}, []string{"--max-sessions 0: must be a positive integer"}},
		{"max services negative", []string{"--max-services=-3"}, []string{"--max-services -3: must be a positive integer"}},
		{"max config values zero", []string{"--max-config-values", "0"}, []string{"--max-config-values 0: must be a positive integer"}},
		{"max sessions not a number", []string{"--max-sessions", "lots"}, []string{"--max-sessions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--dev", "--data-dir", dir, "--listen", "127.0.0.1:0"}, tc.args...)
			checkRun(t, args, cli.ExitUsage, "", tc.stderr...)
		})
	}
}

// The built binary: a bad flag exits 2 before listening; good ones show
// in GET /limits, and the rate limit is enforced.
func TestLimitFlagsReachTheServer(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)

	cmd := exec.Command(bin, "--dev", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--rate-limit", "5/1s/2")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != cli.ExitUsage || !strings.Contains(stderr.String(), "--rate-limit") {
		t.Fatalf("%v, stderr %s: want exit status %d naming --rate-limit", err, stderr.String(), cli.ExitUsage)
	}

	window := registrytest.RateWindow(t, 90*time.Minute, 10*time.Minute)
	p := registrytest.StartProcess(t, bin, "--rate-limit", fmt.Sprintf("6/%dms", window.Milliseconds()), "--max-sessions", "3", "--max-services", "4", "--max-config-values", "5")
	id := p.Authenticate(t, "alice")
	get := func() (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, id.TenantURL+"/limits", nil)
		req.Header.Set("X-Auth-Token", id.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	code, body := get()
	var lim api.Limits
	if err := json.Unmarshal(body, &lim); code != http.StatusOK || err != nil {
		t.Fatalf("GET /limits: %d %s", code, body)
	}
	if want := (api.ResourceLimits{Session: 3, Service: 4, ConfigurationValue: 5}); lim.Resource != want {
		t.Errorf("resource limits %+v, want %+v", lim.Resource, want)
	}
	if r, want := lim.Rate["/.*"], (api.RateLimit{Limit: 6, Used: 1, Window: ratelimit.FormatWindow(window)}); r != want {
		t.Errorf("rate %+v, want %+v", r, want)
	}
	// Five more GETs of the sessions reach the limit of six.
	for i := range 6 {
		req, _ := http.NewRequest(http.MethodGet, id.TenantURL+"/sessions", nil)
		req.Header.Set("X-Auth-Token", id.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusOK
		if i == 5 {
			want = http.StatusBadRequest
		}
		if resp.StatusCode != want || want == http.StatusBadRequest && !strings.Contains(string(body), api.FaultRateLimitReached) {
			t.Fatalf("GET /sessions #%d: %d %s, want %d", i+1, resp.StatusCode, body, want)
		}
	}
}
