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
	// Services are the session's services as the service keys hold them,
	// sorted by id: every change of a service rewrites its session's
	// definition too, so that a removal (expiry or delete) compares one
	// key and reads the services.timeout event's payload from it.
	Services []api.Service `json:"services,omitempty"`
}

// chainValue is a session's chain key: the token chain, last_seen, and
// what its expiry is timed from, rewritten by every heartbeat. Unlike the
// other keys it is binary (52 bytes rather than JSON's 150), since its
// size is what every heartbeat writes to every etcd member's log: a format
// byte (1), a flags byte (1: there is a previous token), the timeout
// (seconds, 2 bytes), the current and previous tokens (16 bytes each), the
// time its expiry counts from (the creation, the last heartbeat or the
// last timeout change) and last_seen (0: no heartbeat yet), both unix ms
// in 8 bytes; integers big endian.
type chainValue struct {
	Cur, Prev uuid.UUID
	HasPrev   bool
	Timeout   int   // seconds
	At        int64 // unix ms its expiry counts from
	LastSeen  int64 // unix ms of the last heartbeat, 0 before the first
}

const chainFormat, chainSize = 1, 52

func (c chainValue) marshal() string {
	var b [chainSize]byte
	b[0] = chainFormat
	if c.HasPrev {
		b[1] = 1
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(c.Timeout))
	copy(b[4:20], c.Cur[:])
	copy(b[20:36], c.Prev[:])
	binary.BigEndian.PutUint64(b[36:44], uint64(c.At))
	binary.BigEndian.PutUint64(b[44:52], uint64(c.LastSeen))
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
	c.Timeout = int(binary.BigEndian.Uint16(b[2:4]))
	copy(c.Cur[:], b[4:20])
	copy(c.Prev[:], b[20:36])
	c.At = int64(binary.BigEndian.Uint64(b[36:44]))
	c.LastSeen = int64(binary.BigEndian.Uint64(b[44:52]))
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

// CreateSession implements store.Store: one transaction puts the
// definition, the chain (from which every frontend times the session) and
// the tenant's count.
func (s *Store) CreateSession(ctx context.Context, tenant string, ns store.NewSession) (string, error) {
	var id string
	var err error
	for range 3 {
		id = store.NewSessionID()
		defKey := s.keys.session(tenant, id)
		now := time.Now().UnixMilli()
		def := definition{HeartbeatTimeout: ns.HeartbeatTimeout, Metadata: emptyToNil(ns.Metadata), Created: now}
		chain := chainValue{Cur: ns.Token, Timeout: ns.HeartbeatTimeout, At: now}
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
					clientv3.OpPut(s.keys.beat(tenant, id), chain.marshal()),
				}, nil
			},
		})
		if !errors.Is(err, errIDTaken) {
			break
		}
	}
	if err != nil {
		return "", err
	}
	return id, nil
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

// UpdateSession implements store.Store. A new timeout is written to the
// chain key as well, which moves its revision: every frontend times the
// session again, with the new timeout, from the change.
func (s *Store) UpdateSession(ctx context.Context, tenant, id string, u store.SessionUpdate) error {
	defKey, beatKey := s.keys.session(tenant, id), s.keys.beat(tenant, id)
	return s.mutate(ctx, tenant, &mutation{
		keys: func(reads) []string { return []string{defKey, beatKey} },
		decide: func(r reads, _ *meta) ([]clientv3.Op, error) {
			var d definition
			if ok, err := r.decode(defKey, &d); !ok || err != nil {
				return nil, cmp(err, store.ErrNotFound)
			}
			ops := []clientv3.Op{}
			if u.HeartbeatTimeout != nil && *u.HeartbeatTimeout != d.HeartbeatTimeout {
				if r[beatKey] == nil {
					return nil, store.ErrNotFound
				}
				c, err := decodeChain(r[beatKey])
				if err != nil {
					return nil, err
				}
				c.Timeout, c.At = *u.HeartbeatTimeout, time.Now().UnixMilli()
				d.HeartbeatTimeout = *u.HeartbeatTimeout
				ops = append(ops, clientv3.OpPut(beatKey, c.marshal()))
			}
			if u.Metadata != nil {
				d.Metadata = emptyToNil(u.Metadata)
			}
			return append(ops, clientv3.OpPut(defKey, encode(d))), nil
		},
	})
}

// cmp returns err, or def when err is nil.
func cmp(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// DeleteSession implements store.Store: one transaction deletes the
// definition, chain and services and decrements the counts. No event.
func (s *Store) DeleteSession(ctx context.Context, tenant, id string) error {
	err := s.mutate(ctx, tenant, &mutation{
		meta: true,
		keys: s.sessionKeys(tenant, id),
		decide: func(r reads, m *meta) ([]clientv3.Op, error) {
			var d definition
			if ok, err := r.decode(s.keys.session(tenant, id), &d); !ok || err != nil {
				return nil, cmp(err, store.ErrNotFound)
			}
			ops, services := s.removeSession(tenant, id, d)
			m.Sessions--
			m.Services -= len(services)
			return ops, nil
		},
	})
	if err == nil {
		s.index.remove(s.keys.beat(tenant, id))
	}
	return err
}

// sessionKeys are the keys a session's removal depends on: its
// definition (which holds its services) and its chain.
func (s *Store) sessionKeys(tenant, id string) func(reads) []string {
	return func(reads) []string { return []string{s.keys.session(tenant, id), s.keys.beat(tenant, id)} }
}

// removeSession returns the deletes of a session's keys, its services'
// included, and its services, sorted by id.
func (s *Store) removeSession(tenant, id string, d definition) ([]clientv3.Op, []api.Service) {
	ops := []clientv3.Op{
		clientv3.OpDelete(s.keys.session(tenant, id)),
		clientv3.OpDelete(s.keys.beat(tenant, id)),
	}
	services := d.Services
	if services == nil {
		services = []api.Service{}
	}
	for _, svc := range services {
		ops = append(ops, clientv3.OpDelete(s.keys.service(tenant, svc.ID)))
	}
	return ops, services
}

func emptyToNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Counts implements store.Store: the registry's totals, summed from every
// tenant's meta key (the counts its limits are enforced with), so every
// frontend reports the same. It costs two reads of etcd: the tenants,
// then their meta keys.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	if err := s.waitReady(ctx); err != nil {
		return store.Counts{}, err
	}
	tenants, err := s.tenants()
	if err != nil {
		return store.Counts{}, err
	}
	metaKeys := make([]string, len(tenants))
	for i, t := range tenants {
		metaKeys[i] = s.keys.meta(t)
	}
	r := reads{}
	if err := s.read(ctx, r, metaKeys); err != nil {
		return store.Counts{}, err
	}
	var c store.Counts
	for _, k := range metaKeys {
		var m meta
		if _, err := r.decode(k, &m); err != nil {
			return store.Counts{}, err
		}
		c.Sessions += m.Sessions
		c.Services += m.Services
	}
	return c, nil
}
