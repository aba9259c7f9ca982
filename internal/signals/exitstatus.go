package signals

import (
	"fmt"
	"syscall"
)

// exitUnknown is the code for a process whose status was lost: it did end,
// but nothing says it succeeded.
const exitUnknown = 1

// ExitStatus is how a process ended, reduced to what a shell would report
// and exit with. Its String is the one wording of an exit in the logs,
// for the wrapped program and for health check commands alike.
type ExitStatus struct {
	// Code is the exit code to pass on: the process's own exit code, or
	// 128+N when signal N killed it, or 1 when Err is set.
	Code int
	// Signal is the signal that killed the process, 0 if it exited.
	Signal syscall.Signal
	// CoreDumped is set when the kernel wrote a core file at its death.
	CoreDumped bool
	// Err is set when the status could not be collected (ErrStatusLost,
	// ErrReaperClosed).
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

// ExitStatus is the result's status, or one with Err and code 1 when the
// status could not be collected.
func (w WaitResult) ExitStatus() ExitStatus {
	if w.Err != nil {
		return ExitStatus{Code: exitUnknown, Err: w.Err}
	}
	return StatusFromWait(w.Status)
}

// String describes the status for logs and errors: "exited with status
// 3", "killed by SIGTERM", "killed by SIGSEGV, core dumped".
func (s ExitStatus) String() string {
	switch {
	case s.Err != nil:
		return fmt.Sprintf("exit status unknown: %v", s.Err)
	case s.Signal != 0 && s.CoreDumped:
		return "killed by " + Name(s.Signal) + ", core dumped"
	case s.Signal != 0:
		return "killed by " + Name(s.Signal)
	}
	return fmt.Sprintf("exited with status %d", s.Code)
}
