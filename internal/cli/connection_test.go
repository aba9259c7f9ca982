package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

func TestConnectionFlags(t *testing.T) {
	tests := []struct {
		name    string
		flags   []string // after a valid http(s) command line; the last --registry wins
		env     map[string]string
		check   func(*ResolvedConnection) bool
		wantErr string
	}{
		{name: "http", check: func(r *ResolvedConnection) bool {
			return r.Backend == BackendHTTP && r.Username == "alice" && r.APIKey == "k" && r.AuthURL == "" && r.Etcd == nil
		}},
		{name: "auth URL loses its trailing slash", flags: []string{"--auth-url=http://127.0.0.1:5000/v2.0/"},
			check: func(r *ResolvedConnection) bool { return r.AuthURL == "http://127.0.0.1:5000/v2.0" }},
		{name: "region", flags: []string{"--region=uk"},
			check: func(r *ResolvedConnection) bool { return r.AuthURL == srapi.RackspaceUKAuthURL }},
		{name: "etcd needs no API credentials", flags: []string{"--registry=etcd://127.0.0.1:2379/sr", "--etcd-username=root"},
			env: map[string]string{"SR_ETCD_PASSWORD": "pw"},
			check: func(r *ResolvedConnection) bool {
				return r.Backend == BackendEtcd && r.Etcd != nil && r.Etcd.Username == "root" && r.Etcd.Password == "pw"
			}},

		{name: "unknown scheme", flags: []string{"--registry=ftp://127.0.0.1/v1.0"}, wantErr: `--registry: unknown scheme "ftp"`},
		{name: "registry without a host", flags: []string{"--registry=http:///v1.0"}, wantErr: "--registry: "},
		{name: "registry with a query", flags: []string{"--registry=http://127.0.0.1:8181/v1.0?a=b"}, wantErr: "must not have a query or fragment"},
		{name: "registry with user info", flags: []string{"--registry=http://bob:pw@127.0.0.1:8181/v1.0"}, wantErr: "--registry: "},
		{name: "auth URL not http", flags: []string{"--auth-url=ftp://127.0.0.1/v2.0"}, wantErr: "--auth-url: "},
		{name: "auth URL without a host", flags: []string{"--auth-url=http:///v2.0"}, wantErr: "--auth-url: "},
		{name: "auth URL and region", flags: []string{"--auth-url=http://127.0.0.1/v2.0", "--region=us"}, wantErr: "--auth-url and --region: give one, not both"},
		{name: "bad auth URL with etcd too", flags: []string{"--registry=etcd://127.0.0.1:2379/sr", "--auth-url=ftp://x"}, wantErr: "--auth-url: "},
		{name: "etcd flag with an http registry", flags: []string{"--etcd-username=root"}, wantErr: "--etcd-*: only apply to an etcd:// registry"},
		{name: "etcd password in the environment with an http registry", env: map[string]string{"SR_ETCD_PASSWORD": "pw"},
			wantErr: "--etcd-*: only apply to an etcd:// registry"},
		{name: "both etcd password flags", flags: []string{"--registry=etcd://127.0.0.1:2379/sr", "--etcd-password=a", "--etcd-password-file=/nonexistent"},
			wantErr: "--etcd-password and --etcd-password-file: give one, not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseWrapper(t, tt.env, tt.flags...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%q: error %v, want one containing %q", tt.flags, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q: %v", tt.flags, err)
			}
			if !tt.check(cfg.Connection) {
				t.Fatalf("%q: connection %+v", tt.flags, *cfg.Connection)
			}
		})
	}
}

func TestConnectionNeedsAPICredentialsForHTTP(t *testing.T) {
	none := func(string) string { return "" }
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--api-key=k"}, "--username: required"},
		{[]string{"--username=alice"}, "--api-key: required"},
	} {
		args := append([]string{"--id=web-1", "--registry=http://127.0.0.1:8181/v1.0"}, tt.args...)
		args = append(args, "--", "sleep", "1")
		_, err := ParseWrapper(args, buildinfo.Info{Version: "test"}, none, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%q: error %v, want one containing %q", tt.args, err, tt.wantErr)
		}
	}
}
