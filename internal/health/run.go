package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Defaults of the wrapper's --check-* flags.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultRise     = 1
	DefaultFall     = 3
)

// Timing is when checks run and how their results count.
type Timing struct {
	// Interval is the time from the start of one check to the start of
	// the next (--check-interval).
	Interval time.Duration
	// Timeout ends a check that has not answered; the check then counts
	// as failed (--check-timeout). At most Interval, so that checks never
	// overlap.
	Timeout time.Duration
	// Rise is how many checks in a row must pass to become healthy
	// (--check-rise); Fall how many must fail to become unhealthy
	// (--check-fall).
	Rise, Fall int
}

// Validate checks the timing; its errors name the wrapper's flags.
func (t Timing) Validate() error {
	switch {
	case t.Interval <= 0:
		return fmt.Errorf("--check-interval must be more than 0, not %s", t.Interval)
	case t.Timeout <= 0:
		return fmt.Errorf("--check-timeout must be more than 0, not %s", t.Timeout)
	case t.Timeout > t.Interval:
		return fmt.Errorf("--check-timeout (%s) must not be longer than --check-interval (%s), so that checks never overlap",
			t.Timeout, t.Interval)
	case t.Rise < 1:
		return fmt.Errorf("--check-rise must be at least 1, not %d", t.Rise)
	case t.Fall < 1:
		return fmt.Errorf("--check-fall must be at least 1, not %d", t.Fall)
	}
	return nil
}

// Config is what Run needs. Checker and a valid Timing are required.
type Config struct {
	Checker Checker
	Timing
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

// Run checks at once, then every Interval, until ctx ends, and reports
// each change between healthy and unhealthy through OnChange. It starts
// unhealthy: it becomes healthy after Rise checks in a row have passed,
// and unhealthy again after Fall checks in a row have failed.
//
// Each check gets a context that ends after Timeout, and counts as failed
// if it has not passed by then; a check must return soon after its
// context ends, as the HTTP, TCP and command checks do. Run itself is
// meant to run in a goroutine of its own, beside the heartbeats and the
// signal handling, which it therefore cannot block.
//
// Run returns an error at once when cfg is not valid, and otherwise nil
// once ctx has ended and the check in flight has returned (a command
// check has then killed what it started). A result that comes in after
// ctx ended is not reported.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Checker == nil {
		return errors.New("no health check given: use --check-http, --check-tcp or --check-cmd")
	}
	if err := cfg.Timing.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	r := &runner{Config: cfg, log: log.With(zap.String("check", cfg.Checker.String()))}
	r.log.Info("health checks start; the service counts as unhealthy until they pass",
		zap.Duration("interval", cfg.Interval), zap.Duration("timeout", cfg.Timeout),
		zap.Int("rise", cfg.Rise), zap.Int("fall", cfg.Fall))
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		err := r.check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.record(err)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// runner counts the results of one Run.
type runner struct {
	Config
	log *zap.Logger
	// streak is the passes in a row when positive, the failures in a
	// row when negative.
	streak      int
	healthy     bool
	everHealthy bool
}

func (r *runner) check(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	err := r.Checker.Check(cctx)
	if cctx.Err() == nil {
		return err
	}
	if err == nil {
		return fmt.Errorf("no answer within %s (--check-timeout)", r.Timeout)
	}
	return fmt.Errorf("no answer within %s (--check-timeout): %w", r.Timeout, err)
}

// record counts one result and reports a transition.
func (r *runner) record(err error) {
	if err == nil {
		r.streak = max(r.streak, 0) + 1
		r.log.Debug("health check passed", zap.Int("successes_in_a_row", r.streak))
		if !r.healthy && r.streak >= r.Rise {
			r.healthy, r.everHealthy = true, true
			r.log.Info("service is healthy", zap.Int("successes_in_a_row", r.streak))
			r.notify(true, nil)
		}
		return
	}
	r.streak = min(r.streak, 0) - 1
	failures := -r.streak
	r.log.Debug("health check failed", zap.Int("failures_in_a_row", failures), zap.Error(err))
	switch {
	case r.healthy && failures >= r.Fall:
		r.healthy = false
		r.log.Warn("service is unhealthy", zap.Int("failures_in_a_row", failures), zap.Error(err))
		r.notify(false, err)
	case !r.everHealthy && failures == r.Fall:
		// No transition (it was never healthy), but a program that never
		// passes its check must not stay silent at the default level.
		r.log.Warn("service is not healthy yet", zap.Int("failures_in_a_row", failures), zap.Error(err))
	}
}

func (r *runner) notify(healthy bool, err error) {
	if r.OnChange != nil {
		r.OnChange(healthy, err)
	}
}
