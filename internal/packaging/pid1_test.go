package packaging_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/linetest"
	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// TestStaticWrapperAsPID1InEmptyRoot proves what the Dockerfile's image
// promises without a container engine: the wrapper, built by the
// Dockerfile's own go build line, is a static binary that runs as PID 1
// of a new PID namespace chrooted into a directory holding nothing else
// of note, reaps the orphans its child leaves, passes signals from outside
// the namespace on to the child, keeps the service registered meanwhile,
// deregisters, and exits with the child's status.
//
// What the root needs, and why (a distroless/static image has these and
// a little more: /etc/passwd, CA certificates, tzdata):
//   - /sr-wrapper: nothing else. The "bare root" case runs it with only
//     the two binaries in the root (no /proc, /dev, /etc, /tmp): it
//     reads no file at start, and a registry given by IP address needs no
//     /etc/hosts or /etc/resolv.conf (a host name would, as in any image).
//   - /proc, mounted for the new PID namespace: for the child, not the
//     wrapper. fakeproc re-executes itself for --orphans through
//     os.Executable, which reads /proc/self/exe; and the test inspects the
//     namespace's process table there (from the host, through
//     /proc/<pid>/root/proc, since the mount is private to the namespace).
//   - /dev/null: for the child, not the wrapper. Go's os/exec opens it for
//     the stdin of the processes fakeproc starts. Container engines always
//     provide /dev.
//   - /tmp: nothing here uses it; it is there because images have it.
func TestStaticWrapperAsPID1InEmptyRoot(t *testing.T) {
	ns := requireNamespaces(t)
	machine := hostMachine(t)
	root := testsupport.ModuleRoot(t)
	bins := t.TempDir()

	version := buildinfo.Info{Version: "v0.0.0-pid1test", Commit: "c0ffee1", Date: "2026-01-02T03:04:05Z"}
	wrapper := buildLikeDockerfile(t, root, bins, version)
	fakeproc := buildStatic(t, root, bins, "./testdata/fakeproc")
	for _, bin := range []string{wrapper, fakeproc} {
		if err := checkStaticELF(bin, machine); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(wrapper, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), version.String()) {
		t.Fatalf("sr-wrapper --version built as the Dockerfile does: %q, %v; want it to contain %q (the -ldflags -X paths are wrong?)",
			out, err, version.String())
	}

	t.Run("bare root: registers, deregisters, exit status is the child's", func(t *testing.T) {
		newRoot := makeRoot(t, wrapper, fakeproc, false)
		reg := registrytest.Start(t)
		c := registryClient(t, reg)
		run := ns.start(t, newRoot, false, wrapperEnv(reg),
			"/sr-wrapper", "--id=pid1-bare", "--interval=3", "--log-format=json",
			"--", "/fakeproc", "--ready", "--exit-on-term", "5")
		if _, err := waitLine(run.stdout, startWait, hasPrefix("ready pid=")); err != nil {
			t.Fatalf("child ready: %v\nstdout:\n%s\nstderr:\n%s", err, run.stdout, run.stderr)
		}
		run.checkWrapperIsPID1(t)
		svc := waitRegistered(t, c, "pid1-bare", nil)
		run.signal(t, syscall.SIGTERM)
		if code := run.waitExit(t); code != 5 {
			t.Errorf("exit status %d, want the child's 5\nstderr:\n%s", code, run.stderr)
		}
		checkDeregistered(t, c, svc)
	})

	t.Run("control: a PID 1 that does not reap leaves the orphans as zombies", func(t *testing.T) {
		// The same orphans under a PID 1 that waits for nobody (fakeproc
		// itself) must show up as zombies in the namespace's process
		// table: this proves that the next case's check would catch a
		// wrapper that does not reap.
		newRoot := makeRoot(t, wrapper, fakeproc, true)
		run := ns.start(t, newRoot, true, nil, "/fakeproc", "--ready", "--orphans", "3", "--sleep", "2m")
		if line, err := waitLine(run.stdout, startWait, hasPrefix("ready pid=")); err != nil || line != "ready pid=1" {
			t.Fatalf("fakeproc as PID 1: first line %q, %v; want \"ready pid=1\"\nstdout:\n%s\nstderr:\n%s",
				line, err, run.stdout, run.stderr)
		}
		orphans := run.orphans(t)
		testsupport.Eventually(t, eventWait, "the orphans are zombies under a non-reaping PID 1", func() error {
			procs, err := nsProcesses(run.procDir())
			if err != nil {
				return err
			}
			for _, pid := range orphans {
				if p, ok := procs[pid]; !ok || p.state != 'Z' || p.ppid != 1 {
					return fmt.Errorf("orphan %d: present %v, state %c, parent %d; want state Z, parent 1; table:\n%s",
						pid, ok, p.state, p.ppid, formatProcs(procs))
				}
			}
			return nil
		})
		run.kill(t)
	})

	t.Run("as PID 1: reaps orphans, forwards signals, exit status is the child's", func(t *testing.T) {
		newRoot := makeRoot(t, wrapper, fakeproc, true)
		reg := registrytest.Start(t)
		c := registryClient(t, reg)
		const id = "pid1-web"
		run := ns.start(t, newRoot, true, wrapperEnv(reg),
			"/sr-wrapper", "--id="+id, "--interval=3", "--log-format=json",
			"--", "/fakeproc", "--ready", "--orphans", "3", "--report-signals", "--exit-on-term", "7")

		ready, err := waitLine(run.stdout, startWait, hasPrefix("ready pid="))
		if err != nil {
			t.Fatalf("child ready: %v\nstdout:\n%s\nstderr:\n%s", err, run.stdout, run.stderr)
		}
		childPID, err := strconv.Atoi(strings.TrimPrefix(ready, "ready pid="))
		if err != nil {
			t.Fatalf("child's ready line %q: %v", ready, err)
		}

		// (a) The wrapper is PID 1, knows it, and is the child's parent.
		started := run.checkWrapperIsPID1(t)
		if pid, _ := started["pid"].(float64); int(pid) != childPID {
			t.Errorf("\"child started\" names pid %v, the child says it is %d", started["pid"], childPID)
		}
		procs, err := nsProcesses(run.procDir())
		if err != nil {
			t.Fatal(err)
		}
		if p := procs[childPID]; p.ppid != 1 {
			t.Errorf("the child's parent is %d, want 1 (the wrapper); table:\n%s", p.ppid, formatProcs(procs))
		}

		// (b) The orphans existed (fakeproc printed their pids), were
		// re-parented to the wrapper, and are gone: not a zombie is left.
		orphans := run.orphans(t)
		testsupport.Eventually(t, eventWait, "no zombie left in the namespace", func() error {
			procs, err := nsProcesses(run.procDir())
			if err != nil {
				return err
			}
			for _, pid := range orphans {
				if p, ok := procs[pid]; ok {
					return fmt.Errorf("orphan %d still there (state %c); table:\n%s", pid, p.state, formatProcs(procs))
				}
			}
			for pid, p := range procs {
				if p.state == 'Z' {
					return fmt.Errorf("zombie %d (%s); table:\n%s", pid, p.comm, formatProcs(procs))
				}
			}
			return nil
		})

		svc := waitRegistered(t, c, id, nil)

		// (c) Signals from outside the namespace reach the child. A
		// namespace's init gets only the signals it has handlers for, so
		// this also shows that the wrapper installed them.
		run.signal(t, syscall.SIGUSR1)
		if _, err := waitLine(run.stdout, eventWait, hasPrefix("signal SIGUSR1")); err != nil {
			t.Fatalf("SIGUSR1 to the wrapper did not reach the child: %v\nstdout:\n%s\nstderr:\n%s", err, run.stdout, run.stderr)
		}
		run.signal(t, syscall.SIGTERM)
		if _, err := waitLine(run.stdout, eventWait, hasPrefix("signal SIGTERM")); err != nil {
			t.Fatalf("SIGTERM to the wrapper did not reach the child: %v\nstdout:\n%s\nstderr:\n%s", err, run.stdout, run.stderr)
		}

		// (d) The exit status is the child's.
		if code := run.waitExit(t); code != 7 {
			t.Errorf("exit status %d, want the child's 7\nstderr:\n%s", code, run.stderr)
		}
		// (e) Deregistered before the wrapper exited.
		checkDeregistered(t, c, svc)
	})
}

