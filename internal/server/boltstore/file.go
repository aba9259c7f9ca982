package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Layout of the bbolt file:
//
//	tenants/<tenant id>/sessions/<session id>  storedSession (JSON)
//	tenants/<tenant id>/services/<service id>  api.Service (JSON)
//	tenants/<tenant id>/config/<config id>     the raw value, keyed by the id as the client wrote it
//	tenants/<tenant id>/events/<event id>      api.Event (JSON)
//	tenants/<tenant id>  key "event_ts"        last event timestamp, 8 bytes big endian
//	meta  key "schema"                          schemaVersion as decimal text
//
// Heartbeats never touch the file: last_seen and the token chain live in
// memory only (see the package documentation).
var (
	bucketTenants  = []byte("tenants")
	bucketMeta     = []byte("meta")
	bucketSessions = []byte("sessions")
	bucketServices = []byte("services")
	bucketConfig   = []byte("config")
	bucketEvents   = []byte("events")
	keySchema      = []byte("schema")
	keyEventTS     = []byte("event_ts")
)

const (
	// schemaVersion 2 stores configuration ids as the client wrote them;
	// 1 stored every id with a leading slash (see unslashSingleSegmentIDs).
	schemaVersion = "2"
	dbFileName    = "registry.db"
	// maxGroupCommit bounds how many mutations share one transaction (and
	// one fsync). Larger groups only add latency to the first caller.
	maxGroupCommit = 256
)

// unslashSingleSegmentIDs upgrades schema 1, which stored every
// configuration id with a leading slash: "/configId" for PUT
// /configuration/configId. That URL now names "configId", so such keys
// lose their slash and every value stays at the URL it was written to.
// Keys of several segments ("/production/db/host") are already the id
// their URL names. Schema 1 could not hold both "/x" and "x".
func unslashSingleSegmentIDs(tx *bolt.Tx) error {
	return tx.Bucket(bucketTenants).ForEachBucket(func(name []byte) error {
		b := tx.Bucket(bucketTenants).Bucket(name).Bucket(bucketConfig)
		if b == nil {
			return nil
		}
		var keys [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			if len(k) > 1 && k[0] == '/' && bytes.IndexByte(k[1:], '/') < 0 {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			v := bytes.Clone(b.Get(k))
			if err := b.Put(k[1:], v); err != nil {
				return fmt.Errorf("tenant %q: rename %s: %w", name, k, err)
			}
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("tenant %q: rename %s: %w", name, k, err)
			}
		}
		return nil
	})
}

// storedSession is the durable part of a session: its definition. The
// token chain and last_seen are deliberately not stored.
type storedSession struct {
	ID               string            `json:"id"`
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	Created          int64             `json:"created"`
}

// file owns the bbolt database and commits mutations in groups: while one
// transaction is being fsynced, the next callers queue up and share the
// following transaction. Unlike bbolt's own Batch, a lone caller does not
// wait for a batching delay.
type file struct {
	db    *bolt.DB
	queue chan *commitReq
	// commitTime observes each read-write transaction, fsync included.
	commitTime prometheus.Observer
	// mu and closed make close wait for callers that are enqueueing, so
	// that every queued request is answered by the final drain, and for
	// readers, so that the database is not closed under them.
	mu     sync.RWMutex
	closed bool
	done   chan struct{}
	// stopped is closed when the commit loop has exited.
	stopped chan struct{}
}

type commitReq struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// errClosed is what calls get once Close has begun.
var errClosed = store.Unavailable(errors.New("the store is closed: the server is shutting down"))

