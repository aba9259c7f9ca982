package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/health"
	"github.com/sr-wrapper/sr-wrapper/internal/hostaddr"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

// Wrapper is sr-wrapper's command line. Flag names, short names and
// meanings of the Node.js service-registry-wrapper are kept, so that an
// existing unit file works unchanged.
type Wrapper struct {
	ID              string   `name:"id" required:"" placeholder:"ID" help:"Service id to register, unique in the account: 3..65 of a-z 0-9 _ - . (required)."`
	Tags            []string `name:"tags" short:"t" sep:"none" placeholder:"TAG,..." help:"Comma-separated service tags (at most 10, 1..55 characters each); repeatable. Escape a comma in a tag as \\,."`
	Metadata        []string `name:"metadata" short:"m" sep:"none" placeholder:"KEY=VALUE,..." help:"Comma-separated service metadata (at most 20 entries, 1..255 characters each); repeatable."`
	AdvertiseIP     string   `name:"advertise-ip" placeholder:"SELECTOR" help:"Put ip=<this host's address> in the service metadata: auto (the interface of the default route), auto:ipv6, an interface (eth0, eth0:ipv6) or a CIDR (10.0.0.0/8, first match). Looked up at each registration; while nothing matches, registration is retried. An explicit --metadata ip=... wins."`
	AdvertisePort   int      `name:"advertise-port" placeholder:"PORT" help:"Put port=PORT (1..65535) in the service metadata. An explicit --metadata port=... wins."`
	SessionMetadata []string `name:"session-metadata" sep:"none" placeholder:"KEY=VALUE,..." help:"Comma-separated session metadata, same rules as --metadata; repeatable."`
	Interval        int      `name:"interval" short:"i" default:"30" placeholder:"SECONDS" help:"Heartbeat timeout of the session in seconds, 3..30: the service disappears this long after the wrapper stops heartbeating. Default: ${default}."`
	AbortOnFailure  bool     `name:"abort-on-failure" help:"Stop the child (stop signal, grace, KILL) and exit 100 when registration fails for good or a lost session cannot be recovered. Without it, registry failures never stop the child."`
	Retries         int      `name:"retries" default:"0" placeholder:"N" help:"Give up registering after N failed attempts in a row, however long they take. 0: never, or with --abort-on-failure after one heartbeat timeout without success."`

	Connection `embed:""`

	StopSignal  string        `name:"stop-signal" default:"TERM" placeholder:"SIGNAL" help:"Signal that asks the child to stop gracefully, sent instead of TERM (Apache: WINCH, nginx: QUIT). Default: ${default}."`
	StopTimeout time.Duration `name:"stop-timeout" default:"10s" placeholder:"DURATION" help:"How long the child may take to exit after the stop signal before its process group gets SIGKILL. Default: ${default}."`
	DrainDelay  time.Duration `name:"drain-delay" default:"0s" placeholder:"DURATION" help:"On TERM/INT/QUIT, deregister first, wait this long for clients to move away, then forward the signal. 0: deregister and forward at once."`
	SignalGroup bool          `name:"signal-group" help:"Forward signals to the child's whole process group instead of the child alone."`
	KillMode    string        `name:"kill-mode" default:"group" enum:"group,process" placeholder:"group|process" help:"What must not outlive the child. group: once it has exited, what is left of its process group (with --subreaper or as PID 1, every descendant) gets the stop signal, and SIGKILL when --stop-timeout ends, before the wrapper exits. process: the child alone; what it leaves runs on. Default: ${default}."`
	Subreaper   bool          `name:"subreaper" help:"Adopt and reap orphaned descendants (PR_SET_CHILD_SUBREAPER), as PID 1 always does."`

	CheckHTTP     string        `name:"check-http" group:"health" placeholder:"URL" help:"Register the service only while GET URL answers 2xx or 3xx."`
	CheckTCP      string        `name:"check-tcp" group:"health" placeholder:"HOST:PORT" help:"Register the service only while HOST:PORT accepts TCP connections."`
	CheckCmd      string        `name:"check-cmd" group:"health" placeholder:"'COMMAND ARGS'" help:"Register the service only while COMMAND exits 0. Run without a shell (quotes work as in sh); use \"sh -c '...'\" for pipes or variables."`
	CheckInterval time.Duration `name:"check-interval" group:"health" default:"${check_interval}" placeholder:"DURATION" help:"Time between health checks. Default: ${default}, or --check-timeout when that is longer."`
	CheckTimeout  time.Duration `name:"check-timeout" group:"health" default:"${check_timeout}" placeholder:"DURATION" help:"A check that takes longer fails; at most --check-interval. Default: ${default}, or --check-interval when that is shorter."`
	CheckRise     int           `name:"check-rise" group:"health" default:"${check_rise}" placeholder:"N" help:"Passes in a row that make the service healthy (registered). Default: ${default}."`
	CheckFall     int           `name:"check-fall" group:"health" default:"${check_fall}" placeholder:"N" help:"Failures in a row that make it unhealthy (deregistered; the child keeps running). Default: ${default}."`

	LogFormat string `name:"log-format" default:"auto" enum:"auto,json,console" help:"Log format: json, console, or auto (json unless stderr is a terminal)."`
	LogLevel  string `name:"log-level" default:"info" enum:"debug,info,warn,error" help:"Minimum level of log lines."`

	Command []string `arg:"" optional:"" name:"command" passthrough:"" placeholder:"COMMAND [ARGS...]" help:"The program to run and its arguments. Put -- before it when it takes flags of its own."`

	// given names the flags given on the command line (ParseWrapper
	// fills it in): a default that depends on another flag follows what
	// the user set, and only two flags the user set can conflict.
	given map[string]bool `kong:"-"`
}

