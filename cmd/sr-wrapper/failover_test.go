package main_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const movedMsg = "registry frontend failed; moving to the next"

// TestFailoverKeepsTheSession: a wrapper given two frontends of one
// registry stays registered in the same session, heartbeating on, when the
// frontend it uses dies. The bbolt store has one frontend, so the two are
// fault proxies in front of one registry: two URLs, one shared state, as
// sr-registry's frontends on etcd.
func TestFailoverKeepsTheSession(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	p1 := faultproxy.StartT(t, reg.URL)
	p2 := faultproxy.StartT(t, reg.URL)
	beats1 := p1.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath})
	beats2 := p2.Add(faultproxy.Rule{Method: http.MethodPost, Path: heartbeatPath})
	list := p1.URL().String() + "," + p2.URL().String()
	w := startWrapper(t, cmdline(acct.flags(list, "two-frontends"), fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
	w.ready()
	sid := w.registered()
	testsupport.EventuallyTrue(t, 2*ttl, "a heartbeat through the first frontend", func() bool { return beats1.Seen() >= 1 })
	if n := p2.Requests(); n != 0 {
		t.Fatalf("%d requests to the second frontend while the first works", n)
	}

	if err := p1.Close(); err != nil { // the frontend in use dies
		t.Fatal(err)
	}
	// Three heartbeats are more than one timeout: a session that had
	// been lost would have been replaced by then.
	testsupport.EventuallyTrue(t, 4*ttl, "three heartbeats through the second frontend", func() bool { return beats2.Seen() >= 3 })
	// Why: refused, or the reply lost when a beat was in flight.
	l := w.waitLog(eventWait, movedMsg)
	if l.Str("frontend") != p1.URL().String() || l.Str("next") != p2.URL().String() || !strings.Contains(l.Str("error"), "POST "+p1.URL().String()+"/") {
		t.Fatalf("log line %s: want the dead frontend, the next one and why", l.Text)
	}

	sessions := acct.sessions(t)
	if len(sessions) != 1 || sessions[0].ID != sid {
		t.Fatalf("sessions in the registry: %+v; want %s alone", sessions, sid)
	}
	acct.mustServiceIn(t, "two-frontends", sid, "after the failover")
	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("%d sessions created, want 1", n)
	}
	if lost := w.stderr.all(logMsg("session lost; creating a new session and registering again")); len(lost) != 0 {
		t.Fatalf("the session was lost: %s", lost[0].Text)
	}
	if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 {
		t.Fatalf("the failover reached the child: %v", got)
	}

	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	acct.mustBeAbsent(t, "two-frontends", "after the wrapper exited (deregistered through the second frontend)")
}

// TestFailoverErrorNamesEveryFrontend: with every frontend down, the log
// says what each did, and the service appears once one comes up.
func TestFailoverErrorNamesEveryFrontend(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	p1 := faultproxy.StartT(t, reg.URL)
	p2 := faultproxy.StartT(t, reg.URL)
	p1.SetDown(true)
	p2.SetDown(true)
	list := p1.URL().String() + "," + p2.URL().String()
	w := startWrapper(t, cmdline(acct.flags(list, "all-down"), fakeproc("--ready", "--exit-on-term", "0")...))
	w.ready()
	l := w.waitLog(eventWait, "registration failed; retrying")
	for _, want := range []string{"all 2 registry frontends failed", "POST http://" + p1.URL().Host + "/v2.0/tokens", "POST http://" + p2.URL().Host + "/v2.0/tokens"} {
		if !strings.Contains(l.Str("error"), want) {
			t.Errorf("error %q lacks %q", l.Str("error"), want)
		}
	}
	p2.SetDown(false)
	w.waitLog(recoveryWait, "service registered")
	acct.mustService(t, "all-down")
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}
