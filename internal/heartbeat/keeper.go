// Package heartbeat keeps one service registered for as long as it is
// asked to. A Keeper creates a session, registers the service in it while
// it is healthy, heartbeats the session well inside its timeout and, when
// the registry has lost the session, creates a new one and registers
// again.
//
// It does not start processes or handle signals: the supervisor starts it
// beside the child, follows its Events, and Closes it to deregister.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
)

// ErrGaveUp is wrapped by the error of a GaveUp event.
var ErrGaveUp = errors.New("registration failed for good")

// EventKind says what changed.
type EventKind int

// Kinds of Event.
const (
	Registered   EventKind = iota + 1 // listed: the first time, in a new session, or healthy again
	Deregistered                      // removed as unhealthy; the session stays
	SessionLost                       // the registry lost the session; a new one is being made
	GaveUp                            // registration failed for good (AbortOnFailure); the last event
)

// Event is a change of the Keeper's state.
type Event struct {
	Kind EventKind
	Err  error // for GaveUp, why: it wraps ErrGaveUp
}

// Config describes what to keep registered. Registry, Service and
// Session.TTL are required.
type Config struct {
	Registry registry.Registry
	Service  registry.Service
	Session  registry.SessionOptions

	// AbortOnFailure makes the Keeper give up (a GaveUp event) when
	// registration fails for good: a permanent error (a rejected request,
	// a forbidden tenant), Retries failed attempts in a row or, without
	// Retries, no success within one heartbeat timeout of trying; or no
	// heartbeat for two timeouts. Without it the Keeper never gives up on its own account:
	// the child must never pay for the registry's troubles.
	AbortOnFailure bool
	// Retries bounds the failed registration attempts in a row; 0 means
	// no bound. Without AbortOnFailure, reaching it stops the Keeper and
	// leaves the service unregistered.
	Retries int
	// StartUnhealthy defers registration until SetHealthy(true): the
	// session is created at once, the service only when a health check
	// says it serves.
	StartUnhealthy bool
	// Logger receives the Keeper's log lines; nil means none.
	Logger *zap.Logger
}

// Timing of retries. The first retry comes after 100–300 ms; later ones
// back off exponentially up to the session timeout, so a registry that
// comes back sees the service again within one timeout.
const (
	initialRetryInterval = 200 * time.Millisecond
	retryJitter          = 0.5
	// While an earlier instance's session still holds the id, retry
	// every second: it expires at an unknown moment, and the service
	// should reappear soon after. With AbortOnFailure, wait for it as long
	// as the longest timeout the API allows (30 s) plus the registry's
	// expiry slack: after that the holder is alive, not stale.
	heldRetryInterval = time.Second
	heldBudget        = 32 * time.Second
	// minCallTimeout keeps a nearly spent budget from producing calls
	// that cannot succeed.
	minCallTimeout = 500 * time.Millisecond
)

// Keeper keeps a service registered from Start to Close. SetHealthy,
// SessionID and Close may be called from any goroutine.
type Keeper struct {
	cfg    Config
	log    *zap.Logger
	events chan Event

	healthy  atomic.Bool
	healthCh chan struct{} // signalled when healthy changes

	start sync.Once
	stop  context.CancelFunc // set by Start
	done  chan struct{}      // closed when run has returned

	mu   sync.Mutex
	sess registry.Session // the current session, nil without one

	tries attempts // owned by run's goroutine
}

// New returns a Keeper for cfg. It does no I/O and starts nothing.
func New(cfg Config) *Keeper {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	k := &Keeper{
		cfg:      cfg,
		log:      log.With(zap.String("service", cfg.Service.ID)),
		events:   make(chan Event, 8),
		healthCh: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	k.healthy.Store(!cfg.StartUnhealthy)
	k.tries = attempts{cfg: &k.cfg, backoff: newBackoff(cfg.Session.TTL)}
	return k
}

func newBackoff(max time.Duration) *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(initialRetryInterval),
		backoff.WithRandomizationFactor(retryJitter), backoff.WithMultiplier(2), backoff.WithMaxInterval(max),
		backoff.WithMaxElapsedTime(0)) // giving up is decided here, not by the backoff
}

// Start begins registering in the background. Later calls do nothing.
func (k *Keeper) Start() {
	k.start.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		k.stop = cancel
		go func() {
			defer close(k.done)
			k.run(ctx)
		}()
	})
}

