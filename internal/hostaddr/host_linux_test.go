package hostaddr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

func TestParseRoutes(t *testing.T) {
	// As this kernel prints them (x86-64, little-endian), from a host with
	// two IPv4 default routes and an IPv6 one, plus the unreachable ::/0
	// on lo the kernel always lists.
	const route4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"b0\t00000000\t0107A8C0\t0003\t0\t0\t10\t00000000\t0\t0\t0\n" +
		"a0\t00000000\t0102010A\t0003\t0\t0\t50\t00000000\t0\t0\t0\n" +
		"a0\t0002010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"c0\t00000000\t00000000\t0001\t0\t0\t7\t00000000\t0\t0\t0\n" +
		"x0\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n" + // reject
		"y0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0\n" // not up
	const route6 = "" +
		"20010db8000000010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001       a0\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000010000000000000001 00000400 00000001 00000000 00000003       a0\n" +
		"00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001       lo\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"

	r4, err := parseRoutes4(strings.NewReader(route4))
	if err != nil {
		t.Fatal(err)
	}
	want4 := "b0 via 192.168.7.1 metric 10; a0 via 10.1.2.1 metric 50; c0 via invalid IP metric 7"
	if got := describeRoutes(r4); got != want4 {
		t.Errorf("IPv4 default routes:\n got  %s\n want %s", got, want4)
	}
	r6, err := parseRoutes6(strings.NewReader(route6))
	if err != nil {
		t.Fatal(err)
	}
	want6 := "a0 via 2001:db8:0:1::1 metric 1024"
	if got := describeRoutes(r6); got != want6 {
		t.Errorf("IPv6 default routes:\n got  %s\n want %s", got, want6)
	}

	for _, bad := range []string{"h\na0 00000000\n", "h\na0\tzz000000\t00000000\t0003\t0\t0\t10\t00000000\n"} {
		if _, err := parseRoutes4(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("parseRoutes4(%q): %v, want an error naming line 2", bad, err)
		}
	}
	if _, err := parseRoutes6(strings.NewReader("0000 00 x\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("parseRoutes6 of a short line: %v, want an error naming line 1", err)
	}
}

func describeRoutes(rs []route) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s via %s metric %d", r.iface, r.gateway, r.metric))
	}
	return strings.Join(parts, "; ")
}

// TestResolveOnThisHost resolves what every Linux host has: the loopback
// interface.
func TestResolveOnThisHost(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil || lo.Flags&net.FlagUp == 0 {
		testsupport.SkipUnsupported(t, "this host's lo is missing or down (%v)", err)
	}
	for sel, want := range map[string]string{"lo": "127.0.0.1", "127.0.0.0/8": "127.0.0.1"} {
		s, err := Parse(sel)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Resolve()
		if err != nil || got.String() != want {
			t.Errorf("Resolve(%s) = %v, %v; want %s", sel, got, err, want)
		}
	}
	s, _ := Parse("sr-no-such0")
	if _, err := s.Resolve(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "lo") {
		t.Errorf("Resolve(sr-no-such0) = %v, want ErrNotFound listing lo", err)
	}
}

// inNamespaceEnv marks the copy of the test binary that runs inside a new
// network namespace.
const inNamespaceEnv = "HOSTADDR_TEST_IN_NETNS"

// TestResolveInNetworkNamespace builds a network in a new network
// namespace — veth pairs with IPv4 and IPv6 addresses, default routes, a
// deprecated address, an interface that is down — and resolves selectors
// against it. It runs this test again in the namespace (unshare -n), since
// a namespace belongs to a thread and Go spreads goroutines over threads.
// It needs root (or CAP_NET_ADMIN) and iproute2; it skips without them.
func TestResolveInNetworkNamespace(t *testing.T) {
	if os.Getenv(inNamespaceEnv) == "1" {
		resolveInNamespace(t)
		return
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testsupport.SkipUnsupported(t, "needs %s to make a network namespace: %v", tool, err)
		}
	}
	if out, err := exec.Command("unshare", "-n", "true").CombinedOutput(); err != nil {
		testsupport.SkipUnsupported(t, "cannot make a network namespace here (unshare -n: %v %s); needs root or CAP_SYS_ADMIN", err, bytes.TrimSpace(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"-n", os.Args[0], "-test.run=^TestResolveInNetworkNamespace$", "-test.v", "-test.count=1"}
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in the network namespace failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestResolveInNetworkNamespace")) {
		t.Fatal("the test in the network namespace did not run")
	}
}

