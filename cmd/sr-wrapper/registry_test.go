package main_test

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/faultproxy"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// Paths of the calls the rules below act on, as faultproxy patterns.
const (
	heartbeatPath = "/v1.0/*/sessions/*/heartbeat"
	sessionsPath  = "/v1.0/*/sessions"
	servicesPath  = "/v1.0/*/services"
	tokensPath    = "/v2.0/tokens"
)

// recoveryWait bounds how long a registry that came back may take to see
// the service again: the retry backoff is capped at the timeout (3 s) with
// ±50 % jitter, plus a heartbeat interval and slack for a busy machine.
const recoveryWait = 4 * ttl

// TestRegistryDownAtStart: the child starts at once while the registry is
// unreachable, and the service appears by itself once the registry is up.
func TestRegistryDownAtStart(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	proxy := faultproxy.StartT(t, reg.URL)
	proxy.SetDown(true)
	w := startWrapper(t, cmdline(acct.flags(proxy.URL().String(), "early"), fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
	w.ready()
	w.waitLog(eventWait, "registration failed; retrying")
	testsupport.EventuallyTrue(t, eventWait, "a second attempt while down", func() bool { return proxy.Requests() >= 2 })
	acct.mustBeAbsent(t, "early", "while the registry is down")
	if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 || w.exited() {
		t.Fatalf("the registry's failure reached the child: %v", got)
	}

	up := time.Now()
	proxy.SetDown(false)
	w.waitLog(recoveryWait, "service registered")
	t.Logf("registered %s after the registry came up", time.Since(up).Round(time.Millisecond))
	acct.mustService(t, "early")

	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	acct.mustBeAbsent(t, "early", "after the wrapper exited")
}

// TestHungRegistryDoesNotDelayTheChild: a registry that accepts requests
// and never answers neither delays the child's start nor its stop.
func TestHungRegistryDoesNotDelayTheChild(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	proxy := faultproxy.StartT(t, reg.URL)
	hang := proxy.Add(faultproxy.Rule{Action: faultproxy.Delay(time.Hour)})
	w := startWrapper(t, cmdline(acct.flags(proxy.URL().String(), "hung"), fakeproc("--ready", "--exit-on-term", "0")...))
	child := w.ready()
	testsupport.EventuallyTrue(t, eventWait, "the wrapper's first call hangs in the proxy", func() bool { return hang.Seen() >= 1 })
	// The child has the wrapper's own stdin, stdout and stderr, not
	// pipes that the wrapper copies through.
	for fd := range 3 {
		mine, err1 := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", w.Pid(), fd))
		its, err2 := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", child, fd))
		if err1 != nil || err2 != nil || mine != its {
			t.Fatalf("fd %d: wrapper has %q (%v), child has %q (%v); want the same file", fd, mine, err1, its, err2)
		}
	}
	if w.exited() {
		t.Fatal("the wrapper exited")
	}
	code, took := w.stop(syscall.SIGTERM)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if took > 3*time.Second {
		t.Fatalf("stopping took %s with a hung registry; want the child's own time", took)
	}
}

// TestRegistryKilledAndRestarted kills the sr-registry binary with kill -9
// mid-run and restarts it on the same data dir and port, first at once,
// then after an outage longer than the heartbeat timeout. Each time the
// wrapper's service must be heartbeated again (its session restored, or a
// new one) without any action.
func TestRegistryKilledAndRestarted(t *testing.T) {
	t.Parallel()
	srv := registrytest.StartProcess(t, bin.registry)
	acct := newAccount(t, srv.URL)
	w := startWrapper(t, cmdline(acct.flags(srv.URL, "survivor"), fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
	w.ready()
	first := w.registered()

	// heartbeatedAfterRestart: the service is there and its session has
	// been heartbeated since the restart (a restored session has no
	// last_seen until its first heartbeat; sr-registry keeps it in memory).
	heartbeatedAfterRestart := func() (string, bool) {
		svc, err := acct.service("survivor")
		if err != nil || svc == nil {
			return "", false
		}
		sess, err := acct.session(svc.SessionID)
		if err != nil || sess == nil || sess.LastSeen == nil {
			return "", false
		}
		return svc.SessionID + "@" + time.UnixMilli(*sess.LastSeen).Format("15:04:05.000"), true
	}
	recovered := func(what string) {
		t.Helper()
		start := time.Now()
		var got string
		testsupport.EventuallyTrue(t, recoveryWait, what, func() bool {
			s, ok := heartbeatedAfterRestart()
			got = s
			return ok
		})
		// And it goes on: a later heartbeat moves last_seen again.
		testsupport.EventuallyTrue(t, 2*ttl, what+": a further heartbeat", func() bool {
			s, ok := heartbeatedAfterRestart()
			return ok && s != got
		})
		t.Logf("%s: heartbeated again %s after the restart (session@last_seen %s)", what, time.Since(start).Round(time.Millisecond), got)
	}

	srv.Kill9()
	srv.Restart()
	recovered("quick restart")

	srv.Kill9()
	w.waitLog(2*ttl+eventWait, "no heartbeat got through within the session timeout; the session has probably expired, and will be replaced as soon as the registry says so")
	srv.Restart()
	recovered("restart after an outage longer than the timeout")

	if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 || w.exited() {
		t.Fatalf("the registry's outage reached the child: %v", got)
	}
	svc := acct.mustService(t, "survivor")
	t.Logf("session before: %s, after: %s", first, svc.SessionID)
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	acct.mustBeAbsent(t, "survivor", "after the wrapper exited")
}

// TestHeartbeat500IsRetriedAndTheSessionSurvives: a 500 on the third
// heartbeat is retried at once and the session lives on.
func TestHeartbeat500IsRetriedAndTheSessionSurvives(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	proxy := faultproxy.StartT(t, reg.URL)
	fault := proxy.Add(faultproxy.Rule{Method: "POST", Path: heartbeatPath, Nth: 3, Times: 1,
		Action: faultproxy.Respond(500, api.FaultInternal)})
	w := startWrapper(t, cmdline(acct.flags(proxy.URL().String(), "hb500"), fakeproc("--ready")...))
	w.ready()
	session := w.registered()
	testsupport.EventuallyTrue(t, 4*ttl, "two heartbeats after the failed one", func() bool { return fault.Seen() >= 5 })
	if fault.Applied() != 1 {
		t.Fatalf("the 500 was applied %d times, want 1", fault.Applied())
	}
	failed := w.waitLog(eventWait, "heartbeat failed; retrying")
	back := w.waitLog(eventWait, "heartbeat recovered")
	if d := back.TS().Sub(failed.TS()); d > time.Second {
		t.Fatalf("the retry came %s after the failure; want at once", d)
	}
	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("%d sessions created, want 1: the session must survive a 500", n)
	}
	if svc := acct.mustService(t, "hb500"); svc.SessionID != session {
		t.Fatalf("service in session %s, want the first session %s", svc.SessionID, session)
	}
	if s, err := acct.session(session); err != nil || s == nil || s.LastSeen == nil {
		t.Fatalf("session %s: %+v, %v; want it alive and heartbeated", session, s, err)
	}
	// Every call so far, the failed one included, went over one
	// keep-alive connection.
	if n := proxy.Conns(); n != 1 {
		t.Fatalf("%d connections to the registry; want one persistent connection", n)
	}
}

// TestInjected401ReauthenticatesAndCarriesOn: a 401 to a heartbeat makes
// the wrapper get a new identity token and go on with the same session.
func TestInjected401ReauthenticatesAndCarriesOn(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	proxy := faultproxy.StartT(t, reg.URL)
	tokens := proxy.Add(faultproxy.Rule{Method: "POST", Path: tokensPath})
	fault := proxy.Add(faultproxy.Rule{Method: "POST", Path: heartbeatPath, Nth: 2, Times: 1,
		Action: faultproxy.Respond(401, api.FaultUnauthorized)})
	w := startWrapper(t, cmdline(acct.flags(proxy.URL().String(), "hb401"), fakeproc("--ready")...))
	w.ready()
	session := w.registered()
	testsupport.EventuallyTrue(t, 4*ttl, "heartbeats after the 401", func() bool { return fault.Seen() >= 4 })
	if fault.Applied() != 1 {
		t.Fatalf("the 401 was applied %d times, want 1", fault.Applied())
	}
	if n := tokens.Seen(); n != 2 {
		t.Fatalf("%d identity requests, want 2 (the first, and one after the 401)", n)
	}
	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("%d sessions created, want 1", n)
	}
	if l := w.stderr.all(func(l line) bool { return l.Str("level") == "warn" || l.Str("level") == "error" }); len(l) != 0 {
		t.Fatalf("a 401 re-authenticates quietly; got %s", l[0].Text)
	}
	if svc := acct.mustService(t, "hb401"); svc.SessionID != session {
		t.Fatalf("service in session %s, want %s", svc.SessionID, session)
	}
}

// TestPermanentFailureWithAbortOnFailureStopsTheChild: a 400 or 403 to
// session creation, or a 400 to registration, with --abort-on-failure
// stops the child (TERM) and exits 100.
func TestPermanentFailureWithAbortOnFailureStopsTheChild(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	tests := []struct {
		name, path string
		status     int
		fault      string
	}{
		{"400 to session creation", sessionsPath, 400, api.FaultBadRequest},
		{"403 to session creation", sessionsPath, 403, api.FaultForbidden},
		{"400 to service registration", servicesPath, 400, api.FaultBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			proxy := faultproxy.StartT(t, reg.URL)
			// Down until the child is ready: a refusal that came first
			// would stop it before it could report signals.
			proxy.SetDown(true)
			flags := append(acct.flags(proxy.URL().String(), "aborter"), "--abort-on-failure")
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
			w.ready()
			rule := proxy.Add(faultproxy.Rule{Method: "POST", Path: tt.path, Action: faultproxy.Respond(tt.status, tt.fault)})
			proxy.SetDown(false)
			if code := w.wait(exitWait); code != 100 {
				t.Fatalf("exit code %d, want 100", code)
			}
			if got := w.stdout.all(exactly("signal SIGTERM")); len(got) != 1 {
				t.Fatal("the child was not asked to stop with TERM")
			}
			if rule.Applied() != 1 {
				t.Fatalf("%d attempts; a permanent failure must end them at once", rule.Applied())
			}
			l := w.waitLog(eventWait, "registration failed for good; stopping the child (--abort-on-failure)")
			// Method, URL, status, fault type, message, details, txnId.
			for _, want := range []string{"POST " + proxy.URL().String(), strings.TrimPrefix(tt.path, "/v1.0/*") + ": ",
				strconv.Itoa(tt.status) + " " + tt.fault, "injected by faultproxy", "(POST /v1.0/", "[txnId faultproxy-"} {
				if !strings.Contains(l.Str("error"), want) {
					t.Fatalf("the error lacks %q: %s", want, l.Str("error"))
				}
			}
			if s := acct.sessions(t); len(s) != 0 {
				t.Fatalf("sessions left behind: %+v", s)
			}
		})
	}
}

// TestRegistryFailuresNeverStopTheChild: without --abort-on-failure a
// registry that refuses everything, for ever or until --retries runs out,
// never stops the child.
func TestRegistryFailuresNeverStopTheChild(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	const givingUp = "giving up registration; the child keeps running unregistered"
	tests := []struct {
		name  string
		extra []string
		// givesUp: wait for the wrapper to give up rather than for four
		// refused attempts.
		givesUp bool
	}{
		{name: "persistent 403"},
		{name: "persistent 500"},
		{name: "--retries 2 used up", extra: []string{"--retries", "2"}, givesUp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			proxy := faultproxy.StartT(t, reg.URL)
			status, fault := 403, api.FaultForbidden
			if strings.Contains(tt.name, "500") {
				status, fault = 500, api.FaultInternal
			}
			rule := proxy.Add(faultproxy.Rule{Method: "POST", Path: sessionsPath, Action: faultproxy.Respond(status, fault)})
			flags := append(acct.flags(proxy.URL().String(), "resilient"), tt.extra...)
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
			w.ready()
			if tt.givesUp {
				w.waitLog(2*ttl, givingUp)
				if n := len(w.stderr.all(logMsg(givingUp))); n != 1 {
					t.Fatalf("%q logged %d times, want once", givingUp, n)
				}
			} else {
				testsupport.EventuallyTrue(t, 2*ttl, "failed attempts", func() bool { return rule.Seen() >= 4 })
			}
			if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 || w.exited() {
				t.Fatalf("registry failures reached the child: %v", got)
			}
			if code, _ := w.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d, want the child's 0", code)
			}
		})
	}
}

