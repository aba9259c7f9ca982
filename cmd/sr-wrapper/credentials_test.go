package main_test

import (
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// TestHashedCredentials: the wrapper registers with a registry that keeps
// only the bcrypt hash of its key, and neither logs the key.
func TestHashedCredentials(t *testing.T) {
	t.Parallel()
	key := "secret-key-" + randomHex(8)
	hash, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t, registrytest.WithCredentials(server.Credential{Username: "hashed", APIKey: string(hash), Tenant: "100042"}))
	acct := newAccountAs(t, reg.URL, "hashed", key)
	w := startWrapper(t, cmdline(acct.flags(reg.URL, "hashed-key"), fakeproc("--ready", "--exit-on-term", "0")...))
	w.ready()
	sid := w.registered()
	if svc := acct.mustService(t, "hashed-key"); svc.SessionID != sid {
		t.Fatalf("service in session %s, want %s", svc.SessionID, sid)
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if l := w.stderr.all(func(l line) bool { return strings.Contains(l.Text, key) }); len(l) != 0 {
		t.Fatalf("the wrapper logged its API key: %s", l[0].Text)
	}
}
