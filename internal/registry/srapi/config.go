package srapi

import (
	"errors"
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
	//
	// It may also be a comma-separated list of the frontends of one
	// registry (sr-registry on etcd, any number of identical servers):
	// "https://a:8181/v1.0,https://b:8181/v1.0". Calls go to the first;
	// when a frontend gives no reply, times out or answers 5xx the call
	// goes on to the next one, and later calls stay there (see Client).
	// Every URL of the list has the same scheme; a comma inside a URL is
	// written %2C.
	RegistryURL string
	// AuthURL is the identity service's base URL including its version
	// path, e.g. RackspaceUSAuthURL; tokens are requested from
	// AuthURL + "/tokens". A URL without a /v2.0 suffix gets one, so
	// http://127.0.0.1:8181 works too. Empty means the registry's own
	// identity endpoint: the scheme and host of the frontend in use +
	// /v2.0, failing over with it.
	AuthURL string
	// Username and APIKey are the identity credentials. The key is never
	// logged nor put in an error; it is not even marshalled, so that a
	// Config passed to zap.Any or json.Marshal shows no key.
	Username string
	APIKey   string `json:"-"`
	// APIKeyFile, when set, is the file APIKey was read from (its first
	// line; see secretfile). The client reads it again at each
	// authentication, so that a key rotated on disk is used without a
	// restart: write the new key to the file, then change it in the
	// registry. A file that cannot be read then keeps the last key, with
	// a warning.
	APIKeyFile string
	// InsecureSkipVerify disables TLS certificate verification. Only for
	// a user who asked for it explicitly.
	InsecureSkipVerify bool
	// TLS names the PEM files of a private CA and of a client
	// certificate, for an https registry. They are read and parsed at the
	// first connection, not by NewClient; TLSFiles.Check is the cheap
	// check for flag validation.
	TLS TLSFiles
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
	// frontends are the registry's URLs in the order given; at least one.
	frontends []frontend
	// tokens is AuthURL's token URL, e.g.
	// https://identity.api.rackspacecloud.com/v2.0/tokens, or "" when
	// each frontend is its own identity endpoint.
	tokens string
}

// frontend is one URL of the registry.
type frontend struct {
	registry string // no trailing slash, e.g. http://h:8181/v1.0
	tokens   string // its own identity endpoint, e.g. http://h:8181/v2.0/tokens
}

// registryList is the normalised list of registry URLs, comma-separated.
func (e endpoints) registryList() string {
	urls := make([]string, len(e.frontends))
	for i, f := range e.frontends {
		urls[i] = f.registry
	}
	return strings.Join(urls, ",")
}

// tokensList is the identity endpoint tokens are requested from: AuthURL's,
// or each frontend's own, comma-separated.
func (e endpoints) tokensList() string {
	if e.tokens != "" {
		return e.tokens
	}
	urls := make([]string, len(e.frontends))
	for i, f := range e.frontends {
		urls[i] = f.tokens
	}
	return strings.Join(urls, ",")
}

// Validate checks the URLs the way NewClient will use them, without
// building a client: for flag validation. It does not read the TLS files;
// TLS.Check does.
func (c Config) Validate() error {
	_, err := parseEndpoints(c)
	return err
}

// SplitRegistryURLs splits a RegistryURL into its URLs, trimming the
// spaces around each; an empty string is one empty URL.
func SplitRegistryURLs(s string) []string {
	urls := strings.Split(s, ",")
	for i, u := range urls {
		urls[i] = strings.TrimSpace(u)
	}
	return urls
}

