package etcdstore

import (
	"context"
	"errors"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// expire removes the session if it has expired: its definition is there
// and its alive key is gone (etcd deleted it with the lease). One
// transaction compares both (and the services and the tenant's meta it
// read), deletes the session and its services and appends the one
// services.timeout event; whichever frontend commits it first wins, the
// others re-read, find no definition and do nothing.
func (s *Store) expire(ctx context.Context, tenant, id string) error {
	var expired []api.Service
	done := false
	err := s.committers.run(ctx, tenant, &mutation{
		meta: true,
		keys: s.sessionKeys(tenant, id),
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			expired, done = nil, false
			var d definition
			ok, err := r.decode(s.keys.session(tenant, id), &d)
			if err != nil || !ok || r.present(s.keys.alive(tenant, id)) {
				return nil, err // deleted, expired by another frontend, or alive
			}
			ops, services := s.removeSession(tenant, id, d, r)
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
	s.beats.forget(tenant, id)
	if err == nil && done {
		s.log.Info("session expired", zap.String("tenant", tenant), zap.String("session_id", id), zap.Int("services", len(expired)))
	}
	return err
}

// expireAsync expires a session in the background (the watch loop must
// not wait for etcd), logging a failure: the next reconciliation retries.
func (s *Store) expireAsync(tenant, id string) {
	s.bg.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, 4*s.callTimeout)
		defer cancel()
		if err := s.expire(ctx, tenant, id); err != nil && s.ctx.Err() == nil {
			s.log.Warn("expire session: will retry at the next reconciliation", zap.String("tenant", tenant), zap.String("session_id", id), zap.Error(err))
		}
	})
}

// watch is a running watch of the alive keys' deletions.
type watch struct {
	ch     clientv3.WatchChan
	cancel context.CancelFunc
}

// startWatch watches the deletions of alive keys from revision rev on.
func (s *Store) startWatch(rev int64) (watch, error) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	ch := s.cli.Watch(ctx, s.keys.aliveRoot(), clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithFilterPut())
	return watch{ch: ch, cancel: cancel}, nil
}

// watchLoop expires the session of every alive key deleted. When the
// watch ends (etcd lost its leader, compacted past it, or the connection
// broke) it reconciles and watches again from then on, so that no expiry
// is missed.
func (s *Store) watchLoop(w watch) {
	defer func() { w.cancel() }()
	for {
		for resp := range w.ch {
			if err := resp.Err(); err != nil {
				s.log.Debug("expiry watch interrupted", zap.Error(err))
				break
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypeDelete {
					continue
				}
				if tenant, id, ok := s.keys.parseAlive(string(ev.Kv.Key)); ok {
					s.expireAsync(tenant, id)
				}
			}
		}
		w.cancel()
		// Start again after a pause, from the present: reconcile covers
		// what happened meanwhile.
		pause := 100 * time.Millisecond
		for attempt := 1; ; attempt++ {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, 2*time.Second)
			rev, err := s.currentRevision()
			if err == nil {
				w, err = s.startWatch(rev + 1)
			}
			if err == nil {
				err = s.reconcile()
			}
			if err == nil {
				break
			}
			w.cancel()
			if s.ctx.Err() != nil {
				return
			}
			if attempt == 1 || attempt%10 == 0 {
				s.log.Warn("expiry watch: cannot restart yet, retrying", zap.Int("attempt", attempt), zap.Error(err))
			}
		}
	}
}

// currentRevision is etcd's current revision (a linearizable read).
func (s *Store) currentRevision() (int64, error) {
	ctx, cancel := s.call(s.ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.keys.schema())
	if err != nil {
		return 0, s.fail("read the current revision", err)
	}
	return resp.Header.Revision, nil
}

func (s *Store) reconcileLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(reconcileEvery):
		}
		if err := s.reconcile(); err != nil && !errors.Is(err, errClosed) {
			s.log.Warn("reconcile expired sessions", zap.Error(err))
		}
	}
}

// reconcile finds every session whose definition has no alive key (its
// lease expired while no frontend watched, or its expiry failed) and
// expires it.
func (s *Store) reconcile() error {
	tenants, err := s.tenants()
	if err != nil {
		return err
	}
	for _, t := range tenants {
		ctx, cancel := s.call(s.ctx)
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.keys.sessions(t), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
			clientv3.OpGet(s.keys.alives(t), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		).Commit()
		cancel()
		if err != nil {
			return s.fail("reconcile tenant "+t, err)
		}
		alive := map[string]bool{}
		for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
			alive[strings.TrimPrefix(string(kv.Key), s.keys.alives(t))] = true
		}
		for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
			if id := strings.TrimPrefix(string(kv.Key), s.keys.sessions(t)); !alive[id] {
				s.expireAsync(t, id)
			}
		}
	}
	return nil
}

// tenants lists the tenants that have ever written, from the index.
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
