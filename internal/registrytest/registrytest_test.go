package registrytest_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// status sends method path (below the tenant URL) with body ("" for none)
// as the identity and returns the status code.
func status(t *testing.T, id registrytest.Identity, method, path, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, id.TenantURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", id.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestStartRestartKeepsAddressAndData(t *testing.T) {
	reg := registrytest.Start(t)
	if !strings.HasPrefix(reg.URL, "http://127.0.0.1:") || !strings.HasSuffix(reg.URL, "/v1.0") {
		t.Fatalf("URL = %q, want http://127.0.0.1:PORT/v1.0", reg.URL)
	}
	id := reg.Authenticate(t, "alice")
	if code := status(t, id, http.MethodPut, "/configuration/color", `{"value":"blue"}`); code != http.StatusNoContent {
		t.Fatalf("PUT configuration: %d", code)
	}
	url := reg.URL
	reg.Restart()
	if reg.URL != url {
		t.Fatalf("URL changed across Restart: %q -> %q", url, reg.URL)
	}
	if code := status(t, id, http.MethodGet, "/configuration/color", ""); code != http.StatusUnauthorized {
		t.Fatalf("old token after restart: %d, want 401 (tokens live in memory)", code)
	}
	id = reg.Authenticate(t, "alice")
	if code := status(t, id, http.MethodGet, "/configuration/color", ""); code != http.StatusOK {
		t.Fatalf("GET configuration after restart: %d", code)
	}
	reg.Stop()
	reg.Stop() // idempotent
}

func TestStartWithCredentialsRejectsOthers(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithCredentials(server.Credential{Username: "ops", APIKey: "s3cret", Tenant: "4242"}))
	id := reg.AuthenticateKey(t, "ops", "s3cret")
	if id.TenantID != "4242" || id.TenantURL != reg.URL+"/4242" {
		t.Fatalf("identity = %+v", id)
	}
	if _, err := registrytest.Login(t.Context(), reg.AuthURL, "ops", "wrong"); err == nil {
		t.Fatal("login with a wrong key succeeded")
	}
}

func TestStartWithLimits(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithLimits(api.ResourceLimits{ConfigurationValue: 1}))
	id := reg.Authenticate(t, "bob")
	if code := status(t, id, http.MethodPut, "/configuration/one", `{"value":"1"}`); code != http.StatusNoContent {
		t.Fatalf("first value: %d", code)
	}
	if code := status(t, id, http.MethodPut, "/configuration/two", `{"value":"2"}`); code != http.StatusBadRequest {
		t.Fatalf("second value over the limit: %d, want 400", code)
	}
}

func TestProcessTerminateRestartKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	p := registrytest.StartProcess(t, bin)
	id := p.Authenticate(t, "carol")
	if id.TenantURL != p.URL+"/"+id.TenantID {
		t.Fatalf("identity %+v, want the tenant URL below %s", id, p.URL)
	}
	if code := status(t, id, http.MethodPut, "/configuration/a_key", `{"value":"v"}`); code != http.StatusNoContent {
		t.Fatalf("PUT: %d", code)
	}
	if code := p.Terminate(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	addr := p.Addr
	p.Restart()
	if p.Addr != addr {
		t.Fatalf("address changed across restart: %s -> %s", addr, p.Addr)
	}
	id = p.Authenticate(t, "carol")
	if code := status(t, id, http.MethodGet, "/configuration/a_key", ""); code != http.StatusOK {
		t.Fatalf("after restart: %d", code)
	}
	p.Kill9()
	p.Restart()
	id = p.Authenticate(t, "carol")
	if code := status(t, id, http.MethodGet, "/configuration/a_key", ""); code != http.StatusOK {
		t.Fatalf("after kill -9 and restart: %d", code)
	}
	if !bytes.Contains([]byte(p.Logs()), []byte(`"msg":"listening"`)) {
		t.Fatalf("logs lack the listening line:\n%s", p.Logs())
	}
}

func TestNewClientTalksToTheRegistry(t *testing.T) {
	reg := registrytest.Start(t)
	c := registrytest.NewClient(t, reg.URL, "", "dave", "k")
	if err := c.SetConfiguration(t.Context(), "/color", "green"); err != nil {
		t.Fatal(err)
	}
	id := reg.Authenticate(t, "dave")
	// Ids come back as written: "/color" is at /configuration//color.
	if code := status(t, id, http.MethodGet, "/configuration//color", ""); code != http.StatusOK {
		t.Fatalf("value set through the client: GET %d", code)
	}
}

func TestLaunchRefusesWithoutDataDir(t *testing.T) {
	// Checked before anything runs: the binary need not exist.
	_, err := registrytest.Launch(t.Context(), "/nonexistent/sr-registry", nil, "--dev")
	if err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("err %v, want it to name --data-dir", err)
	}
}
