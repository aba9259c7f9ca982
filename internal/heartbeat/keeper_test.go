package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// Every test runs in a synctest bubble, on a fake clock: timeouts pass at
// once and the times measured are exact. The real clock, sr-registry and
// etcd are for the end-to-end tests in cmd/sr-wrapper.

const ttl = 3 * time.Second

// scripted is a registry whose calls fail as a test script says, to drive
// the Keeper through failures a real registry produces only rarely.
type scripted struct {
	mu sync.Mutex
	// fail decides each call: what is "create", "register" or
	// "heartbeat", n counts those calls from 1.
	fail    func(what string, n int) error
	hang    string        // a call that waits for release, whatever its context says
	release chan struct{} // as the etcd client did while dialling
	n       map[string]int
	calls   []call // every call, in order
	events  chan string
	// registered is every service Register was given.
	registered []registry.Service
}

type call struct {
	what string
	at   time.Time
}

func newScripted() *scripted {
	return &scripted{n: map[string]int{}, release: make(chan struct{}), events: make(chan string, 1000)}
}

// do records a call of what, for session id, or its failure.
func (s *scripted) do(what, id string) error {
	if what == s.hang {
		<-s.release
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n[what]++
	e := what + " " + id
	err := error(nil)
	if s.fail != nil {
		err = s.fail(what, s.n[what])
	}
	if err != nil {
		e = what + "-failed"
	}
	s.calls = append(s.calls, call{e, time.Now()})
	select {
	case s.events <- e:
	default:
	}
	return err
}

func (s *scripted) CreateSession(ctx context.Context, opts registry.SessionOptions) (registry.Session, error) {
	s.mu.Lock()
	id := fmt.Sprintf("se%d", s.n["create"]+1)
	s.mu.Unlock()
	if err := s.do("create", id); err != nil {
		return nil, err
	}
	return &scriptedSession{r: s, id: id}, nil
}
func (s *scripted) Close() error   { return nil }
func (s *scripted) String() string { return "scripted" }

type scriptedSession struct {
	r  *scripted
	id string
}

func (ss *scriptedSession) ID() string         { return ss.id }
func (ss *scriptedSession) TTL() time.Duration { return ttl }
func (ss *scriptedSession) Heartbeat(ctx context.Context) error {
	return ss.r.do("heartbeat", ss.id)
}
func (ss *scriptedSession) Register(ctx context.Context, svc registry.Service) error {
	ss.r.mu.Lock()
	ss.r.registered = append(ss.r.registered, svc)
	ss.r.mu.Unlock()
	return ss.r.do("register", ss.id)
}
func (ss *scriptedSession) Deregister(ctx context.Context, id string) error {
	return ss.r.do("deregister", ss.id)
}
func (ss *scriptedSession) Close(ctx context.Context) error {
	return ss.r.do("close", ss.id)
}

// at returns the times of the calls so far whose names start with prefix.
func (s *scripted) at(prefix string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at []time.Time
	for _, c := range s.calls {
		if strings.HasPrefix(c.what, prefix) {
			at = append(at, c.at)
		}
	}
	return at
}

// waitFor reads the registry's calls until want comes; the deadline is on
// the fake clock.
func waitFor(t *testing.T, s *scripted, want string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case e := <-s.events:
			if e == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %q within a minute", want)
		}
	}
}

var errDown = errors.New("connection refused")

// only applies f to the calls of what, counted from 1; the others succeed.
func only(what string, f func(n int) error) func(string, int) error {
	return func(w string, n int) error {
		if w != what {
			return nil
		}
		return f(n)
	}
}

// firstN fails the first n calls with err.
func firstN(n int, err error) func(int) error {
	return func(i int) error {
		if i <= n {
			return err
		}
		return nil
	}
}

func permanent(msg string) error { return fmt.Errorf("%s: %w", msg, registry.ErrPermanent) }

