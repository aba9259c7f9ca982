package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/heartbeat"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

// Registration is what keeps the child's service in the registry while it
// runs; *heartbeat.Keeper is one.
type Registration interface {
	// Start begins registering in the background; Run calls it once the
	// child runs.
	Start()
	// Events reports the registration's changes, in order. A GaveUp
	// event means the child must be stopped (--abort-on-failure).
	Events() <-chan heartbeat.Event
	// Close stops registering and deregisters at once, within ctx.
	Close(ctx context.Context) error
	// SessionID names the current session for log lines ("" without one).
	SessionID() string
}

// Hooks are told what becomes of the service; sd_notify uses them. Each is
// called from the run loop, in the loop's order, and must not block. Nil
// hooks are skipped. Nothing is called after Stopping.
type Hooks struct {
	// Ready: the service is up. Called once: at the first registration
	// (registered), or when ReadyTimeout passed before it (not).
	Ready func(registered bool)
	// Registration: a later change of the registration (not GaveUp).
	Registration func(heartbeat.Event)
	// Stopping: the wrapper is stopping the child or the child has exited.
	Stopping func()
	// Watchdog: the loop is alive; called every Config.WatchdogPeriod
	// while the child runs, and never while the loop is busy elsewhere.
	Watchdog func()
}

// Companion is work that runs beside the child for as long as it serves,
// such as a health check. It starts once the child runs; its context ends
// when stopping begins or the child exits, and Run waits for it to return
// before it stops reaping, so that a process it started is still waited
// for. reaper is the one Reaper of the process: a companion that starts
// processes must start and wait for them through it.
type Companion func(ctx context.Context, reaper *signals.Reaper)

// Config is what Run needs. Argv and Registration are required.
type Config struct {
	Child        ChildSpec
	Registration Registration

	// StopSignal replaces TERM when the wrapper asks the child to stop;
	// zero means TERM.
	StopSignal syscall.Signal
	// StopTimeout is how long the child may take to exit after being
	// asked before its process group gets SIGKILL; zero means 10 s.
	StopTimeout time.Duration
	// DrainDelay, when set, makes TERM/INT/QUIT deregister first, wait
	// this long, and only then reach the child.
	DrainDelay time.Duration
	// SignalGroup sends forwarded signals to the child's process group.
	SignalGroup bool
	// KillMode says what else must not outlive the child; the zero value
	// is KillGroup.
	KillMode KillMode
	// Subreaper makes the wrapper adopt and reap orphaned descendants;
	// as PID 1 it does so anyway.
	Subreaper bool
	// AbortExitCode is the exit status after Registration gave up.
	AbortExitCode int
	// DeregisterTimeout bounds the final deregistration, so that a dead
	// registry cannot hold the wrapper's exit; zero means 3 s. The
	// session expires by itself anyway.
	DeregisterTimeout time.Duration
	// ReadyTimeout is how long Hooks.Ready waits for the registration
	// after the child started; zero means as long as it takes.
	ReadyTimeout time.Duration

	// WatchdogPeriod is how often Hooks.Watchdog is called; zero means
	// never.
	WatchdogPeriod time.Duration

	// Companions run beside the child (see Companion).
	Companions []Companion

	Hooks  Hooks
	Logger *zap.Logger
}

const (
	defaultStopTimeout       = 10 * time.Second
	defaultDeregisterTimeout = 3 * time.Second
)

// serveDelay is how long after the child's start the wrapper begins the
// rest of its work: the "child started" line, the registration, the
// health check, the real-time signals. On a small machine that work
// (an HTTP exchange, 30 round trips to the runtime's signal thread, a JSON
// log line) takes the CPU from the child while its own start-up runs: on
// two busy cores, bench/wrapper measured it at 0.8 ms of the child's
// start. Delayed, it costs the registration 5 ms. Signals are handled
// from the start; a real-time one that arrives in these 5 ms is dropped
// by the Go runtime, as it was before in the first millisecond.
const serveDelay = 5 * time.Millisecond

// phase is how far a run has come on its way out. It only moves forward;
// the child's exit ends the run in any phase.
type phase int

