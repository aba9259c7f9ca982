// Package boltstore is sr-registry's store for one process: the state of
// every tenant in memory, every change committed to one bbolt file before
// it is answered (group commit), heartbeats in memory only, and expiry by
// a lazy min-heap of deadlines. It implements store.Store.
//
// It is not shared: one process owns the file (a second one gets a clear
// error). For several frontends over one replicated store see
// internal/server/etcdstore.
//
// # State and durability
//
// Every mutation (create, update or delete of a session, service or
// configuration value, and the events they append) is committed to bbolt,
// fsync included, before it returns, so it survives a kill -9 right after
// the reply. Concurrent mutations share transactions (group commit), those
// of one tenant included: a mutation is decided under its tenant's lock and
// queued before the lock is released, so that disk order is decision order,
// and its commit is waited for outside the lock.
//
// Heartbeats are not written: last_seen and the heartbeat token chain live
// in memory only, which is what lets one process hold 10,000 sessions
// heartbeating. After a restart, each stored session comes back with a full
// fresh timeout (rather than all expiring at once), last_seen null, and an
// unknown token chain: its first heartbeat accepts any well-formed token
// and starts a new chain, since the client still holds a token from before
// the restart that the server can no longer check. Identity tokens also
// live in memory: after a restart clients get 401 and authenticate again,
// as the hosted service's clients always did when a token was purged.
//
// # Expiry
//
// A session whose last heartbeat (or creation) is older than its
// heartbeat_timeout is removed with its services within a fraction of a
// second, and exactly one services.timeout event lists those services.
//
// # Events
//
// Event ids are store.EventID(ts, seq): the sequence is stored per tenant
// in bbolt and the timestamp never goes backwards, so ids never collide
// across restarts. Events older than store.EventRetention are pruned
// hourly.
package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

const (
	// housekeepingEvery is how often expired identity tokens are purged.
	housekeepingEvery = time.Minute
	// pruneEvery is how often old events are pruned.
	pruneEvery = time.Hour
)

// Store is the bbolt store. Open it with Open, release it with Close.
type Store struct {
	log     *zap.Logger
	limits  api.ResourceLimits
	metrics *store.Metrics
	file    *file
	exp     *expirer
	tokens  *tokens
	// base is the origin of the monotonic clock used for deadlines, so
	// that a wall clock step neither expires nor immortalises sessions.
	base time.Time

	mu      sync.RWMutex
	tenants map[string]*tenant

	stop      chan struct{}
	bg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Config configures Open.
type Config struct {
	// Dir holds the bbolt file; created if missing.
	Dir string
	// Store are the limits and the token lifetime.
	Store store.Options
	// Logger receives the store's logs; nil discards them.
	Logger *zap.Logger
	// MoveTenants, when not nil, says which tenants to give a new id
	// before the state is loaded (and which): their state is moved in one
	// transaction, unless the new id already has state.
	MoveTenants func(tenant string) (newID string, move bool)
}

// Open opens (or creates) the bbolt file in cfg.Dir, restores its
// sessions, services and configuration, and starts the expiry loop.
// Restored sessions get a full fresh timeout.
func Open(cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: create data dir: %w", err)
	}
	metrics := cfg.Store.Metrics.OrDiscard()
	f, err := openFile(cfg.Dir, metrics.CommitDuration.WithLabelValues(store.CommitMutations))
	if err != nil {
		return nil, err
	}
	if cfg.MoveTenants != nil {
		if err := moveTenants(f, cfg.MoveTenants, log); err != nil {
			_ = f.close()
			return nil, err
		}
	}
	s := &Store{
		log:     log,
		limits:  cfg.Store.Limits,
		metrics: metrics,
		file:    f,
		exp:     newExpirer(),
		tokens:  newTokens(cfg.Store.TokenTTL),
		base:    time.Now(),
		tenants: map[string]*tenant{},
		stop:    make(chan struct{}),
	}
	if err := s.restore(); err != nil {
		_ = f.close()
		return nil, err
	}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.runExpiry(s.stop) }()
	go func() { defer s.bg.Done(); s.housekeeping(s.stop) }()
	return s, nil
}