// start starts a Keeper, which the end of the test closes, and passes its
// events on to the channel it returns.
func start(t *testing.T, cfg Config) (*Keeper, <-chan Event) {
	t.Helper()
	cfg.Service.ID, cfg.Session.TTL = "web1", ttl
	k := New(cfg)
	k.Start()
	events, stop := make(chan Event, 100), make(chan struct{})
	go func() {
		for {
			select {
			case e := <-k.Events():
				events <- e
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		if err := k.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		close(stop)
	})
	return k, events
}

// kinds returns the kinds of the events so far.
func kinds(events <-chan Event) []EventKind {
	synctest.Wait()
	var ks []EventKind
	for {
		select {
		case e := <-events:
			ks = append(ks, e.Kind)
		default:
			return ks
		}
	}
}

func TestRegistersAfterTransientFailures(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("create", firstN(3, errDown))
		begin := time.Now()
		start(t, Config{Registry: s})
		waitFor(t, s, "register se4")
		// Backoff from 100–300 ms, doubling: well within one timeout.
		if took := time.Since(begin); took < 700*time.Millisecond || took > ttl {
			t.Errorf("registered after %s of three failures, want 0.7s..%s", took, ttl)
		}
	})
}

func TestHeartbeatsComeEveryHalfTimeout(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		start(t, Config{Registry: s})
		for range 5 {
			waitFor(t, s, "heartbeat se1")
		}
		at := append(s.at("create se1"), s.at("heartbeat se1")...)
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < ttl*45/100 || gap > ttl/2 {
				t.Errorf("heartbeat %d came %s after the one before, want 45%%..50%% of the %s timeout", i, gap, ttl)
			}
		}
	})
}

func TestRecoversLostSession(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("heartbeat", firstN(1, fmt.Errorf("heartbeat: 404: %w", registry.ErrSessionLost)))
		_, events := start(t, Config{Registry: s})
		waitFor(t, s, "register se2")
		synctest.Wait()
		if got, want := kinds(events), []EventKind{Registered, SessionLost, Registered}; !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
	})
}

func TestHeartbeatRetriesAtOnceThenKeepsSession(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("heartbeat", firstN(2, errDown))
		start(t, Config{Registry: s})
		waitFor(t, s, "heartbeat se1")
		failed := s.at("heartbeat-failed")
		if gap := failed[1].Sub(failed[0]); gap != 0 {
			t.Errorf("the first failed heartbeat was retried after %s, want at once", gap)
		}
		if ok := s.at("heartbeat se1")[0]; ok.Sub(failed[1]) < 100*time.Millisecond {
			t.Errorf("the second failure was retried after %s, want a backoff", ok.Sub(failed[1]))
		}
		if n := len(s.at("create")); n != 1 {
			t.Fatalf("a heartbeat that recovered within the timeout made %d sessions, want 1", n)
		}
	})
}

// After an outage longer than the session's timeout, the registry's
// answer decides: a session it still holds is kept, one it lost replaced.
func TestAfterAnOutageTheRegistryDecides(t *testing.T) {
	for _, tt := range []struct {
		answer   error
		sessions int    // created
		in       string // the session registered in last
	}{
		{nil, 1, "se1"},
		{fmt.Errorf("404: %w", registry.ErrSessionLost), 2, "se2"},
	} {
		t.Run(fmt.Sprint(tt.answer), func(t *testing.T) {
			testsupport.Synctest(t, func(t *testing.T) {
				s := newScripted()
				begin := time.Now()
				s.fail = only("heartbeat", func(int) error {
					if time.Since(begin) < 5*time.Second {
						return errDown
					}
					return tt.answer
				})
				start(t, Config{Registry: s})
				time.Sleep(6 * time.Second)
				if n, closed, reg := len(s.at("create")), len(s.at("close")), len(s.at("register "+tt.in)); n != tt.sessions || closed != 0 || reg != 1 {
					t.Fatalf("after the outage: %d sessions, %d closed, registered %d times in %s; want %d, 0, 1",
						n, closed, reg, tt.in, tt.sessions)
				}
			})
		})
	}
}

func TestAbortGivesUpWhenHeartbeatsFailForTwoTimeouts(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("heartbeat", func(int) error { return errDown })
		_, events := start(t, Config{Registry: s, AbortOnFailure: true})
		waitFor(t, s, "register se1")
		registered := time.Now()
		if e := <-events; e.Kind != Registered {
			t.Fatalf("event %v, want registered", e)
		}
		if e := <-events; e.Kind != GaveUp || !errors.Is(e.Err, ErrGaveUp) {
			t.Fatalf("event %v, want GaveUp with ErrGaveUp", e)
		}
		// The session's timeout, then one more of trying to recover.
		if took := time.Since(registered); took != 2*ttl {
			t.Fatalf("gave up %s after the session was made, want 2 timeouts (%s)", took, 2*ttl)
		}
	})
}

