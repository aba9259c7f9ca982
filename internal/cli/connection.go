package cli

import (
	"fmt"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/secretfile"
)

// Connection holds the flags that say which registry to use and how to log
// in: sr-wrapper reads all of them; srctl, which speaks only the HTTP API,
// embeds HTTPConnection alone. Sharing the structs keeps the names,
// environment variables and meanings the same in both commands.
type Connection struct {
	HTTPConnection `embed:""`
	EtcdConnection `embed:""`
}

// HTTPConnection is the registry URL, the identity flags and the TLS
// files of the Service Registry API. The --registry help comes from the
// ${registry_help} variable, which each command sets.
type HTTPConnection struct {
	Registry   string `name:"registry" env:"SR_REGISTRY_URL" default:"${default_registry}" placeholder:"URL" help:"${registry_help} Several frontends of one http(s) registry: URL,URL,... (the first is used while it works; on no reply, a timeout or a 5xx the next). Default: ${default}."`
	AuthURL    string `name:"auth-url" placeholder:"URL" help:"Identity endpoint (Keystone v2.0; the client posts to URL/tokens). Default: the registry's own, <scheme>://<host>/v2.0 of the frontend in use."`
	Region     string `name:"region" enum:"us,uk," default:"" placeholder:"us|uk" help:"Use Rackspace's hosted identity endpoint for this region instead of --auth-url."`
	Username   string `name:"username" env:"SR_USERNAME" placeholder:"NAME" help:"Username for the identity endpoint."`
	APIKey     string `name:"api-key" placeholder:"KEY" help:"API key. Visible to other users in the process list: prefer --api-key-file or SR_API_KEY."`
	APIKeyFile string `name:"api-key-file" placeholder:"FILE" type:"path" help:"Read the API key from FILE (first line)."`
	CACert     string `name:"cacert" placeholder:"FILE" type:"path" help:"PEM bundle of the CAs that sign an https:// registry's certificate (a private CA), in place of the system's."`
	Cert       string `name:"cert" placeholder:"FILE" type:"path" help:"Client certificate (PEM) for an https:// registry that asks for one; with --key."`
	Key        string `name:"key" placeholder:"FILE" type:"path" help:"Private key (PEM) of --cert."`
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
	// APIKeyFile is --api-key-file when the key came from it: the client
	// reads it again at each authentication (a key rotated on disk).
	APIKeyFile string
	Insecure   bool
	Debug      bool
	// TLS names the PEM files of --cacert, --cert and --key, checked
	// for their framing only: the client parses them at its first
	// connection.
	TLS srapi.TLSFiles

	// Etcd is the etcd backend's configuration, for BackendEtcd.
	Etcd *etcdconf.Config
}

// Resolve validates the connection flags for the backend that --registry
// names and reads the secrets from their files or the environment. getenv
// is os.Getenv in production.
func (c *Connection) Resolve(getenv func(string) string) (*ResolvedConnection, error) {
	backend, err := RegistryBackend(c.Registry)
	if err != nil {
		return nil, err
	}
	if backend == BackendHTTP {
		r, err := c.HTTPConnection.Resolve(getenv)
		if err != nil {
			return nil, err
		}
		if err := c.EtcdConnection.checkUnused(c.Registry, getenv); err != nil {
			return nil, err
		}
		return r, nil
	}
	// The identity flags mean nothing to etcd, but a bad one is still
	// an error rather than a flag silently ignored.
	r, err := c.HTTPConnection.identity(getenv)
	if err != nil {
		return nil, err
	}
	if given := c.HTTPConnection.tlsFlags(); given != "" {
		return nil, fmt.Errorf("%s: apply to an https:// registry; for etcd use --etcd-cacert, --etcd-cert and --etcd-key", given)
	}
	r.Backend = BackendEtcd
	if r.Etcd, err = c.EtcdConnection.config(c.Registry, getenv); err != nil {
		return nil, err
	}
	return r, nil
}

// RegistryBackend says which backend a --registry URL names, by its
// scheme alone (the first URL's, for a list); each backend checks the rest.
// An etcd URL lists several members in its host part; a list of etcd URLs
// is refused with the form to use instead.
func RegistryBackend(registry string) (string, error) {
	first, _, _ := strings.Cut(registry, ",")
	first = strings.TrimSpace(first)
	u, err := url.Parse(first)
	if err != nil {
		return "", fmt.Errorf("--registry: %q is not a URL: %w", first, err)
	}
	switch u.Scheme {
	case "http", "https":
		return BackendHTTP, nil
	case "etcd", "etcds":
		if strings.Count(registry, "://") > 1 {
			return "", fmt.Errorf("--registry: an etcd registry is one URL naming all its members, %s://host:2379,host:2379[/prefix], not a list of URLs: %q", u.Scheme, registry)
		}
		return BackendEtcd, nil
	}
	return "", fmt.Errorf("--registry: unknown scheme %q in %q; use http://, https://, etcd:// or etcds://", u.Scheme, registry)
}

// Resolve validates the flags for an http:// or https:// --registry, the
// Service Registry API: the URLs as the client will use them, and a
// username and API key, which the API requires.
func (c *HTTPConnection) Resolve(getenv func(string) string) (*ResolvedConnection, error) {
	if err := (srapi.Config{RegistryURL: c.Registry}).Validate(); err != nil {
		return nil, fmt.Errorf("--registry: %w", err)
	}
	r, err := c.identity(getenv)
	if err != nil {
		return nil, err
	}
	r.Backend = BackendHTTP
	if r.TLS, err = c.tlsFiles(r.AuthURL); err != nil {
		return nil, err
	}
	if r.Username == "" {
		return nil, fmt.Errorf("--username: required for an http(s) registry (or set SR_USERNAME)")
	}
	if r.APIKey == "" {
		return nil, fmt.Errorf("--api-key: required for an http(s) registry (or --api-key-file, or SR_API_KEY)")
	}
	return r, nil
}

