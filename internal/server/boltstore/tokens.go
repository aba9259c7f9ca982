package boltstore

import (
	"sync"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// tokens are the identity tokens, in memory only: after a restart clients
// get 401 and authenticate again, which is what every client of the hosted
// service did when a token was purged early.
type tokens struct {
	ttl time.Duration

	mu     sync.RWMutex
	byID   map[string]*store.Token
	byUser map[string]*store.Token // the latest token of each user
}

func newTokens(ttl time.Duration) *tokens {
	return &tokens{ttl: ttl, byID: map[string]*store.Token{}, byUser: map[string]*store.Token{}}
}

// issue returns a token for the user. Like Rackspace's identity service it
// hands back the user's current token while that has more than half its
// life left, which keeps the number of live tokens bounded by the number of
// users however often clients authenticate.
func (ts *tokens) issue(user, tenant, stamp string, now time.Time) store.Token {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.byUser[user]; t != nil && t.Tenant == tenant && t.Stamp == stamp && t.Expires.Sub(now) > ts.ttl/2 {
		return *t
	}
	t := &store.Token{ID: store.NewTokenID(), User: user, Tenant: tenant, Stamp: stamp, Expires: now.Add(ts.ttl)}
	ts.byID[t.ID] = t
	ts.byUser[user] = t
	return *t
}

// lookup returns the live token with that id.
func (ts *tokens) lookup(id string, now time.Time) (store.Token, bool) {
	ts.mu.RLock()
	t := ts.byID[id]
	ts.mu.RUnlock()
	if t == nil || !now.Before(t.Expires) {
		return store.Token{}, false
	}
	return *t, true
}

// purge forgets expired tokens.
func (ts *tokens) purge(now time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for k, t := range ts.byID {
		if !now.Before(t.Expires) {
			delete(ts.byID, k)
			if ts.byUser[t.User] == t {
				delete(ts.byUser, t.User)
			}
		}
	}
}
