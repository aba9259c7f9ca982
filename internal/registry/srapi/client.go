package srapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/secretfile"
)

// maxReplyBody bounds what is read of a reply; the largest legitimate one,
// a page of 1000 services with full metadata, is well below it.
const maxReplyBody = 16 << 20

// tokenRenewMargin renews an identity token this long before its stated
// expiry rather than sending it and collecting a 401.
const tokenRenewMargin = time.Minute

// Client calls the Service Registry API v1.0. It is safe for concurrent
// use. Create it with NewClient and release its connections with Close.
//
// Given several frontends of one registry (Config.RegistryURL as a list), a
// call goes to the current frontend — the first at start — and, when that
// one gives no reply, times out or answers 5xx, on to the next, each once;
// the frontend that failed stops being current, so later calls go straight
// to the one that works and stay there (no round-robin, no return to the
// first while the one in use works). The session and its heartbeat token
// chain live in the registry, which its frontends share, so they carry over.
// A 4xx is the registry's answer and never fails over. A call whose
// caller's deadline expires at a frontend returns that error, and the next
// call starts at the next frontend.
type Client struct {
	ep       endpoints
	username string
	keyFile  string
	tr       *http.Transport
	hc       *http.Client
	timeout  time.Duration
	log      *zap.Logger
	debug    bool
	ua       string

	// cur is the index in ep.frontends of the frontend calls go to first.
	cur atomic.Int32

	// tlsFiles are loaded into tr's TLS configuration before the first
	// request (tlsOnce), not by NewClient: the wrapper builds its client
	// before it starts its child and must not parse certificates there.
	tlsFiles TLSFiles
	tlsOnce  sync.Once
	tlsErr   error

	// authSem admits one identity request at a time; callers that wait
	// for it can still give up through their context.
	authSem chan struct{}
	mu      sync.Mutex // guards tok and keys
	tok     *authToken
	// keys are the API key in use first, then the ones it replaced (at
	// most maxKeysScrubbed in all): errors and debug logs are scrubbed of
	// each, in case a server echoes an old one.
	keys []string
}

const maxKeysScrubbed = 4

// authToken is an identity token and the tenant it is for.
type authToken struct {
	id      string
	tenant  string
	expires time.Time // zero when the reply's expiry did not parse
}

func (t *authToken) usable(now time.Time) bool {
	return t != nil && (t.expires.IsZero() || now.Add(tokenRenewMargin).Before(t.expires))
}

// NewClient checks cfg and returns a client. It does no I/O: the first
// call authenticates.
func NewClient(cfg Config) (*Client, error) {
	ep, err := parseEndpoints(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Username == "" {
		return nil, errors.New("srapi: a username is required")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("srapi: an API key is required")
	}
	tr := newTransport(cfg.InsecureSkipVerify)
	c := &Client{
		ep:       ep,
		username: cfg.Username,
		keyFile:  cfg.APIKeyFile,
		keys:     []string{cfg.APIKey},
		tr:       tr,
		hc: &http.Client{
			Transport: tr,
			// The API never redirects; following one would resend the
			// token to wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:  cfg.RequestTimeout,
		log:      cfg.Logger,
		debug:    cfg.Debug,
		ua:       cfg.UserAgent,
		tlsFiles: cfg.TLS,
		authSem:  make(chan struct{}, 1),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.ua == "" {
		c.ua = DefaultUserAgent
	}
	return c, nil
}

// newTransport is one keep-alive transport for every call, so that
// heartbeats and event polling stay on one connection.
func newTransport(insecure bool) *http.Transport {
	dialer := &net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       defaultIdleTimeout,
		TLSHandshakeTimeout:   defaultTLSTimeout,
		ResponseHeaderTimeout: defaultHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: insecure, //nolint:gosec // only when the user explicitly asked
		},
	}
}

// RegistryURL is the normalised base URL calls go to, without the tenant;
// for a list of frontends, all of them, comma-separated, in their order.
func (c *Client) RegistryURL() string { return c.ep.registryList() }

// TokensURL is the identity URL tokens are requested from; without an
// AuthURL, each frontend's own, comma-separated.
func (c *Client) TokensURL() string { return c.ep.tokensList() }

// Username is the identity username.
func (c *Client) Username() string { return c.username }

// String names the client for logs: registry URL and username, no key.
func (c *Client) String() string { return c.RegistryURL() + " (user " + c.username + ")" }

// Close releases the client's idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// TenantID returns the tenant of the credentials, authenticating first if
// needed.
func (c *Client) TenantID(ctx context.Context) (string, error) {
	t, err := c.token(ctx)
	if err != nil {
		return "", err
	}
	return t.tenant, nil
}

// token returns a usable token, authenticating when there is none yet or
// it is about to expire.
func (c *Client) token(ctx context.Context) (*authToken, error) {
	c.mu.Lock()
	t := c.tok
	c.mu.Unlock()
	if t.usable(time.Now()) {
		return t, nil
	}
	return c.authenticate(ctx, t)
}

// authenticate replaces stale with a new token. When several calls find
// the same stale token (a burst of 401s), the first one authenticates and
// the others take its token.
func (c *Client) authenticate(ctx context.Context, stale *authToken) (*authToken, error) {
	select {
	case c.authSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("authenticate as %q: %w", c.username, ctx.Err())
	}
	defer func() { <-c.authSem }()

	c.mu.Lock()
	cur := c.tok
	c.mu.Unlock()
	if cur != stale && cur.usable(time.Now()) {
		return cur, nil
	}
	t, err := c.requestToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("authenticate as %q: %w", c.username, err)
	}
	c.mu.Lock()
	c.tok = t
	c.mu.Unlock()
	return t, nil
}

