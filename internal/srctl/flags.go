package srctl

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
)

const srctlDescription = `Show and change what a Service Registry API v1.0 registry holds: services,
sessions, the events feed and configuration values.

Examples:
  srctl services list --tag web
  srctl events follow
  srctl config set production/cassandra/listen_ip 10.0.0.5
  srctl --output json sessions list | jq '.[].id'

The connection flags and environment variables are sr-wrapper's
(SR_REGISTRY_URL, SR_USERNAME, SR_API_KEY, SR_DEBUG). Global flags may be
given before or after the command.

Exit status: 0 success; 1 error (the registry's fault on one line);
2 usage error; 3 registry unreachable, the cached service list was shown.`

// connection is the part of cli.Connection that srctl reads: the flags
// of the Service Registry API, with the names, environment variables and
// meanings of sr-wrapper's. The etcd flags are left out because srctl
// shows sessions, the events feed and configuration, which only the API
// has; an etcd:// --registry is a usage error rather than a flag that
// half works.
type connection struct {
	cli.HTTPConnection `embed:""`
}

// resolve validates the flags as sr-wrapper does for an http(s)
// registry, and refuses an etcd one with a message saying why.
func (c *connection) resolve(getenv func(string) string) (*cli.ResolvedConnection, error) {
	backend, err := cli.RegistryBackend(c.Registry)
	if err != nil {
		return nil, err
	}
	if backend != cli.BackendHTTP {
		return nil, fmt.Errorf("--registry: srctl speaks the Service Registry API (http:// or https://); %q is an etcd registry, which has no sessions, events or configuration to show", c.Registry)
	}
	return c.HTTPConnection.Resolve(getenv)
}

const srctlRegistryHelp = "Registry API to use: http(s)://host:port/v1.0."

// outputJSON is the --output that prints the API's objects; the other is
// "table".
const outputJSON = "json"

// Bounds of srctl's flags.
const (
	// maxSinceWithoutMarker is how far back the events feed reaches
	// without a marker: the API returns the last hour.
	maxSinceWithoutMarker = time.Hour
	minFollowInterval     = 100 * time.Millisecond
	maxFollowInterval     = 10 * time.Minute
)

// grammar is the command line. Global flags are inherited by every
// command, so they may come before or after it.
type grammar struct {
	connection `embed:""`

	Output   string           `name:"output" short:"o" default:"table" enum:"table,json" placeholder:"table|json" help:"Output format: table (aligned columns, for people) or json (the API's objects, for scripts). Default: ${default}."`
	Limit    int              `name:"limit" default:"0" placeholder:"N" help:"Show at most N items of a list; 0 shows them all, following pagination to the end. With events follow: exit after N events."`
	PageSize int              `name:"page-size" default:"0" hidden:"" help:"Items per request, 1..1000 (0: the server's default). For tests."`
	LogLevel string           `name:"log-level" default:"warn" placeholder:"LEVEL" enum:"debug,info,warn,error" help:"Minimum level of log lines on stderr (--debug implies debug). Default: ${default}."`
	Version  kong.VersionFlag `name:"version" help:"Print the version and exit."`

	Services cmdServices `cmd:"" help:"Services: list, get, rm."`
	Sessions cmdSessions `cmd:"" help:"Sessions: list, get."`
	Events   cmdEvents   `cmd:"" help:"The events feed: list, follow."`
	Config   cmdConfig   `cmd:"" help:"Configuration values: list, get, set, rm."`
	Limits   cmdLimits   `cmd:"" help:"Show the account's resource limits and rate limit use."`
	Overview cmdOverview `cmd:"" help:"Show every session with its services."`
}

type cmdServices struct {
	List cmdServicesList `cmd:"" help:"List services, following pagination to the end."`
	Get  cmdServicesGet  `cmd:"" help:"Show one service."`
	Rm   cmdServicesRm   `cmd:"" help:"Remove a service (its session lives on)."`
}

type cmdServicesList struct {
	Tag string `name:"tag" placeholder:"TAG" help:"Only services with this tag."`
}

