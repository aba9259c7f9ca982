// Package proctest is test support for the packages that start and reap
// processes: it reads process states and parents from /proc, waits for
// processes to die, and re-runs the test binary as a helper process, for
// tests that must change the whole process (become a subreaper, PID 1 of
// a namespace, the leader of a terminal session).
//
// It is for tests only: nothing outside _test.go files imports it, and
// it makes no attempt to work anywhere but Linux.
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// Stat reads the state letter (R, S, T, Z...) and the parent of pid from
// /proc/PID/stat, and ok false when the process no longer exists.
func Stat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// and ends at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// Children lists the processes whose parent is pid, zombies included.
func Children(pid int) []int {
	return childrenWhere(pid, func(byte) bool { return true })
}

// Zombies lists the zombie children of ppid.
func Zombies(ppid int) []int {
	return childrenWhere(ppid, func(state byte) bool { return state == 'Z' })
}

func childrenWhere(ppid int, match func(state byte) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A process that is gone meanwhile is not a child any more.
		if state, parent, ok := Stat(pid); ok && parent == ppid && match(state) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// WaitDead waits up to limit until every pid has died: it is gone, or a
// zombie that its parent has still to reap. It fails the test otherwise.
func WaitDead(t testing.TB, limit time.Duration, pids ...int) {
	t.Helper()
	testsupport.Eventually(t, limit, "processes dead", func() error {
		for _, pid := range pids {
			if state, _, ok := Stat(pid); ok && state != 'Z' {
				return fmt.Errorf("process %d still alive (state %c)", pid, state)
			}
		}
		return nil
	})
}

// HelperCommand runs this test binary again, with no test selected and
// env=name in its environment: the package's TestMain reads env and runs
// that helper instead of the tests. The process is killed if it outlives
// the test. GORACE=atexit_sleep_ms=0 spares the second that every -race
// binary otherwise idles at exit.
func HelperCommand(t testing.TB, env, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+name, "GORACE=atexit_sleep_ms=0")
	return cmd
}