// moveTenants moves the tenants newID names and logs each move.
func moveTenants(f *file, newID func(string) (string, bool), log *zap.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	moves, err := f.moveTenants(ctx, newID)
	if err != nil {
		return err
	}
	for _, m := range moves {
		if m.taken {
			log.Warn("dev tenant of the old 10-digit form not moved: its new id already has state; its state stays unreachable under the old id",
				zap.String("old_tenant", m.from), zap.String("new_tenant", m.to))
			continue
		}
		log.Info("dev tenant moved to its 32-bit id", zap.String("old_tenant", m.from), zap.String("new_tenant", m.to))
	}
	return nil
}

// restore loads the durable state. Sessions come back with a fresh
// timeout and an unknown token chain (see the package documentation).
func (s *Store) restore() error {
	tenants, err := s.file.load()
	if err != nil {
		return err
	}
	now := s.mono()
	var nSessions, nServices, nConfig int
	for _, rt := range tenants {
		t := newTenant(rt.id)
		t.config = rt.config
		for _, ss := range rt.sessions {
			sess := &session{
				t:        t,
				id:       ss.ID,
				timeout:  int32(ss.HeartbeatTimeout),
				chain:    store.Chain{Unknown: true},
				created:  ss.Created,
				metadata: emptyToNil(ss.Metadata),
				deadline: now + int64(time.Duration(ss.HeartbeatTimeout)*time.Second),
			}
			t.sessions[sess.id] = sess
			s.exp.push(sess)
		}
		for _, sv := range rt.services {
			sess := t.sessions[sv.SessionID]
			if sess == nil {
				// Cannot happen with atomic commits; keep going rather
				// than refuse to start.
				s.log.Warn("restore: service without session, skipped",
					zap.String("tenant", rt.id), zap.String("service_id", sv.ID), zap.String("session_id", sv.SessionID))
				continue
			}
			svc := &service{sess: sess, id: sv.ID, tags: sv.Tags, metadata: emptyToNil(sv.Metadata)}
			t.services[svc.id] = svc
			sess.services = append(sess.services, svc)
		}
		nSessions += len(t.sessions)
		nServices += len(t.services)
		nConfig += len(t.config)
		s.tenants[t.id] = t
	}
	s.log.Info("state restored",
		zap.Int("tenants", len(tenants)),
		zap.Int("sessions", nSessions),
		zap.Int("services", nServices),
		zap.Int("configuration_values", nConfig))
	return nil
}

// Close stops the expiry loop and closes the file. Every mutation that
// returned is already on disk. Safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.bg.Wait()
		s.closeErr = s.file.close()
	})
	return s.closeErr
}

// Ready reports errClosed once Close has begun.
func (s *Store) Ready(context.Context) error {
	select {
	case <-s.stop:
		return errClosed
	default:
		return nil
	}
}

// mono is the monotonic clock of deadlines, in ns.
func (s *Store) mono() int64 { return int64(time.Since(s.base)) }

// tenant returns the live state of a tenant, creating it on first use.
func (s *Store) tenant(id string) *tenant {
	if t := s.lookup(id); t != nil {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[id]
	if t == nil {
		t = newTenant(id)
		s.tenants[id] = t
	}
	return t
}

// lookup returns the tenant's state, or nil when it has none yet.
func (s *Store) lookup(id string) *tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tenants[id]
}

