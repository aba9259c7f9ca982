package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

func TestLoadCredentials(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []server.Credential
		err     string
	}{
		{
			name:    "accounts, comments and blank lines",
			content: "# user key tenant\n\nalice  k1\t100001\n  bob k2 100001  \n",
			want: []server.Credential{
				{Username: "alice", APIKey: "k1", Tenant: "100001"},
				{Username: "bob", APIKey: "k2", Tenant: "100001"},
			},
		},
		{name: "missing field", content: "alice k1\n", err: ":1: want 3 fields"},
		{name: "extra field", content: "# c\nalice k1 t1 x\n", err: ":2: want 3 fields"},
		{name: "duplicate user", content: "alice k1 t1\nalice k2 t2\n", err: `username "alice" already defined on line 1`},
		{name: "tenant with slash", content: "alice k1 a/b\n", err: "tenant"},
		{name: "tenant dot-dot", content: "alice k1 ..\n", err: "tenant"},
		{name: "empty", content: "# nothing\n", err: "no accounts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "creds")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := server.LoadCredentials(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := server.LoadCredentials(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestNewRefusesWithoutAWayToAuthenticate(t *testing.T) {
	tests := []struct {
		name string
		cfg  server.Config
		err  string
	}{
		{"no data dir", server.Config{Dev: true}, "data dir"},
		{"neither dev nor credentials", server.Config{DataDir: t.TempDir()}, "dev mode or give credentials"},
		{"empty api key", server.Config{DataDir: t.TempDir(), Credentials: []server.Credential{{Username: "a", Tenant: "t"}}}, "must not be empty"},
		{"bad tenant", server.Config{DataDir: t.TempDir(), Credentials: []server.Credential{{Username: "a", APIKey: "k", Tenant: "a b"}}}, "tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := server.New(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

func TestSecondServerOnTheSameDataDirFailsClearly(t *testing.T) {
	dir := t.TempDir()
	s, err := server.New(server.Config{Dev: true, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s2, err := server.New(server.Config{Dev: true, DataDir: dir})
	if err == nil {
		s2.Close()
		t.Fatal("second server on the same data dir started")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("err %v", err)
	}
}

func TestDevTenantIDIsStableDigits(t *testing.T) {
	a, b := server.DevTenantID("alice"), server.DevTenantID("alice")
	if a != b || len(a) != 10 || strings.Trim(a, "0123456789") != "" || a == server.DevTenantID("bob") {
		t.Fatalf("DevTenantID: %q %q %q", a, b, server.DevTenantID("bob"))
	}
	// Pinned: a dev server's data dir is keyed by these ids. alice's id
	// is the one of the old 10-digit derivation, which was below 2^31
	// already; the others' old ids (8748178650, 9282825632, 7127369605)
	// were not, and a data dir keyed by them is moved to these at start
	// (TestRestartOnOldDataDir).
	golden := []struct{ user, tenant string }{
		{"alice", "2090220207"},
		{"bob", "1863276768"},
		{"user@example.com", "1250440103"},
		{"a/b c", "1389951370"},
	}
	for _, g := range golden {
		if got := server.DevTenantID(g.user); got != g.tenant {
			t.Errorf("DevTenantID(%q) = %s, want %s", g.user, got, g.tenant)
		}
	}
}

func TestMutationAfterCloseIsSystemFailure(t *testing.T) {
	forEachStore(t, testMutationAfterCloseIsSystemFailure)
}

func testMutationAfterCloseIsSystemFailure(t *testing.T, st storeKind) {
	srv := st.newServer(t, server.Config{Dev: true})
	h := srv.Handler()
	ar := devLogin(t, h, "u")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, path := range []string{"/sessions", "/events"} {
		method := http.MethodPost
		if path == "/events" {
			method = http.MethodGet
		}
		req := httptest.NewRequest(method, "/v1.0/"+ar.TenantID()+path, strings.NewReader(`{"heartbeat_timeout":10}`))
		req.Header.Set("X-Auth-Token", ar.Access.Token.ID)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var f api.Fault
		if err := json.Unmarshal(rec.Body.Bytes(), &f); err != nil || rec.Code != http.StatusServiceUnavailable || f.Type != api.FaultSystemFailure {
			t.Fatalf("%s %s after Close: %d %s", method, path, rec.Code, rec.Body)
		}
	}
}

// A client's spare connection, opened but never used, must not hold a
// shutdown for the 5 s net/http would wait for it.
func TestShutdownDoesNotWaitForConnectionsThatSentNothing(t *testing.T) {
	reg := registrytest.Start(t)
	conn, err := net.Dial("tcp", reg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server has accepted it once it answers on another connection.
	newClient(t, reg, "alice").do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
	start := time.Now()
	reg.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s with an idle new connection open, want well under net/http's 5 s", d)
	}
}
