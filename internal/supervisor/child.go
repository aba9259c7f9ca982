// Package supervisor runs the wrapped program: it starts the child, passes
// signals on to it, stops it with a grace period, stops what it leaves
// behind in its process group (see KillMode), and turns its end into
// the wrapper's exit status (the code, or 128+N after signal N, 127 for a
// command not found, 126 for one that cannot be executed).
//
// It does not talk to the registry itself and knows nothing of HTTP: the
// run loop only combines the child's life with the registry session it is
// given.
package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sr-wrapper/sr-wrapper/internal/execpath"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"golang.org/x/sys/unix"
)

// ChildSpec describes the program to run.
type ChildSpec struct {
	// Argv is the command and its arguments; it must not be empty. Argv[0]
	// is looked up in the PATH of Env when it has no slash (in the default
	// path /usr/local/sbin:...:/bin when Env has no PATH) and is passed to
	// the program unchanged as its argv[0].
	Argv []string
	// Env is the child's complete environment, "KEY=value" strings. nil
	// means the wrapper's own; an empty non-nil slice means none at all.
	// When a key appears twice the last value wins.
	Env []string
	// Dir is the child's working directory; "" means the wrapper's.
	Dir string
	// Stdin, Stdout and Stderr are handed to the child as they are: it gets
	// the same open files, never a pipe the wrapper copies through. nil
	// means the wrapper's own os.Stdin, os.Stdout, os.Stderr.
	Stdin, Stdout, Stderr *os.File
}

// Child is the main child process. It is in its own process group (the
// group id is its pid), so that a signal meant for the wrapper's group, a
// ^C for instance, never reaches it twice, and so that the whole group can
// be killed.
//
// Its methods are safe for concurrent use, but the intent is that one
// goroutine, the run loop, owns it.
type Child struct {
	pid  int
	proc *os.Process

	// Terminal handed to the child, when ttyFd >= 0.
	ttyFd      int
	parentPgrp int

	done   chan struct{}
	status signals.ExitStatus // written once before done is closed
}

// StartChild starts the child described by spec through the reaper, which
// from then on is the only one to wait for it. It returns a *StartError,
// with its exit code, when the command cannot be found (127) or executed
// (126).
//
// When stdin is a terminal and the wrapper's process group is its
// foreground group, the child's group becomes the foreground group (as
// tini does), so that an interactive child can read its input and ^C and ^Z
// reach it directly. The wrapper then ignores SIGTTIN and SIGTTOU for the
// rest of its life, as tini does: it is now a background process on that
// terminal, and must still be able to write its logs there (with "stty
// tostop") and take the terminal back. That is done after the fork, so
// the child keeps the default dispositions. When the child exits, the
// terminal goes back to the wrapper's group if the child's group still
// holds it, so that a shell script that ran the wrapper can use the
// terminal again. A wrapper that runs in the background of its terminal
// leaves the terminal alone.
func StartChild(spec ChildSpec, reaper *signals.Reaper) (*Child, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, notFound("", "", fmt.Errorf("%w: no command given", ErrCommandNotFound))
	}
	if reaper == nil {
		return nil, errors.New("start child: no reaper")
	}
	name := spec.Argv[0]
	env := spec.Env
	if env == nil {
		env = os.Environ()
	}
	env = execpath.Dedup(env)
	if spec.Dir != "" {
		if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
			if err == nil {
				err = syscall.ENOTDIR
			}
			return nil, notExecutable(name, "", fmt.Errorf("working directory %q: %w", spec.Dir, err))
		}
	}
	path, err := lookPath(name, env, spec.Dir)
	if err != nil {
		return nil, err
	}

	stdin, stdout, stderr := orStd(spec.Stdin, os.Stdin), orStd(spec.Stdout, os.Stdout), orStd(spec.Stderr, os.Stderr)
	c := &Child{ttyFd: -1, done: make(chan struct{})}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if fd, pgrp, ok := foregroundTerminal(stdin); ok {
		// Go's child side sets the group with all signals blocked, so the
		// TIOCSPGRP from what is then a background group raises no SIGTTOU.
		sys.Foreground = true
		sys.Ctty = fd
		c.ttyFd, c.parentPgrp = fd, pgrp
	}
	attr := &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   env,
		Files: []*os.File{stdin, stdout, stderr},
		Sys:   sys,
	}
	proc, exited, err := reaper.StartProcess(path, spec.Argv, attr)
	if err != nil {
		if errors.Is(err, signals.ErrReaperClosed) {
			return nil, err
		}
		return nil, classifyExecError(name, path, err)
	}
	c.proc, c.pid = proc, proc.Pid
	if c.ttyFd >= 0 {
		signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU)
	}
	go c.await(exited)
	return c, nil
}