// read runs fn under the tenant's lock; a tenant with no state yet reads
// as empty.
func (s *Store) read(tenant string, fn func(*tenant)) {
	t := s.lookup(tenant)
	if t == nil {
		t = newTenant(tenant)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fn(t)
}

func (s *Store) housekeeping(stop <-chan struct{}) {
	tick := time.NewTicker(housekeepingEvery)
	defer tick.Stop()
	var lastPrune time.Time
	for {
		now := time.Now()
		s.tokens.purge(now)
		if now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			n, err := s.file.pruneEvents(ctx, now.Add(-store.EventRetention).UnixMilli())
			cancel()
			switch {
			case err != nil && !errors.Is(err, store.ErrUnavailable):
				s.log.Error("prune events", zap.Error(err))
			case n > 0:
				s.log.Info("pruned old events", zap.Int("events", n), zap.Duration("retention", store.EventRetention))
			}
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// CreateSession implements store.Store.
func (s *Store) CreateSession(ctx context.Context, tenantID string, ns store.NewSession) (string, error) {
	t := s.tenant(tenantID)
	t.wmu.Lock()
	t.mu.Lock()
	if len(t.sessions) >= s.limits.Session {
		t.mu.Unlock()
		t.wmu.Unlock()
		return "", &store.LimitError{Resource: "sessions", Limit: s.limits.Session}
	}
	id := store.NewSessionID()
	for t.sessions[id] != nil {
		id = store.NewSessionID()
	}
	// Counted and its id taken from now on, invisible until it is on disk.
	sess := &session{
		t:        t,
		id:       id,
		timeout:  int32(ns.HeartbeatTimeout),
		pending:  true,
		created:  time.Now().UnixMilli(),
		metadata: emptyToNil(ns.Metadata),
		chain:    store.Chain{Cur: ns.Token},
	}
	t.sessions[id] = sess
	t.mu.Unlock()
	rec := sess.stored()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		return putJSON(tb.sessions, id, rec)
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		delete(t.sessions, id)
		return "", fmt.Errorf("create session: %w", err)
	}
	sess.pending = false
	sess.deadline = s.mono() + int64(time.Duration(sess.timeout)*time.Second)
	s.exp.push(sess)
	return id, nil
}

// Session implements store.Store.
func (s *Store) Session(_ context.Context, tenantID, id string) (api.Session, error) {
	var v api.Session
	err := store.ErrNotFound
	s.read(tenantID, func(t *tenant) {
		if sess := t.liveSession(id); sess != nil {
			v, err = sess.view(), nil
		}
	})
	return v, err
}

// Sessions implements store.Store.
func (s *Store) Sessions(_ context.Context, tenantID string) ([]api.Session, error) {
	var all []api.Session
	s.read(tenantID, func(t *tenant) {
		all = make([]api.Session, 0, len(t.sessions))
		for _, sess := range t.sessions {
			if sess.visible() {
				all = append(all, sess.view())
			}
		}
	})
	return all, nil
}

// UpdateSession implements store.Store.
func (s *Store) UpdateSession(ctx context.Context, tenantID, id string, u store.SessionUpdate) error {
	t := s.lookup(tenantID)
	if t == nil {
		return store.ErrNotFound
	}
	t.wmu.Lock()
	t.mu.Lock()
	sess := t.liveSession(id)
	if sess == nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		return store.ErrNotFound
	}
	// Applied at once, so that the next decision builds on this one.
	old := sess.stored()
	rec := old
	if u.HeartbeatTimeout != nil {
		rec.HeartbeatTimeout = *u.HeartbeatTimeout
	}
	if u.Metadata != nil {
		rec.Metadata = emptyToNil(u.Metadata)
	}
	s.setDefinition(sess, rec)
	sess.writes++
	mine := sess.writes
	t.mu.Unlock()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		return putJSON(tb.sessions, id, rec)
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	if err != nil {
		t.mu.Lock()
		if sess.writes == mine {
			// No later update built on this one: undo it.
			s.setDefinition(sess, old)
		}
		t.mu.Unlock()
		return fmt.Errorf("update session %s: %w", id, err)
	}
	return nil
}

// setDefinition gives sess the timeout and metadata of rec. The deadline
// stays "last heartbeat (or creation) + timeout". t.mu must be held.
func (s *Store) setDefinition(sess *session, rec storedSession) {
	if old := int64(sess.timeout); int64(rec.HeartbeatTimeout) != old {
		sess.deadline += (int64(rec.HeartbeatTimeout) - old) * int64(time.Second)
		sess.timeout = int32(rec.HeartbeatTimeout)
		if sess.deadline < sess.queued {
			s.exp.push(sess)
		}
	}
	sess.metadata = rec.Metadata
}

// DeleteSession implements store.Store.
func (s *Store) DeleteSession(ctx context.Context, tenantID, id string) error {
	t := s.lookup(tenantID)
	if t == nil {
		return store.ErrNotFound
	}
	t.wmu.Lock()
	t.mu.Lock()
	sess := t.liveSession(id)
	if sess == nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		return store.ErrNotFound
	}
	// Hidden at once: heartbeats get 404 while the removal commits.
	sess.gone = true
	serviceIDs := make([]string, 0, len(sess.services))
	for _, svc := range sess.services {
		serviceIDs = append(serviceIDs, svc.id)
	}
	t.mu.Unlock()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		if err := tb.sessions.Delete([]byte(id)); err != nil {
			return err
		}
		for _, sid := range serviceIDs {
			if err := tb.services.Delete([]byte(sid)); err != nil {
				return err
			}
		}
		return nil
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		sess.gone = false
		s.exp.push(sess) // the expiry loop dropped it while it was gone
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	t.forget(sess)
	return nil
}

