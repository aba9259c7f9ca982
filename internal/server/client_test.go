package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// client speaks to one tenant of a real server the way the old clients
// did: JSON bodies, Content-Type on every request, X-Auth-Token.
type client struct {
	t     testing.TB
	base  string // tenant URL
	token string
	hc    *http.Client
}

func newClient(t testing.TB, reg *registrytest.Registry, user string) *client {
	t.Helper()
	return clientOf(t, reg.Authenticate(t, user))
}

// clientOf is a client of the identity's tenant.
func clientOf(t testing.TB, id registrytest.Identity) *client {
	return &client{t: t, base: id.TenantURL, token: id.Token, hc: &http.Client{Timeout: 10 * time.Second}}
}

// devLogin authenticates user against the dev-mode handler h itself (no
// network, no registrytest) and returns the reply.
func devLogin(tb testing.TB, h http.Handler, user string) api.AuthResponse {
	tb.Helper()
	body, err := json.Marshal(api.AuthRequest{Auth: api.AuthCredentials{
		APIKeyCredentials: &api.APIKeyCredentials{Username: user, APIKey: "k"},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2.0/tokens", bytes.NewReader(body)))
	var ar api.AuthResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Access.Token.ID == "" || ar.TenantID() == "" {
		tb.Fatalf("authenticate %q: %d %s", user, rec.Code, rec.Body)
	}
	return ar
}

// reply is a response with its body read.
type reply struct {
	*http.Response
	body []byte
}

// do sends body (nil: none; string or []byte: raw; else JSON) to the
// tenant path, or to an absolute URL when path starts with http.
func (c *client) do(method, path string, body any) reply {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = c.base + path
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return reply{resp, data}
}

// want fails unless the reply has the status code.
func (r reply) want(t testing.TB, code int) reply {
	t.Helper()
	if r.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL, r.StatusCode, code, r.body)
	}
	return r
}

// decode decodes the body into v, which is zeroed first (json would
// otherwise merge into maps left from an earlier decode).
func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	reflect.ValueOf(v).Elem().SetZero()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s %s: decode %s: %v", r.Request.Method, r.Request.URL, r.body, err)
	}
}

// fault checks that the reply is the fault (code, type) with the
// transaction id of its header, and returns it.
func (r reply) fault(t testing.TB, code int, typ string) api.Fault {
	t.Helper()
	r.want(t, code)
	var f api.Fault
	r.decode(t, &f)
	if f.Type != typ || f.Code != code {
		t.Fatalf("%s %s: fault %+v, want type %s code %d", r.Request.Method, r.Request.URL, f, typ, code)
	}
	if f.TxnID == "" || f.TxnID != r.Header.Get("X-Response-Id") {
		t.Fatalf("fault txnId %q, X-Response-Id %q: want equal and non-empty", f.TxnID, r.Header.Get("X-Response-Id"))
	}
	if f.Message == "" {
		t.Fatalf("fault without message: %s", r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("fault Content-Type %q", ct)
	}
	return f
}

// createSession creates a session and returns its id and first token.
func (c *client) createSession(timeout int, md map[string]string) (id, token string) {
	c.t.Helper()
	r := c.do(http.MethodPost, "/sessions", api.CreateSessionRequest{HeartbeatTimeout: timeout, Metadata: md}).want(c.t, http.StatusCreated)
	loc := r.Header.Get("Location")
	if want := c.base + "/sessions/"; !strings.HasPrefix(loc, want) {
		c.t.Fatalf("Location %q, want prefix %q", loc, want)
	}
	var tok api.HeartbeatToken
	r.decode(c.t, &tok)
	return loc[strings.LastIndex(loc, "/")+1:], tok.Token
}

func (c *client) heartbeat(id, token string) reply {
	c.t.Helper()
	return c.do(http.MethodPost, "/sessions/"+id+"/heartbeat", api.HeartbeatToken{Token: token})
}

func (c *client) createService(id, session string, tags []string, md map[string]string) reply {
	c.t.Helper()
	return c.do(http.MethodPost, "/services", api.CreateServiceRequest{ID: id, SessionID: session, Tags: tags, Metadata: md})
}

// events returns every event from the marker on (all events of the last
// hour without one), following next_marker.
func (c *client) events(marker string) []api.Event {
	c.t.Helper()
	var out []api.Event
	path := "/events?limit=1000"
	if marker != "" {
		path += "&marker=" + marker
	}
	for {
		var l api.List[api.Event]
		c.do(http.MethodGet, path, nil).want(c.t, http.StatusOK).decode(c.t, &l)
		out = append(out, l.Values...)
		if l.Metadata.NextHref == nil {
			return out
		}
		path = *l.Metadata.NextHref
	}
}

func eventsOfType(evs []api.Event, typ string) []api.Event {
	var out []api.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls cond every 20 ms until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
