// Package testsupport is what the repository's tests share beyond their
// own packages: polling a state that sends no event, running time-driven
// code on testing/synctest's fake clock, and skipping a test that the
// machine cannot run, which CI turns into a failure.
//
// It also holds the small pieces several test packages need alike (a
// Buffer that a process writes its log to, the module root).
//
// It is for tests only; no production package imports it.
package testsupport

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// StrictEnv names the variable that, set to 1, makes SkipUnsupported fail
// instead of skip. .ci/run sets it, so that a CI machine without, say,
// PID namespaces cannot silently stop testing PID 1 reaping.
const StrictEnv = "SR_TEST_STRICT"

// SkipUnsupported skips t because the machine lacks something the test
// needs: root, a PID namespace, a pseudo-terminal, a program such as
// supervisord. Under SR_TEST_STRICT=1 it fails t instead.
func SkipUnsupported(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(StrictEnv) == "1" {
		t.Fatalf("%s (%s=1: a test this machine cannot run fails)", msg, StrictEnv)
		return
	}
	t.Skip(msg)
}

// Poll calls cond until it returns nil, or until within has passed, and
// returns cond's last error (nil once it succeeded). It is for states that
// send no event (a process table, a registry's contents); the pause
// between calls grows from a millisecond to 50 ms. Helper processes
// without a testing.T use it directly; tests use Eventually.
func Poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// Eventually fails t unless cond returns nil within the given time; the
// failure names what was awaited and cond's last error.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(within, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, within, err)
	}
}

// EventuallyTrue is Eventually for a condition without an error to tell.
func EventuallyTrue(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, within, what, func() error {
		if !cond() {
			return errors.New("still false")
		}
		return nil
	})
}

// Synctest runs f in a testing/synctest bubble, where time moves only
// when every goroutine of the bubble waits, so timeouts of seconds pass in
// microseconds and cannot flake on a busy machine. A goroutine that spins
// instead of waiting would keep the fake clock still forever: if the
// bubble has not finished within a few minutes of real time, the test
// binary panics, naming the test.
func Synctest(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	name := t.Name()
	watchdog := time.AfterFunc(3*time.Minute, func() {
		panic(fmt.Sprintf("%s: its synctest bubble did not come to rest within 3 minutes: a goroutine spins", name))
	})
	defer watchdog.Stop()
	synctest.Test(t, f)
}
