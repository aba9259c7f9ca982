// Package wrapper wires a validated sr-wrapper command line into a run: it
// opens the registry backend, builds the heartbeat Keeper and the child's
// environment, and hands them to the supervisor. It holds no logic of its
// own beyond that assembly; cmd/sr-wrapper calls Run.
package wrapper

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/heartbeat"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcd"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/supervisor"
)

// ServiceIDEnv is set in the child's environment to the service id.
const ServiceIDEnv = "SR_SERVICE_ID"

// Run runs the wrapped command and returns the wrapper's exit status.
func Run(ctx context.Context, cfg *cli.WrapperConfig, log *zap.Logger) int {
	svcLog := log.With(zap.String("service", cfg.Service.ID))
	reg, err := openRegistry(cfg.Connection, log)
	if err != nil {
		// Validation has checked what can be checked; this is rare (an
		// unreadable certificate file, say). Fail before the child starts.
		svcLog.Error("cannot set up the registry backend", zap.Error(err))
		return cli.ExitUsage
	}
	defer func() { _ = reg.Close() }()

	keeper := heartbeat.New(heartbeat.Config{
		Registry: reg,
		Service: registry.Service{
			ID:       cfg.Service.ID,
			Tags:     cfg.Service.Tags,
			Metadata: cfg.Service.Metadata,
		},
		Session:        registry.SessionOptions{TTL: cfg.TTL, Metadata: cfg.SessionMetadata},
		AbortOnFailure: cfg.AbortOnFailure,
		Retries:        cfg.Retries,
		Logger:         log,
	})

	return supervisor.Run(ctx, supervisor.Config{
		Child: supervisor.ChildSpec{
			Argv: cfg.Command,
			Env:  childEnv(os.Environ(), cfg.Service.ID),
		},
		Registration:  keeper,
		StopSignal:    cfg.StopSignal,
		StopTimeout:   cfg.StopTimeout,
		DrainDelay:    cfg.DrainDelay,
		SignalGroup:   cfg.SignalGroup,
		Subreaper:     cfg.Subreaper,
		AbortExitCode: cli.ExitAbort,
		Logger:        svcLog,
	})
}

// childEnv is the wrapper's environment without its secrets, plus the
// service id: the child must never see the registry's API key.
func childEnv(env []string, serviceID string) []string {
	secret := map[string]bool{ServiceIDEnv: true}
	for _, name := range cli.SecretEnv() {
		secret[name] = true
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !secret[name] {
			out = append(out, kv)
		}
	}
	return append(out, ServiceIDEnv+"="+serviceID)
}

func openRegistry(conn *cli.ResolvedConnection, log *zap.Logger) (registry.Registry, error) {
	switch conn.Backend {
	case cli.BackendHTTP:
		return srapi.New(conn.SRAPIConfig(log, "sr-wrapper/"+buildinfo.Get().Version))
	case cli.BackendEtcd:
		cfg := *conn.Etcd
		cfg.Logger = log
		return etcd.New(cfg)
	}
	return nil, fmt.Errorf("registry backend %q is not supported", conn.Backend)
}