// Heartbeat implements store.Store. It never touches the file: that is
// what lets one process hold 10,000 sessions heartbeating.
func (s *Store) Heartbeat(_ context.Context, tenantID, id string, got, next uuid.UUID) (uuid.UUID, error) {
	t := s.lookup(tenantID)
	if t == nil {
		return uuid.UUID{}, store.ErrNotFound
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sess := t.liveSession(id)
	if sess == nil {
		return uuid.UUID{}, store.ErrNotFound
	}
	chain, reply, err := sess.chain.Advance(got, next)
	if err != nil {
		return uuid.UUID{}, err
	}
	sess.chain = chain
	sess.lastSeen = time.Now().UnixMilli()
	sess.deadline = s.mono() + int64(time.Duration(sess.timeout)*time.Second)
	return reply, nil
}

// CreateService implements store.Store.
func (s *Store) CreateService(ctx context.Context, tenantID string, in api.Service) error {
	t := s.lookup(tenantID)
	if t == nil {
		return store.ErrNotFound // no tenant state: no session
	}
	t.wmu.Lock()
	t.mu.Lock()
	sess := t.liveSession(in.SessionID)
	holder := t.services[in.ID]
	var fail error
	switch {
	case sess == nil:
		fail = store.ErrNotFound
	case holder != nil:
		fail = &store.ServiceExistsError{ID: in.ID, SessionID: holder.sess.id}
	case len(t.services) >= s.limits.Service:
		fail = &store.LimitError{Resource: "services", Limit: s.limits.Service}
	}
	if fail != nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		return fail
	}
	// Its id is taken and counted from now on; it is listed once on disk.
	svc := &service{sess: sess, id: in.ID, tags: in.Tags, metadata: emptyToNil(in.Metadata), pending: true}
	t.services[svc.id] = svc
	sess.services = append(sess.services, svc)
	view := svc.view()
	t.mu.Unlock()
	nowMS := time.Now().UnixMilli()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		if err := putJSON(tb.services, view.ID, view); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventServiceJoin, view, nowMS)
		return err
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.services[svc.id] == svc {
			delete(t.services, svc.id)
		}
		sess.removeService(svc)
		return fmt.Errorf("create service %q: %w", in.ID, err)
	}
	svc.pending = false
	s.committed(api.EventServiceJoin, 1)
	return nil
}

