package cli

import (
	"fmt"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/health"
)

// parseWrapper parses a valid sr-wrapper command line with extra flags
// added, with an empty environment besides env.
func parseWrapper(t *testing.T, env map[string]string, extra ...string) (*WrapperConfig, error) {
	t.Helper()
	args := append([]string{"--id=web-1", "--registry=http://127.0.0.1:8181/v1.0", "--username=alice", "--api-key=k"}, extra...)
	args = append(args, "--", "sleep", "1")
	getenv := func(k string) string { return env[k] }
	return ParseWrapper(args, buildinfo.Info{Version: "test"}, getenv, io.Discard, io.Discard)
}

func TestHealthCheckFlags(t *testing.T) {
	defaults := health.Timing{Interval: health.DefaultInterval, Timeout: health.DefaultTimeout, Rise: health.DefaultRise, Fall: health.DefaultFall}
	tests := []struct {
		name    string
		flags   []string
		want    *health.Spec // zero timings mean health's defaults
		wantErr string
	}{
		{name: "no check", flags: nil, want: nil},
		{name: "http", flags: []string{"--check-http=http://127.0.0.1:8080/health"},
			want: &health.Spec{HTTP: "http://127.0.0.1:8080/health"}},
		{name: "tcp", flags: []string{"--check-tcp=127.0.0.1:3306"}, want: &health.Spec{TCP: "127.0.0.1:3306"}},
		{name: "command, quoted as in sh", flags: []string{"--check-cmd=sh -c 'exit 0'"},
			want: &health.Spec{Command: "sh -c 'exit 0'"}},
		{name: "timing given", flags: []string{"--check-tcp=127.0.0.1:3306", "--check-interval=10s", "--check-timeout=10s", "--check-rise=2", "--check-fall=5"},
			want: &health.Spec{TCP: "127.0.0.1:3306", Timing: health.Timing{Interval: 10 * time.Second, Timeout: 10 * time.Second, Rise: 2, Fall: 5}}},

		{name: "two checks", flags: []string{"--check-http=http://127.0.0.1/", "--check-tcp=127.0.0.1:80"},
			wantErr: "--check-http, --check-tcp, --check-cmd: give one check, not 2"},
		{name: "three checks", flags: []string{"--check-http=http://127.0.0.1/", "--check-tcp=127.0.0.1:80", "--check-cmd=true"},
			wantErr: "give one check, not 3"},
		{name: "http URL without a host", flags: []string{"--check-http=http:///health"},
			wantErr: `--check-http: "http:///health" has no host`},
		{name: "http URL without a scheme", flags: []string{"--check-http=127.0.0.1:8080/health"},
			wantErr: `--check-http: "127.0.0.1:8080/health" has no http:// or https:// scheme`},
		{name: "tcp address without a host", flags: []string{"--check-tcp=:3306"},
			wantErr: `--check-tcp: ":3306" has no host`},
		{name: "command with an unbalanced quote", flags: []string{"--check-cmd=sh -c 'exit 0"},
			wantErr: "--check-cmd: single quote at offset 6 is never closed"},
		{name: "command not found", flags: []string{"--check-cmd=no-such-check-command --flag"},
			wantErr: `--check-cmd: "no-such-check-command": command not found in PATH`},
		{name: "timeout longer than the interval", flags: []string{"--check-tcp=127.0.0.1:80", "--check-interval=2s", "--check-timeout=3s"},
			wantErr: "--check-timeout (3s) must not be longer than --check-interval (2s)"},
		{name: "zero interval", flags: []string{"--check-tcp=127.0.0.1:80", "--check-interval=0s"},
			wantErr: "--check-interval must be more than 0"},
		{name: "zero rise", flags: []string{"--check-tcp=127.0.0.1:80", "--check-rise=0"},
			wantErr: "--check-rise must be at least 1"},
		{name: "zero fall", flags: []string{"--check-cmd=true", "--check-fall=0"},
			wantErr: "--check-fall must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseWrapper(t, nil, tt.flags...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%q: error %v, want one containing %q", tt.flags, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", tt.flags, err)
			}
			got := cfg.Check
			if tt.want == nil {
				if got != nil {
					t.Fatalf("%q: check %+v, want none", tt.flags, got)
				}
				return
			}
			if got == nil {
				t.Fatalf("%q: no check", tt.flags)
			}
			want := *tt.want
			if want.Interval == 0 {
				want.Timing = defaults
			}
			if *got != want {
				t.Errorf("%q: check %+v, want %+v", tt.flags, *got, want)
			}
		})
	}
}

