package etcdconf_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/etcdtest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in        string
		endpoints []string
		prefix    string
		tls       bool
	}{
		{"etcd://127.0.0.1:2379", []string{"127.0.0.1:2379"}, "/sr", false},
		{"etcd://127.0.0.1:2379/", []string{"127.0.0.1:2379"}, "/sr", false},
		{"etcd://a:2379,b.example.com:2380,c_1:1/prod/sr/", []string{"a:2379", "b.example.com:2380", "c_1:1"}, "/prod/sr", false},
		{"etcds://etcd-0:2379/x", []string{"etcd-0:2379"}, "/x", true},
		{"ETCD://[::1]:2379,[fd00::5]:65535", []string{"[::1]:2379", "[fd00::5]:65535"}, "/sr", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			cfg, err := etcdconf.ParseURL(tt.in)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if !slices.Equal(cfg.Endpoints, tt.endpoints) || cfg.Prefix != tt.prefix || cfg.TLS != tt.tls {
				t.Errorf("got endpoints %q prefix %q tls %v; want %q %q %v",
					cfg.Endpoints, cfg.Prefix, cfg.TLS, tt.endpoints, tt.prefix, tt.tls)
			}
		})
	}
}

func TestParseURLRejects(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1:2379", "must look like etcd://"},
		{"http://127.0.0.1:2379", "scheme must be etcd:// or etcds://"},
		{"etcd://", "at least one endpoint"},
		{"etcd:///sr", "at least one endpoint"},
		{"etcd://127.0.0.1", `endpoint "127.0.0.1" must be host:port`},
		{"etcd://a:2379,,b:2379", "empty endpoint"},
		{"etcd://a:2379,", "empty endpoint"},
		{"etcd://a:0", "port must be a number in 1..65535"},
		{"etcd://a:65536", "port must be a number in 1..65535"},
		{"etcd://a:+80", "port must be a number in 1..65535"},
		{"etcd://a:http", "port must be a number in 1..65535"},
		{"etcd://:2379", "must be host:port"},
		{"etcd://::1:2379", "must be host:port"},
		{"etcd://[nothost]:2379", "is not an IPv6 address"},
		{"etcd://bad-host-:2379", "must be an IP address or a DNS name"},
		{"etcd://a b:2379", "must be an IP address or a DNS name"},
		{"etcd://user:pw@a:2379", "must not contain a user name or password"},
		{"etcd://a:2379/sr?x=1", "must not have a query or fragment"},
		{"etcd://a:2379#frag", "must not have a query or fragment"},
		{"etcd://a:2379//sr", "empty segment"},
		{"etcd://a:2379/s r", "spaces or control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := etcdconf.ParseURL(tt.in)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded, want an error containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "--registry: ") {
				t.Errorf("ParseURL(%q) = %q, want an error starting with --registry: and containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestValidateRejectsBadConfig(t *testing.T) {
	files := etcdtest.NewTLSFiles(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := []string{"127.0.0.1:2379"}
	tests := []struct {
		name string
		cfg  etcdconf.Config
		want string
	}{
		{"no endpoints", etcdconf.Config{}, "at least one etcd endpoint"},
		{"bad endpoint", etcdconf.Config{Endpoints: []string{"x"}}, "must be host:port"},
		{"bad prefix", etcdconf.Config{Endpoints: ep, Prefix: "/a//b"}, "empty segment"},
		{"user without password", etcdconf.Config{Endpoints: ep, Username: "u"}, "--etcd-username and --etcd-password must be given together"},
		{"password without user", etcdconf.Config{Endpoints: ep, Password: "p"}, "--etcd-username and --etcd-password must be given together"},
		{"cert without key", etcdconf.Config{Endpoints: ep, Cert: files.ClientCert}, "--etcd-cert and --etcd-key must be given together"},
		{"missing CA file", etcdconf.Config{Endpoints: ep, CACert: filepath.Join(files.Dir, "nope.pem")}, "--etcd-cacert: open"},
		{"CA file without PEM", etcdconf.Config{Endpoints: ep, CACert: notPEM}, "--etcd-cacert: no PEM certificate"},
		{"key does not match cert", etcdconf.Config{Endpoints: ep, Cert: files.ClientCert, Key: files.ServerKey}, "--etcd-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestStringHasNoSecrets(t *testing.T) {
	files := etcdtest.NewTLSFiles(t)
	tests := []struct {
		cfg  etcdconf.Config
		want string
	}{
		{etcdconf.Config{Endpoints: []string{"a:1", "b:2"}}, "etcd://a:1,b:2/sr"},
		{etcdconf.Config{Endpoints: []string{"a:1"}, Prefix: "p/", Username: "alice", Password: "s3cret"}, "etcd://a:1/p"},
		{etcdconf.Config{Endpoints: []string{"a:1"}, CACert: files.CACert}, "etcds://a:1/sr"},
	}
	for _, tt := range tests {
		cfg, err := tt.cfg.WithDefaults()
		if err != nil {
			t.Fatalf("WithDefaults: %v", err)
		}
		if got := cfg.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