// Service implements store.Store.
func (s *Store) Service(_ context.Context, tenantID, id string) (api.Service, error) {
	var v api.Service
	err := store.ErrNotFound
	s.read(tenantID, func(t *tenant) {
		if svc := t.liveService(id); svc != nil {
			v, err = svc.view(), nil
		}
	})
	return v, err
}

// Services implements store.Store.
func (s *Store) Services(_ context.Context, tenantID string) ([]api.Service, error) {
	var all []api.Service
	s.read(tenantID, func(t *tenant) {
		all = make([]api.Service, 0, len(t.services))
		for _, svc := range t.services {
			if svc.live() {
				all = append(all, svc.view())
			}
		}
	})
	return all, nil
}

// UpdateService implements store.Store.
func (s *Store) UpdateService(ctx context.Context, tenantID, id string, u store.ServiceUpdate) error {
	t := s.lookup(tenantID)
	if t == nil {
		return store.ErrNotFound
	}
	t.wmu.Lock()
	t.mu.Lock()
	svc := t.liveService(id)
	if svc == nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		return store.ErrNotFound
	}
	// Applied at once, so that the next decision builds on this one.
	oldTags, oldMetadata := svc.tags, svc.metadata
	if u.Tags != nil {
		svc.tags = u.Tags
	}
	if u.Metadata != nil {
		svc.metadata = emptyToNil(u.Metadata)
	}
	svc.writes++
	mine := svc.writes
	view := svc.view()
	t.mu.Unlock()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		return putJSON(tb.services, id, view)
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	if err != nil {
		t.mu.Lock()
		if svc.writes == mine {
			// No later update built on this one: undo it.
			svc.tags, svc.metadata = oldTags, oldMetadata
		}
		t.mu.Unlock()
		return fmt.Errorf("update service %q: %w", id, err)
	}
	return nil
}

// DeleteService implements store.Store.
func (s *Store) DeleteService(ctx context.Context, tenantID, id string) error {
	t := s.lookup(tenantID)
	if t == nil {
		return store.ErrNotFound
	}
	t.wmu.Lock()
	t.mu.Lock()
	svc := t.liveService(id)
	if svc == nil {
		t.mu.Unlock()
		t.wmu.Unlock()
		return store.ErrNotFound
	}
	// Hidden at once; its id stays taken until the removal is on disk.
	svc.deleting = true
	t.mu.Unlock()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		return tb.services.Delete([]byte(id))
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		svc.deleting = false
		return fmt.Errorf("delete service %q: %w", id, err)
	}
	if t.services[id] == svc {
		delete(t.services, id)
	}
	svc.sess.removeService(svc)
	return nil
}

// Overview implements store.Store.
func (s *Store) Overview(_ context.Context, tenantID string) ([]api.OverviewEntry, error) {
	var all []api.OverviewEntry
	s.read(tenantID, func(t *tenant) {
		all = make([]api.OverviewEntry, 0, len(t.sessions))
		for _, sess := range t.sessions {
			if sess.visible() {
				all = append(all, api.OverviewEntry{Session: sess.view(), Services: sess.serviceViews(false)})
			}
		}
	})
	return all, nil
}

// ConfigValue implements store.Store.
func (s *Store) ConfigValue(_ context.Context, tenantID, id string) (api.ConfigurationValue, error) {
	var v api.ConfigurationValue
	err := store.ErrNotFound
	s.read(tenantID, func(t *tenant) {
		if val, ok := t.config[id]; ok {
			v, err = api.ConfigurationValue{ID: id, Value: val}, nil
		}
	})
	return v, err
}

// ConfigValues implements store.Store.
func (s *Store) ConfigValues(_ context.Context, tenantID, prefix string) ([]api.ConfigurationValue, error) {
	var all []api.ConfigurationValue
	s.read(tenantID, func(t *tenant) { all = t.configUnder(prefix) })
	return all, nil
}

