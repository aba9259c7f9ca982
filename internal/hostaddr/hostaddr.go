// Package hostaddr finds the address a service advertises in the host's
// own network configuration: the --advertise-ip SELECTOR, and the
// --advertise-port check.
//
// A selector is one of:
//
//	auto          the IPv4 address of the interface the IPv4 default
//	              route goes through
//	auto:ipv6     the IPv6 address of the interface the IPv6 default
//	              route goes through
//	NAME          the IPv4 address of the interface NAME (eth0, ens3, lo)
//	NAME:ipv6     the IPv6 address of the interface NAME
//	CIDR          the first address inside CIDR (10.0.0.0/8, fd00::/8) on
//	              any interface that is up; the CIDR says the family
//
// ":ipv4" may be written for auto and NAME, and means what no suffix
// means; the family word is case-insensitive, the rest is not. An
// interface that happens to be named "auto" is selected by a CIDR.
//
// Which address, when there are several:
//
//   - Only interfaces that are up count.
//   - "The address of an interface" (auto, NAME) is its first address of
//     the family in the kernel's order, IPv4 primary addresses before
//     secondary ones, that can be reached from elsewhere: never a
//     link-local one (169.254.0.0/16, fe80::/10).
//   - For auto, an address whose subnet holds the default route's gateway
//     is preferred, as the kernel prefers it as the source of traffic
//     through that route. Of several default routes, the lowest metric
//     wins. Only the main routing table is read (/proc/net/route,
//     /proc/net/ipv6_route); policy routing is not followed.
//   - A CIDR takes any address inside it, link-local ones too if the CIDR
//     asks for them, in the order of the interfaces' indexes.
//   - IPv6 addresses that are tentative, failed duplicate address
//     detection, deprecated (preferred lifetime over) or temporary
//     (privacy extensions) are never chosen: each is about to change or go
//     away.
//
// Parse only checks the syntax, with no I/O, so that a bad flag is
// reported before anything starts; Resolve reads the host's interfaces
// (netlink) and routes (/proc/net) each time it is called, so that a
// caller can retry until the network is up. The package runs no external
// command and changes nothing on the host.
package hostaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an address family.
type Family uint8

// The address families a selector can ask for.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

type kind uint8

const (
	kindAuto kind = iota + 1
	kindInterface
	kindCIDR
)

// Selector is a parsed --advertise-ip value. The zero Selector selects
// nothing; Resolve reports an error for it.
type Selector struct {
	kind   kind
	iface  string       // kindInterface
	prefix netip.Prefix // kindCIDR, masked
	family Family
}

// ErrNotFound is wrapped by Resolve's error when the host has no address
// that matches: the network may not be up yet, so a caller may retry.
var ErrNotFound = errors.New("no matching address")

// grammar is the reminder every Parse error ends with.
const grammar = "want auto, auto:ipv6, an interface name (eth0, eth0:ipv6) or a CIDR (10.0.0.0/8, fd00::/8)"

// maxNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const maxNameLen = 15

// Parse parses a selector (see the package documentation). It does no I/O.
func Parse(s string) (Selector, error) {
	if s == "" {
		return Selector{}, fmt.Errorf("empty address selector: %s", grammar)
	}
	if strings.Contains(s, "/") {
		return parseCIDR(s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		bits := "/32"
		if a.Is6() {
			bits = "/128"
		}
		return Selector{}, fmt.Errorf("%q is an address, not a selector: give a fixed address with --metadata ip=%s, or write %s%s to require that this host has it",
			s, s, a.WithZone(""), bits)
	}
	name, fam, hasFam := strings.Cut(s, ":")
	family := IPv4
	if hasFam {
		switch strings.ToLower(fam) {
		case "ipv4":
		case "ipv6":
			family = IPv6
		default:
			return Selector{}, fmt.Errorf("%q: unknown address family %q after the colon: want ipv4 or ipv6", s, fam)
		}
	}
	if name == "auto" {
		return Selector{kind: kindAuto, family: family}, nil
	}
	if err := checkInterfaceName(name); err != nil {
		return Selector{}, fmt.Errorf("%q: %w; %s", s, err, grammar)
	}
	return Selector{kind: kindInterface, iface: name, family: family}, nil
}

func parseCIDR(s string) (Selector, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return Selector{}, fmt.Errorf("%q is not a CIDR (%v); %s", s, err, grammar)
	}
	if p.Addr().Is4In6() {
		return Selector{}, fmt.Errorf("%q: an IPv4-mapped IPv6 CIDR matches no interface address; write IPv4 CIDRs as 10.0.0.0/8", s)
	}
	family := IPv4
	if p.Addr().Is6() {
		family = IPv6
	}
	return Selector{kind: kindCIDR, prefix: p.Masked(), family: family}, nil
}

// checkInterfaceName applies Linux's rules for interface names (no "/",
// ":" or white space, not "." or "..", at most 15 bytes), and refuses
// control characters, which no tool can type.
func checkInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == ':' || c == '/' {
			return fmt.Errorf("interface name %q contains %q", name, c)
		}
	}
	return nil
}

// Family is the address family the selector asks for.
func (s Selector) Family() Family { return s.family }

// IsZero reports whether s is the zero Selector (no --advertise-ip).
func (s Selector) IsZero() bool { return s.kind == 0 }

// String is the selector in its canonical form, which Parse accepts.
func (s Selector) String() string {
	suffix := ""
	if s.family == IPv6 {
		suffix = ":ipv6"
	}
	switch s.kind {
	case kindAuto:
		return "auto" + suffix
	case kindInterface:
		return s.iface + suffix
	case kindCIDR:
		return s.prefix.String()
	}
	return ""
}

// CheckPort checks an --advertise-port value.
func CheckPort(port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("port %d is out of range: want 1 to 65535", port)
	}
	return nil
}

// ParsePort parses an --advertise-port value: a decimal number from 1 to
// 65535.
func ParsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, fmt.Errorf("port %q is out of range: want 1 to 65535", s)
		}
		return 0, fmt.Errorf("port %q is not a number: want 1 to 65535", s)
	}
	if err := CheckPort(int(n)); err != nil {
		return 0, err
	}
	return uint16(n), nil
}
