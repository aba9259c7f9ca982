package etcdstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// tokenLeaseReuse is how long one token lease is shared by the tokens
// issued after it: each lease outlives its tokens by up to this much.
const tokenLeaseReuse = time.Minute

// tokens are the identity tokens, in etcd keyed by the SHA-256 of the
// token (never the token itself, so that reading etcd does not hand out
// tokens), on a lease that ends a little after the token; cached by the
// frontends after first use.
type tokens struct {
	s *Store

	mu     sync.Mutex
	byHash map[string]store.Token
	byUser map[string]store.Token // the last token this frontend issued to each user

	leaseMu sync.Mutex
	lease   clientv3.LeaseID
	until   time.Time // the lease may take tokens expiring before this
}

func newTokens(s *Store) *tokens {
	return &tokens{s: s, byHash: map[string]store.Token{}, byUser: map[string]store.Token{}}
}

type storedToken struct {
	User   string `json:"user"`
	Tenant string `json:"tenant"`
	// Stamp is absent from tokens stored by frontends older than stamps.
	Stamp   string    `json:"stamp,omitempty"`
	Expires time.Time `json:"expires"`
}

func tokenHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// IssueToken implements store.Store. This frontend hands a user back the
// token it issued itself while that has more than half its life left.
func (s *Store) IssueToken(ctx context.Context, user, tenant, stamp string) (store.Token, error) {
	if err := s.waitReady(ctx); err != nil {
		return store.Token{}, err
	}
	ts := s.tokens
	now := time.Now()
	ttl := s.opts.TokenTTL
	ts.mu.Lock()
	if t, ok := ts.byUser[user]; ok && t.Tenant == tenant && t.Stamp == stamp && t.Expires.Sub(now) > ttl/2 {
		ts.mu.Unlock()
		return t, nil
	}
	ts.mu.Unlock()
	t := store.Token{ID: store.NewTokenID(), User: user, Tenant: tenant, Stamp: stamp, Expires: now.Add(ttl)}
	lease, err := ts.leaseFor(ctx, t.Expires)
	if err != nil {
		return store.Token{}, err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	hash := tokenHash(t.ID)
	if _, err := s.cli.Put(ctx, s.keys.token(hash), encode(storedToken{User: user, Tenant: tenant, Stamp: stamp, Expires: t.Expires}), clientv3.WithLease(lease)); err != nil {
		return store.Token{}, s.fail("store the identity token", err)
	}
	ts.mu.Lock()
	ts.byHash[hash] = t
	ts.byUser[user] = t
	ts.mu.Unlock()
	return t, nil
}

// leaseFor returns a lease that lives at least until expires: the shared
// one while it lasts long enough but not much longer, else a new one.
func (ts *tokens) leaseFor(ctx context.Context, expires time.Time) (clientv3.LeaseID, error) {
	ts.leaseMu.Lock()
	defer ts.leaseMu.Unlock()
	if ts.lease != 0 && !expires.After(ts.until) {
		return ts.lease, nil
	}
	ctx, cancel := ts.s.call(ctx)
	defer cancel()
	ttl := time.Until(expires) + tokenLeaseReuse
	l, err := ts.s.cli.Grant(ctx, int64(ttl/time.Second)+1)
	if err != nil {
		return 0, ts.s.fail("grant a token lease", err)
	}
	ts.lease, ts.until = l.ID, time.Now().Add(ttl)
	return l.ID, nil
}

// LookupToken implements store.Store: the cache, else etcd.
func (s *Store) LookupToken(ctx context.Context, id string) (store.Token, error) {
	if err := s.waitReady(ctx); err != nil {
		return store.Token{}, err
	}
	ts := s.tokens
	hash := tokenHash(id)
	now := time.Now()
	ts.mu.Lock()
	t, ok := ts.byHash[hash]
	ts.mu.Unlock()
	if ok {
		if now.Before(t.Expires) {
			return t, nil
		}
		ts.mu.Lock()
		delete(ts.byHash, hash)
		ts.mu.Unlock()
		return store.Token{}, store.ErrNotFound
	}
	resp, err := s.readTxn(ctx, "check the identity token", clientv3.OpGet(s.keys.token(hash)))
	if err != nil {
		return store.Token{}, err
	}
	if len(resp[0]) == 0 {
		return store.Token{}, store.ErrNotFound
	}
	var st storedToken
	if err := decodeKV(resp[0][0], &st); err != nil {
		return store.Token{}, err
	}
	t = store.Token{ID: id, User: st.User, Tenant: st.Tenant, Stamp: st.Stamp, Expires: st.Expires}
	if !now.Before(t.Expires) {
		return store.Token{}, store.ErrNotFound
	}
	ts.mu.Lock()
	ts.byHash[hash] = t
	ts.mu.Unlock()
	return t, nil
}

// purge forgets the cached tokens that have expired.
func (ts *tokens) purge(now time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for h, t := range ts.byHash {
		if !now.Before(t.Expires) {
			delete(ts.byHash, h)
		}
	}
	for u, t := range ts.byUser {
		if !now.Before(t.Expires) {
			delete(ts.byUser, u)
		}
	}
}
