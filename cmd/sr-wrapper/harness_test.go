package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/linetest"
	"github.com/sr-wrapper/sr-wrapper/internal/proctest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// Bounds of the waits. Generous: they only matter when something is wrong,
// and the machine may be busy compiling next to the tests.
const (
	startWait = 15 * time.Second // the wrapper and its child are up
	eventWait = 10 * time.Second // a line that should follow at once
	exitWait  = 10 * time.Second // the wrapper exits after its child did
)

// ttl is the heartbeat timeout of most tests (--interval 3, the minimum),
// so that expiry and recovery take seconds.
const ttl = 3 * time.Second

// line is one line a process wrote, with its JSON log entry decoded.
type line struct {
	linetest.Line
	// Log is the line decoded as a JSON log entry, nil for other lines.
	Log map[string]any
}

func decodeLine(l linetest.Line) line {
	d := line{Line: l}
	var entry map[string]any
	if strings.HasPrefix(l.Text, "{") && json.Unmarshal([]byte(l.Text), &entry) == nil {
		d.Log = entry
	}
	return d
}

// Msg is the log entry's message, "" for a line that is not a log entry.
func (l line) Msg() string { return l.Str("msg") }

// Str is a string field of the log entry.
func (l line) Str(key string) string {
	s, _ := l.Log[key].(string)
	return s
}

// Int is a numeric field of the log entry, -1 when absent.
func (l line) Int(key string) int {
	if f, ok := l.Log[key].(float64); ok {
		return int(f)
	}
	return -1
}

// TS is the time stamp the wrapper wrote into the log entry.
func (l line) TS() time.Time {
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.Str("ts"))
	if err != nil {
		return time.Time{}
	}
	return ts
}

// stream is the lines of one pipe, matched as decoded lines.
type stream struct{ *linetest.Lines }

// waitFrom returns the first line at or after index from that matches,
// waiting up to timeout; the error says whether it timed out or the pipe
// closed first.
func (s stream) waitFrom(from int, timeout time.Duration, match func(line) bool) (line, error) {
	l, err := s.WaitFrom(from, timeout, func(l linetest.Line) bool { return match(decodeLine(l)) })
	if err != nil {
		return line{}, err
	}
	return decodeLine(l), nil
}

// all returns the lines read so far that match (all of them for nil).
func (s stream) all(match func(line) bool) []line {
	var out []line
	for _, l := range s.All(nil) {
		if d := decodeLine(l); match == nil || match(d) {
			out = append(out, d)
		}
	}
	return out
}

// Line matchers.

func exactly(text string) func(line) bool { return func(l line) bool { return l.Text == text } }

func hasPrefix(p string) func(line) bool {
	return func(l line) bool { return strings.HasPrefix(l.Text, p) }
}

func logMsg(msg string) func(line) bool { return func(l line) bool { return l.Msg() == msg } }

// proc is a process the test started: the wrapper, or a command that runs
// it (unshare).
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr stream
	started        time.Time

	done     chan struct{} // closed once the process has been waited for
	exitedAt time.Time
	status   syscall.WaitStatus

	// marker is an environment entry that the wrapper passes on to its
	// child and every descendant: the cleanup kills what carries it.
	marker string
}

// startOpts change how startWrapper runs the wrapper.
type startOpts struct {
	// Env is added to the test's environment, from which every SR_
	// variable is removed first.
	Env []string
	// Prefix runs the wrapper under another command (unshare ...).
	Prefix []string
	// Binary is the wrapper to run instead of the one TestMain built.
	Binary string
}

