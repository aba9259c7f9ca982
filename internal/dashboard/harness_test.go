package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// Bounds of the waits. A UI change that follows a registry change must
// come within liveWait (the dashboard polls every second); the others only
// matter when something is wrong, and the machine may be busy.
const (
	liveWait  = 2 * time.Second
	pageWait  = 15 * time.Second
	startWait = 20 * time.Second
	stopWait  = 10 * time.Second
)

// The credentials of the tests; the registries run in dev mode, where any
// pair is accepted and the username is its own tenant.
const (
	testUser = "ops"
	testKey  = "key-of-ops"
)

// chromiumPath is the browser the tests drive: $SR_CHROMIUM, or Debian's
// chromium (scripts/test-deps.sh installs it), or another Chromium on PATH.
func chromiumPath() string {
	if p := os.Getenv("SR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needChromium skips the test when no Chromium is installed (or fails it
// under SR_TEST_STRICT=1, as in CI).
func needChromium(t *testing.T) string {
	t.Helper()
	p := chromiumPath()
	if p == "" {
		testsupport.SkipUnsupported(t, "no Chromium to drive: install Debian's chromium (scripts/test-deps.sh does, as root) or set SR_CHROMIUM")
	}
	return p
}

// outputDir is where a test saves its screenshots: $SR_TEST_OUTPUT/<test>
// when set, else the test's artifact directory (kept with go test
// -artifacts -outputdir DIR, removed otherwise), so that runs never write
// into the repository.
func outputDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SR_TEST_OUTPUT"); d != "" {
		dir := filepath.Join(d, "dashboard", t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("screenshot folder: %v", err)
		}
		return dir
	}
	return t.ArtifactDir()
}

// page is one browser (its own process and profile) with one tab, and
// what went wrong in it: uncaught exceptions and Content-Security-Policy
// violations fail the test at its end.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string // the registry's origin, http://127.0.0.1:PORT
	out  string

	mu       sync.Mutex
	problems []string
}

// pageOpts change the browser's screen.
type pageOpts struct {
	width, height int64
	mobile        bool
	dark          bool
}

var desktop = pageOpts{width: 1280, height: 800}

// phone is a 390-px-wide phone screen (an iPhone 12 to 15).
var phone = pageOpts{width: 390, height: 844, mobile: true}

// openPage starts a headless Chromium with a fresh profile and opens the
// dashboard of the registry at base in it.
func openPage(t *testing.T, base string, o pageOpts) *page {
	t.Helper()
	exe := needChromium(t)
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// The machine has no network but loopback: no lookups of
		// Google's hosts, no component or safe-browsing downloads.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(int(o.width), int(o.height)),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	p := &page{t: t, ctx: ctx, base: base, out: outputDir(t)}
	// The first action starts the browser, bound to ctx (not to a timeout).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				p.mu.Lock()
				p.problems = append(p.problems, m.String())
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, m := range p.problems {
			t.Errorf("browser console: %s", m)
		}
	})
	viewport := []chromedp.EmulateViewportOption{}
	if o.mobile {
		viewport = append(viewport, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	scheme := "light"
	if o.dark {
		scheme = "dark"
	}
	p.do("set up the screen",
		chromedp.EmulateViewport(o.width, o.height, viewport...),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return err
		}),
		chromedp.Navigate(base+"/"),
	)
	return p
}

// do runs actions, bounded by pageWait, and fails the test on error.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.shot("failed")
		p.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the page until the JavaScript expression is truthy, for
// at most timeout, and returns how long that took.
func (p *page) waitFor(what string, timeout time.Duration, expr string) time.Duration {
	p.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.shot("failed")
		p.t.Fatalf("%s (waited %s for %s): %v\npage text:\n%s", what, time.Since(start).Round(time.Millisecond), expr, err, p.text())
	}
	return time.Since(start)
}

// text is what the page shows, for failure messages.
func (p *page) text() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// shot saves a screenshot of the whole page as <name>.png in the test's
// output folder and logs its path.
func (p *page) shot(name string) string {
	p.t.Helper()
	return p.capture(filepath.Join(p.out, name+".png"), chromedp.FullScreenshot(100))
}

// capture saves what the screenshot action takes at path.
func (p *page) capture(path string, take chromedp.Action[[]byte]) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageWait)
	defer cancel()
	png, err := chromedp.Run(ctx, take)
	if err != nil {
		p.t.Logf("screenshot %s: %v", path, err)
		return ""
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatalf("save screenshot: %v", err)
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

// signIn signs in through the form, as a person would: type, press Enter.
func (p *page) signIn(user, key string) {
	p.t.Helper()
	p.do("sign in as "+user,
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("apikey"), key+"\r"),
	)
	p.waitFor("the views after signing in", pageWait, `!document.getElementById('app').hidden && document.getElementById('who-user').textContent === `+jsString(user))
}

