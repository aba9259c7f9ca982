package main_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// ignoreHangupAndInterrupt starts a program the way nohup does (SIGHUP
// ignored) and a shell script starts a background job (SIGINT ignored).
var ignoreHangupAndInterrupt = []string{"/bin/sh", "-c", `trap "" HUP INT; exec "$0" "$@"`}

// ignoredSignals reads the set of signals process pid ignores.
func ignoredSignals(t *testing.T, pid int) uint64 {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("bad SigIgn line %q", l)
			}
			return mask
		}
	}
	t.Fatalf("no SigIgn in /proc/%d/status", pid)
	return 0
}

func sigBit(s syscall.Signal) uint64 { return 1 << (s - 1) }

// TestChildStartsWithDefaultDispositions: a wrapper started with SIGHUP
// and SIGINT ignored (nohup, a background job of a script) still starts
// its child with the default action for them, as a service manager
// starts a service, because it forwards both: a HUP sent to the wrapper
// ends a child that does not handle it, and the wrapper exits 129 with
// the service deregistered. (nohup therefore does not keep the service
// alive through a hangup; run it under a service manager or setsid.)
func TestChildStartsWithDefaultDispositions(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	hupAndInt := sigBit(syscall.SIGHUP) | sigBit(syscall.SIGINT)

	// The prefix does give the program it runs both signals ignored.
	out, err := exec.Command(ignoreHangupAndInterrupt[0], append(ignoreHangupAndInterrupt[1:], "/bin/grep", "^SigIgn:", "/proc/self/status")...).Output()
	mask, perr := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(out), "SigIgn:")), 16, 64)
	if err != nil || perr != nil || mask&hupAndInt != hupAndInt {
		t.Fatalf("the shell's trap did not leave SIGHUP and SIGINT ignored: %q, %v", out, err)
	}

	w := startWrapper(t, cmdline(acct.flags(reg.URL, "nohup"), fakeproc("--ready")...), startOpts{Prefix: ignoreHangupAndInterrupt})
	child := w.ready()
	w.registered()
	if got := ignoredSignals(t, child); got&hupAndInt != 0 {
		t.Fatalf("the child ignores signals %#x (SigIgn %#x); want SIGHUP and SIGINT at their default", got&hupAndInt, got)
	}

	w.signal(syscall.SIGHUP)
	if code := w.wait(exitWait); code != 128+int(syscall.SIGHUP) {
		t.Fatalf("exit code %d after SIGHUP, want %d (the child killed by the forwarded SIGHUP)", code, 128+int(syscall.SIGHUP))
	}
	w.waitLog(eventWait, "child exited", func(l line) bool { return l.Str("status") == "killed by SIGHUP" })
	acct.mustBeAbsent(t, "nohup", "after the child died of SIGHUP")
}
