package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// checkWithin runs one check with the given timeout and fails the test
// if it takes much longer than that.
func checkWithin(t *testing.T, c Checker, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := c.Check(ctx)
	if took := time.Since(start); took > timeout+5*time.Second {
		t.Fatalf("%s took %s with a %s timeout", c, took, timeout)
	}
	return err
}

func TestHTTPCheckHealthyOn2xxAnd3xxOnly(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != userAgent {
			http.Error(w, "wrong user agent", http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/redirected", http.StatusFound)
	})
	mux.HandleFunc("/redirected", func(w http.ResponseWriter, _ *http.Request) {
		followed.Add(1)
		http.Error(w, "a redirect was followed", http.StatusInternalServerError)
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/broken", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "database is down", http.StatusInternalServerError)
	})
	mux.HandleFunc("/long-error", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Repeat("x", 10000)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		path    string
		wantErr string // "" means healthy
	}{
		{"/ok", ""},
		{"/no-content", ""},
		{"/redirect", ""},
		{"/missing", "GET " + srv.URL + "/missing: 404 Not Found: \"404 page not found\""},
		{"/broken", "GET " + srv.URL + "/broken: 500 Internal Server Error: \"database is down\""},
		{"/long-error", "503 Service Unavailable: \"" + strings.Repeat("x", errorBodyLimit) + "\"..."},
	}
	for _, tt := range tests {
		c, err := HTTP(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		err = checkWithin(t, c, 5*time.Second)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want healthy", tt.path, err)
		case tt.wantErr != "" && (err == nil || !strings.HasSuffix(err.Error(), tt.wantErr)):
			t.Errorf("%s: %v, want an error ending in %q", tt.path, err, tt.wantErr)
		}
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

func TestHTTPCheckThatHangsFailsAtItsTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	c, err := HTTP(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = checkWithin(t, c, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging server: %v, want a deadline error", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("failed after %s, before its timeout", took)
	}
}

func TestHTTPCheckOpensANewConnectionEachTime(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := HTTP(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := checkWithin(t, c, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("3 checks made %d connections, want 3 (no keep-alive)", n)
	}
}

func TestHTTPCheckRedactsThePassword(t *testing.T) {
	c, err := HTTP("http://user:secret@127.0.0.1:1/health#frag")
	if err != nil {
		t.Fatal(err)
	}
	err = checkWithin(t, c, 5*time.Second)
	for _, s := range []string{c.String(), err.Error()} {
		if strings.Contains(s, "secret") || strings.Contains(s, "frag") {
			t.Errorf("%q shows the password or the fragment", s)
		}
	}
	if c.String() != "GET http://user:xxxxx@127.0.0.1:1/health" {
		t.Errorf("String() = %q", c.String())
	}
}

func TestHTTPRejectsBadURLs(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"localhost:8080/health", `"localhost:8080/health" has no http:// or https:// scheme: write http://localhost:8080/health`},
		{"127.0.0.1:8080/health", `"127.0.0.1:8080/health" has no http:// or https:// scheme: write http://127.0.0.1:8080/health`},
		{"/health", `"/health" has no scheme: write http:///health`},
		{"//localhost/health", `"//localhost/health" has no scheme: write http://localhost/health`},
		{"ftp://localhost/", `"ftp://localhost/": scheme "ftp" is not supported: use http or https`},
		{"http:///health", `"http:///health" has no host: write http://127.0.0.1:PORT/PATH to check this machine`},
		{"http://:8080/", `"http://:8080/" has no host`},
		{"http://localhost:99999/", `"http://localhost:99999/": port "99999" is not a number from 1 to 65535`},
		{"http://localhost:0/", `port "0" is not a number from 1 to 65535`},
		{"http://local host/", `"http://local host/" is not a URL: invalid character " " in host name`},
		{"", `"" has no scheme`},
	}
	for _, tt := range tests {
		_, err := HTTP(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("HTTP(%q): %v, want %q", tt.in, err, tt.wantErr)
		}
	}
	for _, ok := range []string{"http://127.0.0.1/", "HTTPS://example.com:8443/x?y=1", "http://[::1]:80/"} {
		if _, err := HTTP(ok); err != nil {
			t.Errorf("HTTP(%q): %v", ok, err)
		}
	}
}

func TestTCPCheckFollowsTheListener(t *testing.T) {
	// Find a free port, then leave it closed: the program has not opened
	// it yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	c, err := TCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWithin(t, c, 5*time.Second); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("before the port is open: %v, want connection refused", err)
	}

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("open the port late: %v", err)
	}
	if err := checkWithin(t, c, 5*time.Second); err != nil {
		t.Fatalf("with the port open: %v", err)
	}
	// The check connects and leaves at once, before sending anything.
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read from the check's connection: %d bytes, %v; want EOF", n, err)
	}
	conn.Close()

	l.Close()
	if err := checkWithin(t, c, 5*time.Second); err == nil {
		t.Fatal("after the port closed: healthy")
	}
}

func TestTCPRejectsBadAddresses(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"localhost", `"localhost" is not HOST:PORT: missing port in address`},
		{"3306", `"3306" is not HOST:PORT: missing port in address`},
		{":3306", `":3306" has no host: write 127.0.0.1:3306 to check this machine`},
		{"localhost:mysql", `"localhost:mysql": port "mysql" is not a number from 1 to 65535`},
		{"localhost:0", `"localhost:0": port "0" is not a number from 1 to 65535`},
		{"localhost:65536", `port "65536" is not a number`},
		{"localhost:+80", `port "+80" is not a number`},
		{"::1:80", `"::1:80" is not HOST:PORT: too many colons in address`},
		{"", `"" is not HOST:PORT: missing port in address`},
	}
	for _, tt := range tests {
		_, err := TCP(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("TCP(%q): %v, want %q", tt.in, err, tt.wantErr)
		}
	}
	for _, ok := range []string{"127.0.0.1:3306", "[::1]:3306", "db.example.com:65535"} {
		if c, err := TCP(ok); err != nil || c.String() != "TCP connect "+ok {
			t.Errorf("TCP(%q): %v, %v", ok, c, err)
		}
	}
}
