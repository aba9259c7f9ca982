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

func putConfig(t *testing.T, id registrytest.Identity, key, value string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, id.TenantURL+"/configuration/"+key, strings.NewReader(`{"value":"`+value+`"}`))
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

func getStatus(t *testing.T, id registrytest.Identity, path string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, id.TenantURL+path, nil)
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
	if code := putConfig(t, id, "color", "blue"); code != http.StatusNoContent {
		t.Fatalf("PUT configuration: %d", code)
	}
	url := reg.URL
	reg.Restart()
	if reg.URL != url {
		t.Fatalf("URL changed across Restart: %q -> %q", url, reg.URL)
	}
	if code := getStatus(t, id, "/configuration/color"); code != http.StatusUnauthorized {
		t.Fatalf("old token after restart: %d, want 401 (tokens live in memory)", code)
	}
	id = reg.Authenticate(t, "alice")
	if code := getStatus(t, id, "/configuration/color"); code != http.StatusOK {
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
	if code := putConfig(t, id, "one", "1"); code != http.StatusNoContent {
		t.Fatalf("first value: %d", code)
	}
	if code := putConfig(t, id, "two", "2"); code != http.StatusBadRequest {
		t.Fatalf("second value over the limit: %d, want 400", code)
	}
}

func TestProcessTerminateRestartKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	p := registrytest.StartProcess(t, bin)
	id := registrytest.Identity{}
	login := func() {
		var err error
		id, err = registrytest.Login(t.Context(), p.AuthURL, "carol", "k")
		if err != nil {
			t.Fatal(err)
		}
		id.TenantURL = p.URL + "/" + id.TenantID
	}
	login()
	if code := putConfig(t, id, "a_key", "v"); code != http.StatusNoContent {
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
	login()
	if code := getStatus(t, id, "/configuration/a_key"); code != http.StatusOK {
		t.Fatalf("after restart: %d", code)
	}
	p.Kill9()
	p.Restart()
	login()
	if code := getStatus(t, id, "/configuration/a_key"); code != http.StatusOK {
		t.Fatalf("after kill -9 and restart: %d", code)
	}
	if !bytes.Contains([]byte(p.Logs()), []byte(`"msg":"listening"`)) {
		t.Fatalf("logs lack the listening line:\n%s", p.Logs())
	}
}
