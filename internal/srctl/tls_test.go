package srctl_test

// srctl over HTTPS: a real sr-registry behind a TLS-terminating forwarder,
// with certificates of a CA made in the test.

import (
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

func TestHTTPSWithAPrivateCA(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", []string{"web"}, nil)
	ca := tlstest.NewCA(t)
	caFile := ca.File(t)
	server := ca.Issue(t, tlstest.Server("127.0.0.1"))
	fwd := tlstest.Forward(t, h.reg.Addr, server.ServerConfig())
	httpsURL := "https://" + fwd.Addr() + "/v1.0"
	run := func(args ...string) result {
		t.Helper()
		return h.runRaw(append([]string{"--registry", httpsURL, "--username", h.user, "--api-key", testKey}, args...)...)
	}

	if r := run("--cacert", caFile, "services", "list"); r.code != srctl.ExitOK || !strings.Contains(r.stdout, "web1") || r.stderr != "" {
		t.Fatalf("with --cacert: %+v", r)
	}
	// The list is cached now; a certificate that does not verify is still
	// an error to fix, not a registry to show stale.
	const unknown = "certificate signed by unknown authority for 127.0.0.1: use --cacert"
	for _, args := range [][]string{{"services", "list"}, {"events", "follow"}} {
		start := time.Now()
		r := run(args...)
		if r.code != srctl.ExitError || r.stdout != "" || !strings.Contains(r.stderr, unknown) || strings.Contains(r.stderr, "warning") {
			t.Fatalf("%s without --cacert: %+v; want exit 1 and %q", args, r, unknown)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s without --cacert took %s: retried a configuration error", args, d)
		}
	}

	mutual := tlstest.Forward(t, h.reg.Addr, tlstest.RequireClientCerts(server.ServerConfig(), ca))
	mutualURL := "https://" + mutual.Addr() + "/v1.0"
	cert, key := ca.Issue(t, tlstest.Client("srctl")).Files(t)
	r := h.runRaw("--registry", mutualURL, "--username", h.user, "--api-key", testKey, "--cacert", caFile, "--cert", cert, "--key", key, "services", "get", "web1")
	if r.code != srctl.ExitOK || !strings.Contains(r.stdout, "web1") {
		t.Fatalf("with a client certificate: %+v (server side: %v)", r, mutual.HandshakeErrors())
	}
	r = h.runRaw("--registry", mutualURL, "--username", h.user, "--api-key", testKey, "--cacert", caFile, "services", "get", "web1")
	if want := "the registry at 127.0.0.1 requires a client certificate: use --cert and --key"; r.code != srctl.ExitError || !strings.Contains(r.stderr, want) {
		t.Fatalf("without a client certificate: %+v; want exit 1 and %q", r, want)
	}
}

func TestTLSFlagUsageErrors(t *testing.T) {
	h := setup(t)
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, tlstest.Client("srctl")).Files(t)
	const https = "https://127.0.0.1:1/v1.0"
	for _, tt := range []struct {
		registry string
		flags    []string
		want     string
	}{
		{h.reg.URL, []string{"--cacert", ca.File(t)}, "srctl: --cacert: apply to an https:// registry"},
		{https, []string{"--cacert", "/nonexistent/ca.pem"}, "srctl: --cacert: open /nonexistent/ca.pem: no such file or directory"},
		{https, []string{"--cacert", key}, "srctl: --cacert: no PEM certificate in " + key},
		{https, []string{"--cert", cert}, "srctl: --cert and --key: give both or neither"},
	} {
		args := append([]string{"--registry", tt.registry, "--username", h.user, "--api-key", testKey}, tt.flags...)
		r := h.runRaw(append(args, "services", "list")...)
		if r.code != srctl.ExitUsage || !strings.HasPrefix(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tt.flags, r.code, r.stderr, tt.want)
		}
	}
}
