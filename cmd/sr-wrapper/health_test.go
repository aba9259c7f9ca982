package main_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcd"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// The health checks of these tests are fast, so that a transition takes
// a fraction of a second: checks every 200 ms, each cut off after as
// long (a refused connection or a missing file answers at once), two
// failures in a row to fall.
const (
	checkInterval = 200 * time.Millisecond
	checkFall     = 2
)

// checkFlags are the timing flags of the health tests, with rise as given.
func checkFlags(rise int) []string {
	return []string{
		"--check-interval", checkInterval.String(), "--check-timeout", checkInterval.String(),
		"--check-rise", strconv.Itoa(rise), "--check-fall", strconv.Itoa(checkFall),
	}
}

// healthBackend is a registry backend as the health tests see it: how the
// wrapper is pointed at it, and what it lists.
type healthBackend struct {
	// flags are the wrapper's usual flags for service id.
	flags func(id string) []string
	// service reports whether id is listed and in which session. It fails
	// the test when the backend cannot be read, or (etcd) when the
	// service's key is not bound to its session's lease.
	service func(t *testing.T, id string) (session string, present bool)
	// sessionAlive reports whether the session exists (etcd: its key is
	// there and its lease is live).
	sessionAlive func(t *testing.T, session string) bool
	// serviceIDs lists the ids of every service the backend holds.
	serviceIDs func(t *testing.T) []string

	// HTTP backend only: the account the wrapper uses.
	acct *account
}

// newHTTPBackend starts an sr-registry with an account of its own.
func newHTTPBackend(t *testing.T) *healthBackend {
	t.Helper()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	return &healthBackend{
		flags: func(id string) []string { return acct.flags(reg.URL, id) },
		service: func(t *testing.T, id string) (string, bool) {
			t.Helper()
			s, err := acct.service(id)
			if err != nil {
				t.Fatalf("GET /services/%s: %v", id, err)
			}
			if s == nil {
				return "", false
			}
			return s.SessionID, true
		},
		sessionAlive: func(t *testing.T, session string) bool {
			t.Helper()
			return slices.ContainsFunc(acct.sessions(t), func(s api.Session) bool { return s.ID == session })
		},
		serviceIDs: func(t *testing.T) []string {
			t.Helper()
			ctx, cancel := callCtx()
			defer cancel()
			l, err := acct.API.ListServices(ctx, srapi.ListOptions{})
			if err != nil {
				t.Fatalf("list services: %v", err)
			}
			var ids []string
			for _, s := range l.Values {
				ids = append(ids, s.ID)
			}
			return ids
		},
		acct: acct,
	}
}

// newEtcdBackend starts a one-member etcd.
func newEtcdBackend(t *testing.T) *healthBackend {
	t.Helper()
	c := etcdtest.StartSingle(t)
	cli := c.Client()
	return &healthBackend{
		flags: func(id string) []string { return etcdFlags(c, id) },
		service: func(t *testing.T, id string) (string, bool) {
			t.Helper()
			value, lease, ok, err := etcdKey(cli, etcd.ServiceKey(etcdPrefix, id))
			if err != nil {
				t.Fatalf("read service %s: %v", id, err)
			}
			if !ok {
				return "", false
			}
			var svc api.Service
			if err := json.Unmarshal(value, &svc); err != nil {
				t.Fatalf("service value %s: %v", value, err)
			}
			if want := leaseOfSession(t, svc.SessionID); lease != want {
				t.Fatalf("service %s bound to lease %x, not to its session's %x", id, lease, want)
			}
			return svc.SessionID, true
		},
		sessionAlive: func(t *testing.T, session string) bool {
			t.Helper()
			want := leaseOfSession(t, session)
			_, lease, ok, err := etcdKey(cli, etcd.SessionKey(etcdPrefix, session))
			if err != nil {
				t.Fatalf("read session %s: %v", session, err)
			}
			if !ok || lease != want {
				return false
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cli.TimeToLive(ctx, want)
			if err != nil {
				t.Fatalf("lease %x: %v", want, err)
			}
			return resp.TTL > 0
		},
		serviceIDs: func(t *testing.T) []string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			dir := etcd.ServiceKey(etcdPrefix, "")
			resp, err := cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				t.Fatalf("list %s: %v", dir, err)
			}
			var ids []string
			for _, kv := range resp.Kvs {
				ids = append(ids, strings.TrimPrefix(string(kv.Key), dir))
			}
			return ids
		},
	}
}

func inSession(session string) func(line) bool {
	return func(l line) bool { return l.Str("session") == session }
}

// serveTCP listens on addr, as the checked program would, and closes
// every connection it accepts, until the returned func (or the test's end)
// closes the port.
func serveTCP(t *testing.T, addr string) (closePort func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	closePort = func() { _ = ln.Close() }
	t.Cleanup(closePort)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return closePort
}