// startWrapper runs the built sr-wrapper with args (flags, "--", command),
// its stdout and stderr on pipes the test reads. The wrapper and every
// process it started are killed when the test ends, and their output is
// logged if the test failed.
func startWrapper(t *testing.T, args []string, opts ...startOpts) *proc {
	t.Helper()
	var o startOpts
	for _, x := range opts {
		o.Env = append(o.Env, x.Env...)
		o.Prefix = append(o.Prefix, x.Prefix...)
		if x.Binary != "" {
			o.Binary = x.Binary
		}
	}
	wrapper := bin.wrapper
	if o.Binary != "" {
		wrapper = o.Binary
	}
	argv := append(append(append([]string(nil), o.Prefix...), wrapper), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, o.Env...)
	marker := markerEnv + "=" + randomHex(8)
	cmd.Env = append(cmd.Env, marker)

	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	// *os.File: the child inherits the pipes themselves, as it would a
	// terminal, and Wait does not wait for copying goroutines.
	cmd.Stdout, cmd.Stderr = outW, errW
	p := &proc{t: t, cmd: cmd, done: make(chan struct{}), marker: marker}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	_ = outW.Close()
	_ = errW.Close()
	p.stdout = stream{linetest.Collect(outR)}
	p.stderr = stream{linetest.Collect(errR)}
	go func() {
		_ = cmd.Wait()
		p.exitedAt = time.Now()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			p.status = ws
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if !p.stdout.WaitEOF(exitWait) || !p.stderr.WaitEOF(exitWait) {
			t.Errorf("output of %s still open %s after it was killed", path.Base(argv[0]), exitWait)
		}
		_ = outR.Close()
		_ = errR.Close()
		if n := killMarked(p.marker); n > 0 {
			t.Errorf("%d descendants of the wrapper outlived its output", n)
		}
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in %s (built with SR_E2E_RACE_WRAPPER=1)", path.Base(argv[0]))
		}
		if t.Failed() {
			t.Logf("command: %q (pid %d, started %s, status %s after %s)", argv, p.Pid(), p.started.Format("15:04:05.000"),
				describeStatus(p.status), p.exitedAt.Sub(p.started).Round(time.Millisecond))
			t.Logf("stdout:\n%s", p.stdout)
			t.Logf("stderr:\n%s", p.stderr)
		}
	})
	return p
}

// markerEnv names the environment entry by which the cleanup finds every
// process a test started, down to orphans and grandchildren.
const markerEnv = "E2E_TEST_PROC"

// kill ends the process and all its descendants, if still there.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	killMarked(p.marker)
	select {
	case <-p.done:
	case <-time.After(exitWait):
		p.t.Errorf("pid %d did not exit %s after SIGKILL", p.cmd.Process.Pid, exitWait)
	}
	killMarked(p.marker) // anything forked meanwhile
}

// killMarked sends SIGKILL to every process whose environment holds
// marker and returns how many it found. Each is opened as a pidfd, and its
// environment read again, before it is signalled, so that a pid reused in
// between is never hit.
func killMarked(marker string) int {
	n := 0
	for _, pid := range markedPIDs(marker) {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		if hasMarker(pid, marker) && unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
			n++
		}
		_ = unix.Close(fd)
	}
	return n
}

// markedPIDs lists the processes whose environment holds marker, zombies
// included.
func markedPIDs(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && hasMarker(pid, marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hasMarker reports whether pid's environment holds the entry marker.
func hasMarker(pid int, marker string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+marker+"\x00"))
}

// markedProcs lists the live (not zombie) processes whose environment
// holds marker and whose command name is comm ("" for any).
func markedProcs(marker, comm string) []int {
	var pids []int
	for _, pid := range markedPIDs(marker) {
		name, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil || (comm != "" && strings.TrimSpace(string(name)) != comm) {
			continue
		}
		if alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Pid is the process id of the started command.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitStdout waits for a line of the child's (through the wrapper's
// stdout) and fails the test when none comes.
func (p *proc) waitStdout(timeout time.Duration, what string, match func(line) bool) line {
	p.t.Helper()
	l, err := p.stdout.waitFrom(0, timeout, match)
	if err != nil {
		p.t.Fatalf("stdout line %s: %v", what, err)
	}
	return l
}

// waitLog waits for a log line of the wrapper with msg (and matching the
// extra conditions) and fails the test when none comes.
func (p *proc) waitLog(timeout time.Duration, msg string, also ...func(line) bool) line {
	p.t.Helper()
	return p.waitLogFrom(0, timeout, msg, also...)
}

// waitLogFrom is waitLog for the lines from index from on, to wait for
// the next occurrence of a message, or for one that follows an action.
func (p *proc) waitLogFrom(from int, timeout time.Duration, msg string, also ...func(line) bool) line {
	p.t.Helper()
	l, err := p.stderr.waitFrom(from, timeout, func(l line) bool {
		if l.Msg() != msg {
			return false
		}
		for _, f := range also {
			if !f(l) {
				return false
			}
		}
		return true
	})
	if err != nil {
		p.t.Fatalf("log line %q from line %d on: %v", msg, from, err)
	}
	return l
}

// sessionsCreated counts the wrapper's "session created" lines.
func sessionsCreated(w *proc) int { return len(w.stderr.all(logMsg("session created"))) }

// ready waits for fakeproc's "ready pid=N" line and returns N (as the
// child sees it).
func (p *proc) ready() int {
	p.t.Helper()
	l := p.waitStdout(startWait, `"ready pid=N"`, hasPrefix("ready pid="))
	f := strings.Fields(strings.TrimPrefix(l.Text, "ready pid="))
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		p.t.Fatalf("bad ready line %q", l.Text)
	}
	return pid
}

// registered waits for the "service registered" line and returns its
// session id.
func (p *proc) registered() string {
	p.t.Helper()
	l := p.waitLog(startWait, "service registered")
	s := l.Str("session")
	if s == "" {
		p.t.Fatalf("log line without session: %s", l.Text)
	}
	return s
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("send %v to pid %d: %v", sig, p.Pid(), err)
	}
}

