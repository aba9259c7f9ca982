package registrytest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// RegistryPackage is the import path of the sr-registry command, for
// BuildBinary.
const RegistryPackage = "github.com/sr-wrapper/sr-wrapper/cmd/sr-registry"

// BuildBinary builds the command pkg (an import path, e.g.
// RegistryPackage) into a fresh t.TempDir() and returns the binary's path.
// Each call builds; Go's build cache makes repeated builds cost about a
// link (around a second). To build once per test binary, call Build from
// TestMain instead and keep the paths.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	if err := Build(ctx, dir, nil, pkg); err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	return filepath.Join(dir, filepath.Base(pkg))
}

// Build builds the commands pkgs (import paths) with one go build, flags
// before the packages, into dir: each binary is dir/<last element of its
// path>. It needs the go command on PATH and runs in the current
// directory, which must be inside the module (go test runs tests there).
func Build(ctx context.Context, dir string, flags []string, pkgs ...string) error {
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, flags...)
	args = append(args, pkgs...)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Child is one run of the sr-registry binary, as Launch started it.
type Child struct {
	// Addr is where it listens, 127.0.0.1:PORT; URL and AuthURL are as
	// for Registry (https:// with --tls-cert).
	Addr, URL, AuthURL string
	// PID is its process id.
	PID int

	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	state  *os.ProcessState
}

// Launch starts the sr-registry binary bin with args and returns once it
// has logged its "listening" line (and, with --store, once GET /readyz
// answers 200). args must hold --data-dir or --store (so that no
// test writes to the user's own data dir); unless they say otherwise it
// listens on 127.0.0.1:0, logs JSON and runs in dev mode (--dev, unless
// --credentials is given). Every line the process writes (stdout and
// stderr) goes to log, from another goroutine; nil discards them. ctx
// bounds only the wait for "listening" (at most 20 s in any case): on
// error the process has been killed and log is no longer written to.
// Otherwise the caller ends it with Stop.
func Launch(ctx context.Context, bin string, log io.Writer, args ...string) (*Child, error) {
	if !hasFlag(args, "--data-dir") && !hasFlag(args, "--store") {
		return nil, fmt.Errorf("launch %s: --data-dir (or --store) is required", bin)
	}
	if !hasFlag(args, "--listen") {
		args = append([]string{"--listen", "127.0.0.1:0"}, args...)
	}
	if !hasFlag(args, "--log-format") {
		args = append(args, "--log-format", "json")
	}
	if !hasFlag(args, "--dev") && !hasFlag(args, "--credentials") {
		args = append(args, "--dev")
	}
	if log == nil {
		log = io.Discard
	}
	cmd := exec.Command(bin, args...)
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", bin, err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch %s: %w", bin, err)
	}
	c := &Child{PID: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan listening, 1)
	go func() {
		readLog(out, log, addrc)
		// Wait only after EOF (the pipe must be drained first); it closes
		// the pipe and sets ProcessState, whatever the exit status.
		_ = cmd.Wait()
		c.state = cmd.ProcessState
		close(c.exited)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case ls := <-addrc:
		c.Addr = ls.Addr
		c.URL = "http://" + ls.Addr + "/v1.0"
		c.AuthURL = "http://" + ls.Addr
		if ls.URL != "" && ls.AuthURL != "" {
			// With --tls-cert: https.
			c.URL, c.AuthURL = ls.URL, strings.TrimSuffix(ls.AuthURL, "/v2.0")
		}
		if !hasFlag(args, "--store") {
			return c, nil
		}
		if err = waitHTTPReady(ctx, c, timer.C); err == nil {
			return c, nil
		}
		err = fmt.Errorf("launch %s: %w", bin, err)
	case <-c.exited:
		return nil, fmt.Errorf("launch %s: exited before listening (%s)", bin, c.state)
	case <-timer.C:
		err = fmt.Errorf("launch %s: did not log \"listening\" within %s", bin, startTimeout)
	case <-ctx.Done():
		err = fmt.Errorf("launch %s: waiting for \"listening\": %w", bin, ctx.Err())
	}
	_ = cmd.Process.Kill()
	<-c.exited
	return nil, err
}

// waitHTTPReady polls the child's GET /readyz until it answers 200, the
// child exits, timeout fires or ctx ends.
func waitHTTPReady(ctx context.Context, c *Child, timeout <-chan time.Time) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(c.AuthURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.exited:
			return fmt.Errorf("exited before ready (%s)", c.state)
		case <-timeout:
			return fmt.Errorf("GET /readyz not 200 within %s", startTimeout)
		case <-ctx.Done():
			return fmt.Errorf("waiting for /readyz: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listening is what the "listening" log line says.
type listening struct {
	Msg     string `json:"msg"`
	Addr    string `json:"addr"`
	URL     string `json:"url"`
	AuthURL string `json:"auth_url"`
}

// readLog copies every line of the child's output to log and reports the
// addresses of its "listening" line. It reads until the child closes its
// output, so the child never blocks on a full pipe.
func readLog(r io.Reader, log io.Writer, addrc chan<- listening) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		// A copy: appending to the scanner's buffer could overwrite the
		// start of the next line.
		_, _ = log.Write(append(line[:len(line):len(line)], '\n'))
		if sent {
			continue
		}
		var entry listening
		if json.Unmarshal(line, &entry) == nil && entry.Msg == "listening" && entry.Addr != "" {
			addrc <- entry
			sent = true
		}
	}
	// A line longer than the buffer ends the scan: keep draining so that
	// the child is not blocked writing.
	_, _ = io.Copy(log, r)
}