// shellQuote quotes s as one word for --check-cmd (and a POSIX shell).
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// expectAbsent fails the test when the backend lists the service.
func (b *healthBackend) expectAbsent(t *testing.T, id, when string) {
	t.Helper()
	if s, ok := b.service(t, id); ok {
		t.Fatalf("%s: service %s is listed (session %s); want it absent", when, id, s)
	}
}

// expectIn fails the test unless the backend lists the service in session.
func (b *healthBackend) expectIn(t *testing.T, id, session, when string) {
	t.Helper()
	s, ok := b.service(t, id)
	if !ok || s != session {
		t.Fatalf("%s: service %s listed %v in session %q; want it in session %s", when, id, ok, s, session)
	}
}

// expectSession fails the test unless the session exists.
func (b *healthBackend) expectSession(t *testing.T, session, when string) {
	t.Helper()
	if !b.sessionAlive(t, session) {
		t.Fatalf("%s: session %s is gone; want it kept", when, session)
	}
}

// TestHealthTCPServiceAppearsDisappearsAndComesBack: with --check-tcp on a
// port that the test opens, closes and opens again, the session exists at
// once and the service only while the port accepts connections: it
// appears when the port opens, goes after two failed checks once it
// closes (the session and the child staying), and comes back in the same
// session when the port accepts again. On both backends.
func TestHealthTCPServiceAppearsDisappearsAndComesBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		backend func(*testing.T) *healthBackend
	}{
		{"http", newHTTPBackend},
		{"etcd", newEtcdBackend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := tc.backend(t)
			const id = "tcp-late"
			addr := freeAddr(t)
			flags := append(append(b.flags(id), "--check-tcp", addr), checkFlags(1)...)
			w := startWrapper(t, cmdline(flags, fakeproc("--ready")...))
			child := w.ready()
			session := w.waitLog(startWait, "session created").Str("session")

			// Unhealthy: the session is there, the service not. Looked at
			// once the check has failed `fall` times, well after the moment
			// when a wrapper that ignored its check would have registered.
			notYet := w.waitLog(eventWait, "service is not healthy yet")
			if n := notYet.Int("failures_in_a_row"); n != checkFall {
				t.Fatalf("%q after %d failures, want %d", notYet.Msg(), n, checkFall)
			}
			b.expectSession(t, session, "before the port opened")
			if ids := b.serviceIDs(t); len(ids) != 0 {
				t.Fatalf("before the port opened the registry lists services %v; want none", ids)
			}

			// The port opens: healthy, registered in the same session.
			closePort := serveTCP(t, addr)
			healthy := w.waitLogFrom(notYet.Index+1, eventWait, "service is healthy")
			w.waitLogFrom(healthy.Index+1, eventWait, "service registered", inSession(session))
			b.expectIn(t, id, session, "once the port opened")

			// The port closes: unhealthy after two failures, deregistered,
			// the session and the child kept.
			closePort()
			unhealthy := w.waitLogFrom(healthy.Index+1, eventWait, "service is unhealthy")
			if n := unhealthy.Int("failures_in_a_row"); n != checkFall {
				t.Fatalf("unhealthy after %d failures, want %d (--check-fall)", n, checkFall)
			}
			if e := unhealthy.Str("error"); !strings.Contains(e, "connection refused") {
				t.Fatalf("unhealthy with error %q; want the check's last error (connection refused)", e)
			}
			dereg := w.waitLogFrom(unhealthy.Index+1, eventWait, "service deregistered: unhealthy", inSession(session))
			b.expectAbsent(t, id, "after the port closed")
			b.expectSession(t, session, "after the port closed")
			if !alive(child) || w.exited() {
				t.Fatal("the child stopped running when its check failed")
			}

			// The port accepts again: back in the same session.
			serveTCP(t, addr)
			back := w.waitLogFrom(dereg.Index+1, eventWait, "service is healthy")
			w.waitLogFrom(back.Index+1, eventWait, "service registered", inSession(session))
			b.expectIn(t, id, session, "once the port accepted again")
			if n := sessionsCreated(w); n != 1 {
				t.Fatalf("%d sessions created; health changes must keep the session", n)
			}
			if !alive(child) {
				t.Fatal("the child is gone")
			}

			if code, _ := w.stop(syscall.SIGTERM); code != 128+int(syscall.SIGTERM) {
				t.Fatalf("exit code %d, want %d (the child's death by TERM)", code, 128+int(syscall.SIGTERM))
			}
			b.expectAbsent(t, id, "after the wrapper exited")
		})
	}
}

