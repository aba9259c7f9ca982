package boltstore

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// tenant is one account's live state. Memory is the source of truth for
// reads; bbolt is the source of truth across restarts.
//
// Locking: wmu serialises the tenant's mutations while they are decided
// and queued for commit (store.enqueue), so that the order of writes on
// disk (and of events in the feed) is the order in which they were
// decided; it is released before the commit is waited for, so that the
// tenant's next mutations share the next fsync instead of waiting for this
// one. mu guards the maps and the sessions' fields and is only ever held
// for memory work, never across I/O, so heartbeats and reads are not
// delayed by an fsync. Lock order: wmu, then mu, then the expirer's lock.
//
// A decided mutation is applied to memory at once, so that the next
// decision sees it: a create is counted and its id taken but it stays
// invisible (pending) until it is on disk; a delete hides its object at
// once; an update is visible at once. When a commit fails the mutation is
// undone in memory, unless a later one has built on it.
type tenant struct {
	id string

	wmu sync.Mutex

	mu       sync.Mutex
	sessions map[string]*session
	services map[string]*service
	config   map[string]string
}

func newTenant(id string) *tenant {
	return &tenant{
		id:       id,
		sessions: map[string]*session{},
		services: map[string]*service{},
		config:   map[string]string{},
	}
}

// session is a live session. Fields after id are guarded by tenant.mu.
// Kept small on purpose: the budget is 2 KB per session, all included.
type session struct {
	t  *tenant
	id string

	timeout  int32  // seconds
	writes   uint32 // updates decided so far, to undo only the latest
	pending  bool   // created, waiting for its creation to commit
	gone     bool   // deleted or expired; waiting for its removal to commit
	created  int64  // unix ms
	lastSeen int64  // unix ms of the last heartbeat, 0 before the first
	deadline int64  // monotonic ns (Store.mono) after which it expires
	queued   int64  // deadline of its current entry in the expiry heap
	// chain is the heartbeat token chain; Unknown for a session restored
	// from disk.
	chain    store.Chain
	metadata map[string]string
	services []*service
}

// service is a registered service. Fields are guarded by tenant.mu.
type service struct {
	sess     *session
	id       string
	tags     []string
	metadata map[string]string
	writes   uint32 // updates decided so far, to undo only the latest
	pending  bool   // created, waiting for its creation to commit
	deleting bool   // deleted, waiting for its removal to commit
}

func (s *session) view() api.Session {
	v := api.Session{
		ID:               s.id,
		HeartbeatTimeout: int(s.timeout),
		Metadata:         cloneMap(s.metadata),
	}
	if s.lastSeen != 0 {
		ls := s.lastSeen
		v.LastSeen = &ls
	}
	return v
}

func (s *session) stored() storedSession {
	return storedSession{
		ID:               s.id,
		HeartbeatTimeout: int(s.timeout),
		Metadata:         s.metadata,
		Created:          s.created,
	}
}

func (s *session) removeService(svc *service) {
	if i := slices.Index(s.services, svc); i >= 0 {
		s.services = slices.Delete(s.services, i, i+1)
	}
}

// serviceViews returns the session's services sorted by id: the listed
// ones, or with pending also those whose creation is still committing.
func (s *session) serviceViews(pending bool) []api.Service {
	out := make([]api.Service, 0, len(s.services))
	for _, svc := range s.services {
		if !svc.deleting && (pending || !svc.pending) {
			out = append(out, svc.view())
		}
	}
	sortByID(out, func(v api.Service) string { return v.ID })
	return out
}

func (svc *service) view() api.Service {
	tags := svc.tags
	if tags == nil {
		tags = []string{}
	}
	return api.Service{
		ID:        svc.id,
		SessionID: svc.sess.id,
		Tags:      slices.Clone(tags),
		Metadata:  cloneMap(svc.metadata),
	}
}

// live reports whether the service is visible: on disk, not being
// deleted, and its session has not been deleted or expired.
func (svc *service) live() bool { return !svc.pending && !svc.deleting && !svc.sess.gone }

// liveSession returns the session with that id unless it is gone or not
// yet on disk. mu must be held.
func (t *tenant) liveSession(id string) *session {
	if s := t.sessions[id]; s != nil && s.visible() {
		return s
	}
	return nil
}

// visible reports whether the session is listed: on disk and not deleted
// or expired.
func (s *session) visible() bool { return !s.gone && !s.pending }

// forget removes a deleted or expired session and its services from the
// maps, once the removal is on disk. mu must be held.
func (t *tenant) forget(sess *session) {
	if t.sessions[sess.id] == sess {
		delete(t.sessions, sess.id)
	}
	for _, svc := range sess.services {
		if t.services[svc.id] == svc {
			delete(t.services, svc.id)
		}
	}
}

// undoConfig puts back the value a failed change replaced (nil: absent),
// unless a later change has set the id since (the value is no longer the
// failed change's, set; nil: deleted). It takes mu.
func (t *tenant) undoConfig(id string, set, old *string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, ok := t.config[id]
	if ok != (set != nil) || (ok && cur != *set) {
		return
	}
	if old == nil {
		delete(t.config, id)
	} else {
		t.config[id] = *old
	}
}

// liveService returns the service with that id unless its session is gone.
// mu must be held.
func (t *tenant) liveService(id string) *service {
	if svc := t.services[id]; svc != nil && svc.live() {
		return svc
	}
	return nil
}

// configUnder returns the configuration values whose id starts with
// prefix, in no order. mu must be held.
func (t *tenant) configUnder(prefix string) []api.ConfigurationValue {
	out := []api.ConfigurationValue{}
	for id, v := range t.config {
		if strings.HasPrefix(id, prefix) {
			out = append(out, api.ConfigurationValue{ID: id, Value: v})
		}
	}
	return out
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// emptyToNil drops empty maps so that they cost nothing per session. It
// keeps m itself otherwise: callers pass maps freshly decoded for them.
func emptyToNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func sortByID[T any](items []T, id func(T) string) {
	sort.Slice(items, func(i, j int) bool { return id(items[i]) < id(items[j]) })
}
