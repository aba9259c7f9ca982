package main_test

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// TestWrapperGivenEveryFrontendStaysInItsSessionWhenOneIsKilled: three
// sr-registry processes on a three-member etcd are one registry; a
// wrapper given all three URLs stays registered, in the same session and
// heartbeating on, when the frontend it uses is killed with SIGKILL.
func TestWrapperGivenEveryFrontendStaysInItsSessionWhenOneIsKilled(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	var b [4]byte
	_, _ = rand.Read(b[:])
	store := c.URL("/e2e-" + hex.EncodeToString(b[:]))
	fronts := make([]*registrytest.Process, 3)
	urls := make([]string, 3)
	for i := range fronts {
		fronts[i] = registrytest.StartProcess(t, bin.registry, "--store", store)
		urls[i] = fronts[i].URL
	}
	// The test's own view goes through the third frontend.
	acct := newAccount(t, fronts[2].URL)
	w := startWrapper(t, cmdline(acct.flags(strings.Join(urls, ","), "clustered"), fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
	w.ready()
	sid := w.registered()
	lastSeen := func() int64 {
		s, err := acct.session(sid)
		if err != nil || s == nil || s.LastSeen == nil {
			return 0
		}
		return *s.LastSeen
	}
	testsupport.EventuallyTrue(t, 2*ttl, "a heartbeat", func() bool { return lastSeen() != 0 })

	// The wrapper uses the first frontend while it works: kill it.
	fronts[0].Kill9()
	killed := time.Now().UnixMilli()
	// Heartbeats go on, through another frontend, in the same session,
	// for longer than a timeout: a lost session would have been replaced.
	testsupport.EventuallyTrue(t, 2*ttl, "a heartbeat after the kill", func() bool { return lastSeen() > killed })
	after := lastSeen()
	testsupport.EventuallyTrue(t, 2*ttl, "heartbeats going on for longer than the timeout", func() bool {
		return lastSeen() > after+ttl.Milliseconds()
	})
	w.waitLog(eventWait, movedMsg)
	acct.mustServiceIn(t, "clustered", sid, "after the move")
	if sessions := acct.sessions(t); len(sessions) != 1 || sessions[0].ID != sid {
		t.Fatalf("sessions %+v, want %s alone", sessions, sid)
	}
	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("%d sessions created, want 1", n)
	}
	if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 {
		t.Fatalf("the failover reached the child: %v", got)
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	acct.mustBeAbsent(t, "clustered", "after the wrapper exited")
}