// TestHealthHTTPStatus: --check-http takes 2xx and 3xx as healthy; a
// program that answers 500 is never registered, however long it runs.
func TestHealthHTTPStatus(t *testing.T) {
	t.Parallel()
	backends := map[string]*healthBackend{"http": newHTTPBackend(t), "etcd": newEtcdBackend(t)}
	for _, tc := range []struct {
		backend string
		status  int
		healthy bool
	}{
		{"http", 500, false},
		{"http", 200, true},
		{"http", 302, true},
		{"etcd", 500, false},
		{"etcd", 200, true},
	} {
		t.Run(tc.backend+"/"+strconv.Itoa(tc.status), func(t *testing.T) {
			t.Parallel()
			b := backends[tc.backend]
			id := "http-" + strconv.Itoa(tc.status)
			addr := freeAddr(t)
			flags := append(append(b.flags(id), "--check-http", "http://"+addr+"/health", "--log-level", "debug"), checkFlags(1)...)
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--listen", addr, "--http-status", strconv.Itoa(tc.status))...))
			w.ready()
			w.waitStdout(startWait, `"listening addr=..."`, hasPrefix("listening addr="))
			session := w.waitLog(startWait, "session created").Str("session")

			if tc.healthy {
				w.waitLog(eventWait, "service registered", inSession(session))
				b.expectIn(t, id, session, "while it answers "+strconv.Itoa(tc.status))
				return
			}
			// Several intervals of 500s (and refusals before fakeproc
			// listened): never registered.
			const intervals = 8
			failed := w.waitLog(startWait, "health check failed", func(l line) bool { return l.Int("failures_in_a_row") >= intervals })
			if e := failed.Str("error"); !strings.Contains(e, "500 Internal Server Error") {
				t.Fatalf("check failed with %q; want the 500 answer", e)
			}
			w.waitLog(eventWait, "service is not healthy yet")
			for _, msg := range []string{"service is healthy", "service registered"} {
				if got := w.stderr.all(logMsg(msg)); len(got) != 0 {
					t.Fatalf("%q logged while the check failed: %s", msg, got[0].Text)
				}
			}
			b.expectAbsent(t, id, "after "+strconv.Itoa(intervals)+" failed checks")
			b.expectSession(t, session, "while unhealthy")
		})
	}
}

// TestHealthCommandCheck: --check-cmd runs without a shell (test -f on a
// marker file the test creates and removes) or with one when asked, in the
// child's environment: without the registry's API key.
func TestHealthCommandCheck(t *testing.T) {
	t.Parallel()
	b := newHTTPBackend(t)

	t.Run("marker file", func(t *testing.T) {
		t.Parallel()
		const id = "cmd-marker"
		const rise = 2
		marker := filepath.Join(t.TempDir(), "up")
		flags := append(append(b.flags(id), "--check-cmd", "test -f "+shellQuote(marker)), checkFlags(rise)...)
		w := startWrapper(t, cmdline(flags, fakeproc("--ready")...))
		child := w.ready()
		session := w.waitLog(startWait, "session created").Str("session")
		w.waitLog(eventWait, "service is not healthy yet")
		b.expectAbsent(t, id, "before the marker exists")
		b.expectSession(t, session, "before the marker exists")

		from := 0
		for round := range 2 {
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			healthy := w.waitLogFrom(from, eventWait, "service is healthy")
			if n := healthy.Int("successes_in_a_row"); n != rise {
				t.Fatalf("round %d: healthy after %d passes, want %d (--check-rise)", round, n, rise)
			}
			reg := w.waitLogFrom(healthy.Index+1, eventWait, "service registered", inSession(session))
			b.expectIn(t, id, session, "with the marker")
			if round == 1 {
				break
			}

			if err := os.Remove(marker); err != nil {
				t.Fatal(err)
			}
			unhealthy := w.waitLogFrom(reg.Index+1, eventWait, "service is unhealthy")
			if n := unhealthy.Int("failures_in_a_row"); n != checkFall {
				t.Fatalf("unhealthy after %d failures, want %d", n, checkFall)
			}
			if e := unhealthy.Str("error"); !strings.Contains(e, "exited with status 1") {
				t.Fatalf("unhealthy with error %q; want the command's exit status", e)
			}
			dereg := w.waitLogFrom(unhealthy.Index+1, eventWait, "service deregistered: unhealthy", inSession(session))
			b.expectAbsent(t, id, "without the marker")
			b.expectSession(t, session, "without the marker")
			if !alive(child) {
				t.Fatal("the child stopped running when its check failed")
			}
			from = dereg.Index + 1
		}
		if n := sessionsCreated(w); n != 1 {
			t.Fatalf("%d sessions created; health changes must keep the session", n)
		}
	})

	t.Run("environment", func(t *testing.T) {
		t.Parallel()
		const id = "cmd-env"
		envFile := filepath.Join(t.TempDir(), "env")
		// Renamed into place, so that the file is read whole while the
		// next check rewrites it.
		script := `env > "$1.tmp" && mv "$1.tmp" "$1" && echo check-output`
		flags := append(withoutFlag(b.flags(id), "--api-key"), "--log-level", "debug",
			"--check-cmd", "sh -c "+shellQuote(script)+" sh "+shellQuote(envFile))
		flags = append(flags, checkFlags(1)...)
		// The key comes from the environment, the way that must not leak.
		w := startWrapper(t, cmdline(flags, fakeproc("--ready")...), startOpts{Env: []string{"SR_API_KEY=" + b.acct.Key}})
		w.ready()
		w.waitLog(startWait, "service registered")

		env, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatalf("the check command's environment: %v", err)
		}
		lines := strings.Split(string(env), "\n")
		if strings.Contains(string(env), b.acct.Key) || slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "SR_API_KEY=") }) {
			t.Fatalf("the check command sees the API key:\n%s", env)
		}
		if !slices.Contains(lines, "SR_SERVICE_ID="+id) {
			t.Fatalf("the check command's environment lacks SR_SERVICE_ID=%s, which the child has:\n%s", id, env)
		}
		ended := w.waitLog(eventWait, "health check command ended")
		if ended.Str("status") != "exited with status 0" || ended.Str("output") != "check-output\n" {
			t.Fatalf("debug line of the check command: %s; want status 0 and its output", ended.Text)
		}
	})
}

