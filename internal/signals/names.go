package signals

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnknownSignal is wrapped by Parse's errors.
var ErrUnknownSignal = errors.New("unknown signal")

// The real-time range as user space sees it with glibc (kill -l): the
// kernel's 32 and 33 are taken by the C library.
const (
	rtMin = 34
	rtMax = 64
)

// Parse reads a signal as a user writes it for --stop-signal: "TERM",
// "SIGTERM", "term", "15", the aliases IOT, POLL and CLD, and real-time
// signals as "RTMIN+3" or "SIGRTMAX-2". It accepts any signal from 1 to 64,
// including ones a Go program cannot catch: the signal is for the child.
func Parse(s string) (syscall.Signal, error) {
	name := strings.TrimSpace(s)
	if name == "" {
		return 0, fmt.Errorf("parse signal: empty name: %w", ErrUnknownSignal)
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 1 || n > rtMax {
			return 0, fmt.Errorf("parse signal %q: number out of range 1..%d: %w", s, rtMax, ErrUnknownSignal)
		}
		return syscall.Signal(n), nil
	}
	name = strings.TrimPrefix(strings.ToUpper(name), "SIG")
	switch name {
	case "IOT":
		name = "ABRT"
	case "POLL":
		name = "IO"
	case "CLD":
		name = "CHLD"
	}
	if sig, ok := parseRealtime(name); ok {
		return sig, nil
	}
	if sig := unix.SignalNum("SIG" + name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("parse signal %q: want a name such as TERM, SIGTERM or term, RTMIN+N, or a number from 1 to %d: %w",
		s, rtMax, ErrUnknownSignal)
}

func parseRealtime(name string) (syscall.Signal, bool) {
	var base, sign int
	var rest string
	switch {
	case strings.HasPrefix(name, "RTMIN"):
		base, sign, rest = rtMin, 1, strings.TrimPrefix(name, "RTMIN")
	case strings.HasPrefix(name, "RTMAX"):
		base, sign, rest = rtMax, -1, strings.TrimPrefix(name, "RTMAX")
	default:
		return 0, false
	}
	if rest == "" {
		return syscall.Signal(base), true
	}
	op := "+"
	if sign < 0 {
		op = "-"
	}
	digits, ok := strings.CutPrefix(rest, op)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || n > rtMax-rtMin {
		return 0, false
	}
	return syscall.Signal(base + sign*n), true
}

// Name spells a signal as kill -l does on Linux: "SIGTERM", "SIGRTMIN+3".
func Name(sig syscall.Signal) string {
	switch {
	case sig == rtMin:
		return "SIGRTMIN"
	case sig > rtMin && sig <= rtMax:
		return fmt.Sprintf("SIGRTMIN+%d", int(sig)-rtMin)
	}
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}
