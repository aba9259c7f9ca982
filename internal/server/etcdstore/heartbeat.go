package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Heartbeats: how many swaps one transaction carries, and how many
// transactions a frontend has in flight at once.
const (
	maxBeatBatch = 100 // below etcd's 128 operations per transaction
	beatWorkers  = 2
)

// Heartbeat implements store.Store: decide on the chain as this frontend
// last saw it (the index, fed by the watch of every chain key), and swap
// it in etcd if nobody changed it since, else decide again on what etcd
// holds. The committed swap is the heartbeat: it moves the chain key's
// revision, which is what every frontend times the session's expiry from.
// A token that does not chain is refused only after the chain was read
// fresh, so a stale index never refuses a good token; and since the swap
// compares the revision, a stale index never accepts a bad one either.
func (s *Store) Heartbeat(ctx context.Context, tenant, id string, got, next uuid.UUID) (uuid.UUID, error) {
	if err := s.waitReady(ctx); err != nil {
		return uuid.UUID{}, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	key := s.keys.beat(tenant, id)
	cur, rev, ok := s.index.chain(key)
	fresh := false
	if !ok {
		var err error
		if cur, rev, err = s.readChain(ctx, key); err != nil {
			return uuid.UUID{}, err
		}
		fresh = true
	}
	for range 8 {
		chain, reply, err := cur.chain().Advance(got, next)
		if errors.Is(err, store.ErrTokenMismatch) && !fresh {
			if cur, rev, err = s.readChain(ctx, key); err != nil {
				return uuid.UUID{}, err
			}
			fresh = true
			continue
		}
		if err != nil {
			return uuid.UUID{}, err
		}
		val := cur
		val.Cur, val.Prev, val.HasPrev = chain.Cur, chain.Prev, chain.HasPrev
		now := time.Now()
		val.At, val.LastSeen = now.UnixMilli(), now.UnixMilli()
		res := s.beats.swap(ctx, key, rev, val)
		if res.err != nil {
			return uuid.UUID{}, res.err
		}
		if !res.ok {
			// Another heartbeat (here or on another frontend) or a change
			// of the session came first: decide again on what etcd holds.
			if res.chain == nil {
				return uuid.UUID{}, store.ErrNotFound
			}
			if cur, err = decodeChain(res.chain); err != nil {
				return uuid.UUID{}, err
			}
			rev, fresh = res.chain.ModRevision, true
			s.index.observe(key, rev, cur, time.Now())
			continue
		}
		s.index.observe(key, res.rev, val, time.Now())
		return reply, nil
	}
	return uuid.UUID{}, store.Unavailable(fmt.Errorf("heartbeat session %s: the token chain kept changing under it", id))
}

// readChain reads a chain key (a linearizable read) and records it in the
// index; ErrNotFound when the session is gone.
func (s *Store) readChain(ctx context.Context, key string) (chainValue, int64, error) {
	resp, err := s.readTxn(ctx, "read the token chain", clientv3.OpGet(key))
	if err != nil {
		return chainValue{}, 0, err
	}
	if len(resp[0]) == 0 {
		s.index.remove(key)
		return chainValue{}, 0, store.ErrNotFound
	}
	kv := resp[0][0]
	c, err := decodeChain(kv)
	if err != nil {
		return chainValue{}, 0, err
	}
	s.index.observe(key, kv.ModRevision, c, time.Now())
	return c, kv.ModRevision, nil
}

// beats batches the compare-and-swaps of chain keys.
type beats struct {
	s     *Store
	queue chan *swapReq
}

type swapReq struct {
	ctx   context.Context
	key   string
	rev   int64
	value string
	done  chan swapResult
}

type swapResult struct {
	ok  bool
	rev int64 // the chain key's new revision, when ok
	// When not ok: the chain key as etcd holds it now (nil: absent).
	chain *mvccpb.KeyValue
	err   error
}

func newBeats(s *Store) *beats {
	b := &beats{s: s, queue: make(chan *swapReq, 4*maxBeatBatch)}
	for range beatWorkers {
		s.bg.Go(b.work)
	}
	return b
}

// swap queues a compare-and-swap of a chain key and waits for its result.
func (b *beats) swap(ctx context.Context, key string, rev int64, v chainValue) swapResult {
	req := &swapReq{ctx: ctx, key: key, rev: rev, value: v.marshal(), done: make(chan swapResult, 1)}
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
// maxBeatBatch), in one transaction (sendOnce). While one worker's
// transaction is in flight the next swaps queue up for the other's, so
// that a busy frontend sends fewer, larger transactions: etcd's cost is
// mostly per transaction, not per key.
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
			seen[r.key] = true
		}
	fill:
		for len(batch) < maxBeatBatch {
			select {
			case req := <-b.queue:
				if seen[req.key] {
					// One key once per transaction (etcd refuses it
					// twice): the next one takes it.
					carry = append(carry, req)
					continue
				}
				seen[req.key] = true
				batch = append(batch, req)
			default:
				break fill
			}
		}
		for len(batch) > 0 {
			batch = b.sendOnce(batch)
		}
	}
}

// sendOnce sends the batch as one transaction that compares every chain
// key's revision and puts every new chain, or else reads the chain keys.
// One transaction of plain operations costs etcd much less than one
// nested transaction per swap, and a failed compare is rare (the session's
// heartbeats moved to another frontend faster than the watch): the swaps
// whose compare held are returned, to be sent again at once, and the
// others answered with what etcd holds.
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
		cmps[i] = clientv3.Compare(clientv3.ModRevision(r.key), "=", r.rev)
		puts[i] = clientv3.OpPut(r.key, r.value)
		gets[i] = clientv3.OpGet(r.key)
	}
	ctx, cancel := b.s.call(b.s.ctx)
	start := time.Now()
	resp, err := b.s.cli.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	b.s.commitHeartbeats.Observe(time.Since(start).Seconds())
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
