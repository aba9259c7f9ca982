package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// A mass restart of one account's wrappers must not cost one fsync after
// another: while one commit of a tenant is on its way to disk, the
// tenant's next mutations are decided and queued, so that they share the
// next commit.
func TestOneTenantsMutationsQueueBehindACommitInFlight(t *testing.T) {
	const n = 64
	srv, err := New(Config{Dev: true, DataDir: t.TempDir(), Limits: api.ResourceLimits{Session: n, Service: n}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	ar := login(t, h, "one-tenant")

	// Hold the commit loop inside a transaction, as a slow fsync would.
	release := make(chan struct{})
	held := make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- srv.store.commit(context.Background(), func(*bolt.Tx) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held

	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/v1.0/"+ar.TenantID()+"/sessions", bytes.NewReader([]byte(`{"heartbeat_timeout":30}`)))
			req.Header.Set("X-Auth-Token", ar.Access.Token.ID)
			h.ServeHTTP(rec, req)
			codes[i] = rec.Code
		})
	}
	// Every create must be decided and queued while the first commit is
	// still in flight.
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.store.queue) < n {
		if time.Now().After(deadline) {
			close(release)
			wg.Wait()
			t.Fatalf("%d of %d creates of one tenant queued while a commit was in flight: the tenant's commits run one after another", len(srv.store.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	for i, code := range codes {
		if code != http.StatusCreated {
			t.Fatalf("create %d: status %d", i, code)
		}
	}
}

// login authenticates user against the dev-mode handler h.
func login(tb testing.TB, h http.Handler, user string) api.AuthResponse {
	tb.Helper()
	body := fmt.Sprintf(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":%q,"apiKey":"k"}}}`, user)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2.0/tokens", bytes.NewReader([]byte(body))))
	var ar api.AuthResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Access.Token.ID == "" {
		tb.Fatalf("authenticate %q: %d %s", user, rec.Code, rec.Body)
	}
	return ar
}
