package etcdstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Expiry. Every frontend watches every chain key (R/beats/), so its index
// knows each session's chain, the revision of its last heartbeat (or
// creation, or timeout change) and when it saw it; the session expires
// heartbeat_timeout after that unless the revision moves. Every frontend
// times every session, and each one whose timer fires tries the same
// transaction (expire): it deletes the session only if its chain key is
// still at the revision that frontend timed from, so the first to commit
// wins and writes the one services.timeout event, and a heartbeat
// committed meanwhile (a new revision) saves the session, on whichever
// frontend it came in. A frontend that sees a revision late only expires
// late, never early: the time runs from when it saw the revision, which is
// after its commit.
//
// When a frontend starts, or its watch was interrupted (etcd lost its
// leader or quorum), it reads every chain key again (sync) and times each
// session from its last heartbeat's wall-clock time (last_seen): a session
// whose timeout passed meanwhile expires at once. That needs the
// frontends' clocks to agree (NTP); the running timers use each frontend's
// monotonic clock only.

// retryExpiryIn is when an expiry that could not commit (etcd unavailable)
// is tried again.
const retryExpiryIn = time.Second

// index is the frontend's view of every session's chain key.
type index struct {
	s    *Store
	base time.Time // origin of the monotonic clock of deadlines

	mu   sync.Mutex
	m    map[string]*tracked // by chain key
	h    store.Deadlines[*tracked]
	wake chan struct{}
}

// tracked is one session's chain key as the index last saw it.
type tracked struct {
	key      string
	rev      int64
	chain    chainValue
	deadline int64 // monotonic ns when it expires unless rev moves
	queued   int64 // the deadline of its current heap entry
	expiring bool  // an expiry transaction is in flight
}

func newIndex(s *Store) *index {
	return &index{s: s, base: time.Now(), m: map[string]*tracked{}, wake: make(chan struct{}, 1)}
}

func (ix *index) mono(t time.Time) int64 { return int64(t.Sub(ix.base)) }

// chain returns the session's chain and its revision as last seen.
func (ix *index) chain(key string) (chainValue, int64, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if t := ix.m[key]; t != nil {
		return t.chain, t.rev, true
	}
	return chainValue{}, 0, false
}

// observe records a revision of a chain key seen at the time at; older
// revisions than the one known are ignored. The session's timer runs from
// then.
func (ix *index) observe(key string, rev int64, c chainValue, at time.Time) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.observeLocked(key, rev, c, ix.mono(at)+int64(time.Duration(c.Timeout)*time.Second))
}

func (ix *index) observeLocked(key string, rev int64, c chainValue, deadline int64) {
	t := ix.m[key]
	if t == nil {
		t = &tracked{key: key}
		ix.m[key] = t
	} else if rev < t.rev || (rev == t.rev && deadline >= t.deadline) {
		return
	}
	t.rev, t.chain, t.deadline = rev, c, deadline
	if t.queued == 0 || t.deadline < t.queued {
		ix.push(t)
	}
}

// push queues t for its deadline. ix.mu must be held.
func (ix *index) push(t *tracked) {
	t.queued = t.deadline
	if ix.h.Push(t.deadline, t) {
		select {
		case ix.wake <- struct{}{}:
		default:
		}
	}
}

// remove forgets a chain key (the session was deleted or expired).
func (ix *index) remove(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	delete(ix.m, key)
}

// run fires the timers until the store closes: each session due is
// expired in the background (expire); one that could not be is tried
// again retryExpiryIn later.
func (ix *index) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var popped []store.Due[*tracked]
	for {
		now := ix.mono(time.Now())
		var due []*tracked
		ix.mu.Lock()
		popped = ix.h.PopDue(now, popped[:0])
		for _, e := range popped {
			t := e.Value
			switch {
			case ix.m[t.key] != t, e.Deadline != t.queued:
				// Removed, or a stale entry superseded by a newer one.
			case t.deadline > now:
				ix.push(t) // heartbeated since: wait for the new deadline
			case t.expiring:
				// Due again while its last expiry is still in flight: look
				// again once that one is answered.
				t.deadline = now + int64(retryExpiryIn)
				ix.push(t)
			default:
				t.queued = 0
				t.expiring = true
				due = append(due, t)
			}
		}
		clear(popped)
		wait := time.Hour
		if first, ok := ix.h.Next(); ok {
			wait = time.Duration(first - now)
		}
		ix.mu.Unlock()
		for _, t := range due {
			ix.s.bg.Go(func() { ix.expire(t) })
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-timer.C:
		case <-ix.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-ix.s.ctx.Done():
			return
		}
	}
}