func (cmdServicesList) Help() string {
	return `Every successful full list is cached on disk (per registry and user). When
the registry is unreachable, the cached list is shown with a warning on
stderr, and the exit status is 3.

Examples:
  srctl services list
  srctl services list --tag web --output json`
}

type cmdServicesGet struct {
	ID string `arg:"" name:"id" help:"Service id."`
}

func (cmdServicesGet) Help() string { return "Example:\n  srctl services get web1" }

type cmdServicesRm struct {
	ID string `arg:"" name:"id" help:"Service id."`
}

func (cmdServicesRm) Help() string { return "Example:\n  srctl services rm web1" }

type cmdSessions struct {
	List cmdSessionsList `cmd:"" help:"List sessions, following pagination to the end."`
	Get  cmdSessionsGet  `cmd:"" help:"Show one session."`
}

type cmdSessionsList struct{}

func (cmdSessionsList) Help() string {
	return "Examples:\n  srctl sessions list\n  srctl sessions list --limit 10"
}

type cmdSessionsGet struct {
	ID string `arg:"" name:"id" help:"Session id, e.g. seMkzI0mxC."`
}

func (cmdSessionsGet) Help() string { return "Example:\n  srctl sessions get seMkzI0mxC" }

type cmdEvents struct {
	List   cmdEventsList   `cmd:"" help:"List events: the last hour's, or from a marker on."`
	Follow cmdEventsFollow `cmd:"" help:"Print new events as they arrive, until interrupted."`
}

type cmdEventsList struct {
	Marker string        `name:"marker" placeholder:"ID" help:"Start at the event with this id (included), instead of an hour ago."`
	Since  time.Duration `name:"since" placeholder:"DURATION" help:"Only events newer than DURATION ago (e.g. 10m). Without --marker, at most 1h: the feed then holds the last hour."`
}

func (cmdEventsList) Help() string {
	return `Without --marker the registry returns the last hour's events; --since
keeps those whose timestamp is newer than now minus DURATION (the filter
runs here, on the events' timestamps). Events are listed oldest first.

Examples:
  srctl events list --since 10m
  srctl events list --marker 1763906701000-000000000042 --output json`
}

type cmdEventsFollow struct {
	After    string        `name:"after" placeholder:"ID" help:"Start after the event with this id (the last one you saw), instead of with the events that arrive from now on."`
	Interval time.Duration `name:"interval" default:"1s" placeholder:"DURATION" help:"Time between two polls of the feed. Default: ${default}."`
}

func (cmdEventsFollow) Help() string {
	return `Polls the feed with its marker over one persistent connection and prints
each event once, in order. A restarted or unreachable registry is retried
with backoff (stderr says so) and following resumes at the same event: no
duplicates, no gaps. Ctrl-C or SIGTERM ends it with status 0. With
--output json each event is one JSON object on its own line.

Examples:
  srctl events follow
  srctl events follow --after 1763906701000-000000000042 --output json`
}

type cmdConfig struct {
	List cmdConfigList `cmd:"" help:"List configuration values, all or under a namespace."`
	Get  cmdConfigGet  `cmd:"" help:"Show one configuration value."`
	Set  cmdConfigSet  `cmd:"" help:"Create or replace a configuration value."`
	Rm   cmdConfigRm   `cmd:"" help:"Remove a configuration value."`
}

type cmdConfigList struct {
	Namespace string `arg:"" optional:"" name:"namespace" placeholder:"NAMESPACE/" help:"List only the values under this namespace and its sub-namespaces. The trailing slash is required: it is what makes an id a namespace."`
}

func (cmdConfigList) Help() string {
	return `Configuration ids are paths like /production/cassandra/listen_ip; the
leading slash may be left out. A namespace ends in a slash.

Examples:
  srctl config list
  srctl config list production/
  srctl config list production/cassandra/`
}

type cmdConfigGet struct {
	ID string `arg:"" name:"id" help:"Configuration id, e.g. production/cassandra/listen_ip (the leading slash is optional)."`
}

