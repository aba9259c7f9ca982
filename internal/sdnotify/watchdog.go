package sdnotify

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The variables systemd sets for a unit with WatchdogSec= (see
// sd_watchdog_enabled(3)).
const (
	WatchdogUsecEnv = "WATCHDOG_USEC"
	WatchdogPIDEnv  = "WATCHDOG_PID"
)

// ErrBadWatchdog is wrapped by ReadWatchdog's error when the watchdog
// variables are malformed or cannot be served. systemd never sets them so,
// so someone else did; the caller is expected to warn and carry on
// without a watchdog.
var ErrBadWatchdog = errors.New("bad watchdog settings")

// Watchdog is systemd's watchdog on this process: when WATCHDOG=1 has not
// arrived for Timeout, systemd considers the service hung and acts as the
// unit says (WatchdogSignal=, Restart=on-watchdog). The zero Watchdog is
// none.
type Watchdog struct {
	Timeout time.Duration
}

// Enabled reports whether systemd expects pings.
func (w Watchdog) Enabled() bool { return w.Timeout > 0 }

// Period is how often to send WATCHDOG=1: half the timeout, as
// sd_watchdog_enabled(3) advises, so that one late ping is not yet fatal.
// It is 0 for no watchdog.
func (w Watchdog) Period() time.Duration { return w.Timeout / 2 }

// ReadWatchdog reads the watchdog systemd set up for the process pid
// (os.Getpid() outside tests) through getenv.
//
// No WATCHDOG_USEC, or a WATCHDOG_PID naming another process (the
// variables were inherited from a parent that systemd watches), is no
// watchdog and no error. A WATCHDOG_USEC that is not a positive number of
// microseconds, a WATCHDOG_PID that is not a process id, or a watchdog
// without a NOTIFY_SOCKET to send pings to is an error wrapping
// ErrBadWatchdog, with the zero Watchdog.
func ReadWatchdog(getenv func(string) string, pid int) (Watchdog, error) {
	usec, pidText := getenv(WatchdogUsecEnv), getenv(WatchdogPIDEnv)
	if usec == "" {
		return Watchdog{}, nil
	}
	if pidText != "" {
		p, err := strconv.Atoi(pidText)
		if err != nil || p <= 0 {
			return Watchdog{}, fmt.Errorf("%w: %s=%q is not a process id", ErrBadWatchdog, WatchdogPIDEnv, pidText)
		}
		if p != pid {
			return Watchdog{}, nil
		}
	}
	n, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || n == 0 || n > math.MaxInt64/uint64(time.Microsecond) {
		return Watchdog{}, fmt.Errorf("%w: %s=%q is not a positive number of microseconds", ErrBadWatchdog, WatchdogUsecEnv, usec)
	}
	w := Watchdog{Timeout: time.Duration(n) * time.Microsecond}
	if getenv(SocketEnv) == "" {
		return Watchdog{}, fmt.Errorf("%w: %s=%s asks for pings every %s, but %s is not set to send them to",
			ErrBadWatchdog, WatchdogUsecEnv, usec, w.Period(), SocketEnv)
	}
	return w, nil
}

// Watchdog sends WATCHDOG=1: the service is alive. Send it every
// Watchdog.Period from the loop whose liveness it vouches for, so that a
// stuck loop stops the pings.
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }

// EnvNames are the variables of the notification protocol, which belong
// to the process systemd started: a child that saw them would send
// READY=1 for a unit the wrapper speaks for, or believe itself watched.
func EnvNames() []string { return []string{SocketEnv, WatchdogUsecEnv, WatchdogPIDEnv} }

// StripEnv returns env ("KEY=value" entries) without the EnvNames
// variables, in the same order. The result is never nil, so that it
// cannot be taken for "inherit the whole environment".
func StripEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name != SocketEnv && name != WatchdogUsecEnv && name != WatchdogPIDEnv {
			out = append(out, kv)
		}
	}
	return out
}
