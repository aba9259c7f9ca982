package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Checker probes the wrapped program once. Check returns nil when the
// program serves, and otherwise an error saying what failed. It must
// return soon after ctx ends: Run gives each check a context that ends
// after the check timeout. A Checker may be called again after it
// returned, never twice at the same time by one Run.
type Checker interface {
	Check(ctx context.Context) error
	// String names the check in log lines, e.g. "GET http://127.0.0.1/".
	String() string
}

// userAgent is sent with every HTTP check, so that the program's access
// log can tell checks from clients.
const userAgent = "sr-wrapper-health-check"

// errorBodyLimit bounds how much of an unhealthy answer's body goes into
// the error: enough for a message, never a whole page.
const errorBodyLimit = 256

type httpChecker struct {
	url    string // as requested
	shown  string // with any password redacted
	client *http.Client
}

// HTTP returns a Checker that sends GET rawURL and takes any 2xx or 3xx
// answer as healthy. A redirect is not followed: a 3xx shows that the
// program answers, and its target may be a host that the check cannot
// reach. Each check opens a new connection (no keep-alive), so that it
// also proves that the program still accepts connections, and goes
// direct, ignoring HTTP_PROXY: a health check is for the program itself.
// An https certificate is verified as any client would, so a program
// whose certificate names only its public name fails a check of
// https://127.0.0.1. The check's duration is bounded by the context given
// to Check.
//
// rawURL must be an absolute http or https URL with a host; the error
// says what is wrong with it (the caller adds the flag's name).
func HTTP(rawURL string) (Checker, error) {
	u, err := parseCheckURL(rawURL)
	if err != nil {
		return nil, err
	}
	c := &httpChecker{url: u.String(), shown: u.Redacted()}
	c.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{}).DialContext,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, nil
}

func parseCheckURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil && !strings.Contains(rawURL, "://") {
		// "127.0.0.1:8080/health" fails to parse for its colon.
		return nil, fmt.Errorf("%q has no http:// or https:// scheme: write http://%s", rawURL, rawURL)
	}
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", rawURL, unwrapURLError(err))
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "":
		return nil, fmt.Errorf("%q has no scheme: write http://%s", rawURL, strings.TrimPrefix(rawURL, "//"))
	default:
		if u.Opaque != "" {
			// "localhost:8080/health" parses as scheme "localhost".
			return nil, fmt.Errorf("%q has no http:// or https:// scheme: write http://%s", rawURL, rawURL)
		}
		return nil, fmt.Errorf("%q: scheme %q is not supported: use http or https", rawURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host: write %s://127.0.0.1:PORT/PATH to check this machine", rawURL, u.Scheme)
	}
	if p := u.Port(); p != "" {
		if err := checkPort(p); err != nil {
			return nil, fmt.Errorf("%q: %w", rawURL, err)
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// unwrapURLError drops url.Error's own repetition of the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func checkPort(p string) error {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return nil
}

func (c *httpChecker) String() string { return "GET " + c.shown }

func (c *httpChecker) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", c.shown, err)
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.client.Do(req)
	if err != nil {
		// A *url.Error, which names the method and the redacted URL.
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return nil
	}
	// The start of the body often says why (a status page's message).
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit+1))
	return fmt.Errorf("GET %s: %s%s", c.shown, resp.Status, bodyExcerpt(body))
}

func bodyExcerpt(body []byte) string {
	more := len(body) > errorBodyLimit
	if more {
		body = body[:errorBodyLimit]
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	if more {
		return fmt.Sprintf(": %q...", body)
	}
	return fmt.Sprintf(": %q", body)
}

type tcpChecker struct {
	addr string
}

// TCP returns a Checker that is healthy when a TCP connection to addr
// (HOST:PORT, the port a number) succeeds. The connection is closed at
// once, before anything is sent.
func TCP(addr string) (Checker, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			return nil, fmt.Errorf("%q is not HOST:PORT: %s", addr, ae.Err)
		}
		return nil, fmt.Errorf("%q is not HOST:PORT: %w", addr, err)
	}
	if host == "" {
		return nil, fmt.Errorf("%q has no host: write 127.0.0.1:%s to check this machine", addr, port)
	}
	if err := checkPort(port); err != nil {
		return nil, fmt.Errorf("%q: %w", addr, err)
	}
	return &tcpChecker{addr: addr}, nil
}

func (c *tcpChecker) String() string { return "TCP connect " + c.addr }

func (c *tcpChecker) Check(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		// A *net.OpError: "dial tcp 127.0.0.1:3306: connect: connection refused".
		return err
	}
	// Whether the close is clean says nothing about the program.
	_ = conn.Close()
	return nil
}
