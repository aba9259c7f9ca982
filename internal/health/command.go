package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sr-wrapper/sr-wrapper/internal/execpath"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

// DefaultOutputLimit is how much of a command check's output is kept for
// the debug log when CommandOptions.OutputLimit is zero.
const DefaultOutputLimit = 4 << 10

const (
	// killWait bounds the wait for a killed command's exit status: after
	// SIGKILL only a process stuck in the kernel outlives it, and a check
	// must not hang on one.
	killWait = 2 * time.Second
	// outputGrace bounds the read of output that a descendant which left
	// the command's process group may still hold the pipe open for.
	outputGrace = 100 * time.Millisecond
)

// ProcessStarter starts a process and reports its end: StartProcess
// starts it as os.StartProcess does, and the channel receives its status
// once it has exited and been reaped. *signals.Reaper is one, and the
// wrapper must pass its own: when it is PID 1 or a subreaper, its Reaper
// collects every exited child, and a command waited for any other way
// (exec.Cmd.Wait, Run, Output) would lose its status to it.
type ProcessStarter interface {
	StartProcess(path string, argv []string, attr *os.ProcAttr) (*os.Process, <-chan signals.WaitResult, error)
}

// CommandOptions configure Command. Starter is required.
type CommandOptions struct {
	// Starter starts each run of the command and waits for it: the
	// wrapper's *signals.Reaper.
	Starter ProcessStarter
	// Env is the command's complete environment, "KEY=value" strings
	// (the last of a repeated key wins); nil means the wrapper's own, as
	// it is when Command is called.
	Env []string
	// Dir is the command's working directory; "" means the wrapper's.
	// A relative command path with a slash is taken relative to it.
	Dir string
	// OutputLimit bounds how much of the command's output (stdout and
	// stderr together) is kept for the debug log; the rest is read and
	// dropped so that the command never blocks on a full pipe. Zero means
	// DefaultOutputLimit.
	OutputLimit int
	// Logger receives each run's exit status and output, at debug level;
	// nil means none.
	Logger *zap.Logger
}

type commandChecker struct {
	argv    []string
	path    string // argv[0] resolved
	shown   string
	env     []string
	dir     string
	limit   int
	starter ProcessStarter
	log     *zap.Logger
}

// Command returns a Checker that runs argv, never through a shell by
// itself (a check that needs pipes or expansions runs sh -c: see
// ParseCommand) and is healthy when it exits with status 0. argv[0] is
// looked up now, in the PATH of opts.Env and relative to opts.Dir as the
// wrapped child's command is (package execpath), so that a missing
// command is reported before anything starts.
//
// Each run is in a process group of its own, its stdin is /dev/null, and
// its stdout and stderr go to one pipe that the check reads, keeping the
// first OutputLimit bytes for the debug log. When the context given to
// Check ends first, the whole process group gets SIGKILL and the check
// fails. A run leaves nothing behind: when the command has ended, what
// remains of its process group is killed too. (The group id cannot name
// another process while any member is alive, and a freed pid is reused
// only after the kernel has cycled through all the others.)
//
// The process is started and waited for only through opts.Starter.
func Command(argv []string, opts CommandOptions) (Checker, error) {
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	env = execpath.Dedup(env)
	path, err := resolveArgv(argv, env, opts.Dir)
	if err != nil {
		return nil, err
	}
	if opts.Starter == nil {
		return nil, errors.New("command check: no ProcessStarter: the wrapper's reaper must start and wait for it")
	}
	c := &commandChecker{
		argv:    append([]string(nil), argv...),
		path:    path,
		shown:   "command " + joinCommand(argv),
		env:     env,
		dir:     opts.Dir,
		limit:   opts.OutputLimit,
		starter: opts.Starter,
		log:     opts.Logger,
	}
	if c.limit <= 0 {
		c.limit = DefaultOutputLimit
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c, nil
}

func resolveArgv(argv, env []string, dir string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New("empty command")
	}
	for _, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return "", fmt.Errorf("argument %q contains a NUL byte", a)
		}
	}
	return execpath.Find(argv[0], env, dir)
}

func (c *commandChecker) String() string { return c.shown }

func (c *commandChecker) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: not started: %w", c.shown, err)
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("%s: open stdin: %w", c.shown, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		stdin.Close()
		return fmt.Errorf("%s: make output pipe: %w", c.shown, err)
	}
	attr := &os.ProcAttr{
		Dir:   c.dir,
		Env:   c.env,
		Files: []*os.File{stdin, pw, pw},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	p, exited, err := c.starter.StartProcess(c.path, c.argv, attr)
	stdin.Close()
	pw.Close() // so that the read ends when the command's side closes
	if err != nil {
		pr.Close()
		return fmt.Errorf("%s: start: %w", c.shown, err)
	}
	pid := p.Pid // before Release, which sets it to -1
	// The starter waits; the handle would only hold a pidfd open.
	_ = p.Release()
	outc := make(chan capturedOutput, 1)
	go func() { outc <- readBounded(pr, c.limit) }()

	var res signals.WaitResult
	var cut error
	select {
	case res = <-exited:
	case <-ctx.Done():
		cut = ctx.Err()
		killGroup(pid)
		select {
		case res = <-exited:
		case <-time.After(killWait):
			res = signals.WaitResult{Pid: pid, Err: fmt.Errorf("still not exited %s after SIGKILL", killWait)}
		}
	}
	killGroup(pid)
	_ = pr.SetReadDeadline(time.Now().Add(outputGrace))
	out := <-outc
	pr.Close()

	status := res.ExitStatus()
	c.log.Debug("health check command ended", zap.String("check", c.shown), zap.Int("pid", pid),
		zap.Stringer("status", status), zap.ByteString("output", out.data), zap.Bool("output_truncated", out.truncated))
	switch {
	case cut != nil:
		return fmt.Errorf("%s: killed with its process group, as the check was cut off: %w", c.shown, cut)
	case res.Err != nil:
		return fmt.Errorf("%s: %w", c.shown, res.Err)
	case status.Code == 0:
		return nil
	}
	return fmt.Errorf("%s: %s", c.shown, status)
}

func killGroup(pgid int) {
	if pgid <= 0 {
		return // kill(2) would take it for this process's group, or everyone
	}
	// ESRCH (the group is empty) is the normal case; nothing else can be
	// done about the others.
	_ = unix.Kill(-pgid, unix.SIGKILL)
}

type capturedOutput struct {
	data      []byte
	truncated bool
}

// readBounded reads r to its end (or error), keeping the first limit
// bytes.
func readBounded(r io.Reader, limit int) capturedOutput {
	var out capturedOutput
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		keep := min(n, limit-len(out.data))
		out.data = append(out.data, buf[:keep]...)
		if n > keep {
			out.truncated = true
		}
		if err != nil {
			return out
		}
	}
}
