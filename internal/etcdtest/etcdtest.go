// Package etcdtest starts real etcd servers inside tests: one member or a
// cluster of several, embedded in the test process with
// go.etcd.io/etcd/server/v3/embed, listening on 127.0.0.1 only, with data in
// the test's temporary directory and quiet logs.
//
// Members can be stopped and restarted on the same data directory and the
// same ports, so that tests can take etcd away from a client and give it
// back. Client TLS (see NewTLSFiles) and authentication (AddUser,
// EnableAuth) are available for tests of those options.
//
// It is a test helper, not a way to run etcd in production: fsync is
// disabled and the raft timings are short so that clusters start and elect
// a leader in well under a second. Every method reports failures with
// t.Fatalf, so call them from the test's own goroutine.
package etcdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// Timings of the embedded members. The election timeout is ten ticks, as
// etcd recommends, and long enough that a busy two-core machine running the
// race detector does not see spurious elections, which would refresh every
// lease and blur expiry tests. It also sets etcd's minimum lease TTL:
// ceil(1.5 × election timeout) = 1 s.
const (
	tickMs     = 50
	electionMs = 500
)

// readyTimeout bounds the wait for a member to start, join its cluster and
// be ready to serve.
const readyTimeout = 30 * time.Second

// Options configure Start. The zero value starts one plaintext member.
type Options struct {
	// Members is the number of members; 0 means 1.
	Members int
	// TLS, when not nil, makes the members serve clients over TLS with
	// TLS.ServerCert and require client certificates signed by TLS.CACert.
	// Peers talk plaintext: they are all on loopback.
	TLS *TLSFiles
}

// Cluster is a set of embedded etcd members started by Start. It is closed
// by the test's cleanup; Close may also be called earlier.
type Cluster struct {
	t       tb
	opts    Options
	members []*member

	rootPassword string // set by EnableAuth
	client       *clientv3.Client
}

type member struct {
	name      string
	dir       string
	clientURL url.URL
	peerURL   url.URL
	cluster   string // the initial-cluster string shared by all members
	token     string
	etcd      *embed.Etcd // nil while stopped
}

// StartSingle starts a one-member plaintext cluster.
func StartSingle(t testing.TB) *Cluster {
	t.Helper()
	return Start(t, Options{Members: 1})
}

// StartCluster starts a plaintext cluster of n members and waits until it
// has a leader.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return Start(t, Options{Members: n})
}

// Start starts a cluster as opts say and waits until every member is ready.
//
// Ports are picked by binding 127.0.0.1:0 and releasing the port for etcd
// (embed cannot advertise a peer port it does not know in advance), so
// another process may take one in between; when that happens the whole
// cluster is started again on new ports and new data directories.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	return start(t, opts)
}

// tb is what a Cluster needs of a testing.TB; Launch provides it without
// a test.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Launch starts a cluster as Start does, for a whole test binary rather
// than one test: call it from TestMain and call stop after m.Run. Failures
// are returned rather than reported to a test.
func Launch(opts Options) (c *Cluster, stop func(), err error) {
	lt := &launchTB{}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(launchFailure)
			if !ok {
				panic(r)
			}
			lt.stop()
			c, stop, err = nil, nil, errors.New(string(f))
		}
	}()
	c = start(lt, opts)
	return c, lt.stop, nil
}

