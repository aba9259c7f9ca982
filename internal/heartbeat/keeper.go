// Package heartbeat keeps one service registered for as long as it is
// asked to. A Keeper creates a session, registers the service in it,
// heartbeats the session well inside its timeout and, when the session is
// lost (the registry forgot it, or no heartbeat got through for a whole
// timeout), creates a new one and registers again.
//
// It does not start processes or handle signals: the supervisor runs it
// beside the child, stops it, and then calls Close to deregister.
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

// ErrGaveUp is returned by Run, wrapped with the cause, when registration
// failed for good and Config.AbortOnFailure is set.
var ErrGaveUp = errors.New("registration failed for good")

// Event is a change of the Keeper's state, reported through Config.OnEvent.
type Event int

// Events reported to Config.OnEvent.
const (
	// EventRegistered: the service is in the registry (first time, after
	// a lost session, or after becoming healthy again).
	EventRegistered Event = iota + 1
	// EventDeregistered: the service was removed because it became
	// unhealthy; the session stays.
	EventDeregistered
	// EventSessionLost: the session is gone; a new one is being made.
	EventSessionLost
)

func (e Event) String() string {
	switch e {
	case EventRegistered:
		return "registered"
	case EventDeregistered:
		return "deregistered"
	case EventSessionLost:
		return "session lost"
	}
	return fmt.Sprintf("event(%d)", int(e))
}

// Config describes what to keep registered. Registry, Service and
// Session.TTL are required.
type Config struct {
	Registry registry.Registry
	Service  registry.Service
	Session  registry.SessionOptions

	// AbortOnFailure makes Run return ErrGaveUp when registration fails
	// for good: a permanent error (a rejected request, a forbidden
	// tenant), Retries failed attempts in a row, or no success within one
	// heartbeat timeout of trying. Without it Run never gives up: the
	// child must never pay for the registry's troubles.
	AbortOnFailure bool
	// Retries bounds the failed registration attempts in a row; 0 means
	// no bound. Without AbortOnFailure, reaching it stops the attempts
	// and leaves the service unregistered.
	Retries int
	// StartUnhealthy defers registration until SetHealthy(true): the
	// session is created at once, the service only when a health check
	// says it serves.
	StartUnhealthy bool
	// Logger receives the Keeper's log lines; nil means none.
	Logger *zap.Logger
	// OnEvent, if set, is called from Run's goroutine on each state
	// change. It must not block.
	OnEvent func(Event)
}

// Timing of retries. The first retry comes after 100–300 ms; later ones
// back off exponentially up to the session timeout, so a registry that
// comes back sees the service again within one timeout.
const (
	initialRetryInterval = 200 * time.Millisecond
	retryJitter          = 0.5
	// existsRetryInterval paces retries while an earlier instance's
	// session still holds the id: it expires at an unknown moment, and
	// the service should reappear soon after.
	existsRetryInterval = time.Second
	// existsBudget is how long an id held by another session is worth
	// waiting for with AbortOnFailure: the longest timeout the API
	// allows (30 s) plus the registry's expiry slack. After that the
	// holder is alive, not stale.
	existsBudget = 32 * time.Second
	// minCallTimeout keeps a nearly spent budget from producing calls
	// that cannot succeed.
	minCallTimeout = 500 * time.Millisecond
)

// Keeper keeps a service registered. Run it in one goroutine; call
// SetHealthy from any goroutine; call Close after Run has returned.
type Keeper struct {
	cfg Config
	log *zap.Logger

	healthMu sync.Mutex
	healthy  bool
	healthCh chan struct{} // signalled when healthy changes

	sessionID atomic.Pointer[string] // for other goroutines' log lines

	// The fields below are owned by Run's goroutine, then by Close.
	sess       registry.Session
	registered bool
	// registration attempts
	nextAttempt  time.Time
	failingSince time.Time
	existsSince  time.Time
	attempts     int
	retry        *backoff.ExponentialBackOff
	stopped      bool // gave up without AbortOnFailure
	// heartbeats
	nextHeartbeat time.Time
	deadline      time.Time // the session expires after this without a heartbeat
	overdue       bool      // the deadline passed with the registry unreachable
	hbFailures    int
	hbRetry       *backoff.ExponentialBackOff
}

