package supervisor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// KillMode says what belongs to the service besides the child itself, and
// so what must not outlive it.
type KillMode int

const (
	// KillGroup: once the child has exited, whatever is left of its
	// process group gets the stop signal and, when the stop timeout ends,
	// SIGKILL, before Run returns. When the wrapper reaps orphans (PID 1
	// or subreaper) that includes every descendant of the wrapper, also
	// those that left the group (setsid, daemons): they were re-parented
	// to it, so they are the service's. This is systemd's
	// KillMode=control-group with a process group for the cgroup.
	KillGroup KillMode = iota
	// KillProcess: the child alone is the service; what it leaves behind
	// runs on.
	KillProcess
)

// String is the name --kill-mode takes.
func (m KillMode) String() string {
	if m == KillProcess {
		return "process"
	}
	return "group"
}

// leftovers are the processes of a service whose main child has exited.
// Processes are found in /proc when it can be read; without it only
// kill(2) on the group (and, as PID 1, on the whole namespace) reaches
// them, and zombies count as alive until someone reaps them.
type leftovers struct {
	pgid int  // the child's process group
	tree bool // also every descendant of this process
	pid1 bool // this process is PID 1 of its namespace
	self int
	proc string // where procfs is mounted
}

// proc is one process found in /proc.
type proc struct {
	pid       int
	startTime string // with pid, names one process for its whole life
	inGroup   bool
}

// scan lists the live (not zombie) leftovers, and known false when /proc
// cannot be read, which leaves only kill(2) to tell.
func (l *leftovers) scan() (procs []proc, known bool) {
	// A procfs of another PID namespace (a container that sees the
	// host's) would name other processes by our pids.
	if self, err := os.Readlink(l.proc + "/self"); err != nil || self != strconv.Itoa(l.self) {
		return nil, false
	}
	entries, err := os.ReadDir(l.proc)
	if err != nil {
		return nil, false
	}
	type entry struct {
		ppid, pgrp int
		live       bool
		startTime  string
	}
	all := make(map[int]entry, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == l.self {
			continue
		}
		st, ok := readStat(l.proc, pid)
		if !ok {
			continue // gone meanwhile
		}
		all[pid] = entry{ppid: st.ppid, pgrp: st.pgrp, live: st.state != 'Z' && st.state != 'X', startTime: st.startTime}
	}
	// descends memoises whether a pid descends from this process.
	descends := map[int]bool{}
	var isDescendant func(pid, depth int) bool
	isDescendant = func(pid, depth int) bool {
		if d, ok := descends[pid]; ok {
			return d
		}
		e, ok := all[pid]
		d := false
		switch {
		case !ok || depth > len(all):
		case e.ppid == l.self:
			d = true
		default:
			d = isDescendant(e.ppid, depth+1)
		}
		descends[pid] = d
		return d
	}
	for pid, e := range all {
		if !e.live {
			continue
		}
		inGroup := e.pgrp == l.pgid
		if inGroup || (l.tree && isDescendant(pid, 0)) {
			procs = append(procs, proc{pid: pid, startTime: e.startTime, inGroup: inGroup})
		}
	}
	return procs, true
}

// groupEmpty is the cheap test of the usual case, one kill(2): the group
// is empty, and no descendant outside it can be left.
func (l *leftovers) groupEmpty() bool {
	return !l.tree && errors.Is(unix.Kill(-l.pgid, 0), unix.ESRCH)
}

// anyLeft reports whether something may still be left, when /proc
// cannot tell.
func (l *leftovers) anyLeft() bool {
	if unix.Kill(-l.pgid, 0) == nil {
		return true
	}
	// kill(-1) spares the caller and, in a namespace, its init: as PID 1
	// it reaches every other process of the namespace, all of them the
	// service's.
	return l.tree && l.pid1 && unix.Kill(-1, 0) == nil
}

// signalAll sends sig to every leftover that /proc cannot list: the group,
// and as PID 1 the namespace.
func (l *leftovers) signalAll(sig syscall.Signal) {
	_ = unix.Kill(-l.pgid, sig)
	if l.tree && l.pid1 {
		_ = unix.Kill(-1, sig)
	}
}

