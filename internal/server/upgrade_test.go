package server_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// oldDataDir is a copy of testdata/olddata: a data dir that sr-registry
// wrote before ids were stored as written and dev tenants fit 32 bits
// (testdata/olddata/make.sh says how).
func oldDataDir(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "olddata", "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "registry.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// running is a server on a data dir, served on loopback.
type running struct {
	srv *server.Server
	hs  *httptest.Server
}

func startServer(t *testing.T, cfg server.Config) *running {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start on %s: %v", cfg.DataDir, err)
	}
	r := &running{srv: srv, hs: httptest.NewServer(srv.Handler())}
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.hs.Close()
	_ = r.srv.Close()
}

// login authenticates and returns a client of the user's tenant.
func (r *running) login(t *testing.T, user, key string) *client {
	t.Helper()
	var ar api.AuthResponse
	body := `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"` + user + `","apiKey":"` + key + `"}}}`
	postTokens(t, r.hs.URL, body).want(t, http.StatusOK).decode(t, &ar)
	return &client{t: t, base: r.hs.URL + "/v1.0/" + ar.TenantID(), token: ar.Access.Token.ID, hc: &http.Client{Timeout: 10 * time.Second}}
}

func (c *client) tenant() string { return c.base[strings.LastIndex(c.base, "/")+1:] }

func (c *client) configList(path string) []api.ConfigurationValue {
	c.t.Helper()
	var l api.List[api.ConfigurationValue]
	c.do(http.MethodGet, path, nil).want(c.t, http.StatusOK).decode(c.t, &l)
	return l.Values
}

// A restart of today's server on a data dir of the old one loses no value:
// every value answers at the URL it was written to, with the id its client
// wrote, and every dev user finds their sessions, services and values
// under their new 32-bit tenant id.
func TestRestartOnOldDataDir(t *testing.T) {
	cfg := server.Config{Dev: true, DataDir: oldDataDir(t)}
	check := func(t *testing.T, r *running) {
		alice := r.login(t, "alice", "k")
		if alice.tenant() != "2090220207" {
			t.Fatalf("alice's tenant %s: an id below 2^31 must not change", alice.tenant())
		}
		wantAll := []api.ConfigurationValue{
			{ID: "/production/cassandra/listen_ip", Value: "10.0.0.5"},
			{ID: "/production/cassandra/port", Value: "9042"},
			{ID: "api_key", Value: "secret"},
			{ID: "configId", Value: "v1"},
		}
		if got := alice.configList("/configuration"); !reflect.DeepEqual(got, wantAll) {
			t.Errorf("alice's configuration %+v, want %+v", got, wantAll)
		}
		// Each value at the URL its client wrote it to.
		for path, want := range map[string]api.ConfigurationValue{
			"/configuration/configId":                        wantAll[3],
			"/configuration/api_key":                         wantAll[2],
			"/configuration/production/cassandra/listen_ip":  wantAll[0],
			"/configuration//production/cassandra/listen_ip": wantAll[0],
			"/configuration/production/cassandra/port":       wantAll[1],
			"/configuration//production/cassandra/port":      wantAll[1],
		} {
			var v api.ConfigurationValue
			alice.do(http.MethodGet, path, nil).want(t, http.StatusOK).decode(t, &v)
			if v != want {
				t.Errorf("GET %s = %+v, want %+v", path, v, want)
			}
		}
		for _, ns := range []string{"/configuration/production/", "/configuration//production/cassandra/"} {
			if got := alice.configList(ns); !reflect.DeepEqual(got, wantAll[:2]) {
				t.Errorf("GET %s = %+v, want %+v", ns, got, wantAll[:2])
			}
		}
		var svc api.Service
		alice.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK).decode(t, &svc)
		if svc.SessionID != "seJTkkhfHC" || !reflect.DeepEqual(svc.Tags, []string{"www"}) {
			t.Errorf("alice's service %+v", svc)
		}
		alice.do(http.MethodGet, "/sessions/seJTkkhfHC", nil).want(t, http.StatusOK)

		bob := r.login(t, "bob", "k")
		if n, err := strconv.ParseInt(bob.tenant(), 10, 32); err != nil || bob.tenant() != server.DevTenantID("bob") || n == 8748178650 {
			t.Fatalf("bob's tenant %s, want DevTenantID(bob) %s within 32 bits", bob.tenant(), server.DevTenantID("bob"))
		}
		wantBob := []api.ConfigurationValue{{ID: "/team/db_host", Value: "10.1.1.1"}, {ID: "bobs_value", Value: "b"}}
		if got := bob.configList("/configuration"); !reflect.DeepEqual(got, wantBob) {
			t.Errorf("bob's configuration %+v, want %+v", got, wantBob)
		}
		bob.do(http.MethodGet, "/services/bob-svc", nil).want(t, http.StatusOK).decode(t, &svc)
		if svc.SessionID != "sewvhdTXrW" {
			t.Errorf("bob's service %+v", svc)
		}
		bob.do(http.MethodGet, "/sessions/sewvhdTXrW", nil).want(t, http.StatusOK)
	}

	r := startServer(t, cfg)
	check(t, r)
	// The tenant's event sequence moved with it: new ids follow the old.
	bob := r.login(t, "bob", "k")
	bob.do(http.MethodPut, "/configuration/after", `{"value":"v"}`).want(t, http.StatusNoContent)
	evs := bob.events("")
	if last := evs[len(evs)-1].ID; !strings.HasSuffix(last, "-000000000004") {
		t.Errorf("first event after the move %s, want sequence 4 (bob had 3 events)", last)
	}
	bob.do(http.MethodDelete, "/configuration/after", nil).want(t, http.StatusNoContent)
	r.stop()

	// A second start finds the data dir already upgraded.
	r = startServer(t, cfg)
	check(t, r)
}

// Dev mode moves only tenants that no credential names, and never onto a
// tenant that already has state.
func TestDevTenantMoveLeavesOtherTenantsAlone(t *testing.T) {
	t.Run("credential tenant", func(t *testing.T) {
		cfg := server.Config{Dev: true, DataDir: t.TempDir(), Credentials: []server.Credential{{Username: "ops", APIKey: "key", Tenant: "5000000000"}}}
		r := startServer(t, cfg)
		r.login(t, "ops", "key").do(http.MethodPut, "/configuration/kept", `{"value":"v"}`).want(t, http.StatusNoContent)
		r.stop()
		r = startServer(t, cfg)
		ops := r.login(t, "ops", "key")
		if got := ops.configList("/configuration"); len(got) != 1 || got[0].ID != "kept" || ops.tenant() != "5000000000" {
			t.Fatalf("after a restart, tenant %s of a credential holds %+v, want its value kept", ops.tenant(), got)
		}
	})
	t.Run("new id taken", func(t *testing.T) {
		dir := oldDataDir(t)
		// Someone else's tenant is bob's new id before dev mode first runs.
		creds := server.Config{DataDir: dir, Credentials: []server.Credential{{Username: "carol", APIKey: "key", Tenant: server.DevTenantID("bob")}}}
		r := startServer(t, creds)
		r.login(t, "carol", "key").do(http.MethodPut, "/configuration/carols", `{"value":"mine"}`).want(t, http.StatusNoContent)
		r.stop()
		r = startServer(t, server.Config{Dev: true, DataDir: dir})
		got := r.login(t, "bob", "k").configList("/configuration")
		if len(got) != 1 || got[0].ID != "carols" {
			t.Fatalf("tenant %s after dev start: %+v, want carol's value alone", server.DevTenantID("bob"), got)
		}
	})
}
