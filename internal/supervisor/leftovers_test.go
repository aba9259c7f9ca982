package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

// leftoverOf starts script under sh as a child, waits for the line that
// begins with ready, which says that whatever it leaves behind is in
// place, then for the child's exit (killing it with SIGKILL when kill is
// set), and returns the child and its output.
func leftoverOf(t *testing.T, script, ready string, kill bool) (*Child, <-chan string) {
	t.Helper()
	c, lines := start(t, newReaper(t), ChildSpec{Argv: []string{"sh", "-c", script}})
	expect(t, lines, ready)
	if kill {
		if err := c.Signal(syscall.SIGKILL, false); err != nil {
			t.Fatal(err)
		}
	}
	waitDone(t, c)
	return c, lines
}

// groupLeft lists the live members of process group pgid.
func groupLeft(t *testing.T, pgid int) []proc {
	t.Helper()
	procs, known := (&leftovers{pgid: pgid, self: os.Getpid(), proc: "/proc"}).scan()
	if !known {
		t.Fatal("/proc cannot be read")
	}
	return procs
}

// TestStopLeftovers: what a child leaves in its process group gets the
// stop signal (with CONT), and SIGKILL at the deadline or at once when
// hurried; stopLeftovers returns as soon as nothing is left.
func TestStopLeftovers(t *testing.T) {
	// The shell waits until it is killed; fakeproc's "ready pid=N" says
	// that its handlers, or SIG_IGN for TERM, are in place.
	const (
		obeys   = "sleep 1000 & "
		ignores = "FAKEPROC --ready --ignore-term & wait"
		reports = "FAKEPROC --ready --report-signals & wait"
	)
	tests := []struct {
		name           string
		script         string
		kill           bool // the child is killed (else it exits)
		deadline       time.Duration
		hurry          bool
		groupSignalled bool
		wantFound      int
		wantKilled     bool
		wantLines      []string // reported by a fakeproc leftover
		noLines        []string
	}{
		{name: "nothing left", script: "echo ready", deadline: time.Hour},
		{name: "obeys the stop signal", script: obeys + "echo ready", deadline: time.Hour, wantFound: 1},
		{name: "ignores it: killed at the deadline", script: ignores, kill: true, deadline: 200 * time.Millisecond,
			wantFound: 1, wantKilled: true},
		{name: "one of two ignores it", script: obeys + ignores, kill: true, deadline: 200 * time.Millisecond,
			wantFound: 2, wantKilled: true},
		{name: "hurried", script: ignores, kill: true, deadline: time.Hour, hurry: true, wantFound: 1, wantKilled: true},
		{name: "deadline passed already", script: ignores, kill: true, deadline: -time.Second, wantFound: 1, wantKilled: true},
		{name: "stop signal and CONT", script: reports, kill: true, deadline: 200 * time.Millisecond,
			wantFound: 1, wantKilled: true, wantLines: []string{"signal SIGTERM", "signal SIGCONT"}},
		{name: "the group had the stop signal already", script: reports, kill: true, deadline: 200 * time.Millisecond,
			groupSignalled: true, wantFound: 1, wantKilled: true, noLines: []string{"signal SIGTERM", "signal SIGCONT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready := "ready"
			if strings.Contains(tt.script, "FAKEPROC") {
				ready = "ready pid="
			}
			c, lines := leftoverOf(t, strings.ReplaceAll(tt.script, "FAKEPROC", fakeproc), ready, tt.kill)
			l := &leftovers{pgid: c.Pid(), self: os.Getpid(), proc: "/proc"}
			hurry := make(chan struct{})
			if tt.hurry {
				close(hurry)
			}
			found := -2
			res := stopLeftovers(context.Background(), l, syscall.SIGTERM, tt.groupSignalled, time.Now().Add(tt.deadline), hurry,
				func(n int) { found = n })
			if res.Found != tt.wantFound || res.Killed != tt.wantKilled || res.Remaining {
				t.Errorf("stopLeftovers = %+v, want Found %d, Killed %v", res, tt.wantFound, tt.wantKilled)
			}
			if tt.wantFound == 0 && found != -2 || tt.wantFound != 0 && found != tt.wantFound {
				t.Errorf("found told %d, want %d (-2: not told)", found, tt.wantFound)
			}
			if left := groupLeft(t, c.Pid()); len(left) != 0 {
				t.Errorf("left alive: %+v", left)
			}
			var got []string
			for l := range lines { // the pipe closes: no process is left
				got = append(got, l)
			}
			for _, want := range tt.wantLines {
				if !slices.Contains(got, want) {
					t.Errorf("the leftover did not report %q; it wrote %q", want, got)
				}
			}
			for _, not := range tt.noLines {
				if slices.Contains(got, not) {
					t.Errorf("the leftover reported %q; it wrote %q", not, got)
				}
			}
		})
	}
}

