package etcdstore

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// openReady opens a store on c under prefix and waits until it is ready.
func openReady(t *testing.T, c *etcdtest.Cluster, prefix string) *Store {
	t.Helper()
	s, err := Open(Config{
		Etcd:  etcdconf.Config{Endpoints: c.Endpoints(), Prefix: prefix},
		Store: store.Options{Limits: api.ResourceLimits{Session: 10, Service: 10, ConfigurationValue: 100}, TokenTTL: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for s.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("store not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// Pruning is idempotent: several frontends pruning the same tenants at
// once delete the events older than the cutoff, once, and keep the rest.
func TestEveryFrontendMayPruneAtOnce(t *testing.T) {
	c := etcdtest.StartSingle(t)
	fronts := []*Store{openReady(t, c, "/prune"), openReady(t, c, "/prune"), openReady(t, c, "/prune")}
	ctx := context.Background()
	for i, f := range fronts {
		for _, tenant := range []string{"t1", "t2"} {
			if err := f.SetConfigValue(ctx, tenant, "old"+string(rune('a'+i)), "v"); err != nil {
				t.Fatal(err)
			}
		}
	}
	cutoff := time.Now().Add(time.Millisecond).UnixMilli()
	for time.Now().UnixMilli() <= cutoff {
		time.Sleep(time.Millisecond) // the next event must come after the cutoff
	}
	if err := fronts[0].SetConfigValue(ctx, "t1", "new", "v"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(fronts))
	for i, f := range fronts {
		wg.Go(func() { errs[i] = f.pruneEvents(cutoff) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("frontend %d: prune: %v", i, err)
		}
	}
	for _, tenant := range []string{"t1", "t2"} {
		evs, err := fronts[1].Events(ctx, tenant, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range evs {
			ids = append(ids, e.ID)
			if e.ID < store.EventIDPrefix(cutoff) {
				t.Errorf("tenant %s: event %s, older than the cutoff, is still there", tenant, e.ID)
			}
		}
		want := 0
		if tenant == "t1" {
			want = 1
		}
		if len(evs) != want {
			t.Errorf("tenant %s: events %s after pruning, want %d", tenant, strings.Join(ids, ","), want)
		}
	}
}
