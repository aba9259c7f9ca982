package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

func isStopSignal(s syscall.Signal) bool {
	return s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGQUIT
}

// TestEveryForwardedSignalReachesTheChild sends the wrapper every signal it
// forwards, one at a time, and waits for the child to report each.
// TERM, INT and QUIT, which also stop the service, have their own test.
func TestEveryForwardedSignalReachesTheChild(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	w := startWrapper(t, cmdline(acct.flags(reg.URL, "signals"), fakeproc("--ready", "--report-signals")...))
	w.ready()
	w.registered()

	var sent []string
	for _, s := range signals.Forwarded() {
		sig := s.(syscall.Signal)
		if isStopSignal(sig) {
			continue
		}
		from := w.stdout.Len()
		w.signal(sig)
		want := "signal " + signals.Name(sig)
		if _, err := w.stdout.waitFrom(from, eventWait, exactly(want)); err != nil {
			t.Fatalf("sent %s to the wrapper; the child did not report %q: %v", signals.Name(sig), want, err)
		}
		sent = append(sent, signals.Name(sig))
	}
	for _, must := range []string{"SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT", "SIGALRM", "SIGRTMIN+1", "SIGRTMIN+30"} {
		if !strings.Contains(" "+strings.Join(sent, " ")+" ", " "+must+" ") {
			t.Fatalf("signals.Forwarded() lacks %s; forwarded: %v", must, sent)
		}
	}
	// None of them stopped anything.
	if w.exited() {
		t.Fatal("the wrapper exited")
	}
	acct.mustService(t, "signals")
	t.Logf("forwarded %d signals: %s", len(sent), strings.Join(sent, " "))
}

// TestStopSignalsDeregisterWhileTheChildRuns: TERM, INT and QUIT reach the
// child and take the service out of the registry at once, even while the
// child goes on running.
func TestStopSignalsDeregisterWhileTheChildRuns(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(signals.Name(sig), func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			id := "stop-" + strings.ToLower(signals.Name(sig))
			// The child reports every signal and exits on none: it
			// outlives the stop signal until the test kills it.
			flags := append(acct.flags(reg.URL, id), "--stop-timeout", "60s")
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals")...))
			child := w.ready()
			session := w.registered()

			w.signal(sig)
			w.waitStdout(eventWait, "signal "+signals.Name(sig), exactly("signal "+signals.Name(sig)))
			testsupport.EventuallyTrue(t, eventWait, "service gone after "+signals.Name(sig), func() bool {
				s, err := acct.service(id)
				return err == nil && s == nil
			})
			if s, err := acct.session(session); err != nil || s != nil {
				t.Fatalf("session %s: %+v, %v; want it deleted", session, s, err)
			}
			if !alive(child) || w.exited() {
				t.Fatal("the child or the wrapper is gone; the service must go while the child still runs")
			}
			w.waitLog(eventWait, "deregistered")
			if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if code := w.wait(exitWait); code != 137 {
				t.Fatalf("exit code %d, want 137", code)
			}
		})
	}
}

// TestSignalGroupReachesTheGrandchild: with --signal-group a forwarded
// signal goes to the child's whole process group; without it, to the
// child alone.
func TestSignalGroupReachesTheGrandchild(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	toSend := []syscall.Signal{syscall.SIGUSR1, syscall.SIGHUP, syscall.Signal(37)}

	t.Run("with --signal-group", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		flags := append(acct.flags(reg.URL, "group"), "--signal-group")
		w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--grandchild")...))
		w.ready()
		for _, sig := range toSend {
			from := w.stdout.Len()
			w.signal(sig)
			for _, want := range []string{"signal " + signals.Name(sig), "grandchild: signal " + signals.Name(sig)} {
				if _, err := w.stdout.waitFrom(from, eventWait, exactly(want)); err != nil {
					t.Fatalf("sent %s; no %q: %v", signals.Name(sig), want, err)
				}
			}
		}
	})

	t.Run("without", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		w := startWrapper(t, cmdline(acct.flags(reg.URL, "nogroup"), fakeproc("--ready", "--report-signals", "--grandchild")...))
		l := w.waitStdout(startWait, "ready", hasPrefix("ready pid="))
		_, gc, ok := strings.Cut(l.Text, "grandchild=")
		grandchild, err := strconv.Atoi(gc)
		if !ok || err != nil {
			t.Fatalf("ready line %q names no grandchild", l.Text)
		}
		w.signal(syscall.SIGUSR1)
		w.waitStdout(eventWait, "child's SIGUSR1", exactly("signal SIGUSR1"))
		// Had the USR1 gone to the group, the grandchild would have it
		// pending or handled by now, and would report it before a later
		// USR2 (the kernel delivers the lower number first).
		if err := syscall.Kill(grandchild, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		w.waitStdout(eventWait, "grandchild's SIGUSR2", exactly("grandchild: signal SIGUSR2"))
		if got := w.stdout.all(exactly("grandchild: signal SIGUSR1")); len(got) != 0 {
			t.Fatal("without --signal-group the grandchild got SIGUSR1")
		}
	})
}

