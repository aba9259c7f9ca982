package etcdstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// definition is a session's definition key: what changes rarely, and what
// an expiry compares.
type definition struct {
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	Created          int64             `json:"created"`
	// Lease is the lease of the session's alive key.
	Lease int64 `json:"lease"`
	// Services are the ids of the session's services, sorted.
	Services []string `json:"services,omitempty"`
}

// chainValue is a session's chain key: the token chain and last_seen,
// rewritten by every heartbeat. Unlike the other keys it is binary (42
// bytes rather than JSON's 130), since its size is what every heartbeat
// writes to three etcd logs: a format byte (1), a flags byte (1: has a
// previous token), the current and previous tokens (16 bytes each), and
// last_seen (unix ms, 8 bytes big endian).
type chainValue struct {
	Cur, Prev uuid.UUID
	HasPrev   bool
	LastSeen  int64
}

const chainFormat, chainSize = 1, 42

func (c chainValue) marshal() string {
	var b [chainSize]byte
	b[0] = chainFormat
	if c.HasPrev {
		b[1] = 1
	}
	copy(b[2:18], c.Cur[:])
	copy(b[18:34], c.Prev[:])
	binary.BigEndian.PutUint64(b[34:], uint64(c.LastSeen))
	return string(b[:])
}

// decodeChain decodes a chain key.
func decodeChain(kv *mvccpb.KeyValue) (chainValue, error) {
	b := kv.Value
	if len(b) != chainSize || b[0] != chainFormat {
		return chainValue{}, fmt.Errorf("decode %s: not a token chain of format %d", kv.Key, chainFormat)
	}
	var c chainValue
	c.HasPrev = b[1]&1 != 0
	copy(c.Cur[:], b[2:18])
	copy(c.Prev[:], b[18:34])
	c.LastSeen = int64(binary.BigEndian.Uint64(b[34:]))
	return c, nil
}

func (c chainValue) chain() store.Chain {
	return store.Chain{Cur: c.Cur, Prev: c.Prev, HasPrev: c.HasPrev}
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings, strings, numbers and UUIDs get here.
		panic(fmt.Sprintf("etcdstore: encode %T: %v", v, err))
	}
	return string(b)
}

func sessionView(id string, d definition, c chainValue) api.Session {
	v := api.Session{ID: id, HeartbeatTimeout: d.HeartbeatTimeout, Metadata: d.Metadata}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	if c.LastSeen != 0 {
		ls := c.LastSeen
		v.LastSeen = &ls
	}
	return v
}

var errIDTaken = errors.New("session id taken")

// CreateSession implements store.Store: a lease with TTL = the timeout,
// then one transaction putting the definition, the chain, the alive key on
// the lease, and the tenant's count.
func (s *Store) CreateSession(ctx context.Context, tenant string, ns store.NewSession) (string, error) {
	if err := s.waitReady(ctx); err != nil {
		return "", err
	}
	lctx, cancel := s.call(ctx)
	lease, err := s.cli.Grant(lctx, int64(ns.HeartbeatTimeout))
	cancel()
	if err != nil {
		return "", s.fail("create session: grant lease", err)
	}
	var id string
	for range 3 {
		id = store.NewSessionID()
		defKey := s.keys.session(tenant, id)
		def := definition{HeartbeatTimeout: ns.HeartbeatTimeout, Metadata: emptyToNil(ns.Metadata), Created: time.Now().UnixMilli(), Lease: int64(lease.ID)}
		err = s.mutate(ctx, tenant, &mutation{
			meta: true,
			keys: func(reads) []string { return []string{defKey} },
			decide: func(r reads, m *meta) ([]clientv3.Op, error) {
				if r.present(defKey) {
					return nil, errIDTaken
				}
				if m.Sessions >= s.opts.Limits.Session {
					return nil, &store.LimitError{Resource: "sessions", Limit: s.opts.Limits.Session}
				}
				m.Sessions++
				return []clientv3.Op{
					clientv3.OpPut(defKey, encode(def)),
					clientv3.OpPut(s.keys.beat(tenant, id), chainValue{Cur: ns.Token}.marshal()),
					clientv3.OpPut(s.keys.alive(tenant, id), "", clientv3.WithLease(lease.ID)),
				}, nil
			},
		})
		if !errors.Is(err, errIDTaken) {
			break
		}
	}
	if err != nil {
		s.revoke(int64(lease.ID))
		return "", err
	}
	return id, nil
}

// revoke revokes a lease that nothing needs any more, without waiting for
// it: if it fails the lease expires by itself.
func (s *Store) revoke(lease int64) {
	s.bg.Go(func() {
		ctx, cancel := s.call(s.ctx)
		defer cancel()
		_, _ = s.cli.Revoke(ctx, clientv3.LeaseID(lease))
	})
}