// Exit statuses of the wrapper itself, for a bad command line and for
// --abort-on-failure. Everything else is the child's (see
// internal/supervisor).
const (
	ExitUsage = 2
	ExitAbort = 100
)

// Values of --kill-mode.
const (
	KillModeGroup   = "group"
	KillModeProcess = "process"
)

// Bounds of the stop flags.
const (
	maxStopTimeout = 24 * time.Hour
	maxDrainDelay  = time.Hour
)

// WrapperConfig is a validated Wrapper command line.
type WrapperConfig struct {
	Service api.Service // ID, Tags, Metadata (SessionID empty)
	// AdvertiseIP selects the address the service's ip= metadata gets at
	// each registration; zero without --advertise-ip, or when --metadata
	// gives ip= itself.
	AdvertiseIP     hostaddr.Selector
	SessionMetadata map[string]string
	TTL             time.Duration
	AbortOnFailure  bool
	Retries         int

	Connection *ResolvedConnection

	StopSignal  syscall.Signal
	StopTimeout time.Duration
	DrainDelay  time.Duration
	SignalGroup bool
	KillMode    string // KillModeGroup or KillModeProcess
	Subreaper   bool

	Log logging.Options

	// Check is the validated health check, nil without one. Its checker
	// is built later, beside the Reaper that starts a command check's
	// processes.
	Check *health.Spec

	Command []string
}

// Config validates the command line and returns the configuration, or an
// error whose text names the flag and the rule it breaks.
func (w *Wrapper) Config(getenv func(string) string) (*WrapperConfig, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := api.ValidateServiceID(w.ID); err != nil {
		return nil, fmt.Errorf("--id: %w", RuleOf(err))
	}
	tags, err := ParseTags(w.Tags)
	if err != nil {
		return nil, fmt.Errorf("--tags: %w", err)
	}
	if err := api.ValidateTags(tags); err != nil {
		return nil, fmt.Errorf("--tags: %w", err)
	}
	md, err := ParseKeyValues(w.Metadata)
	if err != nil {
		return nil, fmt.Errorf("--metadata: %w", err)
	}
	if err := api.ValidateMetadata("metadata", md); err != nil {
		return nil, fmt.Errorf("--metadata: %w", err)
	}
	md, advertiseIP, err := w.advertise(md)
	if err != nil {
		return nil, err
	}
	smd, err := ParseKeyValues(w.SessionMetadata)
	if err != nil {
		return nil, fmt.Errorf("--session-metadata: %w", err)
	}
	if err := api.ValidateMetadata("session metadata", smd); err != nil {
		return nil, fmt.Errorf("--session-metadata: %w", err)
	}
	if err := api.ValidateHeartbeatTimeout(w.Interval); err != nil {
		return nil, fmt.Errorf("--interval: %w", RuleOf(err))
	}
	if w.Retries < 0 {
		return nil, fmt.Errorf("--retries: must be 0 (never give up) or more, got %d", w.Retries)
	}
	conn, err := w.Connection.Resolve(getenv)
	if err != nil {
		return nil, err
	}
	sig, err := signals.Parse(w.StopSignal)
	if err != nil {
		return nil, fmt.Errorf("--stop-signal: %w", err)
	}
	if w.StopTimeout <= 0 || w.StopTimeout > maxStopTimeout {
		return nil, fmt.Errorf("--stop-timeout: must be more than 0 and at most %s, got %s", maxStopTimeout, w.StopTimeout)
	}
	if w.DrainDelay < 0 || w.DrainDelay > maxDrainDelay {
		return nil, fmt.Errorf("--drain-delay: must be between 0 and %s, got %s", maxDrainDelay, w.DrainDelay)
	}
	killMode := w.KillMode
	switch killMode {
	case "":
		killMode = KillModeGroup
	case KillModeGroup, KillModeProcess:
	default:
		return nil, fmt.Errorf("--kill-mode: want %s or %s, got %q", KillModeGroup, KillModeProcess, w.KillMode)
	}
	logOpts := logging.Options{Format: w.LogFormat, Level: w.LogLevel}
	switch {
	case !conn.Debug:
	case !w.given["log-level"]:
		logOpts.Level = "debug"
	case w.given["debug"] && w.LogLevel != "debug":
		return nil, fmt.Errorf("--debug and --log-level=%s: --debug logs every transaction at debug level, which --log-level=%s hides; give one of them", w.LogLevel, w.LogLevel)
	default:
		// SR_DEBUG, from the environment, yields to an explicit
		// --log-level.
	}
	command := w.Command
	if len(command) > 0 && command[0] == "--" {
		// kong's passthrough keeps the separator.
		command = command[1:]
	}
	if len(command) == 0 || command[0] == "" {
		return nil, fmt.Errorf("COMMAND: missing; usage: sr-wrapper [flags] [--] COMMAND [ARGS...]")
	}
	check, err := w.check()
	if err != nil {
		return nil, err
	}
	return &WrapperConfig{
		Service:         api.Service{ID: w.ID, Tags: tags, Metadata: md},
		AdvertiseIP:     advertiseIP,
		SessionMetadata: smd,
		TTL:             time.Duration(w.Interval) * time.Second,
		AbortOnFailure:  w.AbortOnFailure,
		Retries:         w.Retries,
		Connection:      conn,
		StopSignal:      sig,
		StopTimeout:     w.StopTimeout,
		DrainDelay:      w.DrainDelay,
		SignalGroup:     w.SignalGroup,
		KillMode:        killMode,
		Subreaper:       w.Subreaper,
		Log:             logOpts,
		Check:           check,
		Command:         command,
	}, nil
}