// TestServiceIDHeldByAnEarlierInstance: a wrapper killed with kill -9
// leaves its session to expire; a new wrapper with the same id waits for
// that and then registers. With --retries and --abort-on-failure, an id
// held by a live wrapper makes the new one give up with exit 100.
func TestServiceIDHeldByAnEarlierInstance(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)

	t.Run("registers once the old session expired", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		a := startWrapper(t, cmdline(acct.flags(reg.URL, "held"), fakeproc("--ready")...))
		aChild := a.ready()
		aSession := a.registered()
		killed := time.Now()
		a.signal(syscall.SIGKILL)
		if err := syscall.Kill(aChild, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		a.wait(exitWait)

		b := startWrapper(t, cmdline(acct.flags(reg.URL, "held"), fakeproc("--ready")...))
		b.ready()
		b.waitLog(eventWait, "service id is still held by another session, probably an earlier instance; retrying until that session expires")
		bSession := b.registered()
		took := time.Since(killed)
		if took > ttl+5*time.Second {
			t.Fatalf("registered %s after the old wrapper died; want within the timeout %s plus slack", took, ttl)
		}
		if bSession == aSession {
			t.Fatal("the new wrapper reused the old session")
		}
		if svc := acct.mustService(t, "held"); svc.SessionID != bSession {
			t.Fatalf("service in session %s, want the new wrapper's %s", svc.SessionID, bSession)
		}
		t.Logf("registered %s after the old wrapper was killed", took.Round(time.Millisecond))
	})

	t.Run("gives up with --retries and --abort-on-failure", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		a := startWrapper(t, cmdline(acct.flags(reg.URL, "taken"), fakeproc("--ready")...))
		a.ready()
		aSession := a.registered()

		flags := append(acct.flags(reg.URL, "taken"), "--retries", "2", "--abort-on-failure")
		b := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
		b.ready()
		if code := b.wait(exitWait); code != 100 {
			t.Fatalf("exit code %d, want 100", code)
		}
		if got := b.stdout.all(exactly("signal SIGTERM")); len(got) != 1 {
			t.Fatal("the second wrapper's child was not asked to stop")
		}
		if svc := acct.mustService(t, "taken"); svc.SessionID != aSession {
			t.Fatalf("service in session %s, want the live holder's %s", svc.SessionID, aSession)
		}
		if a.exited() {
			t.Fatal("the first wrapper exited")
		}
	})
}

