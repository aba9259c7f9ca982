package srctl

import (
	"io"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
)

// srctl reads sr-wrapper's connection flags for the HTTP API only.
func TestConnectionIsTheHTTPAPIs(t *testing.T) {
	srctl := func(env map[string]string, args ...string) (*config, error) {
		args = append([]string{"--username=alice", "--api-key=k"}, args...)
		return parseArgs(args, buildinfo.Info{Version: "test"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	}
	// srctl has no etcd flags: an etcd password meant for sr-wrapper is
	// none of its business.
	cfg, err := srctl(map[string]string{"SR_ETCD_PASSWORD": "pw"}, "--registry=http://127.0.0.1:8181/v1.0", "limits")
	if err != nil || cfg.Connection.Backend != cli.BackendHTTP || cfg.Command != "limits" {
		t.Fatalf("with SR_ETCD_PASSWORD set: %+v, %v", cfg, err)
	}
	_, err = srctl(nil, "--registry=etcd://127.0.0.1:2379/sr", "limits")
	if err == nil || !strings.Contains(err.Error(), "--registry: srctl speaks the Service Registry API") {
		t.Fatalf("etcd registry: %v", err)
	}
	_, err = srctl(nil, "--registry=http:///v1.0", "limits")
	if err == nil || !strings.HasPrefix(err.Error(), "--registry: ") {
		t.Fatalf("registry without a host: %v", err)
	}
}
