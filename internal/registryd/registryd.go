// Package registryd is the sr-registry process around internal/server:
// its listeners (plain HTTP or TLS, the API's and the metrics'), the cap on
// concurrent connections, the warnings a risky setup deserves, and the
// signals: SIGHUP reloads the TLS certificate and the credentials file
// without dropping a connection or a session; cancelling Run's context
// (SIGTERM, SIGINT in cmd/sr-registry) shuts down gracefully.
//
// The HTTP server's timeouts are internal/server's (HTTPLimits): a request
// must arrive whole within ReadTimeout of its first byte, so a client that
// dribbles its header or body is cut off, while a keep-alive connection
// between two heartbeats lives on IdleTimeout.
//
// --max-connections caps the API listener's connections: at the cap a new
// connection replaces the longest-idle keep-alive one, or, when none is
// idle, is closed at once (connLimit).
//
// TLS serves HTTP/1.1 only (ALPN "http/1.1"): the registry's calls are
// small and its clients keep one connection each, and HTTP/1.1 keeps the
// same timeouts, connection cap and lingering 413 as plain HTTP.
package registryd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// DefaultMaxConnections is the default cap on concurrent connections of
// the API listener.
const DefaultMaxConnections = 10000

// fdReserve is how many file descriptors the cap leaves to everything else
// (the store, etcd clients, the metrics listener, logs).
const fdReserve = 128

// Config configures a Daemon.
type Config struct {
	// Listen is the API's address; MetricsListen, when not empty, the
	// metrics listener's (server.Config.SeparateMetrics must be set too).
	Listen, MetricsListen string
	// TLSCert and TLSKey are PEM files of the certificate (with its chain)
	// and its private key: both serve HTTPS on every listener, neither
	// plain HTTP.
	TLSCert, TLSKey string
	// CredentialsFile is read again on reload (Server.Credentials holds
	// what it said at start).
	CredentialsFile string
	// MaxConnections caps the API listener's concurrent connections;
	// zero means DefaultMaxConnections. It is lowered to what the
	// process's open-file limit allows, with a warning.
	MaxConnections int
	// Server configures the server itself.
	Server server.Config
	// HTTP are the timeouts; zero fields take internal/server's defaults.
	HTTP server.HTTPLimits
	// Logger receives the logs; nil discards them.
	Logger *zap.Logger
	// Reload, when not nil, replaces SIGHUP: each receive reloads (for
	// tests in one process).
	Reload <-chan struct{}
	// Listening, when not nil, is called once both listeners listen, with
	// the API's address (for tests).
	Listening func(addr net.Addr)
}

// Daemon is a configured sr-registry: New checks the configuration (a
// failure is the operator's to fix), Run serves.
type Daemon struct {
	cfg     Config
	log     *zap.Logger
	cert    *certificate // nil without TLS
	limiter *connLimit
	max     int
}

// UsageError is an error of the configuration, which cmd/sr-registry
// reports with exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// New checks cfg: the TLS flags come as a pair and their files hold a
// matching certificate and key; the connection cap is positive. Errors
// are *UsageError.
func New(cfg Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: cfg.Logger, max: cfg.MaxConnections}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	if d.cfg.Server.Logger == nil {
		d.cfg.Server.Logger = d.log
	}
	switch {
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return nil, &UsageError{errors.New("--tls-cert and --tls-key: give both (HTTPS) or neither (plain HTTP)")}
	case cfg.TLSCert != "":
		c := &certificate{certFile: cfg.TLSCert, keyFile: cfg.TLSKey}
		kp, err := c.load()
		if err != nil {
			return nil, &UsageError{err}
		}
		c.cur.Store(kp)
		d.cert = c
	}
	switch {
	case d.max < 0:
		return nil, &UsageError{fmt.Errorf("--max-connections %d: must be positive (it caps concurrent connections)", d.max)}
	case d.max == 0:
		d.max = DefaultMaxConnections
	}
	return d, nil
}

