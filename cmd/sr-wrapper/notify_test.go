package main_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// notifySocket listens as systemd does for a Type=notify unit and returns
// its path and a channel of the datagrams received.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

// receive waits for the next notification and fails the test unless it
// starts with prefix.
func receive(t *testing.T, ch <-chan string, timeout time.Duration, prefix string) string {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if !ok {
			t.Fatalf("the notify socket closed before a %q notification", prefix)
		}
		if !strings.HasPrefix(msg, prefix) {
			t.Fatalf("notification %q, want one starting with %q", msg, prefix)
		}
		return msg
	case <-time.After(timeout):
		t.Fatalf("no %q notification within %s", prefix, timeout)
	}
	return ""
}

// TestSystemdNotifyReadyOnceRegisteredAndStopping: under a Type=notify
// unit the wrapper says READY=1 once the service is registered and
// STOPPING=1 on TERM, and keeps NOTIFY_SOCKET from the child.
func TestSystemdNotifyReadyOnceRegisteredAndStopping(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	sock, notes := notifySocket(t)
	w := startWrapper(t, cmdline(acct.flags(reg.URL, "notify-web"),
		fakeproc("--ready", "--print-env", "NOTIFY_SOCKET", "--exit-on-term", "0")...),
		startOpts{Env: []string{"NOTIFY_SOCKET=" + sock}})

	msg := receive(t, notes, startWait, "READY=1")
	if !strings.Contains(msg, "STATUS=running; registered") {
		t.Errorf("READY notification %q does not say the service is registered", msg)
	}
	if s, err := acct.service("notify-web"); err != nil || s == nil {
		t.Fatalf("READY=1 was sent but the service is not registered: %+v, %v", s, err)
	}

	env := w.waitStdout(eventWait, "about NOTIFY_SOCKET", func(l line) bool { return strings.Contains(l.Text, "NOTIFY_SOCKET") })
	if env.Text != "unset NOTIFY_SOCKET" {
		t.Errorf("child saw %q; the wrapper must keep NOTIFY_SOCKET to itself", env.Text)
	}

	w.signal(syscall.SIGTERM)
	receive(t, notes, eventWait, "STOPPING=1")
	if code := w.wait(exitWait); code != 0 {
		t.Fatalf("exit code %d, want the child's 0", code)
	}
}

// TestSystemdNotifyReadyEvenWhenRegistryIsDown: a registry that is down
// delays READY=1 by a heartbeat timeout at most, so that systemd does not
// time the unit out; the status says the service is not registered yet.
func TestSystemdNotifyReadyEvenWhenRegistryIsDown(t *testing.T) {
	t.Parallel()
	// Nothing listens there: the registry is down for the whole test.
	dead := freeAddr(t)
	sock, notes := notifySocket(t)
	flags := []string{"--registry", "http://" + dead + "/v1.0", "--username", "alice", "--api-key", "secret",
		"--id", "notify-down", "--interval", "3", "--log-format", "json"}
	w := startWrapper(t, cmdline(flags, fakeproc("--exit-on-term", "0")...),
		startOpts{Env: []string{"NOTIFY_SOCKET=" + sock}})
	start := time.Now()

	msg := receive(t, notes, startWait, "READY=1")
	if !strings.Contains(msg, "not registered yet") {
		t.Errorf("READY notification %q should say the service is not registered yet", msg)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("READY=1 came after %s, before a heartbeat timeout (3s) of trying", took)
	}
	w.signal(syscall.SIGTERM)
	receive(t, notes, eventWait, "STOPPING=1")
	if code := w.wait(exitWait); code != 0 {
		t.Fatalf("exit code %d, want the child's 0", code)
	}
}

