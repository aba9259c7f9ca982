package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// helperEnv makes the test binary run one helper (named by its value)
// instead of the tests, in a process of its own: becoming a subreaper,
// PID 1 of a namespace or the leader of a terminal session changes the
// whole process.
const (
	helperEnv   = "SR_SUPERVISOR_TEST_HELPER"
	fakeprocEnv = "SR_SUPERVISOR_TEST_FAKEPROC"
)

// fakeproc is the path of testdata/fakeproc, built once by TestMain.
var fakeproc string

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		fakeproc = os.Getenv(fakeprocEnv)
		os.Exit(runHelper(h))
	}
	handleIgnoredSignals()
	if fakeproc = os.Getenv(fakeprocEnv); fakeproc != "" {
		os.Exit(m.Run()) // a copy of the tests, given the parent's build
	}
	dir, err := os.MkdirTemp("", "supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeproc = filepath.Join(dir, "fakeproc")
	build := exec.Command("go", "build", "-o", fakeproc, "./testdata/fakeproc")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fakeproc: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const waitLimit = 10 * time.Second

func newReaper(t *testing.T) *signals.Reaper {
	t.Helper()
	r, err := signals.NewReaper(signals.ReaperOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func fake(args ...string) []string { return append([]string{fakeproc}, args...) }

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// start runs spec with stdin from /dev/null (a test run from a terminal
// must not hand it over) and stdout on a pipe whose lines come out of the
// returned channel. The child's whole group is killed at the end.
func start(t *testing.T, r *signals.Reaper, spec ChildSpec) (*Child, <-chan string) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Stdin == nil {
		spec.Stdin = devNull(t)
	}
	spec.Stdout = pw
	c, err := StartChild(spec, r)
	pw.Close()
	if err != nil {
		pr.Close()
		t.Fatalf("StartChild(%q): %v", spec.Argv, err)
	}
	t.Cleanup(func() {
		_ = c.KillGroup()
		select {
		case <-c.Done():
		case <-time.After(waitLimit):
			t.Errorf("child %d did not die after SIGKILL", c.Pid())
		}
	})
	lines := make(chan string, 256)
	go func() {
		defer pr.Close()
		defer close(lines)
		s := bufio.NewScanner(pr)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	return c, lines
}

// expect reads lines until one starts with want, and returns the lines
// skipped and the line found.
func expect(t *testing.T, lines <-chan string, want string) (skipped []string, line string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before %q; read %q", want, skipped)
			}
			if strings.HasPrefix(l, want) {
				return skipped, l
			}
			skipped = append(skipped, l)
		case <-deadline:
			t.Fatalf("no line %q within %v; read %q", want, waitLimit, skipped)
		}
	}
}

func waitDone(t *testing.T, c *Child) signals.ExitStatus {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatalf("child %d still running after %v", c.Pid(), waitLimit)
	}
	st, ok := c.ExitStatus()
	if !ok {
		t.Fatal("ExitStatus not available after Done")
	}
	return st
}

func TestChildExitStatusMatrix(t *testing.T) {
	r := newReaper(t)
	tests := []struct {
		name string
		args []string
		code int
		desc string
	}{
		{"exit 0", []string{"--exit", "0"}, 0, "exited with status 0"},
		{"exit 1", []string{"--exit", "1"}, 1, "exited with status 1"},
		{"exit 3", []string{"--exit", "3"}, 3, "exited with status 3"},
		{"exit 255", []string{"--exit", "255"}, 255, "exited with status 255"},
		{"killed by SIGTERM", []string{"--kill-self", "TERM"}, 128 + 15, "killed by SIGTERM"},
		{"killed by SIGKILL", []string{"--kill-self", "KILL"}, 128 + 9, "killed by SIGKILL"},
		{"killed by SIGSEGV", []string{"--kill-self", "SEGV"}, 128 + 11, "killed by SIGSEGV"},
		{"killed by SIGABRT", []string{"--kill-self", "ABRT"}, 128 + 6, "killed by SIGABRT"},
		// Ignored when go test runs under nohup or as a script's
		// background job, unless TestMain sees to it.
		{"killed by SIGHUP", []string{"--kill-self", "HUP"}, 128 + 1, "killed by SIGHUP"},
		{"killed by SIGINT", []string{"--kill-self", "INT"}, 128 + 2, "killed by SIGINT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := start(t, r, ChildSpec{Argv: fake(tt.args...)})
			st := waitDone(t, c)
			if st.Code != tt.code || st.String() != tt.desc {
				t.Errorf("status = %d %q, want %d %q", st.Code, st.String(), tt.code, tt.desc)
			}
		})
	}
}

