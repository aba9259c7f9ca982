package heartbeat

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
)

// TestMain runs the parallel tests all at once unless -parallel says
// otherwise: they wait on the Keeper's timers against a fake registry,
// not on the CPU, and GOMAXPROCS at a time (the default) on a small
// machine would run them almost one after the other.
// TestMain lets the package's tests run side by side beyond GOMAXPROCS:
// they spend their time waiting out real 3 s session timeouts, not on CPU.
// An explicit -parallel still wins.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "16")
	}
	os.Exit(m.Run())
}

// scripted is a registry whose calls fail as a test script says, to drive
// the Keeper through failures a real registry produces only rarely. End to
// end behaviour against the real sr-registry is tested in cmd/sr-wrapper.
type scripted struct {
	mu       sync.Mutex
	ttl      time.Duration
	createFn func(n int) error // n counts CreateSession calls from 1
	regFn    func(n int) error
	hbFn     func(n int) error
	creates  int
	regs     int
	hbs      int
	deregs   int
	closed   []string
	holder   string // session holding the service, "" if none
	events   chan string
}

func (s *scripted) record(e string) {
	select {
	case s.events <- e:
	default:
	}
}

func (s *scripted) CreateSession(ctx context.Context, opts registry.SessionOptions) (registry.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates++
	if s.createFn != nil {
		if err := s.createFn(s.creates); err != nil {
			s.record("create-failed")
			return nil, err
		}
	}
	id := fmt.Sprintf("se%d", s.creates)
	s.record("create " + id)
	return &scriptedSession{r: s, id: id}, nil
}
func (s *scripted) Close() error   { return nil }
func (s *scripted) String() string { return "scripted" }

type scriptedSession struct {
	r  *scripted
	id string
}

func (ss *scriptedSession) ID() string         { return ss.id }
func (ss *scriptedSession) TTL() time.Duration { return ss.r.ttl }
func (ss *scriptedSession) Heartbeat(ctx context.Context) error {
	s := ss.r
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hbs++
	if s.hbFn != nil {
		if err := s.hbFn(s.hbs); err != nil {
			s.record("heartbeat-failed")
			return err
		}
	}
	s.record("heartbeat " + ss.id)
	return nil
}
func (ss *scriptedSession) Register(ctx context.Context, svc registry.Service) error {
	s := ss.r
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regs++
	if s.regFn != nil {
		if err := s.regFn(s.regs); err != nil {
			s.record("register-failed")
			return err
		}
	}
	s.holder = ss.id
	s.record("register " + ss.id)
	return nil
}
func (ss *scriptedSession) Deregister(ctx context.Context, id string) error {
	s := ss.r
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deregs++
	s.holder = ""
	s.record("deregister " + ss.id)
	return nil
}
func (ss *scriptedSession) Close(ctx context.Context) error {
	s := ss.r
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = append(s.closed, ss.id)
	if s.holder == ss.id {
		s.holder = ""
	}
	s.record("close " + ss.id)
	return nil
}

func newScripted(ttl time.Duration) *scripted {
	return &scripted{ttl: ttl, events: make(chan string, 1000)}
}

// waitFor reads events until want arrives, failing after a deadline.
func waitFor(t *testing.T, s *scripted, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-s.events:
			if e == want {
				return
			}
		case <-deadline:
			t.Fatalf("event %q did not happen", want)
		}
	}
}

var errDown = errors.New("connection refused")

func permanent(msg string) error { return fmt.Errorf("%s: %w", msg, registry.ErrPermanent) }

func runKeeper(t *testing.T, cfg Config) (k *Keeper, done <-chan error, cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	k = New(cfg)
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() { ch <- k.Run(ctx); close(finished) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return k, ch, stop
}

func TestRegistersAfterTransientFailures(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	s.createFn = func(n int) error {
		if n <= 3 {
			return errDown
		}
		return nil
	}
	runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}})
	waitFor(t, s, "register se4")
}