func orStd(f, std *os.File) *os.File {
	if f != nil {
		return f
	}
	return std
}

// foregroundTerminal reports whether f is this process's controlling
// terminal with this process's group in the foreground. TIOCGPGRP fails
// with ENOTTY for anything else (a file, a pipe, another terminal).
func foregroundTerminal(f *os.File) (fd, pgrp int, ok bool) {
	fd = int(f.Fd())
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil {
		return 0, 0, false
	}
	pgrp = unix.Getpgrp()
	return fd, pgrp, fg == pgrp
}

func (c *Child) await(exited <-chan signals.WaitResult) {
	c.status = (<-exited).ExitStatus()
	if c.ttyFd >= 0 {
		// Best effort: the terminal may be gone, or already taken by
		// someone else, whom we must not rob.
		if fg, err := unix.IoctlGetInt(c.ttyFd, unix.TIOCGPGRP); err == nil && fg == c.pid {
			_ = unix.IoctlSetPointerInt(c.ttyFd, unix.TIOCSPGRP, c.parentPgrp)
		}
	}
	close(c.done)
	// The pid may be reused from now on; signals go through the pidfd, and
	// after Done not at all.
	_ = c.proc.Release()
}

// Pid is the child's process id, which is also its process group id.
func (c *Child) Pid() int { return c.pid }

// Done is closed once the child has exited and been reaped, and its
// ExitStatus is known.
func (c *Child) Done() <-chan struct{} { return c.done }

// ExitStatus returns how the child ended, and false while it is still
// running.
func (c *Child) ExitStatus() (signals.ExitStatus, bool) {
	select {
	case <-c.done:
		return c.status, true
	default:
		return signals.ExitStatus{}, false
	}
}

// Signal sends sig to the child, or with toGroup to its whole process
// group. After the child has exited it returns an error wrapping
// os.ErrProcessDone rather than risk signalling a process that reused the
// pid; a group signal is still sent then (stragglers of the group keep the
// group id from being reused), and reports os.ErrProcessDone only when the
// group is empty. If the child left its group (setsid, setpgid), a group
// signal that finds the group empty goes to the child itself.
func (c *Child) Signal(sig os.Signal, toGroup bool) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal child %d: %v is not a syscall.Signal", c.pid, sig)
	}
	if toGroup {
		err := unix.Kill(-c.pid, s)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("send %s to process group %d: %w", signals.Name(s), c.pid, err)
		}
		if c.exited() {
			return fmt.Errorf("send %s to process group %d: %w", signals.Name(s), c.pid, os.ErrProcessDone)
		}
	}
	if c.exited() {
		return fmt.Errorf("send %s to child %d: %w", signals.Name(s), c.pid, os.ErrProcessDone)
	}
	if err := c.proc.Signal(s); err != nil {
		if c.exited() {
			// Lost the race with the reaper (and Release).
			err = os.ErrProcessDone
		}
		return fmt.Errorf("send %s to child %d: %w", signals.Name(s), c.pid, err)
	}
	return nil
}

// KillGroup sends SIGKILL to the child's process group, and to the child
// itself in case it left the group. An empty group is not an error.
func (c *Child) KillGroup() error {
	err := unix.Kill(-c.pid, unix.SIGKILL)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", c.pid, err)
	}
	if !c.exited() {
		if err := c.proc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) && !c.exited() {
			return fmt.Errorf("kill child %d: %w", c.pid, err)
		}
	}
	return nil
}

func (c *Child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
