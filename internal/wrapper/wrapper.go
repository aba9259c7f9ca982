// Package wrapper wires a validated sr-wrapper command line into a run: it
// opens the registry backend, builds the heartbeat Keeper and the child's
// environment, and hands them to the supervisor. It holds no logic of its
// own beyond that assembly; cmd/sr-wrapper and cmd/sr-wrapper-etcd call
// Main.
package wrapper

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/health"
	"github.com/sr-wrapper/sr-wrapper/internal/heartbeat"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/sdnotify"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/supervisor"
)

// ServiceIDEnv is set in the child's environment to the service id.
const ServiceIDEnv = "SR_SERVICE_ID"

// Backends are the optional registry backends a binary links; the HTTP
// backend is always there. The etcd client brings gRPC and protobuf, whose
// start-up costs every start milliseconds and megabytes, so sr-wrapper
// leaves it to sr-wrapper-etcd and hands etcd:// registries over to it.
type Backends struct {
	// Etcd opens the etcd backend; nil when the binary lacks it.
	Etcd func(cfg etcdconf.Config, log *zap.Logger) (registry.Registry, error)
}

// Run runs the wrapped command and returns the wrapper's exit status.
func Run(ctx context.Context, cfg *cli.WrapperConfig, log *zap.Logger, backends Backends) int {
	svcLog := log.With(zap.String("service", cfg.Service.ID))
	reg, err := openRegistry(cfg.Connection, backends, svcLog)
	if err != nil {
		// Validation has checked what can be checked; this is rare (an
		// unreadable certificate file, say). Fail before the child starts.
		svcLog.Error("cannot set up the registry backend", zap.Error(err))
		return cli.ExitUsage
	}
	defer func() { _ = reg.Close() }()

	notifier, err := sdnotify.New(os.Getenv)
	if err != nil {
		// Not fatal: systemd will time the unit out, which the log explains.
		svcLog.Warn("cannot notify systemd", zap.Error(err))
	}
	defer func() { _ = notifier.Close() }()
	watchdog, err := sdnotify.ReadWatchdog(os.Getenv, os.Getpid())
	if err != nil {
		svcLog.Warn("ignoring the systemd watchdog", zap.Error(err))
	} else if watchdog.Enabled() {
		svcLog.Debug("pinging the systemd watchdog", zap.Duration("timeout", watchdog.Timeout), zap.Duration("every", watchdog.Period()))
	}

	keeper := heartbeat.New(heartbeat.Config{
		Registry: advertise(reg, cfg.AdvertiseIP),
		Service: registry.Service{
			ID:       cfg.Service.ID,
			Tags:     cfg.Service.Tags,
			Metadata: cfg.Service.Metadata,
		},
		Session:        registry.SessionOptions{TTL: cfg.TTL, Metadata: cfg.SessionMetadata},
		AbortOnFailure: cfg.AbortOnFailure,
		Retries:        cfg.Retries,
		StartUnhealthy: cfg.Check != nil,
		Logger:         log,
	})
	env := childEnv(os.Environ(), cfg.Service.ID)
	var companions []supervisor.Companion
	if cfg.Check != nil {
		companions = append(companions, healthCheck(cfg.Check, env, keeper, svcLog))
	}
	readyTimeout := cfg.TTL
	if cfg.AbortOnFailure {
		readyTimeout = 0 // READY=1 then means registered: it gives up after one timeout
	}

	return supervisor.Run(ctx, supervisor.Config{
		Child: supervisor.ChildSpec{
			Argv: cfg.Command,
			Env:  env,
		},
		Registration:   keeper,
		StopSignal:     cfg.StopSignal,
		StopTimeout:    cfg.StopTimeout,
		DrainDelay:     cfg.DrainDelay,
		SignalGroup:    cfg.SignalGroup,
		KillMode:       killMode(cfg.KillMode),
		Subreaper:      cfg.Subreaper,
		AbortExitCode:  cli.ExitAbort,
		ReadyTimeout:   readyTimeout,
		Companions:     companions,
		Hooks:          systemdHooks(notifier, svcLog),
		WatchdogPeriod: watchdog.Period(),
		Logger:         svcLog,
	})
}

func killMode(mode string) supervisor.KillMode {
	if mode == cli.KillModeProcess {
		return supervisor.KillProcess
	}
	return supervisor.KillGroup
}

// childEnv is the wrapper's environment without its secrets, plus the
// service id: the child must never see the registry's API key. It also
// loses systemd's NOTIFY_SOCKET and watchdog variables: the wrapper
// speaks for the unit, a child's own READY=1 (accepted under
// NotifyAccess=all) would announce a service that is not registered yet,
// and a child that took the watchdog for its own would ping for a unit
// that is not its to vouch for.
func childEnv(env []string, serviceID string) []string {
	drop := map[string]bool{ServiceIDEnv: true}
	for _, name := range sdnotify.EnvNames() {
		drop[name] = true
	}
	for _, name := range cli.SecretEnv() {
		drop[name] = true
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] {
			out = append(out, kv)
		}
	}
	return append(out, ServiceIDEnv+"="+serviceID)
}

func openRegistry(conn *cli.ResolvedConnection, backends Backends, log *zap.Logger) (registry.Registry, error) {
	switch {
	case conn.Backend == cli.BackendHTTP:
		return srapi.New(conn.SRAPIConfig(log, "sr-wrapper/"+buildinfo.Get().Version))
	case conn.Backend == cli.BackendEtcd && backends.Etcd != nil:
		return backends.Etcd(*conn.Etcd, log)
	}
	return nil, fmt.Errorf("registry backend %q is not supported", conn.Backend)
}

// healthCheck runs the check beside the child and adds or removes the
// service as it passes or fails. The checker is built here, not during
// validation, because a command check must start its processes through
// the supervisor's Reaper.
func healthCheck(spec *health.Spec, env []string, keeper *heartbeat.Keeper, log *zap.Logger) supervisor.Companion {
	return func(ctx context.Context, reaper *signals.Reaper) {
		checker, err := spec.Checker(health.CommandOptions{Starter: reaper, Env: env, Logger: log})
		if err == nil {
			err = health.Run(ctx, health.Config{
				Checker:  checker,
				Timing:   spec.Timing,
				Logger:   log,
				OnChange: func(healthy bool, _ error) { keeper.SetHealthy(healthy) },
			})
		}
		if err != nil {
			log.Error("health check disabled: the service stays unregistered", zap.Error(err))
		}
	}
}
