// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// datagrams such as "READY=1" sent to the socket named by NOTIFY_SOCKET.
// It lets a unit with Type=notify know when the wrapped service is
// registered, and when it is stopping, and it reads the watchdog a unit
// with WatchdogSec= asks for (WATCHDOG_USEC, WATCHDOG_PID) and sends its
// pings. Keeping the pings coming, and keeping the protocol's variables
// from the child (StripEnv), is the caller's part.
//
// It is a client only, with no dependency on libsystemd; outside systemd
// (no NOTIFY_SOCKET) every call is a no-op.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// SocketEnv is the environment variable systemd sets for Type=notify units.
const SocketEnv = "NOTIFY_SOCKET"

// Notifier sends state changes to systemd. A nil *Notifier is valid and
// sends nothing, so callers need no "under systemd?" branches.
type Notifier struct {
	conn *net.UnixConn
}

// New connects to the socket named by NOTIFY_SOCKET (read through getenv),
// or returns nil, nil when it is unset. Abstract sockets ("@name") are
// supported, as systemd may use them.
func New(getenv func(string) string) (*Notifier, error) {
	path := getenv(SocketEnv)
	if path == "" {
		return nil, nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return nil, fmt.Errorf("%s=%q: want an absolute path or an abstract socket name starting with @", SocketEnv, path)
	}
	name := path
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("connect to systemd's notification socket %s: %w", path, err)
	}
	return &Notifier{conn: conn}, nil
}

// Notify sends one message of newline-separated VAR=value assignments.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q: %w", firstLine(state), err)
	}
	return nil
}

// Ready tells systemd the service is up, with a status line for
// "systemctl status".
func (n *Notifier) Ready(status string) error {
	return n.Notify("READY=1\nSTATUS=" + oneLine(status))
}

// Stopping tells systemd the service is shutting down.
func (n *Notifier) Stopping(status string) error {
	return n.Notify("STOPPING=1\nSTATUS=" + oneLine(status))
}

// Status updates the status line shown by "systemctl status".
func (n *Notifier) Status(status string) error {
	return n.Notify("STATUS=" + oneLine(status))
}

// Close closes the connection.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	if err := n.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close systemd notification socket: %w", err)
	}
	return nil
}

// oneLine keeps a status from smuggling in assignments of its own.
func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