// Exited is closed once the process has exited and been waited for.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Stop sends sig unless the process has exited, waits for its exit and
// returns its state. After 15 s it kills the process and returns an error.
func (c *Child) Stop(sig syscall.Signal) (*os.ProcessState, error) {
	select {
	case <-c.exited:
		return c.state, nil
	default:
	}
	if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return nil, fmt.Errorf("send %s to %d: %w", sig, c.PID, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-c.exited:
		return c.state, nil
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
		return nil, fmt.Errorf("pid %d did not exit within %s of %s; killed", c.PID, stopTimeout, sig)
	}
}

// Process is an sr-registry binary running as a child process of a test:
// Launch with the test's temporary data dir, its failures and cleanup.
type Process struct {
	// URL, AuthURL and Addr are as for Registry. Addr (and so the URLs)
	// stays the same across Restart.
	URL, AuthURL, Addr string
	// DataDir holds the server's bbolt file.
	DataDir string

	t    testing.TB
	bin  string
	args []string // the caller's extra arguments
	logs testsupport.Buffer

	mu    sync.Mutex
	child *Child
}

// StartProcess starts the sr-registry binary bin and waits for its
// "listening" log line. It passes --listen 127.0.0.1:0 (the chosen port is
// kept for restarts), --data-dir (a fresh t.TempDir()) and --log-format
// json, and --dev unless args hold --credentials; args are appended and
// may set --data-dir or --listen themselves. The process is killed when
// the test ends, and its log is printed if the test failed.
func StartProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, bin: bin, args: args}
	p.DataDir = flagValue(args, "--data-dir")
	if p.DataDir == "" {
		p.DataDir = t.TempDir()
	}
	listen := flagValue(args, "--listen")
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	t.Cleanup(func() {
		p.Kill9()
		if t.Failed() {
			t.Logf("registrytest: log of %s:\n%s", bin, p.Logs())
		}
	})
	p.start(listen)
	return p
}

// flagValue finds --name=value or --name value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// withoutFlag drops --name value and --name=value from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == name:
			i++
		case strings.HasPrefix(args[i], name+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

func (p *Process) start(listen string) {
	p.t.Helper()
	args := []string{"--listen", listen}
	if !hasFlag(p.args, "--data-dir") && !hasFlag(p.args, "--store") {
		args = append(args, "--data-dir", p.DataDir)
	}
	args = append(args, withoutFlag(p.args, "--listen")...)
	c, err := Launch(context.Background(), p.bin, &p.logs, args...)
	if err != nil {
		p.t.Fatalf("registrytest: %v; log:\n%s", err, p.Logs())
	}
	p.mu.Lock()
	p.child = c
	p.mu.Unlock()
	p.Addr, p.URL, p.AuthURL = c.Addr, c.URL, c.AuthURL
}

// Logs returns everything the process (and earlier runs of it) wrote.
func (p *Process) Logs() string { return p.logs.String() }

// Authenticate gets a token for username (API key "key") from the
// process's identity endpoint, as Registry.Authenticate does.
func (p *Process) Authenticate(t testing.TB, username string) Identity {
	t.Helper()
	return authenticate(t, p.AuthURL, username, "key")
}

func (p *Process) current() *Child {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.child
}

// Kill9 sends SIGKILL and waits for the process to be gone. Doing it to a
// stopped process does nothing.
func (p *Process) Kill9() {
	p.t.Helper()
	c := p.current()
	if c == nil {
		return
	}
	if _, err := c.Stop(syscall.SIGKILL); err != nil {
		p.t.Errorf("registrytest: kill -9: %v", err)
	}
}

// Terminate sends SIGTERM, waits for the graceful shutdown and returns the
// exit code (0 after a clean shutdown).
func (p *Process) Terminate() int {
	p.t.Helper()
	c := p.current()
	if c == nil {
		p.t.Fatal("registrytest: terminate: not started")
	}
	st, err := c.Stop(syscall.SIGTERM)
	if err != nil {
		p.t.Fatalf("registrytest: terminate: %v", err)
	}
	return st.ExitCode()
}

// Restart starts the binary again with the same arguments, data dir and
// port. The process must have been stopped (Kill9 or Terminate); a running
// one is terminated first.
func (p *Process) Restart() {
	p.t.Helper()
	select {
	case <-p.current().Exited():
	default:
		if code := p.Terminate(); code != 0 {
			p.t.Errorf("registrytest: terminate before restart: exit code %d", code)
		}
	}
	p.start(p.Addr)
}

// Signal sends sig to the running process (SIGHUP: reload its
// certificate and credentials).
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	c := p.current()
	if c == nil {
		p.t.Fatal("registrytest: signal: not started")
	}
	if err := c.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("registrytest: send %s to %d: %v", sig, c.PID, err)
	}
}
