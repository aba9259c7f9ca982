package hostaddr

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// systemHost reads the network configuration of the network namespace the
// process is in.
type systemHost struct{}

// Route flags (RTF_* in linux/route.h and linux/ipv6_route.h).
const (
	rtfUp     = 0x0001
	rtfReject = 0x0200
)

func (systemHost) defaultRoutes(f Family) ([]route, error) {
	path, parse := "/proc/net/route", parseRoutes4
	if f == IPv6 {
		path, parse = "/proc/net/ipv6_route", parseRoutes6
	}
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && f == IPv6 {
		return nil, nil // IPv6 disabled: no IPv6 routes
	}
	if err != nil {
		return nil, fmt.Errorf("read the %s routes: %w", f, err)
	}
	defer file.Close()
	routes, err := parse(file)
	if err != nil {
		return nil, fmt.Errorf("read the %s routes from %s: %w", f, path, err)
	}
	return routes, nil
}

// parseRoutes4 returns the default routes in /proc/net/route: a header,
// then "Iface Destination Gateway Flags RefCnt Use Metric Mask ..." with
// the addresses as 8 hex digits in host byte order and the metric in
// decimal.
func parseRoutes4(r io.Reader) ([]route, error) {
	var routes []route
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if n == 1 || len(f) == 0 {
			continue // header
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 8", n, len(f))
		}
		dst, err1 := parseHex4(f[1])
		gw, err2 := parseHex4(f[2])
		flags, err3 := strconv.ParseUint(f[3], 16, 32)
		metric, err4 := strconv.ParseUint(f[6], 10, 32)
		mask, err5 := parseHex4(f[7])
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !dst.IsUnspecified() || !mask.IsUnspecified() || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		rt := route{iface: f[0], metric: uint32(metric)}
		if !gw.IsUnspecified() {
			rt.gateway = gw
		}
		routes = append(routes, rt)
	}
	return routes, sc.Err()
}

// parseHex4 reads an IPv4 address the kernel printed as the hex of its
// in-memory (network order) bytes read as a host-order integer.
func parseHex4(s string) (netip.Addr, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil || len(s) != 8 {
		return netip.Addr{}, fmt.Errorf("bad IPv4 address %q", s)
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b), nil
}

// parseRoutes6 returns the default routes in /proc/net/ipv6_route, one
// route a line: "dst dst_len src src_len next_hop metric refcnt use flags
// iface", addresses as 32 hex digits, the rest in hex. The kernel lists
// an unreachable ::/0 on lo (RTF_REJECT) when there is no default route.
func parseRoutes6(r io.Reader) ([]route, error) {
	var routes []route
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want 10", n, len(f))
		}
		dst, err1 := parseHex16(f[0])
		dstLen, err2 := strconv.ParseUint(f[1], 16, 8)
		gw, err3 := parseHex16(f[4])
		metric, err4 := strconv.ParseUint(f[5], 16, 32)
		flags, err5 := strconv.ParseUint(f[8], 16, 32)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !dst.IsUnspecified() || dstLen != 0 || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		rt := route{iface: f[9], metric: uint32(metric)}
		if !gw.IsUnspecified() {
			rt.gateway = gw
		}
		routes = append(routes, rt)
	}
	return routes, sc.Err()
}

func parseHex16(s string) (netip.Addr, error) {
	var b [16]byte
	if len(s) != 32 {
		return netip.Addr{}, fmt.Errorf("bad IPv6 address %q", s)
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return netip.Addr{}, fmt.Errorf("bad IPv6 address %q", s)
	}
	return netip.AddrFrom16(b), nil
}

// interfaces lists the interfaces (names, indexes, up) and their addresses
// with the kernel's flags, which net.Interface.Addrs leaves out and which
// tell tentative, deprecated and temporary IPv6 addresses.
func (systemHost) interfaces() ([]hostInterface, error) {
	links, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	addrs, err := netlinkAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]hostInterface, 0, len(links))
	for _, l := range links {
		out = append(out, hostInterface{
			name:  l.Name,
			index: l.Index,
			up:    l.Flags&net.FlagUp != 0,
			addrs: addrs[l.Index],
		})
	}
	return out, nil
}

// Netlink address attributes (IFA_* in linux/if_addr.h).
const (
	ifaAddress = 1
	ifaLocal   = 2
	ifaFlags   = 8
)

// netlinkAddrs dumps every address of every interface, by interface
// index, in the kernel's order.
func netlinkAddrs() (map[int][]hostAddr, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netlink RTM_GETADDR: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parse netlink reply: %w", err)
	}
	out := map[int][]hostAddr{}
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		// struct ifaddrmsg: family, prefixlen, flags, scope (u8 each),
		// index (u32, host order).
		family, prefixLen, flags := m.Data[0], int(m.Data[1]), uint32(m.Data[2])
		index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, fmt.Errorf("parse netlink address attributes: %w", err)
		}
		var address, local []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case ifaAddress:
				address = a.Value
			case ifaLocal:
				local = a.Value
			case ifaFlags:
				if len(a.Value) == 4 {
					flags = binary.NativeEndian.Uint32(a.Value)
				}
			}
		}
		// For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS
		// is the peer's on a point-to-point link).
		raw := address
		if local != nil {
			raw = local
		}
		ip, ok := netip.AddrFromSlice(raw)
		if !ok || (family == syscall.AF_INET) != ip.Is4() {
			continue
		}
		// The address itself, with the length of its subnet.
		p := netip.PrefixFrom(ip, prefixLen)
		if !p.IsValid() {
			continue
		}
		out[index] = append(out[index], hostAddr{prefix: p, flags: flags})
	}
	return out, nil
}