// Events reports the Keeper's changes in order. Keep receiving from it
// until Close: the Keeper waits while it is full.
func (k *Keeper) Events() <-chan Event { return k.events }

// SetHealthy tells the Keeper whether the service should be listed. An
// unhealthy service is removed from the registry; its session stays.
func (k *Keeper) SetHealthy(healthy bool) {
	if k.healthy.Swap(healthy) != healthy {
		select {
		case k.healthCh <- struct{}{}:
		default:
		}
	}
}

// SessionID is the current session's id, or "" without one.
func (k *Keeper) SessionID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sess == nil {
		return ""
	}
	return k.sess.ID()
}

// Close stops the Keeper and ends its session now, so that the service
// disappears at once instead of after the timeout. All of it is bounded
// by ctx: a session that could not be ended expires by itself.
func (k *Keeper) Close(ctx context.Context) error {
	k.start.Do(func() { close(k.done) }) // never started: nothing runs
	if k.stop != nil {
		k.stop()
	}
	// Beside whatever call the Keeper is in (sessions are safe for
	// concurrent use): one that ignores its context must not keep the
	// service listed.
	errs := []error{k.endSession(ctx)}
	select {
	case <-k.done:
		errs = append(errs, k.endSession(ctx)) // one made meanwhile
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop registering: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

func (k *Keeper) endSession(ctx context.Context) error {
	sess := k.swapSession(nil)
	if sess == nil {
		return nil
	}
	if err := sess.Close(ctx); err != nil && !errors.Is(err, registry.ErrSessionLost) {
		return fmt.Errorf("end session %s: %w", sess.ID(), err)
	}
	return nil
}

// swapSession makes s the current session and returns the one before.
func (k *Keeper) swapSession(s registry.Session) registry.Session {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.sess
	k.sess = s
	return old
}

// logger names the session along with the service on every line.
func (k *Keeper) logger() *zap.Logger {
	if id := k.SessionID(); id != "" {
		return k.log.With(zap.String("session", id))
	}
	return k.log
}

func (k *Keeper) emit(ctx context.Context, e Event) {
	select {
	case k.events <- e:
	case <-ctx.Done():
	}
}

// run alternates the two phases: register makes a session, keepAlive
// keeps it until the registry loses it.
func (k *Keeper) run(ctx context.Context) {
	for {
		sess, err := k.register(ctx)
		if err == nil {
			err = k.keepAlive(ctx, sess)
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, registry.ErrSessionLost):
			k.logger().Warn("session lost; creating a new session and registering again", zap.Error(err))
			k.swapSession(nil)
			k.emit(ctx, Event{Kind: SessionLost})
		case k.cfg.AbortOnFailure:
			k.emit(ctx, Event{Kind: GaveUp, Err: err})
			return
		default:
			// The session, if any, is left to expire.
			k.logger().Error("giving up registration; the child keeps running unregistered", zap.Error(err))
			return
		}
	}
}

// register creates a session, retrying until it succeeds, ctx ends or the
// attempts give up (an error wrapping ErrGaveUp).
func (k *Keeper) register(ctx context.Context) (registry.Session, error) {
	for {
		cctx, cancel := callContext(ctx, k.cfg.Session.TTL)
		sess, err := k.cfg.Registry.CreateSession(cctx, k.cfg.Session)
		cancel()
		if err == nil {
			k.swapSession(sess)
			k.logger().Info("session created", zap.Duration("timeout", sess.TTL()), zap.Stringer("registry", k.cfg.Registry))
			if !k.healthy.Load() {
				k.tries.reset() // nothing more to do until it is healthy
			}
			return sess, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		delay, err := k.tries.failed(k.log, "create session", err)
		if err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// keepAlive heartbeats sess well inside its timeout and keeps the service
// listed in it while it is healthy. It returns an error wrapping
// registry.ErrSessionLost when the registry no longer has the session,
// one wrapping ErrGaveUp when registration failed for good, or ctx's.
func (k *Keeper) keepAlive(ctx context.Context, sess registry.Session) error {
	b := beats{ttl: sess.TTL(), backoff: newBackoff(sess.TTL() / 4)}
	b.succeeded(time.Now())
	listed := false
	var retryListAt time.Time // after a failed Register or Deregister
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		want := k.healthy.Load()
		var err error
		switch {
		case !now.Before(b.next):
			err = k.heartbeat(ctx, sess, &b)
		case want != listed && !now.Before(retryListAt):
			var retry time.Duration
			if retry, err = k.list(ctx, sess, want); err == nil && retry == 0 {
				listed = want
			}
			retryListAt = now.Add(retry)
		default:
			wake := b.next
			if want != listed && retryListAt.Before(wake) {
				wake = retryListAt
			}
			timer.Reset(time.Until(wake))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			case <-k.healthCh:
			}
		}
		if err != nil {
			return err
		}
	}
}

// list registers the service (listed) or removes it. After a failure it
// returns how long to wait before the next try (never 0); an error means
// keepAlive must end.
func (k *Keeper) list(ctx context.Context, sess registry.Session, listed bool) (retry time.Duration, err error) {
	cctx, cancel := callContext(ctx, sess.TTL()/2)
	defer cancel()
	if listed {
		err = sess.Register(cctx, k.cfg.Service)
	} else {
		err = sess.Deregister(cctx, k.cfg.Service.ID)
	}
	switch {
	case err == nil && listed:
		k.tries.reset()
		k.logger().Info("service registered", zap.Strings("tags", k.cfg.Service.Tags))
		k.emit(ctx, Event{Kind: Registered})
		return 0, nil
	case err == nil:
		k.logger().Info("service deregistered: unhealthy")
		k.emit(ctx, Event{Kind: Deregistered})
		return 0, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case errors.Is(err, registry.ErrSessionLost):
		return 0, err
	case !listed:
		retry = k.tries.backoff.NextBackOff()
		k.logger().Warn("deregister unhealthy service failed; retrying", zap.Error(err), zap.Duration("retry_in", retry))
		return retry, nil
	}
	return k.tries.failed(k.logger(), "register service", err)
}

// beats is keepAlive's heartbeat schedule for one session.
type beats struct {
	ttl      time.Duration
	deadline time.Time // the session expires after this without a heartbeat
	next     time.Time
	failures int  // in a row
	overdue  bool // a heartbeat failed after the deadline
	backoff  *backoff.ExponentialBackOff
}

// succeeded schedules the next heartbeat well inside the timeout, with
// jitter so that many wrappers started together do not heartbeat in
// lockstep. Half the timeout leaves the other half for retries.
func (b *beats) succeeded(now time.Time) {
	half := b.ttl / 2
	b.deadline = now.Add(b.ttl)
	b.next = now.Add(half - time.Duration(rand.Int64N(int64(half/10)+1)))
	b.failures, b.overdue = 0, false
	b.backoff.Reset()
}

// heartbeat extends the session. A failure is retried at once, then with
// backoff up to the deadline. When the timeout passes with
// the registry unreachable the session has probably expired, but it is not
// given up: a registry that comes back may still hold it (sr-registry
// restores sessions with a fresh timeout, etcd renews leases after an
// election), and replacing it would remove the service for a moment. The
// registry's answer decides: the session lives on, or it is lost.
func (k *Keeper) heartbeat(ctx context.Context, sess registry.Session, b *beats) error {
	budget := b.ttl / 2
	if left := time.Until(b.deadline); left > 0 && left < budget {
		budget = left
	}
	cctx, cancel := callContext(ctx, budget)
	err := sess.Heartbeat(cctx)
	cancel()
	now := time.Now()
	switch {
	case err == nil:
		if b.failures > 0 {
			k.logger().Info("heartbeat recovered", zap.Int("failures", b.failures), zap.Bool("after_timeout", b.overdue))
		}
		b.succeeded(now)
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, registry.ErrSessionLost):
		return err
	}
	b.failures++
	left := b.deadline.Sub(now)
	asked := askedWait(err, b.backoff.MaxInterval)
	var delay time.Duration
	switch {
	case left > 0 && b.failures == 1 && asked == 0:
		// Often a connection the registry closed: retry at once.
	case left > 0:
		// Never after the deadline, whatever the registry asked.
		delay = min(max(b.backoff.NextBackOff(), asked), left)
	default:
		if !b.overdue {
			k.logger().Warn("no heartbeat got through within the session timeout; the session has probably expired, and will be replaced as soon as the registry says so",
				zap.Int("failures", b.failures), zap.Error(err))
		}
		b.overdue = true
		delay = max(b.backoff.NextBackOff(), asked)
		if k.cfg.AbortOnFailure {
			// A lost session is recovered within one more timeout, or never.
			giveUpAt := b.deadline.Add(b.ttl)
			if !now.Before(giveUpAt) {
				return fmt.Errorf("%w: heartbeat session %s: no success for %s: %w", ErrGaveUp, sess.ID(), 2*b.ttl, err)
			}
			delay = min(delay, giveUpAt.Sub(now))
		}
	}
	b.next = now.Add(delay)
	if left > 0 {
		k.logger().Warn("heartbeat failed; retrying", zap.Error(err), zap.Int("failures", b.failures),
			zap.Duration("retry_in", delay.Round(time.Millisecond)), zap.Duration("left", left.Round(time.Millisecond)))
	}
	return nil
}

// attempts is the run of failed registration attempts (creating the
// session, registering the service) since the last success: it paces the
// retries and decides when to give up.
type attempts struct {
	cfg       *Config
	n         int
	since     time.Time // first failure of the run
	heldSince time.Time // first time the id was held by another session
	backoff   *backoff.ExponentialBackOff
}

func (a *attempts) reset() {
	a.n = 0
	a.since, a.heldSince = time.Time{}, time.Time{}
	a.backoff.Reset()
}

// failed counts a failed attempt at op and returns the delay before the
// next one, or an error wrapping ErrGaveUp. An id held by another session
// (typically the previous instance of this program, whose session has not
// expired yet) is retried every second, for longer than any timeout.
func (a *attempts) failed(log *zap.Logger, op string, err error) (time.Duration, error) {
	now := time.Now()
	held := errors.Is(err, registry.ErrServiceExists)
	since, budget := &a.since, a.cfg.Session.TTL
	if held {
		since, budget = &a.heldSince, heldBudget
	}
	if since.IsZero() {
		*since = now
		if held {
			log.Warn("service id is still held by another session, probably an earlier instance; retrying until that session expires", zap.Error(err))
		}
	}
	a.n++
	err = fmt.Errorf("%s for service %q: %w", op, a.cfg.Service.ID, err)
	abort := a.cfg.AbortOnFailure
	// The time limits stand in for a bound the user did not give: with
	// Retries, the count alone decides, however long it takes.
	timed := abort && a.cfg.Retries == 0
	switch {
	case abort && registry.IsPermanent(err):
		return 0, fmt.Errorf("%w: %w", ErrGaveUp, err)
	case a.cfg.Retries > 0 && a.n >= a.cfg.Retries:
		return 0, fmt.Errorf("%w: %d attempts in a row failed (--retries): %w", ErrGaveUp, a.n, err)
	case timed && held && now.Sub(*since) >= budget:
		return 0, fmt.Errorf("%w: still held by another session after %s: %w", ErrGaveUp, budget, err)
	case timed && now.Sub(*since) >= budget:
		return 0, fmt.Errorf("%w: no success within one heartbeat timeout (%s): %w", ErrGaveUp, budget, err)
	}
	delay := max(a.backoff.NextBackOff(), askedWait(err, a.backoff.MaxInterval))
	if held {
		delay = jitter(heldRetryInterval)
	}
	if timed {
		delay = min(delay, since.Add(budget).Sub(now)) // the last try when the time is up
	}
	if !held {
		level := zap.WarnLevel
		if registry.IsPermanent(err) {
			level = zap.ErrorLevel
		}
		log.Log(level, "registration failed; retrying", zap.Error(err),
			zap.Int("attempt", a.n), zap.Duration("retry_in", delay.Round(time.Millisecond)))
	}
	return delay, nil
}

// askedWait is the wait the registry asked for with err's reply (its
// Retry-After: a tenant at its rate limit, a busy identity service), at
// most ceiling, the longest retry interval: a retry never comes sooner
// than asked, but a wrapper does not sit out a day-long rate-limit window
// either, as refused requests cost the tenant nothing.
func askedWait(err error, ceiling time.Duration) time.Duration {
	return min(registry.RetryAfter(err), ceiling)
}

func callContext(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(budget, minCallTimeout))
}

func jitter(d time.Duration) time.Duration {
	f := 1 + retryJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
