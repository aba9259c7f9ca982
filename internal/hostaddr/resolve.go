package hostaddr

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Address flags, as the kernel reports them (IFA_F_* in linux/if_addr.h).
// The kernel uses one bit for IPv4's SECONDARY and IPv6's TEMPORARY.
const (
	flagSecondary = 0x01
	flagTemporary = 0x01
	flagDadFailed = 0x08
	flagDeprec    = 0x20
	flagTentative = 0x40
)

// hostAddr is one address of an interface.
type hostAddr struct {
	prefix netip.Prefix // the address and the length of its subnet
	flags  uint32
}

func (a hostAddr) family() Family {
	if a.prefix.Addr().Is4() {
		return IPv4
	}
	return IPv6
}

// unusable says why an address must not be advertised, "" if it may be.
func (a hostAddr) unusable() string {
	if a.family() == IPv4 {
		return ""
	}
	switch {
	case a.flags&flagTentative != 0:
		return "tentative"
	case a.flags&flagDadFailed != 0:
		return "duplicate"
	case a.flags&flagDeprec != 0:
		return "deprecated"
	case a.flags&flagTemporary != 0:
		return "temporary"
	}
	return ""
}

func (a hostAddr) String() string {
	s := a.prefix.String()
	if why := a.unusable(); why != "" {
		s += " (" + why + ")"
	}
	return s
}

// hostInterface is a network interface with its addresses in the
// kernel's order.
type hostInterface struct {
	name  string
	index int
	up    bool
	addrs []hostAddr
}

// route is a default route.
type route struct {
	iface   string
	gateway netip.Addr // invalid for a route without a gateway
	metric  uint32
}

// host is what Resolve reads: the real one in host_linux.go, a fixed one
// in tests.
type host interface {
	interfaces() ([]hostInterface, error)
	// defaultRoutes returns the default routes of the family that are up
	// and deliver packets, in the kernel's order.
	defaultRoutes(Family) ([]route, error)
}

// Resolve returns the address s selects on this host now. When nothing
// matches, the error wraps ErrNotFound and says what was looked for and
// what the host has.
func (s Selector) Resolve() (netip.Addr, error) { return s.resolve(systemHost{}) }

func (s Selector) resolve(h host) (netip.Addr, error) {
	if s.kind == 0 {
		return netip.Addr{}, errors.New("resolve address: no selector")
	}
	ifaces, err := h.interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve address %q: %w", s, err)
	}
	slices.SortStableFunc(ifaces, func(a, b hostInterface) int { return cmp.Compare(a.index, b.index) })
	var a netip.Addr
	switch s.kind {
	case kindAuto:
		a, err = s.resolveAuto(h, ifaces)
	case kindInterface:
		a, err = s.resolveInterface(ifaces)
	case kindCIDR:
		a, err = s.resolveCIDR(ifaces)
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve address %q: %w", s, err)
	}
	return a, nil
}

func (s Selector) resolveAuto(h host, ifaces []hostInterface) (netip.Addr, error) {
	routes, err := h.defaultRoutes(s.family)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(routes) == 0 {
		return netip.Addr{}, fmt.Errorf("%w: no %s default route (interfaces: %s)", ErrNotFound, s.family, describe(ifaces, s.family))
	}
	// The lowest metric is the route the kernel uses; among equals, the
	// first listed.
	slices.SortStableFunc(routes, func(a, b route) int { return cmp.Compare(a.metric, b.metric) })
	var tried []string
	for _, r := range routes {
		i := findInterface(ifaces, r.iface)
		if i == nil || !i.up {
			tried = append(tried, "via "+r.iface+" (down or gone)")
			continue
		}
		if a, ok := pick(i, s.family, r.gateway); ok {
			return a, nil
		}
		tried = append(tried, fmt.Sprintf("via %s, which has %s", r.iface, describeAddrs(i.addrs, s.family)))
	}
	return netip.Addr{}, fmt.Errorf("%w: the %s default route has no usable address: %s", ErrNotFound, s.family, strings.Join(tried, "; "))
}

func (s Selector) resolveInterface(ifaces []hostInterface) (netip.Addr, error) {
	i := findInterface(ifaces, s.iface)
	if i == nil {
		names := make([]string, len(ifaces))
		for k, i := range ifaces {
			names[k] = i.name
		}
		return netip.Addr{}, fmt.Errorf("%w: no interface named %q (interfaces: %s)", ErrNotFound, s.iface, strings.Join(names, ", "))
	}
	if !i.up {
		return netip.Addr{}, fmt.Errorf("%w: interface %s is down", ErrNotFound, i.name)
	}
	if a, ok := pick(i, s.family, netip.Addr{}); ok {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: interface %s has no usable %s address (it has %s)", ErrNotFound, i.name, s.family, describeAddrs(i.addrs, 0))
}

func (s Selector) resolveCIDR(ifaces []hostInterface) (netip.Addr, error) {
	var secondary netip.Addr
	for _, i := range ifaces {
		if !i.up {
			continue
		}
		for _, a := range i.addrs {
			if !s.prefix.Contains(a.prefix.Addr()) || a.unusable() != "" {
				continue
			}
			if a.family() == IPv4 && a.flags&flagSecondary != 0 {
				if !secondary.IsValid() {
					secondary = a.prefix.Addr()
				}
				continue
			}
			return a.prefix.Addr(), nil
		}
	}
	if secondary.IsValid() {
		return secondary, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: no usable address in %s on an interface that is up (interfaces: %s)", ErrNotFound, s.prefix, describe(ifaces, s.family))
}

func findInterface(ifaces []hostInterface, name string) *hostInterface {
	for k := range ifaces {
		if ifaces[k].name == name {
			return &ifaces[k]
		}
	}
	return nil
}

// pick returns the address of the interface in the family: the first
// usable one that is not link-local, preferring one whose subnet holds
// gateway (when valid), then IPv4 primary addresses.
func pick(i *hostInterface, f Family, gateway netip.Addr) (netip.Addr, bool) {
	best, bestRank := netip.Addr{}, -1
	for _, a := range i.addrs {
		ip := a.prefix.Addr()
		if a.family() != f || a.unusable() != "" || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		rank := 0
		if f == IPv4 && a.flags&flagSecondary == 0 {
			rank++
		}
		if gateway.IsValid() && a.prefix.Masked().Contains(gateway) {
			rank += 2
		}
		if rank > bestRank {
			best, bestRank = ip, rank
		}
	}
	return best, bestRank >= 0
}

// describe lists the interfaces with their addresses of family f, for an
// error message.
func describe(ifaces []hostInterface, f Family) string {
	if len(ifaces) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(ifaces))
	for _, i := range ifaces {
		d := i.name
		if !i.up {
			d += " (down)"
		}
		parts = append(parts, d+" "+describeAddrs(i.addrs, f))
	}
	return strings.Join(parts, "; ")
}

// describeAddrs lists the addresses of family f, or of all families for
// f == 0.
func describeAddrs(addrs []hostAddr, f Family) string {
	var out []string
	for _, a := range addrs {
		if f == 0 || a.family() == f {
			out = append(out, a.String())
		}
	}
	if len(out) == 0 {
		if f == 0 {
			return "no address"
		}
		return "no " + f.String() + " address"
	}
	return strings.Join(out, " ")
}