func (cmdConfigGet) Help() string {
	return "Example:\n  srctl config get production/cassandra/listen_ip"
}

type cmdConfigSet struct {
	ID    string `arg:"" name:"id" help:"Configuration id, e.g. production/cassandra/listen_ip (the leading slash is optional)."`
	Value string `arg:"" name:"value" help:"The value, 1..1024 characters. Put -- before a value that starts with a dash."`
}

func (cmdConfigSet) Help() string {
	return "Examples:\n  srctl config set production/cassandra/listen_ip 10.0.0.5\n  srctl config set /production/offset -- -1"
}

type cmdConfigRm struct {
	ID string `arg:"" name:"id" help:"Configuration id, e.g. production/cassandra/listen_ip (the leading slash is optional)."`
}

func (cmdConfigRm) Help() string {
	return "Example:\n  srctl config rm production/cassandra/listen_ip"
}

type cmdLimits struct{}

func (cmdLimits) Help() string { return "Example:\n  srctl limits --output json" }

type cmdOverview struct{}

func (cmdOverview) Help() string {
	return "One row per service, with its session; a session without services has a row of its own.\n\nExample:\n  srctl overview"
}

// config is a validated srctl command line.
type config struct {
	// Command is the command's words, e.g. "services list", "config get",
	// "limits".
	Command string
	// ID is the argument of the get, rm and set commands; configuration
	// ids carry their leading slash. For "config list" it is the
	// namespace with both slashes ("/production/"), or "" for all.
	ID    string
	Value string // config set

	Tag      string        // services list --tag
	Marker   string        // events list --marker
	Since    time.Duration // events list --since; 0: no filter
	After    string        // events follow --after
	Interval time.Duration // events follow --interval

	Output   string // "table" or outputJSON
	Limit    int    // 0: all
	PageSize int    // 0: the server's default

	Connection *cli.ResolvedConnection
	Log        logging.Options
}

// parseArgs parses srctl's arguments (without the program name): help and
// version come back as *cli.ErrExit, anything else wrong as an error
// naming the flag or argument and the rule, for the caller to print and
// exit with ExitUsage.
func parseArgs(args []string, version buildinfo.Info, getenv func(string) string, stdout, stderr io.Writer) (*config, error) {
	var s grammar
	kctx, err := cli.Parse(&s, "srctl", srctlDescription, kong.Vars{"registry_help": srctlRegistryHelp}, args, version, stdout, stderr)
	if err != nil {
		// kong's messages ("expected \"<id>\"") do not say of which
		// command: name the one it had reached.
		if pe, ok := errors.AsType[*kong.ParseError](err); ok && pe.Context != nil {
			if n := pe.Context.Selected(); n != nil {
				return nil, fmt.Errorf("%s: %w (see %s --help)", n.Path(), err, n.FullPath())
			}
		}
		if _, ok := errors.AsType[*cli.ErrExit](err); ok {
			return nil, err
		}
		return nil, fmt.Errorf("%w (see srctl --help)", err)
	}
	command := ""
	if n := kctx.Selected(); n != nil {
		command = n.Path()
	}
	return s.config(command, getenv)
}

