package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// helperEnv makes the test binary run a helper in a process of its own
// instead of the tests: becoming a subreaper changes the whole process.
const helperEnv = "SR_HEALTH_TEST_HELPER"

// waitLimit bounds every wait for a process in these tests.
const waitLimit = 10 * time.Second

func TestMain(m *testing.M) {
	switch h := os.Getenv(helperEnv); h {
	case "":
		os.Exit(m.Run())
	case "subreaper":
		if err := subreaperHelper(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", h)
		os.Exit(2)
	}
}

// shell is the argv that runs script with /bin/sh -c.
func shell(script string) []string { return []string{"/bin/sh", "-c", script} }

func newReaper(t *testing.T) *signals.Reaper {
	t.Helper()
	r, err := signals.NewReaper(signals.ReaperOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func debugLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

// commandOutput returns the output that the last run of a command check
// logged.
func commandOutput(t *testing.T, logs *observer.ObservedLogs) (output string, truncated bool, status string) {
	t.Helper()
	entries := logs.FilterMessage("health check command ended").All()
	if len(entries) == 0 {
		t.Fatal("no debug line for the command's end")
	}
	f := entries[len(entries)-1].ContextMap()
	return fmt.Sprint(f["output"]), f["output_truncated"].(bool), fmt.Sprint(f["status"])
}

func TestCommandCheckHealthyOnExitZeroOnly(t *testing.T) {
	r := newReaper(t)
	tests := []struct {
		argv    []string
		wantErr string // "" means healthy
	}{
		{[]string{"/bin/true"}, ""},
		{[]string{"true"}, ""},
		{[]string{"/bin/false"}, "command /bin/false: exited with status 1"},
		{shell("exit 3"), "command /bin/sh -c 'exit 3': exited with status 3"},
		{shell("kill -TERM $$"), "command /bin/sh -c 'kill -TERM $$': killed by SIGTERM"},
	}
	for _, tt := range tests {
		c, err := Command(tt.argv, CommandOptions{Starter: r})
		if err != nil {
			t.Fatal(err)
		}
		err = checkWithin(t, c, waitLimit)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v, want healthy", tt.argv, err)
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("%q: %v, want %q", tt.argv, err, tt.wantErr)
		}
	}
}

func TestCommandCheckCapturesOutputBoundedAndLogsItAtDebug(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	tests := []struct {
		name          string
		argv          []string
		opts          CommandOptions
		wantOutput    string
		wantTruncated bool
		wantStatus    string
	}{
		{
			name:       "stdout and stderr",
			argv:       shell("echo out; echo err >&2; exit 2"),
			wantOutput: "out\nerr\n",
			wantStatus: "exited with status 2",
		},
		{
			name:       "env and dir",
			argv:       shell(`echo "$CHECK_VAR"; pwd`),
			opts:       CommandOptions{Env: []string{"CHECK_VAR=hello"}, Dir: dir},
			wantOutput: "hello\n" + dir + "\n",
			wantStatus: "exited with status 0",
		},
		{
			name:       "stdin is empty",
			argv:       []string{"/bin/cat"},
			wantOutput: "",
			wantStatus: "exited with status 0",
		},
		{
			// Far more than a pipe holds: the command must not block.
			name:          "bounded",
			argv:          shell("head -c 1000000 /dev/zero | tr '\\0' a"),
			opts:          CommandOptions{OutputLimit: 100},
			wantOutput:    strings.Repeat("a", 100),
			wantTruncated: true,
			wantStatus:    "exited with status 0",
		},
		{
			name:          "default bound",
			argv:          shell("head -c 10000 /dev/zero | tr '\\0' b"),
			wantOutput:    strings.Repeat("b", DefaultOutputLimit),
			wantTruncated: true,
			wantStatus:    "exited with status 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := debugLogger()
			tt.opts.Starter, tt.opts.Logger = r, log
			c, err := Command(tt.argv, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			_ = checkWithin(t, c, waitLimit)
			out, truncated, status := commandOutput(t, logs)
			if out != tt.wantOutput || truncated != tt.wantTruncated || status != tt.wantStatus {
				t.Errorf("output %q (truncated %v), status %q; want %q (truncated %v), %q",
					out, truncated, status, tt.wantOutput, tt.wantTruncated, tt.wantStatus)
			}
		})
	}
}

// pids reads the pids a script printed, one a line.
func pids(t *testing.T, out string) []int {
	t.Helper()
	var ps []int
	for _, f := range strings.Fields(out) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestCommandCheckKilledWithItsProcessGroupOnTimeout(t *testing.T) {
	r := newReaper(t)
	log, logs := debugLogger()
	// The shell and a background sleep: both in the command's group.
	c, err := Command(shell("sleep 30 & echo $!; echo $$; wait"), CommandOptions{Starter: r, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = checkWithin(t, c, 300*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "killed with its process group") {
		t.Fatalf("sleeping command: %v, want it killed at the deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the check took %s with a 300ms timeout", took)
	}
	out, _, status := commandOutput(t, logs)
	if status != "killed by SIGKILL" {
		t.Errorf("status %q, want killed by SIGKILL", status)
	}
	ps := pids(t, out)
	if len(ps) != 2 {
		t.Fatalf("pids %v, want the sleep's and the shell's", ps)
	}
	proctest.WaitDead(t, waitLimit, ps...)
}

func TestCommandCheckLeavesNothingBehind(t *testing.T) {
	r := newReaper(t)
	log, logs := debugLogger()
	// Exits at once, but its background sleep holds the output pipe.
	c, err := Command(shell("sleep 30 & echo $!"), CommandOptions{Starter: r, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := checkWithin(t, c, waitLimit); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the check waited %s for its straggler", took)
	}
	out, _, _ := commandOutput(t, logs)
	proctest.WaitDead(t, waitLimit, pids(t, out)...)
}

func TestCommandCheckThroughAClosedReaperFails(t *testing.T) {
	r := newReaper(t)
	c, err := Command([]string{"/bin/true"}, CommandOptions{Starter: r})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	if err := checkWithin(t, c, waitLimit); !errors.Is(err, signals.ErrReaperClosed) {
		t.Fatalf("through a closed reaper: %v, want ErrReaperClosed", err)
	}
}

func TestCommandRejects(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		argv    []string
		opts    CommandOptions
		wantErr string
	}{
		{nil, CommandOptions{Starter: r}, "empty command"},
		{[]string{""}, CommandOptions{Starter: r}, "empty command"},
		{[]string{"/bin/true"}, CommandOptions{}, "no ProcessStarter"},
		{[]string{"/bin/echo", "a\x00b"}, CommandOptions{Starter: r}, `argument "a\x00b" contains a NUL byte`},
		{[]string{"sr-no-such-command"}, CommandOptions{Starter: r}, `"sr-no-such-command": command not found in PATH`},
		{[]string{"sr-no-such-command"}, CommandOptions{Starter: r, Env: []string{"PATH=/nowhere", "PATH=/elsewhere"}},
			`"sr-no-such-command": command not found in PATH "/elsewhere"`},
		{[]string{"true"}, CommandOptions{Starter: r, Env: []string{"PATH=" + dir}}, `"true": command not found in PATH`},
		{[]string{"./no-such-check"}, CommandOptions{Starter: r}, `"./no-such-check": command not found: stat ./no-such-check: no such file or directory`},
		{[]string{notExec}, CommandOptions{Starter: r}, "permission denied"},
		{[]string{"./check.sh"}, CommandOptions{Starter: r, Dir: dir}, "permission denied"},
		{[]string{dir}, CommandOptions{Starter: r}, "is a directory"},
	}
	for _, tt := range tests {
		_, err := Command(tt.argv, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Command(%q): %v, want %q", tt.argv, err, tt.wantErr)
		}
	}
}

// A relative command path is relative to Dir, where the command runs,
// and Dir itself, when relative, to the wrapper's working directory.
func TestCommandRunsRelativeToDir(t *testing.T) {
	r := newReaper(t)
	top := t.TempDir()
	dir := filepath.Join(top, "checks")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "check.sh"), []byte("#!/bin/sh\nexit 4\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(top)
	for _, d := range []string{dir, "checks", "./checks"} {
		c, err := Command([]string{"./check.sh"}, CommandOptions{Starter: r, Dir: d})
		if err != nil {
			t.Fatalf("Dir %q: %v", d, err)
		}
		if err := checkWithin(t, c, waitLimit); err == nil || !strings.HasSuffix(err.Error(), "exited with status 4") {
			t.Fatalf("./check.sh in Dir %q: %v, want exit status 4", d, err)
		}
	}
}

// As PID 1 or a subreaper the Reaper collects every child with
// wait4(-1): the check commands must still get their own statuses, while
// orphans that come and go are reaped beside them.
func TestCommandChecksThroughASubreaper(t *testing.T) {
	out, err := proctest.HelperCommand(t, helperEnv, "subreaper").CombinedOutput()
	if err != nil {
		t.Fatalf("subreaper helper: %v\n%s", err, out)
	}
	t.Logf("helper:\n%s", out)
}

func subreaperHelper() error {
	var mu sync.Mutex
	orphans := 0
	r, err := signals.NewReaper(signals.ReaperOptions{Subreaper: true, OnOrphan: func(int, syscall.WaitStatus) {
		mu.Lock()
		orphans++
		mu.Unlock()
	}})
	if err != nil {
		return err
	}
	defer r.Close()
	if !r.ReapsOrphans() {
		return errors.New("a subreaper does not reap orphans")
	}

	tests := []struct {
		argv    []string
		timeout time.Duration
		wantErr string // "" means healthy
	}{
		{[]string{"/bin/true"}, waitLimit, ""},
		{[]string{"/bin/false"}, waitLimit, "exited with status 1"},
		{shell("exit 3"), waitLimit, "exited with status 3"},
		// Leaves an orphan, which the check kills and the Reaper reaps.
		{shell("sleep 5 & exit 0"), waitLimit, ""},
		{shell("sleep 5 & exit 5"), waitLimit, "exited with status 5"},
		{shell("exec sleep 30"), 100 * time.Millisecond, "killed with its process group"},
	}
	checkers := make([]Checker, len(tests))
	for i, tt := range tests {
		if checkers[i], err = Command(tt.argv, CommandOptions{Starter: r}); err != nil {
			return err
		}
	}
	// Several rounds at once, so that wait4(-1) sees many children exit
	// together.
	errs := make(chan error, 4*len(tests))
	var wg sync.WaitGroup
	for round := range 4 {
		for i, tt := range tests {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()
				err := checkers[i].Check(ctx)
				switch {
				case tt.wantErr == "" && err != nil:
					errs <- fmt.Errorf("round %d: %q: %v, want healthy", round, tt.argv, err)
				case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
					errs <- fmt.Errorf("round %d: %q: %v, want %q", round, tt.argv, err, tt.wantErr)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return errors.Join(all...)
	}

	// Every orphan reaped: no child of this process is left, not even a
	// zombie.
	err = testsupport.Poll(waitLimit, func() error {
		mu.Lock()
		defer mu.Unlock()
		if kids := proctest.Children(os.Getpid()); len(kids) != 0 || orphans < 8 {
			return fmt.Errorf("%d orphans reaped (want at least 8), children left: %v", orphans, kids)
		}
		return nil
	})
	if err == nil {
		fmt.Printf("pid %d: %d checks gave their own statuses; %d orphans reaped; no child left\n",
			os.Getpid(), 4*len(tests), orphans)
	}
	return err
}