// Run serves until ctx is done, then shuts down gracefully (in-flight
// requests finish, up to 10 s). It returns nil after a clean shutdown.
func (d *Daemon) Run(ctx context.Context) error {
	// A reload comes from Config.Reload or, without it, from SIGHUP; the
	// other channel stays nil, which a select never receives from.
	var hup chan os.Signal
	if d.cfg.Reload == nil {
		// Before anything listens: a SIGHUP sent once the process says it
		// listens must not kill it.
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}

	max, clamped, limit := capToFileLimit(d.max)
	if clamped {
		d.log.Warn("--max-connections lowered to what the open-file limit allows",
			zap.Int("asked", d.max), zap.Int("max_connections", max), zap.Uint64("rlimit_nofile", limit))
	}
	d.limiter = newConnLimit(max, d.log.Named("conns"))

	srv, err := server.New(d.cfg.Server)
	if err != nil {
		return err
	}
	if err := srv.RegisterMetrics(d.limiter.collectors()...); err != nil {
		return errors.Join(err, srv.Close())
	}
	l, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return errors.Join(fmt.Errorf("listen on %s: %w", d.cfg.Listen, err), srv.Close())
	}
	var ml net.Listener
	if d.cfg.MetricsListen != "" {
		if ml, err = net.Listen("tcp", d.cfg.MetricsListen); err != nil {
			return errors.Join(fmt.Errorf("--metrics-listen: listen on %s: %w", d.cfg.MetricsListen, err), l.Close(), srv.Close())
		}
	}
	scheme := "http"
	if d.cert != nil {
		scheme = "https"
		tc := d.tlsConfig()
		l = tls.NewListener(l, tc)
		if ml != nil {
			ml = tls.NewListener(ml, tc)
		}
	}
	if ml != nil {
		d.log.Info("serving metrics", zap.String("addr", ml.Addr().String()),
			zap.String("url", scheme+"://"+ml.Addr().String()+"/metrics"))
	}
	actual := l.Addr().String()
	where := zap.String("data_dir", d.cfg.Server.DataDir)
	if d.cfg.Server.Etcd != nil {
		where = zap.Stringer("store", d.cfg.Server.Etcd)
	}
	fields := []zap.Field{
		zap.String("addr", actual),
		zap.String("url", scheme+"://"+actual+"/v1.0"),
		zap.String("auth_url", scheme+"://"+actual+"/v2.0"),
		where,
		zap.Bool("dev", d.cfg.Server.Dev),
		zap.Int("accounts", len(d.cfg.Server.Credentials)),
		zap.Bool("tls", d.cert != nil),
		zap.Int("max_connections", max),
	}
	if d.cert != nil {
		fields = append(fields, certFields(d.cert.cur.Load())...)
	}
	d.log.Info("listening", fields...)
	if d.cert == nil && !isLoopback(l.Addr()) {
		d.log.Warn("serving plain HTTP beyond loopback: API keys and tokens cross the network in clear; "+
			"give --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS-terminating proxy",
			zap.String("addr", actual))
	}
	if d.cfg.Listening != nil {
		d.cfg.Listening(l.Addr())
	}

	lim := d.cfg.HTTP
	lim.ConnState = d.limiter.track
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, l, ml, lim) }()
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			d.reload(srv)
		case <-d.cfg.Reload:
			d.reload(srv)
		}
	}
}

// tlsConfig is the listeners' TLS configuration: TLS 1.2 and later with
// Go's default cipher suites, and the certificate of the moment, which a
// reload swaps under connections being accepted.
func (d *Daemon) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: d.cert.get,
		NextProtos:     []string{"http/1.1"},
	}
}

// reload reads the certificate and the credentials file again. Each that
// fails to load keeps what it replaces, and says why.
func (d *Daemon) reload(srv *server.Server) {
	if d.cert == nil && d.cfg.CredentialsFile == "" {
		d.log.Info("reload: nothing to reload (neither --tls-cert nor --credentials given)")
		return
	}
	if d.cert != nil {
		if kp, err := d.cert.load(); err != nil {
			d.log.Error("reload: keeping the previous certificate", zap.Error(err))
		} else {
			d.cert.cur.Store(kp)
			d.log.Info("reload: certificate reloaded", append([]zap.Field{zap.String("file", d.cert.certFile)}, certFields(kp)...)...)
		}
	}
	if f := d.cfg.CredentialsFile; f != "" {
		creds, err := server.LoadCredentials(f)
		if err == nil {
			err = srv.SetCredentials(creds)
		}
		if err != nil {
			d.log.Error("reload: keeping the previous credentials", zap.String("file", f), zap.Error(err))
		} else {
			d.log.Info("reload: credentials reloaded", zap.String("file", f), zap.Int("accounts", len(creds)))
		}
	}
}

// isLoopback says whether a is a loopback address (127.0.0.0/8, ::1); the
// unspecified 0.0.0.0 and :: are every interface, so not.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// capToFileLimit lowers max to what RLIMIT_NOFILE leaves after fdReserve
// (Go has already raised the soft limit to the hard one at start).
func capToFileLimit(max int) (capped int, clamped bool, limit uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == ^uint64(0) /* RLIM_INFINITY */ {
		return max, false, 0
	}
	room := int64(rl.Cur) - fdReserve
	if room < 1 {
		room = 1
	}
	if int64(max) > room {
		return int(room), true, rl.Cur
	}
	return max, false, rl.Cur
}