// Session implements store.Store.
func (s *Store) Session(ctx context.Context, tenant, id string) (api.Session, error) {
	resp, err := s.readTxn(ctx, "read session "+id, clientv3.OpGet(s.keys.session(tenant, id)), clientv3.OpGet(s.keys.beat(tenant, id)))
	if err != nil {
		return api.Session{}, err
	}
	defs, beats := resp[0], resp[1]
	if len(defs) == 0 {
		return api.Session{}, store.ErrNotFound
	}
	var d definition
	var c chainValue
	if err := decodeKV(defs[0], &d); err != nil {
		return api.Session{}, err
	}
	if len(beats) > 0 {
		if c, err = decodeChain(beats[0]); err != nil {
			return api.Session{}, err
		}
	}
	return sessionView(id, d, c), nil
}

// Sessions implements store.Store: the definitions and chains of the
// tenant, read in one transaction.
func (s *Store) Sessions(ctx context.Context, tenant string) ([]api.Session, error) {
	defs, chains, _, err := s.readSessions(ctx, tenant, false)
	if err != nil {
		return nil, err
	}
	out := make([]api.Session, 0, len(defs))
	for id, d := range defs {
		out = append(out, sessionView(id, d, chains[id]))
	}
	return out, nil
}

// Overview implements store.Store.
func (s *Store) Overview(ctx context.Context, tenant string) ([]api.OverviewEntry, error) {
	defs, chains, services, err := s.readSessions(ctx, tenant, true)
	if err != nil {
		return nil, err
	}
	bySession := map[string][]api.Service{}
	for _, svc := range services {
		bySession[svc.SessionID] = append(bySession[svc.SessionID], svc)
	}
	out := make([]api.OverviewEntry, 0, len(defs))
	for id, d := range defs {
		svcs := bySession[id]
		if svcs == nil {
			svcs = []api.Service{}
		}
		slices.SortFunc(svcs, func(a, b api.Service) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, api.OverviewEntry{Session: sessionView(id, d, chains[id]), Services: svcs})
	}
	return out, nil
}

// readSessions reads the tenant's definitions and chains (and services)
// in one transaction, so that they are one snapshot.
func (s *Store) readSessions(ctx context.Context, tenant string, withServices bool) (map[string]definition, map[string]chainValue, []api.Service, error) {
	ops := []clientv3.Op{
		clientv3.OpGet(s.keys.sessions(tenant), clientv3.WithPrefix()),
		clientv3.OpGet(s.keys.beats(tenant), clientv3.WithPrefix()),
	}
	if withServices {
		ops = append(ops, clientv3.OpGet(s.keys.services(tenant), clientv3.WithPrefix()))
	}
	resp, err := s.readTxn(ctx, "list sessions", ops...)
	if err != nil {
		return nil, nil, nil, err
	}
	defs := make(map[string]definition, len(resp[0]))
	for _, kv := range resp[0] {
		var d definition
		if err := decodeKV(kv, &d); err != nil {
			return nil, nil, nil, err
		}
		defs[strings.TrimPrefix(string(kv.Key), s.keys.sessions(tenant))] = d
	}
	chains := make(map[string]chainValue, len(resp[1]))
	for _, kv := range resp[1] {
		c, err := decodeChain(kv)
		if err != nil {
			return nil, nil, nil, err
		}
		chains[strings.TrimPrefix(string(kv.Key), s.keys.beats(tenant))] = c
	}
	var services []api.Service
	if withServices {
		services, err = decodeServices(resp[2])
	}
	return defs, chains, services, err
}

// readTxn runs gets in one read-only transaction (one snapshot) and
// returns each one's keys.
func (s *Store) readTxn(ctx context.Context, doing string, ops ...clientv3.Op) ([][]*mvccpb.KeyValue, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, s.fail(doing, err)
	}
	out := make([][]*mvccpb.KeyValue, len(ops))
	for i := range ops {
		out[i] = resp.Responses[i].GetResponseRange().Kvs
	}
	return out, nil
}

func decodeKV(kv *mvccpb.KeyValue, v any) error {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return nil
}