// eventsOf returns an OnEvent that passes the Keeper's events on, and the
// channel they come out of.
func eventsOf() (func(Event), <-chan Event) {
	ch := make(chan Event, 100)
	return func(e Event) {
		select {
		case ch <- e:
		default: // OnEvent must not block; a test never needs this many
		}
	}, ch
}

// nextEvents reads n events, failing after a deadline.
func nextEvents(t *testing.T, ch <-chan Event, n int) []Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	var got []Event
	for len(got) < n {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-deadline:
			t.Fatalf("events %v, want %d", got, n)
		}
	}
	return got
}

func TestRecoversLostSession(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	s.hbFn = func(n int) error {
		if n == 1 {
			return fmt.Errorf("heartbeat: 404: %w", registry.ErrSessionLost)
		}
		return nil
	}
	onEvent, events := eventsOf()
	runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second},
		OnEvent: onEvent})
	got := nextEvents(t, events, 3)
	want := []Event{EventRegistered, EventSessionLost, EventRegistered}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	waitFor(t, s, "register se2")
}

func TestHeartbeatRetriesAtOnceThenKeepsSession(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	var failedAt []time.Time // under s.mu, as hbFn runs
	s.hbFn = func(n int) error {
		if n == 1 || n == 2 {
			failedAt = append(failedAt, time.Now())
			return errDown
		}
		return nil
	}
	runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}})
	waitFor(t, s, "heartbeat se1")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creates != 1 {
		t.Fatalf("a heartbeat that recovered within the timeout made %d sessions, want 1", s.creates)
	}
	// Generous for -race on a loaded machine; a backoff would be 100 ms
	// at the least.
	if gap := failedAt[1].Sub(failedAt[0]); gap > 200*time.Millisecond {
		t.Errorf("the first failed heartbeat was retried after %s, want at once", gap)
	}
}

func TestSessionThatSurvivedAnOutageIsKept(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	start := time.Now()
	s.hbFn = func(n int) error {
		if time.Since(start) < 5*time.Second { // longer than the timeout
			return errDown
		}
		return nil
	}
	runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}})
	waitFor(t, s, "register se1")
	waitFor(t, s, "heartbeat se1")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creates != 1 || len(s.closed) != 0 {
		t.Fatalf("after the registry came back holding the session: %d sessions created, %v closed; want 1 and none",
			s.creates, s.closed)
	}
}

func TestSessionLostAfterAnOutageIsReplaced(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	start := time.Now()
	s.hbFn = func(n int) error {
		switch {
		case time.Since(start) < 4*time.Second:
			return errDown
		case n < 100:
			return fmt.Errorf("404: %w", registry.ErrSessionLost)
		}
		return nil
	}
	runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}})
	waitFor(t, s, "register se1")
	waitFor(t, s, "register se2")
}

func TestAbortGivesUpWhenHeartbeatsFailForTwoTimeouts(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	s.hbFn = func(n int) error { return errDown }
	_, done, _ := runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"},
		Session: registry.SessionOptions{TTL: 3 * time.Second}, AbortOnFailure: true})
	waitFor(t, s, "register se1")
	registered := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, ErrGaveUp) {
			t.Fatalf("Run = %v, want ErrGaveUp", err)
		}
		if took := time.Since(registered); took < 6*time.Second {
			t.Fatalf("gave up after %s, before the session timeout plus one timeout of recovery (6s)", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not give up")
	}
}

func TestServiceExistsRetriesUntilFree(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	s.regFn = func(n int) error {
		if n <= 2 {
			return fmt.Errorf("400 serviceWithThisIdExists: %w", registry.ErrServiceExists)
		}
		return nil
	}
	_, done, _ := runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}, AbortOnFailure: true})
	waitFor(t, s, "register se1")
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
}