// signal sends sig to one process found by scan, unless it has died and
// its pid been reused since: the pidfd pins the process, and its start
// time tells it is still the same one.
func (l *leftovers) signal(p proc, sig syscall.Signal) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			// Before Linux 5.3; the pid was alive a moment ago.
			_ = unix.Kill(p.pid, sig)
		}
		return
	}
	defer unix.Close(fd)
	if st, ok := readStat(l.proc, p.pid); ok && st.startTime == p.startTime {
		_ = unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

// leftoverResult is what stopLeftovers found and did.
type leftoverResult struct {
	// Found is how many processes were left when the child exited; -1
	// when /proc could not tell, 0 when nothing was left.
	Found int
	// Killed is set when some outlived the deadline and got SIGKILL.
	Killed bool
	// Remaining is set when some were still there when stopLeftovers gave
	// up: in uninterruptible sleep, or zombies nobody reaps.
	Remaining bool
}

// Polling bounds of stopLeftovers: there is no event for "the group is
// empty". Each poll is a kill(2) and, when something is left, a pass over
// /proc; they only run while something is left.
const (
	leftoverPollMin = time.Millisecond
	leftoverPollMax = 50 * time.Millisecond
	// afterKill bounds the wait after SIGKILL: only a process in
	// uninterruptible sleep outlives it for long.
	afterKill = 5 * time.Second
)

// stopLeftovers stops what the service left behind: sig (followed by
// CONT, as in StopChild) to every leftover, unless groupSignalled says
// the group has had it already, then SIGKILL at deadline to whatever is
// still there, and waits until nothing is. A leftover that appears later
// (a fork, or a descendant re-parented to this process) gets sig when it
// is seen. hurry makes it send SIGKILL at once. found is told how many
// there are (-1: some, how many unknown) before the first signal, unless
// there are none. It returns at once when nothing is left, which is the
// usual case.
func stopLeftovers(ctx context.Context, l *leftovers, sig syscall.Signal, groupSignalled bool, deadline time.Time,
	hurry <-chan struct{}, found func(n int)) leftoverResult {
	var res leftoverResult
	if l.groupEmpty() {
		return res
	}
	procs, known := l.scan()
	switch {
	case known && len(procs) == 0:
		return res
	case known:
		res.Found = len(procs)
	case !l.anyLeft():
		return res
	default:
		res.Found = -1
	}
	if found != nil {
		found(res.Found)
	}

	// signalled: the leftovers that have had sig, so that one seen again
	// does not get it twice.
	signalled := map[proc]bool{}
	stop := func(procs []proc) {
		for _, p := range procs {
			if !signalled[p] {
				l.signal(p, sig)
				if wakes(sig) {
					l.signal(p, syscall.SIGCONT)
				}
				signalled[p] = true
			}
		}
	}
	switch {
	case known && groupSignalled:
		for _, p := range procs {
			signalled[p] = p.inGroup
		}
		stop(procs)
	case known:
		stop(procs)
	case !groupSignalled:
		l.signalAll(sig)
		if wakes(sig) {
			l.signalAll(syscall.SIGCONT)
		}
	}

	killAt := time.NewTimer(time.Until(deadline))
	defer killAt.Stop()
	var giveUp <-chan time.Time
	poll := leftoverPollMin
	startKilling := func() {
		res.Killed = true
		killAt.Stop()
		hurry = nil
		giveUp = time.After(afterKill)
		poll = leftoverPollMin
	}
	for {
		wait := time.NewTimer(poll)
		select {
		case <-wait.C:
		case <-killAt.C:
			startKilling()
		case <-hurry:
			startKilling()
		case <-giveUp:
			wait.Stop()
			res.Remaining = true
			return res
		case <-ctx.Done():
			wait.Stop()
			res.Remaining = true
			return res
		}
		wait.Stop()
		if l.groupEmpty() {
			return res
		}
		procs, known = l.scan()
		if known && len(procs) == 0 || !known && !l.anyLeft() {
			return res
		}
		switch {
		case res.Killed && known:
			for _, p := range procs {
				l.signal(p, syscall.SIGKILL)
			}
		case res.Killed:
			l.signalAll(syscall.SIGKILL)
		case known:
			stop(procs)
		}
		poll = min(2*poll, leftoverPollMax)
	}
}

// wakes reports whether a SIGCONT should follow sig, so that a stopped
// process wakes up to handle it: not after CONT itself or a stop signal,
// which the CONT would cancel (the kernel discards either kind when the
// other is generated).
func wakes(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGCONT, syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return false
	}
	return true
}

// stat is what scan reads of /proc/PID/stat.
type stat struct {
	state      byte
	ppid, pgrp int
	startTime  string
}

// readStat parses "pid (comm) state ppid pgrp session tty tpgid flags
// minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
// num_threads itrealvalue starttime ...". comm may hold spaces and
// parentheses, and ends at the last ')'.
func readStat(procDir string, pid int) (stat, bool) {
	b, err := os.ReadFile(procDir + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// starttime is field 22 of the line, the 20th after comm.
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	if err1 != nil || err2 != nil {
		return stat{}, false
	}
	return stat{state: f[0][0], ppid: ppid, pgrp: pgrp, startTime: string(f[19])}, true
}