// SetConfigValue implements store.Store.
func (s *Store) SetConfigValue(ctx context.Context, tenantID, id, value string) error {
	t := s.tenant(tenantID)
	t.wmu.Lock()
	t.mu.Lock()
	old, existed := t.config[id]
	if !existed && len(t.config) >= s.limits.ConfigurationValue {
		t.mu.Unlock()
		t.wmu.Unlock()
		return &store.LimitError{Resource: "configuration values", Limit: s.limits.ConfigurationValue}
	}
	// Applied at once, so that the next change's old_value is this one's
	// new value.
	t.config[id] = value
	t.mu.Unlock()
	change := api.ConfigurationChange{ConfigurationValueID: id, NewValue: &value}
	if existed {
		change.OldValue = &old
	}
	nowMS := time.Now().UnixMilli()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		if err := tb.config.Put([]byte(id), []byte(value)); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventConfigurationUpdate, change, nowMS)
		return err
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	if err != nil {
		t.undoConfig(id, &value, change.OldValue)
		return fmt.Errorf("set configuration value %q: %w", id, err)
	}
	s.committed(api.EventConfigurationUpdate, 1)
	return nil
}

// DeleteConfigValue implements store.Store.
func (s *Store) DeleteConfigValue(ctx context.Context, tenantID, id string) error {
	t := s.lookup(tenantID)
	if t == nil {
		return store.ErrNotFound
	}
	t.wmu.Lock()
	t.mu.Lock()
	old, ok := t.config[id]
	if !ok {
		t.mu.Unlock()
		t.wmu.Unlock()
		return store.ErrNotFound
	}
	delete(t.config, id)
	t.mu.Unlock()
	change := api.ConfigurationChange{ConfigurationValueID: id, OldValue: &old}
	nowMS := time.Now().UnixMilli()
	p, err := s.file.enqueueTenant(ctx, t.id, func(tb *tenantBuckets) error {
		if err := tb.config.Delete([]byte(id)); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventConfigurationRemove, change, nowMS)
		return err
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	if err != nil {
		t.undoConfig(id, nil, &old)
		return fmt.Errorf("delete configuration value %q: %w", id, err)
	}
	s.committed(api.EventConfigurationRemove, 1)
	return nil
}

// committed counts n events of type typ that are on disk.
func (s *Store) committed(typ string, n int) {
	s.metrics.Events.WithLabelValues(typ).Add(float64(n))
}

// Counts implements store.Store: the sessions and services that reads
// show (not those whose creation or removal is still committing).
func (s *Store) Counts(context.Context) (store.Counts, error) {
	if err := s.Ready(context.Background()); err != nil {
		return store.Counts{}, err
	}
	s.mu.RLock()
	tenants := make([]*tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		tenants = append(tenants, t)
	}
	s.mu.RUnlock()
	var c store.Counts
	for _, t := range tenants {
		// One tenant's lock at a time, each held for a count in memory,
		// so that heartbeats wait for no more than that.
		t.mu.Lock()
		for _, sess := range t.sessions {
			if sess.visible() {
				c.Sessions++
			}
		}
		for _, svc := range t.services {
			if svc.live() {
				c.Services++
			}
		}
		t.mu.Unlock()
	}
	return c, nil
}

// Events implements store.Store. Events are read from the file, not
// memory.
func (s *Store) Events(_ context.Context, tenantID, from string, limit int) ([]api.Event, error) {
	return s.file.readEvents(tenantID, from, limit)
}

// IssueToken implements store.Store.
func (s *Store) IssueToken(_ context.Context, user, tenantID, stamp string) (store.Token, error) {
	return s.tokens.issue(user, tenantID, stamp, time.Now()), nil
}

// LookupToken implements store.Store.
func (s *Store) LookupToken(_ context.Context, id string) (store.Token, error) {
	if t, ok := s.tokens.lookup(id, time.Now()); ok {
		return t, nil
	}
	return store.Token{}, store.ErrNotFound
}
