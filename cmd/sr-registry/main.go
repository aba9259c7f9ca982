// Command sr-registry serves the Service Registry API v1.0 (sessions
// edition) and its identity endpoint, so that sr-wrapper and the old
// clients of the hosted service run against a local, durable registry.
// The server itself is internal/server; this is flags, logging and wiring.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
	"github.com/sr-wrapper/sr-wrapper/internal/registryd"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
)

// Exit codes beside cli.ExitUsage.
const (
	exitOK    = 0
	exitError = 1
)

type flags struct {
	Listen      string           `default:"127.0.0.1:8181" help:"Address to serve on (port 0 picks a free port; the log says which)."`
	DataDir     string           `placeholder:"DIR" help:"Directory of the durable state (bbolt); created if missing. Default: $XDG_DATA_HOME/sr-registry or ~/.local/share/sr-registry."`
	Store       string           `placeholder:"URL" help:"Keep the state in etcd instead of --data-dir, shared by every sr-registry given the same URL: etcd://host:2379[,host:2379...][/prefix] (etcds:// for TLS; default prefix /sr)."`
	Dev         bool             `help:"Development mode: accept any username and API key; each username is its own tenant."`
	Credentials string           `placeholder:"FILE" help:"Accounts that may authenticate: lines of 'username api-key tenant', the api-key in clear or as its bcrypt hash (make one with: sr-registry hash-key < key-file)."`
	LogFormat   string           `default:"auto" enum:"auto,json,console" help:"Log format: auto (console on a terminal, else JSON), json or console."`
	LogLevel    string           `default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn or error."`
	Version     kong.VersionFlag `help:"Print the version and exit."`

	MetricsListen string `placeholder:"ADDR" help:"Serve GET /metrics (with /healthz and /readyz) on this address, and then not on --listen. Default: /metrics on --listen."`

	AuthRateLimit     string `default:"100/1m" placeholder:"N/DURATION" help:"Failed logins allowed per source address (IPv4 address, IPv6 /64): N at once, refilled at N per DURATION; past it, 429 until it refills. Successful logins cost nothing. 'off' disables it (behind a load balancer, where every client has its address). Default: 100/1m."`
	AuthVerifications int    `placeholder:"N" help:"bcrypt verifications run at once; beyond, a login waits briefly, then gets 429. Default: half the CPUs (at least 1)."`

	TLSCert        string `name:"tls-cert" placeholder:"FILE" type:"path" help:"Serve HTTPS (TLS 1.2+) on every listener with this PEM certificate (and chain); needs --tls-key. SIGHUP reloads it."`
	TLSKey         string `name:"tls-key" placeholder:"FILE" type:"path" help:"PEM private key of --tls-cert."`
	MaxConnections int    `default:"10000" help:"Cap on concurrent connections to --listen; when full, the longest-idle keep-alive connection is closed to make room, else new ones are refused."`

	RateLimit       string `default:"500000/24h" placeholder:"N/DURATION" help:"Requests each tenant may make per window, as N/DURATION (windows are aligned on the epoch: 24h is a UTC day). Heartbeats are exempt; deletions of sessions and services are never refused."`
	MaxSessions     int    `default:"100" placeholder:"N" help:"Sessions each account may hold."`
	MaxServices     int    `default:"200" placeholder:"N" help:"Services each account may hold."`
	MaxConfigValues int    `default:"1000" placeholder:"N" help:"Configuration values each account may hold."`

	cli.EtcdConnection `embed:""`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// A subcommand is dispatched before kong parses: the server is
	// flags only, and a kong command tree would make it a default command
	// and change its --help and its parsing.
	if len(args) > 0 && args[0] == "hash-key" {
		return server.HashKey(args[1:], os.Stdin, stdout, stderr)
	}
	var f flags
	_, err := cli.Parse(&f, "sr-registry", "A local, durable Service Registry API v1.0 server with its identity endpoint.",
		nil, args, buildinfo.Get(), stdout, stderr)
	var exit *cli.ErrExit
	switch {
	case errors.As(err, &exit):
		return exit.Code
	case err != nil:
		fmt.Fprintf(stderr, "sr-registry: %v\n", err)
		return cli.ExitUsage
	}
	if !f.Dev && f.Credentials == "" {
		fmt.Fprintln(stderr, "sr-registry: refusing to start: nobody could authenticate. "+
			"Give --dev (any username and API key, for local use) or --credentials FILE (the accounts allowed).")
		return cli.ExitUsage
	}
	log, err := logging.New(logging.Options{Format: f.LogFormat, Level: f.LogLevel, Output: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "sr-registry: %v\n", err)
		return cli.ExitUsage
	}
	defer func() { _ = log.Sync() }()

	cfg := server.Config{Dev: f.Dev, DataDir: f.DataDir, Logger: log, SeparateMetrics: f.MetricsListen != ""}
	cfg.Auth.Verifications = f.AuthVerifications
	if cfg.Auth.Failures, cfg.Auth.FailureWindow, err = server.ParseAuthRateLimit(f.AuthRateLimit); err != nil {
		fmt.Fprintf(stderr, "sr-registry: --auth-rate-limit: %v\n", err)
		return cli.ExitUsage
	}
	if f.AuthVerifications < 0 {
		fmt.Fprintln(stderr, "sr-registry: --auth-verifications must be 0 (half the CPUs) or more")
		return cli.ExitUsage
	}
	if cfg.RateLimit, err = ratelimit.Parse(f.RateLimit); err != nil {
		fmt.Fprintf(stderr, "sr-registry: --rate-limit: %v\n", err)
		return cli.ExitUsage
	}
	for _, l := range []struct {
		flag string
		n    int
	}{{"--max-sessions", f.MaxSessions}, {"--max-services", f.MaxServices}, {"--max-config-values", f.MaxConfigValues}} {
		if l.n < 1 {
			fmt.Fprintf(stderr, "sr-registry: %s %d: must be a positive integer\n", l.flag, l.n)
			return cli.ExitUsage
		}
	}
	cfg.Limits = api.ResourceLimits{Session: f.MaxSessions, Service: f.MaxServices, ConfigurationValue: f.MaxConfigValues}
	if f.Credentials != "" {
		if cfg.Credentials, err = server.LoadCredentials(f.Credentials); err != nil {
			fmt.Fprintf(stderr, "sr-registry: --credentials: %v\n", err)
			return cli.ExitUsage
		}
	}
	switch {
	case f.Store != "" && f.DataDir != "":
		fmt.Fprintln(stderr, "sr-registry: --store and --data-dir: give one, not both (--store keeps the state in etcd, --data-dir in a local file)")
		return cli.ExitUsage
	case f.Store != "":
		if cfg.Etcd, err = f.EtcdConnection.Config("--store", f.Store, os.Getenv); err != nil {
			fmt.Fprintf(stderr, "sr-registry: %v\n", err)
			return cli.ExitUsage
		}
		cfg.Etcd.Logger = log
	default:
		if inUse, err := f.EtcdConnection.InUse(os.Getenv); err != nil || inUse {
			fmt.Fprintf(stderr, "sr-registry: %v\n", cmpErr(err, errors.New("--etcd-*: only apply with --store etcd://HOST:PORT")))
			return cli.ExitUsage
		}
	}
	if cfg.DataDir == "" && cfg.Etcd == nil {
		if cfg.DataDir, err = server.DefaultDataDir(); err != nil {
			fmt.Fprintf(stderr, "sr-registry: --data-dir not given and %v\n", err)
			return cli.ExitUsage
		}
	}

	d, err := registryd.New(registryd.Config{Listen: f.Listen, MetricsListen: f.MetricsListen, TLSCert: f.TLSCert, TLSKey: f.TLSKey,
		CredentialsFile: f.Credentials, MaxConnections: f.MaxConnections, Server: cfg, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "sr-registry: %v\n", err)
		return cli.ExitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.Run(ctx); err != nil {
		log.Error("sr-registry failed", zap.Error(err))
		return exitError
	}
	log.Info("stopped")
	return exitOK
}

// cmpErr returns err, or def when err is nil.
func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
