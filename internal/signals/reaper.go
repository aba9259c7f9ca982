package signals

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors a WaitResult may carry.
var (
	// ErrReaperClosed: the Reaper was closed before the process exited.
	ErrReaperClosed = errors.New("reaper closed")
	// ErrStatusLost: the process is gone but its status was collected by
	// someone else (a wait outside the Reaper, or SIGCHLD set to SIG_IGN).
	ErrStatusLost = errors.New("exit status collected by someone else")
)

// safetyInterval is how often the Reaper looks for exited children without
// being told. SIGCHLD makes this redundant in a correct program; it is there
// so that a lost subscription (someone's signal.Reset(SIGCHLD)) costs ten
// seconds of delay rather than a wrapper that never sees its child exit.
// Not shorter: each pass wakes the idle wrapper (and the Go runtime's
// sysmon with it); at one second, bench/wrapper measured it at about a
// quarter of the idle wrapper's CPU at --interval 3 (docs/BENCHMARKS.md).
const safetyInterval = 10 * time.Second

// WaitResult is how a process started through a Reaper ended.
type WaitResult struct {
	Pid    int
	Status syscall.WaitStatus
	// Err is non-nil when Status could not be collected (ErrStatusLost,
	// ErrReaperClosed); Status is then zero.
	Err error
}

// ReaperOptions configure NewReaper. The zero value reaps only the
// processes started through the Reaper, unless the process is PID 1 or
// already a subreaper.
type ReaperOptions struct {
	// Subreaper makes this process a child subreaper (prctl
	// PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to it
	// instead of to PID 1, and the Reaper reaps them. Ignored as PID 1,
	// which gets orphans anyway. Close clears the attribute again.
	Subreaper bool
	// OnOrphan, if set, is called for every reaped process that was not
	// started through StartProcess, from the Reaper's goroutine. It must not block
	// and must not call the Reaper.
	OnOrphan func(pid int, status syscall.WaitStatus)
}

// Reaper owns all waiting for child processes of this process, so that
// the main child's exit status and the reaping of orphans never compete
// for the same zombie (a wait4(-1) beside exec.Cmd.Wait steals statuses).
// There is one code path, driven by SIGCHLD with a periodic safety pass:
//
//   - When the process is PID 1 or a subreaper, orphans are re-parented to
//     it and become its zombies. The Reaper then collects every exited
//     child with wait4(-1, WNOHANG|__WALL) until none is left, hands the
//     statuses of the processes started through StartProcess to their
//     waiters, and discards the rest. From then on nothing else in the process may
//     wait for a child: exec.Cmd.Wait, Run and Output would fail or lose
//     the status. Start every child through the Reaper.
//   - Otherwise no orphan can become this process's child, and the Reaper
//     calls wait4(pid, WNOHANG) only for the pids it started. Other code in
//     the process (tests, for instance) may still run commands with
//     exec.Cmd.
//
// StartProcess holds the Reaper's lock across the fork, so that a child
// that exits at once cannot be reaped as an orphan before its pid is known.
//
// A Reaper is safe for concurrent use. Create one per process.
type Reaper struct {
	reapAll      bool
	setSubreaper bool
	onOrphan     func(int, syscall.WaitStatus)

	sigchld chan os.Signal
	kick    chan struct{}
	quit    chan struct{}
	exited  chan struct{}

	mu      sync.Mutex
	closed  bool
	waiting map[int]chan WaitResult
}

// NewReaper starts the Reaper's goroutine and subscribes it to SIGCHLD.
// It reaps orphans when the process is PID 1, when opts.Subreaper is set,
// or when the process already is a subreaper (the attribute survives exec,
// so whoever exec'd the wrapper may have set it).
func NewReaper(opts ReaperOptions) (*Reaper, error) {
	r := &Reaper{
		onOrphan: opts.OnOrphan,
		sigchld:  make(chan os.Signal, 1),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		exited:   make(chan struct{}),
		waiting:  make(map[int]chan WaitResult),
	}
	isInit := os.Getpid() == 1
	if opts.Subreaper && !isInit {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become a child subreaper: prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
		r.setSubreaper = true
	}
	r.reapAll = isInit || r.setSubreaper || isSubreaper()
	go r.run()
	return r, nil
}

