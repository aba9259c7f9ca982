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
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// maxReplyBody bounds what is read of a reply; the largest legitimate one,
// a page of 1000 services with full metadata, is well below it.
const maxReplyBody = 16 << 20

// tokenRenewMargin renews an identity token this long before its stated
// expiry rather than sending it and collecting a 401.
const tokenRenewMargin = time.Minute

// Client calls the Service Registry API v1.0. It is safe for concurrent
// use. Create it with NewClient and release its connections with Close.
type Client struct {
	ep       endpoints
	username string
	apiKey   string
	hc       *http.Client
	timeout  time.Duration
	log      *zap.Logger
	debug    bool
	ua       string

	// authSem admits one identity request at a time; callers that wait
	// for it can still give up through their context.
	authSem chan struct{}
	mu      sync.Mutex // guards tok
	tok     *authToken
}

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
	c := &Client{
		ep:       ep,
		username: cfg.Username,
		apiKey:   cfg.APIKey,
		hc: &http.Client{
			Transport: newTransport(cfg.InsecureSkipVerify),
			// The API never redirects; following one would resend the
			// token to wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout: cfg.RequestTimeout,
		log:     cfg.Logger,
		debug:   cfg.Debug,
		ua:      cfg.UserAgent,
		authSem: make(chan struct{}, 1),
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

// RegistryURL is the normalised base URL calls go to, without the tenant.
func (c *Client) RegistryURL() string { return c.ep.registry }

// TokensURL is the identity URL tokens are requested from.
func (c *Client) TokensURL() string { return c.ep.tokens }

// Username is the identity username.
func (c *Client) Username() string { return c.username }

// String names the client for logs: registry URL and username, no key.
func (c *Client) String() string { return c.ep.registry + " (user " + c.username + ")" }

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

func (c *Client) requestToken(ctx context.Context) (*authToken, error) {
	body, err := json.Marshal(api.AuthRequest{Auth: api.AuthCredentials{
		APIKeyCredentials: &api.APIKeyCredentials{Username: c.username, APIKey: c.apiKey},
	}})
	if err != nil {
		return nil, fmt.Errorf("encode credentials: %w", err)
	}
	const method = http.MethodPost
	status, hdr, reply, err := c.roundTrip(ctx, method, c.ep.tokens, body, "")
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, c.apiError(method, c.ep.tokens, status, hdr, reply)
	}
	var ar api.AuthResponse
	if err := json.Unmarshal(reply, &ar); err != nil {
		return nil, fmt.Errorf("%s %s: decode identity reply: %w", method, c.ep.tokens, err)
	}
	t := &authToken{id: ar.Access.Token.ID, tenant: ar.TenantID()}
	if t.id == "" {
		return nil, fmt.Errorf("%s %s: identity reply has no token id", method, c.ep.tokens)
	}
	if t.tenant == "" {
		return nil, fmt.Errorf("%s %s: identity reply names no tenant (neither access.token.tenant.id nor a compute entry in the catalog)", method, c.ep.tokens)
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
		u := c.ep.registry + "/" + url.PathEscape(tok.tenant) + path
		if len(query) > 0 {
			u += "?" + query.Encode()
		}
		status, hdr, reply, err := c.roundTrip(ctx, method, u, body, tok.id)
		if err != nil {
			return nil, err
		}
		if status == http.StatusUnauthorized && !retried {
			// Tokens may be purged before their stated expiry (a
			// restarted registry forgets them all): get a new one and
			// try once more.
			if tok, err = c.authenticate(ctx, tok); err != nil {
				return nil, fmt.Errorf("%s %s: 401, then: %w", method, u, err)
			}
			continue
		}
		if status/100 != 2 {
			e := c.apiError(method, u, status, hdr, reply)
			e.fromRegistry = true
			return hdr, e
		}
		if out != nil && len(bytes.TrimSpace(reply)) > 0 {
			if err := json.Unmarshal(reply, out); err != nil {
				return hdr, fmt.Errorf("%s %s: decode %d reply: %w", method, u, status, err)
			}
		}
		return hdr, nil
	}
}

// roundTrip sends one request and reads the whole reply, so that the
// connection goes back to the pool. token is the X-Auth-Token, "" for none.
func (c *Client) roundTrip(ctx context.Context, method, u string, body []byte, token string) (int, http.Header, []byte, error) {
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
	e := &APIError{Method: method, URL: u, Status: status}
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
	e.Fault.Message = scrub(e.Fault.Message, c.apiKey)
	e.Fault.Details = scrub(e.Fault.Details, c.apiKey)
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
	fields := []zap.Field{
		zap.String("method", req.Method),
		zap.String("url", req.URL.String()),
		zap.Any("request_headers", headers),
		zap.String("request", redactBody(body, c.apiKey, token)),
		zap.Duration("took", took),
	}
	if resp != nil {
		fields = append(fields,
			zap.Int("status", resp.StatusCode),
			zap.String("response", redactBody(reply, c.apiKey, token)))
	}
	if err != nil {
		fields = append(fields, zap.String("error", scrub(err.Error(), c.apiKey, token)))
	}
	c.log.Debug("http transaction", fields...)
}
