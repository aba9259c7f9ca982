// Package etcdstore is sr-registry's store for any number of identical
// frontends: every piece of shared state (sessions, services,
// configuration, the heartbeat token chains, the events feed, the
// accounts' counts, identity tokens) lives in etcd, and a frontend holds
// only caches it can rebuild from etcd. It implements store.Store.
//
// The key layout, and how leases, revisions and transactions keep each
// promise of the cluster (a token issued anywhere works everywhere, one
// shared token chain, exactly one services.timeout event per expired
// session, event ids in commit order, exact limits, 503 when etcd has lost
// its quorum), are in docs/cluster.md. In short: a heartbeat is a
// compare-and-swap of the session's chain key, many heartbeats to one
// transaction; every frontend watches every chain key and times each
// session from its chain key's last revision; a session due is expired by
// one transaction that compares that revision, which only the first
// frontend wins; every other write of a tenant compares the tenant's meta
// key, which holds its counts and its event sequence.
//
// It is not a general etcd client and holds no consensus logic of its own:
// etcd decides every race.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Defaults and bounds.
const (
	// DefaultCallTimeout bounds every call to etcd when the configuration
	// gives none: a request whose etcd call does not finish in time is
	// answered 503, so that losing etcd's quorum never hangs a client.
	DefaultCallTimeout = 2 * time.Second

	schemaVersion = "1"

	// maxTxnKeys bounds the keys one transaction compares or writes,
	// below etcd's default --max-txn-ops of 128.
	maxTxnKeys = 120
	// maxServicesPerSession keeps a session's removal (one transaction
	// deleting each of its services) within maxTxnKeys.
	maxServicesPerSession = 100

	reconcileEvery = time.Minute
	compactEvery   = time.Minute
	pruneEvery     = time.Hour
)

// Config configures Open.
type Config struct {
	// Etcd is how to reach etcd; its Prefix is where the keys live (under
	// Prefix + "/registry"). Its CallTimeout, when set, bounds every etcd
	// call (default DefaultCallTimeout).
	Etcd etcdconf.Config
	// Store are the limits and the token lifetime.
	Store store.Options
	// Logger receives the store's logs; nil discards them.
	Logger *zap.Logger
	// NoCompaction leaves compacting etcd's history to etcd itself
	// (--auto-compaction-retention) instead of the frontends.
	NoCompaction bool
}

// Store is the etcd store. Open returns it at once; it connects and
// bootstraps in the background, answering ErrUnavailable until it is ready.
type Store struct {
	log         *zap.Logger
	cfg         etcdconf.Config
	opts        store.Options
	keys        keys
	callTimeout time.Duration
	tls         *tls.Config
	// cli is set by the bootstrap once it has connected (with a user, the
	// client authenticates when it is made); calls use it only once ready.
	cli *clientv3.Client

	// ready is closed once the schema is checked and the expiry watch
	// runs; bootErr is the last bootstrap failure, for Ready.
	ready   chan struct{}
	bootMu  sync.Mutex
	bootErr error

	metrics *store.Metrics
	// commitMutations and commitHeartbeats observe the write
	// transactions of mutations and of heartbeats.
	commitMutations, commitHeartbeats prometheus.Observer

	committers committers
	beats      *beats
	index      *index
	tokens     *tokens
	rates      *rates

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	bg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open checks cfg, creates the etcd client (which connects lazily) and
// starts the bootstrap: check or write the schema, read every chain key
// (sessions that expired while no frontend ran expire at once), watch
// them. Until that is done
// every call answers ErrUnavailable; an unreachable etcd is retried (and
// logged) until Close.
func Open(cfg Config) (*Store, error) {
	ec, err := cfg.Etcd.WithDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := ec.TLSConfig()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	callTimeout := cfg.Etcd.CallTimeout
	if callTimeout <= 0 {
		callTimeout = DefaultCallTimeout
	}
	metrics := cfg.Store.Metrics.OrDiscard()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		log:         log.With(zap.String("store", ec.String())),
		cfg:         ec,
		opts:        cfg.Store,
		keys:        keys{root: ec.Prefix + "/registry"},
		callTimeout: callTimeout,
		tls:         tc,
		ready:       make(chan struct{}),
		ctx:         ctx,
		cancel:      cancel,
	}
	s.metrics = metrics
	s.commitMutations = metrics.CommitDuration.WithLabelValues(store.CommitMutations)
	s.commitHeartbeats = metrics.CommitDuration.WithLabelValues(store.CommitHeartbeats)
	s.committers.init(s)
	s.index = newIndex(s)
	s.beats = newBeats(s)
	s.tokens = newTokens(s)
	s.rates = newRates()
	s.bg.Go(func() { s.bootstrap(cfg.NoCompaction) })
	return s, nil
}