const (
	// running: nothing has asked the child to stop.
	running phase = iota
	// awaitingDrain: stopping with a drain delay, whose timer starts only
	// once deregistration has ended, so that a slow registry cannot let
	// the signal reach the child while clients are still sent to it.
	awaitingDrain
	// draining: deregistered; drainTimer runs until the child is asked
	// to stop.
	draining
	// stopSent: the child has been asked to stop (and is killed after the
	// stop timeout).
	stopSent
	// exited: the child has exited; what it left behind is being
	// stopped and the service deregistered.
	exited
)

// run is the state of one Run: everything is owned by the loop goroutine,
// so the lifecycle needs no locks (tini's shape, in Go).
type run struct {
	cfg   Config
	log   *zap.Logger
	child *Child

	ready      bool        // Hooks.Ready was called
	readyTimer *time.Timer // set until then, with a ReadyTimeout

	deregSession string     // the session being ended, for the log line
	deregDone    chan error // Close's result

	phase      phase
	stopSignal syscall.Signal // for the child, once stopping
	drainTimer *time.Timer    // set while draining
	stopDone   chan StopResult
	stopSentAt time.Time // when the child was asked to stop
	aborted    bool

	reapsOrphans  bool
	startLogged   bool
	leftoversDone chan leftoverResult // set while what the child left is stopped
	hurry         chan struct{}       // closed to kill the leftovers at once

	companionsCancel context.CancelFunc
	companions       sync.WaitGroup
}

