package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// mono is CLOCK_MONOTONIC in nanoseconds, the clock the probe stamps with:
// one clock for every process on the machine.
func mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// binaries are the programs under measurement.
type binaries struct {
	wrapper, registry, probe, launcher string
	// compare is another sr-wrapper measured beside wrapper, or "".
	compare string
	// tini is empty when tini is not installed; its rows are skipped.
	tini string
}

const module = "github.com/sr-wrapper/sr-wrapper"

// build builds the commands pkgs (paths inside the module) as `make
// build` does (static, trimmed, stripped), so that what is measured is
// what ships, and returns each binary's path.
func build(ctx context.Context, dir string, pkgs ...string) ([]string, error) {
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}
	var bins []string
	for _, p := range pkgs {
		args = append(args, module+"/"+p)
		bins = append(bins, filepath.Join(dir, filepath.Base(p)))
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %v into %s: %w\n%s", pkgs, dir, err, out)
	}
	return bins, nil
}

// cleanEnv is the benchmark's environment without anything that would
// change how sr-wrapper behaves (SR_DEBUG, SR_REGISTRY_URL, a systemd
// NOTIFY_SOCKET): every setting the runs need is given as a flag.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SR_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// registryProc is the sr-registry binary running as a child process
// (registrytest.Launch), so that its CPU time and memory can be read from
// /proc apart from the benchmark's own.
type registryProc struct {
	child *registrytest.Child
	pid   int
	url   string   // http://127.0.0.1:PORT/v1.0
	log   *os.File // dir/sr-registry.log
}

// startRegistry starts bin in dev mode on a free loopback port with a
// fresh data dir under dir and waits for its "listening" line. Its log
// goes to dir/sr-registry.log.
func startRegistry(ctx context.Context, bin, dir string) (*registryProc, error) {
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("start sr-registry: %w", err)
	}
	logPath := filepath.Join(dir, "sr-registry.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start sr-registry: %w", err)
	}
	child, err := registrytest.Launch(ctx, bin, log, "--data-dir", data)
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("start sr-registry: %w; see %s", err, logPath)
	}
	return &registryProc{child: child, pid: child.PID, url: child.URL, log: log}, nil
}

// stop ends the registry gracefully, or kills it after 15 s.
func (p *registryProc) stop() {
	_, _ = p.child.Stop(syscall.SIGTERM)
	p.log.Close()
}

// client is an API client of the registry for tenant username (dev mode:
// any username is its own tenant).
func (p *registryProc) client(username string) (*srapi.Client, error) {
	return srapiClient(p.url, username)
}

// srapiClient is an API client of the registry at url for username.
func srapiClient(url, username string) (*srapi.Client, error) {
	c, err := srapi.NewClient(srapi.Config{RegistryURL: url, Username: username, APIKey: "bench-key", RequestTimeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("client of %s for %q: %w", url, username, err)
	}
	return c, nil
}

// deadRegistryURL is a loopback URL where nothing listens: the port was
// free a moment ago.
func deadRegistryURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return "http://" + addr + "/v1.0", nil
}

// wrapperArgv is the command line of sr-wrapper around child.
func wrapperArgv(bin, id, registryURL, username string, child ...string) []string {
	return append([]string{bin, "--id=" + id, "--interval=3", "--registry=" + registryURL,
		"--username=" + username, "--api-key=bench-key", "--log-format=json", "--"}, child...)
}

// tiniArgv is the command line of tini around child.
func tiniArgv(bin string, child ...string) []string {
	return append([]string{bin, "--"}, child...)
}

// proc is a process under measurement whose probe reports on a pipe.
type proc struct {
	cmd    *exec.Cmd
	out    *os.File      // read end of the probe's stdout
	lines  *bufio.Reader // over out
	stdin  *os.File      // write end of the probe's stdin; nil when not asked for
	waited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, set before waited closes
}

