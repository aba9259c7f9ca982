package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// rateLeaseMargin is how long a window's counts outlive the window.
const rateLeaseMargin = time.Minute

// rates is this frontend's side of the shared request counts (see
// ShareRequests): its id in the count keys and the lease of the current
// window's keys.
type rates struct {
	id string

	mu     sync.Mutex
	window time.Time // the window lease is for
	lease  clientv3.LeaseID
}

func newRates() *rates {
	var b [6]byte
	_, _ = rand.Read(b[:]) // cannot fail (Go 1.24+)
	return &rates{id: hex.EncodeToString(b[:])}
}

// ShareRequests implements store.Store. Each frontend puts its own count
// of each tenant under R/rates/<window start ms>/<tenant>/<frontend id>
// and reads the tenant's other frontends' keys in the same transaction:
// no compare, so frontends never conflict, and one transaction (up to 60
// tenants) per flush. The keys are on a lease of this frontend's that
// ends a minute after the window, which is how old windows are cleaned
// up, by etcd, even when no frontend runs. A frontend that restarts gets
// a new id: its old key still counts until the window ends.
func (s *Store) ShareRequests(ctx context.Context, start time.Time, length time.Duration, counts map[string]int64) (map[string]int64, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	lease, err := s.rates.leaseFor(ctx, s, start, length)
	if err != nil {
		return nil, err
	}
	tenants := slices.Sorted(func(yield func(string) bool) {
		for t := range counts {
			if !yield(t) {
				return
			}
		}
	})
	totals := make(map[string]int64, len(counts))
	const perTxn = maxTxnKeys / 2 // a put and a get each
	for chunk := range slices.Chunk(tenants, perTxn) {
		ops := make([]clientv3.Op, 0, 2*len(chunk))
		for _, t := range chunk {
			ops = append(ops,
				clientv3.OpPut(s.keys.rate(start, t, s.rates.id), strconv.FormatInt(counts[t], 10), clientv3.WithLease(lease)),
				clientv3.OpGet(s.keys.rates(start, t), clientv3.WithPrefix()))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				s.rates.forget(lease)
			}
			return nil, s.fail("share the request counts", err)
		}
		for i, t := range chunk {
			own := s.keys.rate(start, t, s.rates.id)
			total := counts[t]
			for _, kv := range resp.Responses[2*i+1].GetResponseRange().Kvs {
				if string(kv.Key) == own {
					continue
				}
				n, err := strconv.ParseInt(string(kv.Value), 10, 64)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("share the request counts: %s holds %q, not a count", kv.Key, kv.Value)
				}
				total += n
			}
			totals[t] = total
		}
	}
	return totals, nil
}

// leaseFor returns the lease of the window's count keys: granted at the
// window's first share, to end rateLeaseMargin after the window.
func (r *rates) leaseFor(ctx context.Context, s *Store, start time.Time, length time.Duration) (clientv3.LeaseID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != 0 && r.window.Equal(start) {
		return r.lease, nil
	}
	ttl := time.Until(start.Add(length)) + rateLeaseMargin
	ctx, cancel := s.call(ctx)
	defer cancel()
	l, err := s.cli.Grant(ctx, int64(ttl/time.Second)+1)
	if err != nil {
		return 0, s.fail("grant the request counts' lease", err)
	}
	r.window, r.lease = start, l.ID
	return l.ID, nil
}

// forget drops a lease etcd no longer knows (it expired, or etcd lost
// it), so that the next share grants another.
func (r *rates) forget(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease == lease {
		r.lease = 0
	}
}
