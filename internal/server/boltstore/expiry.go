package boltstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// expirer holds one min-heap entry per live session, keyed by the deadline
// the session had when the entry was pushed. Heartbeats only move the
// session's deadline forward in memory and never touch the heap: when an
// entry comes due and the session's real deadline is later, the entry is
// pushed again with it. So a heartbeat costs O(1) and the heap costs
// O(log n) once per timeout per session, whatever the heartbeat rate. When
// a deadline moves earlier (PUT with a smaller heartbeat_timeout) a new
// entry is pushed; session.queued names the current entry, older ones are
// dropped when they surface.
type expirer struct {
	mu   sync.Mutex
	h    store.Deadlines[*session]
	wake chan struct{}
}

// expiryEntry is a session queued with the deadline it had then.
type expiryEntry = store.Due[*session]

func newExpirer() *expirer {
	return &expirer{wake: make(chan struct{}, 1)}
}

// push queues sess for its current deadline. The tenant's mu must be held
// (it guards sess.queued).
func (e *expirer) push(sess *session) {
	sess.queued = sess.deadline
	e.mu.Lock()
	first := e.h.Push(sess.deadline, sess)
	e.mu.Unlock()
	if first {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// popDue removes and returns the entries due at now.
func (e *expirer) popDue(now int64, buf []expiryEntry) []expiryEntry {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.h.PopDue(now, buf)
}

// next returns how long until the first entry is due, or a long wait when
// the heap is empty (a push wakes the loop anyway).
func (e *expirer) next(now int64) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	first, ok := e.h.Next()
	if !ok {
		return time.Hour
	}
	return time.Duration(first - now)
}

// runExpiry expires sessions on time until stop is closed.
func (s *Store) runExpiry(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []expiryEntry
	for {
		now := s.mono()
		buf = s.exp.popDue(now, buf[:0])
		if len(buf) > 0 {
			s.expireDue(buf, now)
			clear(buf)
			continue // expiring took time: look again before sleeping
		}
		d := s.exp.next(now)
		if d < time.Millisecond {
			d = time.Millisecond
		}
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-s.exp.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-stop:
			return
		}
	}
}

// expireDue handles the due entries, grouped by tenant: each tenant's
// expired sessions are removed in one transaction, and tenants are handled
// concurrently so that their transactions share fsyncs. A mass expiry of
// thousands of sessions therefore still finishes well within a second.
func (s *Store) expireDue(due []expiryEntry, now int64) {
	byTenant := map[*tenant][]expiryEntry{}
	for _, e := range due {
		byTenant[e.Value.t] = append(byTenant[e.Value.t], e)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for t, entries := range byTenant {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.expireTenant(t, entries, now)
		}()
	}
	wg.Wait()
}

func (s *Store) expireTenant(t *tenant, entries []expiryEntry, now int64) {
	type expired struct {
		sess     *session
		services []api.Service
	}
	var victims []expired
	t.wmu.Lock()
	t.mu.Lock()
	for _, e := range entries {
		sess := e.Value
		switch {
		case sess.gone, e.Deadline != sess.queued:
			// Deleted meanwhile, or a stale entry superseded by a newer one.
		case sess.deadline > now:
			s.exp.push(sess) // heartbeated since: wait for the new deadline
		default:
			// Hidden from now on: heartbeats get 404 while the removal
			// commits. Services whose creation is still committing are
			// listed too: on disk they come before this removal.
			sess.gone = true
			victims = append(victims, expired{sess: sess, services: sess.serviceViews(true)})
		}
	}
	t.mu.Unlock()
	if len(victims) == 0 {
		t.wmu.Unlock()
		return
	}

	nowMS := time.Now().UnixMilli()
	p, err := s.file.enqueueTenant(context.Background(), t.id, func(tb *tenantBuckets) error {
		for _, v := range victims {
			if err := tb.sessions.Delete([]byte(v.sess.id)); err != nil {
				return err
			}
			for _, svc := range v.services {
				if err := tb.services.Delete([]byte(svc.ID)); err != nil {
					return err
				}
			}
			if _, err := appendEvent(tb, api.EventServicesTimeout, v.services, nowMS); err != nil {
				return err
			}
		}
		return nil
	})
	t.wmu.Unlock()
	if err == nil {
		err = p.wait()
	}
	switch {
	case err == nil:
		s.metrics.SessionExpiries.Add(float64(len(victims)))
		s.committed(api.EventServicesTimeout, len(victims))
	case !errors.Is(err, errClosed):
		// Memory forgets them all the same below (clients already see
		// them gone); on disk they remain, so a restart restores them and
		// they expire again, this time with their services.timeout event.
		s.log.Error("expire sessions: commit failed", zap.String("tenant", t.id), zap.Int("sessions", len(victims)), zap.Error(err))
	}

	t.mu.Lock()
	for _, v := range victims {
		t.forget(v.sess)
	}
	t.mu.Unlock()
	for _, v := range victims {
		s.log.Info("session expired",
			zap.String("tenant", t.id),
			zap.String("session_id", v.sess.id),
			zap.Int("heartbeat_timeout", int(v.sess.timeout)),
			zap.Int("services", len(v.services)))
	}
}