func TestIntervalFlag(t *testing.T) {
	for _, tt := range []struct {
		interval string
		wantErr  string
		want     time.Duration
	}{
		{"3", "", 3 * time.Second},
		{"30", "", 30 * time.Second},
		{"2", "--interval: must be an integer between 3 and 30 seconds, got 2", 0},
		{"31", "--interval: must be an integer between 3 and 30 seconds, got 31", 0},
	} {
		cfg, err := parseWrapper(t, nil, "--interval="+tt.interval)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("--interval=%s: error %v, want %q", tt.interval, err, tt.wantErr)
			}
			continue
		}
		if err != nil || cfg.TTL != tt.want {
			t.Errorf("--interval=%s: %v, TTL %v; want %v", tt.interval, err, cfg, tt.want)
		}
	}
}

func TestKillModeFlag(t *testing.T) {
	for _, tt := range []struct {
		flags   []string
		want    string
		wantErr string
	}{
		{nil, KillModeGroup, ""},
		{[]string{"--kill-mode=group"}, KillModeGroup, ""},
		{[]string{"--kill-mode=process"}, KillModeProcess, ""},
		{[]string{"--kill-mode=mixed"}, "", `--kill-mode must be one of "group","process" but got "mixed"`},
	} {
		cfg, err := parseWrapper(t, nil, tt.flags...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tt.flags, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.flags, err)
		} else if cfg.KillMode != tt.want {
			t.Errorf("%q: kill mode %q, want %q", tt.flags, cfg.KillMode, tt.want)
		}
	}
}

// TestDefaultsFollowTheFlagsGiven: a flag whose default depends on
// another follows the value the user gave that other flag; only two flags
// the user set can conflict, and the error names both.
func TestDefaultsFollowTheFlagsGiven(t *testing.T) {
	const tcp = "--check-tcp=127.0.0.1:80"
	timing := func(interval, timeout time.Duration) *health.Timing {
		return &health.Timing{Interval: interval, Timeout: timeout, Rise: health.DefaultRise, Fall: health.DefaultFall}
	}
	tests := []struct {
		name       string
		flags      []string
		env        map[string]string // the process environment, as kong reads it
		wantTiming *health.Timing    // nil: not checked
		wantLevel  string            // "": not checked
		wantErr    string
	}{
		{name: "check defaults", flags: []string{tcp}, wantTiming: timing(health.DefaultInterval, health.DefaultTimeout)},
		{name: "short interval: the timeout follows", flags: []string{tcp, "--check-interval=500ms"}, wantTiming: timing(500*time.Millisecond, 500*time.Millisecond)},
		{name: "long interval: the timeout keeps its default", flags: []string{tcp, "--check-interval=10s"}, wantTiming: timing(10*time.Second, health.DefaultTimeout)},
		{name: "long timeout: the interval follows", flags: []string{tcp, "--check-timeout=10s"}, wantTiming: timing(10*time.Second, 10*time.Second)},
		{name: "short timeout: the interval keeps its default", flags: []string{tcp, "--check-timeout=1s"}, wantTiming: timing(health.DefaultInterval, time.Second)},
		{name: "both given, consistent", flags: []string{tcp, "--check-interval=1s", "--check-timeout=500ms"}, wantTiming: timing(time.Second, 500*time.Millisecond)},
		{name: "both given, equal", flags: []string{tcp, "--check-interval=1s", "--check-timeout=1s"}, wantTiming: timing(time.Second, time.Second)},
		{name: "both given, conflicting", flags: []string{tcp, "--check-interval=2s", "--check-timeout=3s"},
			wantErr: "--check-timeout (3s) must not be longer than --check-interval (2s)"},
		{name: "zero interval is still an error", flags: []string{tcp, "--check-interval=0s"}, wantErr: "--check-interval must be more than 0"},
		{name: "zero timeout is still an error", flags: []string{tcp, "--check-timeout=0s"}, wantErr: "--check-timeout must be more than 0"},
		{name: "check timing without a check", flags: []string{"--check-interval=500ms"},
			wantErr: "--check-interval: applies only with a check: --check-http, --check-tcp or --check-cmd"},
		{name: "check rise without a check", flags: []string{"--check-rise=2"}, wantErr: "--check-rise: applies only with a check"},

		{name: "log level default", wantLevel: "info"},
		{name: "--debug: the level follows", flags: []string{"--debug"}, wantLevel: "debug"},
		{name: "SR_DEBUG: the level follows", env: map[string]string{"SR_DEBUG": "1"}, wantLevel: "debug"},
		{name: "--log-level alone", flags: []string{"--log-level=warn"}, wantLevel: "warn"},
		{name: "--debug with --log-level=debug", flags: []string{"--debug", "--log-level=debug"}, wantLevel: "debug"},
		{name: "SR_DEBUG yields to --log-level", flags: []string{"--log-level=warn"}, env: map[string]string{"SR_DEBUG": "1"}, wantLevel: "warn"},
		{name: "--debug and --log-level=warn conflict", flags: []string{"--debug", "--log-level=warn"},
			wantErr: "--debug and --log-level=warn: --debug logs every transaction at debug level, which --log-level=warn hides; give one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := parseWrapper(t, nil, tt.flags...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%q: error %v, want one containing %q", tt.flags, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", tt.flags, err)
			}
			if tt.wantTiming != nil && (cfg.Check == nil || cfg.Check.Timing != *tt.wantTiming) {
				t.Errorf("%q: check %+v, want timing %+v", tt.flags, cfg.Check, *tt.wantTiming)
			}
			if tt.wantLevel != "" && cfg.Log.Level != tt.wantLevel {
				t.Errorf("%q: log level %q, want %q", tt.flags, cfg.Log.Level, tt.wantLevel)
			}
		})
	}
}