// view opens a view by its tab, with the keyboard: focus the link, Enter.
func (p *page) view(name string) {
	p.t.Helper()
	p.do("open the "+name+" view",
		chromedp.Focus(chromedp.ID("tab-"+name)),
		chromedp.SendKeys(chromedp.ID("tab-"+name), "\r"),
	)
	p.waitFor("the "+name+" view", pageWait, `!document.getElementById('view-`+name+`').hidden`)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// tenant is a tenant's API, called directly (not through the page) to
// change what the registry holds.
type tenant struct {
	t  *testing.T
	id registrytest.Identity
}

func newTenant(t *testing.T, reg *registrytest.Registry, user string) *tenant {
	t.Helper()
	return &tenant{t: t, id: reg.Authenticate(t, user)}
}

// call does one request and decodes a JSON reply into out (when not nil),
// failing the test on a status other than want.
func (tn *tenant) call(method, path string, in, out any, want int) http.Header {
	tn.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			tn.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pageWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, tn.id.TenantURL+path, body)
	if err != nil {
		tn.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", tn.id.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tn.t.Fatalf("%s %s: %s, want %d: %s", method, path, resp.Status, want, reply)
	}
	if out != nil {
		if err := json.Unmarshal(reply, out); err != nil {
			tn.t.Fatalf("%s %s: decode %s: %v", method, path, reply, err)
		}
	}
	return resp.Header
}

// session creates a session with the heartbeat timeout (seconds) and
// returns its id and first heartbeat token.
func (tn *tenant) session(timeout int, md map[string]string) (id, token string) {
	tn.t.Helper()
	var tok api.HeartbeatToken
	h := tn.call(http.MethodPost, "/sessions", api.CreateSessionRequest{HeartbeatTimeout: timeout, Metadata: md}, &tok, http.StatusCreated)
	loc := h.Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:], tok.Token
}

// keepAlive heartbeats the session every period until the test ends.
func (tn *tenant) keepAlive(id, token string, period time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tn.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for first := true; ; first = false {
			if !first {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			b, _ := json.Marshal(api.HeartbeatToken{Token: token})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tn.id.TenantURL+"/sessions/"+id+"/heartbeat", bytes.NewReader(b))
			req.Header.Set("X-Auth-Token", tn.id.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			var next api.HeartbeatToken
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&next) == nil {
				token = next.Token
			}
			resp.Body.Close()
		}
	}()
}

func (tn *tenant) service(id, session string, tags []string, md map[string]string) {
	tn.t.Helper()
	tn.call(http.MethodPost, "/services", api.CreateServiceRequest{ID: id, SessionID: session, Tags: tags, Metadata: md}, nil, http.StatusCreated)
}

// config sets a configuration value; the URL is "/configuration/" + id,
// as clients build it.
func (tn *tenant) config(id, value string) {
	tn.t.Helper()
	tn.call(http.MethodPut, "/configuration/"+id, api.SetConfigurationRequest{Value: value}, nil, http.StatusNoContent)
}

// hasService reports whether the registry lists the service.
func (tn *tenant) hasService(id string) bool {
	tn.t.Helper()
	var s api.Service
	ctx, cancel := context.WithTimeout(context.Background(), pageWait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tn.id.TenantURL+"/services/"+id, nil)
	req.Header.Set("X-Auth-Token", tn.id.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tn.t.Fatalf("GET /services/%s: %v", id, err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return resp.StatusCode == http.StatusOK && s.ID == id
}

// waitService polls the registry until the service is listed (want) or
// gone, and returns when it saw that.
func (tn *tenant) waitService(id string, want bool, timeout time.Duration) time.Time {
	tn.t.Helper()
	deadline := time.Now().Add(timeout)
	for tn.hasService(id) != want {
		if time.Now().After(deadline) {
			tn.t.Fatalf("service %s listed=%v: not within %s", id, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Now()
}

// wrapped is a real sr-wrapper running a real program (fakeproc).
type wrapped struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{}
}

// wrap starts the built sr-wrapper around fakeproc against the registry,
// with the flags given. When the test ends it is stopped (SIGTERM, then
// SIGKILL to it and its child) if still running, and its output logged if
// the test failed.
func wrap(t *testing.T, reg *registrytest.Registry, flags ...string) *wrapped {
	t.Helper()
	b := binaries(t)
	args := append(append([]string{"--log-format=json"}, flags...), "--", b.fakeproc, "--ready")
	cmd := exec.Command(b.wrapper, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "SR_REGISTRY_URL="+reg.URL, "SR_USERNAME="+testUser, "SR_API_KEY="+testKey)
	// A file, not a pipe: Wait then returns when the wrapper exits, even
	// while its child still holds the output open.
	out, err := os.CreateTemp(t.TempDir(), "sr-wrapper-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	w := &wrapped{t: t, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", b.wrapper, err)
	}
	go func() { _ = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		w.end()
		if t.Failed() {
			log, _ := os.ReadFile(out.Name())
			t.Logf("sr-wrapper %q output:\n%s", args, log)
		}
		_ = out.Close()
	})
	return w
}

// stop sends SIGTERM, as systemd would, and waits for the wrapper to exit.
func (w *wrapped) stop() {
	w.t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		w.t.Fatalf("SIGTERM to the wrapper: %v", err)
	}
	select {
	case <-w.done:
	case <-time.After(stopWait):
		w.t.Fatalf("sr-wrapper did not exit within %s of SIGTERM", stopWait)
	}
}

// stopAll stops the wrappers together: SIGTERM to all, then the wait.
func stopAll(ws []*wrapped) {
	for _, w := range ws {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-ctx.Done():
		}
		w.end()
	}
}