func TestServiceHeldByAnotherSessionIsRetriedEverySecondUntilFree(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("register", firstN(5, fmt.Errorf("400 serviceWithThisIdExists: %w", registry.ErrServiceExists)))
		_, events := start(t, Config{Registry: s, AbortOnFailure: true})
		waitFor(t, s, "register se1")
		failed := s.at("register-failed")
		for i := 1; i < len(failed); i++ {
			if gap := failed[i].Sub(failed[i-1]); gap < 500*time.Millisecond || gap > 1500*time.Millisecond {
				t.Errorf("retry %d after %s, want about a second", i, gap)
			}
		}
		synctest.Wait()
		if got := kinds(events); !slices.Equal(got, []EventKind{Registered}) {
			t.Fatalf("events %v, want only registered", got)
		}
	})
}

// Each rule of giving up with AbortOnFailure, told apart by the attempts
// it took and the time: a permanent error ends at the first attempt,
// Retries after that many, and transient errors only after a whole
// session timeout of trying.
func TestGivingUp(t *testing.T) {
	tests := []struct {
		name        string
		retries     int
		call        string // that fails
		fail        func(int) error
		wantCalls   int           // CreateSession or Register calls; 0: not checked
		wantAfter   time.Duration // gave up exactly then; -1 within one timeout, -2 after it, -3 after heldBudget
		wantInError string
	}{
		{name: "permanent error", call: "create", fail: func(int) error { return permanent("403 forbiddenError") },
			wantCalls: 1, wantInError: "403 forbiddenError"},
		{name: "retries used up", retries: 3, call: "create", fail: func(int) error { return errDown },
			wantCalls: 3, wantAfter: -1, wantInError: "3 attempts in a row failed (--retries)"},
		{name: "one timeout without success", call: "create", fail: func(int) error { return errDown },
			wantAfter: ttl, wantInError: "no success within one heartbeat timeout"},
		{name: "register fails for one timeout", call: "register", fail: func(int) error { return errDown },
			wantAfter: ttl, wantInError: "register service"},
		{name: "id held for longer than any timeout", call: "register", fail: func(int) error { return registry.ErrServiceExists },
			wantAfter: heldBudget, wantInError: "still held by another session"},
		// --retries, when given, is the bound: the time limits are the
		// defaults that stand in for it, and must not cut it short.
		{name: "retries outlast one timeout", retries: 10, call: "create", fail: func(int) error { return errDown },
			wantCalls: 10, wantAfter: -2, wantInError: "10 attempts in a row failed (--retries)"},
		{name: "retries outlast the wait for a held id", retries: 40, call: "register", fail: func(int) error { return registry.ErrServiceExists },
			wantCalls: 40, wantAfter: -3, wantInError: "40 attempts in a row failed (--retries)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testsupport.Synctest(t, func(t *testing.T) {
				s := newScripted()
				s.fail = only(tt.call, tt.fail)
				begin := time.Now()
				_, events := start(t, Config{Registry: s, AbortOnFailure: true, Retries: tt.retries})
				e := <-events
				took := time.Since(begin)
				if e.Kind != GaveUp || !errors.Is(e.Err, ErrGaveUp) || !strings.Contains(e.Err.Error(), tt.wantInError) {
					t.Fatalf("event %v, want GaveUp with ErrGaveUp and %q", e, tt.wantInError)
				}
				switch {
				case tt.wantAfter == -1 && took >= ttl:
					t.Errorf("gave up after %s, want before one timeout (%s)", took, ttl)
				case tt.wantAfter == -2 && took <= ttl:
					t.Errorf("gave up after %s, want after one timeout (%s)", took, ttl)
				case tt.wantAfter == -3 && took <= heldBudget:
					t.Errorf("gave up after %s, want after %s", took, heldBudget)
				case tt.wantAfter >= 0 && took != tt.wantAfter:
					t.Errorf("gave up after %s, want %s", took, tt.wantAfter)
				}
				s.mu.Lock()
				calls := s.n[tt.call]
				s.mu.Unlock()
				if tt.wantCalls != 0 && calls != tt.wantCalls {
					t.Errorf("gave up after %d attempts, want %d", calls, tt.wantCalls)
				}
			})
		})
	}
}

func TestWithoutAbortNeverGivesUpOnPermanentErrors(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("create", firstN(10, permanent("400 limitReached")))
		start(t, Config{Registry: s})
		waitFor(t, s, "register se11")
	})
}

