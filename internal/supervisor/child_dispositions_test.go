package supervisor

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// handleIgnoredSignals makes the children of the test process start with
// the default action for SIGHUP and SIGINT, as the wrapper's do.
//
// A process that nohup starts has SIGHUP ignored, and a background job of
// a shell script SIGINT; an ignored signal stays ignored across fork and
// exec, and Go leaves these two ignored until the program subscribes to
// them. Every signal the Go runtime handles, on the other hand, is reset
// to the default action in a child it forks. The wrapper subscribes to
// both (signals.Subscribe) before it starts its child, so its child always
// gets the default; StartChild called from a bare test process would pass
// the ignored signals on, and a child could not die by them. Handling them
// (and dropping what arrives) changes nothing for the test process itself:
// they were ignored.
func handleIgnoredSignals() {
	for _, sig := range []os.Signal{syscall.SIGHUP, syscall.SIGINT} {
		if signal.Ignored(sig) {
			signal.Notify(make(chan os.Signal, 1), sig)
		}
	}
}

// TestSignalDeathsWithHangupAndInterruptIgnored runs the tests of death by
// signal again in a copy of the test binary started the way nohup starts a
// program and a shell script a background job: with SIGHUP and SIGINT
// ignored. `nohup make test` must pass as `make test` does.
func TestSignalDeathsWithHangupAndInterruptIgnored(t *testing.T) {
	const ignoreThenExec = `trap "" HUP INT; exec "$0" "$@"`

	// The shell's trap is what the copy starts with.
	out, err := exec.Command("/bin/sh", "-c", ignoreThenExec, "/bin/grep", "^SigIgn:", "/proc/self/status").Output()
	if err != nil {
		t.Fatalf("read the dispositions a program gets from the shell: %v", err)
	}
	ignored, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(out), "SigIgn:")), 16, 64)
	const hupAndInt = 1<<(syscall.SIGHUP-1) | 1<<(syscall.SIGINT-1)
	if err != nil || ignored&hupAndInt != hupAndInt {
		t.Fatalf("/bin/sh's trap did not leave SIGHUP and SIGINT ignored: %q", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", ignoreThenExec, os.Args[0],
		"-test.run=^(TestChildKilledBySignalExits128PlusN|TestChildExitStatusMatrix)$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fakeprocEnv+"="+fakeproc)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("with SIGHUP and SIGINT ignored: %v\n%s", err, out)
	}
	for _, name := range []string{"TestChildKilledBySignalExits128PlusN/SIGHUP", "TestChildKilledBySignalExits128PlusN/SIGINT", "TestChildExitStatusMatrix/killed_by_SIGHUP"} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass with SIGHUP and SIGINT ignored:\n%s", name, out)
		}
	}
}
