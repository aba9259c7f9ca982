package main_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcd"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const etcdPrefix = "/sr"

// etcdFlags are the wrapper's usual flags for service id in cluster c.
func etcdFlags(c *etcdtest.Cluster, id string) []string {
	return []string{
		"--registry", c.URL(etcdPrefix),
		"--id", id,
		"--interval", strconv.Itoa(int(ttl / time.Second)),
		"--stop-timeout", "1s",
		"--log-format", "json",
	}
}

// etcdKey reads key; ok is false when it is absent.
func etcdKey(cli *clientv3.Client, key string) (value []byte, lease clientv3.LeaseID, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, 0, false, err
	}
	return resp.Kvs[0].Value, clientv3.LeaseID(resp.Kvs[0].Lease), true, nil
}

// etcdPresent reports whether the service's key exists.
func etcdPresent(cli *clientv3.Client, id string) func() (bool, error) {
	return func() (bool, error) {
		_, _, ok, err := etcdKey(cli, etcd.ServiceKey(etcdPrefix, id))
		return ok, err
	}
}

// leaseOfSession parses a session id of the etcd backend.
func leaseOfSession(t *testing.T, session string) clientv3.LeaseID {
	t.Helper()
	n, err := strconv.ParseUint(session, 16, 64)
	if err != nil || len(session) != 16 {
		t.Fatalf("session id %q is not a lease id in 16 hexadecimal digits", session)
	}
	return clientv3.LeaseID(n)
}

