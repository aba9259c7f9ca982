package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

// StopResult tells what StopChild did and how the child ended.
type StopResult struct {
	// Killed is set when the child outlived the timeout and SIGKILL went to
	// its process group.
	Killed bool
	// Exited is set when the child has exited; Status is then valid.
	Exited bool
	Status signals.ExitStatus
	// Waited is the time from the stop signal to the child's exit (or to
	// the return, when it did not exit).
	Waited time.Duration
}

// StopChild asks the child to stop with sig (to its process group with
// toGroup) and waits for it to exit. If it is still running after timeout
// (at once for timeout <= 0), it sends SIGKILL to the child's whole process
// group, then waits for the exit. It returns as soon as the child has
// exited: there is no unconditional sleep.
//
// Right after sig it sends SIGCONT to the same target, as systemd does, so
// that a stopped child (after a forwarded TSTP) wakes up to handle sig
// instead of sitting out the timeout; not when sig is itself CONT or a stop
// signal (STOP TSTP TTIN TTOU), which the CONT would cancel.
//
// If ctx ends first, StopChild returns what happened so far and an error
// wrapping ctx.Err(); the child may still be running. Bound ctx: a process
// in uninterruptible sleep (a hung NFS mount) outlives even SIGKILL for a
// while. It leaves alone what remains of the group once the child itself
// has exited: Run stops that (KillGroup).
func StopChild(ctx context.Context, c *Child, sig syscall.Signal, toGroup bool, timeout time.Duration) (StopResult, error) {
	var res StopResult
	if st, ok := c.ExitStatus(); ok {
		res.Exited, res.Status = true, st
		return res, nil
	}
	start := time.Now()
	finish := func() (StopResult, error) {
		res.Waited = time.Since(start)
		res.Status, res.Exited = c.ExitStatus()
		return res, nil
	}

	if err := c.Signal(sig, toGroup); err != nil {
		if !errors.Is(err, os.ErrProcessDone) {
			return res, fmt.Errorf("stop child %d: %w", c.Pid(), err)
		}
	} else {
		switch sig {
		case syscall.SIGCONT, syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
			// A SIGCONT would discard a pending stop signal, as the kernel
			// discards either kind when the other is generated.
		default:
			// Best effort: the stop signal is what matters.
			_ = c.Signal(syscall.SIGCONT, toGroup)
		}
	}

	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-c.Done():
			return finish()
		case <-timer.C:
		case <-ctx.Done():
			res.Waited = time.Since(start)
			return res, fmt.Errorf("stop child %d with %s: %w", c.Pid(), signals.Name(sig), ctx.Err())
		}
	}

	if err := c.KillGroup(); err != nil {
		res.Waited = time.Since(start)
		return res, fmt.Errorf("stop child %d after %v: %w", c.Pid(), timeout, err)
	}
	res.Killed = true
	select {
	case <-c.Done():
		return finish()
	case <-ctx.Done():
		res.Waited = time.Since(start)
		return res, fmt.Errorf("stop child %d: wait after SIGKILL: %w", c.Pid(), ctx.Err())
	}
}