func resolveInNamespace(t *testing.T) {
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "set", "lo", "up")
	// c0 first, so that it has the lowest index of the veths: a CIDR
	// search must pass over it because it is down.
	ip("link", "add", "c0", "type", "veth", "peer", "name", "c1")
	ip("addr", "add", "10.9.9.9/24", "dev", "c0")
	ip("link", "add", "a0", "type", "veth", "peer", "name", "a1")
	ip("link", "set", "a0", "up")
	ip("link", "set", "a1", "up")
	ip("addr", "add", "10.1.2.3/24", "dev", "a0")
	ip("addr", "add", "10.1.2.4/24", "dev", "a0") // secondary
	ip("-6", "addr", "add", "2001:db8:0:2::5/64", "dev", "a0", "nodad", "preferred_lft", "0")
	ip("-6", "addr", "add", "2001:db8:0:1::7/64", "dev", "a0", "nodad")
	ip("route", "add", "default", "via", "10.1.2.1", "dev", "a0", "metric", "50")
	ip("-6", "route", "add", "default", "via", "2001:db8:0:1::1", "dev", "a0")
	ip("link", "add", "b0", "type", "veth", "peer", "name", "b1")
	ip("link", "set", "b0", "up")
	ip("link", "set", "b1", "up")
	ip("addr", "add", "172.16.0.1/24", "dev", "b0")
	ip("addr", "add", "192.168.7.7/24", "dev", "b0")
	ip("route", "add", "default", "via", "192.168.7.1", "dev", "b0", "metric", "10")

	tests := []struct {
		selector string
		want     string // "" for an ErrNotFound whose message has notFound
		notFound []string
	}{
		{selector: "auto", want: "192.168.7.7"},          // metric 10 beats 50; the gateway's subnet
		{selector: "auto:ipv6", want: "2001:db8:0:1::7"}, // the deprecated one skipped
		{selector: "a0", want: "10.1.2.3"},
		{selector: "a0:ipv6", want: "2001:db8:0:1::7"},
		{selector: "b0", want: "172.16.0.1"},
		{selector: "lo", want: "127.0.0.1"},
		{selector: "lo:ipv6", want: "::1"},
		{selector: "10.0.0.0/8", want: "10.1.2.3"}, // not c0's 10.9.9.9: c0 is down
		{selector: "10.1.2.4/32", want: "10.1.2.4"},
		{selector: "2001:db8::/32", want: "2001:db8:0:1::7"},
		{selector: "c0", notFound: []string{"interface c0 is down"}},
		{selector: "10.9.9.0/24", notFound: []string{"on an interface that is up", "c0 (down) 10.9.9.9/24"}},
		{selector: "2001:db8:0:2::/64", notFound: []string{"2001:db8:0:2::5/64 (deprecated)"}},
		{selector: "b0:ipv6", notFound: []string{"b0 has no usable IPv6 address"}}, // link-local only
		{selector: "eth0", notFound: []string{`no interface named "eth0"`, "interfaces: lo, ", "a0"}},
	}
	for _, tt := range tests {
		s, err := Parse(tt.selector)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Resolve()
		switch {
		case tt.want != "" && (err != nil || got.String() != tt.want):
			t.Errorf("Resolve(%s) = %v, %v; want %s", tt.selector, got, err, tt.want)
		case tt.want == "" && !errors.Is(err, ErrNotFound):
			t.Errorf("Resolve(%s) = %v, %v; want ErrNotFound", tt.selector, got, err)
		case tt.want == "":
			for _, w := range tt.notFound {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Resolve(%s) error %q\ndoes not contain %q", tt.selector, err, w)
				}
			}
		}
	}

	// Without default routes, auto says so and lists the addresses.
	ip("route", "del", "default", "dev", "b0")
	ip("route", "del", "default", "dev", "a0")
	ip("-6", "route", "del", "default", "dev", "a0")
	for _, sel := range []string{"auto", "auto:ipv6"} {
		s, _ := Parse(sel)
		_, err := s.Resolve()
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "default route") || !strings.Contains(err.Error(), "a0 ") {
			t.Errorf("Resolve(%s) without default routes: %v; want ErrNotFound naming the default route and listing a0", sel, err)
		}
	}
}

// FuzzParseRoutes checks that no route table, however mangled, makes the
// parsers panic, and that every route they return is a usable default.
func FuzzParseRoutes(f *testing.F) {
	f.Add("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\nb0\t00000000\t0107A8C0\t0003\t0\t0\t10\t00000000\t0\t0\t0\n")
	f.Add("00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000000010000000000000001 00000400 00000001 00000000 00000003       a0\n")
	f.Fuzz(func(t *testing.T, table string) {
		for _, parse := range []func(io.Reader) ([]route, error){parseRoutes4, parseRoutes6} {
			routes, err := parse(strings.NewReader(table))
			if err != nil {
				continue
			}
			for _, r := range routes {
				if r.iface == "" || (r.gateway.IsValid() && r.gateway.IsUnspecified()) {
					t.Fatalf("route %+v from %q", r, table)
				}
			}
		}
	})
}
