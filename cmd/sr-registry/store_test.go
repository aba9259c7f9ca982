package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
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

// --store takes the TLS and authentication flags of sr-wrapper's etcd
// backend: a cluster that requires client certificates and a password is
// served, and a wrong password is refused while the process keeps
// serving /healthz.
func TestStoreOverTLSWithAuthentication(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	files := etcdtest.NewTLSFiles(t)
	c := etcdtest.Start(t, etcdtest.Options{TLS: files})
	c.AddUser("registry", "s3cret", "/tls")
	c.EnableAuth()
	dir := t.TempDir()
	good := filepath.Join(dir, "password")
	if err := os.WriteFile(good, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"--etcd-cacert", files.CACert, "--etcd-cert", files.ClientCert, "--etcd-key", files.ClientKey, "--etcd-username", "registry"}
	p := registrytest.StartProcess(t, bin, append([]string{"--store", c.URL("/tls"), "--etcd-password-file", good}, tlsFlags...)...)
	id := p.Authenticate(t, "alice")
	req, _ := http.NewRequest(http.MethodPost, id.TenantURL+"/sessions", strings.NewReader(`{"heartbeat_timeout":30}`))
	req.Header.Set("X-Auth-Token", id.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create a session over TLS with a password: %d", resp.StatusCode)
	}
	kvs, err := c.Client().Get(context.Background(), "/tls/registry/tenants/"+id.TenantID+"/meta")
	if err != nil || len(kvs.Kvs) != 1 {
		t.Fatalf("the tenant's meta key in etcd: %v %v", kvs, err)
	}

	// A wrong password: never ready, never a crash.
	bad := filepath.Join(dir, "wrong")
	if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	logs := &testsupport.Buffer{}
	_, err = registrytest.Launch(ctx, bin, logs, append([]string{"--store", c.URL("/tls"), "--etcd-password-file", bad}, tlsFlags...)...)
	if err == nil {
		t.Fatal("a frontend with a wrong etcd password became ready")
	}
	lw := logs.String()
	if !strings.Contains(lw, "etcd store not ready yet, retrying") {
		t.Fatalf("no retry logged with a wrong password (%v):\n%s", err, lw)
	}
}
