// Package faultproxy is a reverse proxy for tests only: it sits on a
// loopback port in front of a real server (sr-registry) and injects the
// faults that server cannot produce on demand — an error status on the Nth
// matching request, a connection dropped without a reply, a reply lost
// after the server acted, a slow reply, or a registry that is down
// altogether — and counts what it saw.
//
// It is not a production proxy: no TLS, no HTTP/2, no limits.
//
//	p := faultproxy.StartT(t, "http://127.0.0.1:8181/v1.0") // closed by t's cleanup
//	hb := p.Add(faultproxy.Rule{Method: "POST", Path: "/v1.0/*/sessions/*/heartbeat",
//		Nth: 3, Times: 1, Action: faultproxy.Respond(500, "internalError")})
//	... point the client at p.URL() ...
//	hb.Applied() // 1
//
// Go's http.Transport retries a GET (and any request it deems replayable)
// once on a new connection when a reused one is closed before a reply; a
// Drop rule meant to surface as an error to a GET needs Times of at least 2.
package faultproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// Action is what a rule does to a request it acts on.
type Action struct {
	kind      actionKind
	status    int
	faultType string
	delay     time.Duration
}

type actionKind int

const (
	kindForward actionKind = iota
	kindRespond
	kindDrop
	kindDropReply
	kindDelay
)

// Forward lets the request through unchanged, on to the next rules and the
// target: a rule with it only counts requests. It is the zero Action.
func Forward() Action { return Action{} }

// Respond answers with status and an API fault body of faultType (e.g.
// "internalError"), without forwarding the request.
func Respond(status int, faultType string) Action {
	return Action{kind: kindRespond, status: status, faultType: faultType}
}

// Drop closes the client's connection without a reply and without
// forwarding the request: a registry that crashed mid-request.
func Drop() Action { return Action{kind: kindDrop} }

// DropReply forwards the request, lets the server act on it, then closes
// the client's connection without the reply: a reply lost on the way back.
func DropReply() Action { return Action{kind: kindDropReply} }

// Delay forwards the request after d, or drops it when the client gives up
// first.
func Delay(d time.Duration) Action { return Action{kind: kindDelay, delay: d} }

// Rule selects requests and the action taken on some of them.
type Rule struct {
	// Method matches the request method; "" matches any.
	Method string
	// Path is a path.Match pattern on the URL path ("*" stops at "/"),
	// e.g. "/v1.0/*/sessions/*/heartbeat"; "" matches any path.
	Path string
	// Nth is the first matching request acted on, counting from 1; 0
	// means 1.
	Nth int
	// Times is how many matching requests are acted on from the Nth on;
	// 0 means all of them.
	Times int
	// Action is what happens to them; the zero Action is Forward.
	Action Action
}

func (r *Rule) matches(req *http.Request) bool {
	if r.Method != "" && r.Method != req.Method {
		return false
	}
	if r.Path != "" {
		if ok, _ := path.Match(r.Path, req.URL.Path); !ok {
			return false
		}
	}
	return true
}

// acts reports whether the n-th matching request (from 1) is acted on.
func (r *Rule) acts(n int64) bool {
	first := int64(max(r.Nth, 1))
	return n >= first && (r.Times == 0 || n < first+int64(r.Times))
}

// Handle is a rule added to a proxy, with its counters.
type Handle struct {
	rule    Rule
	seen    atomic.Int64
	applied atomic.Int64
}

// Seen is the number of requests that matched the rule.
func (h *Handle) Seen() int { return int(h.seen.Load()) }

// Applied is the number of requests the rule acted on.
func (h *Handle) Applied() int { return int(h.applied.Load()) }

// Proxy is a fault-injecting reverse proxy. Rules can be added, removed and
// the proxy taken down at any time, also while requests are in flight.
type Proxy struct {
	target *url.URL
	rp     *httputil.ReverseProxy
	srv    *http.Server
	ln     net.Listener

	mu    sync.Mutex
	rules []*Handle

	down     atomic.Bool
	requests atomic.Int64
	conns    atomic.Int64
	txn      atomic.Int64
}

