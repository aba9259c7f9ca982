package etcdstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keepAliveStreams is how many LeaseKeepAlive streams a frontend keeps
// open. etcd answers each stream's requests one after another, so several
// streams let renewals of many sessions proceed in parallel.
const keepAliveStreams = 32

// keeper renews leases over a few long-lived LeaseKeepAlive streams, on
// which requests are pipelined: clientv3's KeepAliveOnce opens a new
// stream for every renewal, which costs more than the renewal itself.
type keeper struct {
	s       *Store
	streams [keepAliveStreams]*kaStream
	next    atomic.Uint32
}

type kaStream struct {
	k      *keeper
	mu     sync.Mutex
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
	gen    uint64
	// waiting are the callers of each lease, in the order their requests
	// were sent: etcd answers a stream's requests in order.
	waiting map[int64][]chan kaResult
}

type kaResult struct {
	ttl int64
	err error
}

var errStreamBroken = errors.New("lease keep-alive stream broken")

func newKeeper(s *Store) *keeper {
	k := &keeper{s: s}
	for i := range k.streams {
		k.streams[i] = &kaStream{k: k, waiting: map[int64][]chan kaResult{}}
	}
	return k
}

// keepAlive renews the lease and returns its TTL, or a TTL <= 0 when the
// lease does not exist (expired or revoked).
func (k *keeper) keepAlive(ctx context.Context, lease int64) (int64, error) {
	st := k.streams[k.next.Add(1)%keepAliveStreams]
	ch := make(chan kaResult, 1)
	if err := st.send(lease, ch); err != nil {
		return 0, err
	}
	select {
	case r := <-ch:
		return r.ttl, r.err
	case <-ctx.Done():
		return 0, k.s.fail("keep the session's lease alive", ctx.Err())
	}
}

func (k *keeper) close() {
	for _, st := range k.streams {
		st.mu.Lock()
		st.breakLocked(errClosed)
		st.mu.Unlock()
	}
}

func (st *kaStream) send(lease int64, ch chan kaResult) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stream == nil {
		// Without a leader the member ends the stream, so that renewals
		// fail fast instead of waiting for a quorum that may not come.
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(st.k.s.ctx))
		stream, err := pb.NewLeaseClient(st.k.s.cli.ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			cancel()
			return st.k.s.fail("open a lease keep-alive stream", err)
		}
		st.stream, st.cancel = stream, cancel
		st.gen++
		go st.recv(stream, st.gen)
	}
	st.waiting[lease] = append(st.waiting[lease], ch)
	if err := st.stream.Send(&pb.LeaseKeepAliveRequest{ID: lease}); err != nil {
		st.breakLocked(err)
		return st.k.s.fail("keep the session's lease alive", err)
	}
	return nil
}

func (st *kaStream) recv(stream pb.Lease_LeaseKeepAliveClient, gen uint64) {
	for {
		resp, err := stream.Recv()
		st.mu.Lock()
		if st.gen != gen {
			st.mu.Unlock()
			return
		}
		if err != nil {
			st.breakLocked(err)
			st.mu.Unlock()
			return
		}
		if q := st.waiting[resp.ID]; len(q) > 0 {
			q[0] <- kaResult{ttl: resp.TTL}
			if len(q) == 1 {
				delete(st.waiting, resp.ID)
			} else {
				st.waiting[resp.ID] = q[1:]
			}
		}
		st.mu.Unlock()
	}
}

// breakLocked ends the stream and fails every caller waiting on it; the
// next renewal opens a new one. st.mu must be held.
func (st *kaStream) breakLocked(cause error) {
	if st.cancel != nil {
		st.cancel()
	}
	st.stream, st.cancel = nil, nil
	st.gen++
	err := st.k.s.fail("keep the session's lease alive", errors.Join(errStreamBroken, cause))
	for id, q := range st.waiting {
		for _, ch := range q {
			ch <- kaResult{err: err}
		}
		delete(st.waiting, id)
	}
}