// newClient makes the etcd client. Without a user it does not block (the
// connection is made by the first call and redone by later ones); with
// one it authenticates, within the dial timeout.
func newClient(ec etcdconf.Config, tc *tls.Config, log *zap.Logger) (*clientv3.Client, error) {
	scheme := "http://"
	if tc != nil {
		scheme = "https://"
	}
	eps := make([]string, len(ec.Endpoints))
	for i, ep := range ec.Endpoints {
		eps[i] = scheme + ep
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   eps,
		TLS:         tc,
		Username:    ec.Username,
		Password:    ec.Password,
		DialTimeout: ec.DialTimeout,
		// With keep-alive pings gRPC sets TCP_USER_TIMEOUT, so a
		// connection to a member whose host vanished is dropped in
		// seconds and calls go to the members that answer.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			// gRPC's default reconnection backoff grows to two minutes;
			// a frontend must notice at once that etcd is back.
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: ec.DialTimeout,
		})},
	})
}

// bootstrap runs until the store is ready (or closed), retrying with
// backoff, then starts the background loops.
func (s *Store) bootstrap(noCompaction bool) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	for attempt := 1; ; attempt++ {
		err := s.start()
		if err == nil {
			break
		}
		s.bootMu.Lock()
		s.bootErr = err
		s.bootMu.Unlock()
		wait := b.NextBackOff()
		s.log.Warn("etcd store not ready yet, retrying", zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return
		}
	}
	close(s.ready)
	s.log.Info("etcd store ready", zap.String("keys", s.keys.root))
	s.bg.Go(s.index.run)
	s.bg.Go(s.resyncLoop)
	s.bg.Go(s.pruneLoop)
	if !noCompaction {
		s.bg.Go(s.compactLoop)
	}
}

// start checks the schema, syncs the index and starts its watch from the
// revision the sync read, so that no heartbeat is missed in between.
func (s *Store) start() error {
	if s.cli == nil {
		cli, err := newClient(s.cfg, s.tls, s.log)
		if err != nil {
			return fmt.Errorf("connect to etcd: %w", err)
		}
		s.cli = cli
	}
	ctx, cancel := s.call(s.ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.keys.schema()), "=", 0)).
		Then(clientv3.OpPut(s.keys.schema(), schemaVersion)).
		Else(clientv3.OpGet(s.keys.schema())).Commit()
	if err != nil {
		return s.fail("check the schema", err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 && string(kvs[0].Value) != schemaVersion {
			return fmt.Errorf("schema version %q under %s, this build reads %q", kvs[0].Value, s.keys.root, schemaVersion)
		}
	}
	rev, err := s.sync()
	if err != nil {
		return err
	}
	w := s.startWatch(rev + 1)
	s.bg.Go(func() { s.watchLoop(w) })
	return nil
}

// Ready implements store.Store: nil once bootstrapped and while etcd
// answers a linearizable read in time.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.cli.Get(ctx, s.keys.schema()); err != nil {
		return s.fail("read from etcd", err)
	}
	return nil
}