// launchTB is the tb of Launch: Fatalf panics (Launch recovers it before
// returning; later failures crash the test binary, as they should when a
// shared cluster breaks), TempDir and Cleanup are kept for stop.
type launchTB struct {
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

type launchFailure string

func (*launchTB) Helper() {}

func (*launchTB) Fatalf(format string, args ...any) {
	panic(launchFailure(fmt.Sprintf(format, args...)))
}

func (l *launchTB) Cleanup(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

func (l *launchTB) TempDir() string {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		l.Fatalf("etcdtest: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirs = append(l.dirs, dir)
	return dir
}

func (l *launchTB) stop() {
	l.mu.Lock()
	cleanups, dirs := l.cleanups, l.dirs
	l.cleanups, l.dirs = nil, nil
	l.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}

func start(t tb, opts Options) *Cluster {
	t.Helper()
	if opts.Members <= 0 {
		opts.Members = 1
	}
	c := &Cluster{t: t, opts: opts}
	t.Cleanup(c.Close)

	const attempts = 5
	var lastErr error
	for range attempts {
		err := c.startNew()
		if err == nil {
			return c
		}
		lastErr = err
		c.stopAll()
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	t.Fatalf("etcdtest: start %d member(s): %v", opts.Members, lastErr)
	return nil
}

// startNew lays out fresh members on fresh ports and starts them.
func (c *Cluster) startNew() error {
	n := c.opts.Members
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	token := "etcdtest-" + randomHex(6)
	clientScheme := "http"
	if c.opts.TLS != nil {
		clientScheme = "https"
	}
	c.members = make([]*member, n)
	var initial []string
	for i := range n {
		m := &member{
			name:      "m" + strconv.Itoa(i),
			dir:       c.t.TempDir(),
			clientURL: url.URL{Scheme: clientScheme, Host: "127.0.0.1:" + strconv.Itoa(ports[2*i])},
			peerURL:   url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[2*i+1])},
			token:     token,
		}
		c.members[i] = m
		initial = append(initial, m.name+"="+m.peerURL.String())
	}
	for _, m := range c.members {
		m.cluster = strings.Join(initial, ",")
		if err := c.launch(m); err != nil {
			return err
		}
	}
	for _, m := range c.members {
		if err := waitReady(m); err != nil {
			return err
		}
	}
	return nil
}

// launch starts m's server without waiting for it to be ready: a member of
// a new cluster cannot be ready before a quorum of its peers is running.
func (c *Cluster) launch(m *member) error {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.clientURL}
	cfg.ListenPeerUrls = []url.URL{m.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.peerURL}
	cfg.InitialCluster = m.cluster
	cfg.InitialClusterToken = m.token
	cfg.TickMs = tickMs
	cfg.ElectionMs = electionMs
	// The tests' data lives for seconds in a temp dir; fsync would only
	// make every write wait on the disk that other builds are using.
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	cfg.SocketOpts.ReuseAddress = true
	// bcrypt at its default cost takes seconds per password under the race
	// detector, and starves the other members of the machine meanwhile.
	cfg.BcryptCost = uint(bcrypt.MinCost)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	if tf := c.opts.TLS; tf != nil {
		cfg.ClientTLSInfo.CertFile = tf.ServerCert
		cfg.ClientTLSInfo.KeyFile = tf.ServerKey
		cfg.ClientTLSInfo.TrustedCAFile = tf.CACert
		cfg.ClientTLSInfo.ClientCertAuth = true
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start member %s (client %s, peer %s): %w", m.name, m.clientURL.Host, m.peerURL.Host, err)
	}
	m.etcd = e
	return nil
}

func waitReady(m *member) error {
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-m.etcd.Server.ReadyNotify():
		return nil
	case err := <-m.etcd.Err():
		return fmt.Errorf("member %s failed while starting: %w", m.name, err)
	case <-timer.C:
		return fmt.Errorf("member %s not ready after %v", m.name, readyTimeout)
	}
}

// Endpoints returns the host:port client address of every member, stopped
// ones included, in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL.Host
	}
	return eps
}

// URL returns the wrapper's --registry form for the cluster and prefix:
// etcd://host:port,host:port/prefix, or etcds:// when the cluster serves
// TLS. An empty prefix leaves the path out (the backend's default).
func (c *Cluster) URL(prefix string) string {
	scheme := "etcd"
	if c.opts.TLS != nil {
		scheme = "etcds"
	}
	u := scheme + "://" + strings.Join(c.Endpoints(), ",")
	if prefix != "" {
		u += "/" + strings.TrimPrefix(prefix, "/")
	}
	return u
}

// Client returns a client connected to every member, as root once
// EnableAuth has run, for checking what the code under test wrote. It is
// closed with the cluster.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	if c.client != nil {
		return c.client
	}
	cfg := clientv3.Config{
		Endpoints:   c.clientURLs(),
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	}
	if tf := c.opts.TLS; tf != nil {
		// Trust the CA and present the client certificate, as the etcd
		// backend does with the same files.
		tc, err := etcdconf.Config{CACert: tf.CACert, Cert: tf.ClientCert, Key: tf.ClientKey}.TLSConfig()
		if err != nil {
			c.t.Fatalf("etcdtest: %v", err)
		}
		cfg.TLS = tc
	}
	if c.rootPassword != "" {
		cfg.Username, cfg.Password = "root", c.rootPassword
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatalf("etcdtest: connect to %v: %v", c.Endpoints(), err)
	}
	c.client = cli
	return cli
}

