package wrapper

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
)

// lateRegistry answers a registration only when released, whatever its
// context says: the reply that was already on its way when the wrapper
// began to stop.
type lateRegistry struct {
	registering chan struct{} // closed when Register is called
	release     chan struct{}
}

func (r *lateRegistry) CreateSession(context.Context, registry.SessionOptions) (registry.Session, error) {
	return &lateSession{r: r}, nil
}
func (r *lateRegistry) Close() error   { return nil }
func (r *lateRegistry) String() string { return "late" }

type lateSession struct{ r *lateRegistry }

func (s *lateSession) ID() string                      { return "seLate" }
func (s *lateSession) TTL() time.Duration              { return 3 * time.Second }
func (s *lateSession) Heartbeat(context.Context) error { return nil }
func (s *lateSession) Register(context.Context, registry.Service) error {
	close(s.r.registering)
	<-s.r.release
	return nil
}
func (s *lateSession) Deregister(context.Context, string) error { return nil }
func (s *lateSession) Close(context.Context) error              { return nil }

// notifySocket listens as systemd does for a Type=notify unit.
func notifySocket(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return path, conn
}

func readNote(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read a notification: %v", err)
	}
	return string(buf[:n])
}

// A registration that completes while the wrapper is stopping must not
// make it tell systemd READY=1 after STOPPING=1: systemd would take the
// unit for started again.
func TestNoReadyAfterStopping(t *testing.T) {
	sock, notes := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	reg := &lateRegistry{registering: make(chan struct{}), release: make(chan struct{})}
	cfg := &cli.WrapperConfig{
		Service:     api.Service{ID: "web1"},
		TTL:         3 * time.Second,
		Connection:  &cli.ResolvedConnection{Backend: cli.BackendEtcd, Etcd: &etcdconf.Config{}},
		StopSignal:  syscall.SIGTERM,
		StopTimeout: 10 * time.Second,
		Command:     []string{"sleep", "60"},
	}
	backends := Backends{Etcd: func(etcdconf.Config, *zap.Logger) (registry.Registry, error) { return reg, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Run(ctx, cfg, zaptest.NewLogger(t), backends) }()

	select {
	case <-reg.registering:
	case <-time.After(10 * time.Second):
		t.Fatal("the service was not registered within 10s")
	}
	cancel() // as TERM would
	if note := readNote(t, notes); !strings.HasPrefix(note, "STOPPING=1") {
		t.Fatalf("first notification %q, want STOPPING=1", note)
	}
	close(reg.release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
	}
	// Every datagram the wrapper sent is queued by now; a last one of our
	// own marks the end.
	end, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer end.Close()
	if _, err := end.Write([]byte("END")); err != nil {
		t.Fatal(err)
	}
	for note := readNote(t, notes); note != "END"; note = readNote(t, notes) {
		if strings.Contains(note, "READY=1") {
			t.Errorf("%q after STOPPING=1", note)
		}
	}
}