// Each rule of giving up with AbortOnFailure, told apart by the attempts
// it took and the time: a permanent error ends at the first attempt,
// Retries after that many, and transient errors only after a whole
// session timeout of trying.
func TestGivingUp(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	tests := []struct {
		name        string
		retries     int
		createFn    func(int) error
		wantCreates int  // 0: as many as fit in the timeout
		wantTimeout bool // gave up only after ttl of trying
	}{
		{name: "permanent error", createFn: func(int) error { return permanent("403 forbiddenError") }, wantCreates: 1},
		{name: "retries used up", retries: 3, createFn: func(int) error { return errDown }, wantCreates: 3},
		{name: "one timeout without success", createFn: func(int) error { return errDown }, wantTimeout: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newScripted(ttl)
			s.createFn = tt.createFn
			start := time.Now()
			_, done, _ := runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"},
				Session: registry.SessionOptions{TTL: ttl}, AbortOnFailure: true, Retries: tt.retries})
			select {
			case err := <-done:
				if !errors.Is(err, ErrGaveUp) {
					t.Fatalf("Run = %v, want ErrGaveUp", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not give up")
			}
			took := time.Since(start)
			s.mu.Lock()
			creates := s.creates
			s.mu.Unlock()
			switch {
			case tt.wantTimeout && took < ttl:
				t.Errorf("gave up after %s and %d attempts, before one session timeout (%s) of trying", took, creates, ttl)
			case !tt.wantTimeout && took >= ttl:
				t.Errorf("gave up after %s, not before the session timeout (%s)", took, ttl)
			}
			if tt.wantCreates != 0 && creates != tt.wantCreates {
				t.Errorf("gave up after %d attempts, want %d", creates, tt.wantCreates)
			}
		})
	}
}

func TestWithoutAbortNeverGivesUpOnPermanentErrors(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	s.createFn = func(n int) error {
		if n <= 3 {
			return permanent("400 limitReached")
		}
		return nil
	}
	runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}})
	waitFor(t, s, "register se4")
}

func TestRetriesWithoutAbortStopsTryingButRunKeepsGoing(t *testing.T) {
	s := newScripted(3 * time.Second)
	s.createFn = func(int) error { return errDown }
	_, done, cancel := runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}, Retries: 2})
	waitFor(t, s, "create-failed")
	waitFor(t, s, "create-failed")
	cpuBefore := processCPU(t)
	// The quiet period is the behaviour under test: longer than the
	// largest backoff step so far, nothing may happen in it.
	quiet := 1500 * time.Millisecond
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before cancel", err)
	case e := <-s.events:
		t.Fatalf("unexpected %q after giving up", e)
	case <-time.After(quiet):
	}
	// A Keeper that gave up must sleep, not spin: a busy loop would burn
	// a whole CPU for the quiet period.
	if used := processCPU(t) - cpuBefore; used > quiet/3 {
		t.Errorf("the test process used %s of CPU in %s after the Keeper gave up: Run is spinning", used, quiet)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
}

// processCPU is the CPU time this process has used so far.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestHealthAddsAndRemovesServiceKeepingSession(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	k, _, _ := runKeeper(t, Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}, StartUnhealthy: true})
	waitFor(t, s, "create se1")
	k.SetHealthy(true)
	waitFor(t, s, "register se1")
	k.SetHealthy(false)
	waitFor(t, s, "deregister se1")
	k.SetHealthy(true)
	waitFor(t, s, "register se1")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creates != 1 {
		t.Fatalf("health changes made %d sessions, want 1", s.creates)
	}
}

func TestCloseEndsSession(t *testing.T) {
	t.Parallel()
	s := newScripted(3 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	k := New(Config{Registry: s, Service: registry.Service{ID: "web1"}, Session: registry.SessionOptions{TTL: 3 * time.Second}})
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	waitFor(t, s, "register se1")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := k.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.holder != "" {
		t.Fatalf("service still held by %s after Close", s.holder)
	}
}