// TestStopSignalReplacesTerm: --stop-signal is what the child gets when the
// wrapper is told TERM (Apache: WINCH, nginx: QUIT); TERM never reaches it.
func TestStopSignalReplacesTerm(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	for _, stop := range []syscall.Signal{syscall.SIGWINCH, syscall.SIGQUIT} {
		t.Run(signals.Name(stop), func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			id := "stopsig-" + strings.ToLower(signals.Name(stop))
			flags := append(acct.flags(reg.URL, id), "--stop-signal", strings.TrimPrefix(signals.Name(stop), "SIG"))
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals")...))
			w.ready()
			w.registered()
			w.signal(syscall.SIGTERM)
			w.waitStdout(eventWait, "the stop signal", exactly("signal "+signals.Name(stop)))
			// The child ignores it; --stop-timeout 1s ends it.
			if code := w.wait(exitWait); code != 137 {
				t.Fatalf("exit code %d, want 137", code)
			}
			if !w.stdout.WaitEOF(eventWait) {
				t.Fatal("stdout still open")
			}
			if got := w.stdout.all(exactly("signal SIGTERM")); len(got) != 0 {
				t.Fatalf("the child got SIGTERM although --stop-signal is %s", signals.Name(stop))
			}
			acct.mustBeAbsent(t, id, "after the wrapper exited")
		})
	}
}

// TestStopTimeout: a child that traps TERM gets SIGKILL, with its whole
// process group, once --stop-timeout has passed; a cooperative one ends
// the wrapper as soon as it exits, whatever the timeout.
func TestStopTimeout(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)

	t.Run("escalates to SIGKILL", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		w := startWrapper(t, cmdline(acct.flags(reg.URL, "trapper"), fakeproc("--ready", "--trap-term", "--grandchild")...))
		l := w.waitStdout(startWait, "ready", hasPrefix("ready pid="))
		_, gc, _ := strings.Cut(l.Text, "grandchild=")
		grandchild, err := strconv.Atoi(gc)
		if err != nil {
			t.Fatalf("ready line %q names no grandchild", l.Text)
		}
		w.registered()
		code, took := w.stop(syscall.SIGTERM)
		w.waitStdout(eventWait, "trapped", exactly("trapped SIGTERM"))
		if code != 137 {
			t.Fatalf("exit code %d, want 137", code)
		}
		if took < time.Second || took > 4*time.Second {
			t.Fatalf("the wrapper exited %s after TERM; want just after --stop-timeout 1s", took)
		}
		// The operator learns why the child died by SIGKILL.
		w.waitLog(eventWait, "child did not exit within the stop timeout; killed its process group")
		// SIGKILL went to the group: the grandchild is dead too (or a
		// zombie awaiting its new parent).
		testsupport.EventuallyTrue(t, eventWait, "grandchild killed with the group", func() bool { return !alive(grandchild) })
		acct.mustBeAbsent(t, "trapper", "after the wrapper exited")
		t.Logf("TERM → exit 137 in %s", took.Round(time.Millisecond))
	})

	t.Run("returns as soon as the child exits", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		flags := append(acct.flags(reg.URL, "cooperative"), "--stop-timeout", "60s")
		w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--exit-on-term", "0")...))
		w.ready()
		w.registered()
		code, took := w.stop(syscall.SIGTERM)
		if code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
		if took > 3*time.Second {
			t.Fatalf("the wrapper exited %s after TERM; want at once", took)
		}
	})
}