// wrapperEnv points the wrapper at reg, through the environment as the
// Dockerfile's example does (docker run -e ...).
func wrapperEnv(reg *registrytest.Registry) []string {
	return []string{"SR_REGISTRY_URL=" + reg.URL, "SR_USERNAME=" + testUser, "SR_API_KEY=" + testKey}
}

// buildLikeDockerfile builds sr-wrapper into dir with the build stage's
// own `go build` line, read from the Dockerfile: its environment
// (CGO_ENABLED=0), flags (-trimpath, -ldflags with the build args
// substituted as `docker build --build-arg` would), only the output
// directory and the package list changed.
func buildLikeDockerfile(t *testing.T, root, dir string, v buildinfo.Info) string {
	t.Helper()
	env, args, err := dockerfileGoBuild(readRepoFile(t, root, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if env["CGO_ENABLED"] != "0" {
		t.Fatalf("Dockerfile: the go build runs with CGO_ENABLED=%q, want 0 (a static binary for distroless/static)", env["CGO_ENABLED"])
	}
	buildArgs := map[string]string{"VERSION": v.Version, "COMMIT": v.Commit, "DATE": v.Date}
	var out []string
	sawWrapper, sawTrimpath := false, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		var unknown []string
		a = os.Expand(a, func(name string) string {
			val, ok := buildArgs[name]
			if !ok {
				unknown = append(unknown, name)
			}
			return val
		})
		if len(unknown) > 0 {
			t.Fatalf("Dockerfile: the go build line uses %v, which this test does not know how to set", unknown)
		}
		switch {
		case a == "-o" && i+1 < len(args):
			out = append(out, "-o", dir+string(filepath.Separator))
			i++
		case strings.HasPrefix(a, "./"):
			// Only the wrapper, the binary under test.
			if a == "./cmd/sr-wrapper" {
				sawWrapper = true
				out = append(out, a)
			}
		default:
			sawTrimpath = sawTrimpath || a == "-trimpath"
			out = append(out, a)
		}
	}
	if !sawWrapper || !sawTrimpath {
		t.Fatalf("Dockerfile: the go build line %q lacks ./cmd/sr-wrapper or -trimpath", args)
	}
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	goCommand(t, root, envList, out...)
	return filepath.Join(dir, "sr-wrapper")
}

// dockerfileGoBuild finds the RUN instruction that runs go build and
// returns its environment assignments and the go command's arguments
// (starting with "build"), variables unexpanded.
func dockerfileGoBuild(dockerfile string) (env map[string]string, args []string, err error) {
	joined := strings.ReplaceAll(dockerfile, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "RUN ")
		if !ok || !strings.Contains(rest, "go build") {
			continue
		}
		words, err := shellWords(rest)
		if err != nil {
			return nil, nil, fmt.Errorf("RUN %s: %w", rest, err)
		}
		env = map[string]string{}
		i := 0
		for ; i < len(words); i++ {
			k, v, ok := strings.Cut(words[i], "=")
			if !ok || k == "" || strings.ContainsAny(k, "-/.$") {
				break
			}
			env[k] = v
		}
		if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
			return nil, nil, fmt.Errorf("RUN %s: want [VAR=value...] go build ..., got %q", rest, words)
		}
		return env, words[i+1:], nil
	}
	return nil, nil, errors.New("no RUN instruction with go build")
}