// TestTokenChainDebugLogAndSecrets: heartbeats chain their tokens; --debug
// logs every transaction without a token or the API key; the child's
// environment has SR_SERVICE_ID but no SR_API_KEY.
func TestTokenChainDebugLogAndSecrets(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	tests := []struct {
		name string
		// setup returns the wrapper's flags and environment, and the
		// secrets that must appear nowhere.
		setup func(t *testing.T, acct *account, registryURL string) (flags, env, secrets []string)
	}{
		{"key in SR_API_KEY", func(t *testing.T, acct *account, registryURL string) ([]string, []string, []string) {
			flags := append(withoutFlag(acct.flags(registryURL, "chain"), "--api-key"), "--debug")
			return flags, []string{"SR_API_KEY=" + acct.Key}, []string{acct.Key}
		}},
		{"key in --api-key, another in SR_API_KEY", func(t *testing.T, acct *account, registryURL string) ([]string, []string, []string) {
			other := "other-secret-" + randomHex(8)
			return append(acct.flags(registryURL, "chain"), "--debug"), []string{"SR_API_KEY=" + other}, []string{acct.Key, other}
		}},
		{"SR_REGISTRY_URL, SR_USERNAME, SR_DEBUG and --api-key-file", func(t *testing.T, acct *account, registryURL string) ([]string, []string, []string) {
			keyFile := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(keyFile, []byte(acct.Key+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			flags := withoutFlag(withoutFlag(withoutFlag(acct.flags(registryURL, "chain"), "--api-key"), "--registry"), "--username")
			flags = append(flags, "--api-key-file", keyFile)
			env := []string{"SR_REGISTRY_URL=" + registryURL, "SR_USERNAME=" + acct.User, "SR_DEBUG=1"}
			return flags, env, []string{acct.Key}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			rec := startTokenRecorder(t, reg.URL)
			flags, env, keys := tt.setup(t, acct, rec.URL())
			w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--print-env", "SR_API_KEY", "--print-env", "SR_SERVICE_ID")...),
				startOpts{Env: env})
			w.ready()
			w.waitStdout(eventWait, "SR_API_KEY", exactly("unset SR_API_KEY"))
			w.waitStdout(eventWait, "SR_SERVICE_ID", exactly("SR_SERVICE_ID=chain"))
			w.registered()

			var beats []heartbeat
			var created []string
			testsupport.EventuallyTrue(t, 4*ttl, "three heartbeats", func() bool {
				created, beats, _ = rec.snapshot()
				return len(beats) >= 3
			})
			if len(created) != 1 {
				t.Fatalf("%d sessions created, want 1", len(created))
			}
			prev, seen := created[0], map[string]bool{created[0]: true}
			for i, b := range beats {
				if b.Status != 200 || b.Sent != prev || b.Got == "" || seen[b.Got] {
					t.Fatalf("heartbeat %d: sent %q (want %q), got %q, status %d: the chain is broken", i+1, b.Sent, prev, b.Got, b.Status)
				}
				seen[b.Got] = true
				prev = b.Got
			}

			w.stop(syscall.SIGTERM)
			if !w.stderr.WaitEOF(eventWait) || !w.stdout.WaitEOF(eventWait) {
				t.Fatal("output still open")
			}
			out := w.stderr.String() + w.stdout.String()
			_, _, xauth := rec.snapshot()
			secrets := append(keys, xauth...)
			for tok := range seen {
				secrets = append(secrets, tok)
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Fatalf("the output contains the secret %q", s)
				}
			}

			// Every transaction is in the debug log: method, URL,
			// status, bodies.
			wantTxns := []struct{ method, path string }{
				{"POST", tokensPath}, {"POST", sessionsPath}, {"POST", servicesPath},
				{"POST", heartbeatPath}, {"DELETE", sessionsPath + "/*"},
			}
			txns := w.stderr.all(logMsg("http transaction"))
			for _, l := range txns {
				if l.Str("method") == "" || l.Str("url") == "" {
					t.Fatalf("transaction line without method or URL: %s", l.Text)
				}
				if l.Str("error") != "" {
					// No reply: a heartbeat in flight when the stop
					// signal came is cancelled; its error says so.
					continue
				}
				if l.Int("status") < 100 {
					t.Fatalf("transaction line without status or error: %s", l.Text)
				}
				for _, field := range []string{"request", "response"} {
					if _, ok := l.Log[field]; !ok {
						t.Fatalf("transaction line without %s body: %s", field, l.Text)
					}
				}
			}
			for _, want := range wantTxns {
				if !slices.ContainsFunc(txns, func(l line) bool {
					u, err := url.Parse(l.Str("url"))
					ok, _ := path.Match(want.path, u.Path)
					return err == nil && ok && l.Str("method") == want.method
				}) {
					t.Fatalf("no debug line for %s %s", want.method, want.path)
				}
			}
			// Every line names the service, and from the session's
			// creation to its end the session too. (The client's debug
			// lines are left out: see the report.)
			inSession := false
			for _, l := range w.stderr.all(nil) {
				if l.Log == nil {
					t.Fatalf("stderr line is not a JSON log entry: %s", l.Text)
				}
				switch l.Msg() {
				case "http transaction":
					continue
				case "session created":
					inSession = true
				case "deregistered":
					inSession = false
				}
				if l.Str("service") != "chain" || inSession && l.Str("session") == "" {
					t.Fatalf("log line without the service id or the session id: %s", l.Text)
				}
			}
			hb := w.stderr.all(func(l line) bool { return strings.HasSuffix(l.Str("url"), "/heartbeat") })
			if req := hb[0].Str("request"); !strings.Contains(req, `"token":"REDACTED"`) {
				t.Fatalf("heartbeat request body %q: want the token redacted but the field shown", req)
			}
		})
	}
}

