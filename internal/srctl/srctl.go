// Package srctl is the command-line client for people: it shows and
// changes what a Service Registry API v1.0 registry holds (services,
// sessions, the events feed, configuration values, limits), prints aligned
// tables or the API's own JSON objects, follows the events feed, and keeps
// the last service list on disk to show, marked stale, when the registry
// cannot be reached.
//
// Its flag grammar is here too (flags.go), on the connection flags it
// shares with sr-wrapper (internal/cli). It is not the API client
// (internal/registry/srapi): it formats what comes back and maps failures
// onto exit statuses. cmd/srctl only calls Run.
package srctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// Exit statuses of srctl.
const (
	ExitOK    = 0
	ExitError = 1             // the registry refused or failed, or output could not be written
	ExitUsage = cli.ExitUsage // bad command line; nothing was sent
	// ExitStale: the registry was unreachable and services list showed
	// the cached list instead.
	ExitStale = 3
	// ExitInterrupted: a command other than events follow was cut short
	// by SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
	ExitInterrupted = 130
)

// CacheDirEnv names the environment variable that overrides the directory
// of the service list cache (default: os.UserCacheDir()/srctl).
const CacheDirEnv = "SRCTL_CACHE_DIR"

// Env is what srctl takes from its surroundings besides its arguments.
type Env struct {
	// Getenv reads SR_API_KEY and SRCTL_CACHE_DIR; nil means os.Getenv.
	// (The flags' own environment variables, SR_REGISTRY_URL and the
	// like, are read by the flag parser from the process environment.)
	Getenv func(string) string
	// Version is printed by --version and sent in the User-Agent.
	Version buildinfo.Info
}

// Run runs srctl with args (without the program name) and returns its exit
// status. Cancelling ctx is how SIGINT and SIGTERM reach it: events follow
// then ends with ExitOK, any other command with ExitInterrupted.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return RunEnv(ctx, Env{Getenv: os.Getenv, Version: buildinfo.Get()}, args, stdout, stderr)
}

// RunEnv is Run with an explicit environment, for tests.
func RunEnv(ctx context.Context, env Env, args []string, stdout, stderr io.Writer) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	cfg, err := parseArgs(args, env.Version, env.Getenv, stdout, stderr)
	if err != nil {
		if exit, ok := errors.AsType[*cli.ErrExit](err); ok {
			return exit.Code
		}
		fmt.Fprintf(stderr, "srctl: %s\n", oneLine(err.Error()))
		return ExitUsage
	}
	logOpts := cfg.Log
	logOpts.Output = stderr
	log, err := logging.New(logOpts)
	if err != nil {
		fmt.Fprintf(stderr, "srctl: %s\n", oneLine(err.Error()))
		return ExitUsage
	}
	defer func() { _ = log.Sync() }()
	client, err := srapi.NewClient(cfg.Connection.SRAPIConfig(log, "srctl/"+env.Version.Version))
	if err != nil {
		fmt.Fprintf(stderr, "srctl: %s\n", oneLine(err.Error()))
		return ExitUsage
	}
	defer func() { _ = client.Close() }()
	r := &runner{cfg: cfg, c: client, log: log, env: env, stdout: stdout, stderr: stderr}
	return r.run(ctx)
}

// runner runs one parsed command.
type runner struct {
	cfg    *config
	c      *srapi.Client
	log    *zap.Logger
	env    Env
	stdout io.Writer
	stderr io.Writer
}

func (r *runner) run(ctx context.Context) int {
	var err error
	switch r.cfg.Command {
	case "services list":
		return r.servicesList(ctx)
	case "services get":
		err = r.servicesGet(ctx)
	case "services rm":
		err = r.servicesRm(ctx)
	case "sessions list":
		err = r.sessionsList(ctx)
	case "sessions get":
		err = r.sessionsGet(ctx)
	case "events list":
		err = r.eventsList(ctx)
	case "events follow":
		err = r.eventsFollow(ctx)
	case "config list":
		err = r.configList(ctx)
	case "config get":
		err = r.configGet(ctx)
	case "config set":
		err = r.configSet(ctx)
	case "config rm":
		err = r.configRm(ctx)
	case "limits":
		err = r.limits(ctx)
	case "overview":
		err = r.overview(ctx)
	default:
		// The grammar (flags.go) knows every command; this is one added
		// there and not here.
		fmt.Fprintf(r.stderr, "srctl: %q: not implemented\n", r.cfg.Command)
		return ExitUsage
	}
	return r.exit(ctx, err)
}

// exit prints err, if any, and returns the status for it.
func (r *runner) exit(ctx context.Context, err error) int {
	if err == nil {
		return ExitOK
	}
	if ctx.Err() != nil {
		fmt.Fprintln(r.stderr, "srctl: interrupted")
		return ExitInterrupted
	}
	// API errors already read "<method> <url>: <code> <type>: <message>
	// (<details>) [txnId ...]"; the client keeps the API key out of them.
	fmt.Fprintf(r.stderr, "srctl: %s\n", oneLine(err.Error()))
	return ExitError
}

// warnf prints a warning line on stderr.
func (r *runner) warnf(format string, args ...any) {
	fmt.Fprintln(r.stderr, oneLine(fmt.Sprintf(format, args...)))
}

// opts are the list options of every first page: the page size, which
// --page-size sets for tests.
func (r *runner) opts() srapi.ListOptions { return srapi.ListOptions{Limit: r.cfg.PageSize} }

// jsonOutput says whether to print the API's objects rather than tables.
func (r *runner) jsonOutput() bool { return r.cfg.Output == outputJSON }
