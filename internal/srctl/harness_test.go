package srctl_test

// End-to-end tests: srctl's Run against the real sr-registry
// (internal/registrytest), with the fixtures made through the API client.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/linetest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
)

// testKey is distinctive so that a test can look for it in every output.
const testKey = "srctl-test-key-7Qp2vX9r"

// runTimeout bounds every srctl run that is not a follow.
const runTimeout = 30 * time.Second

type harness struct {
	t        *testing.T
	reg      *registrytest.Registry
	user     string
	cacheDir string
	c        *srapi.Client
}

// setup starts a registry and a client for fixtures. Each test has its own
// registry, user and cache directory.
func setup(t *testing.T) *harness {
	t.Helper()
	reg := registrytest.Start(t)
	h := &harness{t: t, reg: reg, user: "alice", cacheDir: t.TempDir()}
	h.c = registrytest.NewClient(t, reg.URL, "", h.user, testKey)
	return h
}

func (h *harness) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	h.t.Cleanup(cancel)
	return ctx
}

// env is srctl's environment in tests: the test's cache directory and
// nothing from the real environment.
func (h *harness) env() srctl.Env {
	return srctl.Env{
		Getenv: func(k string) string {
			if k == srctl.CacheDirEnv {
				return h.cacheDir
			}
			return ""
		},
		Version: buildinfo.Info{Version: "v9.9.9-test", Commit: "abc", Date: "today"},
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// connArgs are the connection flags for the harness's registry and user.
func (h *harness) connArgs() []string {
	return []string{"--registry", h.reg.URL, "--username", h.user, "--api-key", testKey}
}

// run runs srctl with the connection flags and args.
func (h *harness) run(args ...string) result {
	h.t.Helper()
	return h.runRaw(append(h.connArgs(), args...)...)
}

// runRaw runs srctl with exactly args.
func (h *harness) runRaw(args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	code := srctl.RunEnv(h.ctx(runTimeout), h.env(), args, &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok runs srctl and fails the test unless it exits 0 with a quiet stderr.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 || r.stderr != "" {
		h.t.Fatalf("srctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// session opens a session and returns its id and first heartbeat token.
func (h *harness) session(timeout int, md map[string]string) (string, string) {
	h.t.Helper()
	id, tok, err := h.c.CreateSession(h.ctx(10*time.Second), api.CreateSessionRequest{HeartbeatTimeout: timeout, Metadata: md})
	if err != nil {
		h.t.Fatal(err)
	}
	return id, tok
}

func (h *harness) service(sessionID, id string, tags []string, md map[string]string) {
	h.t.Helper()
	if _, err := h.c.CreateService(h.ctx(10*time.Second), api.CreateServiceRequest{ID: id, SessionID: sessionID, Tags: tags, Metadata: md}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) setConfig(id, value string) {
	h.t.Helper()
	if err := h.c.SetConfiguration(h.ctx(10*time.Second), id, value); err != nil {
		h.t.Fatal(err)
	}
}

// rawGet returns the decoded body of a GET on the tenant's path, straight
// from the API, to compare srctl's JSON output with.
func (h *harness) rawGet(path string) any {
	h.t.Helper()
	id := h.reg.AuthenticateKey(h.t, h.user, testKey)
	req, err := http.NewRequestWithContext(h.ctx(10*time.Second), http.MethodGet, id.TenantURL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", id.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		h.t.Fatal(err)
	}
	return v
}

// rawValues is rawGet of a list, following every page: the "values" of
// each.
func (h *harness) rawValues(path string) []any {
	h.t.Helper()
	var all []any
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := path
	for {
		page := h.rawGet(next).(map[string]any)
		all = append(all, page["values"].([]any)...)
		md := page["metadata"].(map[string]any)
		m, ok := md["next_marker"].(string)
		if !ok || m == "" {
			return all
		}
		next = path + sep + "marker=" + m
	}
}

// sameJSON fails unless srctl's JSON output decodes to want.
func sameJSON(t *testing.T, what, output string, want any) {
	t.Helper()
	var got any
	if err := json.Unmarshal([]byte(output), &got); err != nil {
		t.Fatalf("%s: output is not JSON: %v\n%s", what, err, output)
	}
	if want == nil {
		want = []any{}
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

var columnGap = regexp.MustCompile(`\s{2,}`)

// table splits table output into rows of cells (header first).
func table(t *testing.T, output string) [][]string {
	t.Helper()
	var rows [][]string
	for line := range strings.Lines(output) {
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		rows = append(rows, columnGap.Split(line, -1))
	}
	if len(rows) == 0 {
		t.Fatalf("no table in output %q", output)
	}
	return rows
}

func wantRows(t *testing.T, what string, got [][]string, want ...[]string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// lineStream is the lines written to a pipe, for a command that runs on
// (events follow), read to the end whatever the test waits for, so that
// the command never blocks on a write.
type lineStream struct {
	*linetest.Lines
	next int // index of the first line waitFor has not looked at
}

func newLineStream(r io.Reader) *lineStream { return &lineStream{Lines: linetest.Collect(r)} }

// waitFor waits for a line that contains all of subs, failing the test
// after d. It returns the line. Each call goes on after the line the
// previous one returned.
func (s *lineStream) waitFor(t *testing.T, d time.Duration, subs ...string) string {
	t.Helper()
	l, err := s.WaitFrom(s.next, d, func(l linetest.Line) bool { return containsAll(l.Text, subs) })
	if err != nil {
		t.Fatalf("a line with %q: %v; saw:\n%s", subs, err, s)
	}
	s.next = l.Index + 1
	return l.Text
}

// snapshot is the text of every line so far.
func (s *lineStream) snapshot() []string {
	var out []string
	for _, l := range s.All(nil) {
		out = append(out, l.Text)
	}
	return out
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// follower is a running "srctl events follow".
type follower struct {
	out, err *lineStream
	cancel   context.CancelFunc
	done     chan int
}

// follow starts srctl with args (after the connection flags) in the
// background; stop it with stop.
func (h *harness) follow(args ...string) *follower {
	h.t.Helper()
	return h.followAt(h.reg.URL, args...)
}

func (h *harness) followAt(registryURL string, args ...string) *follower {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	f := &follower{out: newLineStream(outR), err: newLineStream(errR), cancel: cancel, done: make(chan int, 1)}
	full := append([]string{"--registry", registryURL, "--username", h.user, "--api-key", testKey}, args...)
	go func() {
		code := srctl.RunEnv(ctx, h.env(), full, outW, errW)
		_ = outW.Close()
		_ = errW.Close()
		f.done <- code
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			h.t.Errorf("events follow did not end within 10s of its cancellation")
		}
	})
	return f
}

// stop cancels the follow, as Ctrl-C does, and returns its exit status.
func (f *follower) stop(t *testing.T) int {
	t.Helper()
	f.cancel()
	select {
	case code := <-f.done:
		f.done <- code // for the cleanup
		f.waitEOF(t)
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("events follow did not end within 10s of its cancellation")
		return -1
	}
}

// wait waits for the follow to end by itself and returns its status.
func (f *follower) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case code := <-f.done:
		f.done <- code
		f.waitEOF(t)
		return code
	case <-time.After(d):
		t.Fatalf("events follow did not end within %s; stdout:\n%s\nstderr:\n%s", d, f.out, f.err)
		return -1
	}
}

// waitEOF waits until every line of the ended follow has been read.
func (f *follower) waitEOF(t *testing.T) {
	t.Helper()
	if !f.out.WaitEOF(10*time.Second) || !f.err.WaitEOF(10*time.Second) {
		t.Fatal("the output of events follow is still open after it ended")
	}
}

// lastEventID is the id of the newest event of the feed's last hour, "" if
// none.
func (h *harness) lastEventID() string {
	h.t.Helper()
	events, err := srapi.All(h.ctx(10*time.Second), h.c.ListEvents, srapi.ListOptions{}, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(events) == 0 {
		return ""
	}
	return events[len(events)-1].ID
}
