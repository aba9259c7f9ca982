package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Heartbeats: how many swaps one transaction carries, and how many
// transactions are in flight at once.
const (
	maxBeatBatch = 100 // below etcd's 128 operations per transaction
	beatWorkers  = 2
)

// Heartbeat implements store.Store: decide on the chain as this frontend
// last saw it, swap it in etcd if nobody changed it since (else decide
// again on what etcd holds), then keep the session's lease alive. A token
// that does not chain is refused only after the chain was read fresh, so a
// stale cache never refuses a good token; and since the swap compares the
// chain key's revision, a stale cache never accepts a bad one either.
func (s *Store) Heartbeat(ctx context.Context, tenant, id string, got, next uuid.UUID) (uuid.UUID, error) {
	if err := s.waitReady(ctx); err != nil {
		return uuid.UUID{}, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	e, fresh, err := s.beats.entry(ctx, tenant, id)
	if err != nil {
		return uuid.UUID{}, err
	}
	chainKey := s.keys.beat(tenant, id)
	for range 8 {
		e.mu.Lock()
		cur, rev, lease := e.chain, e.rev, e.lease
		e.mu.Unlock()
		chain, reply, err := cur.chain().Advance(got, next)
		if errors.Is(err, store.ErrTokenMismatch) && !fresh {
			if e, err = s.beats.reload(ctx, tenant, id); err != nil {
				return uuid.UUID{}, err
			}
			fresh = true
			continue
		}
		if err != nil {
			return uuid.UUID{}, err
		}
		val := chainValue{Cur: chain.Cur, Prev: chain.Prev, HasPrev: chain.HasPrev, LastSeen: time.Now().UnixMilli()}
		res := s.beats.swap(ctx, chainKey, rev, val)
		if res.err != nil {
			return uuid.UUID{}, res.err
		}
		if !res.ok {
			// Another heartbeat (here or on another frontend) or a change
			// of the session came first: decide again on what etcd holds.
			// (A changed lease is found by the keep-alive.)
			if e, err = s.beats.fillChain(tenant, id, e, res.chain); err != nil {
				return uuid.UUID{}, err
			}
			fresh = true
			continue
		}
		e.mu.Lock()
		if e.rev == rev {
			e.chain, e.rev = val, res.rev
		}
		e.mu.Unlock()
		return reply, s.keepAlive(ctx, tenant, id, lease)
	}
	return uuid.UUID{}, store.Unavailable(fmt.Errorf("heartbeat session %s: the token chain kept changing under it", id))
}

// keepAlive renews the session's lease. A lease that is gone was replaced
// by a timeout change (renew the new one) or expired (the session is
// being removed: 404).
func (s *Store) keepAlive(ctx context.Context, tenant, id string, lease int64) error {
	ttl, err := s.keeper.keepAlive(ctx, lease)
	if err != nil || ttl > 0 {
		return err
	}
	e, err := s.beats.reload(ctx, tenant, id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	now := e.lease
	e.mu.Unlock()
	if now != lease {
		if ttl, err = s.keeper.keepAlive(ctx, now); err != nil || ttl > 0 {
			return err
		}
	}
	s.beats.forget(tenant, id)
	return store.ErrNotFound
}

// beats is the frontend's cache of token chains and the batching of their
// compare-and-swaps.
type beats struct {
	s     *Store
	queue chan *swapReq

	mu    sync.RWMutex
	cache map[string]*beatEntry // by tenant + "/" + session id
}

// beatEntry is a session's chain as this frontend last saw it.
type beatEntry struct {
	mu    sync.Mutex
	lease int64
	rev   int64 // modification revision of the chain key
	chain chainValue
}

type swapReq struct {
	ctx      context.Context
	chainKey string
	rev      int64
	value    string
	done     chan swapResult
}

type swapResult struct {
	ok  bool
	rev int64 // the chain key's new revision, when ok
	// When not ok: the chain key as etcd holds it now (nil: absent).
	chain *mvccpb.KeyValue
	err   error
}

func newBeats(s *Store) *beats {
	b := &beats{s: s, queue: make(chan *swapReq, 4*maxBeatBatch), cache: map[string]*beatEntry{}}
	for range beatWorkers {
		s.bg.Go(b.work)
	}
	return b
}

func (b *beats) close() {}

// entry returns the session's cached chain, reading it on first use
// (fresh reports that it was just read).
func (b *beats) entry(ctx context.Context, tenant, id string) (*beatEntry, bool, error) {
	b.mu.RLock()
	e := b.cache[tenant+"/"+id]
	b.mu.RUnlock()
	if e != nil {
		return e, false, nil
	}
	e, err := b.reload(ctx, tenant, id)
	return e, true, err
}

// reload reads the session's definition and chain and caches them.
func (b *beats) reload(ctx context.Context, tenant, id string) (*beatEntry, error) {
	resp, err := b.s.readTxn(ctx, "read session "+id, clientv3.OpGet(b.s.keys.session(tenant, id)), clientv3.OpGet(b.s.keys.beat(tenant, id)))
	if err != nil {
		return nil, err
	}
	var def, chain *mvccpb.KeyValue
	if len(resp[0]) > 0 {
		def = resp[0][0]
	}
	if len(resp[1]) > 0 {
		chain = resp[1][0]
	}
	return b.fill(tenant, id, def, chain)
}

// fill caches the session's chain from its keys as read (nil: absent).
func (b *beats) fill(tenant, id string, def, chain *mvccpb.KeyValue) (*beatEntry, error) {
	if def == nil || chain == nil {
		b.forget(tenant, id)
		return nil, store.ErrNotFound
	}
	var d definition
	e := &beatEntry{rev: chain.ModRevision}
	if err := decodeKV(def, &d); err != nil {
		return nil, err
	}
	var err error
	if e.chain, err = decodeChain(chain); err != nil {
		return nil, err
	}
	e.lease = d.Lease
	b.mu.Lock()
	if old := b.cache[tenant+"/"+id]; old != nil {
		// Keep one entry per session: heartbeats in flight hold it.
		old.mu.Lock()
		if e.rev >= old.rev {
			old.lease, old.rev, old.chain = e.lease, e.rev, e.chain
		}
		old.mu.Unlock()
		e = old
	} else {
		b.cache[tenant+"/"+id] = e
	}
	b.mu.Unlock()
	return e, nil
}

// fillChain updates e, the session's entry, from its chain key as read
// (nil: the session is gone).
func (b *beats) fillChain(tenant, id string, e *beatEntry, chain *mvccpb.KeyValue) (*beatEntry, error) {
	if chain == nil {
		b.forget(tenant, id)
		return nil, store.ErrNotFound
	}
	c, err := decodeChain(chain)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if chain.ModRevision >= e.rev {
		e.chain, e.rev = c, chain.ModRevision
	}
	e.mu.Unlock()
	return e, nil
}

// forget drops the session's cached chain.
func (b *beats) forget(tenant, id string) {
	b.mu.Lock()
	delete(b.cache, tenant+"/"+id)
	b.mu.Unlock()
}

// swap queues a compare-and-swap of a chain key and waits for its result.
func (b *beats) swap(ctx context.Context, chainKey string, rev int64, v chainValue) swapResult {
	req := &swapReq{ctx: ctx, chainKey: chainKey, rev: rev, value: v.marshal(), done: make(chan swapResult, 1)}
	select {
	case b.queue <- req:
	case <-ctx.Done():
		return swapResult{err: b.s.fail("heartbeat", ctx.Err())}
	}
	select {
	case res := <-req.done:
		return res
	case <-ctx.Done():
		return swapResult{err: b.s.fail("heartbeat", ctx.Err())}
	}
}

// work sends the queued swaps, as many as are waiting (up to
// maxBeatBatch), in one transaction (sendOnce).
func (b *beats) work() {
	var carry []*swapReq
	for {
		batch := carry
		carry = nil
		if len(batch) == 0 {
			select {
			case req := <-b.queue:
				batch = append(batch, req)
			case <-b.s.ctx.Done():
				return
			}
		}
		seen := make(map[string]bool, len(batch))
		for _, r := range batch {
			seen[r.chainKey] = true
		}
	fill:
		for len(batch) < maxBeatBatch {
			select {
			case req := <-b.queue:
				if seen[req.chainKey] {
					// One key once per transaction (etcd refuses it
					// twice): the next one takes it.
					carry = append(carry, req)
					continue
				}
				seen[req.chainKey] = true
				batch = append(batch, req)
			default:
				break fill
			}
		}
		b.send(batch)
	}
}

func (b *beats) send(batch []*swapReq) {
	for len(batch) > 0 {
		batch = b.sendOnce(batch)
	}
}

// sendOnce sends the batch as one transaction that compares every chain
// key's revision and puts every new chain, or else reads the chain keys.
// One transaction of plain operations costs etcd much less than one
// nested transaction per swap, and a failed compare is rare (the session's
// heartbeats moved to another frontend): the swaps whose compare held are
// returned, to be sent again at once, and the others answered with what
// etcd holds.
func (b *beats) sendOnce(batch []*swapReq) []*swapReq {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() == nil { // else its caller has given up and answered
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return nil
	}
	cmps := make([]clientv3.Cmp, len(live))
	puts := make([]clientv3.Op, len(live))
	gets := make([]clientv3.Op, len(live))
	for i, r := range live {
		cmps[i] = clientv3.Compare(clientv3.ModRevision(r.chainKey), "=", r.rev)
		puts[i] = clientv3.OpPut(r.chainKey, r.value)
		gets[i] = clientv3.OpGet(r.chainKey)
	}
	ctx, cancel := b.s.call(b.s.ctx)
	resp, err := b.s.cli.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	cancel()
	if err != nil {
		err = b.s.fail("heartbeat", err)
		for _, r := range live {
			r.done <- swapResult{err: err}
		}
		return nil
	}
	if resp.Succeeded {
		for _, r := range live {
			r.done <- swapResult{ok: true, rev: resp.Header.Revision}
		}
		return nil
	}
	var again []*swapReq
	for i, r := range live {
		var kv *mvccpb.KeyValue
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			kv = kvs[0]
		}
		if kv != nil && kv.ModRevision == r.rev {
			again = append(again, r)
			continue
		}
		r.done <- swapResult{chain: kv}
	}
	return again
}