// loginKey is the API key to authenticate with: read again from the key
// file when there is one (authentications are rare: one per token
// lifetime, or after a 401), else the one given.
func (c *Client) loginKey() string {
	c.mu.Lock()
	cur := c.keys[0]
	c.mu.Unlock()
	if c.keyFile == "" {
		return cur
	}
	key, err := secretfile.Read(c.keyFile)
	switch {
	case err != nil:
		c.log.Warn("cannot read the API key file again; authenticating with the key read before", zap.Error(err))
		return cur
	case key == cur:
		return cur
	}
	c.log.Info("the API key file holds a new key: authenticating with it", zap.String("file", c.keyFile))
	c.mu.Lock()
	c.keys = append([]string{key}, c.keys[:min(len(c.keys), maxKeysScrubbed-1)]...)
	c.mu.Unlock()
	return key
}

// secrets are what errors and debug logs are scrubbed of: every API key
// the client used, and extra.
func (c *Client) secrets(extra ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(slices.Clone(c.keys), extra...)
}

func (c *Client) requestToken(ctx context.Context) (*authToken, error) {
	body, err := json.Marshal(api.AuthRequest{Auth: api.AuthCredentials{
		APIKeyCredentials: &api.APIKeyCredentials{Username: c.username, APIKey: c.loginKey()},
	}})
	if err != nil {
		return nil, fmt.Errorf("encode credentials: %w", err)
	}
	const method = http.MethodPost
	r, err := c.sendAuth(ctx, method, body)
	if err != nil {
		return nil, err
	}
	if r.status/100 != 2 {
		return nil, c.apiError(method, r.url, r.status, r.hdr, r.body)
	}
	var ar api.AuthResponse
	if err := json.Unmarshal(r.body, &ar); err != nil {
		return nil, fmt.Errorf("%s %s: decode identity reply: %w", method, r.url, err)
	}
	t := &authToken{id: ar.Access.Token.ID, tenant: ar.TenantID()}
	if t.id == "" {
		return nil, fmt.Errorf("%s %s: identity reply has no token id", method, r.url)
	}
	if t.tenant == "" {
		return nil, fmt.Errorf("%s %s: identity reply names no tenant (neither access.token.tenant.id nor a compute entry in the catalog)", method, r.url)
	}
	if exp, err := time.Parse(time.RFC3339, ar.Access.Token.Expires); err == nil {
		t.expires = exp
	}
	return t, nil
}

// do calls the registry: method on <registry>/<tenant><path>?<query> with
// in as the JSON body (nil for none), decoding a 2xx reply into out (nil to
// discard it). A 401 re-authenticates and retries once. It returns the
// reply's headers, for Location.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) (http.Header, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
	}
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	for retried := false; ; retried = true {
		tail := "/" + url.PathEscape(tok.tenant) + path
		if len(query) > 0 {
			tail += "?" + query.Encode()
		}
		r, err := c.send(ctx, method, func(f frontend) string { return f.registry + tail }, body, tok.id, true)
		if err != nil {
			return nil, err
		}
		if r.status == http.StatusUnauthorized && !retried {
			// Tokens may be purged before their stated expiry (a
			// restarted registry forgets them all): get a new one and
			// try once more.
			if tok, err = c.authenticate(ctx, tok); err != nil {
				return nil, fmt.Errorf("%s %s: 401, then: %w", method, r.url, err)
			}
			continue
		}
		if r.status/100 != 2 {
			e := c.apiError(method, r.url, r.status, r.hdr, r.body)
			e.fromRegistry = true
			return r.hdr, e
		}
		if out != nil && len(bytes.TrimSpace(r.body)) > 0 {
			if err := json.Unmarshal(r.body, out); err != nil {
				return r.hdr, fmt.Errorf("%s %s: decode %d reply: %w", method, r.url, r.status, err)
			}
		}
		return r.hdr, nil
	}
}