func openFile(dir string, commitTime prometheus.Observer) (*file, error) {
	path := filepath.Join(dir, dbFileName)
	// The timeout turns a second server on the same data dir into a clear
	// error instead of a hang on the file lock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another process (is another sr-registry using this data dir?): %w", path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketTenants); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := string(meta.Get(keySchema)); v {
		case "":
		case schemaVersion:
			return nil
		case "1":
			if err := unslashSingleSegmentIDs(tx); err != nil {
				return fmt.Errorf("upgrade schema 1 to %s: %w", schemaVersion, err)
			}
		default:
			return fmt.Errorf("schema version %q, this build reads %q (or the older 1)", v, schemaVersion)
		}
		return meta.Put(keySchema, []byte(schemaVersion))
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise store %s: %w", path, err)
	}
	st := &file{
		db:         db,
		commitTime: commitTime,
		queue:      make(chan *commitReq, maxGroupCommit),
		done:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	go st.loop()
	return st, nil
}

// commit runs fn in a read-write transaction and returns once that
// transaction is on disk. fn may run more than once (when a group fails it
// is retried alone), so it must only write to the transaction and to
// variables it overwrites.
func (st *file) commit(ctx context.Context, fn func(*bolt.Tx) error) error {
	p, err := st.enqueue(ctx, fn)
	if err != nil {
		return err
	}
	return p.wait()
}

// pending is a queued commit; wait returns its outcome once it is on disk
// (or failed).
type pending struct{ err chan error }

func (p pending) wait() error { return <-p.err }

// enqueue queues fn (see commit) and returns without waiting for it.
// Commits run in the order they were queued. A mutation is decided under
// its tenant's lock and queued before that lock is released, so that the
// tenant's writes reach the disk in the order they were decided; the
// caller waits for the commit after releasing the lock, so that the next
// decision does not wait for this fsync and shares the next one instead.
func (st *file) enqueue(ctx context.Context, fn func(*bolt.Tx) error) (pending, error) {
	req := &commitReq{fn: fn, err: make(chan error, 1)}
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return pending{}, errClosed
	}
	select {
	case st.queue <- req:
		// Once queued, the commit happens whatever the caller's context
		// says: waiting for it keeps memory and disk in step.
		return pending{req.err}, nil
	case <-ctx.Done():
		return pending{}, store.Unavailable(fmt.Errorf("queue commit: %w", ctx.Err()))
	}
}

// enqueueTenant is enqueue with the tenant's buckets, created if needed:
// what every mutation of one tenant needs.
func (st *file) enqueueTenant(ctx context.Context, tenant string, fn func(*tenantBuckets) error) (pending, error) {
	return st.enqueue(ctx, func(tx *bolt.Tx) error {
		tb, err := writeTenant(tx, tenant)
		if err != nil {
			return err
		}
		return fn(tb)
	})
}

func (st *file) loop() {
	defer close(st.stopped)
	group := make([]*commitReq, 0, maxGroupCommit)
	for {
		select {
		case req := <-st.queue:
			group = append(group[:0], req)
		case <-st.done:
			st.drain()
			return
		}
	fill:
		for len(group) < maxGroupCommit {
			select {
			case req := <-st.queue:
				group = append(group, req)
			default:
				break fill
			}
		}
		st.run(group)
	}
}

// drain answers the requests that were queued before close.
func (st *file) drain() {
	for {
		select {
		case req := <-st.queue:
			st.run([]*commitReq{req})
		default:
			return
		}
	}
}