func parseEndpoints(c Config) (endpoints, error) {
	raw := c.RegistryURL
	if raw == "" {
		raw = DefaultRegistryURL
	}
	list := SplitRegistryURLs(raw)
	var ep endpoints
	seen := make(map[string]int, len(list))
	for i, one := range list {
		what := "registry URL"
		if len(list) > 1 {
			what = fmt.Sprintf("registry URL %d of %d", i+1, len(list))
			if one == "" {
				return endpoints{}, fmt.Errorf("%s is empty (a stray comma?)", what)
			}
		}
		f, err := parseFrontend(what, one)
		if err != nil {
			return endpoints{}, err
		}
		if i > 0 {
			// A list that mixes http:// and https:// would move to plain
			// HTTP, token and all, when the https frontend fails.
			if first := ep.frontends[0].registry; scheme(f.registry) != scheme(first) {
				return endpoints{}, fmt.Errorf("%s %q: every URL of the list must have the same scheme, and the first is %s://", what, one, scheme(first))
			}
		}
		if j, dup := seen[f.registry]; dup {
			return endpoints{}, fmt.Errorf("%s %q: the same frontend as URL %d", what, one, j+1)
		}
		seen[f.registry] = i
		ep.frontends = append(ep.frontends, f)
	}
	if c.AuthURL != "" {
		auth, err := parseHTTPURL("auth URL", c.AuthURL)
		if err != nil {
			return endpoints{}, err
		}
		ep.tokens = tokensURL(auth)
	}
	if !c.TLS.IsZero() && !ep.usesHTTPS() {
		return endpoints{}, fmt.Errorf("TLS files (--cacert, --cert, --key) given for a registry without https:// (%s)", ep.registryList())
	}
	return ep, nil
}

// usesHTTPS reports whether any request goes over TLS.
func (e endpoints) usesHTTPS() bool {
	return scheme(e.frontends[0].registry) == "https" || scheme(e.tokens) == "https"
}

func scheme(u string) string {
	s, _, _ := strings.Cut(u, "://")
	return s
}

// parseFrontend normalises one registry URL and derives its own identity
// endpoint: the same scheme and host + /v2.0.
func parseFrontend(what, raw string) (frontend, error) {
	reg, err := parseHTTPURL(what, raw)
	if err != nil {
		return frontend{}, err
	}
	// On the escaped form, and with any comma (there can only have been
	// a %2C) escaped again: a comma as is would split the normalised list.
	p := strings.ReplaceAll(strings.TrimRight(reg.EscapedPath(), "/"), ",", "%2C")
	if p == "" {
		p = "/v1.0"
	}
	if reg.Path, err = url.PathUnescape(p); err != nil {
		return frontend{}, fmt.Errorf("%s %q: %w", what, raw, err)
	}
	reg.RawPath = p
	return frontend{registry: reg.String(), tokens: tokensURL(&url.URL{Scheme: reg.Scheme, Host: reg.Host})}, nil
}

// tokensURL is the token URL of an identity base URL, with /v2.0 added
// when it lacks it.
func tokensURL(auth *url.URL) string {
	auth.Path = strings.TrimRight(auth.Path, "/")
	if !strings.HasSuffix(auth.Path, "/v2.0") {
		auth.Path += "/v2.0"
	}
	auth.RawPath = ""
	auth.Path += "/tokens"
	return auth.String()
}

func parseHTTPURL(what, raw string) (*url.URL, error) {
	// Credentials in a URL would end up in logs and errors: refused, and
	// never quoted.
	shown := withoutUserInfo(raw)
	if shown != raw {
		return nil, fmt.Errorf("%s: must not carry user info; use the username and API key settings", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // without the URL, already quoted
		}
		return nil, fmt.Errorf("%s %q: %w", what, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s %q: scheme must be http or https", what, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s %q: no host", what, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s: must not carry user info; use the username and API key settings", what)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%s %q: must not have a query or fragment", what, raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}, nil
}

// withoutUserInfo drops what stands between "//" and an "@" in the
// authority of a URL-like string, parseable or not.
func withoutUserInfo(raw string) string {
	i := strings.Index(raw, "//")
	if i < 0 {
		return raw
	}
	rest := raw[i+2:]
	authority := rest
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		authority = rest[:j]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	return raw[:i+2] + rest[at+1:]
}
