// Package etcdconf is the configuration of the etcd backend: the
// etcd://host:2379[,host:2379...][/prefix] URL, TLS files and credentials,
// and their validation. It is apart from package etcd so that flag
// validation, and a wrapper binary without the etcd client (whose gRPC and
// protobuf start-up costs milliseconds and megabytes at every start), can
// check an etcd:// registry without linking that client.
package etcdconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DefaultPrefix is the key prefix when the URL has no path.
const DefaultPrefix = "/sr"

// Defaults of Config's timeouts.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultCallTimeout = 5 * time.Second
)

// Config describes how to reach etcd and where to keep the keys. ParseURL
// fills Endpoints, Prefix and TLS from the --registry URL; the other fields
// come from their own flags.
type Config struct {
	// Endpoints are the client addresses of the etcd members, host:port
	// each (an IPv6 host in brackets). At least one; with several, calls
	// go to whichever members answer.
	Endpoints []string
	// Prefix is the key prefix, "/sr" when empty. It starts with "/" and
	// has no trailing "/".
	Prefix string
	// TLS connects with TLS, verifying the members' certificates against
	// CACert, or the system's roots when CACert is empty. It is implied by
	// any of CACert, Cert and Key.
	TLS bool
	// CACert is a PEM file of the CAs that sign the members' certificates.
	CACert string
	// Cert and Key are PEM files of a client certificate and its key, for
	// members that require client certificates. Both or neither. They are
	// read once, by New.
	Cert, Key string
	// Username and Password authenticate to etcd when its auth is on.
	// Both or neither.
	Username, Password string
	// DialTimeout bounds connecting and authenticating; 0 means 5 s.
	DialTimeout time.Duration
	// CallTimeout bounds each etcd call, whatever the caller's context
	// allows; 0 means 5 s. Heartbeats are also bounded by the session's
	// TTL, after which a late answer is of no use.
	CallTimeout time.Duration
	// Logger receives the backend's debug lines and the etcd client's
	// errors (not its warnings, which repeat on every retry while etcd is
	// unreachable); nil means none.
	Logger *zap.Logger
}

// ParseURL parses the --registry form
//
//	etcd://host:port[,host:port...][/prefix]
//	etcds://host:port[,host:port...][/prefix]
//
// etcds:// means TLS, as https:// does; etcd:// also uses TLS when a CA or
// client certificate is configured (Config.TLS). The prefix defaults to
// /sr. Every endpoint must be host:port with a port in 1..65535; user
// names, passwords, queries and fragments are refused, since credentials in
// a URL end up in process listings and logs.
func ParseURL(s string) (Config, error) { return ParseURLOf("--registry", s) }

// ParseURLOf is ParseURL for a URL given as the value of flag, which its
// errors name.
func ParseURLOf(flag, s string) (Config, error) {
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf(flag+": "+format, args...)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return fail("must look like etcd://host:2379[,host:2379...][/prefix], got %q", s)
	}
	var cfg Config
	switch strings.ToLower(scheme) {
	case "etcd":
	case "etcds":
		cfg.TLS = true
	default:
		return fail("scheme must be etcd:// or etcds://, got %q", scheme+"://")
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return fail("must not have a query or fragment (%q in %q)", rest[i:i+1], s)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if strings.Contains(hosts, "@") {
		return fail("must not contain a user name or password; use --etcd-username and --etcd-password")
	}
	if hosts == "" {
		return fail("needs at least one endpoint host:port, got %q", s)
	}
	for ep := range strings.SplitSeq(hosts, ",") {
		if err := validateEndpoint(ep); err != nil {
			return fail("%v", err)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	prefix, err := normalizePrefix("/" + path)
	if err != nil {
		return fail("%v", err)
	}
	cfg.Prefix = prefix
	return cfg, nil
}

// validateEndpoint checks one host:port.
func validateEndpoint(ep string) error {
	const rule = "must be host:port (like 10.0.0.5:2379 or [fd00::5]:2379)"
	if ep == "" {
		return fmt.Errorf("empty endpoint (a stray comma?); each endpoint %s", rule)
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil || host == "" {
		return fmt.Errorf("endpoint %q %s", ep, rule)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return fmt.Errorf("endpoint %q: port must be a number in 1..65535, got %q", ep, port)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if strings.Contains(ep, "[") {
		return fmt.Errorf("endpoint %q: %q in brackets is not an IPv6 address", ep, host)
	}
	if !validHostname(host) {
		return fmt.Errorf("endpoint %q: host %q must be an IP address or a DNS name (letters, digits, '-', '_' and '.')", ep, host)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// normalizePrefix turns "", "/" and "/sr/" into "/sr" and checks the rest:
// no empty segments (they make keys that etcdctl users mistype), no spaces
// or control characters.
func normalizePrefix(p string) (string, error) {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return DefaultPrefix, nil
	}
	if p[0] != '/' {
		return "", fmt.Errorf("prefix %q must start with /", p)
	}
	if strings.Contains(p, "//") {
		return "", fmt.Errorf("prefix %q must not contain an empty segment (//)", p)
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f {
			return "", fmt.Errorf("prefix %q must not contain spaces or control characters", p)
		}
	}
	return p, nil
}

// WithDefaults checks the combination of fields and fills in the defaults.
func (c Config) WithDefaults() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, fmt.Errorf("--registry: needs at least one etcd endpoint host:port")
	}
	for _, ep := range c.Endpoints {
		if err := validateEndpoint(ep); err != nil {
			return c, fmt.Errorf("--registry: %w", err)
		}
	}
	p := c.Prefix
	if p != "" && p[0] != '/' {
		p = "/" + p
	}
	prefix, err := normalizePrefix(p)
	if err != nil {
		return c, fmt.Errorf("--registry: %w", err)
	}
	c.Prefix = prefix
	if (c.Username == "") != (c.Password == "") {
		return c, fmt.Errorf("--etcd-username and --etcd-password must be given together")
	}
	if (c.Cert == "") != (c.Key == "") {
		return c, fmt.Errorf("--etcd-cert and --etcd-key must be given together")
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c, nil
}

// TLSConfig loads the TLS files, or returns nil when TLS is not used.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.UsesTLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert: no PEM certificate in %s", c.CACert)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert %s, --etcd-key %s: %w", c.Cert, c.Key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// UsesTLS reports whether connections use TLS.
func (c Config) UsesTLS() bool {
	return c.TLS || c.CACert != "" || c.Cert != "" || c.Key != ""
}

// String returns cfg in --registry URL form, without credentials.
func (c Config) String() string {
	scheme := "etcd"
	if c.UsesTLS() {
		scheme = "etcds"
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return scheme + "://" + strings.Join(c.Endpoints, ",") + prefix
}

// Validate checks the configuration the way the backend will use it,
// loading the TLS files, without connecting: a bad file is a usage error,
// found before anything starts.
func (c Config) Validate() error {
	c, err := c.WithDefaults()
	if err != nil {
		return err
	}
	_, err = c.TLSConfig()
	return err
}