// New returns a Keeper for cfg. It does no I/O.
func New(cfg Config) *Keeper {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	k := &Keeper{
		cfg:      cfg,
		log:      log.With(zap.String("service", cfg.Service.ID)),
		healthy:  !cfg.StartUnhealthy,
		healthCh: make(chan struct{}, 1),
		retry:    newBackoff(cfg.Session.TTL),
		hbRetry:  newBackoff(cfg.Session.TTL / 4),
	}
	return k
}

func newBackoff(max time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initialRetryInterval
	b.RandomizationFactor = retryJitter
	b.Multiplier = 2
	b.MaxInterval = max
	b.MaxElapsedTime = 0 // giving up is decided here, not by the backoff
	b.Reset()
	return b
}

// SetHealthy tells the Keeper whether the service should be listed. An
// unhealthy service is removed from the registry; its session stays.
func (k *Keeper) SetHealthy(healthy bool) {
	k.healthMu.Lock()
	changed := k.healthy != healthy
	k.healthy = healthy
	k.healthMu.Unlock()
	if changed {
		select {
		case k.healthCh <- struct{}{}:
		default:
		}
	}
}

func (k *Keeper) wantRegistered() bool {
	k.healthMu.Lock()
	defer k.healthMu.Unlock()
	return k.healthy
}

// logger names the session along with the service on every line.
func (k *Keeper) logger() *zap.Logger {
	if k.sess != nil {
		return k.log.With(zap.String("session", k.sess.ID()))
	}
	return k.log
}

func (k *Keeper) emit(e Event) {
	if k.cfg.OnEvent != nil {
		k.cfg.OnEvent(e)
	}
}

// Run keeps the service registered until ctx is done, and then returns nil
// without ending the session: call Close for that. With AbortOnFailure it
// returns an error wrapping ErrGaveUp when registration fails for good.
func (k *Keeper) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		var err error
		switch {
		case k.stopped:
			// Gave up without AbortOnFailure: nothing left to do but
			// wait for the end.
			<-ctx.Done()
			return nil
		case k.sess == nil && !now.Before(k.nextAttempt):
			err = k.createSession(ctx)
		case k.sess != nil && !now.Before(k.nextHeartbeat):
			err = k.heartbeat(ctx)
		case k.sess != nil && k.wantRegistered() != k.registered && !now.Before(k.nextAttempt):
			err = k.reconcile(ctx)
		default:
			if !k.sleep(ctx, timer, k.nextWake()) {
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// nextWake is the earliest moment something is due.
func (k *Keeper) nextWake() time.Time {
	if k.sess == nil {
		return k.nextAttempt
	}
	wake := k.nextHeartbeat
	if k.wantRegistered() != k.registered && k.nextAttempt.Before(wake) {
		wake = k.nextAttempt
	}
	return wake
}

// sleep waits until wake, a health change or ctx's end. It reports false
// when ctx ended.
func (k *Keeper) sleep(ctx context.Context, timer *time.Timer, wake time.Time) bool {
	timer.Reset(time.Until(wake))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	case <-k.healthCh:
	}
	return true
}

func (k *Keeper) callContext(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	budget = max(budget, minCallTimeout)
	return context.WithTimeout(ctx, budget)
}

// createSession makes a new session.
func (k *Keeper) createSession(ctx context.Context) error {
	cctx, cancel := k.callContext(ctx, k.cfg.Session.TTL)
	sess, err := k.cfg.Registry.CreateSession(cctx, k.cfg.Session)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return k.failed("create session", err)
	}
	now := time.Now()
	k.setSession(sess)
	k.registered = false
	k.deadline = now.Add(sess.TTL())
	k.nextHeartbeat = now.Add(k.heartbeatInterval())
	k.nextAttempt = now
	k.hbFailures = 0
	k.overdue = false
	k.hbRetry.Reset()
	k.logger().Info("session created", zap.Duration("timeout", sess.TTL()), zap.Stringer("registry", k.cfg.Registry))
	if !k.wantRegistered() {
		k.succeeded()
	}
	return nil
}