func (st *file) run(group []*commitReq) {
	err := st.update(func(tx *bolt.Tx) error {
		for _, req := range group {
			if err := req.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, req := range group {
			req.err <- err
		}
		return
	}
	// One mutation failed and took the group with it: give each its own
	// transaction so that only the failing one reports the error.
	for _, req := range group {
		req.err <- st.update(req.fn)
	}
}

// update runs fn in a read-write transaction, timed.
func (st *file) update(fn func(*bolt.Tx) error) error {
	start := time.Now()
	err := st.db.Update(fn)
	st.commitTime.Observe(time.Since(start).Seconds())
	return err
}

func (st *file) close() error {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	close(st.done)
	<-st.stopped
	if err := st.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", st.db.Path(), err)
	}
	return nil
}

// tenantBuckets are the sub-buckets of one tenant inside a transaction.
type tenantBuckets struct {
	root, sessions, services, config, events *bolt.Bucket
}

// writeTenant returns the tenant's buckets, creating them if needed.
func writeTenant(tx *bolt.Tx, tenant string) (*tenantBuckets, error) {
	root, err := tx.Bucket(bucketTenants).CreateBucketIfNotExists([]byte(tenant))
	if err != nil {
		return nil, fmt.Errorf("create bucket of tenant %q: %w", tenant, err)
	}
	tb := &tenantBuckets{root: root}
	for _, sub := range []struct {
		name []byte
		dst  **bolt.Bucket
	}{
		{bucketSessions, &tb.sessions},
		{bucketServices, &tb.services},
		{bucketConfig, &tb.config},
		{bucketEvents, &tb.events},
	} {
		b, err := root.CreateBucketIfNotExists(sub.name)
		if err != nil {
			return nil, fmt.Errorf("create bucket %s of tenant %q: %w", sub.name, tenant, err)
		}
		*sub.dst = b
	}
	return tb, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := b.Put([]byte(key), data); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// appendEvent adds an event to the tenant's feed and returns it. Ids are
// "<ms timestamp>-<sequence>", zero-padded, so that they sort in insertion
// order: the timestamp never goes backwards (it is the maximum of the clock
// and the last event's), and the per-tenant bbolt sequence breaks ties and
// survives restarts.
func appendEvent(tb *tenantBuckets, typ string, payload any, nowMS int64) (api.Event, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return api.Event{}, fmt.Errorf("encode %s event payload: %w", typ, err)
	}
	ts := nowMS
	if last := tb.root.Get(keyEventTS); len(last) == 8 {
		if l := int64(binary.BigEndian.Uint64(last)); l > ts {
			ts = l
		}
	}
	var tsBuf [8]byte
	binary.BigEndian.PutUint64(tsBuf[:], uint64(ts))
	if err := tb.root.Put(keyEventTS, tsBuf[:]); err != nil {
		return api.Event{}, fmt.Errorf("store event timestamp: %w", err)
	}
	seq, err := tb.events.NextSequence()
	if err != nil {
		return api.Event{}, fmt.Errorf("next event sequence: %w", err)
	}
	ev := api.Event{
		ID:        store.EventID(ts, seq),
		Timestamp: ts,
		Type:      typ,
		Payload:   raw,
	}
	return ev, putJSON(tb.events, ev.ID, ev)
}

// readEvents returns up to limit+1 events of the tenant with ids >= from,
// in id order, or errClosed once the store is closing.
func (st *file) readEvents(tenant, from string, limit int) ([]api.Event, error) {
	// The read lock keeps close from closing the database under the
	// transaction.
	st.mu.RLock()
	defer st.mu.RUnlock()
	if st.closed {
		return nil, fmt.Errorf("read events of tenant %q: %w", tenant, errClosed)
	}
	out := []api.Event{}
	err := st.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketTenants).Bucket([]byte(tenant))
		if root == nil {
			return nil
		}
		b := root.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek([]byte(from)); k != nil && len(out) <= limit; k, v = c.Next() {
			var ev api.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event %s: %w", k, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read events of tenant %q: %w", tenant, err)
	}
	return out, nil
}