// reply is an HTTP reply, whatever its status, and the URL that gave it.
type reply struct {
	status int
	hdr    http.Header
	body   []byte
	url    string
}

// sendAuth posts credentials to the identity endpoint: AuthURL's, or that
// of the registry's frontends, failing over as registry calls do.
func (c *Client) sendAuth(ctx context.Context, method string, body []byte) (*reply, error) {
	if c.ep.tokens == "" {
		return c.send(ctx, method, func(f frontend) string { return f.tokens }, body, "", false)
	}
	status, hdr, b, err := c.roundTrip(ctx, method, c.ep.tokens, body, "")
	if err != nil {
		return nil, err
	}
	return &reply{status: status, hdr: hdr, body: b, url: c.ep.tokens}, nil
}

// send sends a request to target(f) of the current frontend f and, while
// that fails in a way another frontend may not (no reply, a timeout, a
// 5xx), to that of each next frontend, once each, ending at the first
// reply that is not a 5xx. When every frontend fails it returns a
// *FrontendsError; fromRegistry marks its 5xx replies as the registry's
// rather than the identity service's. With one frontend it is exactly one
// roundTrip, whose reply (5xx included) or error it returns.
//
// A request whose reply was lost goes to the next frontend too. The API
// makes that safe where it matters: a heartbeat with the previous token
// gets the same reply again, a service already in the session is found
// there, a deleted session or service is a 404 that the backend takes for
// done. Location and next_href name the frontend that wrote them; the
// client reads only the id from the one and uses next_marker, not the
// other, so every URL it sends to is its own base URL of the frontend in
// use.
func (c *Client) send(ctx context.Context, method string, target func(frontend) string, body []byte, token string, fromRegistry bool) (*reply, error) {
	n := len(c.ep.frontends)
	start := int(c.cur.Load())
	var failed []error
	for i := range n {
		idx := (start + i) % n
		u := target(c.ep.frontends[idx])
		status, hdr, b, err := c.roundTrip(ctx, method, u, body, token)
		if n == 1 {
			if err != nil {
				return nil, err
			}
			return &reply{status: status, hdr: hdr, body: b, url: u}, nil
		}
		switch _, noReply := errors.AsType[*TransportError](err); {
		case err != nil && ctx.Err() != nil:
			// The caller's time ran out at this frontend, or it gave up:
			// no time for the next one now, but the next call starts
			// there unless the caller simply stopped.
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				c.leave(idx, err)
			}
			if len(failed) == 0 {
				return nil, err
			}
			return nil, &FrontendsError{Errs: append(failed, err), Frontends: n}
		case err != nil && !noReply:
			// Not the frontend's failure: the TLS files did not load, or
			// the request could not be built. Every frontend would fail
			// the same way.
			return nil, err
		case err != nil:
		case status >= 500:
			e := c.apiError(method, u, status, hdr, b)
			e.fromRegistry = fromRegistry
			err = e
		default:
			return &reply{status: status, hdr: hdr, body: b, url: u}, nil
		}
		failed = append(failed, err)
		c.leave(idx, err)
	}
	return nil, &FrontendsError{Errs: failed, Frontends: n}
}

// leave makes the frontend after idx the current one, if idx still is it:
// the first call to see a frontend fail moves every later call on, and
// logs the move.
func (c *Client) leave(idx int, err error) {
	next := (idx + 1) % len(c.ep.frontends)
	if c.cur.CompareAndSwap(int32(idx), int32(next)) {
		c.log.Warn("registry frontend failed; moving to the next",
			zap.String("frontend", c.ep.frontends[idx].registry),
			zap.String("next", c.ep.frontends[next].registry),
			zap.Error(err))
	}
}

// setUpTLS loads the TLS files into the transport, once, before its first
// request.
func (c *Client) setUpTLS() error {
	if c.tlsFiles.IsZero() {
		return nil
	}
	c.tlsOnce.Do(func() { c.tlsErr = c.tlsFiles.apply(c.tr.TLSClientConfig) })
	return c.tlsErr
}