// TestDrainDelay: on TERM with --drain-delay the service leaves the
// registry first, and the child gets the signal only the delay after the
// deregistration, also when the registry is slow to deregister.
func TestDrainDelay(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	tests := []struct {
		name  string
		drain time.Duration
		// slowDelete delays the session's DELETE in a proxy.
		slowDelete time.Duration
	}{
		{name: "fast registry", drain: 1500 * time.Millisecond},
		{name: "slow deregistration", drain: 500 * time.Millisecond, slowDelete: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			registryURL := reg.URL
			if tt.slowDelete > 0 {
				proxy := faultproxy.StartT(t, reg.URL)
				proxy.Add(faultproxy.Rule{Method: "DELETE", Path: sessionsPath + "/*", Action: faultproxy.Delay(tt.slowDelete)})
				registryURL = proxy.URL().String()
			}
			flags := append(acct.flags(registryURL, "drainer"), "--drain-delay", tt.drain.String(), "--stop-timeout", "30s")
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
			w.ready()
			w.registered()

			sent := time.Now()
			w.signal(syscall.SIGTERM)
			testsupport.EventuallyTrue(t, eventWait, "service gone after TERM", func() bool {
				s, err := acct.service("drainer")
				return err == nil && s == nil
			})
			goneAt := time.Now()
			if got := w.stdout.all(exactly("signal SIGTERM")); len(got) != 0 {
				t.Fatalf("the child got TERM %s after the wrapper, before the service was gone (%s)",
					got[0].At.Sub(sent).Round(time.Millisecond), goneAt.Sub(sent).Round(time.Millisecond))
			}
			l := w.waitStdout(tt.drain+eventWait, "TERM after the drain", exactly("signal SIGTERM"))
			if d := l.At.Sub(sent); d < tt.drain+tt.slowDelete {
				t.Fatalf("the child got TERM %s after the wrapper; want at least the deregistration and the drain delay %s",
					d, tt.slowDelete+tt.drain)
			}
			dereg := w.waitLog(eventWait, "deregistered")
			draining := w.waitLog(eventWait, "draining before the child is asked to stop")
			asking := w.waitLog(eventWait, "asking the child to stop")
			if !(dereg.Index < draining.Index && draining.Index < asking.Index) {
				t.Fatalf("log order: deregistered #%d, draining #%d, asking #%d", dereg.Index, draining.Index, asking.Index)
			}
			// Log time stamps have millisecond precision.
			if d := asking.TS().Sub(dereg.TS()); d < tt.drain-2*time.Millisecond {
				t.Fatalf("asked the child to stop %s after deregistering; want the drain delay %s", d, tt.drain)
			}
			if code := w.wait(exitWait); code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}
			t.Logf("service gone %s after TERM, child signalled %s after TERM",
				goneAt.Sub(sent).Round(time.Millisecond), l.At.Sub(sent).Round(time.Millisecond))
		})
	}
}