// TestEtcdServiceVisibleWithLeaseAndGoneAtExit: the service is the API's
// JSON object at /sr/services/<id>, bound to the session's lease, and it
// is gone right after the child's death (best of three within 100 ms, and
// always by the time the wrapper has exited).
func TestEtcdServiceVisibleWithLeaseAndGoneAtExit(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartSingle(t)
	cli := c.Client()

	best := time.Hour
	for attempt := range 3 {
		id := "etcd-web-" + strconv.Itoa(attempt)
		flags := append(etcdFlags(c, id), "--interval", "30", "-t", "web,http", "-m", "port=8080",
			"--session-metadata", "host=h1")
		w := startWrapper(t, cmdline(flags, fakeproc("--ready")...))
		child := w.ready()
		session := w.registered()
		lease := leaseOfSession(t, session)

		value, got, ok, err := etcdKey(cli, etcd.ServiceKey(etcdPrefix, id))
		if err != nil || !ok {
			t.Fatalf("service key: %v, present %v", err, ok)
		}
		if got != lease {
			t.Fatalf("service key bound to lease %x, want the session's %x", got, lease)
		}
		var svc api.Service
		if err := json.Unmarshal(value, &svc); err != nil {
			t.Fatalf("service value %s: %v", value, err)
		}
		want := api.Service{ID: id, SessionID: session, Tags: []string{"web", "http"}, Metadata: map[string]string{"port": "8080"}}
		if !reflect.DeepEqual(svc, want) {
			t.Fatalf("service value %s, want %+v", value, want)
		}
		value, got, ok, err = etcdKey(cli, etcd.SessionKey(etcdPrefix, session))
		var sess api.Session
		if err != nil || !ok || got != lease || json.Unmarshal(value, &sess) != nil ||
			sess.ID != session || sess.HeartbeatTimeout != 30 || sess.Metadata["host"] != "h1" {
			t.Fatalf("session key: %s (lease %x), %v; want the session with timeout 30 and host=h1 under lease %x", value, got, err, lease)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ttlResp, err := cli.TimeToLive(ctx, lease)
		cancel()
		if err != nil || ttlResp.GrantedTTL != 30 || ttlResp.TTL <= 0 {
			t.Fatalf("lease %x: %+v, %v; want a live lease of 30 s", lease, ttlResp, err)
		}

		best = min(best, killChildAndMeasure(t, w, child, etcdPresent(cli, id)))
		if _, _, ok, err := etcdKey(cli, etcd.SessionKey(etcdPrefix, session)); err != nil || ok {
			t.Fatalf("session key still there after the wrapper exited (%v)", err)
		}
		if best < deregistrationBudget {
			break
		}
	}
	if best >= deregistrationBudget {
		t.Fatalf("best of three: service gone %s after the child's death; want under %s", best, deregistrationBudget)
	}
}

// TestEtcdServiceExpiresWhenTheWrapperIsKilled: kill -9 revokes nothing;
// the key goes when the lease's TTL runs out.
func TestEtcdServiceExpiresWhenTheWrapperIsKilled(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartSingle(t)
	cli := c.Client()
	w := startWrapper(t, cmdline(etcdFlags(c, "etcd-crash"), fakeproc("--ready")...))
	child := w.ready()
	w.registered()

	killed := time.Now()
	w.stop(syscall.SIGKILL)
	_ = syscall.Kill(child, syscall.SIGKILL)
	if ok, err := etcdPresent(cli, "etcd-crash")(); err != nil || !ok {
		t.Fatalf("the key went at once (%v); a killed wrapper cannot revoke its lease", err)
	}
	testsupport.EventuallyTrue(t, ttl+3*time.Second, "service key expired", func() bool {
		ok, err := etcdPresent(cli, "etcd-crash")()
		return err == nil && !ok
	})
	t.Logf("service key gone %s after the wrapper was killed (TTL %s)", time.Since(killed).Round(time.Millisecond), ttl)
}

// stayedPresent polls the service's key for d and fails the test if it
// is ever absent. A lease refreshed by an election or a restart lives one
// TTL without heartbeats; two TTLs show the heartbeats themselves.
//
// A read that fails proves nothing either way, so reads may fail for a
// moment (a member just elected, a connection re-established), but not
// for a whole TTL in a row, in which the lease could expire and the
// service come back unseen, and not every time.
func stayedPresent(t *testing.T, cli *clientv3.Client, id string, d time.Duration) {
	t.Helper()
	const grace = ttl
	start := time.Now()
	lastRead, reads := start, 0
	for time.Since(start) < d {
		ok, err := etcdPresent(cli, id)()
		switch {
		case err == nil && !ok:
			t.Fatalf("service %s vanished", id)
		case err == nil:
			lastRead = time.Now()
			reads++
		case time.Since(lastRead) > grace:
			t.Fatalf("service %s: no read succeeded for %s: %v", id, time.Since(lastRead).Round(time.Millisecond), err)
		}
		time.Sleep(50 * time.Millisecond) // polling a state over a window
	}
	if reads == 0 {
		t.Fatalf("service %s: no read succeeded in %s", id, d)
	}
}

// TestEtcdStoppedLongerThanTTLAndRestarted: etcd down for longer than the
// session's TTL and back on the same data dir; the service is kept (or
// registered again) without any action, and keeps being heartbeated.
func TestEtcdStoppedLongerThanTTLAndRestarted(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartSingle(t)
	w := startWrapper(t, cmdline(etcdFlags(c, "etcd-outage"), fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
	w.ready()
	w.registered()

	c.Stop(0)
	w.waitLog(2*ttl+eventWait, "no heartbeat got through within the session timeout; the session has probably expired, and will be replaced as soon as the registry says so")
	from := w.stderr.Len()
	restarted := time.Now()
	c.Restart(0)
	cli := c.Client()
	// The old session kept, or a new one: either way heartbeats again.
	if _, err := w.stderr.waitFrom(from, recoveryWait, func(l line) bool {
		return l.Msg() == "heartbeat recovered" || l.Msg() == "service registered"
	}); err != nil {
		t.Fatalf("heartbeats again after the restart: %v", err)
	}
	t.Logf("heartbeating again %s after etcd's restart", time.Since(restarted).Round(time.Millisecond))
	stayedPresent(t, cli, "etcd-outage", 2*ttl)
	if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 || w.exited() {
		t.Fatalf("etcd's outage reached the child: %v", got)
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if ok, err := etcdPresent(cli, "etcd-outage")(); err != nil || ok {
		t.Fatalf("service key still there after the wrapper exited (%v)", err)
	}
}

// TestEtcdThreeMembersOneStopped: with one member of three stopped (the
// leader, so that an election happens too), a running wrapper keeps its
// service and a new one registers.
func TestEtcdThreeMembersOneStopped(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	cli := c.Client()
	a := startWrapper(t, cmdline(etcdFlags(c, "etcd-a"), fakeproc("--ready")...))
	a.ready()
	a.registered()

	leader := leaderIndex(t, c, cli)
	c.Stop(leader)
	t.Logf("stopped member %d, the leader", leader)

	b := startWrapper(t, cmdline(etcdFlags(c, "etcd-b"), fakeproc("--ready")...))
	b.ready()
	b.waitLog(recoveryWait, "service registered")
	stayedPresent(t, cli, "etcd-a", 2*ttl)
	if ok, err := etcdPresent(cli, "etcd-b")(); err != nil || !ok {
		t.Fatalf("service etcd-b: present %v, %v", ok, err)
	}
	for _, w := range []*proc{a, b} {
		if n := sessionsCreated(w); n != 1 {
			t.Fatalf("%d sessions created; one member's loss must not cost the session", n)
		}
		w.stop(syscall.SIGTERM)
	}
	for _, id := range []string{"etcd-a", "etcd-b"} {
		if ok, err := etcdPresent(cli, id)(); err != nil || ok {
			t.Fatalf("service %s still there after its wrapper exited (%v)", id, err)
		}
	}
}

// leaderIndex finds the member that leads the cluster.
func leaderIndex(t *testing.T, c *etcdtest.Cluster, cli *clientv3.Client) int {
	t.Helper()
	for i, ep := range c.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, "http://"+ep)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		if st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no member leads the cluster")
	return -1
}