func TestChildKilledBySignalExits128PlusN(t *testing.T) {
	r := newReaper(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGHUP, syscall.SIGINT} {
		t.Run(signals.Name(sig), func(t *testing.T) {
			c, lines := start(t, r, ChildSpec{Argv: fake("--ready")})
			expect(t, lines, "ready pid=")
			if _, ok := c.ExitStatus(); ok {
				t.Fatal("ExitStatus reported while the child runs")
			}
			if err := c.Signal(sig, false); err != nil {
				t.Fatal(err)
			}
			st := waitDone(t, c)
			if st.Code != 128+int(sig) || st.Signal != sig {
				t.Errorf("status = %+v (%s), want code %d", st, st, 128+int(sig))
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", "#!/bin/sh\nexit 0\n", 0o644)
	badInterp := write("bad-interp", "#!/nonexistent/interpreter\n", 0o755)
	garbage := write("garbage", "\x7fNOT\x00an executable\n", 0o755)
	emptyDir := t.TempDir()
	denyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(denyDir, "tool"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		argv []string
		env  []string
		dir  string
		code int
		is   error
	}{
		{"name not in PATH", []string{"sr-no-such-command-xyz"}, nil, "", 127, ErrCommandNotFound},
		{"missing path", []string{"/nonexistent/dir/cmd"}, nil, "", 127, ErrCommandNotFound},
		{"in the wrapper's PATH, not the child's", []string{"sh"}, []string{"PATH=" + emptyDir}, "", 127, ErrCommandNotFound},
		{"not executable", []string{plain}, nil, "", 126, ErrNotExecutable},
		{"not executable in PATH", []string{"tool"}, []string{"PATH=" + denyDir}, "", 126, ErrNotExecutable},
		{"directory", []string{dir}, nil, "", 126, ErrNotExecutable},
		{"bad interpreter", []string{badInterp}, nil, "", 126, ErrNotExecutable},
		{"exec format error", []string{garbage}, nil, "", 126, ErrNotExecutable},
		{"missing working directory", fake(), nil, filepath.Join(dir, "nope"), 126, nil},
		{"empty argv", nil, nil, "", 127, ErrCommandNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := StartChild(ChildSpec{Argv: tt.argv, Env: tt.env, Dir: tt.dir, Stdin: devNull(t)}, r)
			if err == nil {
				_ = c.KillGroup()
				t.Fatalf("started %q", tt.argv)
			}
			var se *StartError
			if !errors.As(err, &se) || se.ExitCode() != tt.code {
				t.Fatalf("error %v (%T), want a *StartError with code %d", err, err, tt.code)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if len(tt.argv) > 0 && !strings.Contains(err.Error(), strconv.Quote(tt.argv[0])) {
				t.Errorf("error %q does not name the command", err)
			}
			t.Log(err)
		})
	}
}

func TestChildFindsCommandInItsOwnPATHAndDir(t *testing.T) {
	r := newReaper(t)
	bin := t.TempDir()
	if err := os.Symlink(fakeproc, filepath.Join(bin, "my-fake")); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, r, ChildSpec{Argv: []string{"my-fake", "--exit", "4"}, Env: []string{"PATH=/nonexistent:" + bin}})
	if st := waitDone(t, c); st.Code != 4 {
		t.Errorf("via PATH: %s, want code 4", st)
	}
	// A relative path is relative to Dir, where the child runs.
	c, _ = start(t, r, ChildSpec{Argv: []string{"./my-fake", "--exit", "5"}, Dir: bin})
	if st := waitDone(t, c); st.Code != 5 {
		t.Errorf("relative to Dir: %s, want code 5", st)
	}
}

func TestChildEnvironment(t *testing.T) {
	r := newReaper(t)
	c, lines := start(t, r, ChildSpec{
		Argv: fake("--print-env", "FOO", "--print-env", "BAR", "--print-env", "HOME", "--exit", "0"),
		Env:  []string{"FOO=1", "BAR=x", "FOO=2"},
	})
	for _, want := range []string{"FOO=2", "BAR=x", "unset HOME"} {
		expect(t, lines, want)
	}
	waitDone(t, c)

	t.Setenv("SR_SUPERVISOR_TEST_INHERITED", "yes")
	c, lines = start(t, r, ChildSpec{Argv: fake("--print-env", "SR_SUPERVISOR_TEST_INHERITED", "--exit", "0")})
	expect(t, lines, "SR_SUPERVISOR_TEST_INHERITED=yes")
	waitDone(t, c)
}

func TestEveryForwardedSignalReachesTheChild(t *testing.T) {
	r := newReaper(t)
	c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--report-signals")})
	expect(t, lines, "ready pid=")
	for _, s := range signals.Forwarded() {
		if err := c.Signal(s, false); err != nil {
			t.Fatalf("Signal(%v): %v", s, err)
		}
		expect(t, lines, "signal "+signals.Name(s.(syscall.Signal)))
	}
	if _, ok := c.ExitStatus(); ok {
		t.Fatal("a reporting child ended")
	}
}

func TestGroupSignalReachesGrandchild(t *testing.T) {
	r := newReaper(t)
	c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--report-signals", "--grandchild")})
	expect(t, lines, "ready pid=")

	// To the child alone first: the grandchild must not see it.
	if err := c.Signal(syscall.SIGUSR2, false); err != nil {
		t.Fatal(err)
	}
	expect(t, lines, "signal SIGUSR2")
	for _, s := range signals.Forwarded() {
		if err := c.Signal(s, true); err != nil {
			t.Fatalf("Signal(%v, group): %v", s, err)
		}
		name := signals.Name(s.(syscall.Signal))
		got := map[string]bool{}
		for len(got) < 2 {
			skipped, line := expect(t, lines, "")
			for _, l := range skipped {
				t.Errorf("unexpected line %q", l)
			}
			switch line {
			case "signal " + name, "grandchild: signal " + name:
				got[line] = true
			default:
				t.Fatalf("after %s to the group: line %q", name, line)
			}
		}
	}
}

func TestSignalAfterExit(t *testing.T) {
	r := newReaper(t)
	c, _ := start(t, r, ChildSpec{Argv: fake("--exit", "0")})
	waitDone(t, c)
	if err := c.Signal(syscall.SIGTERM, false); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit: %v, want os.ErrProcessDone", err)
	}
	if err := c.Signal(syscall.SIGTERM, true); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("group Signal after exit: %v, want os.ErrProcessDone", err)
	}
	if err := c.KillGroup(); err != nil {
		t.Errorf("KillGroup after exit: %v", err)
	}
}

func TestStopChildReturnsAsSoonAsTheChildExits(t *testing.T) {
	r := newReaper(t)
	const timeout = 20 * time.Second
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--exit-on-term", "0")})
			expect(t, lines, "ready pid=")
			ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
			defer cancel()
			res, err := StopChild(ctx, c, syscall.SIGTERM, group, timeout)
			if err != nil {
				t.Fatal(err)
			}
			if res.Killed || !res.Exited || res.Status.Code != 0 {
				t.Errorf("result %+v, want sent, not killed, exited 0", res)
			}
			if res.Waited > timeout/4 {
				t.Errorf("returned after %v, timeout %v: it waited for the timeout", res.Waited, timeout)
			}
		})
	}
}

