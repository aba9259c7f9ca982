package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

func TestConnectionFlags(t *testing.T) {
	ca := tlstest.NewCA(t)
	caFile := ca.File(t)
	cert, key := ca.Issue(t, tlstest.Client("wrapper")).Files(t)
	const https = "--registry=https://127.0.0.1:8443/v1.0"
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

		{name: "several frontends", flags: []string{"--registry=http://10.0.0.1:8181/v1.0, http://10.0.0.2:8181/v1.0"},
			check: func(r *ResolvedConnection) bool {
				return r.Backend == BackendHTTP && r.RegistryURL == "http://10.0.0.1:8181/v1.0, http://10.0.0.2:8181/v1.0"
			}},
		{name: "etcd keeps its own list of members", flags: []string{"--registry=etcd://127.0.0.1:2379,127.0.0.2:2379/sr"},
			check: func(r *ResolvedConnection) bool {
				return r.Backend == BackendEtcd && len(r.Etcd.Endpoints) == 2 && r.Etcd.Prefix == "/sr"
			}},
		{name: "private CA", flags: []string{https, "--cacert=" + caFile},
			check: func(r *ResolvedConnection) bool { return r.TLS == srapi.TLSFiles{CACert: caFile} }},
		{name: "client certificate, several frontends",
			flags: []string{"--registry=https://127.0.0.1:8443/v1.0,https://127.0.0.2:8443/v1.0", "--cacert=" + caFile, "--cert=" + cert, "--key=" + key},
			check: func(r *ResolvedConnection) bool { return r.TLS == srapi.TLSFiles{CACert: caFile, Cert: cert, Key: key} }},
		{name: "client certificate with the system's roots", flags: []string{https, "--cert=" + cert, "--key=" + key},
			check: func(r *ResolvedConnection) bool { return r.TLS == srapi.TLSFiles{Cert: cert, Key: key} }},

		{name: "list of etcd URLs", flags: []string{"--registry=etcd://127.0.0.1:2379,etcd://127.0.0.2:2379"},
			wantErr: "--registry: an etcd registry is one URL naming all its members, etcd://host:2379,host:2379[/prefix], not a list of URLs"},
		{name: "list mixing http and https", flags: []string{"--registry=http://10.0.0.1:8181/v1.0,https://10.0.0.2:8181/v1.0"},
			wantErr: `--registry: registry URL 2 of 2 "https://10.0.0.2:8181/v1.0": every URL of the list must have the same scheme, and the first is http://`},
		{name: "list mixing http and etcd", flags: []string{"--registry=http://10.0.0.1:8181/v1.0,etcd://10.0.0.2:2379"},
			wantErr: `--registry: registry URL 2 of 2 "etcd://10.0.0.2:2379": scheme must be http or https`},
		{name: "list with a stray comma", flags: []string{"--registry=http://10.0.0.1:8181/v1.0,"},
			wantErr: "--registry: registry URL 2 of 2 is empty (a stray comma?)"},
		{name: "list with a bad URL", flags: []string{"--registry=http://10.0.0.1:8181/v1.0,http://10.0.0.2:8181/v1.0?x=1"},
			wantErr: `--registry: registry URL 2 of 2 "http://10.0.0.2:8181/v1.0?x=1": must not have a query or fragment`},
		{name: "CA for plain HTTP", flags: []string{"--cacert=" + caFile},
			wantErr: `--cacert: apply to an https:// registry, and "http://127.0.0.1:8181/v1.0" is not one`},
		{name: "CA for etcd", flags: []string{"--registry=etcds://127.0.0.1:2379", "--cacert=" + caFile},
			wantErr: "--cacert: apply to an https:// registry; for etcd use --etcd-cacert, --etcd-cert and --etcd-key"},
		{name: "CA and no verification", flags: []string{https, "--cacert=" + caFile, "--insecure-skip-verify"},
			wantErr: "--cacert and --insecure-skip-verify: give one, not both"},
		{name: "missing CA file", flags: []string{https, "--cacert=/nonexistent/ca.pem"},
			wantErr: "--cacert: open /nonexistent/ca.pem: no such file or directory"},
		{name: "no certificate in the CA file", flags: []string{https, "--cacert=" + key},
			wantErr: "--cacert: no PEM certificate in " + key},
		{name: "certificate without key", flags: []string{https, "--cert=" + cert},
			wantErr: "--cert and --key: give both or neither"},
		{name: "key without certificate", flags: []string{https, "--key=" + key},
			wantErr: "--cert and --key: give both or neither"},
		{name: "no key in the key file", flags: []string{https, "--cert=" + cert, "--key=" + cert},
			wantErr: "--key: no PEM private key in " + cert},
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

// TestRegistryListFromTheEnvironment: SR_REGISTRY_URL takes the list as
// --registry does.
func TestRegistryListFromTheEnvironment(t *testing.T) {
	const list = "http://10.0.0.1:8181/v1.0,http://10.0.0.2:8181/v1.0"
	t.Setenv("SR_REGISTRY_URL", list)
	args := []string{"--id=web-1", "--username=alice", "--api-key=k", "--", "sleep", "1"}
	cfg, err := ParseWrapper(args, buildinfo.Info{Version: "test"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Connection.RegistryURL != list {
		t.Fatalf("registry %q, want %q", cfg.Connection.RegistryURL, list)
	}
	c, err := srapi.NewClient(cfg.Connection.SRAPIConfig(nil, "test"))
	if err != nil {
		t.Fatal(err)
	}
	if c.RegistryURL() != list || c.TokensURL() != "http://10.0.0.1:8181/v2.0/tokens,http://10.0.0.2:8181/v2.0/tokens" {
		t.Fatalf("client of %s, tokens from %s", c.RegistryURL(), c.TokensURL())
	}

	t.Setenv("SR_REGISTRY_URL", list+",ftp://10.0.0.3/v1.0")
	if _, err := ParseWrapper(args, buildinfo.Info{Version: "test"}, func(string) string { return "" }, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), `--registry: registry URL 3 of 3 "ftp://10.0.0.3/v1.0": scheme must be http or https`) {
		t.Fatalf("bad list in the environment: %v", err)
	}
}

// The client is told the key file only when the key came from it, so
// that it reads the file again at each authentication; a key given by
// flag or environment is the one it keeps.
func TestAPIKeyFileIsPassedOnOnlyWhenUsed(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		args          []string
		env           map[string]string
		key, fileSeen string
	}{
		{"file", []string{"--api-key-file=" + keyFile}, nil, "from-file", keyFile},
		{"flag", []string{"--api-key=from-flag"}, nil, "from-flag", ""},
		{"environment", nil, map[string]string{"SR_API_KEY": "from-env"}, "from-env", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--id=web-1", "--registry=http://127.0.0.1:8181/v1.0", "--username=alice"}, tt.args...)
			args = append(args, "--", "sleep", "1")
			cfg, err := ParseWrapper(args, buildinfo.Info{Version: "test"}, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			sc := cfg.Connection.SRAPIConfig(nil, "test")
			if sc.APIKey != tt.key || sc.APIKeyFile != tt.fileSeen {
				t.Fatalf("key %q, key file %q; want %q, %q", sc.APIKey, sc.APIKeyFile, tt.key, tt.fileSeen)
			}
		})
	}
}
