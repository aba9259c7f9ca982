package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// meta is a tenant's counts and event sequence, the value of its meta key.
// Every write that changes a count or appends an event compares the meta
// key's revision, so that limits are exact and event ids are in commit
// order across frontends.
type meta struct {
	Sessions int    `json:"sessions"`
	Services int    `json:"services"`
	Config   int    `json:"config"`
	Seq      uint64 `json:"seq"`
	TS       int64  `json:"ts"` // unix ms of the last event
}

// event returns the write of the tenant's next event. Its id takes the
// larger of now and the last event's time, and the next sequence number.
func (m *meta) event(k keys, tenant, typ string, payload any, now time.Time) (clientv3.Op, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("encode %s event payload: %w", typ, err)
	}
	m.TS = max(m.TS, now.UnixMilli())
	m.Seq++
	ev := api.Event{ID: store.EventID(m.TS, m.Seq), Timestamp: m.TS, Type: typ, Payload: raw}
	data, err := json.Marshal(ev)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("encode %s event: %w", typ, err)
	}
	return clientv3.OpPut(k.events(tenant)+ev.ID, string(data)), nil
}

// reads are the keys read for a round of decisions: a nil value is a key
// read and found absent.
type reads map[string]*mvccpb.KeyValue

// value returns the value of key, or nil when it is absent (or not read).
func (r reads) value(key string) []byte {
	if kv := r[key]; kv != nil {
		return kv.Value
	}
	return nil
}

// present reports whether key was read and found.
func (r reads) present(key string) bool { return r[key] != nil }

// rev is the modification revision of key (0: absent).
func (r reads) rev(key string) int64 {
	if kv := r[key]; kv != nil {
		return kv.ModRevision
	}
	return 0
}

// decode decodes key's value into v and reports whether it was there.
func (r reads) decode(key string, v any) (bool, error) {
	b := r.value(key)
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

// mutation is one change of a tenant, decided against what etcd holds at
// commit time.
type mutation struct {
	ctx context.Context
	// meta: the decision reads or changes the tenant's meta.
	meta bool
	// keys returns the keys the decision depends on, given what has been
	// read so far; it is called again after each read until it asks for
	// nothing new (a session's definition names its services).
	keys func(r reads) []string
	// decide returns the change's writes, deciding on r, and updates m
	// (the tenant's meta after the changes before this one in the same
	// transaction) when it counts or appends events. An error is the
	// answer, with no writes; no writes and no error: nothing to do.
	decide func(r reads, m *meta) ([]clientv3.Op, error)
	// event is the type of the events decide appends (to m), if any: they
	// are counted once its transaction has committed.
	event string

	done chan error
}

// committers hold one committer per tenant with work queued.
type committers struct {
	s  *Store
	mu sync.Mutex
	m  map[string]*committer
}

func (cs *committers) init(s *Store) { cs.s, cs.m = s, map[string]*committer{} }

// committer queues a tenant's mutations and commits them in groups: one
// read of every key they depend on, one decision each in queue order, one
// transaction that compares every key read (and the meta key when a
// decision used it) and writes every decision. A group whose compare fails
// (another frontend wrote in between) is decided again on what its Else
// branch read. So concurrent writes of one tenant on one frontend share
// transactions, and writes on several frontends are serialised by etcd.
type committer struct {
	tenant  string
	mu      sync.Mutex
	queue   []*mutation
	running bool
}

// mutate runs mut once the store is ready.
func (s *Store) mutate(ctx context.Context, tenant string, mut *mutation) error {
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	return s.committers.run(ctx, tenant, mut)
}

// run queues mut for tenant and waits for its answer (or ctx).
func (cs *committers) run(ctx context.Context, tenant string, mut *mutation) error {
	ctx, cancel := cs.s.call(ctx)
	defer cancel()
	mut.ctx = ctx
	mut.done = make(chan error, 1)
	cs.mu.Lock()
	c := cs.m[tenant]
	if c == nil {
		c = &committer{tenant: tenant}
		cs.m[tenant] = c
	}
	c.mu.Lock()
	c.queue = append(c.queue, mut)
	start := !c.running
	c.running = true
	c.mu.Unlock()
	cs.mu.Unlock()
	if start {
		go cs.loop(c)
	}
	select {
	case err := <-mut.done:
		return err
	case <-ctx.Done():
		// The mutation may still commit; the client retries.
		return cs.s.fail("commit", ctx.Err())
	}
}

// maxGroup bounds the mutations decided together.
const maxGroup = 64

func (cs *committers) loop(c *committer) {
	var carried reads
	for {
		cs.mu.Lock()
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			delete(cs.m, c.tenant)
			c.mu.Unlock()
			cs.mu.Unlock()
			return
		}
		group := append([]*mutation(nil), c.queue[:min(len(c.queue), maxGroup)]...)
		c.mu.Unlock()
		cs.mu.Unlock()

		n, next := cs.s.commitGroup(c.tenant, group, carried)
		carried = next
		c.mu.Lock()
		c.queue = c.queue[n:]
		c.mu.Unlock()
	}
}