// pruneEvents deletes every tenant's events older than cutoffMS.
func (st *file) pruneEvents(ctx context.Context, cutoffMS int64) (int, error) {
	var n int
	cutoff := []byte(store.EventIDPrefix(cutoffMS))
	err := st.commit(ctx, func(tx *bolt.Tx) error {
		n = 0
		return tx.Bucket(bucketTenants).ForEachBucket(func(name []byte) error {
			b := tx.Bucket(bucketTenants).Bucket(name).Bucket(bucketEvents)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, cutoff) < 0; k, _ = c.First() {
				if err := b.Delete(k); err != nil {
					return fmt.Errorf("delete event %s of tenant %q: %w", k, name, err)
				}
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("prune events older than %d: %w", cutoffMS, err)
	}
	return n, nil
}

// tenantMove is one tenant that moveTenants moved, or left where it was
// because its new id was taken.
type tenantMove struct {
	from, to string
	taken    bool
}

// moveTenants gives every tenant for which newID says so its new id: its
// buckets are copied under the new name, sequences included, and the old
// ones deleted, in one transaction. A tenant whose new id already has
// state stays where it is (reported as taken): merging two tenants' state
// is not something to do behind the user's back.
func (st *file) moveTenants(ctx context.Context, newID func(string) (string, bool)) ([]tenantMove, error) {
	var moves []tenantMove
	err := st.commit(ctx, func(tx *bolt.Tx) error {
		moves = moves[:0]
		all := tx.Bucket(bucketTenants)
		var names []string
		err := all.ForEachBucket(func(name []byte) error {
			names = append(names, string(name))
			return nil
		})
		if err != nil {
			return err
		}
		for _, from := range names {
			to, ok := newID(from)
			if !ok {
				continue
			}
			if all.Bucket([]byte(to)) != nil {
				moves = append(moves, tenantMove{from: from, to: to, taken: true})
				continue
			}
			dst, err := all.CreateBucket([]byte(to))
			if err != nil {
				return fmt.Errorf("move tenant %q to %q: %w", from, to, err)
			}
			if err := copyBucket(dst, all.Bucket([]byte(from))); err != nil {
				return fmt.Errorf("move tenant %q to %q: %w", from, to, err)
			}
			if err := all.DeleteBucket([]byte(from)); err != nil {
				return fmt.Errorf("move tenant %q to %q: %w", from, to, err)
			}
			moves = append(moves, tenantMove{from: from, to: to})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("move tenants in %s: %w", st.db.Path(), err)
	}
	return moves, nil
}

// copyBucket copies src into the empty dst: keys, nested buckets and
// sequences (the events' sequence makes their ids).
func copyBucket(dst, src *bolt.Bucket) error {
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEach(func(k, v []byte) error {
		// Copies: src is deleted in the same transaction.
		k = bytes.Clone(k)
		if v != nil {
			return dst.Put(k, bytes.Clone(v))
		}
		sub, err := dst.CreateBucket(k)
		if err != nil {
			return err
		}
		return copyBucket(sub, src.Bucket(k))
	})
}

// restoredTenant is one tenant's durable state as read at start-up.
type restoredTenant struct {
	id       string
	sessions []storedSession
	services []api.Service
	config   map[string]string
}

func (st *file) load() ([]restoredTenant, error) {
	var out []restoredTenant
	err := st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTenants).ForEachBucket(func(name []byte) error {
			root := tx.Bucket(bucketTenants).Bucket(name)
			rt := restoredTenant{id: string(name), config: map[string]string{}}
			if b := root.Bucket(bucketSessions); b != nil {
				err := b.ForEach(func(k, v []byte) error {
					var s storedSession
					if err := json.Unmarshal(v, &s); err != nil {
						return fmt.Errorf("decode session %s: %w", k, err)
					}
					rt.sessions = append(rt.sessions, s)
					return nil
				})
				if err != nil {
					return fmt.Errorf("tenant %q: %w", name, err)
				}
			}
			if b := root.Bucket(bucketServices); b != nil {
				err := b.ForEach(func(k, v []byte) error {
					var s api.Service
					if err := json.Unmarshal(v, &s); err != nil {
						return fmt.Errorf("decode service %s: %w", k, err)
					}
					rt.services = append(rt.services, s)
					return nil
				})
				if err != nil {
					return fmt.Errorf("tenant %q: %w", name, err)
				}
			}
			if b := root.Bucket(bucketConfig); b != nil {
				_ = b.ForEach(func(k, v []byte) error {
					rt.config[string(k)] = string(v)
					return nil
				})
			}
			out = append(out, rt)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load state from %s: %w", st.db.Path(), err)
	}
	return out, nil
}
