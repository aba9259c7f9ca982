package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcd"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ttl is the session TTL of the tests where expiry matters: the shortest
// the HTTP API allows, and well above etcd's minimum with etcdtest's
// timings.
const ttl = 3 * time.Second

// newRegistry opens the backend on c's URL with prefix /sr, configured by
// edit.
func newRegistry(t *testing.T, c *etcdtest.Cluster, edit func(*etcdconf.Config)) *etcd.Registry {
	t.Helper()
	cfg, err := etcdconf.ParseURL(c.URL("/sr"))
	if err != nil {
		t.Fatalf("ParseURL: %v", err)
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := etcd.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createSession(t *testing.T, r *etcd.Registry, md map[string]string) registry.Session {
	t.Helper()
	s, err := r.CreateSession(ctxFor(t, 10*time.Second), registry.SessionOptions{TTL: ttl, Metadata: md})
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s
}

func register(t *testing.T, s registry.Session, svc registry.Service) {
	t.Helper()
	if err := s.Register(ctxFor(t, 10*time.Second), svc); err != nil {
		t.Fatalf("Register %q: %v", svc.ID, err)
	}
}

// sessionWithWeb1 opens the backend on c, creates a session and registers
// the service web-1 in it.
func sessionWithWeb1(t *testing.T, c *etcdtest.Cluster) (*etcd.Registry, registry.Session) {
	t.Helper()
	r := newRegistry(t, c, nil)
	s := createSession(t, r, nil)
	register(t, s, registry.Service{ID: "web-1"})
	return r, s
}

// heartbeatUntilOK heartbeats s until a heartbeat succeeds, for at most
// within: while etcd restarts or elects a leader, transient errors are
// expected, but a lost session or a permanent error fails the test at
// once. what says when, for the failure message.
func heartbeatUntilOK(t *testing.T, s registry.Session, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := s.Heartbeat(ctxFor(t, 10*time.Second))
		if err == nil {
			return
		}
		if errors.Is(err, registry.ErrSessionLost) || registry.IsPermanent(err) || time.Now().After(deadline) {
			t.Fatalf("Heartbeat %s: %v", what, err)
		}
	}
}

func leaseOf(t *testing.T, s registry.Session) clientv3.LeaseID {
	t.Helper()
	id, err := strconv.ParseUint(s.ID(), 16, 64)
	if err != nil || len(s.ID()) != 16 {
		t.Fatalf("session id %q is not 16 hexadecimal digits", s.ID())
	}
	return clientv3.LeaseID(id)
}

// get returns the key's value and lease, or ok false when it is absent.
func get(t *testing.T, c *etcdtest.Cluster, key string) (value []byte, lease clientv3.LeaseID, ok bool) {
	t.Helper()
	resp, err := c.Client().Get(ctxFor(t, 10*time.Second), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, false
	}
	return resp.Kvs[0].Value, clientv3.LeaseID(resp.Kvs[0].Lease), true
}

// waitDeleted returns when key is absent, watching for its deletion, and
// fails the test if that takes longer than within.
func waitDeleted(t *testing.T, c *etcdtest.Cluster, key string, within time.Duration) time.Time {
	t.Helper()
	ctx := ctxFor(t, within)
	resp, err := c.Client().Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return time.Now()
	}
	for wr := range c.Client().Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return time.Now()
			}
		}
	}
	t.Fatalf("%s still present after %v", key, within)
	return time.Time{}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s = %v, want an error wrapping %q", what, err, target)
	}
}

