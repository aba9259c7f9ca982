package health

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
)

// scripted is a Checker that plays a script of results, '+' for a pass
// and '-' for a failure ("fail N", N counting from 1), and ends the Run
// when the script is over. It fails the test if two checks overlap.
type scripted struct {
	t       *testing.T
	script  string
	endRun  context.CancelFunc
	calls   atomic.Int32
	running atomic.Int32
}

func (s *scripted) String() string { return "script " + s.script }

func (s *scripted) Check(ctx context.Context) error {
	if s.running.Add(1) != 1 {
		s.t.Error("two checks overlap")
	}
	defer s.running.Add(-1)
	i := int(s.calls.Add(1)) - 1
	if i >= len(s.script) {
		s.endRun()
		return ctx.Err()
	}
	if s.script[i] == '-' {
		return fmt.Errorf("fail %d", i+1)
	}
	return nil
}

type change struct {
	healthy bool
	err     string
}

func (c change) String() string {
	if c.healthy {
		return "healthy"
	}
	return "unhealthy(" + c.err + ")"
}

// recorder collects OnChange calls.
type recorder struct {
	mu      sync.Mutex
	changes []change
	notify  chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 100)} }

func (r *recorder) onChange(healthy bool, err error) {
	c := change{healthy: healthy}
	if err != nil {
		c.err = err.Error()
	}
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
	r.notify <- struct{}{}
}

func (r *recorder) get() []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// waitChanges waits until at least n changes were reported.
func (r *recorder) waitChanges(t *testing.T, n int) []change {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		if c := r.get(); len(c) >= n {
			return c
		}
		select {
		case <-r.notify:
		case <-timeout:
			t.Fatalf("%d changes within %s (%v), want %d", len(r.get()), waitLimit, r.get(), n)
		}
	}
}

// runScript runs the loop of Run with a timeout far beyond the interval,
// which Validate would refuse: it keeps a slow scheduler from turning
// a scripted result into a timeout, while checks still come every
// millisecond.
func runScript(t *testing.T, ctx context.Context, cfg Config) {
	t.Helper()
	cfg.Interval, cfg.Timeout = time.Millisecond, time.Hour
	done := make(chan struct{})
	go func() {
		defer close(done)
		newRunner(cfg).run(ctx)
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatalf("the script did not end within %s", waitLimit)
	}
}

// runAsync starts Run and returns a function that waits for its end.
func runAsync(t *testing.T, ctx context.Context, cfg Config) (wait func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	return func() {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatalf("Run did not return within %s", waitLimit)
		}
	}
}

