package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// cutOffGrace is how long a check may take to return after its timeout
// before it is counted as failed without its own error.
const cutOffGrace = 100 * time.Millisecond

// Defaults of the wrapper's --check-* flags.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultRise     = 1
	DefaultFall     = 3
)

// Config is what Run needs. All fields but Logger and OnChange are
// required; Validate says which one is wrong, by its flag's name.
type Config struct {
	// Checker is the probe run on every interval.
	Checker Checker
	// Interval is the time from the start of one check to the start of
	// the next (--check-interval).
	Interval time.Duration
	// Timeout cuts off a check that has not answered; the check then
	// counts as failed (--check-timeout). At most Interval, so that
	// checks never overlap.
	Timeout time.Duration
	// Rise is how many checks in a row must pass to become healthy
	// (--check-rise); Fall how many must fail to become unhealthy
	// (--check-fall).
	Rise, Fall int
	// Logger receives the transitions (info when healthy, warn when
	// unhealthy, with the last error) and each result at debug level;
	// nil means none.
	Logger *zap.Logger
	// OnChange, if set, is called from Run's goroutine on each
	// transition: healthy with a nil error, or unhealthy with the error
	// of the last failed check. It must not block (the wrapper's is the
	// heartbeat Keeper's SetHealthy): the next check waits for it.
	OnChange func(healthy bool, lastErr error)
}

// Validate checks cfg before anything starts. Its errors name the
// wrapper's flag.
func Validate(cfg Config) error {
	if cfg.Checker == nil {
		return errors.New("no health check given: use --check-http, --check-tcp or --check-cmd")
	}
	return ValidateTiming(cfg.Interval, cfg.Timeout, cfg.Rise, cfg.Fall)
}

// ValidateTiming checks the timing of checks alone, for flag validation
// before the checker can be built.
func ValidateTiming(interval, timeout time.Duration, rise, fall int) error {
	switch {
	case interval <= 0:
		return fmt.Errorf("--check-interval must be more than 0, not %s", interval)
	case timeout <= 0:
		return fmt.Errorf("--check-timeout must be more than 0, not %s", timeout)
	case timeout > interval:
		return fmt.Errorf("--check-timeout (%s) must not be longer than --check-interval (%s), so that checks never overlap",
			timeout, interval)
	case rise < 1:
		return fmt.Errorf("--check-rise must be at least 1, not %d", rise)
	case fall < 1:
		return fmt.Errorf("--check-fall must be at least 1, not %d", fall)
	}
	return nil
}

// Run checks at once, then every Interval, until ctx ends, and reports
// each change between healthy and unhealthy through OnChange. It starts
// unhealthy: it becomes healthy after Rise checks in a row have passed,
// and unhealthy again after Fall checks in a row have failed.
//
// Each check runs in a goroutine of its own, with a context that ends
// after Timeout; a check that has not answered by then counts as failed:
// with its own error if it returns within a moment (a check that honours
// its context does), else with a timeout error 100 ms later. Checks never
// overlap: a check that ignores its context and is still running at the
// next interval counts as failed again, and no new one starts until it
// has returned.
// Run itself is meant to run in a goroutine of its own, beside the
// heartbeats and the signal handling, which it therefore cannot block.
//
// Run returns Validate's error at once when cfg is not valid. Otherwise
// it returns nil once ctx has ended, after giving the check in flight (its
// context ended too) up to Timeout to return. A result that comes in
// after ctx ended is not reported.
func Run(ctx context.Context, cfg Config) error {
	if err := Validate(cfg); err != nil {
		return err
	}
	newRunner(cfg).run(ctx)
	return nil
}

func newRunner(cfg Config) *runner {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &runner{
		cfg:     cfg,
		log:     log.With(zap.String("check", cfg.Checker.String())),
		results: make(chan error, 1),
	}
}

// runner is the state of one Run, owned by its goroutine.
type runner struct {
	cfg Config
	log *zap.Logger

	healthy     bool
	everHealthy bool
	successes   int // in a row
	failures    int // in a row

	// The check in flight. results holds at most one value, since at
	// most one check runs.
	results  chan error
	inFlight bool
	started  time.Time
	checkCtx context.Context
	cancel   context.CancelFunc
	// cutoff fires cutOffGrace after the check's timeout, unless it has
	// returned by then; nil when no check waits for it.
	cutoff    *time.Timer
	cutOff    bool // its failure was counted; its result will be dropped
	tickEarly bool // an interval passed while it was running in time
}