// Run starts the child at once, keeps it registered beside it, forwards
// signals, and returns the exit status the wrapper must exit with: the
// child's own (128+N after signal N), 126/127 when it could not be
// started, or cfg.AbortExitCode after the registration gave up. It
// deregisters before returning. Ending ctx stops the child as TERM would.
func Run(ctx context.Context, cfg Config) int {
	r := &run{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.cfg.StopSignal == 0 {
		r.cfg.StopSignal = syscall.SIGTERM
	}
	if r.cfg.StopTimeout <= 0 {
		r.cfg.StopTimeout = defaultStopTimeout
	}
	if r.cfg.DeregisterTimeout <= 0 {
		r.cfg.DeregisterTimeout = defaultDeregisterTimeout
	}
	return r.run(ctx)
}

func (r *run) run(ctx context.Context) int {
	// Subscribe before the child exists: until then Go's defaults would
	// let a TERM end the wrapper silently and strand the child.
	sub := signals.Subscribe()
	defer sub.Stop()

	reaper, err := signals.NewReaper(signals.ReaperOptions{
		Subreaper: r.cfg.Subreaper,
		OnOrphan: func(pid int, ws syscall.WaitStatus) {
			r.log.Debug("reaped orphan", zap.Int("pid", pid), zap.Stringer("status", signals.StatusFromWait(ws)))
		},
	})
	if err != nil {
		r.log.Error("cannot reap children", zap.Error(err))
		return ExitNotExecutable
	}
	defer func() {
		if err := reaper.Close(); err != nil {
			r.log.Warn("close reaper", zap.Error(err))
		}
	}()

	child, err := StartChild(r.cfg.Child, reaper)
	if err != nil {
		code := ExitNotExecutable
		var se *StartError
		if errors.As(err, &se) {
			code = se.ExitCode()
		}
		r.log.Error("cannot start the command; nothing was registered", zap.Error(err), zap.Int("exit_code", code))
		return code
	}
	r.child = child
	r.reapsOrphans = reaper.ReapsOrphans()
	compCtx, compCancel := context.WithCancel(context.Background())
	r.companionsCancel = compCancel
	defer compCancel()

	// Everything else waits serveDelay, in this loop, so that it does not
	// compete with the child's own start-up (see serveDelay).
	serveTimer := time.NewTimer(serveDelay)
	defer serveTimer.Stop()
	serveAt := serveTimer.C
	serve := func() {
		serveAt = nil
		r.logStarted()
		sub.AddRealtime()
		if r.phase != running {
			return // stopped already: nothing to register
		}
		// Registration runs beside the child, never in front of it.
		r.cfg.Registration.Start()
		if r.cfg.ReadyTimeout > 0 {
			r.readyTimer = time.NewTimer(r.cfg.ReadyTimeout)
		}
		for _, c := range r.cfg.Companions {
			r.companions.Add(1)
			go func() {
				defer r.companions.Done()
				c(compCtx, reaper)
			}()
		}
	}

	// The watchdog is fed from this loop, so that a loop that stops
	// turning starves it, and only while the child runs.
	var watchdog <-chan time.Time
	if r.cfg.WatchdogPeriod > 0 && r.cfg.Hooks.Watchdog != nil {
		tick := time.NewTicker(r.cfg.WatchdogPeriod)
		defer tick.Stop()
		watchdog = tick.C
	}
	ctxDone, childDone := ctx.Done(), child.Done()
	for {
		if r.phase == exited && r.stopDone == nil && r.deregDone == nil && r.leftoversDone == nil {
			return r.finish()
		}
		var drain, readyTimeout <-chan time.Time
		if r.drainTimer != nil {
			drain = r.drainTimer.C
		}
		if r.readyTimer != nil {
			readyTimeout = r.readyTimer.C
		}
		select {
		case sig := <-sub.Stops():
			r.onSignal(sig)
		case sig := <-sub.Others():
			r.onSignal(sig)
		case <-ctxDone:
			ctxDone = nil
			r.l().Info("asked to stop")
			r.beginStop(syscall.SIGTERM)
		case e := <-r.cfg.Registration.Events():
			r.onRegistration(e)
		case <-readyTimeout:
			r.readyTimer = nil
			r.setReady(false)
		case err := <-r.deregDone:
			r.deregDone = nil
			r.logDeregistered(err)
			if r.phase == awaitingDrain {
				r.startDrain()
			}
		case <-drain:
			r.drainTimer = nil
			r.sendStop()
		case res := <-r.stopDone:
			r.stopDone = nil
			r.logStopResult(res)
		case res := <-r.leftoversDone:
			r.leftoversDone = nil
			r.logLeftovers(res)
		case <-serveAt:
			serve()
		case <-watchdog:
			r.cfg.Hooks.Watchdog()
		case <-childDone:
			childDone, ctxDone, watchdog, serveAt = nil, nil, nil, nil
			r.logStarted()
			r.onChildExit()
		}
	}
}

// logStarted says that the child started, once.
func (r *run) logStarted() {
	if r.startLogged {
		return
	}
	r.startLogged = true
	r.log.Info("child started", zap.Int("pid", r.child.Pid()), zap.Strings("command", r.cfg.Child.Argv),
		zap.Bool("reaps_orphans", r.reapsOrphans))
}

func (r *run) onSignal(sig os.Signal) {
	s, _ := sig.(syscall.Signal)
	switch {
	case !signals.IsStop(sig):
		r.forward(s)
	case r.phase == exited:
		// A second stop signal, after the child's exit, means "now" for
		// what it left behind; the first is forwarded to them already.
		if r.hurry != nil {
			r.l().Info("stop signal while stopping what the child left behind; killing it now", zap.String("signal", signals.Name(s)))
			close(r.hurry)
			r.hurry = nil
		}
	case r.phase == running:
		// It also deregisters, so that no client is sent to a program
		// on its way out.
		r.l().Info("received stop signal", zap.String("signal", signals.Name(s)))
		r.beginStop(s)
	case r.phase == awaitingDrain || r.phase == draining:
		// A second stop signal while draining means "now".
		r.l().Info("second stop signal while draining; stopping the child now", zap.String("signal", signals.Name(s)))
		if r.drainTimer != nil {
			r.drainTimer.Stop()
			r.drainTimer = nil
		}
		r.sendStop()
	default:
		// Already asked to stop: the child may want to hear it again.
		r.forward(s)
	}
}

// onRegistration passes a change of the registration on, while running:
// once the wrapper is stopping, what systemd is told is that alone.
func (r *run) onRegistration(e heartbeat.Event) {
	switch {
	case r.phase != running:
	case e.Kind == heartbeat.GaveUp:
		r.l().Error("registration failed for good; stopping the child (--abort-on-failure)", zap.Error(e.Err))
		r.aborted = true
		r.beginStop(r.cfg.StopSignal)
	case e.Kind == heartbeat.Registered && !r.ready:
		r.setReady(true)
	case r.cfg.Hooks.Registration != nil:
		r.cfg.Hooks.Registration(e)
	}
}

func (r *run) setReady(registered bool) {
	if r.ready || r.phase != running {
		return
	}
	r.ready = true
	if r.readyTimer != nil {
		r.readyTimer.Stop()
		r.readyTimer = nil
	}
	if r.cfg.Hooks.Ready != nil {
		r.cfg.Hooks.Ready(registered)
	}
}

// l names the current session on a line, as every line of the wrapper
// does; it changes when a lost session is replaced.
func (r *run) l() *zap.Logger {
	id := r.cfg.Registration.SessionID()
	if id == "" {
		id = r.deregSession // being ended
	}
	if id != "" {
		return r.log.With(zap.String("session", id))
	}
	return r.log
}

func (r *run) forward(s syscall.Signal) {
	if err := r.child.Signal(s, r.cfg.SignalGroup); err != nil && !errors.Is(err, os.ErrProcessDone) {
		r.l().Warn("forward signal", zap.String("signal", signals.Name(s)), zap.Error(err))
		return
	}
	r.l().Debug("forwarded signal", zap.String("signal", signals.Name(s)), zap.Bool("group", r.cfg.SignalGroup))
}

// beginStop deregisters and asks the child to stop: in parallel, or with a
// drain delay first deregistration, then the wait, then the signal. sig is
// what the wrapper received; TERM becomes the configured stop signal. Only
// the first call does anything: the run is stopping from then on.
func (r *run) beginStop(sig syscall.Signal) {
	if r.phase != running {
		return
	}
	// A health check passing during the drain must not bring the service
	// back.
	r.companionsCancel()
	if r.cfg.Hooks.Stopping != nil {
		r.cfg.Hooks.Stopping()
	}
	r.startDeregister()
	if sig == syscall.SIGTERM {
		sig = r.cfg.StopSignal
	}
	r.stopSignal = sig
	if r.cfg.DrainDelay > 0 && !r.aborted {
		// The delay counts from the end of deregistration, not from now
		// (design: deregister, wait D, then forward).
		r.phase = awaitingDrain
		return
	}
	r.sendStop()
}

// startDrain starts the drain delay once the service is out of the
// registry.
func (r *run) startDrain() {
	r.phase = draining
	r.drainTimer = time.NewTimer(r.cfg.DrainDelay)
	r.l().Info("draining before the child is asked to stop", zap.Duration("drain_delay", r.cfg.DrainDelay))
}

// sendStop sends the stop signal and escalates to SIGKILL after the stop
// timeout, in the background so that the loop keeps forwarding signals.
func (r *run) sendStop() {
	r.phase = stopSent
	sig := r.stopSignal
	r.l().Info("asking the child to stop", zap.String("signal", signals.Name(sig)), zap.Duration("stop_timeout", r.cfg.StopTimeout))
	r.stopSentAt = time.Now()
	stopDone := make(chan StopResult, 1)
	r.stopDone = stopDone
	child, group, timeout := r.child, r.cfg.SignalGroup, r.cfg.StopTimeout
	go func() {
		// Bounded: after SIGKILL only a process in uninterruptible sleep
		// outlives it, and the loop ends when the child does anyway.
		ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
		defer cancel()
		res, _ := StopChild(ctx, child, sig, group, timeout)
		stopDone <- res
	}()
}

// startDeregister stops the registration and ends the session, in the
// background, all of it within the deregistration timeout: a Close that
// overstays it is left behind. It is called once: when stopping begins,
// or when the child exits while the run is still running.
func (r *run) startDeregister() {
	r.deregSession = r.cfg.Registration.SessionID()
	deregDone := make(chan error, 1)
	r.deregDone = deregDone
	reg, timeout := r.cfg.Registration, r.cfg.DeregisterTimeout
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		closed := make(chan error, 1)
		go func() { closed <- reg.Close(ctx) }()
		select {
		case err := <-closed:
			deregDone <- err
		case <-ctx.Done():
			deregDone <- fmt.Errorf("not done within %s: %w", timeout, ctx.Err())
		}
	}()
}