func TestRegisterWritesAPIServiceObjectUnderTheLease(t *testing.T) {
	c := etcdtest.StartSingle(t)
	r := newRegistry(t, c, nil)
	s := createSession(t, r, map[string]string{"host": "web-host-1"})
	lease := leaseOf(t, s)
	if s.TTL() != ttl {
		t.Errorf("TTL() = %v, want %v", s.TTL(), ttl)
	}

	// The session's own key.
	value, l, ok := get(t, c, "/sr/sessions/"+s.ID())
	if !ok || l != lease {
		t.Fatalf("session key: present %v, lease %x; want present with lease %x", ok, l, lease)
	}
	var gotSession api.Session
	if err := json.Unmarshal(value, &gotSession); err != nil {
		t.Fatalf("session value %s: %v", value, err)
	}
	wantSession := api.Session{ID: s.ID(), HeartbeatTimeout: 3, Metadata: map[string]string{"host": "web-host-1"}}
	if !reflect.DeepEqual(gotSession, wantSession) {
		t.Errorf("session value = %+v, want %+v", gotSession, wantSession)
	}

	svc := registry.Service{ID: "web-1", Tags: []string{"www", "eu"}, Metadata: map[string]string{"port": "8080"}}
	register(t, s, svc)
	value, l, ok = get(t, c, etcd.ServiceKey("/sr", "web-1"))
	if !ok || l != lease {
		t.Fatalf("service key: present %v, lease %x; want present with lease %x", ok, l, lease)
	}
	// Exactly the API's object: these four fields and no others.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(value, &raw); err != nil {
		t.Fatalf("service value %s: %v", value, err)
	}
	if len(raw) != 4 {
		t.Errorf("service value %s has %d fields, want id, session_id, tags, metadata", value, len(raw))
	}
	var got api.Service
	if err := json.Unmarshal(value, &got); err != nil {
		t.Fatal(err)
	}
	want := api.Service{ID: "web-1", SessionID: s.ID(), Tags: svc.Tags, Metadata: svc.Metadata}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("service value = %+v, want %+v", got, want)
	}

	// Registering again in the same session updates the object in place.
	register(t, s, registry.Service{ID: "web-1"})
	value, l, _ = get(t, c, etcd.ServiceKey("/sr", "web-1"))
	if want := `{"id":"web-1","session_id":"` + s.ID() + `","tags":[],"metadata":{}}`; string(value) != want || l != lease {
		t.Errorf("after re-register: %s with lease %x, want %s with lease %x", value, l, want, lease)
	}
	if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
		t.Errorf("Heartbeat: %v", err)
	}
}

func TestRegisterRejectsInvalidServiceAsPermanent(t *testing.T) {
	c := etcdtest.StartSingle(t)
	s := createSession(t, newRegistry(t, c, nil), nil)
	for _, svc := range []registry.Service{
		{ID: "a/b/c"},
		{ID: "x"},
		{ID: "web-1", Tags: make([]string, 11)},
	} {
		err := s.Register(ctxFor(t, 10*time.Second), svc)
		wantErr(t, "Register "+svc.ID, err, registry.ErrPermanent)
	}
}

func TestSecondSessionCannotTakeALiveID(t *testing.T) {
	c := etcdtest.StartSingle(t)
	r := newRegistry(t, c, nil)
	first := createSession(t, r, nil)
	second := createSession(t, r, nil)
	svc := registry.Service{ID: "db-1"}
	register(t, first, svc)

	err := second.Register(ctxFor(t, 10*time.Second), svc)
	wantErr(t, "second Register", err, registry.ErrServiceExists)
	if registry.IsPermanent(err) || errors.Is(err, registry.ErrSessionLost) {
		t.Errorf("second Register = %v: must be neither permanent nor a lost session, so that the caller retries", err)
	}
	if !strings.Contains(err.Error(), "lease "+first.ID()) {
		t.Errorf("second Register = %v, want it to name the holder, lease %s", err, first.ID())
	}

	// Deregister of a key that another session holds leaves it alone.
	if err := second.Deregister(ctxFor(t, 10*time.Second), "db-1"); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
	if _, l, ok := get(t, c, etcd.ServiceKey("/sr", "db-1")); !ok || l != leaseOf(t, first) {
		t.Fatalf("another session's Deregister removed or changed the service (present %v, lease %x)", ok, l)
	}

	if err := first.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	register(t, second, svc)
	if _, l, ok := get(t, c, etcd.ServiceKey("/sr", "db-1")); !ok || l != leaseOf(t, second) {
		t.Fatalf("after the first session closed: present %v, lease %x; want the second's lease %x", ok, l, leaseOf(t, second))
	}
}

func TestCloseRemovesServiceAtOnce(t *testing.T) {
	c := etcdtest.StartSingle(t)
	_, s := sessionWithWeb1(t, c)

	if err := s.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// No waiting: revoking the lease deletes its keys in the same step.
	for _, key := range []string{etcd.ServiceKey("/sr", "web-1"), etcd.SessionKey("/sr", s.ID())} {
		if _, _, ok := get(t, c, key); ok {
			t.Errorf("%s still present right after Close", key)
		}
	}

	if err := s.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Errorf("second Close = %v, want nil for a session already gone", err)
	}
	wantErr(t, "Heartbeat after Close", s.Heartbeat(ctxFor(t, 10*time.Second)), registry.ErrSessionLost)
	wantErr(t, "Register after Close", s.Register(ctxFor(t, 10*time.Second), registry.Service{ID: "web-2"}), registry.ErrSessionLost)
}

func TestDeregisterRemovesServiceAndKeepsSession(t *testing.T) {
	c := etcdtest.StartSingle(t)
	_, s := sessionWithWeb1(t, c)
	for range 2 { // the second time there is nothing to remove
		if err := s.Deregister(ctxFor(t, 10*time.Second), "web-1"); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
	}
	if _, _, ok := get(t, c, etcd.ServiceKey("/sr", "web-1")); ok {
		t.Error("service still present after Deregister")
	}
	if _, _, ok := get(t, c, etcd.SessionKey("/sr", s.ID())); !ok {
		t.Error("session key gone after Deregister")
	}
	if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
		t.Errorf("Heartbeat after Deregister: %v", err)
	}
}