// TestRegistryNotListeningAtStart: nothing listens on the registry's port
// when the wrapper starts (connection refused); the child runs at once,
// and the service appears once an sr-registry starts on that port.
func TestRegistryNotListeningAtStart(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	user, key := "e2e-"+randomHex(4), "secret-key-"+randomHex(8)
	flags := []string{"--registry", "http://" + addr + "/v1.0", "--username", user, "--api-key", key,
		"--id", "refused", "--interval", "3", "--log-format", "json"}
	w := startWrapper(t, cmdline(flags, fakeproc("--ready")...))
	w.ready()
	l := w.waitLog(eventWait, "registration failed; retrying")
	if !strings.Contains(l.Str("error"), "connection refused") {
		t.Fatalf("want a refused connection, got %s", l.Text)
	}
	up := time.Now()
	srv := registrytest.StartProcess(t, bin.registry, "--listen", addr)
	acct := newAccountAs(t, srv.URL, user, key)
	w.waitLog(recoveryWait, "service registered")
	acct.mustService(t, "refused")
	t.Logf("registered %s after the registry started", time.Since(up).Round(time.Millisecond))
}

// TestRegistryLostItsStateNewSession: the registry comes back without its
// data (a new data dir on the same port), answers 404 to the heartbeat,
// and the wrapper makes a new session and registers again, with a warning.
func TestRegistryLostItsStateNewSession(t *testing.T) {
	t.Parallel()
	first := registrytest.StartProcess(t, bin.registry)
	acct := newAccount(t, first.URL)
	w := startWrapper(t, cmdline(acct.flags(first.URL, "amnesia"), fakeproc("--ready")...))
	w.ready()
	old := w.registered()

	first.Kill9()
	second := registrytest.StartProcess(t, bin.registry, "--listen", first.Addr)
	lost := w.waitLog(recoveryWait, "session lost; creating a new session and registering again")
	if lost.Str("level") != "warn" {
		t.Fatalf("a lost session is a warning: %s", lost.Text)
	}
	l := w.waitLog(recoveryWait, "service registered", func(l line) bool { return l.Str("session") != old })
	if svc := newAccountAs(t, second.URL, acct.User, acct.Key).mustService(t, "amnesia"); svc.SessionID != l.Str("session") {
		t.Fatalf("service in session %s, want the new session %s", svc.SessionID, l.Str("session"))
	}
}

// TestSessionDeletedUnderneathIsReplaced: someone deletes the wrapper's
// session; the next heartbeat gets 404 and the wrapper registers again in
// a new session.
func TestSessionDeletedUnderneathIsReplaced(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	acct := newAccount(t, reg.URL)
	w := startWrapper(t, cmdline(acct.flags(reg.URL, "orphaned"), fakeproc("--ready")...))
	w.ready()
	old := w.registered()
	ctx, cancel := callCtx()
	err := acct.API.DeleteSession(ctx, old)
	cancel()
	if err != nil {
		t.Fatalf("delete session %s: %v", old, err)
	}
	acct.mustBeAbsent(t, "orphaned", "after its session was deleted")
	w.waitLog(ttl+eventWait, "session lost; creating a new session and registering again")
	l := w.waitLog(eventWait, "service registered", func(l line) bool { return l.Str("session") != old })
	if svc := acct.mustService(t, "orphaned"); svc.SessionID != l.Str("session") {
		t.Fatalf("service in session %s, want the new session %s", svc.SessionID, l.Str("session"))
	}
}