func (r *run) logDeregistered(err error) {
	log := r.log
	if r.deregSession != "" {
		log = log.With(zap.String("session", r.deregSession))
	}
	if err != nil {
		log.Warn("deregistration failed; the session will expire by itself", zap.Error(err))
		return
	}
	log.Info("deregistered")
}

func (r *run) logStopResult(res StopResult) {
	if res.Killed {
		r.l().Warn("child did not exit within the stop timeout; killed its process group",
			zap.Duration("stop_timeout", r.cfg.StopTimeout))
	}
}

// onChildExit starts what must follow the child's exit, in the
// background: deregistration, if stopping has not begun it already, and
// stopping what the child left behind. The loop goes on until both have
// ended.
func (r *run) onChildExit() {
	status, _ := r.child.ExitStatus()
	r.l().Info("child exited", zap.Int("pid", r.child.Pid()), zap.Stringer("status", status), zap.Int("exit_code", status.Code))
	r.companionsCancel()
	if r.drainTimer != nil {
		r.drainTimer.Stop()
		r.drainTimer = nil
	}
	if r.readyTimer != nil {
		r.readyTimer.Stop()
		r.readyTimer = nil
	}
	if r.phase == running {
		if r.cfg.Hooks.Stopping != nil {
			r.cfg.Hooks.Stopping()
		}
		r.startDeregister()
	}
	stopped := r.phase == stopSent
	r.phase = exited
	if r.cfg.KillMode == KillGroup {
		r.startLeftovers(stopped)
	}
}

