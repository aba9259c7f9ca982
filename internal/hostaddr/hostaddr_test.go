package hostaddr

import (
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		want   string // canonical form
		family Family
	}{
		{"auto", "auto", IPv4},
		{"auto:ipv4", "auto", IPv4},
		{"auto:ipv6", "auto:ipv6", IPv6},
		{"auto:IPv6", "auto:ipv6", IPv6},
		{"eth0", "eth0", IPv4},
		{"eth0:ipv4", "eth0", IPv4},
		{"eth0:ipv6", "eth0:ipv6", IPv6},
		{"lo", "lo", IPv4},
		{"br-1a2b3c4d5e6f", "br-1a2b3c4d5e6f", IPv4}, // 15 bytes, as docker names bridges
		{"wlp0s20f3", "wlp0s20f3", IPv4},
		{"veth.1@x", "veth.1@x", IPv4},
		{"Auto", "Auto", IPv4}, // an interface; only "auto" is the keyword
		{"10.0.0.0/8", "10.0.0.0/8", IPv4},
		{"10.1.2.3/8", "10.0.0.0/8", IPv4}, // host bits dropped
		{"10.1.2.3/32", "10.1.2.3/32", IPv4},
		{"0.0.0.0/0", "0.0.0.0/0", IPv4},
		{"fd00::/8", "fd00::/8", IPv6},
		{"2001:DB8::1/64", "2001:db8::/64", IPv6},
		{"::/0", "::/0", IPv6},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if s.String() != tt.want || s.Family() != tt.family {
			t.Errorf("Parse(%q) = %q %s, want %q %s", tt.in, s, s.Family(), tt.want, tt.family)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string // in the error
	}{
		{"", []string{"empty", "want auto"}},
		{"10.1.2.3", []string{"an address, not a selector", "--metadata ip=10.1.2.3", "10.1.2.3/32"}},
		{"fd00::1", []string{"an address, not a selector", "fd00::1/128"}},
		{"fe80::1%eth0", []string{"an address, not a selector", "fe80::1/128"}},
		{"10.0.0.0/33", []string{"not a CIDR", "want auto"}},
		{"10.0.0/8", []string{"not a CIDR"}},
		{"eth0/24", []string{"not a CIDR"}},
		{"fe80::/10%eth0", []string{"not a CIDR"}},
		{"::ffff:10.0.0.0/104", []string{"IPv4-mapped", "10.0.0.0/8"}},
		{"eth0:inet6", []string{`unknown address family "inet6"`, "ipv4 or ipv6"}},
		{"eth0:", []string{`unknown address family ""`}},
		{"auto6", nil}, // a valid interface name: not an error
		{"auto:ipv6:x", []string{"unknown address family"}},
		{":ipv6", []string{"empty interface name"}},
		{"a-very-long-interface", []string{"longer than 15 bytes"}},
		{"eth 0", []string{"contains ' '"}},
		{"eth0\n", []string{`contains '\n'`}},
		{".", []string{"not an interface name"}},
		{"..:ipv6", []string{"not an interface name"}},
	}
	for _, tt := range tests {
		s, err := Parse(tt.in)
		if tt.want == nil {
			if err != nil {
				t.Errorf("Parse(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse(%q) = %q, want an error", tt.in, s)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%q) error %q does not contain %q", tt.in, err, w)
			}
		}
	}
}

func TestPort(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
		err  string
	}{
		{"1", 1, ""},
		{"80", 80, ""},
		{"65535", 65535, ""},
		{"0", 0, "out of range"},
		{"65536", 0, "out of range"},
		{"99999999999999999999", 0, "out of range"},
		{"-1", 0, "not a number"},
		{"+80", 0, "not a number"},
		{" 80", 0, "not a number"},
		{"80/tcp", 0, "not a number"},
		{"http", 0, "not a number"},
		{"", 0, "not a number"},
	}
	for _, tt := range tests {
		got, err := ParsePort(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParsePort(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "1 to 65535")):
			t.Errorf("ParsePort(%q) = %d, %v; want an error with %q and the range", tt.in, got, err, tt.err)
		}
	}
	for _, p := range []int{-1, 0, 65536, 1 << 40} {
		if CheckPort(p) == nil {
			t.Errorf("CheckPort(%d) accepted it", p)
		}
	}
	for _, p := range []int{1, 443, 65535} {
		if err := CheckPort(p); err != nil {
			t.Errorf("CheckPort(%d): %v", p, err)
		}
	}
}

// FuzzParse checks that Parse never panics, that what it accepts has a
// canonical form it parses back to the same selector, and that an error
// names the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"auto", "auto:ipv6", "eth0", "lo:IPv4", "10.0.0.0/8", "fd00::/8", "10.1.2.3", "eth0:x", "::ffff:1.2.3.4/120", "a:b:c", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			if s != (Selector{}) {
				t.Fatalf("Parse(%q) returned %#v with its error", in, s)
			}
			if in != "" && !strings.Contains(err.Error(), strconv.Quote(in)) {
				t.Fatalf("Parse(%q) error %q does not name the input", in, err)
			}
			return
		}
		if s.IsZero() {
			t.Fatalf("Parse(%q) accepted it as the zero selector", in)
		}
		again, err := Parse(s.String())
		if err != nil || again != s {
			t.Fatalf("Parse(%q) = %q, which parses to %#v, %v", in, s, again, err)
		}
		if s.Family() != IPv4 && s.Family() != IPv6 {
			t.Fatalf("Parse(%q): family %v", in, s.Family())
		}
	})
}