// New returns a proxy forwarding to target's scheme and host; request paths
// pass unchanged. target's path is only kept for URL. Call Start.
func New(target *url.URL) *Proxy {
	p := &Proxy{target: target}
	base := &url.URL{Scheme: target.Scheme, Host: target.Host}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(base)
			// Keep the client's Host so that Location and next_href
			// point back at the proxy.
			pr.Out.Host = pr.In.Host
		},
		// An unreachable target is a 502 to the client, which is the
		// point; the log line would only be noise in test output.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				p.conns.Add(1)
			}
		},
	}
	return p
}

// Start listens on 127.0.0.1 on a free port and serves in the background.
func (p *Proxy) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("faultproxy: listen: %w", err)
	}
	p.ln = ln
	go func() { _ = p.srv.Serve(ln) }()
	return nil
}

// StartT starts a proxy in front of target, a URL such as
// http://127.0.0.1:8181/v1.0, and closes it when the test ends. It fails
// the test if target does not parse or the proxy cannot listen.
func StartT(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("faultproxy: target %q: %v", target, err)
	}
	p := New(u)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error { return p.srv.Close() }

// URL is target with the proxy's address as host: a drop-in replacement
// for the target's URL. Valid after Start.
func (p *Proxy) URL() *url.URL {
	u := *p.target
	u.Scheme = "http"
	u.Host = p.ln.Addr().String()
	return &u
}

// Add adds a rule after the existing ones. Every rule that matches a
// request counts it (Seen); the first one that acts on it with an action
// other than Forward decides what happens.
func (p *Proxy) Add(r Rule) *Handle {
	h := &Handle{rule: r}
	p.mu.Lock()
	p.rules = append(p.rules, h)
	p.mu.Unlock()
	return h
}

// Remove removes a rule; its counters stay readable.
func (p *Proxy) Remove(h *Handle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.rules {
		if x == h {
			p.rules = append(p.rules[:i:i], p.rules[i+1:]...)
			return
		}
	}
}

// SetDown makes the proxy drop every request without a reply (true), as a
// registry that is down, or forward them again (false). Rules do not count
// requests while it is down.
func (p *Proxy) SetDown(down bool) { p.down.Store(down) }

// Requests is the number of requests received, whatever happened to them.
func (p *Proxy) Requests() int { return int(p.requests.Load()) }

// Conns is the number of client connections accepted: with keep-alive,
// many requests share one.
func (p *Proxy) Conns() int { return int(p.conns.Load()) }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if p.down.Load() {
		hangUp(w)
		return
	}
	var act *Handle
	p.mu.Lock()
	for _, h := range p.rules {
		if !h.rule.matches(r) {
			continue
		}
		if n := h.seen.Add(1); act == nil && h.rule.acts(n) {
			h.applied.Add(1)
			if h.rule.Action.kind != kindForward {
				act = h
			}
		}
	}
	p.mu.Unlock()
	if act == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	a := act.rule.Action
	switch a.kind {
	case kindRespond:
		n := p.txn.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_ = json.NewEncoder(w).Encode(api.Fault{
			Type:    a.faultType,
			Code:    a.status,
			Message: "injected by faultproxy",
			Details: r.Method + " " + r.URL.Path,
			TxnID:   fmt.Sprintf("faultproxy-%d", n),
		})
	case kindDrop:
		hangUp(w)
	case kindDropReply:
		// The server must see the whole request and answer before the
		// client's connection goes, so the reply is recorded and thrown
		// away.
		p.rp.ServeHTTP(httptest.NewRecorder(), r)
		hangUp(w)
	case kindDelay:
		t := time.NewTimer(a.delay)
		defer t.Stop()
		select {
		case <-t.C:
			p.rp.ServeHTTP(w, r)
		case <-r.Context().Done():
			hangUp(w)
		}
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// hangUp closes the client's connection without writing anything.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (cannot happen with HTTP/1 from http.Server):
		// abort the handler, which also closes the connection.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
