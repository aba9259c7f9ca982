package faultproxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// backend counts the requests that reach it and answers "ok <path>". It
// returns its URL with the path /v1.0.
func backend(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok "+r.URL.Path+" host="+r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1.0", &hits
}

type reply struct {
	status int
	body   string
	err    error
}

func send(t *testing.T, c *http.Client, method, u string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader("{}"))
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), err: err}
}

func TestURLKeepsTargetPath(t *testing.T) {
	target, _ := backend(t)
	p := StartT(t, target)
	u := p.URL()
	if u.Path != "/v1.0" || strings.Contains(target, u.Host) || !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Fatalf("URL() = %s for target %s", u, target)
	}
	r := send(t, http.DefaultClient, "GET", u.String()+"/t/limits")
	if r.err != nil || r.status != 200 || r.body != "ok /v1.0/t/limits host="+u.Host {
		t.Fatalf("forwarded reply %+v", r)
	}
}

func TestRuleActsOnTheNthMatchingRequests(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		// want[i] is the status of request i to /v1.0/t/sessions/s1/heartbeat.
		want []int
	}{
		{"3rd only", Rule{Method: "POST", Path: "/v1.0/*/sessions/*/heartbeat", Nth: 3, Times: 1,
			Action: Respond(500, "internalError")}, []int{200, 200, 500, 200}},
		{"all from the 2nd", Rule{Path: "/v1.0/*/sessions/*/heartbeat", Nth: 2,
			Action: Respond(503, "systemFailureError")}, []int{200, 503, 503, 503}},
		{"first two", Rule{Times: 2, Action: Respond(401, "unauthorizedError")}, []int{401, 401, 200, 200}},
		{"other method", Rule{Method: "GET", Action: Respond(500, "internalError")}, []int{200, 200, 200, 200}},
		{"other path", Rule{Path: "/v1.0/*/services", Action: Respond(500, "internalError")}, []int{200, 200, 200, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, hits := backend(t)
			p := StartT(t, target)
			h := p.Add(tt.rule)
			injected := 0
			for i, want := range tt.want {
				r := send(t, http.DefaultClient, "POST", p.URL().String()+"/t/sessions/s1/heartbeat")
				if r.err != nil || r.status != want {
					t.Fatalf("request %d: %+v, want status %d", i+1, r, want)
				}
				if want != 200 {
					injected++
					var f api.Fault
					if err := json.Unmarshal([]byte(r.body), &f); err != nil || f.Code != want || f.Type == "" || f.TxnID == "" {
						t.Fatalf("fault body %q", r.body)
					}
				}
			}
			if h.Applied() != injected || int(hits.Load()) != len(tt.want)-injected {
				t.Fatalf("applied %d, backend saw %d; want %d, %d", h.Applied(), hits.Load(), injected, len(tt.want)-injected)
			}
			if p.Requests() != len(tt.want) {
				t.Fatalf("Requests() = %d", p.Requests())
			}
		})
	}
}

func TestEveryMatchingRuleCountsFirstNonForwardActs(t *testing.T) {
	target, _ := backend(t)
	p := StartT(t, target)
	count := p.Add(Rule{Method: "GET", Action: Forward()})
	a := p.Add(Rule{Path: "/v1.0/*/limits", Nth: 2, Times: 1, Action: Respond(500, "internalError")})
	b := p.Add(Rule{Method: "GET", Action: Respond(503, "systemFailureError")})
	var got []int
	for range 3 {
		got = append(got, send(t, http.DefaultClient, "GET", p.URL().String()+"/t/limits").status)
	}
	if got[0] != 503 || got[1] != 500 || got[2] != 503 {
		t.Fatalf("statuses %v, want [503 500 503]", got)
	}
	if a.Seen() != 3 || a.Applied() != 1 || b.Seen() != 3 || b.Applied() != 2 || count.Seen() != 3 {
		t.Fatalf("a %d/%d b %d/%d count %d", a.Seen(), a.Applied(), b.Seen(), b.Applied(), count.Seen())
	}
	p.Remove(b)
	p.Remove(a)
	if r := send(t, http.DefaultClient, "GET", p.URL().String()+"/t/limits"); r.status != 200 {
		t.Fatalf("after Remove: %+v", r)
	}
	if a.Seen() != 3 {
		t.Fatalf("a removed rule kept counting")
	}
}

func TestDropClosesWithoutReply(t *testing.T) {
	target, hits := backend(t)
	p := StartT(t, target)
	h := p.Add(Rule{Method: "POST", Times: 1, Action: Drop()})
	r := send(t, &http.Client{Transport: &http.Transport{}}, "POST", p.URL().String()+"/t/x")
	if r.err == nil {
		t.Fatalf("dropped request got a reply: %+v", r)
	}
	if hits.Load() != 0 || h.Applied() != 1 {
		t.Fatalf("backend saw %d, applied %d", hits.Load(), h.Applied())
	}
}

func TestDropReplyForwardsThenCloses(t *testing.T) {
	target, hits := backend(t)
	p := StartT(t, target)
	p.Add(Rule{Method: "POST", Times: 1, Action: DropReply()})
	r := send(t, &http.Client{Transport: &http.Transport{}}, "POST", p.URL().String()+"/t/x")
	if r.err == nil || hits.Load() != 1 {
		t.Fatalf("reply %+v, backend saw %d; want no reply and 1", r, hits.Load())
	}
}

func TestDelay(t *testing.T) {
	target, _ := backend(t)
	p := StartT(t, target)
	p.Add(Rule{Times: 1, Action: Delay(150 * time.Millisecond)})
	start := time.Now()
	r := send(t, http.DefaultClient, "GET", p.URL().String()+"/t/x")
	if r.status != 200 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("reply %+v after %v", r, time.Since(start))
	}

	// A client that gives up first is not kept waiting for the delay.
	p.Add(Rule{Action: Delay(time.Hour)})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.URL().String()+"/t/x", nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestDownRejectsEverythingUntilUp(t *testing.T) {
	target, hits := backend(t)
	p := StartT(t, target)
	h := p.Add(Rule{Action: Respond(500, "internalError"), Nth: 2})
	p.SetDown(true)
	c := &http.Client{Transport: &http.Transport{}}
	for range 3 {
		if r := send(t, c, "POST", p.URL().String()+"/t/x"); r.err == nil {
			t.Fatalf("down proxy replied %+v", r)
		}
	}
	p.SetDown(false)
	if r := send(t, c, "POST", p.URL().String()+"/t/x"); r.status != 200 {
		t.Fatalf("up again: %+v", r)
	}
	if hits.Load() != 1 || h.Seen() != 1 || p.Requests() != 4 {
		t.Fatalf("backend %d, rule saw %d, requests %d", hits.Load(), h.Seen(), p.Requests())
	}
}

func TestConnsCountsKeepAliveConnections(t *testing.T) {
	target, _ := backend(t)
	p := StartT(t, target)
	c := &http.Client{Transport: &http.Transport{}}
	for range 10 {
		if r := send(t, c, "POST", p.URL().String()+"/t/x"); r.status != 200 {
			t.Fatal(r)
		}
	}
	if p.Conns() != 1 {
		t.Fatalf("Conns() = %d after 10 requests on one keep-alive client, want 1", p.Conns())
	}
}