func (s *grammar) config(command string, getenv func(string) string) (*config, error) {
	cfg := &config{
		Command:  command,
		Output:   s.Output,
		Limit:    s.Limit,
		PageSize: s.PageSize,
		Log:      logging.Options{Format: logging.FormatConsole, Level: s.LogLevel},
	}
	if s.Limit < 0 {
		return nil, fmt.Errorf("--limit: must be 0 (all) or more, got %d", s.Limit)
	}
	if s.PageSize < 0 || s.PageSize > api.MaxListLimit {
		return nil, fmt.Errorf("--page-size: must be between 1 and %d (0: the server's default), got %d", api.MaxListLimit, s.PageSize)
	}
	var err error
	switch command {
	case "services list":
		// An empty --tag is no filter, as the flag's absence.
		if n := utf8.RuneCountInString(s.Services.List.Tag); n > api.MaxTagLen {
			return nil, fmt.Errorf("--tag: must be 1..%d characters long, got %d", api.MaxTagLen, n)
		}
		cfg.Tag = s.Services.List.Tag
	case "services get", "services rm":
		id := s.Services.Get.ID
		if command == "services rm" {
			id = s.Services.Rm.ID
		}
		if err := api.ValidateServiceID(id); err != nil {
			return nil, fmt.Errorf("ID: %w", cli.RuleOf(err))
		}
		cfg.ID = id
	case "sessions list", "limits", "overview":
	case "sessions get":
		if err := api.ValidateSessionID(s.Sessions.Get.ID); err != nil {
			return nil, fmt.Errorf("ID: %w", cli.RuleOf(err))
		}
		cfg.ID = s.Sessions.Get.ID
	case "events list":
		e := s.Events.List
		if e.Since < 0 {
			return nil, fmt.Errorf("--since: must be a positive duration such as 10m, got %s", e.Since)
		}
		if e.Since > maxSinceWithoutMarker && e.Marker == "" {
			return nil, fmt.Errorf("--since: without --marker the feed holds only the last hour; got %s (give --marker to start further back)", e.Since)
		}
		cfg.Marker, cfg.Since = e.Marker, e.Since
	case "events follow":
		f := s.Events.Follow
		if f.Interval < minFollowInterval || f.Interval > maxFollowInterval {
			return nil, fmt.Errorf("--interval: must be between %s and %s, got %s", minFollowInterval, maxFollowInterval, f.Interval)
		}
		cfg.After, cfg.Interval = f.After, f.Interval
	case "config list":
		if cfg.ID, err = configNamespace(s.Config.List.Namespace); err != nil {
			return nil, err
		}
	case "config get", "config rm", "config set":
		raw := s.Config.Get.ID
		switch command {
		case "config rm":
			raw = s.Config.Rm.ID
		case "config set":
			raw = s.Config.Set.ID
			if err := api.ValidateConfigurationValue(s.Config.Set.Value); err != nil {
				return nil, fmt.Errorf("VALUE: %w", cli.RuleOf(err))
			}
			cfg.Value = s.Config.Set.Value
		}
		if cfg.ID, err = configID(raw); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%q: not a command; see srctl --help", command)
	}
	conn, err := s.connection.resolve(getenv)
	if err != nil {
		return nil, err
	}
	cfg.Connection = conn
	if conn.Debug {
		cfg.Log.Level = "debug"
	}
	return cfg, nil
}

// configID turns a configuration id as typed on a command line (with or
// without its leading slash) into the API's id, "/production/db_host", or
// an error naming the rule it breaks.
func configID(raw string) (string, error) {
	id := raw
	if !strings.HasPrefix(id, "/") {
		id = "/" + id
	}
	if api.IsNamespace(id) {
		return "", fmt.Errorf("ID: %q ends in a slash, which makes it a namespace; list it with: srctl config list %s", raw, strings.TrimPrefix(id, "/"))
	}
	if err := api.ValidateConfigurationID(id); err != nil {
		return "", fmt.Errorf("ID: %w", cli.RuleOf(err))
	}
	return id, nil
}

// configNamespace turns a namespace as typed on a command line into the
// API's form, "/production/", or "" for the whole configuration ("" or
// "/"). The trailing slash is required, since the API reads an id without
// it as a single value.
func configNamespace(raw string) (string, error) {
	if raw == "" || raw == "/" {
		return "", nil
	}
	ns := raw
	if !strings.HasPrefix(ns, "/") {
		ns = "/" + ns
	}
	if !api.IsNamespace(ns) {
		return "", fmt.Errorf("NAMESPACE: %q must end in a slash (%s/) to name a namespace; for a single value use: srctl config get %s", raw, raw, raw)
	}
	if err := api.ValidateConfigurationID(ns); err != nil {
		return "", fmt.Errorf("NAMESPACE: %w", cli.RuleOf(err))
	}
	return ns, nil
}
