package health

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// The runner's tests run in a synctest bubble, on a fake clock: intervals
// and timeouts pass at once and the times measured are exact.

var timing = Timing{Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}

type checkFunc func(context.Context) error

func (f checkFunc) Check(ctx context.Context) error { return f(ctx) }
func (f checkFunc) String() string                  { return "func" }

// script is a Checker that plays results, '+' for a pass and '-' for a
// failure ("fail N", N counting from 1), and then ends the Run.
func script(results string, endRun context.CancelFunc) (Checker, *[]time.Time) {
	var at []time.Time
	return checkFunc(func(ctx context.Context) error {
		at = append(at, time.Now())
		i := len(at) - 1
		switch {
		case i >= len(results):
			endRun()
			return ctx.Err()
		case results[i] == '-':
			return fmt.Errorf("fail %d", i+1)
		}
		return nil
	}), &at
}

func change(healthy bool, err error) string {
	if healthy {
		return "healthy"
	}
	return "unhealthy(" + err.Error() + ")"
}

// run runs cfg's checks until the checker ends the run, and returns the
// changes reported.
func run(t *testing.T, cfg Config, ctx context.Context) []string {
	t.Helper()
	var changes []string
	cfg.OnChange = func(healthy bool, err error) { changes = append(changes, change(healthy, err)) }
	if err := Run(ctx, cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return changes
}

func TestRunRiseAndFall(t *testing.T) {
	up := "healthy"
	down := func(n int) string { return fmt.Sprintf("unhealthy(fail %d)", n) }
	tests := []struct {
		name       string
		rise, fall int
		script     string
		want       []string
	}{
		{"one pass is enough by default", 1, 3, "+", []string{up}},
		{"starts unhealthy and reports nothing while it stays so", 1, 3, "------", nil},
		{"falls after fall failures in a row", 1, 3, "+---", []string{up, down(4)}},
		{"failures below fall do not count", 1, 3, "+--+--+--", []string{up}},
		{"back up after a fall", 1, 3, "+---+", []string{up, down(4), up}},
		{"rise 2", 2, 1, "+-++-", []string{up, down(5)}},
		{"a failure resets the rise", 3, 2, "++-+++--+++", []string{up, down(8), up}},
		{"a pass resets the fall", 1, 2, "+-+-+--", []string{up, down(7)}},
		{"fall 1 flaps at every change", 1, 1, "+-+-", []string{up, down(2), up, down(4)}},
		{"rise and fall 5", 5, 5, "++++-+++++----+-----", []string{up, down(20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testsupport.Synctest(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				checker, at := script(tt.script, cancel)
				tm := timing
				tm.Rise, tm.Fall = tt.rise, tt.fall
				got := run(t, Config{Checker: checker, Timing: tm}, ctx)
				if !slices.Equal(got, tt.want) {
					t.Errorf("script %s (rise %d, fall %d): changes %v, want %v", tt.script, tt.rise, tt.fall, got, tt.want)
				}
				if n := len(*at); n != len(tt.script)+1 {
					t.Errorf("%d checks for a script of %d", n, len(tt.script))
				}
			})
		})
	}
}

func TestRunLogsEachTransition(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		core, logs := observer.New(zap.InfoLevel)
		checker, _ := script("---+--", cancel)
		run(t, Config{Checker: checker, Timing: Timing{Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 2}, Logger: zap.New(core)}, ctx)
		type line struct {
			level zapcore.Level
			msg   string
			err   string
		}
		var got []line
		for _, e := range logs.All() {
			l := line{level: e.Level, msg: e.Message}
			if err, ok := e.ContextMap()["error"]; ok {
				l.err = fmt.Sprint(err)
			}
			if e.ContextMap()["check"] != "func" {
				t.Errorf("line %q does not name the check: %v", e.Message, e.ContextMap())
			}
			got = append(got, l)
		}
		want := []line{
			{zapcore.InfoLevel, "health checks start; the service counts as unhealthy until they pass", ""},
			{zapcore.WarnLevel, "service is not healthy yet", "fail 2"},
			{zapcore.InfoLevel, "service is healthy", ""},
			{zapcore.WarnLevel, "service is unhealthy", "fail 6"},
		}
		if !slices.Equal(got, want) {
			t.Errorf("log lines\n%v\nwant\n%v", got, want)
		}
	})
}