func TestStopChildKillsTheWholeGroupAfterTheTimeout(t *testing.T) {
	r := newReaper(t)
	const timeout = 300 * time.Millisecond
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--trap-term", "--grandchild")})
			_, ready := expect(t, lines, "ready pid=")
			grandchild, err := strconv.Atoi(ready[strings.LastIndex(ready, "=")+1:])
			if err != nil {
				t.Fatalf("ready line %q", ready)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			res, err := StopChild(ctx, c, syscall.SIGTERM, group, timeout)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Killed || !res.Exited || res.Status.Code != 128+9 {
				t.Errorf("result %+v (%s), want sent, killed, code 137", res, res.Status)
			}
			if res.Waited < timeout {
				t.Errorf("killed after %v, before the timeout %v", res.Waited, timeout)
			}
			expect(t, lines, "trapped SIGTERM")
			proctest.WaitDead(t, waitLimit, grandchild)
		})
	}
}

// A child stopped by SIGSTOP cannot act on TERM until it is continued:
// StopChild's SIGCONT must spare it the timeout.
func TestStopChildWakesAStoppedChild(t *testing.T) {
	r := newReaper(t)
	const timeout = 20 * time.Second
	c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--exit-on-term", "5")})
	expect(t, lines, "ready pid=")
	if err := c.Signal(syscall.SIGSTOP, false); err != nil {
		t.Fatal(err)
	}
	testsupport.EventuallyTrue(t, waitLimit, "the child stopped", func() bool {
		state, _, _ := proctest.Stat(c.Pid())
		return state == 'T'
	})
	res, err := StopChild(context.Background(), c, syscall.SIGTERM, false, timeout)
	if err != nil {
		t.Fatal(err)
	}
	if res.Killed || res.Status.Code != 5 || res.Waited > timeout/4 {
		t.Errorf("result %+v, want exit 5 well before %v", res, timeout)
	}
}

func TestStopChildAlreadyExited(t *testing.T) {
	r := newReaper(t)
	c, _ := start(t, r, ChildSpec{Argv: fake("--exit", "3")})
	waitDone(t, c)
	res, err := StopChild(context.Background(), c, syscall.SIGTERM, true, time.Hour)
	if err != nil || res.Waited != 0 || res.Killed || !res.Exited || res.Status.Code != 3 {
		t.Errorf("StopChild on an exited child = %+v, %v", res, err)
	}
}

func TestStopChildHonoursContext(t *testing.T) {
	r := newReaper(t)
	c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--ignore-term")})
	expect(t, lines, "ready pid=")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := StopChild(ctx, c, syscall.SIGTERM, false, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) || res.Killed || res.Exited {
		t.Errorf("StopChild = %+v, %v; want still running, DeadlineExceeded", res, err)
	}
}

func TestStopChildWithZeroTimeoutKillsAtOnce(t *testing.T) {
	r := newReaper(t)
	c, lines := start(t, r, ChildSpec{Argv: fake("--ready", "--ignore-term")})
	expect(t, lines, "ready pid=")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := StopChild(ctx, c, syscall.SIGTERM, false, 0)
	if err != nil || !res.Killed || res.Status.Code != 137 {
		t.Errorf("StopChild = %+v, %v; want killed, code 137", res, err)
	}
}
