package boltstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

func testOptions(n int) store.Options {
	return store.Options{Limits: api.ResourceLimits{Session: n, Service: n, ConfigurationValue: n}, TokenTTL: time.Hour}
}

// A mass restart of one account's wrappers must not cost one fsync after
// another: while one commit of a tenant is on its way to disk, the
// tenant's next mutations are decided and queued, so that they share the
// next commit.
func TestOneTenantsMutationsQueueBehindACommitInFlight(t *testing.T) {
	const n = 64
	s, err := Open(Config{Dir: t.TempDir(), Store: testOptions(n)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	// Hold the commit loop inside a transaction, as a slow fsync would.
	release := make(chan struct{})
	held := make(chan struct{})
	blocker := make(chan error, 1)
	go func() {
		blocker <- s.file.commit(ctx, func(*bolt.Tx) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateSession(ctx, "one-tenant", store.NewSession{HeartbeatTimeout: 30, Token: uuid.New()})
		})
	}
	// Every create must be decided and queued while the first commit is
	// still in flight.
	deadline := time.Now().Add(10 * time.Second)
	for len(s.file.queue) < n {
		if time.Now().After(deadline) {
			close(release)
			wg.Wait()
			t.Fatalf("%d of %d creates of one tenant queued while a commit was in flight: the tenant's commits run one after another", len(s.file.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-blocker; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	all, _ := s.Sessions(ctx, "one-tenant")
	if len(all) != n {
		t.Fatalf("%d sessions listed, want %d", len(all), n)
	}
}
