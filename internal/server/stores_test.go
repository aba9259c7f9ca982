package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// sharedEtcd is one embedded etcd member for the whole test binary: each
// test's frontends keep their keys under a prefix of their own.
var sharedEtcd *etcdtest.Cluster

func TestMain(m *testing.M) {
	c, stop, err := etcdtest.Launch(etcdtest.Options{Members: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "server tests:", err)
		os.Exit(1)
	}
	sharedEtcd = c
	code := m.Run()
	for _, stop := range stopShared {
		stop()
	}
	stop()
	os.Exit(code)
}

// storeKind is one of the stores the conformance suite runs against.
type storeKind struct {
	name string
	etcd bool
}

var storeKinds = []storeKind{{name: "bbolt"}, {name: "etcd", etcd: true}}

// forEachStore runs test once per store, as subtests named after them.
func forEachStore(t *testing.T, test func(t *testing.T, st storeKind)) {
	for _, st := range storeKinds {
		t.Run(st.name, func(t *testing.T) { test(t, st) })
	}
}

// start starts a server (dev mode unless opts say otherwise) on this
// store: a temporary data dir, or a fresh prefix of the shared etcd.
func (st storeKind) start(t *testing.T, opts ...registrytest.Option) *registrytest.Registry {
	t.Helper()
	if st.etcd {
		opts = append(opts, st.option(t))
	}
	return registrytest.Start(t, opts...)
}

// option is the registrytest option of a fresh etcd prefix.
func (st storeKind) option(t testing.TB) registrytest.Option {
	return registrytest.WithEtcd(sharedEtcd.Endpoints(), uniquePrefix(t))
}

// args are the sr-registry arguments of this store for a process started
// with registrytest.StartProcess (which gives bbolt a temporary data dir).
func (st storeKind) args(t testing.TB) []string {
	if !st.etcd {
		return nil
	}
	return []string{"--store", sharedEtcd.URL(uniquePrefix(t))}
}

// newServer is server.New of cfg on this store (a temporary data dir or a
// fresh etcd prefix), once its store is ready; closed when the test ends.
func (st storeKind) newServer(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	cfg.DataDir = t.TempDir()
	if st.etcd {
		cfg.DataDir = ""
		cfg.Etcd = &etcdconf.Config{Endpoints: sharedEtcd.Endpoints(), Prefix: uniquePrefix(t)}
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := srv.Ready(ctx)
		cancel()
		if err == nil {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var notKeyChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// uniquePrefix is an etcd prefix no other test uses.
func uniquePrefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "/test/" + notKeyChars.ReplaceAllString(t.Name(), "_") + "-" + hex.EncodeToString(b[:])
}
