package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// nopWriter is a ResponseWriter that keeps only the headers, so the
// benchmark measures the handler and not a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkHeartbeatHandler measures the handler's own cost of one
// heartbeat (no network, no net/http): the part of the heartbeat path
// that this package controls. The end-to-end figure is bench/registryload.
func BenchmarkHeartbeatHandler(b *testing.B) {
	srv, err := server.New(server.Config{Dev: true, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	ar := devLogin(b, h, "bench")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1.0/"+ar.TenantID()+"/sessions", strings.NewReader(`{"heartbeat_timeout":30}`))
	req.Header.Set("X-Auth-Token", ar.Access.Token.ID)
	h.ServeHTTP(rec, req)
	loc := rec.Header().Get("Location")
	var tok api.HeartbeatToken
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || loc == "" {
		b.Fatalf("create session: %d %s", rec.Code, rec.Body)
	}
	path := "/v1.0/" + ar.TenantID() + "/sessions/" + loc[strings.LastIndex(loc, "/")+1:] + "/heartbeat"
	// Always send the creation token: after the first heartbeat it is the
	// previous token, which replays the same reply, so every iteration
	// does the same work.
	body := []byte(`{"token":"` + tok.Token + `"}`)
	hdr := http.Header{"X-Auth-Token": {ar.Access.Token.ID}, "Content-Type": {"application/json"}}
	req = httptest.NewRequest(http.MethodPost, path, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.Header = hdr
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		w := &nopWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
	}
}
