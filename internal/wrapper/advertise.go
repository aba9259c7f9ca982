package wrapper

import (
	"context"
	"fmt"
	"maps"

	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/hostaddr"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
)

// advertising is a registry whose sessions add the address that
// --advertise-ip selects to the service's metadata, looked up at each
// registration: the network may come up after the wrapper, and the address
// may change between sessions. A lookup that finds nothing fails the
// registration with an error that is not permanent, so the Keeper retries
// it with its backoff and never registers the service without its address.
type advertising struct {
	registry.Registry
	sel hostaddr.Selector
}

// advertise returns reg itself when sel is zero (no --advertise-ip, or an
// explicit --metadata ip=...).
func advertise(reg registry.Registry, sel hostaddr.Selector) registry.Registry {
	if sel.IsZero() {
		return reg
	}
	return advertising{Registry: reg, sel: sel}
}

func (a advertising) CreateSession(ctx context.Context, opts registry.SessionOptions) (registry.Session, error) {
	sess, err := a.Registry.CreateSession(ctx, opts)
	if err != nil {
		return nil, err
	}
	return advertisingSession{Session: sess, sel: a.sel}, nil
}

type advertisingSession struct {
	registry.Session
	sel hostaddr.Selector
}

func (s advertisingSession) Register(ctx context.Context, svc registry.Service) error {
	addr, err := s.sel.Resolve()
	if err != nil {
		return fmt.Errorf("--advertise-ip: %w", err)
	}
	md := maps.Clone(svc.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	md[cli.MetadataIP] = addr.String()
	svc.Metadata = md
	return s.Session.Register(ctx, svc)
}
