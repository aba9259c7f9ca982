package cli

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// Connection holds the flags that say which registry to use and how to log
// in: sr-wrapper reads all of them; srctl, which speaks only the HTTP API,
// embeds HTTPConnection alone. Sharing the structs keeps the names,
// environment variables and meanings the same in both commands.
type Connection struct {
	HTTPConnection `embed:""`
	EtcdConnection `embed:""`
}

// HTTPConnection is the registry URL and the identity flags of the Service
// Registry API. The --registry help comes from the ${registry_help}
// variable, which each command sets.
type HTTPConnection struct {
	Registry   string `name:"registry" env:"SR_REGISTRY_URL" default:"${default_registry}" placeholder:"URL" help:"${registry_help} Default: ${default}."`
	AuthURL    string `name:"auth-url" placeholder:"URL" help:"Identity endpoint (Keystone v2.0; the client posts to URL/tokens). Default: the registry's own, <scheme>://<host>/v2.0."`
	Region     string `name:"region" enum:"us,uk," default:"" placeholder:"us|uk" help:"Use Rackspace's hosted identity endpoint for this region instead of --auth-url."`
	Username   string `name:"username" env:"SR_USERNAME" placeholder:"NAME" help:"Username for the identity endpoint."`
	APIKey     string `name:"api-key" placeholder:"KEY" help:"API key. Visible to other users in the process list: prefer --api-key-file or SR_API_KEY."`
	APIKeyFile string `name:"api-key-file" placeholder:"FILE" type:"path" help:"Read the API key from FILE (first line)."`
	Insecure   bool   `name:"insecure-skip-verify" help:"Do not verify the registry's TLS certificate. For testing only."`
	Debug      bool   `name:"debug" env:"SR_DEBUG" help:"Log every registry transaction (method, URL, bodies, status) with secrets redacted."`
}

// EtcdConnection is how to reach an etcd:// registry securely.
type EtcdConnection struct {
	EtcdCACert       string `name:"etcd-cacert" placeholder:"FILE" type:"path" group:"etcd" help:"CA bundle to verify etcd servers with."`
	EtcdCert         string `name:"etcd-cert" placeholder:"FILE" type:"path" group:"etcd" help:"Client certificate for etcd."`
	EtcdKey          string `name:"etcd-key" placeholder:"FILE" type:"path" group:"etcd" help:"Client key for etcd."`
	EtcdUsername     string `name:"etcd-username" env:"SR_ETCD_USERNAME" placeholder:"NAME" group:"etcd" help:"etcd user."`
	EtcdPassword     string `name:"etcd-password" placeholder:"PASSWORD" group:"etcd" help:"etcd password. Prefer --etcd-password-file or SR_ETCD_PASSWORD."`
	EtcdPasswordFile string `name:"etcd-password-file" placeholder:"FILE" type:"path" group:"etcd" help:"Read the etcd password from FILE (first line)."`
}

// Environment variables that carry secrets. The wrapper removes them from
// its child's environment.
var secretEnv = []string{"SR_API_KEY", "SR_ETCD_PASSWORD"}

// SecretEnv returns the names of the environment variables that hold
// secrets and must not reach a wrapped program.
func SecretEnv() []string { return append([]string(nil), secretEnv...) }

// Backend kinds.
const (
	BackendHTTP = "http"
	BackendEtcd = "etcd"
)

// ResolvedConnection is a validated Connection with its secrets read.
type ResolvedConnection struct {
	Backend     string // BackendHTTP or BackendEtcd
	RegistryURL string
	AuthURL     string
	Username    string
	APIKey      string
	Insecure    bool
	Debug       bool

	// Etcd is the etcd backend's configuration, for BackendEtcd.
	Etcd *etcdconf.Config
}

