package sdnotify

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadWatchdog(t *testing.T) {
	const self = 4242
	tests := []struct {
		name    string
		env     map[string]string
		timeout time.Duration // 0: no watchdog
		period  time.Duration
		err     string // in the error, which wraps ErrBadWatchdog
	}{
		{name: "not under a watchdog", env: map[string]string{SocketEnv: "/run/notify"}},
		{name: "WatchdogSec=30", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "30000000", WatchdogPIDEnv: "4242"},
			timeout: 30 * time.Second, period: 15 * time.Second},
		{name: "without WATCHDOG_PID it is ours", env: map[string]string{SocketEnv: "@notify", WatchdogUsecEnv: "3000000"},
			timeout: 3 * time.Second, period: 1500 * time.Millisecond},
		{name: "one microsecond", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "1"},
			timeout: time.Microsecond, period: 500 * time.Nanosecond},
		{name: "WATCHDOG_PID names another process", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "30000000", WatchdogPIDEnv: "1"}},
		{name: "another process's, however malformed the rest", env: map[string]string{WatchdogUsecEnv: "soon", WatchdogPIDEnv: "1"}},
		{name: "WATCHDOG_PID alone", env: map[string]string{SocketEnv: "/run/notify", WatchdogPIDEnv: "4242"}},
		{name: "zero", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "0"},
			err: `WATCHDOG_USEC="0" is not a positive number of microseconds`},
		{name: "negative", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "-5"},
			err: `WATCHDOG_USEC="-5" is not a positive`},
		{name: "with a unit", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "30s"},
			err: `WATCHDOG_USEC="30s"`},
		{name: "USEC_INFINITY", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "18446744073709551615"},
			err: `WATCHDOG_USEC="18446744073709551615"`},
		{name: "longer than a time.Duration", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "9223372036854776"},
			err: `WATCHDOG_USEC="9223372036854776"`},
		{name: "bad WATCHDOG_PID", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "30000000", WatchdogPIDEnv: "self"},
			err: `WATCHDOG_PID="self" is not a process id`},
		{name: "WATCHDOG_PID zero", env: map[string]string{SocketEnv: "/run/notify", WatchdogUsecEnv: "30000000", WatchdogPIDEnv: "0"},
			err: `WATCHDOG_PID="0" is not a process id`},
		{name: "nowhere to send pings", env: map[string]string{WatchdogUsecEnv: "30000000", WatchdogPIDEnv: "4242"},
			err: "asks for pings every 15s, but NOTIFY_SOCKET is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ReadWatchdog(func(k string) string { return tt.env[k] }, self)
			if tt.err != "" {
				if !errors.Is(err, ErrBadWatchdog) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want ErrBadWatchdog with %q", err, tt.err)
				}
				if w.Enabled() {
					t.Fatalf("a watchdog %+v with the error", w)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.Timeout != tt.timeout || w.Period() != tt.period || w.Enabled() != (tt.timeout > 0) {
				t.Fatalf("got timeout %s period %s enabled %v, want %s %s", w.Timeout, w.Period(), w.Enabled(), tt.timeout, tt.period)
			}
		})
	}
}

func TestWatchdogPingReachesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn := listen(t, path)
	env := map[string]string{SocketEnv: path, WatchdogUsecEnv: "2000000", WatchdogPIDEnv: "77"}
	getenv := func(k string) string { return env[k] }
	w, err := ReadWatchdog(getenv, 77)
	if err != nil || w.Period() != time.Second {
		t.Fatalf("ReadWatchdog = %+v, %v; want a 1s period", w, err)
	}
	n, err := New(getenv)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for range 2 {
		if err := n.Watchdog(); err != nil {
			t.Fatal(err)
		}
		if got := receive(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	var none *Notifier
	if err := none.Watchdog(); err != nil {
		t.Fatalf("nil Notifier: %v", err)
	}
}

func TestStripEnv(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{"PATH=/bin", "HOME=/root"}, []string{"PATH=/bin", "HOME=/root"}},
		{
			[]string{"NOTIFY_SOCKET=/run/systemd/notify", "PATH=/bin", "WATCHDOG_USEC=30000000", "WATCHDOG_PID=1", "WATCHDOG_USEC=1", "X="},
			[]string{"PATH=/bin", "X="},
		},
		{
			// Only the exact names go; look-alikes and entries without
			// "=" stay as they are.
			[]string{"NOTIFY_SOCKETS=1", "MY_WATCHDOG_USEC=5", "watchdog_pid=1", "NOTIFY_SOCKET", "WATCHDOG_PID"},
			[]string{"NOTIFY_SOCKETS=1", "MY_WATCHDOG_USEC=5", "watchdog_pid=1"},
		},
	}
	for _, tt := range tests {
		got := StripEnv(tt.in)
		if got == nil || !slices.Equal(got, tt.want) {
			t.Errorf("StripEnv(%q) = %#v, want %q", tt.in, got, tt.want)
		}
	}
	if !slices.Equal(EnvNames(), []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) {
		t.Errorf("EnvNames() = %q", EnvNames())
	}
}