func (c *Cluster) clientURLs() []string {
	urls := make([]string, len(c.members))
	for i, m := range c.members {
		urls[i] = m.clientURL.String()
	}
	return urls
}

// Stop stops member i (0-based) as `systemctl stop etcd` would: a leader
// first hands its leadership to another member. The data directory stays.
// Stopping a stopped member does nothing.
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	m := c.member(i)
	if m.etcd == nil {
		return
	}
	m.etcd.Close()
	m.etcd = nil
}

// Restart starts a stopped member i again on the same data directory and
// the same ports, and waits until it is ready (for a member of a larger
// cluster: until it has rejoined). A port taken meanwhile by another process
// is retried for a few seconds, since the ports are part of the member's
// identity and cannot change.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.member(i)
	if m.etcd != nil {
		c.t.Fatalf("etcdtest: restart member %s: still running", m.name)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.launch(m)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			c.t.Fatalf("etcdtest: restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // waiting on another process's port: no event to wait on
	}
	if err := waitReady(m); err != nil {
		c.t.Fatalf("etcdtest: restart: %v", err)
	}
}

func (c *Cluster) member(i int) *member {
	if i < 0 || i >= len(c.members) {
		c.t.Fatalf("etcdtest: no member %d in a cluster of %d", i, len(c.members))
	}
	return c.members[i]
}

// Close closes the check client and stops every member. It is safe to call
// more than once.
func (c *Cluster) Close() {
	if c.client != nil {
		_ = c.client.Close()
		c.client = nil
	}
	c.stopAll()
}

// stopAll stops the running members, followers first and all at once,
// then the leader. Stopped one by one, each leader would hand its
// leadership to the next member to go; stopped all at once, the leader
// would wait seconds for a peer that is gone to take it.
func (c *Cluster) stopAll() {
	var leaders, followers []*member
	for _, m := range c.members {
		switch {
		case m.etcd == nil:
		case m.etcd.Server.Leader() == m.etcd.Server.MemberID():
			leaders = append(leaders, m)
		default:
			followers = append(followers, m)
		}
	}
	for _, group := range [][]*member{followers, leaders} {
		var wg sync.WaitGroup
		for _, m := range group {
			e := m.etcd
			m.etcd = nil
			wg.Go(e.Close)
		}
		wg.Wait()
	}
}

// AddUser creates user name with password and a role of the same name that
// may read and write every key under keyPrefix (and nothing else). It works
// before and after EnableAuth.
func (c *Cluster) AddUser(name, password, keyPrefix string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := c.Client()
	steps := []struct {
		what string
		run  func() error
	}{
		{"add user", func() error { _, err := cli.UserAdd(ctx, name, password); return err }},
		{"add role", func() error { _, err := cli.RoleAdd(ctx, name); return err }},
		{"grant permission", func() error {
			_, err := cli.RoleGrantPermission(ctx, name, keyPrefix, clientv3.GetPrefixRangeEnd(keyPrefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"grant role", func() error { _, err := cli.UserGrantRole(ctx, name, name); return err }},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			c.t.Fatalf("etcdtest: %s %q: %v", s.what, name, err)
		}
	}
}

// EnableAuth creates the root user (with a random password that Client
// then uses) and turns authentication on: from then on every client needs
// a user and password.
func (c *Cluster) EnableAuth() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := c.Client()
	password := randomHex(12)
	if _, err := cli.UserAdd(ctx, "root", password); err != nil {
		c.t.Fatalf("etcdtest: add root user: %v", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		c.t.Fatalf("etcdtest: grant root role: %v", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		c.t.Fatalf("etcdtest: enable auth: %v", err)
	}
	// The check client has no credentials; the next Client call makes
	// one as root.
	_ = cli.Close()
	c.client = nil
	c.rootPassword = password
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago. All listeners stay open until every port is picked, so that the
// kernel cannot hand the same port out twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