// commitGroup decides and commits a prefix of group and answers its
// mutations; it returns how many it answered (at least one) and, after a
// conflict that ended it, the reads to decide the rest on.
func (s *Store) commitGroup(tenant string, group []*mutation, r reads) (int, reads) {
	// Mutations whose caller is gone are answered at once.
	if group[0].ctx.Err() != nil {
		group[0].done <- s.fail("commit", group[0].ctx.Err())
		return 1, r
	}
	if r == nil {
		r = reads{}
	}
	metaKey := s.keys.meta(tenant)
	for attempt := 0; ; attempt++ {
		// The group's calls are bounded by the store, not by any one
		// caller: each caller waits for its answer within its own
		// deadline.
		ctx := s.ctx
		if err := group[0].ctx.Err(); err != nil {
			group[0].done <- s.fail("commit", err)
			return 1, r
		}
		// Read until every decision has what it depends on.
		for range 4 {
			var missing []string
			seen := map[string]bool{}
			for _, m := range group {
				if m.meta && !has(r, metaKey) && !seen[metaKey] {
					missing, seen[metaKey] = append(missing, metaKey), true
				}
				for _, k := range m.keys(r) {
					if !has(r, k) && !seen[k] {
						missing, seen[k] = append(missing, k), true
					}
				}
			}
			if len(missing) == 0 {
				break
			}
			if err := s.read(ctx, r, missing); err != nil {
				for _, m := range group {
					m.done <- err
				}
				return len(group), nil
			}
		}
		// The group is the longest prefix whose mutations touch no key
		// in common (but the meta key) and fit one transaction: a later
		// mutation on the same key must see the earlier one's effect.
		var (
			cmpKeys []string
			claimed = map[string]bool{}
			useMeta bool
			n       int
			answers []error
			events  []uint64 // how many events each decision appended
			ops     []clientv3.Op
			m       meta
		)
		if _, err := r.decode(metaKey, &m); err != nil {
			for _, mu := range group {
				mu.done <- err
			}
			return len(group), nil
		}
		before := m
		for _, mu := range group {
			ks := mu.keys(r)
			overlap := false
			for _, k := range ks {
				if claimed[k] {
					overlap = true
				}
			}
			if overlap || (n > 0 && len(cmpKeys)+len(ks)+1 > maxTxnKeys) {
				break
			}
			trial := m
			wops, err := mu.decide(r, &trial)
			if n > 0 && len(ops)+len(wops)+2 > maxTxnKeys {
				break
			}
			if len(wops)+2 > maxTxnKeys {
				err, wops = fmt.Errorf("commit: one change of %d writes is more than etcd takes in a transaction", len(wops)), nil
			}
			events = append(events, trial.Seq-m.Seq)
			m = trial
			for _, k := range ks {
				claimed[k] = true
				cmpKeys = append(cmpKeys, k)
			}
			useMeta = useMeta || mu.meta
			answers = append(answers, err)
			ops = append(ops, wops...)
			n++
		}
		if len(ops) == 0 {
			// Answers from a linearizable read: nothing to commit.
			for i := range n {
				group[i].done <- answers[i]
			}
			return n, nil
		}
		if useMeta {
			cmpKeys = append(cmpKeys, metaKey)
			if m != before {
				data, err := json.Marshal(m)
				if err != nil {
					for i := range n {
						group[i].done <- err
					}
					return n, nil
				}
				ops = append(ops, clientv3.OpPut(metaKey, string(data)))
				if r[metaKey] == nil {
					ops = append(ops, clientv3.OpPut(s.keys.index(tenant), ""))
				}
			}
		}
		cmps := make([]clientv3.Cmp, len(cmpKeys))
		elses := make([]clientv3.Op, len(cmpKeys))
		for i, k := range cmpKeys {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", r.rev(k))
			elses[i] = clientv3.OpGet(k)
		}
		tctx, cancel := s.call(ctx)
		start := time.Now()
		resp, err := s.cli.Txn(tctx).If(cmps...).Then(ops...).Else(elses...).Commit()
		s.commitMutations.Observe(time.Since(start).Seconds())
		cancel()
		if err != nil {
			err = s.fail("commit", err)
			for i := range n {
				group[i].done <- err
			}
			return n, nil
		}
		if resp.Succeeded {
			for i := range n {
				if answers[i] == nil {
					s.countCommitted(group[i], events[i])
				}
				group[i].done <- answers[i]
			}
			return n, nil
		}
		// Another frontend wrote first: decide again on what it wrote.
		r = reads{}
		for i, k := range cmpKeys {
			r[k] = nil
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
				r[k] = kvs[0]
			}
		}
		if attempt >= 2 {
			// Writers of one tenant on several frontends keep colliding:
			// spread them out.
			time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond))))
		}
	}
}

