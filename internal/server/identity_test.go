package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// A thousand wrappers restarting with the same key cost one bcrypt
// verification, not one each: the concurrent ones wait for the first,
// the later ones hit the cache. A reload (SetCredentials) starts a new
// cache.
func TestSameKeyVerifiedOnce(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-key"), 8)
	if err != nil {
		t.Fatal(err)
	}
	creds := []Credential{{Username: "alice", APIKey: string(hash), Tenant: "t1"}}
	srv, err := New(Config{DataDir: t.TempDir(), Credentials: creds, Auth: AuthLimits{Verifications: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	loginAll := func(n int) map[int]int {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				code := handlerLogin(h, "alice", "alice-key")
				mu.Lock()
				codes[code]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return codes
	}
	// 200 at once: all wait for the one verification, even though only
	// one verifier runs (the others would have been refused 429).
	if codes := loginAll(200); codes[http.StatusOK] != 200 {
		t.Fatalf("200 logins at once: %v", codes)
	}
	if codes := loginAll(100); codes[http.StatusOK] != 100 {
		t.Fatalf("100 logins after: %v", codes)
	}
	if n := srv.auth.verifications.Load(); n != 1 {
		t.Fatalf("%d bcrypt verifications for 300 logins with one key, want 1", n)
	}
	if err := srv.SetCredentials(creds); err != nil {
		t.Fatal(err)
	}
	if code := handlerLogin(h, "alice", "alice-key"); code != http.StatusOK {
		t.Fatalf("after reload: %d", code)
	}
	if n := srv.auth.verifications.Load(); n != 2 {
		t.Fatalf("%d verifications after a reload, want 2: the cache must start again", n)
	}
	// Wrong keys are never cached: each is verified.
	for range 3 {
		if code := handlerLogin(h, "alice", "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("wrong key: %d", code)
		}
	}
	if n := srv.auth.verifications.Load(); n != 5 {
		t.Fatalf("%d verifications after 3 wrong keys, want 5", n)
	}
}

func handlerLogin(h http.Handler, user, key string) int {
	body, _ := json.Marshal(api.AuthRequest{Auth: api.AuthCredentials{
		APIKeyCredentials: &api.APIKeyCredentials{Username: user, APIKey: key},
	}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v2.0/tokens", bytes.NewReader(body))
	h.ServeHTTP(rec, req)
	return rec.Code
}

// FuzzParseCredentials feeds arbitrary files to the credentials parser:
// it never panics, what it accepts is accepted again when written back
// (and by newCredentials, as the server would take it), every key with a
// bcrypt prefix is a hash bcrypt reads, and no error shows a key field.
//
//	go test -run '^$' -fuzz FuzzParseCredentials -fuzztime 30s ./internal/server
func FuzzParseCredentials(f *testing.F) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("k"), bcrypt.MinCost)
	for _, s := range []string{
		"alice k1 100001\nbob k2 100001\n",
		"# c\n\n  alice\t" + string(hash) + "\tt.1-x_\n",
		"alice $2y$" + string(hash[4:]) + " t\n",
		"alice $2b$99$" + string(hash[7:]) + " t\n",
		"alice " + string(hash[:40]) + " t\n",
		"alice:" + string(hash) + "\n",
		"alice $apr1$x$y t\n",
		"a k t\na k2 t\n",
		"a k ..\n",
		"a k " + strings.Repeat("9", 70) + "\n",
		"\xff\xfe k t\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, content string) {
		creds, err := ParseCredentials(strings.NewReader(content), "f")
		if err != nil {
			for _, field := range strings.Fields(content) {
				if strings.HasPrefix(field, "$2") && len(field) > 8 && strings.Contains(err.Error(), field) {
					t.Fatalf("error shows the key field %q: %v", field, err)
				}
			}
			return
		}
		var b strings.Builder
		for _, c := range creds {
			if isBcryptHash(c.APIKey) {
				if _, err := bcrypt.Cost([]byte(c.APIKey)); err != nil || len(c.APIKey) != bcryptHashLen {
					t.Fatalf("accepted %q as a hash: %v", c.APIKey, err)
				}
			}
			fmt.Fprintf(&b, "%s %s %s\n", c.Username, c.APIKey, c.Tenant)
		}
		again, err := ParseCredentials(strings.NewReader(b.String()), "g")
		if err != nil || len(again) != len(creds) {
			t.Fatalf("accepted %q, then not its own rewrite %q: %v", content, b.String(), err)
		}
		for i := range creds {
			if again[i] != creds[i] {
				t.Fatalf("rewrite changed %+v into %+v", creds[i], again[i])
			}
		}
		if _, err := newCredentials(false, creds, nil); err != nil {
			t.Fatalf("parsed %q, newCredentials refuses it: %v", content, err)
		}
	})
}

// Which tokens a generation of the credentials takes as current: those
// of an account's tenant and key, those stored without a stamp (by a
// frontend older than stamps) by tenant alone, and dev users' in dev mode.
func TestCurrentTokens(t *testing.T) {
	creds := []Credential{{Username: "alice", APIKey: "ka", Tenant: "t1"}}
	stamp := keyStamp("alice", []byte("ka"))
	dave := DevTenantID("dave")
	tests := []struct {
		name string
		dev  bool
		tok  store.Token
		want bool
	}{
		{"account, tenant and key", false, store.Token{User: "alice", Tenant: "t1", Stamp: stamp}, true},
		{"stored before stamps", false, store.Token{User: "alice", Tenant: "t1"}, true},
		{"another key", false, store.Token{User: "alice", Tenant: "t1", Stamp: keyStamp("alice", []byte("old"))}, false},
		{"another tenant", false, store.Token{User: "alice", Tenant: "t2", Stamp: stamp}, false},
		{"unknown user", false, store.Token{User: "dave", Tenant: dave}, false},
		{"dev user", true, store.Token{User: "dave", Tenant: dave}, true},
		{"dev user, another tenant", true, store.Token{User: "dave", Tenant: "t1"}, false},
		{"former account, now a dev user", true, store.Token{User: "dave", Tenant: dave, Stamp: keyStamp("dave", []byte("kd"))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := newCredentials(tt.dev, creds, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.current(tt.tok); got != tt.want {
				t.Fatalf("current(%+v) = %v, want %v", tt.tok, got, tt.want)
			}
		})
	}
}

// A stamp depends on the username and the key field, and the same pair
// gives the same stamp in every process (frontends check each other's
// tokens): a value computed outside Go pins it (Python's hashlib:
// sha256(b"sr-registry key stamp\0" + pack(">Q", 5) + b"alice" + b"ka")).
func TestKeyStamp(t *testing.T) {
	if a, b := keyStamp("alice", []byte("ka")), keyStamp("alice", []byte("kb")); a == b {
		t.Fatalf("two keys, one stamp %s", a)
	}
	if a, b := keyStamp("ab", []byte("c")), keyStamp("a", []byte("bc")); a == b {
		t.Fatalf("username and key not separated: one stamp %s", a)
	}
	if got := keyStamp("alice", []byte("ka")); got != "25008097" {
		t.Fatalf("stamp %q, want 25008097", got)
	}
}
