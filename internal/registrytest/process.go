package registrytest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RegistryPackage is the import path of the sr-registry command, for
// BuildBinary.
const RegistryPackage = "github.com/sr-wrapper/sr-wrapper/cmd/sr-registry"

// BuildBinary builds the command pkg (an import path, e.g.
// RegistryPackage) into a fresh t.TempDir() and returns the binary's path.
// Each call builds; Go's build cache makes repeated builds cost about a
// link (around a second). To build once per test binary, call Build from
// TestMain instead and keep the path.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := Build(ctx, t.TempDir(), pkg)
	if err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	return bin
}

// Build runs "go build -o dir/<last element of pkg> pkg" and returns the
// binary's path. It needs the go command on PATH and runs in the current
// directory, which must be inside the module (go test runs tests there).
func Build(ctx context.Context, dir, pkg string) (string, error) {
	bin := filepath.Join(dir, path.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// Process is an sr-registry binary running as a child process.
type Process struct {
	// URL, AuthURL, Addr and DataDir are as for Registry. Addr (and so the
	// URLs) stays the same across Restart.
	URL, AuthURL, Addr, DataDir string

	t    testing.TB
	bin  string
	args []string // the caller's extra arguments

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has been waited for
	state  *os.ProcessState
	logs   strings.Builder
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

func (p *Process) start(listen string) {
	p.t.Helper()
	args := []string{"--listen", listen}
	if !hasFlag(p.args, "--data-dir") {
		args = append(args, "--data-dir", p.DataDir)
	}
	if !hasFlag(p.args, "--log-format") {
		args = append(args, "--log-format", "json")
	}
	if !hasFlag(p.args, "--dev") && !hasFlag(p.args, "--credentials") {
		args = append(args, "--dev")
	}
	args = append(args, withoutFlag(p.args, "--listen")...)

	cmd := exec.Command(p.bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.t.Fatalf("registrytest: %v", err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("registrytest: start %s: %v", p.bin, err)
	}
	exited := make(chan struct{})
	addrc := make(chan string, 1)
	p.mu.Lock()
	p.cmd, p.exited, p.state = cmd, exited, nil
	p.mu.Unlock()

	go func() {
		p.readLog(stderr, addrc)
		st, _ := cmd.Process.Wait()
		p.mu.Lock()
		p.state = st
		p.mu.Unlock()
		close(exited)
	}()

	select {
	case addr := <-addrc:
		p.Addr = addr
		p.URL = "http://" + addr + "/v1.0"
		p.AuthURL = "http://" + addr
	case <-exited:
		p.t.Fatalf("registrytest: %s exited before listening (%s); log:\n%s", p.bin, p.exitState(), p.Logs())
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		p.t.Fatalf("registrytest: %s did not log \"listening\" within %s; log:\n%s", p.bin, startTimeout, p.Logs())
	}
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

// readLog keeps every line of the child's output and reports the address
// of its "listening" line. It reads until the child closes its output, so
// the child never blocks on a full pipe.
func (p *Process) readLog(r io.Reader, addrc chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logs.WriteString(line)
		p.logs.WriteByte('\n')
		p.mu.Unlock()
		if sent {
			continue
		}
		var entry struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" && entry.Addr != "" {
			addrc <- entry.Addr
			sent = true
		}
	}
}

// Logs returns everything the process (and earlier runs of it) wrote.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// PID is the process id of the running process.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

func (p *Process) exitState() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return "running"
	}
	return p.state.String()
}

// signalAndWait sends sig unless the process has exited, and waits for its
// exit.
func (p *Process) signalAndWait(sig syscall.Signal) (*os.ProcessState, error) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil, errors.New("not started")
	}
	select {
	case <-exited:
	default:
		if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return nil, fmt.Errorf("send %s to %d: %w", sig, cmd.Process.Pid, err)
		}
	}
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("pid %d did not exit within %s of %s", cmd.Process.Pid, stopTimeout, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, nil
}

// Kill9 sends SIGKILL and waits for the process to be gone. Doing it to a
// stopped process does nothing.
func (p *Process) Kill9() {
	p.t.Helper()
	if _, err := p.signalAndWait(syscall.SIGKILL); err != nil {
		p.t.Errorf("registrytest: kill -9: %v", err)
	}
}

// Terminate sends SIGTERM, waits for the graceful shutdown and returns the
// exit code (0 after a clean shutdown).
func (p *Process) Terminate() int {
	p.t.Helper()
	st, err := p.signalAndWait(syscall.SIGTERM)
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
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
	default:
		if code := p.Terminate(); code != 0 {
			p.t.Errorf("registrytest: terminate before restart: exit code %d", code)
		}
	}
	p.start(p.Addr)
}
