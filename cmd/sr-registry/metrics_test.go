package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// get GETs url and returns the status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// logField returns field of the first JSON log line whose msg is msg.
func logField(t *testing.T, logs, msg, field string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			if v, ok := m[field].(string); ok {
				return v
			}
		}
	}
	t.Fatalf("no %q log line with %s in:\n%s", msg, field, logs)
	return ""
}

// heartbeats scrapes url (a /metrics) for sr_registry_heartbeats_total.
func heartbeats(t *testing.T, url string) float64 {
	t.Helper()
	v, ok := registrytest.Metrics(t, http.DefaultClient, url)["sr_registry_heartbeats_total"]
	if !ok {
		t.Fatalf("no sr_registry_heartbeats_total in %s", url)
	}
	return v
}

// By default /metrics is on the API listener. With --metrics-listen it is
// on that address only, beside /healthz and /readyz, which stay on the
// API listener too; a TERM stops both.
func TestMetricsListen(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)

	t.Run("default", func(t *testing.T) {
		p := registrytest.StartProcess(t, bin)
		heartbeats(t, p.AuthURL+"/metrics")
	})

	t.Run("separate", func(t *testing.T) {
		p := registrytest.StartProcess(t, bin, "--metrics-listen", "127.0.0.1:0")
		metrics := "http://" + logField(t, p.Logs(), "serving metrics", "addr")
		for _, tc := range []struct {
			url  string
			want int
		}{
			{p.AuthURL + "/metrics", http.StatusNotFound},
			{p.AuthURL + "/healthz", http.StatusOK},
			{p.AuthURL + "/readyz", http.StatusOK},
			{metrics + "/metrics", http.StatusOK},
			{metrics + "/healthz", http.StatusOK},
			{metrics + "/readyz", http.StatusOK},
			{metrics + "/v1.0", http.StatusNotFound},
		} {
			if code, body := get(t, tc.url); code != tc.want {
				t.Errorf("GET %s: %d, want %d: %s", tc.url, code, tc.want, body)
			}
		}

		id := p.Authenticate(t, "alice")
		req, _ := http.NewRequest(http.MethodPost, id.TenantURL+"/sessions", strings.NewReader(`{"heartbeat_timeout":30}`))
		req.Header.Set("X-Auth-Token", id.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var created struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		req, _ = http.NewRequest(http.MethodPost, loc+"/heartbeat", strings.NewReader(`{"token":"`+created.Token+`"}`))
		req.Header.Set("X-Auth-Token", id.Token)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("heartbeat: %d", resp.StatusCode)
		}
		if got := heartbeats(t, metrics+"/metrics"); got != 1 {
			t.Fatalf("heartbeats on the metrics listener: %v, want 1", got)
		}

		if code := p.Terminate(); code != exitOK {
			t.Fatalf("exit status %d after TERM, want %d", code, exitOK)
		}
		if _, err := http.Get(metrics + "/healthz"); err == nil {
			t.Fatal("the metrics listener still answers after the process stopped")
		}
	})
}

// An address that cannot be listened on is an error that names the flag,
// and the server does not start without its metrics.
func TestMetricsListenFails(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	cmd := exec.Command(bin, "--dev", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-listen", "256.0.0.1:1", "--log-format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitError || !strings.Contains(stderr.String(), "--metrics-listen: listen on 256.0.0.1:1") {
		t.Fatalf("%v, stderr %s: want exit status %d and the address that failed", err, stderr.String(), exitError)
	}
}
