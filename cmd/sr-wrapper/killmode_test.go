package main_test

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// TestNothingOutlivesTheService: whatever the child leaves in its process
// group when it exits (by itself, after the stop signal, or stopped by
// --abort-on-failure) gets the stop signal and, at the end of
// --stop-timeout, SIGKILL, before the wrapper exits with the child's own
// status; so the wrapper's stdout, which they inherited, reaches EOF for
// whoever reads it (a supervisor's log pipe). --kill-mode=process keeps
// them alive, as before.
func TestNothingOutlivesTheService(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	const leftover = "sleep 1000 & echo ready; "
	tests := []struct {
		name   string
		flags  []string
		script string
		// stop: TERM to the wrapper once the script is ready; abort: the
		// registry refuses the session for good once it is ready.
		stop, abort bool
		wantCode    int
		// killed: the leftover ignores the stop signal and must be
		// killed when --stop-timeout (1s) has passed.
		killed bool
		// left: the wrapper finds the leftover there when the child has
		// exited (with --signal-group it may have died already).
		left      bool
		wantLines []string
	}{
		{name: "child exits by itself", script: leftover + "exit 3", wantCode: 3, left: true},
		{name: "TERM to the wrapper", script: leftover + "wait", stop: true, wantCode: 128 + int(syscall.SIGTERM), left: true},
		{name: "--abort-on-failure", flags: []string{"--abort-on-failure"}, script: leftover + "wait", abort: true, wantCode: 100, left: true},
		// fakeproc's "ready pid=N" comes once it ignores TERM.
		{name: "leftover ignores the stop signal", script: strings.Join(fakeproc("--ready", "--ignore-term"), " ") + " & wait", stop: true,
			wantCode: 128 + int(syscall.SIGTERM), killed: true, left: true},
		// The shell dies of USR1; the leftover reports it and is killed.
		{name: "--stop-signal reaches the leftover", flags: []string{"--stop-signal", "USR1"},
			script: strings.Join(fakeproc("--ready", "--report-signals"), " ") + " & wait", stop: true,
			wantCode: 128 + int(syscall.SIGUSR1), killed: true, left: true, wantLines: []string{"signal SIGUSR1", "signal SIGCONT"}},
		{name: "--signal-group", flags: []string{"--signal-group"}, script: leftover + "wait", stop: true, wantCode: 128 + int(syscall.SIGTERM)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			proxy := faultproxy.StartT(t, reg.URL)
			if tt.abort {
				proxy.SetDown(true)
			}
			flags := append(acct.flags(proxy.URL().String(), "leftovers"), tt.flags...)
			w := startWrapper(t, cmdline(flags, "sh", "-c", tt.script))
			w.waitStdout(startWait, "ready", func(l line) bool { return l.Text == "ready" || strings.HasPrefix(l.Text, "ready pid=") })
			switch {
			case tt.stop:
				w.registered()
				w.signal(syscall.SIGTERM)
			case tt.abort:
				proxy.Add(faultproxy.Rule{Method: "POST", Path: sessionsPath, Action: faultproxy.Respond(403, api.FaultForbidden)})
				proxy.SetDown(false)
			}
			code := w.wait(exitWait)
			exited := time.Now()
			if code != tt.wantCode {
				t.Errorf("exit code %d, want the child's %d", code, tt.wantCode)
			}
			if !w.stdout.WaitEOF(eventWait) {
				t.Fatalf("the wrapper has exited, but its stdout is still open %s later", eventWait)
			}
			if d := time.Since(exited); d > time.Second {
				t.Errorf("stdout reached EOF %s after the wrapper's exit; want at once", d)
			}
			if left := markedProcs(w.marker, ""); len(left) != 0 {
				t.Fatalf("processes %v outlived the wrapper", left)
			}
			for _, want := range tt.wantLines {
				if got := w.stdout.all(exactly(want)); len(got) != 1 {
					t.Errorf("the leftover did not report %q; stdout:\n%s", want, w.stdout)
				}
			}
			if tt.left {
				l := w.waitLog(eventWait, "stopping what the child left behind")
				if l.Int("processes") != 1 {
					t.Errorf("%s; want processes 1", l.Text)
				}
			}
			if tt.killed {
				w.waitLog(eventWait, "killed what the child left behind: it outlived the stop timeout")
			} else if got := w.stderr.all(logMsg("killed what the child left behind: it outlived the stop timeout")); len(got) != 0 {
				t.Errorf("the leftover was killed, but it obeys the stop signal: %s", got[0].Text)
			}
		})
	}
}