func TestRevokedLeaseIsLostSessionAndANewOneRegisters(t *testing.T) {
	c := etcdtest.StartSingle(t)
	r, s := sessionWithWeb1(t, c)

	// As `etcdctl lease revoke` would.
	if _, err := c.Client().Revoke(ctxFor(t, 10*time.Second), leaseOf(t, s)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	wantErr(t, "Heartbeat", s.Heartbeat(ctxFor(t, 10*time.Second)), registry.ErrSessionLost)
	wantErr(t, "Register", s.Register(ctxFor(t, 10*time.Second), registry.Service{ID: "web-1"}), registry.ErrSessionLost)

	again := createSession(t, r, nil)
	register(t, again, registry.Service{ID: "web-1"})
	if _, l, ok := get(t, c, etcd.ServiceKey("/sr", "web-1")); !ok || l != leaseOf(t, again) {
		t.Fatalf("service after re-creating the session: present %v, lease %x", ok, l)
	}
}

func TestHeartbeatsKeepServiceAndItGoesOneTTLAfterTheyStop(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartSingle(t)
	r, s := sessionWithWeb1(t, c)
	key := etcd.ServiceKey("/sr", "web-1")

	// Heartbeat for one and a half TTLs: the service must outlive its
	// first TTL.
	var lastBeat time.Time
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for end := time.Now().Add(ttl * 3 / 2); time.Now().Before(end); <-tick.C {
		lastBeat = time.Now()
		if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
	}
	if _, _, ok := get(t, c, key); !ok {
		t.Fatal("service gone although heartbeated")
	}

	// Now as if the wrapper were SIGKILLed: no more heartbeats, no Close.
	gone := waitDeleted(t, c, key, ttl+5*time.Second)
	if d := gone.Sub(lastBeat); d < ttl {
		t.Errorf("service gone %v after the last heartbeat, before its TTL of %v", d, ttl)
	}
	wantErr(t, "Heartbeat after expiry", s.Heartbeat(ctxFor(t, 10*time.Second)), registry.ErrSessionLost)
	register(t, createSession(t, r, nil), registry.Service{ID: "web-1"})
}

func TestLeaseOutlivesEtcdDownLongerThanTTL(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartSingle(t)
	r, s := sessionWithWeb1(t, c)
	key := etcd.ServiceKey("/sr", "web-1")

	c.Stop(0)
	// Heartbeat all the while etcd is down, as the heartbeat loop would:
	// each attempt must fail as a transient error, not a lost session.
	for end := time.Now().Add(ttl + time.Second); time.Now().Before(end); {
		err := s.Heartbeat(ctxFor(t, 10*time.Second))
		if err == nil || registry.IsPermanent(err) || errors.Is(err, registry.ErrSessionLost) {
			t.Fatalf("Heartbeat while etcd is down = %v, want a transient error", err)
		}
	}
	c.Restart(0)

	// etcd renews every lease when a member becomes leader, so the
	// session survived; heartbeats succeed again once the client has
	// reconnected, and the service is there without anything registered
	// again.
	heartbeatUntilOK(t, s, 20*time.Second, "after restart")
	if _, l, ok := get(t, c, key); !ok || l != leaseOf(t, s) {
		t.Fatalf("after restart: service present %v, lease %x; want present with lease %x", ok, l, leaseOf(t, s))
	}

	// A new session, as a heartbeat loop that gave up on the old one
	// would create, cannot take the id while the old lease lives;
	// closing the old session first lets it.
	fresh := createSession(t, r, nil)
	wantErr(t, "Register in a new session", fresh.Register(ctxFor(t, 10*time.Second), registry.Service{ID: "web-1"}), registry.ErrServiceExists)
	if err := s.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Close old session: %v", err)
	}
	register(t, fresh, registry.Service{ID: "web-1"})
}