// procOptions say how to start a proc.
type procOptions struct {
	// Stdin gives the process a pipe as stdin (the probe's -wait mode
	// ends on a line or EOF there); without it stdin is /dev/null.
	Stdin bool
	// SharedStdin, when set, is the stdin of the process instead.
	SharedStdin *os.File
	// NoStdout sends stdout to /dev/null instead of a pipe.
	NoStdout bool
	// Log is where stderr goes; "" means /dev/null.
	Log string
	// Started, when set, receives the CLOCK_MONOTONIC stamp taken just
	// before the process was started.
	Started *int64
	// Env is added to the environment.
	Env []string
}

// startProc starts argv. The caller must eventually end the process and
// call wait.
func startProc(argv []string, o procOptions) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), o.Env...)
	p := &proc{cmd: cmd, waited: make(chan struct{})}
	var closeAfter []*os.File
	defer func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	if !o.NoStdout {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("start %s: stdout pipe: %w", argv[0], err)
		}
		p.out, p.lines = r, bufio.NewReader(r)
		cmd.Stdout = w
		closeAfter = append(closeAfter, w)
	}
	switch {
	case o.SharedStdin != nil:
		cmd.Stdin = o.SharedStdin
	case o.Stdin:
		r, w, err := os.Pipe()
		if err != nil {
			p.closeFiles()
			return nil, fmt.Errorf("start %s: stdin pipe: %w", argv[0], err)
		}
		p.stdin = w
		cmd.Stdin = r
		closeAfter = append(closeAfter, r)
	}
	if o.Log != "" {
		f, err := os.Create(o.Log)
		if err != nil {
			p.closeFiles()
			return nil, fmt.Errorf("start %s: %w", argv[0], err)
		}
		cmd.Stderr = f
		closeAfter = append(closeAfter, f)
	}
	at := mono()
	if err := cmd.Start(); err != nil {
		p.closeFiles()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	if o.Started != nil {
		*o.Started = at
	}
	go func() {
		p.err = cmd.Wait()
		close(p.waited)
	}()
	return p, nil
}

