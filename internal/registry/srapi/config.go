package srapi

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Identity endpoints of Rackspace's hosted service, as Config.AuthURL values.
// Like every AuthURL they include the /v2.0 version path; the client posts
// to AuthURL + "/tokens".
const (
	RackspaceUSAuthURL = "https://identity.api.rackspacecloud.com/v2.0"
	RackspaceUKAuthURL = "https://lon.identity.api.rackspacecloud.com/v2.0"
)

// DefaultRegistryURL is the local sr-registry.
const DefaultRegistryURL = "http://127.0.0.1:8181/v1.0"

// Default timeouts; each can be overridden in Config.
const (
	DefaultRequestTimeout = 15 * time.Second
	defaultDialTimeout    = 5 * time.Second
	defaultTLSTimeout     = 10 * time.Second
	// Shorter than the request timeout so that a server that accepts and
	// then hangs is reported as such rather than as a context deadline.
	defaultHeaderTimeout = 10 * time.Second
	// Longer than the longest heartbeat interval (0.8 × 30 s), so that the
	// heartbeat connection stays open between two beats.
	defaultIdleTimeout = 90 * time.Second
)

// DefaultUserAgent is sent when Config.UserAgent is empty.
const DefaultUserAgent = "sr-wrapper-srapi"

// AuthURLForRegion returns Rackspace's identity URL for a region name, "us"
// or "uk" (case-insensitive), for a --region flag.
func AuthURLForRegion(region string) (string, error) {
	switch strings.ToLower(region) {
	case "us":
		return RackspaceUSAuthURL, nil
	case "uk", "lon":
		return RackspaceUKAuthURL, nil
	}
	return "", fmt.Errorf("region must be us or uk, got %q", region)
}

// Config configures a Client. Only RegistryURL, Username and APIKey matter
// for most callers; the zero value of every other field is a sane default.
type Config struct {
	// RegistryURL is the API's base URL, ending in the version:
	// http://127.0.0.1:8181/v1.0. Calls go to <RegistryURL>/<tenant><path>.
	// A URL with an empty path gets /v1.0. Empty means DefaultRegistryURL.
	RegistryURL string
	// AuthURL is the identity service's base URL including its version
	// path, e.g. RackspaceUSAuthURL; tokens are requested from
	// AuthURL + "/tokens". A URL without a /v2.0 suffix gets one, so
	// http://127.0.0.1:8181 works too. Empty means the registry's own
	// identity endpoint: RegistryURL's scheme and host + /v2.0.
	AuthURL string
	// Username and APIKey are the identity credentials. The key is never
	// logged nor put in an error; it is not even marshalled, so that a
	// Config passed to zap.Any or json.Marshal shows no key.
	Username string
	APIKey   string `json:"-"`
	// InsecureSkipVerify disables TLS certificate verification. Only for
	// a user who asked for it explicitly.
	InsecureSkipVerify bool
	// RequestTimeout bounds each HTTP request (connect, send, read the
	// whole reply). Zero means DefaultRequestTimeout. The caller's context
	// still applies when it is shorter.
	RequestTimeout time.Duration
	// Logger receives the debug dump of HTTP transactions (at debug
	// level: the logger's level must let it through) and the backend's
	// notices. Nil means no logs.
	Logger *zap.Logger `json:"-"`
	// Debug logs every HTTP transaction at debug level: method, URL,
	// request JSON, status, response JSON, with tokens and the API key
	// replaced by "REDACTED".
	Debug bool
	// UserAgent is sent with every request; empty means DefaultUserAgent.
	UserAgent string
}

// String shows the registry URL and the username, never the API key, so
// that a Config printed by mistake leaks nothing.
func (c Config) String() string {
	return fmt.Sprintf("srapi.Config{RegistryURL: %q, AuthURL: %q, Username: %q, APIKey: %s}",
		c.RegistryURL, c.AuthURL, c.Username, redactedIfSet(c.APIKey))
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

func redactedIfSet(s string) string {
	if s == "" {
		return `""`
	}
	return redacted
}

// endpoints are the parsed, normalised URLs of a Config.
type endpoints struct {
	registry string // no trailing slash, e.g. http://h:8181/v1.0
	tokens   string // e.g. http://h:8181/v2.0/tokens
}

// Validate checks the URLs the way NewClient will use them, without
// building a client: for flag validation.
func (c Config) Validate() error {
	_, err := parseEndpoints(c)
	return err
}

func parseEndpoints(c Config) (endpoints, error) {
	raw := c.RegistryURL
	if raw == "" {
		raw = DefaultRegistryURL
	}
	reg, err := parseHTTPURL("registry URL", raw)
	if err != nil {
		return endpoints{}, err
	}
	reg.Path = strings.TrimRight(reg.Path, "/")
	if reg.Path == "" {
		reg.Path = "/v1.0"
	}
	reg.RawPath = ""

	var auth *url.URL
	if c.AuthURL == "" {
		auth = &url.URL{Scheme: reg.Scheme, Host: reg.Host}
	} else if auth, err = parseHTTPURL("auth URL", c.AuthURL); err != nil {
		return endpoints{}, err
	}
	auth.Path = strings.TrimRight(auth.Path, "/")
	if !strings.HasSuffix(auth.Path, "/v2.0") {
		auth.Path += "/v2.0"
	}
	auth.RawPath = ""
	auth.Path += "/tokens"
	return endpoints{registry: reg.String(), tokens: auth.String()}, nil
}

func parseHTTPURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s %q: scheme must be http or https", what, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s %q: no host", what, raw)
	}
	if u.User != nil {
		// Credentials in a URL would end up in logs and errors.
		return nil, fmt.Errorf("%s: must not carry user info; use the username and API key settings", what)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s %q: must not have a query or fragment", what, raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}, nil
}