// Metadata keys that --advertise-ip and --advertise-port fill in.
const (
	MetadataIP   = "ip"
	MetadataPort = "port"
)

// longestIP stands in for the address --advertise-ip will find, so that
// validation sees the metadata the registry will get.
const longestIP = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"

// advertise validates --advertise-ip and --advertise-port and adds the
// port to md. A key --metadata gives itself wins, as the more specific.
func (w *Wrapper) advertise(md map[string]string) (map[string]string, hostaddr.Selector, error) {
	var sel hostaddr.Selector
	if w.AdvertiseIP != "" || w.given["advertise-ip"] {
		var err error
		if sel, err = hostaddr.Parse(w.AdvertiseIP); err != nil {
			return nil, sel, fmt.Errorf("--advertise-ip: %w", err)
		}
	}
	if w.AdvertisePort != 0 || w.given["advertise-port"] {
		if err := hostaddr.CheckPort(w.AdvertisePort); err != nil {
			return nil, sel, fmt.Errorf("--advertise-port: %w", err)
		}
	}
	if sel.IsZero() && w.AdvertisePort == 0 {
		return md, sel, nil
	}
	out := make(map[string]string, len(md)+2)
	for k, v := range md {
		out[k] = v
	}
	if _, given := md[MetadataPort]; w.AdvertisePort != 0 && !given {
		out[MetadataPort] = strconv.Itoa(w.AdvertisePort)
	}
	if _, given := md[MetadataIP]; given {
		sel = hostaddr.Selector{}
	}
	check := out
	if !sel.IsZero() {
		check = make(map[string]string, len(out)+1)
		for k, v := range out {
			check[k] = v
		}
		check[MetadataIP] = longestIP
	}
	if err := api.ValidateMetadata("metadata", check); err != nil {
		return nil, sel, fmt.Errorf("--advertise-ip, --advertise-port: with their entries, %w", err)
	}
	return out, sel, nil
}

// check validates the health-check flags, if any is given. Of the
// interval and the timeout, which must not exceed it, the one left to its
// default follows the one given: --check-interval 500ms alone means a
// 500ms timeout, --check-timeout 10s alone a 10s interval.
func (w *Wrapper) check() (*health.Spec, error) {
	if w.CheckHTTP == "" && w.CheckTCP == "" && w.CheckCmd == "" {
		for _, f := range []string{"check-interval", "check-timeout", "check-rise", "check-fall"} {
			if w.given[f] {
				return nil, fmt.Errorf("--%s: applies only with a check: --check-http, --check-tcp or --check-cmd", f)
			}
		}
		return nil, nil
	}
	timing := health.Timing{Interval: w.CheckInterval, Timeout: w.CheckTimeout, Rise: w.CheckRise, Fall: w.CheckFall}
	switch intervalGiven, timeoutGiven := w.given["check-interval"], w.given["check-timeout"]; {
	case intervalGiven && !timeoutGiven && timing.Interval > 0:
		timing.Timeout = min(timing.Timeout, timing.Interval)
	case timeoutGiven && !intervalGiven:
		timing.Interval = max(timing.Interval, timing.Timeout)
	}
	spec := &health.Spec{HTTP: w.CheckHTTP, TCP: w.CheckTCP, Command: w.CheckCmd, Timing: timing}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return spec, nil
}

// RuleOf drops the field name from an API validation error, for messages
// that name the flag instead.
func RuleOf(err error) error {
	if ve, ok := errors.AsType[*api.ValidationError](err); ok {
		return errors.New(ve.Rule)
	}
	return err
}