func TestRetriesWithoutAbortStopsTryingAndReportsNothing(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		s.fail = only("create", func(int) error { return errDown })
		_, events := start(t, Config{Registry: s, Retries: 2})
		time.Sleep(time.Hour)
		if n := len(s.at("create-failed")); n != 2 {
			t.Errorf("%d attempts in an hour with --retries 2, want 2", n)
		}
		if got := kinds(events); len(got) != 0 {
			t.Errorf("events %v without --abort-on-failure, want none", got)
		}
	})
}

func TestHealthAddsAndRemovesServiceKeepingSession(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		k, events := start(t, Config{Registry: s, StartUnhealthy: true})
		waitFor(t, s, "create se1")
		time.Sleep(time.Minute) // heartbeats, and nothing else
		if n := len(s.at("register se1")); n != 0 {
			t.Fatalf("registered %d times while unhealthy", n)
		}
		k.SetHealthy(true)
		waitFor(t, s, "register se1")
		k.SetHealthy(false)
		waitFor(t, s, "deregister se1")
		k.SetHealthy(true)
		waitFor(t, s, "register se1")
		synctest.Wait()
		if got, want := kinds(events), []EventKind{Registered, Deregistered, Registered}; !slices.Equal(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if n := len(s.at("create")); n != 1 {
			t.Fatalf("health changes made %d sessions, want 1", n)
		}
	})
}

func TestCloseEndsSession(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		s := newScripted()
		k, _ := start(t, Config{Registry: s})
		waitFor(t, s, "register se1")
		if err := k.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(s.at("close se1")); n != 1 {
			t.Fatalf("se1 closed %d times by Close, want 1", n)
		}
		if id := k.SessionID(); id != "" {
			t.Errorf("SessionID = %q after Close", id)
		}
	})
}

// Close is bounded by its context even when a call of the Keeper's
// ignores its own, and still ends a session it has.
func TestCloseIsBoundedWhenACallHangs(t *testing.T) {
	for _, hang := range []string{"create", "heartbeat"} {
		t.Run(hang, func(t *testing.T) {
			testsupport.Synctest(t, func(t *testing.T) {
				s := newScripted()
				s.hang = hang
				k, _ := start(t, Config{Registry: s})
				if hang == "heartbeat" {
					waitFor(t, s, "register se1")
				}
				time.Sleep(ttl) // in the hanging call by now
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				begin := time.Now()
				err := k.Close(ctx)
				if took := time.Since(begin); took > time.Second {
					t.Errorf("Close took %s with a 1s context", took)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Close = %v, want it to say the Keeper did not stop in time", err)
				}
				if n := len(s.at("close se1")); hang == "heartbeat" && n != 1 {
					t.Errorf("se1 closed %d times, want once although a heartbeat hangs", n)
				}
				close(s.release)
			})
		})
	}
}

// askedToWait is a transient failure whose reply said, with Retry-After,
// how long to wait (a tenant at its rate limit, a busy identity service).
type askedToWait time.Duration

func (a askedToWait) Error() string {
	return fmt.Sprintf("rate limited; retry after %s", time.Duration(a))
}
func (a askedToWait) RetryAfter() time.Duration { return time.Duration(a) }

// A retry never comes sooner than the registry asked, nor later than the
// longest retry interval however long it asked for: registration's is the
// session timeout, a heartbeat's a quarter of it and never past the
// session's deadline.
func TestRetriesWaitWhatTheRegistryAsks(t *testing.T) {
	tests := []struct {
		name  string
		what  string
		asked time.Duration
		gap   time.Duration // from the failure to the next call
	}{
		{"registration, two seconds", "create", 2 * time.Second, 2 * time.Second},
		{"registration, an hour", "create", time.Hour, ttl},
		{"heartbeat, half a second", "heartbeat", 500 * time.Millisecond, 500 * time.Millisecond},
		{"heartbeat, an hour", "heartbeat", time.Hour, ttl / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testsupport.Synctest(t, func(t *testing.T) {
				s := newScripted()
				s.fail = only(tt.what, firstN(1, askedToWait(tt.asked)))
				start(t, Config{Registry: s})
				waitFor(t, s, tt.what+" se"+map[string]string{"create": "2", "heartbeat": "1"}[tt.what])
				failed, next := s.at(tt.what + "-failed")[0], s.at(tt.what + " se")[0]
				if gap := next.Sub(failed); gap != tt.gap {
					t.Errorf("retried %s after the failure, want %s", gap, tt.gap)
				}
				if n := len(s.at("create se")); n != 1 {
					t.Errorf("%d sessions made, want 1", n)
				}
			})
		})
	}
}