// TestKillModeProcessLeavesTheGroupAlone: with --kill-mode=process what
// the child leaves behind goes on running, holding the wrapper's stdout,
// as before the kill mode existed.
func TestKillModeProcessLeavesTheGroupAlone(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	flags := append(acct.flags(reg.URL, "keeper"), "--kill-mode", "process")
	w := startWrapper(t, cmdline(flags, "sh", "-c", "sleep 1000 & echo ready; exit 0"))
	w.waitStdout(startWait, "ready", exactly("ready"))
	if code := w.wait(exitWait); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	var sleeps []int
	testsupport.EventuallyTrue(t, eventWait, "the sleep runs on", func() bool {
		sleeps = markedProcs(w.marker, "sleep")
		return len(sleeps) == 1
	})
	// It holds the pipe: nothing closes it while the sleep runs.
	if w.stdout.WaitEOF(200 * time.Millisecond) {
		t.Fatal("stdout closed although the sleep still holds it")
	}
	if err := syscall.Kill(sleeps[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !w.stdout.WaitEOF(eventWait) {
		t.Fatal("stdout still open after the sleep was killed")
	}
}

// TestLeftoversOutsideTheGroup: a process that left the child's process
// group (setsid, a daemon) is the service's only where the wrapper can
// know it: as a subreaper or PID 1 it inherits it, and stops it with the
// rest, with the stop signal first. Without either it is out of reach,
// as it is for kill(2) on the group.
func TestLeftoversOutsideTheGroup(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testsupport.SkipUnsupported(t, "unshare(1) not available: cannot make a PID namespace")
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		testsupport.SkipUnsupported(t, "setsid(1) not available")
	}
	reg := registrytest.Start(t)
	// The daemon tells on stdout that it got the stop signal, and obeys.
	// The shell dies of the TERM the wrapper is sent.
	daemon := "setsid " + strings.Join(fakeproc("--ready", "--report-signals", "--exit-on-term", "0"), " ") + " & wait"
	tests := []struct {
		name   string
		flags  []string
		prefix []string
	}{
		{name: "--subreaper", flags: []string{"--subreaper"}},
		{name: "PID 1", prefix: []string{unshare, "--pid", "--fork", "--mount-proc", "--kill-child"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.prefix != nil {
				if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
					testsupport.SkipUnsupported(t, "unshare --pid --fork --mount-proc not permitted here: %v: %s", err, out)
				}
			}
			acct := newAccount(t, reg.URL)
			flags := append(acct.flags(reg.URL, "daemonised"), tt.flags...)
			w := startWrapper(t, cmdline(flags, "sh", "-c", daemon), startOpts{Prefix: tt.prefix})
			w.waitStdout(startWait, "ready", hasPrefix("ready pid="))
			wrapper := w.Pid()
			if tt.prefix != nil {
				wrapper = onlyChild(t, w.Pid())
			}
			if err := syscall.Kill(wrapper, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := w.wait(exitWait); code != 128+int(syscall.SIGTERM) {
				t.Fatalf("exit code %d, want the child's %d", code, 128+int(syscall.SIGTERM))
			}
			if !w.stdout.WaitEOF(eventWait) {
				t.Fatal("stdout still open: the daemon outlived the wrapper")
			}
			if got := w.stdout.all(exactly("signal SIGTERM")); len(got) != 1 {
				t.Fatalf("the daemon did not get the stop signal (SIGTERM) before it died; stdout:\n%s", w.stdout)
			}
			if left := markedProcs(w.marker, ""); len(left) != 0 {
				t.Fatalf("processes %v outlived the wrapper", left)
			}
			l := w.waitLog(eventWait, "stopping what the child left behind")
			if n := l.Int("processes"); n != 1 {
				t.Errorf("%s; want processes 1 (the daemon)", l.Text)
			}
		})
	}
}