// Resolve validates the connection flags and reads the secrets from their
// files or the environment. getenv is os.Getenv in production.
func (c *Connection) Resolve(getenv func(string) string) (*ResolvedConnection, error) {
	r := &ResolvedConnection{
		RegistryURL: c.Registry,
		Username:    c.Username,
		Insecure:    c.Insecure,
		Debug:       c.Debug,
	}
	u, err := url.Parse(c.Registry)
	if err != nil {
		return nil, fmt.Errorf("--registry: %q is not a URL: %w", c.Registry, err)
	}
	switch u.Scheme {
	case "http", "https":
		r.Backend = BackendHTTP
		if u.Host == "" {
			return nil, fmt.Errorf("--registry: %q has no host; expected e.g. %s", c.Registry, srapi.DefaultRegistryURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--registry: %q must not have a query or fragment", c.Registry)
		}
	case "etcd", "etcds":
		r.Backend = BackendEtcd
	default:
		return nil, fmt.Errorf("--registry: unknown scheme %q in %q; use http://, https://, etcd:// or etcds://", u.Scheme, c.Registry)
	}

	if c.AuthURL != "" && c.Region != "" {
		return nil, fmt.Errorf("--auth-url and --region: give one, not both")
	}
	if c.Region != "" {
		if r.AuthURL, err = srapi.AuthURLForRegion(c.Region); err != nil {
			return nil, fmt.Errorf("--region: %w", err)
		}
	}
	if c.AuthURL != "" {
		a, err := url.Parse(c.AuthURL)
		if err != nil || (a.Scheme != "http" && a.Scheme != "https") || a.Host == "" {
			return nil, fmt.Errorf("--auth-url: %q must be an http:// or https:// URL", c.AuthURL)
		}
		r.AuthURL = strings.TrimSuffix(c.AuthURL, "/")
	}

	key, err := secret("--api-key", c.APIKey, "--api-key-file", c.APIKeyFile, "SR_API_KEY", getenv)
	if err != nil {
		return nil, err
	}
	r.APIKey = key
	pw, err := secret("--etcd-password", c.EtcdPassword, "--etcd-password-file", c.EtcdPasswordFile, "SR_ETCD_PASSWORD", getenv)
	if err != nil {
		return nil, err
	}

	if r.Backend == BackendHTTP {
		if r.Username == "" {
			return nil, fmt.Errorf("--username: required for an http(s) registry (or set SR_USERNAME)")
		}
		if r.APIKey == "" {
			return nil, fmt.Errorf("--api-key: required for an http(s) registry (or --api-key-file, or SR_API_KEY)")
		}
	}
	if r.Backend == BackendHTTP {
		if err := r.SRAPIConfig(nil, "").Validate(); err != nil {
			return nil, fmt.Errorf("--registry/--auth-url: %w", err)
		}
	}
	if r.Backend == BackendEtcd {
		cfg, err := etcdconf.ParseURL(c.Registry)
		if err != nil {
			return nil, err
		}
		cfg.CACert, cfg.Cert, cfg.Key = c.EtcdCACert, c.EtcdCert, c.EtcdKey
		cfg.Username, cfg.Password = c.EtcdUsername, pw
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		r.Etcd = &cfg
	} else if c.EtcdCACert != "" || c.EtcdCert != "" || c.EtcdKey != "" || c.EtcdUsername != "" || pw != "" {
		return nil, fmt.Errorf("--etcd-*: only apply to an etcd:// registry, not %q", c.Registry)
	}
	return r, nil
}

// secret reads a secret from its flag, its file flag or its environment
// variable, in that order of precedence; giving both the flag and the file
// is an error because one of them would be silently ignored.
func secret(flag, value, fileFlag, file, env string, getenv func(string) string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%s and %s: give one, not both", flag, fileFlag)
	}
	if value != "" {
		return value, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", fileFlag, err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		line = strings.TrimSpace(line)
		if line == "" {
			return "", fmt.Errorf("%s: %s is empty", fileFlag, file)
		}
		return line, nil
	}
	return getenv(env), nil
}

// SRAPIConfig is the HTTP client configuration for this connection.
func (r *ResolvedConnection) SRAPIConfig(log *zap.Logger, userAgent string) srapi.Config {
	return srapi.Config{
		RegistryURL:        r.RegistryURL,
		AuthURL:            r.AuthURL,
		Username:           r.Username,
		APIKey:             r.APIKey,
		InsecureSkipVerify: r.Insecure,
		Logger:             log,
		Debug:              r.Debug,
		UserAgent:          userAgent,
	}
}
