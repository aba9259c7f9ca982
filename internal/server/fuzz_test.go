package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/dashboard"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// FuzzRequest sends arbitrary methods, paths, queries and bodies through
// the real handler (with a real store) and requires that nothing panics,
// nothing answers 5xx, and every answer carries a transaction id and, when
// it has a body, valid JSON (but the dashboard's pages, which are HTML).
//
//	go test -run '^$' -fuzz FuzzRequest -fuzztime 60s ./internal/server
func FuzzRequest(f *testing.F) { fuzzRequest(f, storeKinds[0]) }

// FuzzRequestEtcd is FuzzRequest on the etcd store.
func FuzzRequestEtcd(f *testing.F) { fuzzRequest(f, storeKinds[1]) }

func fuzzRequest(f *testing.F, st storeKind) {
	srv := st.newServer(f, server.Config{Dev: true, MaxBodyBytes: 4096})
	h := srv.Handler()

	// Authenticate once through the handler itself.
	ar := devLogin(f, h, "fuzz")
	token, tenant := ar.Access.Token.ID, ar.TenantID()

	// Seeds: one of each call, plus some known-bad shapes. "T" in a path
	// stands for the tenant.
	seeds := []struct {
		method, path, body string
		auth               bool
	}{
		{"POST", "/v1.0/T/sessions", `{"heartbeat_timeout":10,"metadata":{"a":"b"}}`, true},
		{"GET", "/v1.0/T/sessions?limit=2&marker=se", ``, true},
		{"PUT", "/v1.0/T/sessions/seAAAAAAAA", `{"heartbeat_timeout":5}`, true},
		{"POST", "/v1.0/T/sessions/seAAAAAAAA/heartbeat", `{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`, true},
		{"DELETE", "/v1.0/T/sessions/seAAAAAAAA", ``, true},
		{"POST", "/v1.0/T/services", `{"id":"web-1","session_id":"seAAAAAAAA","tags":["a"],"metadata":{"k":"v"}}`, true},
		{"GET", "/v1.0/T/services?tag=a&limit=1000", ``, true},
		{"PUT", "/v1.0/T/services/web-1", `{"tags":[],"metadata":null}`, true},
		{"PUT", "/v1.0/T/configuration/prod/cassandra/ip", `{"value":"x"}`, true},
		{"GET", "/v1.0/T/configuration/prod/", ``, true},
		{"PUT", "/v1.0/T/configuration//prod/cassandra/port", `{"value":"x"}`, true},
		{"GET", "/v1.0/T/configuration//", ``, true},
		{"PUT", "/v1.0/T/configuration/configId", `{"value":"` + strings.Repeat("v", 5000) + `"}`, true},
		{"DELETE", "/v1.0/T/configuration/prod/cassandra/ip", ``, true},
		{"GET", "/v1.0/T/events?marker=0&limit=1", ``, true},
		{"GET", "/v1.0/T/limits", ``, true},
		{"GET", "/v1.0/T/views/overview?limit=abc", ``, true},
		{"POST", "/v2.0/tokens", `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"u","apiKey":"k"}}}`, false},
		{"POST", "/v1.0/T/sessions", `{"heartbeat_timeout":1e400}`, true},
		{"POST", "/v1.0/T/services", `{"id":["x"],"tags":{"a":1}}`, true},
		{"POST", "/v1.0/T/sessions", "\xff\xfe{", true},
		{"GET", "/v1.0/other/sessions", ``, true},
		{"GET", "//v1.0//T//sessions", ``, true},
		{"PATCH", "/v1.0/T/configuration/", `null`, true},
		{"POST", "/v1.0/T/sessions", `[` + strings.Repeat(`[`, 2000), true},
		{"GET", "/", ``, false},
		{"GET", "/ui/app.js", ``, false},
		{"POST", "/ui/", `{}`, true},
		{"GET", "/ui/../v1.0/T/limits", ``, true},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body), s.auth)
	}

	f.Fuzz(func(t *testing.T, method, target string, body []byte, auth bool) {
		target = strings.ReplaceAll(target, "/T/", "/"+tenant+"/")
		u, err := url.ParseRequestURI(target)
		if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n") {
			return // the HTTP server would have rejected the request line
		}
		req := &http.Request{
			Method:        method,
			URL:           u,
			RequestURI:    target,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Host:          "registry.test",
			RemoteAddr:    "127.0.0.1:1234",
		}
		req = req.WithContext(t.Context())
		if auth {
			req.Header.Set("X-Auth-Token", token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body)
		}
		if rec.Header().Get(server.HeaderResponseID) == "" {
			t.Fatalf("%s %s: no %s", method, target, server.HeaderResponseID)
		}
		if rec.Body.Len() > 0 && !dashboard.Owns(u.Path) && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: invalid JSON reply %q", method, target, rec.Body)
		}
	})
}