// makeRoot makes the otherwise empty root directory: the two binaries at
// /, and with full set the /proc mount point, /dev/null and /tmp (see the
// test's comment for why each).
func makeRoot(t *testing.T, wrapper, fakeproc string, full bool) string {
	t.Helper()
	root := t.TempDir()
	for _, bin := range []string{wrapper, fakeproc} {
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, filepath.Base(bin)), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		return root
	}
	for _, d := range []string{"proc", "dev", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	null := filepath.Join(root, "dev", "null")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("create %s (character device 1,3): %v", null, err)
	}
	// The umask applied to Mknod's mode.
	if err := os.Chmod(null, 0o666); err != nil {
		t.Fatal(err)
	}
	return root
}

// namespaces holds the host tools that make a PID namespace.
type namespaces struct {
	unshare, chroot string
}

// requireNamespaces skips the test unless it may create PID and mount
// namespaces with util-linux's unshare: root (CAP_SYS_ADMIN), the tools,
// and a kernel or container that allows it.
func requireNamespaces(t *testing.T) namespaces {
	t.Helper()
	if os.Geteuid() != 0 {
		testsupport.SkipUnsupported(t, "needs root to create PID and mount namespaces (unshare --pid --mount); CI runs as root")
	}
	var ns namespaces
	var err error
	if ns.unshare, err = exec.LookPath("unshare"); err != nil {
		testsupport.SkipUnsupported(t, "needs util-linux's unshare (scripts/test-deps.sh installs it): %v", err)
	}
	if ns.chroot, err = exec.LookPath("chroot"); err != nil {
		testsupport.SkipUnsupported(t, "needs coreutils' chroot: %v", err)
	}
	probe := exec.Command(ns.unshare, "--pid", "--fork", "--mount", "--mount-proc="+t.TempDir(), "true")
	if out, err := probe.CombinedOutput(); err != nil {
		testsupport.SkipUnsupported(t, "cannot create PID and mount namespaces or mount /proc here (a container without CAP_SYS_ADMIN?): unshare: %v: %s", err, out)
	}
	return ns
}