func isSubreaper() bool {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return err == nil && v != 0
}

// ReapsOrphans reports whether the Reaper collects every child of the
// process (PID 1 or subreaper) rather than only those it started.
func (r *Reaper) ReapsOrphans() bool { return r.reapAll }

// StartProcess starts a process as os.StartProcess does and registers it:
// the returned channel receives its WaitResult once, when it has exited
// and been reaped. The Reaper is the only one to wait for it: the caller
// may signal the process, and should Release it when done, but must never
// call its Wait. The lock is held across the fork, so that a process that
// exits at once cannot be reaped as an orphan before its pid is known.
// Errors of os.StartProcess are returned as they are.
func (r *Reaper) StartProcess(path string, argv []string, attr *os.ProcAttr) (*os.Process, <-chan WaitResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, fmt.Errorf("start %s: %w", path, ErrReaperClosed)
	}
	p, err := os.StartProcess(path, argv, attr)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan WaitResult, 1)
	r.waiting[p.Pid] = ch
	// A SIGCHLD for this pid may already have been consumed by a pass that
	// did not know it yet.
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return p, ch, nil
}

// Close stops the Reaper, hands ErrReaperClosed to every process still
// waited for, and, if NewReaper made the process a subreaper, clears that.
// Orphans that exit afterwards stay zombies: close it only on the way out.
func (r *Reaper) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()

	close(r.quit)
	<-r.exited
	signal.Stop(r.sigchld)

	r.mu.Lock()
	for pid, ch := range r.waiting {
		ch <- WaitResult{Pid: pid, Err: ErrReaperClosed}
		delete(r.waiting, pid)
	}
	r.mu.Unlock()

	if r.setSubreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("stop being a child subreaper: prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
	}
	return nil
}

func (r *Reaper) run() {
	defer close(r.exited)
	// Subscribed here, not in NewReaper, so that the round trip to the
	// runtime's signal thread is not spent in front of the wrapper's
	// child; subscribed before the first pass, so that no exit between
	// the two goes unnoticed. Until then SIGCHLD is ignored, and the
	// first pass finds any child that exited meanwhile.
	signal.Notify(r.sigchld, syscall.SIGCHLD)
	tick := time.NewTicker(safetyInterval)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-r.sigchld:
		case <-r.kick:
		case <-tick.C:
		case <-r.quit:
			return
		}
	}
}

type orphan struct {
	pid    int
	status syscall.WaitStatus
}

// reap collects every child that has exited so far, without blocking.
func (r *Reaper) reap() {
	var orphans []orphan
	r.mu.Lock()
	if r.reapAll {
		orphans = r.reapAny()
	} else {
		r.reapOwn()
	}
	r.mu.Unlock()
	if r.onOrphan != nil {
		for _, o := range orphans {
			r.onOrphan(o.pid, o.status)
		}
	}
}

// reapAny must be called with r.mu held.
func (r *Reaper) reapAny() []orphan {
	var orphans []orphan
	for {
		var ws syscall.WaitStatus
		// __WALL: also children that report with a signal other than
		// SIGCHLD (clone children), which would otherwise stay zombies.
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|syscall.WALL, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ECHILD):
			// No child at all: any pid still waited for was reaped by
			// someone else.
			for pid, ch := range r.waiting {
				ch <- WaitResult{Pid: pid, Err: ErrStatusLost}
				delete(r.waiting, pid)
			}
			return orphans
		case err != nil || pid <= 0:
			return orphans
		}
		if ch, ok := r.waiting[pid]; ok {
			ch <- WaitResult{Pid: pid, Status: ws}
			delete(r.waiting, pid)
			continue
		}
		orphans = append(orphans, orphan{pid: pid, status: ws})
	}
}

// reapOwn must be called with r.mu held.
func (r *Reaper) reapOwn() {
	for pid, ch := range r.waiting {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		for errors.Is(err, syscall.EINTR) {
			got, err = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		switch {
		case errors.Is(err, syscall.ECHILD):
			ch <- WaitResult{Pid: pid, Err: ErrStatusLost}
		case err != nil || got != pid:
			continue // still running
		default:
			ch <- WaitResult{Pid: pid, Status: ws}
		}
		delete(r.waiting, pid)
	}
}
