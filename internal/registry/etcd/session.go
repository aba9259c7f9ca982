package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// revokeTimeout bounds the clean-up revoke of a half-created session: if
// it cannot be revoked quickly, the lease expires by itself anyway.
const revokeTimeout = 2 * time.Second

// session is one lease. Nothing of it changes after CreateSession and
// the Registry is safe for concurrent use, so it needs no lock of its own.
type session struct {
	r     *Registry
	lease clientv3.LeaseID
	id    string
	ttl   time.Duration
}

var _ registry.Session = (*session)(nil)

// LeaseIDString formats a lease id as a session id: 16 hexadecimal digits,
// as etcdctl prints lease ids.
func LeaseIDString(id clientv3.LeaseID) string { return fmt.Sprintf("%016x", uint64(id)) }

// CreateSession grants a lease with TTL opts.TTL rounded up to whole
// seconds (etcd may grant more if its minimum TTL is larger; TTL() tells)
// and writes the session's metadata under it.
func (r *Registry) CreateSession(ctx context.Context, opts registry.SessionOptions) (registry.Session, error) {
	if opts.TTL <= 0 {
		return nil, fmt.Errorf("create session in %s: TTL must be positive, got %v: %w", r.name, opts.TTL, registry.ErrPermanent)
	}
	if err := opts.ValidateMetadata(); err != nil {
		return nil, fmt.Errorf("create session in %s: %w: %w", r.name, err, registry.ErrPermanent)
	}
	cli, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	seconds := int64((opts.TTL + time.Second - 1) / time.Second)

	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	grant, err := cli.Grant(cctx, seconds)
	if err != nil {
		return nil, classify(fmt.Sprintf("create session in %s: grant lease of %ds", r.name, seconds), err)
	}
	s := &session{r: r, lease: grant.ID, id: LeaseIDString(grant.ID), ttl: time.Duration(grant.TTL) * time.Second}

	value, err := json.Marshal(api.Session{
		ID:               s.id,
		HeartbeatTimeout: int(grant.TTL),
		Metadata:         nonNilMap(opts.Metadata),
	})
	if err != nil {
		return nil, fmt.Errorf("create session in %s: encode session: %w", r.name, err)
	}
	key := SessionKey(r.cfg.Prefix, s.id)
	if _, err := cli.Put(cctx, key, string(value), clientv3.WithLease(grant.ID)); err != nil {
		// Without its metadata the session is of no use; do not leave it
		// to linger for a TTL. Detached from ctx, which may be what ended.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
		_, _ = cli.Revoke(rctx, grant.ID)
		rcancel()
		return nil, classify(fmt.Sprintf("create session in %s: put %s", r.name, key), err)
	}
	r.cfg.Logger.Debug("etcd session created", zap.String("session", s.id), zap.Duration("ttl", s.ttl), zap.String("registry", r.name))
	return s, nil
}

// ID returns the lease id in 16 hexadecimal digits.
func (s *session) ID() string { return s.id }

// TTL returns the TTL etcd granted.
func (s *session) TTL() time.Duration { return s.ttl }

// Heartbeat sends one lease keep-alive. While no member answers, the etcd
// client keeps trying until the context (bounded by the TTL and
// the Config's CallTimeout) ends; the error is then transient.
func (s *session) Heartbeat(ctx context.Context) error {
	cli, err := s.r.client(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.r.cfg.CallTimeout, s.ttl))
	defer cancel()
	if _, err := cli.KeepAliveOnce(ctx, s.lease); err != nil {
		return classify(fmt.Sprintf("heartbeat session %s in %s", s.id, s.r.name), err)
	}
	return nil
}