func (p *proc) closeFiles() {
	if p.out != nil {
		p.out.Close()
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// line reads the probe's next line, waiting at most d.
func (p *proc) line(d time.Duration) (string, error) {
	if p.lines == nil {
		return "", errors.New("no stdout pipe")
	}
	if err := p.out.SetReadDeadline(time.Now().Add(d)); err != nil {
		return "", fmt.Errorf("read the probe's output: %w", err)
	}
	l, err := p.lines.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read the probe's output (pid %d): %w", p.pid(), err)
	}
	return strings.TrimSuffix(l, "\n"), nil
}

// expect reads lines until one starts with word, and returns its fields
// after the word.
func (p *proc) expect(word string, d time.Duration) ([]string, error) {
	deadline := time.Now().Add(d)
	for {
		l, err := p.line(time.Until(deadline))
		if err != nil {
			return nil, fmt.Errorf("wait for %q: %w", word, err)
		}
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == word {
			return f[1:], nil
		}
	}
}

// stamp reads "WORD ... NS" and returns the stamp in field i after WORD.
func (p *proc) stamp(word string, i int, d time.Duration) (int64, []string, error) {
	f, err := p.expect(word, d)
	if err != nil {
		return 0, nil, err
	}
	if len(f) <= i {
		return 0, nil, fmt.Errorf("probe line %q %v: too short", word, f)
	}
	ns, err := strconv.ParseInt(f[i], 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("probe line %q %v: %w", word, f, err)
	}
	return ns, f, nil
}

// wait waits at most d for the process to exit, then kills it.
func (p *proc) wait(d time.Duration) error {
	defer p.closeFiles()
	select {
	case <-p.waited:
		return p.err
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.waited
		return fmt.Errorf("pid %d (%s) did not exit within %s; killed", p.pid(), p.cmd.Path, d)
	}
}

// stopAll sends sig to each process and waits for them all, at most d in
// total; it returns the first error.
func stopAll(ps []*proc, sig syscall.Signal, d time.Duration) error {
	for _, p := range ps {
		_ = p.cmd.Process.Signal(sig)
	}
	deadline := time.Now().Add(d)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for _, p := range ps {
		wg.Go(func() {
			if err := p.wait(time.Until(deadline)); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// Reading /proc.

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// cpuSample is the CPU time a process has used so far, read two ways.
type cpuSample struct {
	// ticks is utime+stime from /proc/PID/stat: every thread, exited ones
	// too, but in 10 ms steps.
	ticks time.Duration
	// threads is se.sum_exec_runtime of each live thread from
	// /proc/PID/task/TID/sched, to the nanosecond; nil when the kernel
	// does not offer it (CONFIG_SCHED_DEBUG).
	threads map[int]time.Duration
}

// sampleCPU reads the CPU time pid has used so far.
func sampleCPU(pid int) (cpuSample, error) {
	ticks, err := cpuTicks(pid)
	if err != nil {
		return cpuSample{}, err
	}
	s := cpuSample{ticks: ticks}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return s, nil
	}
	threads := map[int]time.Duration{}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		ns, ok := sumExecRuntime(fmt.Sprintf("/proc/%d/task/%d/sched", pid, tid))
		if !ok {
			// Not offered by this kernel, or the thread just exited.
			continue
		}
		threads[tid] = ns
	}
	if len(threads) > 0 {
		s.threads = threads
	}
	return s, nil
}

// cpuBetween is the CPU time used between two samples of one process: the
// precise per-thread figure, unless a thread exited in between and took
// its time with it, which the coarse figure shows by exceeding the precise
// one by more than its resolution.
func cpuBetween(a, b cpuSample) time.Duration {
	coarse := b.ticks - a.ticks
	if a.threads == nil || b.threads == nil {
		return coarse
	}
	var precise time.Duration
	for tid, t := range b.threads {
		precise += t - a.threads[tid]
	}
	if coarse > precise+time.Second/clockTick {
		return coarse
	}
	return precise
}

// sumExecRuntime reads se.sum_exec_runtime (milliseconds with six
// decimals) from a sched file.
func sumExecRuntime(path string) (time.Duration, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) != "se.sum_exec_runtime" {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, false
		}
		return time.Duration(ms * float64(time.Millisecond)), true
	}
	return 0, false
}

// cpuTicks is the user+system CPU time the process has used so far, all
// its threads included (exited ones too), in 10 ms steps.
func cpuTicks(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("read CPU time of %d: malformed stat %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// After the name: state(3) ... utime(14) stime(15), so 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time of %d: short stat %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// memory is a process's resident set in bytes: now, at its peak, and now
// split into anonymous memory (heap, stacks: the process's own) and
// file-backed pages (mostly the executable's code and data, shared with
// every other process running the same binary); and its proportional set
// size, where each shared page counts divided by the number of processes
// that map it: what one more such process really costs the machine.
type memory struct{ rss, hwm, anon, file, pss int64 }

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		var field *int64
		switch k {
		case "VmRSS":
			field = &m.rss
		case "VmHWM":
			field = &m.hwm
		case "RssAnon":
			field = &m.anon
		case "RssFile":
			field = &m.file
		}
		if !ok || field == nil {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("read memory of %d: %s: %w", pid, k, err)
		}
		*field = kb << 10
	}
	if err := sc.Err(); err != nil {
		return memory{}, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	// Pss needs smaps_rollup (Linux 4.14); without it, it stays 0.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Pss:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err == nil {
					m.pss = kb << 10
				}
				break
			}
		}
	}
	return m, nil
}

// waitRegistered polls until the service exists, at most d.
func waitRegistered(ctx context.Context, c *srapi.Client, id string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		_, err := c.GetService(ctx, id)
		if err == nil {
			return nil
		}
		if !srapi.IsNotFound(err) || ctx.Err() != nil {
			return fmt.Errorf("wait for service %q to be registered: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for service %q to be registered: %w", id, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// countLines counts the lines of the files that contain any of needles,
// and returns up to 3 of them as examples.
func countLines(paths []string, needles ...string) (int, []string, error) {
	n := 0
	var examples []string
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return 0, nil, fmt.Errorf("read log %s: %w", path, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			for _, nd := range needles {
				if strings.Contains(sc.Text(), nd) {
					n++
					if len(examples) < 3 {
						examples = append(examples, filepath.Base(path)+": "+sc.Text())
					}
					break
				}
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, nil, fmt.Errorf("read log %s: %w", path, err)
		}
	}
	return n, examples, nil
}