// waitReady answers ErrUnavailable (with the last bootstrap error) until
// the store is bootstrapped.
func (s *Store) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-s.ctx.Done():
		return errClosed
	default:
	}
	s.bootMu.Lock()
	err := s.bootErr
	s.bootMu.Unlock()
	if err == nil {
		err = errors.New("connecting to etcd")
	}
	return store.Unavailable(fmt.Errorf("the etcd store is not ready: %w", err))
}

var errClosed = store.Unavailable(errors.New("the store is closed: the server is shutting down"))

// Close stops the background work and closes the client. Sessions are
// not ended: the other frontends time them.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.bg.Wait()
		if s.cli == nil {
			return
		}
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.closeErr = fmt.Errorf("close etcd client: %w", err)
		}
	})
	return s.closeErr
}

// call bounds one etcd call by the call timeout and by Close.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// fail wraps an error of an etcd call made while doing: when etcd did not
// answer (in time), or answered that it cannot serve now, it is
// store.ErrUnavailable, a 503 that clients retry; when etcd refused the
// request itself (too many operations, a key given twice: our bug) it is
// a failure.
func (s *Store) fail(doing string, err error) error {
	if s.ctx.Err() != nil {
		return errClosed
	}
	err = fmt.Errorf("%s: %w", doing, err)
	switch status.Code(unwrapGRPC(err)) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Internal:
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return store.Unavailable(fmt.Errorf("%w (etcd did not answer within %s: is its quorum lost?)", err, s.callTimeout))
	}
	return store.Unavailable(err)
}

// unwrapGRPC finds a gRPC status error in err's chain, or returns err.
func unwrapGRPC(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := status.FromError(e); ok {
			return e
		}
	}
	return err
}

// keys is the key layout of docs/cluster.md.
type keys struct{ root string }

func (k keys) schema() string                   { return k.root + "/schema" }
func (k keys) compact() string                  { return k.root + "/compact" }
func (k keys) index(tenant string) string       { return k.root + "/index/" + tenant }
func (k keys) indexPrefix() string              { return k.root + "/index/" }
func (k keys) tenant(tenant string) string      { return k.root + "/tenants/" + tenant + "/" }
func (k keys) meta(tenant string) string        { return k.tenant(tenant) + "meta" }
func (k keys) sessions(tenant string) string    { return k.tenant(tenant) + "sessions/" }
func (k keys) session(tenant, id string) string { return k.sessions(tenant) + id }
func (k keys) beatRoot() string                 { return k.root + "/beats/" }
func (k keys) beats(tenant string) string       { return k.beatRoot() + tenant + "/" }
func (k keys) beat(tenant, id string) string    { return k.beats(tenant) + id }
func (k keys) services(tenant string) string    { return k.tenant(tenant) + "services/" }
func (k keys) service(tenant, id string) string { return k.services(tenant) + id }
func (k keys) configs(tenant string) string     { return k.tenant(tenant) + "config/" }
func (k keys) config(tenant, id string) string  { return k.configs(tenant) + id }
func (k keys) events(tenant string) string      { return k.tenant(tenant) + "events/" }
func (k keys) token(hash string) string         { return k.root + "/tokens/" + hash }

// rates is the prefix of a tenant's request counts in the rate-limit
// window that starts at start; rate is one frontend's key there.
func (k keys) rates(start time.Time, tenant string) string {
	return fmt.Sprintf("%s/rates/%013d/%s/", k.root, start.UnixMilli(), tenant)
}
func (k keys) rate(start time.Time, tenant, frontend string) string {
	return k.rates(start, tenant) + frontend
}

// parseBeat splits a chain key into tenant and session id.
func (k keys) parseBeat(key string) (tenant, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, k.beatRoot())
	if !ok {
		return "", "", false
	}
	tenant, id, ok = strings.Cut(rest, "/")
	return tenant, id, ok && tenant != "" && id != ""
}