func TestThreeMemberClusterCarriesOnWithOneMemberStopped(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	r, s := sessionWithWeb1(t, c)

	// Stop the leader: the harder case, since the other two must elect a
	// new one before anything can be written.
	leader := -1
	for i, ep := range c.Endpoints() {
		st, err := c.Client().Status(ctxFor(t, 10*time.Second), "http://"+ep)
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		if st.Leader == st.Header.MemberId {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Stop(leader)

	// The first call may meet the election; a transient error is allowed
	// until the new leader is in place.
	heartbeatUntilOK(t, s, 15*time.Second, fmt.Sprintf("after stopping member %d", leader))
	// From then on, every call succeeds with two members of three.
	for i := range 5 {
		if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
			t.Fatalf("Heartbeat %d with a member stopped: %v", i, err)
		}
	}
	register(t, s, registry.Service{ID: "web-1", Tags: []string{"after-stop"}})
	other := createSession(t, r, nil)
	register(t, other, registry.Service{ID: "web-2"})
	if err := other.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Heartbeat of a session created with a member stopped: %v", err)
	}
	if err := other.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Close with a member stopped: %v", err)
	}
	if _, _, ok := get(t, c, etcd.ServiceKey("/sr", "web-2")); ok {
		t.Error("web-2 still present after Close")
	}
}

func TestTLSWithClientCertificate(t *testing.T) {
	t.Parallel()
	files := etcdtest.NewTLSFiles(t)
	c := etcdtest.Start(t, etcdtest.Options{TLS: files})
	if !strings.HasPrefix(c.URL(""), "etcds://") {
		t.Fatalf("URL = %s, want etcds://", c.URL(""))
	}
	r := newRegistry(t, c, func(cfg *etcdconf.Config) {
		cfg.CACert, cfg.Cert, cfg.Key = files.CACert, files.ClientCert, files.ClientKey
	})
	s := createSession(t, r, nil)
	register(t, s, registry.Service{ID: "web-1"})
	if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if err := s.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Without the client certificate, or trusting only the system's
	// roots, nothing gets through.
	for name, edit := range map[string]func(*etcdconf.Config){
		"no client certificate": func(cfg *etcdconf.Config) { cfg.CACert = files.CACert },
		"untrusted server":      func(cfg *etcdconf.Config) { cfg.Cert, cfg.Key = files.ClientCert, files.ClientKey },
	} {
		r := newRegistry(t, c, edit)
		if _, err := r.CreateSession(ctxFor(t, 2*time.Second), registry.SessionOptions{TTL: ttl}); err == nil {
			t.Errorf("%s: CreateSession succeeded", name)
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartSingle(t)
	c.AddUser("sr", "good-password", "/sr/")
	c.AddUser("other", "other-password", "/other/")
	c.EnableAuth()

	r := newRegistry(t, c, func(cfg *etcdconf.Config) { cfg.Username, cfg.Password = "sr", "good-password" })
	s := createSession(t, r, nil)
	register(t, s, registry.Service{ID: "web-1"})
	if err := s.Heartbeat(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if err := s.Close(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if strings.Contains(r.String(), "good-password") {
		t.Errorf("String() = %q shows the password", r.String())
	}

	for _, tt := range []struct {
		name, user, password string
	}{
		{"wrong password", "sr", "bad-password"},
		{"no credentials", "", ""},
		{"no permission on the prefix", "other", "other-password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegistry(t, c, func(cfg *etcdconf.Config) { cfg.Username, cfg.Password = tt.user, tt.password })
			_, err := r.CreateSession(ctxFor(t, 10*time.Second), registry.SessionOptions{TTL: ttl})
			wantErr(t, "CreateSession", err, registry.ErrPermanent)
		})
	}
}

// TestNewDoesNotWaitForEtcd pins that a dead etcd costs nothing up front
// and fails a call, within its context, with an error worth retrying.
func TestNewDoesNotWaitForEtcd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	for _, user := range []string{"", "sr"} { // with a user, connecting authenticates
		start := time.Now()
		r, err := etcd.New(etcdconf.Config{Endpoints: []string{dead}, Username: user, Password: user})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_, err = r.CreateSession(ctxFor(t, 500*time.Millisecond), registry.SessionOptions{TTL: ttl})
		if err == nil || registry.IsPermanent(err) {
			t.Errorf("user %q: CreateSession on a dead etcd = %v, want a transient error", user, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("user %q: New and CreateSession took %v on a 500ms context", user, d)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		_, err = r.CreateSession(ctxFor(t, time.Second), registry.SessionOptions{TTL: ttl})
		wantErr(t, "CreateSession after Close", err, etcd.ErrClosed)
	}
}

// TestConnectingHonoursCancellation: with a user, connecting
// authenticates, which the etcd client bounds by its dial timeout only;
// a cancelled call must still return at once, so that the wrapper's exit
// is not held up by a dial to a dead etcd.
func TestConnectingHonoursCancellation(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()

	r, err := etcd.New(etcdconf.Config{Endpoints: []string{dead}, Username: "sr", Password: "sr", DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ctx, cancel := context.WithCancel(context.Background()) // no deadline
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err = r.CreateSession(ctx, registry.SessionOptions{TTL: ttl})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("CreateSession cancelled while connecting = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("CreateSession returned %v after its context was cancelled at 200ms", d-200*time.Millisecond)
	}
}