// Register writes the service under the session's lease, unless another
// lease holds its key. One transaction: create the key if it does not
// exist; else overwrite it if this lease holds it; else read it, to name
// the holder in the error.
func (s *session) Register(ctx context.Context, svc registry.Service) error {
	what := fmt.Sprintf("register service %q in session %s in %s", svc.ID, s.id, s.r.name)
	if err := svc.Validate(); err != nil {
		return fmt.Errorf("%s: %w: %w", what, err, registry.ErrPermanent)
	}
	value, err := json.Marshal(api.Service{
		ID:        svc.ID,
		SessionID: s.id,
		Tags:      nonNilSlice(svc.Tags),
		Metadata:  nonNilMap(svc.Metadata),
	})
	if err != nil {
		return fmt.Errorf("%s: encode service: %w", what, err)
	}
	cli, err := s.r.client(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.CallTimeout)
	defer cancel()

	key := ServiceKey(s.r.cfg.Prefix, svc.ID)
	put := clientv3.OpPut(key, string(value), clientv3.WithLease(s.lease))
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(put).
		Else(clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(key), "=", s.lease)},
			[]clientv3.Op{put},
			[]clientv3.Op{clientv3.OpGet(key)},
		)).
		Commit()
	if err != nil {
		return classify(what, err)
	}
	if resp.Succeeded {
		return nil
	}
	inner := resp.Responses[0].GetResponseTxn()
	if inner.Succeeded {
		return nil
	}
	holder := "another lease"
	if kvs := inner.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
		if kvs[0].Lease == 0 {
			// Nothing will ever remove such a key by itself.
			holder = "a key without a lease (written by hand? delete it: etcdctl del " + key + ")"
		} else {
			holder = "lease " + LeaseIDString(clientv3.LeaseID(kvs[0].Lease))
		}
	}
	return fmt.Errorf("%s: %s is held by %s: %w", what, key, holder, registry.ErrServiceExists)
}

// Deregister deletes the service's key if this session's lease holds it;
// a key that is absent or held by another lease is left alone.
func (s *session) Deregister(ctx context.Context, serviceID string) error {
	cli, err := s.r.client(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.CallTimeout)
	defer cancel()
	key := ServiceKey(s.r.cfg.Prefix, serviceID)
	_, err = cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", s.lease)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return classify(fmt.Sprintf("deregister service %q of session %s in %s", serviceID, s.id, s.r.name), err)
	}
	return nil
}

// Close revokes the lease, which deletes every key attached to it in the
// same step. A lease that is already gone is not an error.
func (s *session) Close(ctx context.Context) error {
	cli, err := s.r.client(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.CallTimeout)
	defer cancel()
	if _, err := cli.Revoke(ctx, s.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return classify(fmt.Sprintf("close session %s in %s: revoke lease", s.id, s.r.name), err)
	}
	s.r.cfg.Logger.Debug("etcd session closed", zap.String("session", s.id), zap.String("registry", s.r.name))
	return nil
}

// classify adds what was being done to err, and the registry error that
// tells the caller what to do about it.
func classify(what string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("%s: %w: %w", what, err, registry.ErrSessionLost)
	case permanent(err):
		return fmt.Errorf("%s: %w: %w", what, err, registry.ErrPermanent)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

// permanent reports whether etcd refused the request itself, so that
// sending it again cannot help: bad credentials, missing permissions, a
// malformed or oversized request.
func permanent(err error) bool {
	for _, e := range []error{
		// Refused for good until an operator changes etcd's auth setup.
		rpctypes.ErrUserNotFound,
		rpctypes.ErrRoleNotGranted,
		rpctypes.ErrPermissionNotGranted,
		rpctypes.ErrRootUserNotExist,
		rpctypes.ErrRootRoleNotExist,
		rpctypes.ErrLeaseTTLTooLarge,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	// The client refreshes its token and retries by itself on this one.
	if errors.Is(err, rpctypes.ErrAuthOldRevision) {
		return false
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unimplemented:
		// InvalidArgument covers a wrong password (ErrAuthFailed), a
		// missing user name while auth is on (ErrUserEmpty) and requests
		// etcd cannot take (too large, too many operations).
		return true
	}
	return false
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