// reconcile registers or deregisters the service to match its health.
func (k *Keeper) reconcile(ctx context.Context) error {
	want := k.wantRegistered()
	cctx, cancel := k.callContext(ctx, time.Until(k.deadline))
	defer cancel()
	if !want {
		err := k.sess.Deregister(cctx, k.cfg.Service.ID)
		switch {
		case err == nil:
			k.registered = false
			k.logger().Info("service deregistered: unhealthy")
			k.emit(EventDeregistered)
		case ctx.Err() != nil:
		case errors.Is(err, registry.ErrSessionLost):
			k.lost("deregister", err)
		default:
			k.logger().Warn("deregister unhealthy service failed; retrying", zap.Error(err))
			k.nextAttempt = time.Now().Add(k.retry.NextBackOff())
		}
		return nil
	}
	err := k.sess.Register(cctx, k.cfg.Service)
	switch {
	case err == nil:
		k.registered = true
		k.succeeded()
		k.logger().Info("service registered", zap.Strings("tags", k.cfg.Service.Tags))
		k.emit(EventRegistered)
		return nil
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, registry.ErrSessionLost):
		k.lost("register", err)
		return nil
	case errors.Is(err, registry.ErrServiceExists):
		return k.exists(err)
	default:
		return k.failed("register service", err)
	}
}

// exists handles an id still held by another session, typically the
// previous instance of this program whose session has not expired yet.
func (k *Keeper) exists(err error) error {
	now := time.Now()
	if k.existsSince.IsZero() {
		k.existsSince = now
		k.logger().Warn("service id is still held by another session, probably an earlier instance; retrying until that session expires", zap.Error(err))
	}
	k.attempts++
	if k.cfg.Retries > 0 && k.attempts >= k.cfg.Retries {
		return k.giveUp(fmt.Errorf("register service %q: %d attempts: %w", k.cfg.Service.ID, k.attempts, err))
	}
	if k.cfg.AbortOnFailure && now.Sub(k.existsSince) >= existsBudget {
		return k.giveUp(fmt.Errorf("register service %q: still held by another session after %s: %w",
			k.cfg.Service.ID, now.Sub(k.existsSince).Round(time.Second), err))
	}
	k.nextAttempt = now.Add(jitter(existsRetryInterval))
	return nil
}

// failed handles a failed registration step (create session, register) and
// decides whether it is time to give up.
func (k *Keeper) failed(op string, err error) error {
	now := time.Now()
	if k.failingSince.IsZero() {
		k.failingSince = now
	}
	k.attempts++
	err = fmt.Errorf("%s for service %q: %w", op, k.cfg.Service.ID, err)
	switch {
	case registry.IsPermanent(err) && k.cfg.AbortOnFailure:
		return k.giveUp(err)
	case k.cfg.Retries > 0 && k.attempts >= k.cfg.Retries:
		return k.giveUp(fmt.Errorf("%d attempts in a row failed (--retries): %w", k.attempts, err))
	case k.cfg.AbortOnFailure && now.Sub(k.failingSince) >= k.cfg.Session.TTL:
		return k.giveUp(fmt.Errorf("no success within one heartbeat timeout (%s): %w", k.cfg.Session.TTL, err))
	}
	delay := k.retry.NextBackOff()
	k.nextAttempt = now.Add(delay)
	level := zap.WarnLevel
	if registry.IsPermanent(err) {
		level = zap.ErrorLevel
	}
	k.logger().Log(level, "registration failed; retrying", zap.Error(err),
		zap.Int("attempt", k.attempts), zap.Duration("retry_in", delay.Round(time.Millisecond)))
	return nil
}

// succeeded ends a registration episode.
func (k *Keeper) succeeded() {
	k.attempts = 0
	k.failingSince = time.Time{}
	k.existsSince = time.Time{}
	k.retry.Reset()
}

// giveUp ends the attempts. With AbortOnFailure Run returns the error;
// without it the failure is logged and the child keeps running
// unregistered.
func (k *Keeper) giveUp(err error) error {
	if k.cfg.AbortOnFailure {
		return fmt.Errorf("%w: %w", ErrGaveUp, err)
	}
	k.logger().Error("giving up registration; the child keeps running unregistered", zap.Error(err))
	k.stopped = true
	return nil
}

// lost drops a session the registry no longer has and schedules a new one
// at once.
func (k *Keeper) lost(op string, err error) {
	k.logger().Warn("session lost; creating a new session and registering again", zap.String("during", op), zap.Error(err))
	k.setSession(nil)
	k.registered = false
	k.nextAttempt = time.Now()
	k.emit(EventSessionLost)
}