// roundTrip sends one request and reads the whole reply, so that the
// connection goes back to the pool. token is the X-Auth-Token, "" for none.
func (c *Client) roundTrip(ctx context.Context, method, u string, body []byte, token string) (int, http.Header, []byte, error) {
	if err := c.setUpTLS(); err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: build request: %w", method, u, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		err = c.transportError(ctx, rctx, method, u, err)
		c.logTransaction(req, body, nil, nil, time.Since(start), err, token)
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBody))
	if err != nil {
		err = c.transportError(ctx, rctx, method, u, fmt.Errorf("read %d reply: %w", resp.StatusCode, err))
		c.logTransaction(req, body, resp, nil, time.Since(start), err, token)
		return 0, nil, nil, err
	}
	c.logTransaction(req, body, resp, reply, time.Since(start), nil, token)
	return resp.StatusCode, resp.Header, reply, nil
}

func (c *Client) transportError(ctx, rctx context.Context, method, u string, err error) error {
	// url.Error repeats the method and URL that TransportError carries.
	if ue, ok := errors.AsType[*url.Error](err); ok && ue.Err != nil {
		err = ue.Err
	}
	if pu, perr := url.Parse(u); perr == nil {
		if te := tlsProblem(err, pu.Hostname(), c.tlsFiles); te != nil {
			err = te
		}
	}
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no complete reply within %s: %w", c.timeout, err)
	}
	// The chain is kept for errors.Is (context.Canceled, net errors); it
	// cannot hold the API key, which only ever travels in a request body.
	return &TransportError{Method: method, URL: u, Err: err}
}

// apiError decodes an error reply: the API's fault, or Keystone's
// {"unauthorized":{"code":401,"message":...}} from an identity service.
func (c *Client) apiError(method, u string, status int, hdr http.Header, reply []byte) *APIError {
	e := &APIError{Method: method, URL: u, Status: status, retryAfter: parseRetryAfter(hdr.Get("Retry-After"), time.Now())}
	var f api.Fault
	if err := json.Unmarshal(reply, &f); err == nil && f.Type != "" {
		e.Fault = f
	} else {
		var ks map[string]api.Fault
		if err := json.Unmarshal(reply, &ks); err == nil && len(ks) == 1 {
			for k, v := range ks {
				e.Fault = v
				e.Fault.Type = k
			}
		} else {
			e.Fault.Message = snippet(reply)
		}
	}
	if e.Fault.TxnID == "" {
		e.Fault.TxnID = txnIDHeader(hdr)
	}
	if e.Fault.Code == 0 {
		e.Fault.Code = status
	}
	// A server that echoes the credentials must not get them into an error.
	secrets := c.secrets()
	e.Fault.Message = scrub(e.Fault.Message, secrets...)
	e.Fault.Details = scrub(e.Fault.Details, secrets...)
	return e
}

// txnIDHeaders are where servers of this API family put the transaction id
// when a reply has no fault body.
var txnIDHeaders = [...]string{"X-Txn-Id", "X-Response-Id", "X-Request-Id"}

func txnIDHeader(h http.Header) string {
	for _, k := range txnIDHeaders {
		if v := h.Get(k); v != "" {
			return v
		}
	}
	return ""
}

// snippet is the start of a reply that is not a fault, for an error.
func snippet(b []byte) string {
	const max = 200
	return api.Truncate(strings.TrimSpace(string(b)), max)
}

func (c *Client) logTransaction(req *http.Request, body []byte, resp *http.Response, reply []byte, took time.Duration, err error, token string) {
	if !c.debug || !c.log.Core().Enabled(zap.DebugLevel) {
		return
	}
	headers := make(map[string]string, len(req.Header))
	for k := range req.Header {
		headers[k] = req.Header.Get(k)
	}
	if _, ok := headers["X-Auth-Token"]; ok {
		headers["X-Auth-Token"] = redacted
	}
	secrets := c.secrets(token)
	fields := []zap.Field{
		zap.String("method", req.Method),
		zap.String("url", req.URL.String()),
		zap.Any("request_headers", headers),
		zap.String("request", redactBody(body, secrets...)),
		zap.Duration("took", took),
	}
	if resp != nil {
		fields = append(fields,
			zap.Int("status", resp.StatusCode),
			zap.String("response", redactBody(reply, secrets...)))
	}
	if err != nil {
		fields = append(fields, zap.String("error", scrub(err.Error(), secrets...)))
	}
	c.log.Debug("http transaction", fields...)
}