// Checks start on the interval's beat, however long each one took within
// its timeout.
func TestRunChecksAtOnceThenEveryInterval(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		var at []time.Duration
		checker := checkFunc(func(ctx context.Context) error {
			at = append(at, time.Since(start))
			if len(at) == 4 {
				cancel()
			}
			time.Sleep(time.Duration(len(at)) * 200 * time.Millisecond)
			return nil
		})
		run(t, Config{Checker: checker, Timing: timing}, ctx)
		if want := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}; !slices.Equal(at, want) {
			t.Errorf("checks at %v, want %v", at, want)
		}
	})
}

// A check that honours its context but never answers fails at its
// timeout, with its own error, and each one counts.
func TestRunHangingCheckFailsAtItsTimeout(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		calls := 0
		var failedAt time.Duration
		checker := checkFunc(func(ctx context.Context) error {
			if calls++; calls == 1 {
				return nil
			}
			<-ctx.Done()
			return fmt.Errorf("GET http://x/: %w", ctx.Err())
		})
		cfg := Config{Checker: checker, Timing: Timing{Interval: time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 2}}
		cfg.OnChange = func(healthy bool, err error) {
			if !healthy {
				failedAt = time.Since(start)
				if want := "no answer within 300ms (--check-timeout): GET http://x/: context deadline exceeded"; err.Error() != want {
					t.Errorf("error %q, want %q", err, want)
				}
				cancel()
			}
		}
		if err := Run(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if want := 2*time.Second + 300*time.Millisecond; failedAt != want {
			t.Errorf("unhealthy after %s, want at the second failed check's timeout, %s", failedAt, want)
		}
	})
}

func TestRunReturnsWhenItsContextEndsAfterTheCheckInFlight(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		returned := false
		checker := checkFunc(func(ctx context.Context) error {
			cancel()
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // cleaning up, as a command check kills its group
			returned = true
			return ctx.Err()
		})
		var changes []string
		cfg := Config{Checker: checker, Timing: Timing{Interval: time.Hour, Timeout: time.Hour, Rise: 1, Fall: 1},
			OnChange: func(h bool, err error) { changes = append(changes, change(h, err)) }}
		if err := Run(ctx, cfg); err != nil || !returned {
			t.Errorf("Run = %v before the check in flight had returned (%v)", err, returned)
		}
		if len(changes) != 0 {
			t.Errorf("changes %v after the context ended, want none", changes)
		}
	})
}

func TestValidateNamesTheFlag(t *testing.T) {
	ok := Timing{Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall}
	tests := []struct {
		change  func(*Timing)
		wantErr string
	}{
		{func(c *Timing) { c.Interval = 0 }, "--check-interval must be more than 0, not 0s"},
		{func(c *Timing) { c.Interval = -time.Second; c.Timeout = -2 * time.Second }, "--check-interval must be more than 0, not -1s"},
		{func(c *Timing) { c.Timeout = 0 }, "--check-timeout must be more than 0, not 0s"},
		{func(c *Timing) { c.Timeout = 6 * time.Second }, "--check-timeout (6s) must not be longer than --check-interval (5s), so that checks never overlap"},
		{func(c *Timing) { c.Rise = 0 }, "--check-rise must be at least 1, not 0"},
		{func(c *Timing) { c.Fall = -1 }, "--check-fall must be at least 1, not -1"},
	}
	for _, tt := range tests {
		tm := ok
		tt.change(&tm)
		if err := tm.Validate(); err == nil || err.Error() != tt.wantErr {
			t.Errorf("Validate: %v, want %q", err, tt.wantErr)
		}
		if err := Run(context.Background(), Config{Checker: checkFunc(nil), Timing: tm}); err == nil || err.Error() != tt.wantErr {
			t.Errorf("Run: %v, want Validate's error %q", err, tt.wantErr)
		}
		if err := (Spec{TCP: "127.0.0.1:1", Timing: tm}).Validate(); err == nil || err.Error() != tt.wantErr {
			t.Errorf("Spec.Validate: %v, want %q", err, tt.wantErr)
		}
	}
	if err := Run(context.Background(), Config{Timing: ok}); err == nil || !strings.Contains(err.Error(), "no health check given") {
		t.Errorf("Run without a checker: %v", err)
	}
	equal := ok
	equal.Timeout = equal.Interval
	if err := equal.Validate(); err != nil {
		t.Errorf("timeout equal to the interval: %v", err)
	}
}

