package etcdstore

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// Each frontend's counts add up to one total per tenant and window; a
// frontend that restarts (a new store, a new id) keeps its predecessor's
// count; a lease etcd lost is granted again; a window's keys are gone
// once its lease ends, a minute after the window.
func TestRequestCountsAreSharedPerWindow(t *testing.T) {
	c := etcdtest.StartSingle(t)
	a, b := openReady(t, c, "/rates"), openReady(t, c, "/rates")
	ctx := context.Background()
	hour := time.Hour
	now := time.Now().Truncate(hour)
	share := func(s *Store, start time.Time, counts map[string]int64, want map[string]int64) {
		t.Helper()
		got, err := s.ShareRequests(ctx, start, hour, counts)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("totals %v, want %v", got, want)
		}
	}
	share(a, now, map[string]int64{"t1": 5, "t2": 1}, map[string]int64{"t1": 5, "t2": 1})
	share(b, now, map[string]int64{"t1": 3}, map[string]int64{"t1": 8})
	// Counts are totals, not deltas: sharing again replaces a's count.
	share(a, now, map[string]int64{"t1": 6}, map[string]int64{"t1": 9})
	// Another window counts from zero.
	share(b, now.Add(hour), map[string]int64{"t1": 1}, map[string]int64{"t1": 1})

	// b restarts: its old key still counts.
	b.Close()
	b2 := openReady(t, c, "/rates")
	share(b2, now, map[string]int64{"t1": 2}, map[string]int64{"t1": 11})

	// The keys are on a lease that ends a minute after the window.
	resp, err := a.cli.Get(ctx, a.keys.rate(now, "t1", a.rates.id))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("a's count key: %v, %v", resp, err)
	}
	ttl, err := a.cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Until(now.Add(hour)) + rateLeaseMargin; time.Duration(ttl.TTL)*time.Second > want+2*time.Second || time.Duration(ttl.TTL)*time.Second < want-10*time.Second {
		t.Fatalf("lease TTL %ds, want about %s", ttl.TTL, want)
	}
	// A lost lease: the next share fails, the one after grants another.
	if _, err := a.cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ShareRequests(ctx, now, hour, map[string]int64{"t1": 7}); err == nil {
		t.Fatal("share on a revoked lease succeeded")
	}
	share(a, now, map[string]int64{"t1": 7}, map[string]int64{"t1": 7 + 3 + 2})

	// A window that ended 58 s ago: its lease ends within seconds, and
	// its keys with it.
	old := time.Now().Add(-hour - 58*time.Second)
	share(a, old, map[string]int64{"t1": 4}, map[string]int64{"t1": 4})
	testsupport.Eventually(t, 15*time.Second, "the old window's keys to expire", func() error {
		resp, err := a.cli.Get(ctx, a.keys.rates(old, "t1"), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count != 0 {
			return fmt.Errorf("%d keys left", resp.Count)
		}
		return nil
	})
}