// heartbeatInterval is well inside the timeout, with jitter so that many
// wrappers started together do not heartbeat in lockstep. Half the timeout
// leaves the other half for retries.
func (k *Keeper) heartbeatInterval() time.Duration {
	half := k.sess.TTL() / 2
	return half - time.Duration(rand.Int64N(int64(half/10)+1))
}

// heartbeat extends the session. Failures are retried at once, then with
// backoff within what is left of the timeout. When the timeout passes with
// the registry unreachable the session has probably expired, but it is not
// given up: a registry that comes back may still hold it (sr-registry
// restores sessions with a fresh timeout, etcd renews leases after an
// election), and replacing it would remove the service for a moment. The
// registry's answer decides: the session lives on, or it is reported lost
// and a new one is made.
func (k *Keeper) heartbeat(ctx context.Context) error {
	now := time.Now()
	budget := k.sess.TTL() / 2
	if left := k.deadline.Sub(now); left > 0 && left < budget {
		budget = left
	}
	cctx, cancel := k.callContext(ctx, budget)
	err := k.sess.Heartbeat(cctx)
	cancel()
	now = time.Now()
	switch {
	case err == nil:
		if k.hbFailures > 0 {
			k.logger().Info("heartbeat recovered", zap.Int("failures", k.hbFailures), zap.Bool("after_timeout", k.overdue))
		}
		k.hbFailures = 0
		k.overdue = false
		k.hbRetry.Reset()
		k.retry.Reset() // an outage's long backoff must not delay the next recovery
		k.deadline = now.Add(k.sess.TTL())
		k.nextHeartbeat = now.Add(k.heartbeatInterval())
		return nil
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, registry.ErrSessionLost):
		k.lost("heartbeat", err)
		return nil
	}
	k.hbFailures++
	if !now.Before(k.deadline) {
		if !k.overdue {
			k.overdue = true
			k.logger().Warn("no heartbeat got through within the session timeout; the session has probably expired, and will be replaced as soon as the registry says so",
				zap.Int("failures", k.hbFailures), zap.Error(err))
		}
		// A lost session is recovered within one more timeout, or never.
		if k.cfg.AbortOnFailure && now.Sub(k.deadline) >= k.sess.TTL() {
			return k.giveUp(fmt.Errorf("heartbeat session %s: no success for %s: %w",
				k.sess.ID(), now.Sub(k.deadline.Add(-k.sess.TTL())).Round(time.Second), err))
		}
		k.nextHeartbeat = now.Add(k.retry.NextBackOff())
		return nil
	}
	// A single failure is often a connection the registry closed: retry
	// at once. Then back off, within what is left.
	delay := time.Duration(0)
	if k.hbFailures > 1 {
		delay = min(k.hbRetry.NextBackOff(), k.deadline.Sub(now)/2)
	}
	k.nextHeartbeat = now.Add(delay)
	k.logger().Warn("heartbeat failed; retrying", zap.Error(err), zap.Int("failures", k.hbFailures),
		zap.Duration("retry_in", delay.Round(time.Millisecond)), zap.Duration("left", k.deadline.Sub(now).Round(time.Millisecond)))
	return nil
}

// Close ends the session now, so that the service disappears at once
// instead of after the timeout. Call it after Run has returned.
func (k *Keeper) Close(ctx context.Context) error {
	if k.sess == nil {
		return nil
	}
	id := k.sess.ID()
	err := k.sess.Close(ctx)
	k.setSession(nil)
	k.registered = false
	if err != nil && !errors.Is(err, registry.ErrSessionLost) {
		return fmt.Errorf("end session %s: %w", id, err)
	}
	return nil
}

func (k *Keeper) setSession(s registry.Session) {
	k.sess = s
	id := ""
	if s != nil {
		id = s.ID()
	}
	k.sessionID.Store(&id)
}

// SessionID is the current session's id, or "" without one. It is safe to
// call from any goroutine.
func (k *Keeper) SessionID() string {
	if p := k.sessionID.Load(); p != nil {
		return *p
	}
	return ""
}

func jitter(d time.Duration) time.Duration {
	f := 1 + retryJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