// TestSecondStopSignalCutsTheDrainShort: a second TERM while draining
// stops the child at once, also while deregistration is still going on.
func TestSecondStopSignalCutsTheDrainShort(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	proxy := faultproxy.StartT(t, reg.URL)
	// Deregistration hangs until its 3 s timeout: the drain has not even
	// started when the second TERM comes.
	proxy.Add(faultproxy.Rule{Method: "DELETE", Action: faultproxy.Delay(time.Hour)})
	flags := append(acct.flags(proxy.URL().String(), "impatient"), "--drain-delay", "1h", "--stop-timeout", "30s")
	w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
	w.ready()
	w.registered()
	w.signal(syscall.SIGTERM)
	w.waitLog(eventWait, "received stop signal")
	sent := time.Now()
	w.signal(syscall.SIGTERM)
	w.waitLog(eventWait, "second stop signal while draining; stopping the child now")
	l := w.waitStdout(eventWait, "TERM", exactly("signal SIGTERM"))
	if d := l.At.Sub(sent); d > 2*time.Second {
		t.Fatalf("the child got TERM %s after the second one; want at once", d)
	}
	if code := w.wait(exitWait); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// TestPID1ReapsOrphans runs the wrapper as PID 1 of a new PID namespace
// around a child that leaves orphaned zombies: the wrapper reaps them,
// forwards signals, and exits with the main child's own code.
func TestPID1ReapsOrphans(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testsupport.SkipUnsupported(t, "unshare(1) not available: cannot make a PID namespace")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		testsupport.SkipUnsupported(t, "unshare --pid --fork --mount-proc not permitted here: %v: %s", err, out)
	}
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	flags := append(acct.flags(reg.URL, "pid1"), "--log-level", "debug")
	w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--orphans", "3", "--exit-on-term", "7")...),
		startOpts{Prefix: []string{unshare, "--pid", "--fork", "--mount-proc", "--kill-child"}})

	started := w.waitLog(startWait, "child started")
	if started.Log["reaps_orphans"] != true {
		t.Fatalf("as PID 1 the wrapper does not reap orphans: %s", started.Text)
	}
	child := w.ready()
	w.waitOrphansReaped(t, 3)
	w.registered()

	// From outside: the wrapper is PID 1 of its namespace, and once the
	// orphans are reaped its only child is the main child, not a zombie.
	wrapper := onlyChild(t, w.Pid())
	if ns := nsPIDs(t, wrapper); len(ns) != 2 || ns[1] != "1" {
		t.Fatalf("wrapper's NSpid = %v; want it to be PID 1 of a new namespace", ns)
	}
	outerChild := onlyChild(t, wrapper)
	if ns := nsPIDs(t, outerChild); len(ns) != 2 || ns[1] != strconv.Itoa(child) || !alive(outerChild) {
		t.Fatalf("the wrapper's only child should be the live main child %d; NSpid %v", child, ns)
	}
	// The whole namespace: the wrapper and the main child, no zombie.
	var members []int
	testsupport.EventuallyTrue(t, eventWait, "the namespace holds the wrapper and the main child only", func() bool {
		members = inPIDNamespaceOf(wrapper)
		return len(members) == 2 && alive(members[0]) && alive(members[1])
	})

	if err := syscall.Kill(wrapper, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	w.waitStdout(eventWait, "SIGUSR1 through PID 1", exactly("signal SIGUSR1"))
	if err := syscall.Kill(wrapper, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// unshare exits with its child's status, which is the wrapper's.
	if code := w.wait(exitWait); code != 7 {
		t.Fatalf("exit code %d, want the main child's 7", code)
	}
	w.waitLog(eventWait, "child exited", func(l line) bool { return l.Int("exit_code") == 7 })
	acct.mustBeAbsent(t, "pid1", "after the wrapper exited")
}

// TestSubreaperReapsOrphans: --subreaper outside a namespace adopts and
// reaps the child's orphans.
func TestSubreaperReapsOrphans(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	flags := append(acct.flags(reg.URL, "subreaper"), "--subreaper", "--log-level", "debug")
	w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--orphans", "3", "--exit-on-term", "0")...))
	started := w.waitLog(startWait, "child started")
	if started.Log["reaps_orphans"] != true {
		t.Fatalf("with --subreaper the wrapper does not reap orphans: %s", started.Text)
	}
	w.ready()
	for _, pid := range w.waitOrphansReaped(t, 3) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && !alive(pid) {
			t.Fatalf("orphan %d is still a zombie after the wrapper reported reaping it", pid)
		}
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// waitOrphansReaped waits until fakeproc --orphans n has made its n
// orphans and the wrapper has logged reaping each of them, and returns
// their pids as fakeproc saw them.
func (p *proc) waitOrphansReaped(t *testing.T, n int) []int {
	t.Helper()
	p.waitStdout(eventWait, "orphans done", exactly("orphans done"))
	lines := p.stdout.all(hasPrefix("orphan pid="))
	if len(lines) != n {
		t.Fatalf("%d orphan lines, want %d", len(lines), n)
	}
	pids := make([]int, 0, n)
	for _, o := range lines {
		pid, _ := strconv.Atoi(strings.TrimPrefix(o.Text, "orphan pid="))
		p.waitLog(eventWait, "reaped orphan", func(l line) bool { return l.Int("pid") == pid })
		pids = append(pids, pid)
	}
	return pids
}

// onlyChild waits until pid has exactly one child process and returns it.
func onlyChild(t *testing.T, pid int) int {
	t.Helper()
	var kids []int
	testsupport.EventuallyTrue(t, eventWait, fmt.Sprintf("pid %d has exactly one child", pid), func() bool {
		kids = proctest.Children(pid)
		return len(kids) == 1
	})
	return kids[0]
}

// nsPIDs returns the NSpid line of pid's status: its pid in each
// namespace, outermost first.
func nsPIDs(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// inPIDNamespaceOf lists the processes in pid's PID namespace.
func inPIDNamespaceOf(pid int) []int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if other, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && other == ns {
			out = append(out, n)
		}
	}
	return out
}