// TestRunKillMode: Run returns the child's status only once what it left
// in its group is gone (KillGroup, the default), or at once, leaving it
// running (KillProcess).
func TestRunKillMode(t *testing.T) {
	for _, mode := range []KillMode{KillGroup, KillProcess} {
		t.Run(mode.String(), func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			done := make(chan int, 1)
			go func() {
				done <- Run(context.Background(), Config{
					Child:        ChildSpec{Argv: []string{"sh", "-c", "sleep 1000 & echo $!; exit 5"}, Stdin: devNull(t), Stdout: pw},
					Registration: newFakeRegistration(),
					KillMode:     mode,
				})
			}()
			var sleep int
			if _, err := fmt.Fscanln(pr, &sleep); err != nil || sleep <= 0 {
				t.Fatalf("the child's line: %d, %v", sleep, err)
			}
			code := receiveWithin(t, done, "return of Run")
			pw.Close()
			if code != 5 {
				t.Errorf("Run = %d, want the child's 5", code)
			}
			state, _, ok := statOf(sleep)
			alive := ok && state != 'Z'
			if alive {
				t.Cleanup(func() { _ = syscall.Kill(sleep, syscall.SIGKILL) })
			}
			if want := mode == KillProcess; alive != want {
				t.Errorf("the child's sleep alive: %v after Run returned, want %v", alive, want)
			}
		})
	}
}

// TestStopTimeoutBoundsTheWholeStop: what the child leaves gets SIGKILL
// when the stop timeout that began with the child's stop signal ends,
// not a full timeout after the child's exit, so that a supervisor's own
// stop timeout (TimeoutStopSec) longer than --stop-timeout still holds.
func TestStopTimeoutBoundsTheWholeStop(t *testing.T) {
	const stopTimeout = 2 * time.Second
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	// The child takes 1.5 s to obey TERM; its leftover ignores TERM.
	script := "(trap '' TERM; exec sleep 1000) & trap 'sleep 1.5; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
	go func() {
		done <- Run(ctx, Config{
			Child:        ChildSpec{Argv: []string{"sh", "-c", script}, Stdin: devNull(t), Stdout: pw},
			Registration: newFakeRegistration(),
			StopTimeout:  stopTimeout,
		})
	}()
	var line string
	if _, err := fmt.Fscanln(pr, &line); err != nil || line != "ready" {
		t.Fatalf("the child's line: %q, %v", line, err)
	}
	stopped := time.Now()
	cancel()
	code := receiveWithin(t, done, "return of Run")
	took := time.Since(stopped)
	pw.Close()
	if code != 0 {
		t.Errorf("Run = %d, want the child's 0", code)
	}
	// 3.5 s if the leftover had its own full timeout after the child's
	// exit at 1.5 s.
	if took < stopTimeout || took > stopTimeout+time.Second {
		t.Errorf("Run returned %s after the stop; want just after the stop timeout, %s", took.Round(time.Millisecond), stopTimeout)
	}
}

func statOf(pid int) (state byte, ppid int, ok bool) {
	st, ok := readStat("/proc", pid)
	return st.state, st.ppid, ok
}

// TestLeftoversWithoutProc: where /proc cannot be read (an empty root
// directory), kill(2) on the group alone finds and stops what is left.
// It runs in a helper that is a subreaper, so that the dead leftovers
// are reaped at once rather than whenever init gets round to it.
func TestLeftoversWithoutProc(t *testing.T) {
	cmd := helperCommand(t, "leftovers-without-proc")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	t.Logf("helper:\n%s", out)
}

func leftoversWithoutProcHelper() error {
	r, err := signals.NewReaper(signals.ReaperOptions{Subreaper: true})
	if err != nil {
		return err
	}
	defer r.Close()
	for _, tt := range []struct {
		script     string
		wantKilled bool
	}{
		{"sleep 1000 & echo ready; wait", false},
		{fakeproc + " --ready --ignore-term & wait", true},
	} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		c, err := StartChild(ChildSpec{Argv: []string{"sh", "-c", tt.script}, Stdout: pw}, r)
		pw.Close()
		if err != nil {
			return err
		}
		// The leftover is in place (fakeproc ignores TERM) when it says
		// so; then the shell goes.
		line, err := bufio.NewReader(pr).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "ready") {
			return fmt.Errorf("%q: first line %q, %v", tt.script, line, err)
		}
		if err := c.Signal(syscall.SIGKILL, false); err != nil {
			return err
		}
		<-c.Done()
		l := &leftovers{pgid: c.Pid(), tree: true, self: os.Getpid(), proc: "/nonexistent"}
		res := stopLeftovers(context.Background(), l, syscall.SIGTERM, false, time.Now().Add(300*time.Millisecond), nil, nil)
		if res.Found != -1 || res.Killed != tt.wantKilled || res.Remaining {
			return fmt.Errorf("%q: stopLeftovers = %+v, want Found -1 (unknown), Killed %v", tt.script, res, tt.wantKilled)
		}
		if err := unix.Kill(-c.Pid(), 0); !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("%q: kill(-%d, 0) = %v after stopLeftovers, want ESRCH", tt.script, c.Pid(), err)
		}
		fmt.Printf("%q: %+v\n", tt.script, res)
		pr.Close()
	}
	return nil
}
