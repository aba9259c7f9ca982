package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// helperCommand runs this test binary as helper h, with the path of
// fakeproc.
func helperCommand(t *testing.T, h string) *exec.Cmd {
	t.Helper()
	cmd := proctest.HelperCommand(t, helperEnv, h)
	cmd.Env = append(cmd.Env, fakeprocEnv+"="+fakeproc)
	return cmd
}

func runHelper(h string) int {
	var err error
	switch h {
	case "pid1":
		err = pid1Helper()
	case "tty":
		err = terminalHelper()
	case "leftovers-without-proc":
		err = leftoversWithoutProcHelper()
	default:
		err = fmt.Errorf("unknown helper %q", h)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	return 0
}

// The wrapper as PID 1 of a new PID namespace must reap orphans without
// being asked to be a subreaper. (A subreaper is tested in package
// signals, and end to end with --subreaper in cmd/sr-wrapper.)
func TestReaperAsPID1(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testsupport.SkipUnsupported(t, "no unshare(1)")
	}
	cmd := helperCommand(t, "pid1")
	cmd.Path = unshare
	cmd.Args = append([]string{unshare, "--pid", "--fork", "--mount-proc"}, cmd.Args...)
	out, err := cmd.CombinedOutput()
	if err != nil && strings.HasPrefix(string(out), "unshare:") {
		testsupport.SkipUnsupported(t, "cannot make a PID namespace here: %s", out)
	}
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	t.Logf("helper:\n%s", out)
}

// pid1Helper runs fakeproc --orphans and checks that the main child's
// status comes through, that every orphan was reaped here, and that no
// zombie is left.
func pid1Helper() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("pid is %d, not 1", os.Getpid())
	}
	var mu sync.Mutex
	reaped := map[int]bool{}
	r, err := signals.NewReaper(signals.ReaperOptions{OnOrphan: func(pid int, _ syscall.WaitStatus) {
		mu.Lock()
		reaped[pid] = true
		mu.Unlock()
	}})
	if err != nil {
		return err
	}
	defer r.Close()
	if !r.ReapsOrphans() {
		return fmt.Errorf("the reaper of PID 1 does not reap orphans")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	c, err := StartChild(ChildSpec{Argv: []string{fakeproc, "--ready", "--orphans", "3", "--exit", "7"}, Stdout: pw}, r)
	pw.Close()
	if err != nil {
		return err
	}
	var orphans []int
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		if p, ok := strings.CutPrefix(lines.Text(), "orphan pid="); ok {
			pid, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("line %q: %w", lines.Text(), err)
			}
			orphans = append(orphans, pid)
		}
	}
	if len(orphans) != 3 {
		return fmt.Errorf("fakeproc made orphans %v, want 3", orphans)
	}
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		return fmt.Errorf("no exit status for the main child")
	}
	if st, _ := c.ExitStatus(); st.Code != 7 || st.String() != "exited with status 7" {
		return fmt.Errorf("main child: %s, want exited with status 7", st)
	}
	err = testsupport.Poll(waitLimit, func() error {
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
	if err == nil {
		fmt.Printf("pid %d: main child exited with status 7; orphans %v reaped; no zombies\n", os.Getpid(), orphans)
	}
	return err
}

// Runs the helper as the leader of a new session whose controlling
// terminal is a fresh pseudo-terminal on its stdin.
func TestTerminalIsHandedToTheChildAndTakenBack(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testsupport.SkipUnsupported(t, "no pseudo-terminals: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()

	cmd := helperCommand(t, "tty")
	cmd.Stdin = tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	t.Logf("helper:\n%s", out)
}

func terminalHelper() error {
	fg := func() int {
		pg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
		if err != nil {
			return -1
		}
		return pg
	}
	if fg() != unix.Getpgrp() {
		return fmt.Errorf("helper is not in the foreground of its terminal (fg %d, pgrp %d)", fg(), unix.Getpgrp())
	}
	r, err := signals.NewReaper(signals.ReaperOptions{})
	if err != nil {
		return err
	}
	defer r.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	c, err := StartChild(ChildSpec{Argv: []string{fakeproc, "--ready", "--exit-on-term", "0"}, Stdout: pw}, r)
	pw.Close()
	if err != nil {
		return err
	}
	defer c.KillGroup()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		return fmt.Errorf("child's first line %q, %v", line, err)
	}
	if c.ttyFd < 0 || fg() != c.Pid() {
		return fmt.Errorf("terminal's foreground group %d, child %d (given the terminal: %v)", fg(), c.Pid(), c.ttyFd >= 0)
	}
	// The wrapper ignores TTIN and TTOU from now on; the child must not.
	const ttinTtou = 1<<(syscall.SIGTTIN-1) | 1<<(syscall.SIGTTOU-1)
	if ign := sigIgnored("self"); ign&ttinTtou != ttinTtou {
		return fmt.Errorf("wrapper ignores %#x, want TTIN and TTOU", ign)
	}
	if ign := sigIgnored(strconv.Itoa(c.Pid())); ign&ttinTtou != 0 {
		return fmt.Errorf("child ignores %#x, want neither TTIN nor TTOU", ign)
	}
	if err := c.Signal(syscall.SIGTERM, false); err != nil {
		return err
	}
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		return fmt.Errorf("child did not exit on TERM")
	}
	if fg() != unix.Getpgrp() {
		return fmt.Errorf("after the child's exit the foreground group is %d, want the wrapper's %d", fg(), unix.Getpgrp())
	}
	fmt.Printf("child %d got the terminal and gave it back to %d\n", c.Pid(), unix.Getpgrp())
	return nil
}

// sigIgnored reads the SigIgn mask of /proc/<pid>/status.
func sigIgnored(pid string) uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}