func TestAdvertiseFlags(t *testing.T) {
	twenty := make([]string, 20)
	for i := range twenty {
		twenty[i] = fmt.Sprintf("k%d=v", i)
	}
	nineteen := "--metadata=" + strings.Join(twenty[:19], ",")
	tests := []struct {
		name     string
		flags    []string
		wantIP   string // the selector, canonical; "" none
		wantMeta map[string]string
		wantErr  string
	}{
		{name: "none"},
		{name: "auto", flags: []string{"--advertise-ip=auto"}, wantIP: "auto"},
		{name: "interface, IPv6", flags: []string{"--advertise-ip=eth0:IPv6"}, wantIP: "eth0:ipv6"},
		{name: "CIDR", flags: []string{"--advertise-ip=10.1.2.3/8"}, wantIP: "10.0.0.0/8"},
		{name: "port", flags: []string{"--advertise-port=8080"}, wantMeta: map[string]string{"port": "8080"}},
		{name: "port beside other metadata", flags: []string{"--advertise-port=8080", "-m", "dc=lon"},
			wantMeta: map[string]string{"port": "8080", "dc": "lon"}},
		{name: "--metadata port= wins", flags: []string{"--advertise-port=8080", "-m", "port=80"}, wantMeta: map[string]string{"port": "80"}},
		{name: "--metadata ip= wins", flags: []string{"--advertise-ip=auto", "-m", "ip=192.0.2.1"}, wantMeta: map[string]string{"ip": "192.0.2.1"}},
		{name: "room for ip and port", flags: []string{"--advertise-ip=lo", "--advertise-port=1", "--metadata=" + strings.Join(twenty[:18], ",")},
			wantIP: "lo"},

		{name: "bad selector", flags: []string{"--advertise-ip=10.0.0.300/8"}, wantErr: `--advertise-ip: "10.0.0.300/8" is not a CIDR`},
		{name: "an address, not a selector", flags: []string{"--advertise-ip=10.0.0.5"}, wantErr: "give a fixed address with --metadata ip=10.0.0.5"},
		{name: "empty selector", flags: []string{"--advertise-ip="}, wantErr: "--advertise-ip: empty address selector"},
		{name: "port 0", flags: []string{"--advertise-port=0"}, wantErr: "--advertise-port: port 0 is out of range: want 1 to 65535"},
		{name: "port too big", flags: []string{"--advertise-port=65536"}, wantErr: "--advertise-port: port 65536 is out of range"},
		{name: "port not a number", flags: []string{"--advertise-port=http"}, wantErr: "--advertise-port"},
		{name: "no room for ip", flags: []string{"--advertise-ip=lo", "--metadata=" + strings.Join(twenty, ",")},
			wantErr: "--advertise-ip, --advertise-port: with their entries, metadata must have at most 20 entries, got 21"},
		{name: "no room for port", flags: []string{"--advertise-port=80", "--advertise-ip=lo", nineteen},
			wantErr: "must have at most 20 entries, got 21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseWrapper(t, nil, tt.flags...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%q: error %v, want one containing %q", tt.flags, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", tt.flags, err)
			}
			if got := cfg.AdvertiseIP.String(); got != tt.wantIP {
				t.Errorf("%q: selector %q, want %q", tt.flags, got, tt.wantIP)
			}
			if tt.wantMeta != nil && !maps.Equal(cfg.Service.Metadata, tt.wantMeta) {
				t.Errorf("%q: metadata %v, want %v", tt.flags, cfg.Service.Metadata, tt.wantMeta)
			}
		})
	}
}
