package wrapper_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// Binaries built once for the package's tests.
type binaries struct{ wrapper, fakeproc string }

var bins binaries // written once by TestMain before any test runs

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wrapper-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err = registrytest.Build(ctx, dir, nil, "github.com/sr-wrapper/sr-wrapper/cmd/sr-wrapper", "github.com/sr-wrapper/sr-wrapper/testdata/fakeproc")
	bins = binaries{wrapper: filepath.Join(dir, "sr-wrapper"), fakeproc: filepath.Join(dir, "fakeproc")}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// notifySocket listens as systemd does for a Type=notify unit and returns
// its path and a channel of the datagrams received.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

func receive(t *testing.T, ch <-chan string, prefix string) string {
	t.Helper()
	select {
	case msg := <-ch:
		if !strings.HasPrefix(msg, prefix) {
			t.Fatalf("notification %q, want one starting with %q", msg, prefix)
		}
		return msg
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q notification", prefix)
	}
	return ""
}

func TestSystemdNotifyReadyOnceRegisteredAndStopping(t *testing.T) {
	reg := registrytest.Start(t)
	sock, notes := notifySocket(t)

	cmd := exec.Command(bins.wrapper, "--id=notify-web", "--interval=3", "--registry="+reg.URL,
		"--username=alice", "--api-key=secret", "--",
		bins.fakeproc, "--ready", "--print-env", "NOTIFY_SOCKET", "--exit-on-term", "0")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)

	msg := receive(t, notes, "READY=1")
	if !strings.Contains(msg, "STATUS=running; registered") {
		t.Errorf("READY notification %q does not say the service is registered", msg)
	}
	client, err := srapi.NewClient(srapi.Config{RegistryURL: reg.URL, AuthURL: reg.AuthURL, Username: "alice", APIKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.GetService(ctx, "notify-web"); err != nil {
		t.Fatalf("READY=1 was sent but the service is not registered: %v", err)
	}

	var env []string
	for lines.Scan() && len(env) < 2 {
		if l := lines.Text(); strings.Contains(l, "NOTIFY_SOCKET") {
			env = append(env, l)
			break
		}
	}
	if len(env) != 1 || env[0] != "unset NOTIFY_SOCKET" {
		t.Errorf("child saw %q; the wrapper must keep NOTIFY_SOCKET to itself", env)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	receive(t, notes, "STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wrapper: %v (want exit 0, the child's code)", err)
	}
}

func TestSystemdNotifyReadyEvenWhenRegistryIsDown(t *testing.T) {
	// Nothing listens there: the registry is down for the whole test.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	sock, notes := notifySocket(t)

	cmd := exec.Command(bins.wrapper, "--id=notify-down", "--interval=3", "--registry=http://"+dead+"/v1.0",
		"--username=alice", "--api-key=secret", "--", bins.fakeproc, "--exit-on-term", "0")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	start := time.Now()
	msg := receive(t, notes, "READY=1")
	if !strings.Contains(msg, "not registered yet") {
		t.Errorf("READY notification %q should say the service is not registered yet", msg)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("READY=1 came after %s, before a heartbeat timeout (3s) of trying", took)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	receive(t, notes, "STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wrapper: %v", err)
	}
}

// The lean sr-wrapper hands etcd:// registries to sr-wrapper-etcd; without
// it, the user gets one clear line and exit 2, and nothing starts.
func TestEtcdRegistryWithoutEtcdWrapperIsAUsageError(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "started")
	cmd := exec.Command(bins.wrapper, "--id=etcd-missing", "--registry=etcd://127.0.0.1:2379/sr", "--",
		"sh", "-c", "touch "+marker)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("wrapper: %v, want exit status 2; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "sr-wrapper-etcd, which is not installed") {
		t.Errorf("output does not explain what is missing:\n%s", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command was started")
	}
}