// expire runs the expiry of a tracked session that is due.
func (ix *index) expire(t *tracked) {
	ix.mu.Lock()
	rev := t.rev
	ix.mu.Unlock()
	tenant, id, ok := ix.s.keys.parseBeat(t.key)
	var err error
	if ok {
		ctx, cancel := context.WithTimeout(ix.s.ctx, 4*ix.s.callTimeout)
		err = ix.s.expire(ctx, tenant, id, rev)
		cancel()
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	t.expiring = false
	if ix.m[t.key] != t {
		return
	}
	if err != nil {
		if ix.s.ctx.Err() == nil {
			ix.s.log.Warn("expire session: will retry", zap.String("tenant", tenant), zap.String("session_id", id), zap.Error(err))
		}
		t.deadline = max(t.deadline, ix.mono(time.Now())+int64(retryExpiryIn))
		ix.push(t)
		return
	}
	if t.rev == rev {
		// Expired here or elsewhere, or deleted: the watch removes it; and
		// if the watch is down, the next sync does.
		delete(ix.m, t.key)
	} else if t.deadline > t.queued {
		ix.push(t)
	}
}

// expire removes the session if its chain key is still at rev (no
// heartbeat since the frontend started timing it): one transaction deletes
// its definition, chain and services and appends the services.timeout
// event, comparing every key read (and the tenant's meta).
func (s *Store) expire(ctx context.Context, tenant, id string, rev int64) error {
	var expired []api.Service
	done := false
	chainKey := s.keys.beat(tenant, id)
	err := s.committers.run(ctx, tenant, &mutation{
		meta:  true,
		event: api.EventServicesTimeout,
		keys:  s.sessionKeys(tenant, id),
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			expired, done = nil, false
			var d definition
			ok, err := r.decode(s.keys.session(tenant, id), &d)
			if err != nil || !ok || r.rev(chainKey) != rev {
				return nil, err // deleted, expired by another frontend, or heartbeated
			}
			ops, services := s.removeSession(tenant, id, d)
			m.Sessions--
			m.Services -= len(services)
			ev, err := m.event(s.keys, tenant, api.EventServicesTimeout, services, time.Now())
			if err != nil {
				return nil, err
			}
			expired, done = services, true
			return append(ops, ev), nil
		},
	})
	if err == nil && done {
		s.log.Info("session expired", zap.String("tenant", tenant), zap.String("session_id", id), zap.Int("services", len(expired)))
	}
	return err
}

// sync reads every chain key at one revision and makes the index that:
// sessions it did not know are timed from their last heartbeat's
// wall-clock time, changed ones too, and ones that are gone are dropped.
// It returns the revision read, for the watch to start after.
func (s *Store) sync() (int64, error) {
	const page = 5000
	prefix := s.keys.beatRoot()
	seen := map[string]bool{}
	var rev int64
	from := prefix
	for {
		ctx, cancel := s.call(s.ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(page)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		cancel()
		if err != nil {
			return 0, s.fail("read the token chains", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		s.index.syncPage(resp.Kvs, seen)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	s.index.mu.Lock()
	for k := range s.index.m {
		if !seen[k] {
			delete(s.index.m, k)
		}
	}
	s.index.mu.Unlock()
	return rev, nil
}

func (ix *index) syncPage(kvs []*mvccpb.KeyValue, seen map[string]bool) {
	now := time.Now()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, kv := range kvs {
		c, err := decodeChain(kv)
		if err != nil {
			ix.s.log.Warn("sync: skipped a chain key", zap.Error(err))
			continue
		}
		key := string(kv.Key)
		seen[key] = true
		if t := ix.m[key]; t != nil && t.rev == kv.ModRevision {
			continue // known, and timed from when it was seen
		}
		timeout := time.Duration(c.Timeout) * time.Second
		left := min(max(time.UnixMilli(c.At).Add(timeout).Sub(now), 0), timeout)
		ix.observeLocked(key, kv.ModRevision, c, ix.mono(now)+int64(left))
	}
}

// watch is a running watch of the chain keys.
type watch struct {
	ch     clientv3.WatchChan
	cancel context.CancelFunc
}

// startWatch watches the chain keys from revision rev on. Without a
// leader the member ends the watch, and the watch loop syncs again.
func (s *Store) startWatch(rev int64) watch {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	ch := s.cli.Watch(ctx, s.keys.beatRoot(), clientv3.WithPrefix(), clientv3.WithRev(rev))
	return watch{ch: ch, cancel: cancel}
}

// watchLoop feeds the index from the watch. When the watch ends (etcd
// lost its leader, compacted past it, or the connection broke) it syncs and
// watches again from then on, so that nothing is missed.
func (s *Store) watchLoop(w watch) {
	defer func() { w.cancel() }()
	for {
		for resp := range w.ch {
			if err := resp.Err(); err != nil {
				s.log.Debug("chain watch interrupted", zap.Error(err))
				break
			}
			now := time.Now()
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					s.index.remove(key)
					continue
				}
				c, err := decodeChain(ev.Kv)
				if err != nil {
					s.log.Warn("watch: skipped a chain key", zap.Error(err))
					continue
				}
				s.index.observe(key, ev.Kv.ModRevision, c, now)
			}
		}
		w.cancel()
		pause := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, 2*time.Second)
			rev, err := s.sync()
			if err == nil {
				w = s.startWatch(rev + 1)
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			if attempt == 1 || attempt%10 == 0 {
				s.log.Warn("chain watch: cannot restart yet, retrying", zap.Int("attempt", attempt), zap.Error(err))
			}
		}
	}
}

// resyncLoop syncs the index every reconcileEvery, a safety net: the
// watch is what keeps it current.
func (s *Store) resyncLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(reconcileEvery):
		}
		if _, err := s.sync(); err != nil && !errors.Is(err, errClosed) {
			s.log.Warn("sync the token chains", zap.Error(err))
		}
	}
}

// tenants lists the tenants that have ever written, from the index key.
func (s *Store) tenants() ([]string, error) {
	ctx, cancel := s.call(s.ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.indexPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, s.fail("list tenants", err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), s.keys.indexPrefix()))
	}
	return out, nil
}
