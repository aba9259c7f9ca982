package server_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
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
func (st storeKind) option(t *testing.T) registrytest.Option {
	return registrytest.WithEtcd(sharedEtcd.Endpoints(), uniquePrefix(t))
}

var notKeyChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// uniquePrefix is an etcd prefix no other test uses.
func uniquePrefix(t *testing.T) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "/test/" + notKeyChars.ReplaceAllString(t.Name(), "_") + "-" + hex.EncodeToString(b[:])
}
