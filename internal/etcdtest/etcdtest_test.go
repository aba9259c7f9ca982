package etcdtest_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
)

func TestRestartKeepsDataAndPorts(t *testing.T) {
	c := etcdtest.StartSingle(t)
	eps := c.Endpoints()
	if len(eps) != 1 {
		t.Fatalf("Endpoints() = %q, want one", eps)
	}
	if got, want := c.URL("/x"), "etcd://"+eps[0]+"/x"; got != want {
		t.Errorf("URL(/x) = %q, want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}

	c.Stop(0)
	c.Restart(0)

	if got := c.Endpoints(); got[0] != eps[0] {
		t.Errorf("endpoint after restart = %s, want %s", got[0], eps[0])
	}
	resp, err := c.Client().Get(ctx, "/k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("after restart /k = %v, want v", resp.Kvs)
	}
}

func TestClusterURLListsEveryMember(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	eps := c.Endpoints()
	if len(eps) != 3 {
		t.Fatalf("Endpoints() = %q, want three", eps)
	}
	if got, want := c.URL(""), "etcd://"+eps[0]+","+eps[1]+","+eps[2]; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Client().MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	if len(resp.Members) != 3 {
		t.Errorf("%d members, want 3", len(resp.Members))
	}
}

// Launch is Start without a test, for a cluster shared by a whole test
// binary: it serves until stop, which removes its data.
func TestLaunchServesUntilStop(t *testing.T) {
	c, stop, err := etcdtest.Launch(etcdtest.Options{Members: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	ep := c.Endpoints()[0]
	stop()
	conn, err := net.DialTimeout("tcp", ep, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after stop", ep)
	}
}