func TestRunRiseAndFall(t *testing.T) {
	up := change{healthy: true}
	down := func(n int) change { return change{err: fmt.Sprintf("fail %d", n)} }
	tests := []struct {
		name       string
		rise, fall int
		script     string
		want       []change
	}{
		{"one pass is enough by default", 1, 3, "+", []change{up}},
		{"starts unhealthy and reports nothing while it stays so", 1, 3, "------", nil},
		{"falls after fall failures in a row", 1, 3, "+---", []change{up, down(4)}},
		{"failures below fall do not count", 1, 3, "+--+--+--", []change{up}},
		{"back up after a fall", 1, 3, "+---+", []change{up, down(4), up}},
		{"rise 2", 2, 1, "+-++-", []change{up, down(5)}},
		{"a failure resets the rise", 3, 2, "++-+++--+++", []change{up, down(8), up}},
		{"a pass resets the fall", 1, 2, "+-+-+--", []change{up, down(7)}},
		{"fall 1 flaps at every change", 1, 1, "+-+-", []change{up, down(2), up, down(4)}},
		{"rise and fall 5", 5, 5, "++++-+++++----+-----", []change{up, down(20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec := newRecorder()
			checker := &scripted{t: t, script: tt.script, endRun: cancel}
			runScript(t, ctx, Config{Checker: checker, Rise: tt.rise, Fall: tt.fall, OnChange: rec.onChange})
			if got := rec.get(); !slices.Equal(got, tt.want) {
				t.Errorf("script %s (rise %d, fall %d): changes %v, want %v", tt.script, tt.rise, tt.fall, got, tt.want)
			}
			if n := int(checker.calls.Load()); n != len(tt.script)+1 {
				t.Errorf("%d checks for a script of %d", n, len(tt.script))
			}
		})
	}
}

func TestRunLogsEachTransition(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core, logs := observer.New(zap.InfoLevel)
	checker := &scripted{t: t, script: "---+--", endRun: cancel}
	runScript(t, ctx, Config{Checker: checker, Rise: 1, Fall: 2, Logger: zap.New(core)})
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
		if e.ContextMap()["check"] != "script ---+--" {
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
}

func TestRunChecksAtOnceThenEveryInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var times []time.Time
	checked := make(chan struct{}, 10)
	checker := checkFunc(func(context.Context) error {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		checked <- struct{}{}
		return nil
	})
	const interval = 200 * time.Millisecond
	start := time.Now()
	wait := runAsync(t, ctx, Config{Checker: checker, Interval: interval, Timeout: interval / 2, Rise: 1, Fall: 1})
	for range 3 {
		select {
		case <-checked:
		case <-time.After(waitLimit):
			t.Fatal("no check")
		}
	}
	cancel()
	wait()
	mu.Lock()
	defer mu.Unlock()
	if first := times[0].Sub(start); first > interval*3/4 {
		t.Errorf("first check after %s, want at once", first)
	}
	// A ticker may be late under load, never early.
	for i := 1; i < 3; i++ {
		if at := times[i].Sub(start); at < time.Duration(i)*interval {
			t.Errorf("check %d after %s, want no sooner than %s", i+1, at, time.Duration(i)*interval)
		}
	}
}

type checkFunc func(context.Context) error

func (f checkFunc) Check(ctx context.Context) error { return f(ctx) }
func (f checkFunc) String() string                  { return "func" }

// A check that honours its context but never answers fails at its
// timeout, and each one counts.
func TestRunHangingCheckFailsAtItsTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	checker := checkFunc(func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			return nil
		}
		<-ctx.Done()
		return fmt.Errorf("GET http://x/: %w", ctx.Err())
	})
	rec := newRecorder()
	wait := runAsync(t, ctx, Config{Checker: checker, Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond,
		Rise: 1, Fall: 2, OnChange: rec.onChange})
	got := rec.waitChanges(t, 2)
	cancel()
	wait()
	if !got[0].healthy || got[1].healthy {
		t.Fatalf("changes %v, want healthy then unhealthy", got)
	}
	if want := "no answer within 100ms (--check-timeout): GET http://x/: context deadline exceeded"; got[1].err != want {
		t.Errorf("error %q, want %q", got[1].err, want)
	}
}

// A check that ignores its context never blocks Run: it counts as failed
// at its timeout and at each interval while it still runs, and no other
// check starts beside it.
func TestRunCheckThatIgnoresItsContextNeverBlocksNorOverlaps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var calls, running atomic.Int32
	checker := checkFunc(func(context.Context) error {
		if running.Add(1) != 1 {
			t.Error("two checks overlap")
		}
		defer running.Add(-1)
		if calls.Add(1) == 1 {
			return nil
		}
		<-release
		return nil
	})
	rec := newRecorder()
	wait := runAsync(t, ctx, Config{Checker: checker, Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond,
		Rise: 1, Fall: 3, OnChange: rec.onChange})
	got := rec.waitChanges(t, 2)
	if !got[0].healthy || got[1].healthy || !strings.Contains(got[1].err, "has still not returned") {
		t.Fatalf("changes %v, want healthy, then unhealthy with a check that has not returned", got)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d checks started while the second hung, want 2", n)
	}
	// Once it returns, checks go on, and pass.
	close(release)
	got = rec.waitChanges(t, 3)
	if !got[2].healthy {
		t.Fatalf("changes %v, want healthy again", got)
	}
	cancel()
	wait()
}

