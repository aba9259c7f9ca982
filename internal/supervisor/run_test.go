package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/heartbeat"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// fakeRegistration reports the events a test sends it, as the heartbeat
// Keeper would.
type fakeRegistration struct {
	events chan heartbeat.Event
	closes atomic.Int32
	// hang, when set, makes Close wait for it, whatever its context says.
	hang chan struct{}
}

func newFakeRegistration() *fakeRegistration {
	return &fakeRegistration{events: make(chan heartbeat.Event)}
}

func (f *fakeRegistration) Start()                         {}
func (f *fakeRegistration) Events() <-chan heartbeat.Event { return f.events }
func (f *fakeRegistration) SessionID() string              { return "" }
func (f *fakeRegistration) Close(context.Context) error {
	f.closes.Add(1)
	if f.hang != nil {
		<-f.hang
	}
	return nil
}

func receiveWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %s", what, waitLimit)
		var zero T
		return zero
	}
}

// Stopping begins once. Here the registration gives up, which begins it,
// and then Run's context ends, which would begin it again: a second
// Stopping hook (a second STOPPING=1 to systemd), a second stop signal
// chosen, a drain armed again.
func TestRunStopsOnceWhenItsContextEndsWhileStopping(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	stopping := make(chan struct{}, 2)
	reg := newFakeRegistration()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close() // after the child has its own copy
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, Config{
			// Ignores TERM, so that it outlives the stop for as long as
			// the test needs.
			Child:         ChildSpec{Argv: fake("--ready", "--ignore-term"), Stdin: devNull(t), Stdout: pw},
			Registration:  reg,
			StopTimeout:   time.Hour,
			AbortExitCode: 100,
			Hooks:         Hooks{Stopping: func() { stopping <- struct{}{} }},
			Logger:        zap.New(core),
		})
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	var pid int
	if _, serr := fmt.Sscanf(line, "ready pid=%d", &pid); err != nil || serr != nil || pid <= 0 {
		t.Fatalf("child's first line %q, %v", line, err) // kill(2) would take pid 0 for a group
	}
	var returned bool
	t.Cleanup(func() {
		if !returned { // else the pid may belong to someone else by now
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	reg.events <- heartbeat.Event{Kind: heartbeat.GaveUp, Err: errors.New("403 forbidden: for good")}
	receiveWithin(t, stopping, "Stopping hook after the registration gave up")

	cancel()
	testsupport.EventuallyTrue(t, waitLimit, "the end of the context noticed",
		func() bool { return logs.FilterMessage("asked to stop").Len() > 0 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code := receiveWithin(t, done, "return of Run")
	returned = true
	if code != 100 {
		t.Errorf("Run = %d, want the abort exit code 100", code)
	}
	if n := len(stopping); n != 0 {
		t.Errorf("Stopping hook called %d more times after stopping had begun", n)
	}
	if n := reg.closes.Load(); n != 1 {
		t.Errorf("Registration.Close called %d times, want 1", n)
	}
	if n := logs.FilterMessage("asking the child to stop").Len(); n != 1 {
		t.Errorf("the child was asked to stop %d times, want 1", n)
	}
}

// The wrapper's exit after its child's is bounded by the deregistration
// timeout, even when deregistering does not end when told to.
func TestDeregistrationIsBoundedByItsTimeout(t *testing.T) {
	reg := newFakeRegistration()
	reg.hang = make(chan struct{})
	defer close(reg.hang)
	const deregTimeout = 200 * time.Millisecond
	core, logs := observer.New(zap.InfoLevel)
	done := make(chan int, 1)
	go func() {
		done <- Run(context.Background(), Config{
			Child:             ChildSpec{Argv: fake("--exit", "3"), Stdin: devNull(t)},
			Registration:      reg,
			DeregisterTimeout: deregTimeout,
			Logger:            zap.New(core),
		})
	}()
	select {
	case code := <-done:
		if code != 3 {
			t.Errorf("Run = %d, want the child's 3", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Run had not returned 5s after its child exited, with a %s deregistration timeout", deregTimeout)
	}
	if n := logs.FilterMessage("deregistration failed; the session will expire by itself").Len(); n != 1 {
		t.Errorf("%d lines say the deregistration failed, want 1", n)
	}
}

var kindNames = map[heartbeat.EventKind]string{
	heartbeat.Registered: "registered", heartbeat.Deregistered: "deregistered", heartbeat.SessionLost: "session lost",
}

// What systemd is told follows the registration in the loop's order:
// READY once, at the first registration or after ReadyTimeout, later
// changes as they come, and nothing after STOPPING, not even a
// registration that completes while the wrapper stops.
func TestHooksFollowTheRegistrationUntilStopping(t *testing.T) {
	tests := []struct {
		name         string
		readyTimeout time.Duration
		send         []heartbeat.EventKind // before the stop
		want         []string
	}{
		{"ready when registered", 0, []heartbeat.EventKind{heartbeat.Registered, heartbeat.SessionLost, heartbeat.Registered},
			[]string{"ready true", "session lost", "registered", "stopping"}},
		{"ready after the timeout", 50 * time.Millisecond, nil, []string{"ready false", "stopping"}},
		{"registered after the timeout", 50 * time.Millisecond, []heartbeat.EventKind{heartbeat.Registered},
			[]string{"ready false", "registered", "stopping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFakeRegistration()
			told := make(chan string, 10)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			go func() {
				done <- Run(ctx, Config{
					// Outlives the stop signal until the stop timeout, so
					// that the loop still runs after Stopping.
					Child:        ChildSpec{Argv: fake("--ignore-term"), Stdin: devNull(t)},
					Registration: reg,
					StopTimeout:  300 * time.Millisecond,
					ReadyTimeout: tt.readyTimeout,
					Hooks: Hooks{
						Ready:        func(registered bool) { told <- fmt.Sprint("ready ", registered) },
						Registration: func(e heartbeat.Event) { told <- kindNames[e.Kind] },
						Stopping:     func() { told <- "stopping" },
					},
				})
			}()
			var got []string
			if tt.readyTimeout > 0 {
				got = append(got, receiveWithin(t, told, "READY after the timeout"))
			}
			for _, k := range tt.send {
				reg.events <- heartbeat.Event{Kind: k}
				got = append(got, receiveWithin(t, told, "the hook for "+kindNames[k]))
			}
			cancel()
			got = append(got, receiveWithin(t, told, "Stopping"))
			// Still read while stopping, never passed on.
			reg.events <- heartbeat.Event{Kind: heartbeat.Registered}
			receiveWithin(t, done, "return of Run")
			close(told)
			for s := range told {
				got = append(got, s)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("hooks %q, want %q", got, tt.want)
			}
		})
	}
}

// The watchdog is fed from the run loop, so that a loop that is stuck
// (here in a hook that does not return) starves it, and only while the
// child runs: not while what it left behind is stopped.
func TestWatchdogIsFedByTheLoopWhileTheChildRuns(t *testing.T) {
	const period = 10 * time.Millisecond
	t.Run("a stuck loop stops the pings", func(t *testing.T) {
		reg := newFakeRegistration()
		pings := make(chan struct{}, 1000)
		inReady, release := make(chan struct{}), make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan int, 1)
		go func() {
			done <- Run(ctx, Config{
				Child:          ChildSpec{Argv: fake("--exit-on-term", "0"), Stdin: devNull(t)},
				Registration:   reg,
				WatchdogPeriod: period,
				Hooks: Hooks{
					Watchdog: func() { pings <- struct{}{} },
					Ready:    func(bool) { close(inReady); <-release },
				},
			})
		}()
		for range 3 {
			receiveWithin(t, pings, "a watchdog ping")
		}
		reg.events <- heartbeat.Event{Kind: heartbeat.Registered}
		receiveWithin(t, inReady, "the Ready hook")
		for len(pings) > 0 {
			<-pings
		}
		select {
		case <-pings:
			t.Fatal("a ping while the loop is stuck in a hook")
		case <-time.After(20 * period):
		}
		close(release)
		receiveWithin(t, pings, "a ping once the loop turns again")
		cancel()
		receiveWithin(t, done, "return of Run")
	})

	t.Run("none once the child has exited", func(t *testing.T) {
		var mu sync.Mutex
		var told []string
		note := func(s string) {
			mu.Lock()
			told = append(told, s)
			mu.Unlock()
		}
		done := make(chan int, 1)
		go func() {
			done <- Run(context.Background(), Config{
				// Its leftover ignores TERM and is killed after the stop
				// timeout, 30 periods after the child's exit.
				Child:          ChildSpec{Argv: []string{"sh", "-c", "(trap '' TERM; exec sleep 1000) & sleep 0.1"}, Stdin: devNull(t)},
				Registration:   newFakeRegistration(),
				StopTimeout:    30 * period,
				WatchdogPeriod: period,
				Hooks:          Hooks{Watchdog: func() { note("ping") }, Stopping: func() { note("stopping") }},
			})
		}()
		receiveWithin(t, done, "return of Run")
		mu.Lock()
		defer mu.Unlock()
		i := slices.Index(told, "stopping")
		if i < 1 || slices.Contains(told[i:], "ping") {
			t.Errorf("hooks %q; want pings while the child ran, none after its exit (stopping)", told)
		}
	})
}