// startLeftovers stops what the child left behind (see KillGroup) with
// the stop signal and kills it when the stop timeout ends: the timeout
// that began with the child's stop signal, when it had one, so that
// --stop-timeout bounds the whole stop; else the one that begins now.
func (r *run) startLeftovers(stopped bool) {
	l := &leftovers{pgid: r.child.Pid(), tree: r.reapsOrphans, pid1: os.Getpid() == 1, self: os.Getpid(), proc: "/proc"}
	deadline, sig := time.Now().Add(r.cfg.StopTimeout), r.cfg.StopSignal
	if stopped {
		// The signal the child had: INT after a ^C, say.
		deadline, sig = r.stopSentAt.Add(r.cfg.StopTimeout), r.stopSignal
	}
	// With --signal-group the group had the stop signal with the child.
	groupSignalled := stopped && r.cfg.SignalGroup
	log := r.l()
	done := make(chan leftoverResult, 1)
	r.leftoversDone, r.hurry = done, make(chan struct{})
	hurry := r.hurry
	go func() {
		// Bounded beyond the deadline: after SIGKILL only a process in
		// uninterruptible sleep stays, and stopLeftovers gives up on it.
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Minute))
		defer cancel()
		done <- stopLeftovers(ctx, l, sig, groupSignalled, deadline, hurry, func(n int) {
			fields := []zap.Field{zap.String("signal", signals.Name(sig)), zap.Duration("kill_after", time.Until(deadline).Round(time.Millisecond))}
			if n >= 0 {
				fields = append(fields, zap.Int("processes", n))
			}
			log.Info("stopping what the child left behind", fields...)
		})
	}()
}

func (r *run) logLeftovers(res leftoverResult) {
	r.hurry = nil
	if res.Killed {
		r.l().Warn("killed what the child left behind: it outlived the stop timeout", zap.Duration("stop_timeout", r.cfg.StopTimeout))
	}
	if res.Remaining {
		r.l().Warn("processes the child left behind are still there after SIGKILL; exiting without them")
	}
}

// finish runs once the child has exited and everything that follows has
// ended, and computes the exit status.
func (r *run) finish() int {
	status, _ := r.child.ExitStatus()
	r.companions.Wait()
	if r.aborted {
		return r.cfg.AbortExitCode
	}
	return status.Code
}