// nsRun is one run of a program as PID 1 of a new PID namespace:
// unshare --fork, whose child becomes PID 1, chroots and execs it.
type nsRun struct {
	cmd            *exec.Cmd // unshare, which exits with PID 1's status
	stdout, stderr *linetest.Lines
	exited         chan struct{} // closed once cmd has been waited for
	pid1           int           // host pid of the namespace's PID 1
}

// start runs argv in newRoot as PID 1 of a new PID namespace, with a new
// mount namespace and /proc mounted in it when mountProc is set. env is
// the whole environment: an image's process gets only what it is given.
func (ns namespaces) start(t *testing.T, newRoot string, mountProc bool, env []string, argv ...string) *nsRun {
	t.Helper()
	// --kill-child: if unshare dies (the test is killed, or gives up),
	// PID 1 gets SIGKILL, and with it everything in the namespace.
	args := []string{"--pid", "--fork", "--kill-child"}
	if mountProc {
		args = append(args, "--mount", "--mount-proc="+filepath.Join(newRoot, "proc"))
	}
	args = append(args, ns.chroot, newRoot)
	args = append(args, argv...)
	cmd := exec.Command(ns.unshare, args...)
	cmd.Env = env
	run := &nsRun{cmd: cmd, exited: make(chan struct{})}

	// Pipes of our own rather than StdoutPipe: the reader must see every
	// line, including those written after the wrapper's exit was noticed.
	var writers []*os.File
	for _, l := range []**linetest.Lines{&run.stdout, &run.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		*l = linetest.Collect(r)
		t.Cleanup(func() { _ = r.Close() })
		writers = append(writers, w)
	}
	cmd.Stdout, cmd.Stderr = writers[0], writers[1]
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd, err)
	}
	for _, w := range writers {
		_ = w.Close()
	}
	go func() {
		_ = cmd.Wait()
		close(run.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-run.exited:
		default:
			_ = cmd.Process.Kill()
			select {
			case <-run.exited:
			case <-time.After(exitWait):
				t.Errorf("unshare (pid %d) did not exit within %s of SIGKILL", cmd.Process.Pid, exitWait)
			}
		}
		if t.Failed() {
			t.Logf("stdout of %v:\n%s\nstderr:\n%s", argv, run.stdout, run.stderr)
		}
	})

	testsupport.Eventually(t, startWait, "unshare's child (the namespace's PID 1)", func() error {
		pid, err := childOf(cmd.Process.Pid)
		run.pid1 = pid
		return err
	})
	return run
}

// childOf finds the one child of ppid in the host's process table.
func childOf(ppid int) (int, error) {
	if kids := proctest.Children(ppid); len(kids) > 0 {
		return kids[0], nil
	}
	return 0, fmt.Errorf("no child of pid %d yet", ppid)
}

// procDir is the namespace's own /proc as the host sees it: through PID
// 1's root, in the namespace's mount table (the mount is private to it,
// so the root directory's proc is empty from the host).
func (r *nsRun) procDir() string {
	return fmt.Sprintf("/proc/%d/root/proc", r.pid1)
}

