package etcdstore

import (
	"errors"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// compactLoop compacts etcd's history: heartbeats rewrite chain keys all
// the time, and nothing here reads old revisions. Every frontend runs it;
// each interval one of them wins a compare-and-swap on the version of the
// compact key and compacts to the revision it won the previous interval
// with, so history one interval deep is kept (a watch that falls further
// behind reconciles). This is the Kubernetes API server's scheme.
func (s *Store) compactLoop() {
	var version, rev int64 // the compact key's version we expect, and the revision to compact to
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(compactEvery):
		}
		ctx, cancel := s.call(s.ctx)
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(s.keys.compact()), "=", version)).
			Then(clientv3.OpPut(s.keys.compact(), strconv.FormatInt(rev, 10))).
			Else(clientv3.OpGet(s.keys.compact())).Commit()
		cancel()
		if err != nil {
			s.logBackground("compact: claim the interval", err)
			continue
		}
		if !resp.Succeeded {
			// Another frontend compacts this interval.
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				version = kvs[0].Version
			}
			rev = resp.Header.Revision
			continue
		}
		version++
		if rev > 0 {
			ctx, cancel := s.call(s.ctx)
			_, err := s.cli.Compact(ctx, rev)
			cancel()
			if status.Code(unwrapGRPC(err)) == codes.PermissionDenied {
				s.log.Warn("cannot compact etcd's history (the etcd user may not): let etcd do it with --auto-compaction-retention", zap.Error(err))
				return
			}
			if err != nil {
				s.logBackground("compact", err)
			} else {
				s.log.Debug("compacted etcd history", zap.Int64("revision", rev))
			}
		}
		rev = resp.Header.Revision
	}
}

// pruneLoop deletes each tenant's events older than the retention, hourly.
// Any number of frontends may do it at once: deleting what is gone is
// harmless.
func (s *Store) pruneLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(pruneEvery):
		}
		s.tokens.purge(time.Now())
		if err := s.pruneEvents(time.Now().Add(-store.EventRetention).UnixMilli()); err != nil {
			s.logBackground("prune events", err)
		}
	}
}

// pruneEvents deletes every tenant's events older than cutoffMS.
func (s *Store) pruneEvents(cutoffMS int64) error {
	tenants, err := s.tenants()
	if err != nil {
		return err
	}
	var n int64
	for _, t := range tenants {
		base := s.keys.events(t)
		ctx, cancel := s.call(s.ctx)
		resp, err := s.cli.Delete(ctx, base, clientv3.WithRange(base+store.EventIDPrefix(cutoffMS)))
		cancel()
		if err != nil {
			return s.fail("prune the events of tenant "+t, err)
		}
		n += resp.Deleted
	}
	if n > 0 {
		s.log.Info("pruned old events", zap.Int64("events", n), zap.Duration("retention", store.EventRetention))
	}
	return nil
}

func (s *Store) logBackground(doing string, err error) {
	if !errors.Is(err, errClosed) {
		s.log.Warn(doing, zap.Error(err))
	}
}
