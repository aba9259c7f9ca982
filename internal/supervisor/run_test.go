package supervisor

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// givingUp is a Registration that fails for good when told to, as the
// heartbeat Keeper does with --abort-on-failure when the registry refuses
// the service.
type givingUp struct {
	now    chan struct{}
	closes atomic.Int32
}

func (g *givingUp) Run(ctx context.Context) error {
	select {
	case <-g.now:
		return errors.New("403 forbidden: for good")
	case <-ctx.Done():
		return nil
	}
}
func (g *givingUp) Close(context.Context) error {
	g.closes.Add(1)
	return nil
}
func (g *givingUp) SessionID() string { return "" }

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
	started := make(chan int, 1)
	stopping := make(chan struct{}, 2)
	reg := &givingUp{now: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
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
			Hooks: Hooks{
				Started:  func(pid int) { started <- pid },
				Stopping: func() { stopping <- struct{}{} },
			},
			Logger: zap.New(core),
		})
	}()
	pid := receiveWithin(t, started, "start of the child")
	if pid <= 0 {
		t.Fatalf("child pid %d", pid) // kill(2) would take it for a group, or everyone
	}
	var returned bool
	t.Cleanup(func() {
		if !returned { // else the pid may belong to someone else by now
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	pw.Close()
	if line, err := bufio.NewReader(pr).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("child's first line %q, %v", line, err)
	}
	close(reg.now)
	receiveWithin(t, stopping, "Stopping hook after the registration gave up")

	cancel()
	deadline := time.Now().Add(waitLimit)
	for logs.FilterMessage("asked to stop").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the end of the context was not noticed within %s", waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