// TestEtcdRegistryWithoutEtcdWrapperIsAUsageError: the lean sr-wrapper
// hands etcd:// registries to sr-wrapper-etcd; without it (sr-wrapper
// alone in its directory, nor in PATH), the user gets one clear line and
// exit 2, and nothing starts.
func TestEtcdRegistryWithoutEtcdWrapperIsAUsageError(t *testing.T) {
	t.Parallel()
	alone := filepath.Join(t.TempDir(), "sr-wrapper")
	installAlone(t, bin.wrapper, alone)
	marker := filepath.Join(t.TempDir(), "started")
	w := startWrapper(t, cmdline([]string{"--id", "etcd-missing", "--registry", "etcd://127.0.0.1:2379/sr"}, "sh", "-c", "touch "+marker),
		startOpts{Binary: alone, Env: []string{"PATH=/usr/bin:/bin"}})
	if code := w.wait(exitWait); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !w.stdout.WaitEOF(eventWait) || !w.stderr.WaitEOF(eventWait) {
		t.Fatal("output still open after the wrapper exited: something was started")
	}
	if out := w.stdout.String() + w.stderr.String(); !strings.Contains(out, "sr-wrapper-etcd, which is not installed") {
		t.Errorf("output does not explain what is missing:\n%s", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command was started")
	}
}

// installAlone puts the binary src at dst: a hard link where it can (a
// fresh copy could not be run while another test's fork still holds it
// open for writing: ETXTBSY), else a copy.
func installAlone(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Link(src, dst); err == nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// TestSystemdWatchdog: under WatchdogSec= (WATCHDOG_USEC, and WATCHDOG_PID
// when systemd names the main process) the wrapper sends WATCHDOG=1 every
// half timeout while its child runs; a WATCHDOG_PID naming another process
// means the watchdog is someone else's. The child never sees the
// variables.
func TestSystemdWatchdog(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	const usec = "200000" // 200 ms: a ping every 100 ms
	vars := []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
	tests := []struct {
		name      string
		env       []string
		prefix    []string
		wantPings bool
	}{
		{name: "WATCHDOG_USEC alone", env: []string{"WATCHDOG_USEC=" + usec}, wantPings: true},
		// As systemd does it: the pid of the process it started.
		{name: "WATCHDOG_PID is the wrapper", env: []string{"WATCHDOG_USEC=" + usec},
			prefix: []string{"sh", "-c", `WATCHDOG_PID=$$ exec "$0" "$@"`}, wantPings: true},
		{name: "WATCHDOG_PID is another process", env: []string{"WATCHDOG_USEC=" + usec, "WATCHDOG_PID=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			sock, notes := notifySocket(t)
			args := []string{"--ready", "--exit-on-term", "0"}
			for _, v := range vars {
				args = append(args, "--print-env", v)
			}
			w := startWrapper(t, cmdline(acct.flags(reg.URL, "watched"), fakeproc(args...)...),
				startOpts{Env: append([]string{"NOTIFY_SOCKET=" + sock}, tt.env...), Prefix: tt.prefix})
			for _, v := range vars {
				w.waitStdout(eventWait, "what the child sees of "+v, exactly("unset "+v))
			}

			// What systemd hears until READY=1 and a second beyond.
			var pings int
			var ready bool
			deadline := time.After(startWait)
			for settle := (<-chan time.Time)(nil); ; {
				select {
				case msg := <-notes:
					switch {
					case msg == "WATCHDOG=1":
						pings++
					case strings.HasPrefix(msg, "READY=1"):
						ready, settle = true, time.After(time.Second)
					}
					continue
				case <-settle:
				case <-deadline:
					t.Fatalf("no READY=1 within %s (%d pings)", startWait, pings)
				}
				break
			}
			switch {
			case !ready:
				t.Fatal("no READY=1")
			case tt.wantPings && pings < 3:
				t.Errorf("%d WATCHDOG=1 in the second after READY=1 and before it, want one every 100 ms", pings)
			case !tt.wantPings && pings != 0:
				t.Errorf("%d WATCHDOG=1, want none: the watchdog is another process's", pings)
			}
			w.signal(syscall.SIGTERM)
			if code := w.wait(exitWait); code != 0 {
				t.Fatalf("exit code %d, want the child's 0", code)
			}
		})
	}
}
