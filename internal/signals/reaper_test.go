package signals

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// helperEnv makes the test binary run one helper in a process of its own
// instead of the tests: becoming a subreaper changes the whole process.
const helperEnv = "SR_SIGNALS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "subreaper":
		os.Exit(subreaperHelper())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func startCommand(r *Reaper, argv ...string) (int, <-chan WaitResult, error) {
	p, ch, err := r.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{nil, os.Stderr, os.Stderr}})
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid // Release sets p.Pid to -1
	return pid, ch, p.Release()
}

func waitResult(t *testing.T, ch <-chan WaitResult) WaitResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status within 10s")
		return WaitResult{}
	}
}

func TestReaperReportsOwnChildren(t *testing.T) {
	r, err := NewReaper(ReaperOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.ReapsOrphans() {
		t.Fatal("a test process that is neither PID 1 nor a subreaper reaps orphans")
	}
	tests := []struct {
		argv []string
		code int
		sig  syscall.Signal
	}{
		{[]string{"/bin/sh", "-c", "exit 0"}, 0, 0},
		{[]string{"/bin/sh", "-c", "exit 5"}, 5, 0},
		{[]string{"/bin/sh", "-c", "kill -TERM $$"}, 0, syscall.SIGTERM},
		{[]string{"/bin/sh", "-c", "kill -KILL $$"}, 0, syscall.SIGKILL},
	}
	for _, tt := range tests {
		pid, ch, err := startCommand(r, tt.argv...)
		if err != nil {
			t.Fatal(err)
		}
		res := waitResult(t, ch)
		if res.Err != nil || res.Pid != pid {
			t.Fatalf("%v: result %+v, want pid %d and no error", tt.argv, res, pid)
		}
		if tt.sig != 0 {
			if !res.Status.Signaled() || res.Status.Signal() != tt.sig {
				t.Errorf("%v: status %#x, want death by %v", tt.argv, uint32(res.Status), tt.sig)
			}
		} else if !res.Status.Exited() || res.Status.ExitStatus() != tt.code {
			t.Errorf("%v: status %#x, want exit %d", tt.argv, uint32(res.Status), tt.code)
		}
	}
}

// Children that exit before Start has even returned must still be
// reported, each to its own waiter, while commands run with exec.Cmd
// beside the Reaper keep their statuses.
func TestReaperDoesNotLoseFastExitsNorRobExecCmd(t *testing.T) {
	r, err := NewReaper(ReaperOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			if err := exec.Command("/bin/sh", "-c", "exit 7").Run(); err == nil || err.(*exec.ExitError).ExitCode() != 7 {
				errs <- fmt.Errorf("exec.Cmd beside the Reaper: %v, want exit status 7", err)
			}
		})
	}
	for i := range 30 {
		_, ch, err := startCommand(r, "/bin/sh", "-c", "exit "+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if res := waitResult(t, ch); res.Err != nil || res.Status.ExitStatus() != i {
			t.Fatalf("child %d: %+v", i, res)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReaperCloseReleasesWaiters(t *testing.T) {
	r, err := NewReaper(ReaperOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid, ch, err := startCommand(r, "/bin/sh", "-c", "exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	if pid <= 0 {
		t.Fatalf("started pid %d", pid) // kill(2) would take it for a group, or everyone
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if res := waitResult(t, ch); !errors.Is(res.Err, ErrReaperClosed) {
		t.Fatalf("after Close: %+v, want ErrReaperClosed", res)
	}
	if _, _, err := startCommand(r, "/bin/true"); !errors.Is(err, ErrReaperClosed) {
		t.Fatalf("Start after Close: %v, want ErrReaperClosed", err)
	}
}

func TestSubreaperReapsOrphans(t *testing.T) {
	out, err := proctest.HelperCommand(t, helperEnv, "subreaper").CombinedOutput()
	if err != nil {
		t.Fatalf("subreaper helper: %v\n%s", err, out)
	}
	t.Logf("helper:\n%s", out)
}

// subreaperHelper runs in a process of its own: it becomes a subreaper,
// starts a shell that leaves three background sleeps behind and exits 3,
// and checks that the shell's status comes through, that the orphans were
// reaped here, and that no zombie is left.
func subreaperHelper() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
		return 1
	}
	var mu sync.Mutex
	reaped := map[int]bool{}
	r, err := NewReaper(ReaperOptions{Subreaper: true, OnOrphan: func(pid int, _ syscall.WaitStatus) {
		mu.Lock()
		reaped[pid] = true
		mu.Unlock()
	}})
	if err != nil {
		return fail("%v", err)
	}
	defer r.Close()
	if !r.ReapsOrphans() {
		return fail("a subreaper does not reap orphans")
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	argv := []string{"/bin/sh", "-c", "for i in 1 2 3; do sleep 0.2 & echo $!; done; exit 3"}
	p, ch, err := r.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{nil, pw, os.Stderr}})
	pw.Close()
	if err != nil {
		return fail("start: %v", err)
	}
	_ = p.Release()
	var orphans []int
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		pid, err := strconv.Atoi(strings.TrimSpace(lines.Text()))
		if err != nil {
			return fail("bad line %q", lines.Text())
		}
		orphans = append(orphans, pid)
	}
	select {
	case res := <-ch:
		if res.Err != nil || !res.Status.Exited() || res.Status.ExitStatus() != 3 {
			return fail("main child: %+v, want exit 3", res)
		}
	case <-time.After(10 * time.Second):
		return fail("no status for the main child")
	}
	exitedAt := time.Now()
	err = testsupport.Poll(10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		all := true
		for _, pid := range orphans {
			all = all && reaped[pid]
		}
		if z := proctest.Zombies(os.Getpid()); !all || len(z) != 0 {
			return fmt.Errorf("orphans %v, reaped %v, zombies left %v", orphans, reaped, z)
		}
		return nil
	})
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("orphans %v reaped, no zombies, %v after the main child exited\n", orphans, time.Since(exitedAt))
	return 0
}
