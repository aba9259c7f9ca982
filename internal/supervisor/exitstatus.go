package supervisor

import (
	"fmt"
	"syscall"
)

// Exit codes the wrapper uses for a child that never ran, as shells do.
const (
	ExitNotFound      = 127 // the command was not found
	ExitNotExecutable = 126 // found, but could not be executed
)

// exitUnknown is the code for a child whose status was lost: it did end,
// but nothing says it succeeded.
const exitUnknown = 1

// ExitStatus is how the main child ended, reduced to what the wrapper
// reports and exits with.
type ExitStatus struct {
	// Code is the exit code to pass on: the child's own exit code, or
	// 128+N when signal N killed it, or 1 when Err is set.
	Code int
	// Signal is the signal that killed the child, 0 if it exited.
	Signal syscall.Signal
	// CoreDumped is set when the kernel wrote a core file at its death.
	CoreDumped bool
	// Err is set when the status could not be collected
	// (signals.ErrStatusLost, signals.ErrReaperClosed).
	Err error
}

// StatusFromWait computes an ExitStatus from what wait4 returned. The
// signal number comes from the WaitStatus itself: exec.ExitError.ExitCode
// says -1 for a death by signal and would lose it.
func StatusFromWait(ws syscall.WaitStatus) ExitStatus {
	switch {
	case ws.Exited():
		return ExitStatus{Code: ws.ExitStatus()}
	case ws.Signaled():
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: ws.Signal(), CoreDumped: ws.CoreDump()}
	}
	// Stopped or continued: never asked for (no WUNTRACED/WCONTINUED).
	return ExitStatus{Code: exitUnknown, Err: fmt.Errorf("unexpected wait status %#x", uint32(ws))}
}

// String describes the status for logs: "exited with code 3",
// "killed by signal 15 (terminated)".
func (s ExitStatus) String() string {
	switch {
	case s.Err != nil:
		return fmt.Sprintf("exit status unknown (%v)", s.Err)
	case s.Signal != 0 && s.CoreDumped:
		return fmt.Sprintf("killed by signal %d (%v), core dumped", int(s.Signal), s.Signal)
	case s.Signal != 0:
		return fmt.Sprintf("killed by signal %d (%v)", int(s.Signal), s.Signal)
	}
	return fmt.Sprintf("exited with code %d", s.Code)
}
