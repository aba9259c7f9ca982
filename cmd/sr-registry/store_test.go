package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// An etcd that is down when sr-registry starts is not a crash: it serves
// /healthz at once, answers 503 (and /readyz 503) while it retries, logging
// each attempt, and becomes ready once etcd is there.
func TestUnreachableEtcdAtStartIsRetriedNotFatal(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	c := etcdtest.StartSingle(t)
	c.Stop(0)

	cmd := exec.Command(bin, "--dev", "--listen", "127.0.0.1:0", "--log-format", "json", "--store", c.URL("/start-test"))
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan map[string]any, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
	}()
	waitLine := func(msg string) map[string]any {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("sr-registry exited before logging %q", msg)
				}
				if m["msg"] == msg {
					return m
				}
			case <-timeout:
				t.Fatalf("no %q log line within 30 s", msg)
			}
		}
	}
	base := "http://" + waitLine("listening")["addr"].(string)
	get := func(path string) (int, api.Fault) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var f api.Fault
		_ = json.Unmarshal(body, &f)
		return resp.StatusCode, f
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d while etcd is down, want 200 (the process serves)", code)
	}
	if code, f := get("/readyz"); code != http.StatusServiceUnavailable || f.Type != api.FaultSystemFailure {
		t.Fatalf("/readyz %d %+v while etcd is down, want 503 systemFailureError", code, f)
	}
	body := strings.NewReader(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"u","apiKey":"k"}}}`)
	resp, err := http.Post(base+"/v2.0/tokens", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("authenticate while etcd is down: %d, want 503", resp.StatusCode)
	}
	waitLine("etcd store not ready yet, retrying")

	c.Restart(0)
	waitLine("etcd store ready")
	if code, f := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d %+v once etcd is up", code, f)
	}
}