// Every checker is built from a Spec, which names its flag in errors.
func TestSpecBuildsEachChecker(t *testing.T) {
	r := newReaper(t)
	tests := []struct {
		spec          Spec
		want, wantErr string
	}{
		{spec: Spec{HTTP: "http://127.0.0.1:8080/health"}, want: "GET http://127.0.0.1:8080/health"},
		{spec: Spec{TCP: "127.0.0.1:3306"}, want: "TCP connect 127.0.0.1:3306"},
		{spec: Spec{Command: `sh -c 'exit 0'`}, want: "command sh -c 'exit 0'"},
		{spec: Spec{}, wantErr: "give one check, not 0"},
		{spec: Spec{HTTP: "x", Command: "true"}, wantErr: "give one check, not 2"},
		{spec: Spec{HTTP: "ftp://x/"}, wantErr: `--check-http: "ftp://x/": scheme "ftp" is not supported`},
		{spec: Spec{TCP: "x"}, wantErr: `--check-tcp: "x" is not HOST:PORT`},
		{spec: Spec{Command: "a | b"}, wantErr: `--check-cmd: "|" at offset 2 is a shell pipe`},
		{spec: Spec{Command: "sr-no-such-check"}, wantErr: `--check-cmd: "sr-no-such-check": command not found in PATH`},
	}
	for _, tt := range tests {
		tt.spec.Timing = timing
		c, err := tt.spec.Checker(CommandOptions{Starter: r})
		verr := tt.spec.Validate()
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || verr == nil || verr.Error() != err.Error()):
			t.Errorf("%+v: Checker %v, Validate %v; want both %q", tt.spec, err, verr, tt.wantErr)
		case tt.wantErr == "" && (err != nil || verr != nil || c.String() != tt.want):
			t.Errorf("%+v: Checker %v, %v, Validate %v; want %q", tt.spec, c, err, verr, tt.want)
		}
	}
}

// End to end with real parts, on the real clock: a command check that
// hangs is killed at its timeout, through the Reaper, and counts as a
// failure.
func TestRunWithHangingCommandKillsItAtItsTimeout(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	c, err := Command(shell(`echo $$ >> pids; exec sleep 30`), CommandOptions{Starter: r, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core, logs := observer.New(zap.WarnLevel)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Checker: c, Timing: Timing{Interval: 400 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 1},
			Logger: zap.New(core)})
	}()
	testsupport.EventuallyTrue(t, waitLimit, "a failed check",
		func() bool { return logs.FilterMessage("service is not healthy yet").Len() > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e := logs.FilterMessage("service is not healthy yet").All()[0]
	if err := fmt.Sprint(e.ContextMap()["error"]); !strings.Contains(err, "no answer within 200ms (--check-timeout): command") ||
		!strings.Contains(err, "killed with its process group") {
		t.Errorf("error %q, want the command killed at the timeout", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	proctest.WaitDead(t, waitLimit, pids(t, string(b))...)
}