func (r *runner) run(ctx context.Context) {
	r.log.Info("health checks start; the service counts as unhealthy until they pass",
		zap.Duration("interval", r.cfg.Interval), zap.Duration("timeout", r.cfg.Timeout),
		zap.Int("rise", r.cfg.Rise), zap.Int("fall", r.cfg.Fall))
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	r.start(ctx)
	for {
		var cutoff <-chan time.Time
		if r.cutoff != nil {
			cutoff = r.cutoff.C
		}
		select {
		case <-ctx.Done():
			r.stop()
			return
		case <-tick.C:
			switch {
			case !r.inFlight:
				r.start(ctx)
			case r.cutOff:
				r.record(fmt.Errorf("the check started %s ago has still not returned, despite its %s timeout (--check-timeout)",
					time.Since(r.started).Round(time.Millisecond), r.cfg.Timeout))
			default:
				// Within its timeout: the next check starts when it ends.
				r.tickEarly = true
			}
		case <-cutoff:
			r.cutoff = nil
			r.cutOff = true
			r.record(r.timeoutError(nil))
		case err := <-r.results:
			r.inFlight = false
			r.stopCutoff()
			timedOut := r.checkCtx.Err() != nil
			r.cancel()
			if ctx.Err() != nil {
				return
			}
			switch {
			case r.cutOff:
				r.cutOff = false
				r.log.Debug("a check returned after it was cut off; its result is dropped", zap.Error(err))
			case timedOut:
				r.record(r.timeoutError(err))
			default:
				r.record(err)
			}
			if r.tickEarly {
				r.tickEarly = false
				r.start(ctx)
			}
		}
	}
}

// start starts a check. A check that honours its context returns at its
// timeout, with an error that says more than ours would; one that has not
// returned a moment later is cut off: counted as failed without its own
// error.
func (r *runner) start(ctx context.Context) {
	r.checkCtx, r.cancel = context.WithTimeout(ctx, r.cfg.Timeout)
	r.cutoff = time.NewTimer(r.cfg.Timeout + cutOffGrace)
	r.inFlight = true
	r.started = time.Now()
	check, checkCtx, results := r.cfg.Checker, r.checkCtx, r.results
	go func() { results <- check.Check(checkCtx) }()
}

func (r *runner) stopCutoff() {
	if r.cutoff != nil {
		r.cutoff.Stop()
		r.cutoff = nil
	}
}

// stop cancels the check in flight and gives it up to Timeout to
// return, so that a command check's processes are gone before the
// wrapper goes on to exit.
func (r *runner) stop() {
	if !r.inFlight {
		return
	}
	r.cancel()
	r.stopCutoff()
	t := time.NewTimer(r.cfg.Timeout)
	defer t.Stop()
	select {
	case <-r.results:
	case <-t.C:
		r.log.Warn("a health check did not return after it was cancelled", zap.Duration("waited", r.cfg.Timeout))
	}
	r.inFlight = false
}

func (r *runner) timeoutError(err error) error {
	if err == nil {
		return fmt.Errorf("no answer within %s (--check-timeout)", r.cfg.Timeout)
	}
	return fmt.Errorf("no answer within %s (--check-timeout): %w", r.cfg.Timeout, err)
}

// record counts one result and reports a transition.
func (r *runner) record(err error) {
	if err == nil {
		r.failures = 0
		r.successes++
		r.log.Debug("health check passed", zap.Int("successes_in_a_row", r.successes))
		if !r.healthy && r.successes >= r.cfg.Rise {
			r.healthy, r.everHealthy = true, true
			r.log.Info("service is healthy", zap.Int("successes_in_a_row", r.successes))
			r.notify(true, nil)
		}
		return
	}
	r.successes = 0
	r.failures++
	r.log.Debug("health check failed", zap.Int("failures_in_a_row", r.failures), zap.Error(err))
	switch {
	case r.healthy && r.failures >= r.cfg.Fall:
		r.healthy = false
		r.log.Warn("service is unhealthy", zap.Int("failures_in_a_row", r.failures), zap.Error(err))
		r.notify(false, err)
	case !r.everHealthy && r.failures == r.cfg.Fall:
		// No transition (it was never healthy), but a program that never
		// passes its check must not stay silent at the default level.
		r.log.Warn("service is not healthy yet", zap.Int("failures_in_a_row", r.failures), zap.Error(err))
	}
}

func (r *runner) notify(healthy bool, err error) {
	if r.cfg.OnChange != nil {
		r.cfg.OnChange(healthy, err)
	}
}