// countCommitted counts the events (and so the expiries) of a committed
// decision of mu.
func (s *Store) countCommitted(mu *mutation, events uint64) {
	if events == 0 || mu.event == "" {
		return
	}
	s.metrics.Events.WithLabelValues(mu.event).Add(float64(events))
	if mu.event == api.EventServicesTimeout {
		// One services.timeout event per expired session.
		s.metrics.SessionExpiries.Add(float64(events))
	}
}

func has(r reads, k string) bool { _, ok := r[k]; return ok }

// read reads keys into r, in transactions of at most maxTxnKeys gets,
// sent at once.
func (s *Store) read(ctx context.Context, r reads, ks []string) error {
	var chunks [][]string
	for len(ks) > 0 {
		n := min(len(ks), maxTxnKeys)
		chunks, ks = append(chunks, ks[:n]), ks[n:]
	}
	resps := make([]*clientv3.TxnResponse, len(chunks))
	errs := make([]error, len(chunks))
	var wg sync.WaitGroup
	for i, chunk := range chunks {
		wg.Go(func() {
			ops := make([]clientv3.Op, len(chunk))
			for j, k := range chunk {
				ops[j] = clientv3.OpGet(k)
			}
			tctx, cancel := s.call(ctx)
			defer cancel()
			resps[i], errs[i] = s.cli.Txn(tctx).Then(ops...).Commit()
		})
	}
	wg.Wait()
	for i, chunk := range chunks {
		if errs[i] != nil {
			return s.fail("read", errs[i])
		}
		for j, k := range chunk {
			r[k] = nil
			if kvs := resps[i].Responses[j].GetResponseRange().Kvs; len(kvs) > 0 {
				r[k] = kvs[0]
			}
		}
	}
	return nil
}
