// Package signals holds the wrapper's knowledge of Unix signals: which ones
// it passes on to its child and why, subscribing to them, parsing the names
// users give (--stop-signal), the Reaper, the one place in the process
// that starts and waits for child processes, which also reaps orphaned
// zombies when the wrapper is PID 1 or a child subreaper, and ExitStatus,
// the one wording of how a process ended.
//
// It does not decide how the child is started, signalled or stopped
// (package supervisor does), and it gives no signal a meaning for the wrapper itself: that TERM also
// deregisters the service is the supervisor's decision.
package signals

import (
	"os"
	"os/signal"
	"syscall"
)

// Signals 32, 33 and 34 (glibc's SIGRTMIN) are reserved by the C library
// and the Go runtime: Go cannot catch them, so a kill -34 ends the wrapper
// by default and cannot be forwarded. The usable real-time range starts at
// SIGRTMIN+1.
const firstForwardedRT = rtMin + 1

// Forwarded returns the signals the wrapper passes on to its child: every
// signal a process may be sent on purpose by someone who means the service,
// following tini. The choice, signal by signal:
//
//   - HUP INT QUIT TERM USR1 USR2 ALRM WINCH: the usual commands to a
//     service (reload, stop, log rotation, graceful stop for Apache or
//     nginx). QUIT must be caught in any case, or the Go runtime dumps its
//     goroutines and exits, stranding the child.
//   - CONT: so that "kill -STOP wrapper; kill -CONT wrapper" or a forwarded
//     TSTP can be undone.
//   - TSTP: forwarded rather than obeyed. A stopped wrapper could neither
//     heartbeat nor reap, nor pass on the CONT that resumes the child. (When
//     the child owns the terminal, ^Z reaches it directly.)
//   - VTALRM IO PWR: the wrapper never arms these itself, so any that arrive
//     were sent for the service (PWR by a UPS daemon to PID 1).
//   - SIGRTMIN+1 .. SIGRTMAX (35..64): application commands, e.g. systemd
//     in a container stops on SIGRTMIN+3.
//
// Left out on purpose:
//
//   - CHLD: it describes the wrapper's own children; the Reaper uses it.
//   - URG: the Go runtime sends it to itself to preempt goroutines.
//   - PROF: the Go runtime consumes it for profiling; Notify never
//     delivers it.
//   - PIPE: almost always raised by the wrapper's own write to a closed
//     stdout/stderr (a log collector that went away). Forwarding it would
//     kill a child that never wrote there; the child gets its own SIGPIPE
//     from its own writes. Subscribe still catches it, so that a broken
//     stderr cannot kill the wrapper (Go's default for fd 1 and 2).
//   - TTIN TTOU: raised by the terminal against the wrapper's own reads and
//     writes when it is in the background; forwarding them makes no sense,
//     and catching TTOU would make every write to a "stty tostop" terminal
//     retry forever. Package supervisor ignores both once it has handed the
//     terminal to the child, as tini does.
//   - XCPU XFSZ: the wrapper's own resource limits; the child has its own.
//   - ILL TRAP ABRT BUS FPE SEGV SYS STKFLT: faults of the wrapper itself,
//     which the Go runtime turns into a crash report.
//   - KILL STOP: cannot be caught.
//   - 32..34: cannot be caught by a Go program (see above).
func Forwarded() []os.Signal {
	return append(standard(), realtime()...)
}

// standard is the forwarded signals below the real-time range.
func standard() []os.Signal {
	return []os.Signal{
		syscall.SIGHUP,
		syscall.SIGINT,
		syscall.SIGQUIT,
		syscall.SIGUSR1,
		syscall.SIGUSR2,
		syscall.SIGALRM,
		syscall.SIGTERM,
		syscall.SIGCONT,
		syscall.SIGTSTP,
		syscall.SIGVTALRM,
		syscall.SIGWINCH,
		syscall.SIGIO,
		syscall.SIGPWR,
	}
}

// realtime is SIGRTMIN+1..SIGRTMAX.
func realtime() []os.Signal {
	var rt []os.Signal
	for n := firstForwardedRT; n <= rtMax; n++ {
		rt = append(rt, syscall.Signal(n))
	}
	return rt
}

// IsStop reports whether sig asks a process to end: TERM, INT or QUIT.
// Subscribe delivers these on a channel of their own.
func IsStop(sig os.Signal) bool {
	return sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT
}

// Subscription delivers the forwarded signals that reach the process.
type Subscription struct {
	stops  chan os.Signal
	others chan os.Signal
	sink   chan os.Signal
}

// Subscribe starts delivering the standard forwarded signals (every
// Forwarded signal below the real-time range), and only those, so that
// each one received can be passed on as it is: TERM, INT and QUIT on
// Stops, the others on Others. It also catches SIGPIPE and drops it (see
// Forwarded), which replaces Go's default of dying when a write to stdout
// or stderr hits a closed pipe with an EPIPE error.
//
// os/signal never blocks: a signal that finds its channel full is
// dropped. A burst of one signal (WINCH while a terminal is resized) can
// fill a channel, which is why the stop signals have one of their own
// that nothing else can fill.
//
// The real-time signals come with AddRealtime, separately, because
// os/signal enables each signal with a round trip to the runtime's
// signal-mask thread: the 30 real-time ones cost about 1.5 ms on a small
// machine, which the wrapper spends a few milliseconds after starting its
// child (package supervisor's serveDelay) rather than in front of it or
// beside its start-up. Until then the Go runtime drops a real-time signal
// that arrives; none is sent in a service's first milliseconds.
//
// Call it before starting the child: until then Go's defaults apply, and a
// TERM would end the wrapper without a word. Signals that arrive before the
// child exists wait in the channels.
func Subscribe() *Subscription {
	s := &Subscription{
		stops:  make(chan os.Signal, 3),
		others: make(chan os.Signal, len(Forwarded())),
		// Never read: a full channel just drops further SIGPIPEs, and
		// the signal still counts as handled.
		sink: make(chan os.Signal, 1),
	}
	var others []os.Signal
	for _, sig := range standard() {
		if !IsStop(sig) {
			others = append(others, sig)
		}
	}
	signal.Notify(s.stops, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	signal.Notify(s.others, others...)
	signal.Notify(s.sink, syscall.SIGPIPE)
	return s
}

// AddRealtime adds SIGRTMIN+1..SIGRTMAX to Others.
func (s *Subscription) AddRealtime() {
	signal.Notify(s.others, realtime()...)
}

// Stops delivers TERM, INT and QUIT.
func (s *Subscription) Stops() <-chan os.Signal { return s.stops }

// Others delivers every other forwarded signal.
func (s *Subscription) Others() <-chan os.Signal { return s.others }

// Stop undoes the subscription: Go's defaults apply again afterwards. It
// does not close the channels.
func (s *Subscription) Stop() {
	signal.Stop(s.stops)
	signal.Stop(s.others)
	signal.Stop(s.sink)
}
