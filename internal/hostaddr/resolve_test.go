package hostaddr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// fixedHost is a host whose configuration the test writes down.
type fixedHost struct {
	ifaces []hostInterface
	routes map[Family][]route
}

func (h fixedHost) interfaces() ([]hostInterface, error) {
	return append([]hostInterface(nil), h.ifaces...), nil
}

func (h fixedHost) defaultRoutes(f Family) ([]route, error) { return h.routes[f], nil }

func addr(s string, flags uint32) hostAddr {
	return hostAddr{prefix: netip.MustParsePrefix(s), flags: flags}
}

func gw(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestResolveChoosesAddress runs the selection rules over a host that has
// each of the cases on it.
func TestResolveChoosesAddress(t *testing.T) {
	h := fixedHost{
		ifaces: []hostInterface{
			// Listed out of index order: CIDR matches go by index.
			{name: "eth1", index: 3, up: true, addrs: []hostAddr{
				addr("172.16.0.1/24", 0),
				addr("192.168.7.7/24", 0),
				addr("10.3.0.9/16", 0),
				addr("fe80::2/64", 0),
			}},
			{name: "lo", index: 1, up: true, addrs: []hostAddr{addr("127.0.0.1/8", 0), addr("::1/128", 0x80)}},
			{name: "eth0", index: 2, up: true, addrs: []hostAddr{
				addr("169.254.3.3/16", 0),
				addr("10.1.2.4/24", flagSecondary),
				addr("10.1.2.3/24", 0),
				addr("2001:db8::99/64", flagTemporary),
				addr("2001:db8::98/64", flagDeprec),
				addr("2001:db8::97/64", flagTentative),
				addr("2001:db8::96/64", flagDadFailed),
				addr("2001:db8::7/64", 0),
				addr("fe80::1/64", 0x80),
			}},
			{name: "down0", index: 0, up: false, addrs: []hostAddr{addr("10.9.9.9/24", 0), addr("2001:db8:9::9/64", 0)}},
			{name: "eth2", index: 5, up: true, addrs: []hostAddr{addr("10.5.0.1/24", flagSecondary), addr("fe80::5/64", 0)}},
		},
		routes: map[Family][]route{
			IPv4: {
				{iface: "eth0", gateway: gw("10.1.2.1"), metric: 100},
				{iface: "eth1", gateway: gw("192.168.7.1"), metric: 50},
			},
			IPv6: {
				{iface: "eth0", gateway: gw("fe80::ff"), metric: 1024},
			},
		},
	}
	tests := []struct {
		selector string
		want     string
		why      string
	}{
		{"auto", "192.168.7.7", "lowest metric wins; the address in the gateway's subnet"},
		{"auto:ipv6", "2001:db8::7", "not temporary, deprecated, tentative, duplicate or link-local"},
		{"eth0", "10.1.2.3", "primary before secondary, never link-local"},
		{"eth0:ipv6", "2001:db8::7", "the only stable global address"},
		{"eth1", "172.16.0.1", "the first, without a gateway to prefer"},
		{"lo", "127.0.0.1", "loopback when asked for by name"},
		{"lo:ipv6", "::1", "loopback when asked for by name"},
		{"10.0.0.0/8", "10.1.2.3", "eth0 before eth1 by index, the down interface skipped, primary first"},
		{"10.1.2.4/32", "10.1.2.4", "a secondary when it is the one asked for"},
		{"10.5.0.0/16", "10.5.0.1", "a secondary when there is no primary"},
		{"169.254.0.0/16", "169.254.3.3", "link-local when the CIDR asks for it"},
		{"fe80::/10", "fe80::1", "link-local when the CIDR asks for it, by index"},
		{"2001:db8::/32", "2001:db8::7", "the stable one; the down interface skipped"},
		{"0.0.0.0/0", "127.0.0.1", "any address: the first interface's"},
	}
	for _, tt := range tests {
		t.Run(tt.selector, func(t *testing.T) {
			s, err := Parse(tt.selector)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.resolve(h)
			if err != nil {
				t.Fatalf("resolve: %v (want %s: %s)", err, tt.want, tt.why)
			}
			if got.String() != tt.want {
				t.Fatalf("got %s, want %s: %s", got, tt.want, tt.why)
			}
		})
	}
}

// TestResolveNotFound checks that when nothing matches, the error wraps
// ErrNotFound, repeats the selector and says what the host has.
func TestResolveNotFound(t *testing.T) {
	h := fixedHost{
		ifaces: []hostInterface{
			{name: "lo", index: 1, up: true, addrs: []hostAddr{addr("127.0.0.1/8", 0)}},
			{name: "eth0", index: 2, up: true, addrs: []hostAddr{addr("10.1.2.3/24", 0), addr("fe80::1/64", 0), addr("2001:db8::98/64", flagDeprec)}},
			{name: "eth1", index: 3, up: false, addrs: []hostAddr{addr("192.168.1.5/24", 0)}},
		},
		routes: map[Family][]route{
			IPv4: {{iface: "eth1", gateway: gw("192.168.1.1")}, {iface: "gone0"}},
		},
	}
	tests := []struct {
		selector string
		want     []string
	}{
		{"auto:ipv6", []string{`"auto:ipv6"`, "no IPv6 default route", "eth0 fe80::1/64 2001:db8::98/64 (deprecated)"}},
		{"auto", []string{"default route has no usable address", "via eth1 (down or gone)", "via gone0 (down or gone)"}},
		{"eth9", []string{`no interface named "eth9"`, "interfaces: lo, eth0, eth1"}},
		{"eth1", []string{"interface eth1 is down"}},
		{"eth0:ipv6", []string{"eth0 has no usable IPv6 address", "it has 10.1.2.3/24 fe80::1/64 2001:db8::98/64 (deprecated)"}},
		{"10.9.0.0/16", []string{"no usable address in 10.9.0.0/16", "lo 127.0.0.1/8; eth0 10.1.2.3/24; eth1 (down) 192.168.1.5/24"}},
		{"192.168.1.0/24", []string{"on an interface that is up", "eth1 (down) 192.168.1.5/24"}},
		{"2001:db8::/32", []string{"no usable address in 2001:db8::/32", "(deprecated)"}},
	}
	for _, tt := range tests {
		t.Run(tt.selector, func(t *testing.T) {
			s, err := Parse(tt.selector)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.resolve(h)
			if err == nil {
				t.Fatalf("resolved to %s, want an error", got)
			}
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("error %q does not wrap ErrNotFound", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
	if _, err := (Selector{}).resolve(h); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("zero selector: %v, want an error that is not ErrNotFound", err)
	}
}
