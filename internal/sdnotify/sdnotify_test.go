package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket as systemd does for Type=notify units.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen on %q: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyReachesSocket(t *testing.T) {
	tests := []struct {
		name   string
		socket func(t *testing.T) (env string, listenName string)
	}{
		{name: "path", socket: func(t *testing.T) (string, string) {
			p := filepath.Join(t.TempDir(), "notify.sock")
			return p, p
		}},
		{name: "abstract", socket: func(t *testing.T) (string, string) {
			n := "sr-wrapper-test-" + strings.ReplaceAll(t.Name(), "/", "-")
			return "@" + n, "\x00" + n
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, name := tt.socket(t)
			conn := listen(t, name)
			n, err := New(func(k string) string {
				if k == SocketEnv {
					return env
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if err := n.Ready("registered\nMAINPID=1"); err != nil {
				t.Fatal(err)
			}
			if got, want := receive(t, conn), "READY=1\nSTATUS=registered MAINPID=1"; got != want {
				t.Fatalf("got %q, want %q (a status must not add assignments)", got, want)
			}
			if err := n.Stopping("child exited"); err != nil {
				t.Fatal(err)
			}
			if got, want := receive(t, conn), "STOPPING=1\nSTATUS=child exited"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

func TestWithoutSocketNothingHappens(t *testing.T) {
	n, err := New(func(string) string { return "" })
	if err != nil || n != nil {
		t.Fatalf("New without NOTIFY_SOCKET = %v, %v; want nil, nil", n, err)
	}
	if err := n.Ready("x"); err != nil {
		t.Fatalf("nil Notifier: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBadSocket(t *testing.T) {
	for _, v := range []string{"relative/path", filepath.Join(t.TempDir(), "missing.sock")} {
		if _, err := New(func(string) string { return v }); err == nil {
			t.Errorf("New(NOTIFY_SOCKET=%q) succeeded", v)
		}
	}
}