// end stops the wrapper if it still runs: SIGTERM (it stops its child),
// and SIGKILL to both when that does not do within stopWait.
func (w *wrapped) end() {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		return
	case <-time.After(stopWait):
	}
	w.t.Errorf("sr-wrapper (pid %d) still runs %s after SIGTERM: killing it and its child", w.cmd.Process.Pid, stopWait)
	// The children while the wrapper still lives (and has not reaped
	// them): their pids cannot have been reused.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", w.cmd.Process.Pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, pid := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	}
	_ = w.cmd.Process.Kill()
	<-w.done
}

// built are the programs that binaries builds once per test binary.
type built struct {
	wrapper, fakeproc string
	err               error
}

var (
	buildOnce sync.Once
	builtBins built
	buildDir  string
)

// binaries builds sr-wrapper and testdata/fakeproc, once per test binary,
// into a folder TestMain removes.
func binaries(t *testing.T) built {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		err := registrytest.Build(ctx, buildDir, nil,
			"github.com/sr-wrapper/sr-wrapper/cmd/sr-wrapper",
			"github.com/sr-wrapper/sr-wrapper/testdata/fakeproc")
		builtBins = built{
			wrapper:  filepath.Join(buildDir, "sr-wrapper"),
			fakeproc: filepath.Join(buildDir, "fakeproc"),
			err:      err,
		}
	})
	if builtBins.err != nil {
		t.Fatalf("build the wrapper and fakeproc: %v", builtBins.err)
	}
	return builtBins
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sr-dashboard-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard tests: temp dir:", err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// populate gives the tenant what a small production registry holds:
// services with tags and metadata in heartbeating sessions of several
// timeouts (one with a long id and long metadata), a configuration tree,
// and a session that is never heartbeated, so that it times out about
// three seconds later. It returns that session's id.
func populate(t *testing.T, tn *tenant) (doomed string) {
	t.Helper()
	services := []struct {
		id      string
		timeout int
		tags    []string
		md      map[string]string
	}{
		{"web-1", 30, []string{"http", "web"}, map[string]string{"port": "8080", "dc": "lon", "version": "1.4.2"}},
		{"web-2", 30, []string{"http", "web"}, map[string]string{"port": "8080", "dc": "fra", "version": "1.4.2"}},
		{"api-gateway-eu-west-1-canary-0001", 15, []string{"http", "api", "canary"},
			map[string]string{"health_url": "http://10.20.30.40:9000/internal/health/readiness-probe?verbose=1", "dc": "dub"}},
		{"db-1", 10, []string{"mysql", "primary"}, map[string]string{"port": "3306", "dc": "lon"}},
		{"db-2", 10, []string{"mysql", "replica"}, map[string]string{"port": "3306", "dc": "fra"}},
		{"cache-1", 6, []string{"redis"}, map[string]string{"port": "6379"}},
	}
	for _, s := range services {
		sid, tok := tn.session(s.timeout, map[string]string{"host": s.id + ".lon.example", "wrapper": "sr-wrapper"})
		tn.keepAlive(sid, tok, time.Duration(s.timeout)*time.Second/3)
		tn.service(s.id, sid, s.tags, s.md)
	}
	for id, v := range map[string]string{
		"configId":                          "42",
		"/production/cassandra/listen_ip":   "10.0.0.5",
		"/production/cassandra/port":        "9042",
		"/production/web/workers":           "8",
		"/production/features/new_checkout": "enabled for 10% of the traffic in eu-west-1, rolling out",
		"/staging/web/workers":              "2",
	} {
		tn.config(id, v)
	}
	doomed, _ = tn.session(3, map[string]string{"host": "batch.lon.example", "job": "nightly-report"})
	tn.service("batch-7", doomed, []string{"batch"}, map[string]string{"queue": "reports"})
	return doomed
}