// checkWrapperIsPID1 checks that the namespace's PID 1 is the wrapper,
// from the kernel's point of view (NSpid, the namespace's /proc/1) and
// the wrapper's own ("child started" with reaps_orphans), and returns the
// "child started" log entry.
func (r *nsRun) checkWrapperIsPID1(t *testing.T) map[string]any {
	t.Helper()
	line, err := waitLine(r.stderr, startWait, logMsg("child started"))
	if err != nil {
		t.Fatalf("the wrapper's \"child started\": %v\nstderr:\n%s", err, r.stderr)
	}
	started := logEntry(line)
	if started["reaps_orphans"] != true {
		t.Errorf("\"child started\" says reaps_orphans=%v, want true: the wrapper does not know it is PID 1\n%s",
			started["reaps_orphans"], line)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid1))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			if f := strings.Fields(rest); len(f) < 2 || f[len(f)-1] != "1" {
				t.Errorf("host pid %d: NSpid %q, want it to be 1 in its namespace", r.pid1, rest)
			}
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(r.procDir(), "1", "cmdline"))
	if err != nil {
		// Without a /proc in the namespace, the host's view of the pid.
		cmdline, err = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.pid1))
	}
	if err != nil {
		t.Fatal(err)
	}
	if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); string(argv0) != "/sr-wrapper" {
		t.Errorf("PID 1 of the namespace runs %q, want /sr-wrapper", argv0)
	}
	return started
}

// orphans waits for fakeproc's report of its --orphans and returns their
// pids (in the namespace).
func (r *nsRun) orphans(t *testing.T) []int {
	t.Helper()
	lines, err := waitLines(r.stdout, startWait, 3, hasPrefix("orphan pid="))
	if err != nil {
		t.Fatalf("fakeproc's orphans: %v (got %q)\nstdout:\n%s\nstderr:\n%s", err, lines, r.stdout, r.stderr)
	}
	if _, err := waitLine(r.stdout, startWait, hasPrefix("orphans done")); err != nil {
		t.Fatalf("fakeproc's \"orphans done\": %v\nstdout:\n%s", err, r.stdout)
	}
	var pids []int
	for _, l := range lines {
		pid, err := strconv.Atoi(strings.TrimPrefix(l, "orphan pid="))
		if err != nil {
			t.Fatalf("orphan line %q: %v", l, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// signal sends sig to PID 1 from the host.
func (r *nsRun) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(r.pid1, sig); err != nil {
		t.Fatalf("send %s to the namespace's PID 1 (host pid %d): %v", sig, r.pid1, err)
	}
}

// waitExit waits for PID 1 to exit and returns its exit status, which
// unshare passes on as its own.
func (r *nsRun) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(exitWait):
		t.Fatalf("PID 1 did not exit within %s\nstdout:\n%s\nstderr:\n%s", exitWait, r.stdout, r.stderr)
	}
	st := r.cmd.ProcessState
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("PID 1 was killed by %s, want an exit status", ws.Signal())
	}
	return st.ExitCode()
}

// kill ends the namespace: SIGKILL to unshare, whose --kill-child passes
// it on to PID 1.
func (r *nsRun) kill(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Kill()
	select {
	case <-r.exited:
	case <-time.After(exitWait):
		t.Fatalf("unshare did not exit within %s of SIGKILL", exitWait)
	}
}

// procInfo is what the tests need of /proc/<pid>/stat.
type procInfo struct {
	comm  string
	state byte
	ppid  int
}

// nsProcesses reads the process table of a /proc directory. Processes
// that vanish while it reads are left out.
func nsProcesses(procDir string) (map[int]procInfo, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("read the process table: %w", err)
	}
	procs := map[int]procInfo{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			return nil, fmt.Errorf("%s/%d/stat: cannot parse %q", procDir, pid, s)
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			return nil, fmt.Errorf("%s/%d/stat: cannot parse %q", procDir, pid, s)
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s/%d/stat: parent pid: %w", procDir, pid, err)
		}
		procs[pid] = procInfo{comm: s[open+1 : end], state: f[0][0], ppid: ppid}
	}
	return procs, nil
}

// formatProcs prints a process table for a failure message.
func formatProcs(procs map[int]procInfo) string {
	pids := make([]int, 0, len(procs))
	for pid := range procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	var b strings.Builder
	for _, pid := range pids {
		p := procs[pid]
		fmt.Fprintf(&b, "  %d %s %c ppid=%d\n", pid, p.comm, p.state, p.ppid)
	}
	return b.String()
}
