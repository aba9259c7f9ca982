package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
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
	acct.mustServiceIn(t, "hashed-key", sid, "once registered")
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	w.mustNotLog(key)
}

// A key rotated the documented way, first in the wrapper's --api-key-file
// and then in the registry (whose reload ends the old key's tokens at
// once), is picked up at the next authentication: the wrapper keeps its
// session and its service, heartbeats on, and logs neither key.
func TestKeyRotationKeepsTheSession(t *testing.T) {
	t.Parallel()
	oldKey, newKey := "old-key-"+randomHex(8), "new-key-"+randomHex(8)
	account := func(key string) server.Credential {
		return server.Credential{Username: "rotating", APIKey: key, Tenant: "100043"}
	}
	reg := registrytest.Start(t, registrytest.WithCredentials(account(oldKey)))
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte(oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := append(withoutFlag(newAccountAs(t, reg.URL, "rotating", oldKey).flags(reg.URL, "rotating"), "--api-key"), "--api-key-file", keyFile)
	w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--exit-on-term", "0")...))
	w.ready()
	sid := w.registered()

	if err := os.WriteFile(keyFile, []byte(newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	reg.SetCredentials(account(newKey))
	w.waitLog(eventWait, "the API key file holds a new key: authenticating with it")
	acct := newAccountAs(t, reg.URL, "rotating", newKey)
	testsupport.Eventually(t, 3*ttl, "a heartbeat after the rotation", func() error {
		ctx, cancel := callCtx()
		defer cancel()
		s, err := acct.API.GetSession(ctx, sid)
		if err != nil {
			return err
		}
		if s.LastSeen == nil || time.UnixMilli(*s.LastSeen).Before(rotated) {
			return fmt.Errorf("session %s last seen before the rotation", sid)
		}
		return nil
	})
	acct.mustServiceIn(t, "rotating", sid, "after the rotation")
	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("the wrapper created %d sessions, want 1 (the rotation must not cost the session)", n)
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	w.waitLog(eventWait, "deregistered")
	w.mustNotLog(oldKey, newKey)
}