func TestRunReturnsWhenItsContextEndsAndCancelsTheCheck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var cancelled atomic.Bool
	checker := checkFunc(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		cancelled.Store(true)
		return ctx.Err()
	})
	rec := newRecorder()
	wait := runAsync(t, ctx, Config{Checker: checker, Interval: time.Hour, Timeout: time.Hour, Rise: 1, Fall: 1, OnChange: rec.onChange})
	<-started
	cancel()
	wait()
	if !cancelled.Load() {
		t.Error("Run returned before the check in flight did")
	}
	if got := rec.get(); len(got) != 0 {
		t.Errorf("changes %v after the context ended, want none", got)
	}
}

// End to end with real parts: a TCP check against a listener that opens
// late and closes.
func TestRunWithTCPCheckFollowsTheListener(t *testing.T) {
	addr := freeAddr(t)
	c, err := TCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := runAsync(t, ctx, Config{Checker: c, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond,
		Rise: 2, Fall: 2, OnChange: rec.onChange})
	l := listenOn(t, addr)
	go acceptAll(l)
	rec.waitChanges(t, 1)
	l.Close()
	got := rec.waitChanges(t, 2)
	cancel()
	wait()
	if !got[0].healthy || got[1].healthy || !strings.Contains(got[1].err, "connection refused") {
		t.Fatalf("changes %v, want healthy, then unhealthy with connection refused", got)
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	ok := Config{Checker: checkFunc(nil), Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall}
	if err := Validate(ok); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		change  func(*Config)
		wantErr string
	}{
		{func(c *Config) { c.Checker = nil }, "no health check given: use --check-http, --check-tcp or --check-cmd"},
		{func(c *Config) { c.Interval = 0 }, "--check-interval must be more than 0, not 0s"},
		{func(c *Config) { c.Interval = -time.Second; c.Timeout = -2 * time.Second }, "--check-interval must be more than 0, not -1s"},
		{func(c *Config) { c.Timeout = 0 }, "--check-timeout must be more than 0, not 0s"},
		{func(c *Config) { c.Timeout = 6 * time.Second }, "--check-timeout (6s) must not be longer than --check-interval (5s), so that checks never overlap"},
		{func(c *Config) { c.Rise = 0 }, "--check-rise must be at least 1, not 0"},
		{func(c *Config) { c.Fall = -1 }, "--check-fall must be at least 1, not -1"},
	}
	for _, tt := range tests {
		cfg := ok
		tt.change(&cfg)
		err := Validate(cfg)
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("Validate: %v, want %q", err, tt.wantErr)
		}
		if runErr := Run(context.Background(), cfg); runErr == nil || runErr.Error() != tt.wantErr {
			t.Errorf("Run: %v, want Validate's error %q", runErr, tt.wantErr)
		}
	}
	equal := ok
	equal.Timeout = equal.Interval
	if err := Validate(equal); err != nil {
		t.Errorf("timeout equal to the interval: %v", err)
	}
}

// End to end with real parts: an HTTP check against a program that
// answers 200, then 500, then 200 again.
func TestRunWithHTTPCheckFollowsTheStatus(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	c, err := HTTP(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := runAsync(t, ctx, Config{Checker: c, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond,
		Rise: 1, Fall: 2, OnChange: rec.onChange})
	rec.waitChanges(t, 1)
	status.Store(http.StatusInternalServerError)
	rec.waitChanges(t, 2)
	status.Store(http.StatusOK)
	got := rec.waitChanges(t, 3)
	cancel()
	wait()
	want := []change{{healthy: true}, {err: "GET " + srv.URL + "/health: 500 Internal Server Error"}, {healthy: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
}

// End to end with real parts: a command check that hangs is killed at
// its timeout, through the Reaper, and counts as a failure.
func TestRunWithHangingCommandKillsItAtItsTimeout(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	c, err := Command(Shell(`echo $$ >> pids; exec sleep 30`), CommandOptions{Starter: r, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	core, logs := observer.New(zap.WarnLevel)
	wait := runAsync(t, ctx, Config{Checker: c, Interval: 400 * time.Millisecond, Timeout: 200 * time.Millisecond,
		Rise: 1, Fall: 1, Logger: zap.New(core)})
	deadline := time.Now().Add(waitLimit)
	for logs.FilterMessage("service is not healthy yet").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no failure within %s: %v", waitLimit, logs.All())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wait()
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