// TestHealthHangingCheckBlocksNothing: a check that never answers (sleep
// 60, cut off after 500 ms) keeps the service out, but the session is
// heartbeated past its timeout, and TERM ends the wrapper at once with the
// child's exit code, leaving no check process behind.
func TestHealthHangingCheckBlocksNothing(t *testing.T) {
	t.Parallel()
	b := newHTTPBackend(t)
	const id = "hanging-check"
	flags := append(b.flags(id), "--check-cmd", "sleep 60",
		"--check-interval", "500ms", "--check-timeout", "500ms", "--check-fall", strconv.Itoa(checkFall))
	w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--exit-on-term", "7")...))
	w.ready()
	created := w.waitLog(startWait, "session created")
	session := created.Str("session")
	notYet := w.waitLog(eventWait, "service is not healthy yet")
	if e := notYet.Str("error"); !strings.Contains(e, "--check-timeout") {
		t.Fatalf("check failed with %q; want a timeout", e)
	}

	// last_seen advancing past the moment the session would have expired
	// without heartbeats: they go on beside the hanging checks.
	expiry := created.TS().Add(ttl).UnixMilli()
	beats := map[int64]bool{}
	testsupport.EventuallyTrue(t, 2*ttl+eventWait, "heartbeats past the session's timeout", func() bool {
		s, err := b.acct.session(session)
		if err != nil || s == nil {
			t.Fatalf("session %s: %+v, %v; want it heartbeated", session, s, err)
		}
		if s.LastSeen == nil {
			return false
		}
		beats[*s.LastSeen] = true
		return len(beats) >= 2 && *s.LastSeen > expiry
	})
	ctx, cancel := callCtx()
	events, err := b.acct.API.ListEvents(ctx, srapi.ListOptions{})
	cancel()
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	for _, e := range events.Values {
		if e.Type == api.EventServicesTimeout {
			t.Fatalf("event %s %s: the session expired", e.Type, e.Payload)
		}
	}
	if got := w.stderr.all(func(l line) bool { return strings.HasPrefix(l.Msg(), "heartbeat failed") }); len(got) != 0 {
		t.Fatalf("heartbeats failed: %s", got[0].Text)
	}
	b.expectAbsent(t, id, "while its check hangs")

	var sleeps []int
	testsupport.EventuallyTrue(t, eventWait, "a hanging check command running", func() bool {
		sleeps = markedProcs(w.marker, "sleep")
		return len(sleeps) > 0
	})
	code, took := w.stop(syscall.SIGTERM)
	if code != 7 {
		t.Fatalf("exit code %d, want the child's 7", code)
	}
	// The child exits at once on TERM; the wrapper only has to end the
	// session and the check in flight.
	if took > 1500*time.Millisecond {
		t.Fatalf("the wrapper exited %s after TERM; a hanging check must not hold it", took.Round(time.Millisecond))
	}
	t.Logf("exited %s after TERM", took.Round(time.Millisecond))
	for _, pid := range sleeps {
		if alive(pid) {
			t.Fatalf("check process %d outlived the wrapper", pid)
		}
	}
	if left := markedProcs(w.marker, ""); len(left) != 0 {
		t.Fatalf("processes %v outlived the wrapper", left)
	}
	if s, err := b.acct.session(session); err != nil || s != nil {
		t.Fatalf("session %s after the wrapper exited: %+v, %v; want it ended", session, s, err)
	}
}