// tlsFiles validates --cacert, --cert and --key for an http(s) registry
// whose identity endpoint is authURL ("" for the registry's own): they need
// an https:// URL, --cacert contradicts --insecure-skip-verify, and each
// file is read and its PEM framing checked.
func (c *HTTPConnection) tlsFiles(authURL string) (srapi.TLSFiles, error) {
	files := srapi.TLSFiles{CACert: c.CACert, Cert: c.Cert, Key: c.Key}
	given := c.tlsFlags()
	if given == "" {
		return files, nil
	}
	if !strings.HasPrefix(strings.TrimSpace(c.Registry), "https://") && !strings.HasPrefix(authURL, "https://") {
		return srapi.TLSFiles{}, fmt.Errorf("%s: apply to an https:// registry, and %q is not one", given, c.Registry)
	}
	if c.CACert != "" && c.Insecure {
		return srapi.TLSFiles{}, fmt.Errorf("--cacert and --insecure-skip-verify: give one, not both (the latter verifies nothing)")
	}
	if err := files.Check(); err != nil {
		return srapi.TLSFiles{}, err
	}
	return files, nil
}

// tlsFlags names the TLS file flags given, "" for none.
func (c *HTTPConnection) tlsFlags() string {
	var given []string
	for _, f := range []struct{ name, value string }{{"--cacert", c.CACert}, {"--cert", c.Cert}, {"--key", c.Key}} {
		if f.value != "" {
			given = append(given, f.name)
		}
	}
	return strings.Join(given, ", ")
}

// identity validates the identity flags, none of them required, and reads
// the API key.
func (c *HTTPConnection) identity(getenv func(string) string) (*ResolvedConnection, error) {
	r := &ResolvedConnection{
		RegistryURL: c.Registry,
		Username:    c.Username,
		Insecure:    c.Insecure,
		Debug:       c.Debug,
	}
	if c.AuthURL != "" && c.Region != "" {
		return nil, fmt.Errorf("--auth-url and --region: give one, not both")
	}
	if c.Region != "" {
		var err error
		if r.AuthURL, err = srapi.AuthURLForRegion(c.Region); err != nil {
			return nil, fmt.Errorf("--region: %w", err)
		}
	}
	if c.AuthURL != "" {
		// The registry URL is left to its default: only the auth URL
		// is checked here.
		if err := (srapi.Config{AuthURL: c.AuthURL}).Validate(); err != nil {
			return nil, fmt.Errorf("--auth-url: %w", err)
		}
		r.AuthURL = strings.TrimSuffix(c.AuthURL, "/")
	}
	key, err := secret("--api-key", c.APIKey, "--api-key-file", c.APIKeyFile, "SR_API_KEY", getenv)
	if err != nil {
		return nil, err
	}
	r.APIKey = key
	if c.APIKey == "" {
		r.APIKeyFile = c.APIKeyFile
	}
	return r, nil
}

// config is the etcd backend's configuration for an etcd:// or etcds://
// registry.
func (c *EtcdConnection) config(registry string, getenv func(string) string) (*etcdconf.Config, error) {
	return c.Config("--registry", registry, getenv)
}

// Config is the etcd configuration for url, the etcd:// or etcds:// value
// of flag (--registry for sr-wrapper, --store for sr-registry), with these
// TLS and authentication flags, the password read from its file or
// SR_ETCD_PASSWORD. getenv is os.Getenv in production.
func (c *EtcdConnection) Config(flag, url string, getenv func(string) string) (*etcdconf.Config, error) {
	pw, err := c.password(getenv)
	if err != nil {
		return nil, err
	}
	cfg, err := etcdconf.ParseURLOf(flag, url)
	if err != nil {
		return nil, err
	}
	cfg.CACert, cfg.Cert, cfg.Key = c.EtcdCACert, c.EtcdCert, c.EtcdKey
	cfg.Username, cfg.Password = c.EtcdUsername, pw
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// checkUnused refuses etcd flags (or SR_ETCD_PASSWORD) given with a
// registry that is not etcd, where they would be silently ignored.
func (c *EtcdConnection) checkUnused(registry string, getenv func(string) string) error {
	inUse, err := c.InUse(getenv)
	if err != nil {
		return err
	}
	if inUse {
		return fmt.Errorf("--etcd-*: only apply to an etcd:// registry, not %q", registry)
	}
	return nil
}

// InUse reports whether any etcd flag (or SR_ETCD_PASSWORD) is set, for
// refusing them where no etcd is used.
func (c *EtcdConnection) InUse(getenv func(string) string) (bool, error) {
	pw, err := c.password(getenv)
	if err != nil {
		return false, err
	}
	return c.EtcdCACert != "" || c.EtcdCert != "" || c.EtcdKey != "" || c.EtcdUsername != "" || pw != "", nil
}

func (c *EtcdConnection) password(getenv func(string) string) (string, error) {
	return secret("--etcd-password", c.EtcdPassword, "--etcd-password-file", c.EtcdPasswordFile, "SR_ETCD_PASSWORD", getenv)
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
		line, err := secretfile.Read(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", fileFlag, err)
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
		APIKeyFile:         r.APIKeyFile,
		InsecureSkipVerify: r.Insecure,
		TLS:                r.TLS,
		Logger:             log,
		Debug:              r.Debug,
		UserAgent:          userAgent,
	}
}
