// Package etcd is the etcd v3 backend of the registry interface, for users
// who already run etcd or need a registry that survives the loss of a host.
//
// A session is an etcd lease whose TTL is the heartbeat timeout (whole
// seconds, rounded up). Its id is the lease id in 16 hexadecimal digits, as
// etcdctl prints it (`etcdctl lease timetolive <id>` takes it as is). Keys,
// under a prefix (default /sr):
//
//	<prefix>/sessions/<lease id>  the session: {"id","heartbeat_timeout","metadata","last_seen"}
//	                              as the HTTP API's session object (last_seen is always null:
//	                              keep-alives write nothing)
//	<prefix>/services/<id>        the service: {"id","session_id","tags","metadata"},
//	                              the HTTP API's service object
//
// Both are attached to the lease, so they vanish with it: at once when the
// session is closed (the lease is revoked), after the TTL when heartbeats
// stop. Registration is a transaction that writes only when the key is
// absent or already held by the same lease, so a live service of another
// session is never overwritten. A heartbeat is one lease keep-alive.
//
// Note that etcd gives every lease a full new TTL when a member becomes
// leader, including after the whole cluster was down: a session whose etcd
// was stopped for longer than its TTL is still alive when etcd comes back,
// and heartbeats simply succeed again.
//
// It is not a general etcd client, and it does not retry: the heartbeat
// loop decides when to try again. Errors wrap registry.ErrSessionLost (the
// lease is gone), registry.ErrServiceExists (another lease holds the id) or
// registry.ErrPermanent (bad credentials, missing permissions, a request
// etcd rejects); anything else, such as an unreachable cluster, is
// transient.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Registry is an etcd cluster holding sessions. Its methods are safe for
// concurrent use.
type Registry struct {
	cfg  etcdconf.Config
	tls  *tls.Config
	name string

	// connect is a one-slot semaphore guarding cli and closed: a channel
	// rather than a mutex so that waiting for it honours the caller's
	// context while another call is connecting.
	connect   chan struct{}
	cli       *clientv3.Client
	cancelCli context.CancelFunc // ends cli's own context
	closed    bool
}

var _ registry.Registry = (*Registry)(nil)

// ErrClosed is returned by calls made after Registry.Close. It wraps
// registry.ErrPermanent.
var ErrClosed = fmt.Errorf("etcd registry closed: %w", registry.ErrPermanent)

// New checks cfg, loads its TLS files and returns a Registry. It does no
// network I/O, so that the wrapper can start its child while etcd is down:
// the first call that needs etcd connects (and authenticates), within that
// call's context and cfg.DialTimeout, and a failed connection is tried
// again by the next call.
func New(cfg etcdconf.Config) (*Registry, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	return &Registry{cfg: cfg, tls: tc, name: cfg.String(), connect: make(chan struct{}, 1)}, nil
}

// String returns the registry in --registry URL form, without credentials.
func (r *Registry) String() string { return r.name }

// ServiceKey returns the key of service id under prefix.
func ServiceKey(prefix, id string) string { return prefix + "/services/" + id }

// SessionKey returns the key of the session with id sessionID under
// prefix.
func SessionKey(prefix, sessionID string) string { return prefix + "/sessions/" + sessionID }

// Close closes the connection to etcd. Sessions are not ended: their
// leases expire after their TTL.
func (r *Registry) Close() error {
	r.connect <- struct{}{}
	defer func() { <-r.connect }()
	r.closed = true
	if r.cli == nil {
		return nil
	}
	err := r.cli.Close()
	r.cancelCli()
	r.cli = nil
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd client of %s: %w", r.name, err)
	}
	return nil
}

// client returns the etcd client, connecting first if need be.
func (r *Registry) client(ctx context.Context) (*clientv3.Client, error) {
	select {
	case r.connect <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("connect to %s: %w", r.name, context.Cause(ctx))
	}
	defer func() { <-r.connect }()
	if r.closed {
		return nil, ErrClosed
	}
	if r.cli != nil {
		return r.cli, nil
	}
	scheme := "http://"
	if r.tls != nil {
		// An explicit https:// makes the client use TLS for every
		// endpoint; a bare host:port would leave it to guesswork.
		scheme = "https://"
	}
	eps := make([]string, len(r.cfg.Endpoints))
	for i, ep := range r.cfg.Endpoints {
		eps[i] = scheme + ep
	}
	// clientv3.New authenticates synchronously when a user is set, bounded
	// by DialTimeout alone: the client's own context, cancelled when ctx
	// ends, keeps it within the caller's context too.
	base, cancelBase := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancelBase)
	cli, err := clientv3.New(clientv3.Config{
		Context:     base,
		Endpoints:   eps,
		TLS:         r.tls,
		Username:    r.cfg.Username,
		Password:    r.cfg.Password,
		DialTimeout: r.cfg.DialTimeout,
		// The pings themselves matter little (etcd only allows them
		// while a call is in flight, and at most every 5 s); what
		// matters is that gRPC then sets TCP_USER_TIMEOUT, so that the
		// connection to a member whose host vanished is dropped in
		// seconds instead of when TCP gives up, and later calls go to
		// the members that answer.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               r.cfg.Logger.Named("etcd-client").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			// gRPC's default reconnection backoff grows to two minutes
			// while etcd is down, so a session whose etcd came back could
			// expire before the client even tried again (etcd gives
			// leases a fresh TTL when it restarts). Trying every second
			// costs nothing and keeps the session.
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: r.cfg.DialTimeout,
		})},
	})
	if !stop() {
		if cli != nil {
			_ = cli.Close()
		}
		return nil, fmt.Errorf("connect to %s: %w", r.name, context.Cause(ctx))
	}
	if err != nil {
		cancelBase()
		return nil, classify(fmt.Sprintf("connect to %s", r.name), err)
	}
	r.cli, r.cancelCli = cli, cancelBase
	return cli, nil
}