// UpdateSession implements store.Store. A new timeout needs a new lease
// (an etcd lease's TTL is fixed): the definition, the alive key and the
// chain key move to it in one transaction (the chain key's new revision
// makes every frontend's cached chain, and the lease id cached with it,
// stale), then the old lease is revoked.
func (s *Store) UpdateSession(ctx context.Context, tenant, id string, u store.SessionUpdate) error {
	defKey, beatKey := s.keys.session(tenant, id), s.keys.beat(tenant, id)
	for range 3 {
		var newLease int64
		if u.HeartbeatTimeout != nil {
			cur, err := s.Session(ctx, tenant, id)
			if err != nil {
				return err
			}
			if cur.HeartbeatTimeout != *u.HeartbeatTimeout {
				lctx, cancel := s.call(ctx)
				l, err := s.cli.Grant(lctx, int64(*u.HeartbeatTimeout))
				cancel()
				if err != nil {
					return s.fail("update session "+id+": grant lease", err)
				}
				newLease = int64(l.ID)
			}
		}
		var oldLease int64
		err := s.mutate(ctx, tenant, &mutation{
			keys: func(reads) []string { return []string{defKey, beatKey} },
			decide: func(r reads, _ *meta) ([]clientv3.Op, error) {
				var d definition
				if ok, err := r.decode(defKey, &d); !ok || err != nil {
					return nil, cmp(err, store.ErrNotFound)
				}
				ops := []clientv3.Op{}
				if u.HeartbeatTimeout != nil && *u.HeartbeatTimeout != d.HeartbeatTimeout {
					if newLease == 0 {
						return nil, errRetry // changed since it was read
					}
					oldLease, d.Lease, d.HeartbeatTimeout = d.Lease, newLease, *u.HeartbeatTimeout
					ops = append(ops,
						clientv3.OpPut(s.keys.alive(tenant, id), "", clientv3.WithLease(clientv3.LeaseID(newLease))),
						clientv3.OpPut(beatKey, string(r.value(beatKey))))
				}
				if u.Metadata != nil {
					d.Metadata = emptyToNil(u.Metadata)
				}
				return append(ops, clientv3.OpPut(defKey, encode(d))), nil
			},
		})
		switch {
		case errors.Is(err, errRetry):
			continue
		case err != nil:
			if newLease != 0 {
				s.revoke(newLease)
			}
			return err
		}
		if oldLease != 0 {
			s.revoke(oldLease)
		} else if newLease != 0 {
			s.revoke(newLease) // the timeout was already the new one
		}
		s.beats.forget(tenant, id)
		return nil
	}
	return store.Unavailable(fmt.Errorf("update session %s: its timeout keeps changing", id))
}

var errRetry = errors.New("decide again")

// cmp returns err, or def when err is nil.
func cmp(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// DeleteSession implements store.Store: one transaction deletes the
// definition, chain, alive key and services and decrements the counts;
// then the lease is revoked. No event.
func (s *Store) DeleteSession(ctx context.Context, tenant, id string) error {
	var lease int64
	err := s.mutate(ctx, tenant, &mutation{
		meta: true,
		keys: s.sessionKeys(tenant, id),
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			var d definition
			if ok, err := r.decode(s.keys.session(tenant, id), &d); !ok || err != nil {
				return nil, cmp(err, store.ErrNotFound)
			}
			lease = d.Lease
			ops, services := s.removeSession(tenant, id, d, r)
			m.Sessions--
			m.Services -= len(services)
			return ops, nil
		},
	})
	s.beats.forget(tenant, id)
	if err != nil {
		return err
	}
	s.revoke(lease)
	return nil
}

// sessionKeys are the keys a session's removal depends on: its
// definition, chain and alive key, and the services its definition names.
func (s *Store) sessionKeys(tenant, id string) func(reads) []string {
	return func(r reads) []string {
		defKey := s.keys.session(tenant, id)
		ks := []string{defKey, s.keys.beat(tenant, id), s.keys.alive(tenant, id)}
		var d definition
		if ok, _ := r.decode(defKey, &d); ok {
			for _, svc := range d.Services {
				ks = append(ks, s.keys.service(tenant, svc))
			}
		}
		return ks
	}
}

// removeSession returns the deletes of a session's keys, and its services
// as they were, sorted by id.
func (s *Store) removeSession(tenant, id string, d definition, r reads) ([]clientv3.Op, []api.Service) {
	ops := []clientv3.Op{
		clientv3.OpDelete(s.keys.session(tenant, id)),
		clientv3.OpDelete(s.keys.beat(tenant, id)),
	}
	if r.present(s.keys.alive(tenant, id)) {
		ops = append(ops, clientv3.OpDelete(s.keys.alive(tenant, id)))
	}
	services := []api.Service{}
	for _, sid := range d.Services {
		k := s.keys.service(tenant, sid)
		var svc api.Service
		if ok, err := r.decode(k, &svc); ok && err == nil {
			services = append(services, svc)
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	return ops, services
}

func emptyToNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