// wait waits for the process to exit and returns its exit status as a
// shell reports it (128+N after signal N).
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("pid %d did not exit within %s", p.Pid(), timeout)
	}
	return exitCode(p.status)
}

// stop sends sig, waits up to exitWait for the process to exit and
// returns its exit status (as wait does) and how long after the signal it
// exited.
func (p *proc) stop(sig syscall.Signal) (code int, took time.Duration) {
	p.t.Helper()
	sent := time.Now()
	p.signal(sig)
	code = p.wait(exitWait)
	return code, p.exitedAt.Sub(sent)
}

func describeStatus(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// fakeproc returns the command line of the test child.
func fakeproc(args ...string) []string { return append([]string{bin.fakeproc}, args...) }

// cmdline joins the wrapper's flags and the wrapped command.
func cmdline(flags []string, command ...string) []string {
	return append(append(append([]string(nil), flags...), "--"), command...)
}

// account is a user of a registry in dev mode: its own tenant, so that
// tests sharing a registry cannot see each other's services.
type account struct {
	User, Key string
	// API talks to the registry directly, never through a proxy.
	API *srapi.Client
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newAccount makes a fresh user with a recognisable API key and a client
// for registryURL (the registry's own URL, not a proxy's).
func newAccount(t *testing.T, registryURL string) *account {
	t.Helper()
	return newAccountAs(t, registryURL, "e2e-"+randomHex(4), "secret-key-"+randomHex(8))
}

// newAccountAs is newAccount for a given user, e.g. on another registry.
func newAccountAs(t *testing.T, registryURL, user, key string) *account {
	t.Helper()
	return &account{User: user, Key: key, API: registrytest.NewClient(t, registryURL, "", user, key)}
}

// withoutFlag drops --name value and --name=value from flags.
func withoutFlag(flags []string, name string) []string {
	var out []string
	for i := 0; i < len(flags); i++ {
		switch {
		case flags[i] == name:
			i++ // and its value
		case strings.HasPrefix(flags[i], name+"="):
		default:
			out = append(out, flags[i])
		}
	}
	return out
}

// flags are the wrapper's usual flags for service id against registryURL
// (which may be a proxy's). Later flags of the same name override them.
func (a *account) flags(registryURL, id string) []string {
	return []string{
		"--registry", registryURL,
		"--username", a.User, "--api-key", a.Key,
		"--id", id,
		"--interval", strconv.Itoa(int(ttl / time.Second)),
		"--stop-timeout", "1s",
		"--log-format", "json",
	}
}

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// service returns the service, nil when the registry does not have it,
// or an error when the registry could not be asked.
func (a *account) service(id string) (*api.Service, error) {
	ctx, cancel := callCtx()
	defer cancel()
	s, err := a.API.GetService(ctx, id)
	if srapi.IsNotFound(err) {
		return nil, nil
	}
	return s, err
}

// mustService returns the service and fails the test when it is absent.
func (a *account) mustService(t *testing.T, id string) *api.Service {
	t.Helper()
	s, err := a.service(id)
	if err != nil || s == nil {
		t.Fatalf("GET /services/%s: %v, %v; want the service", id, s, err)
	}
	return s
}

// mustServiceIn fails the test unless the registry has the service in
// session sid (when says at which point of the test).
func (a *account) mustServiceIn(t *testing.T, id, sid, when string) {
	t.Helper()
	if svc := a.mustService(t, id); svc.SessionID != sid {
		t.Fatalf("service %s in session %s %s, want %s", id, svc.SessionID, when, sid)
	}
}

// mustNotLog fails the test if any of the wrapper's log lines holds one of
// the secrets.
func (p *proc) mustNotLog(secrets ...string) {
	p.t.Helper()
	for _, l := range p.stderr.all(func(l line) bool {
		return slices.ContainsFunc(secrets, func(s string) bool { return strings.Contains(l.Text, s) })
	}) {
		p.t.Fatalf("the wrapper logged a secret: %s", l.Text)
	}
}

// mustBeAbsent fails the test unless the registry says 404 for the service.
func (a *account) mustBeAbsent(t *testing.T, id, when string) {
	t.Helper()
	s, err := a.service(id)
	if err != nil || s != nil {
		t.Fatalf("%s: GET /services/%s = %+v, %v; want 404", when, id, s, err)
	}
}

func (a *account) session(id string) (*api.Session, error) {
	ctx, cancel := callCtx()
	defer cancel()
	s, err := a.API.GetSession(ctx, id)
	if srapi.IsNotFound(err) {
		return nil, nil
	}
	return s, err
}

// sessions lists every session of the account.
func (a *account) sessions(t *testing.T) []api.Session {
	t.Helper()
	ctx, cancel := callCtx()
	defer cancel()
	l, err := a.API.ListSessions(ctx, srapi.ListOptions{})
	if err != nil {
		t.Fatalf("list sessions: %v", err)
	}
	return l.Values
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	state, _, ok := proctest.Stat(pid)
	return ok && state != 'Z' && state != 'X'
}

// heartbeat is one heartbeat seen by a tokenRecorder.
type heartbeat struct {
	Sent, Got string // the request's token and the reply's
	Status    int
}

// tokenRecorder is a reverse proxy that records the heartbeat token chain
// and the identity tokens: faultproxy cannot read bodies.
type tokenRecorder struct {
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu        sync.Mutex
	created   []string // tokens of POST /sessions replies
	beats     []heartbeat
	xauth     map[string]bool // X-Auth-Token values
	authCalls int
}

func startTokenRecorder(t *testing.T, registryURL string) *tokenRecorder {
	t.Helper()
	target, err := url.Parse(registryURL)
	if err != nil {
		t.Fatal(err)
	}
	base := &url.URL{Scheme: target.Scheme, Host: target.Host}
	r := &tokenRecorder{xauth: map[string]bool{}}
	r.rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(base) }}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the registry URL (with the API's path) through the recorder.
func (r *tokenRecorder) URL() string { return r.srv.URL + "/v1.0" }

func (r *tokenRecorder) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	r.rp.ServeHTTP(rec, req)
	reply := rec.Body.Bytes()

	var sent, got struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(body, &sent)
	_ = json.Unmarshal(reply, &got)
	ok, _ := path.Match("/v1.0/*/sessions/*/heartbeat", req.URL.Path)
	isCreate, _ := path.Match("/v1.0/*/sessions", req.URL.Path)
	r.mu.Lock()
	if tok := req.Header.Get("X-Auth-Token"); tok != "" {
		r.xauth[tok] = true
	}
	switch {
	case req.Method == http.MethodPost && ok:
		r.beats = append(r.beats, heartbeat{Sent: sent.Token, Got: got.Token, Status: rec.Code})
	case req.Method == http.MethodPost && isCreate && rec.Code == http.StatusCreated:
		r.created = append(r.created, got.Token)
	case strings.HasSuffix(req.URL.Path, "/v2.0/tokens"):
		r.authCalls++
	}
	r.mu.Unlock()

	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(reply)
}

func (r *tokenRecorder) snapshot() (created []string, beats []heartbeat, xauth []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.xauth {
		xauth = append(xauth, k)
	}
	return append([]string(nil), r.created...), append([]heartbeat(nil), r.beats...), xauth
}

// freeAddr returns a loopback address where nothing listens (a moment
// ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
