package tlstest_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

func client(ca *tlstest.CA, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs},
	}}
}

func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestForwarder(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	addr := strings.TrimPrefix(backend.URL, "http://")
	ca := tlstest.NewCA(t)
	server := ca.Issue(t, tlstest.Server("127.0.0.1"))

	t.Run("serves the backend over TLS", func(t *testing.T) {
		fwd := tlstest.Forward(t, addr, server.ServerConfig())
		c := client(ca)
		for i := range 3 { // on one kept-alive connection, then more
			if got, err := get(c, "https://"+fwd.Addr()+"/x"); err != nil || got != "hello /x" {
				t.Fatalf("request %d: %q, %v", i, got, err)
			}
		}
		fwd.Close()
		c.CloseIdleConnections()
		if _, err := get(c, "https://"+fwd.Addr()+"/x"); err == nil {
			t.Fatal("a request after Close got through")
		}
	})

	t.Run("requires client certificates", func(t *testing.T) {
		fwd := tlstest.Forward(t, addr, tlstest.RequireClientCerts(server.ServerConfig(), ca))
		if _, err := get(client(ca), "https://"+fwd.Addr()+"/x"); err == nil {
			t.Fatal("no client certificate, and the request got through")
		}
		if errs := fwd.HandshakeErrors(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "certificate") {
			t.Fatalf("handshake errors %v, want the missing certificate", errs)
		}
		got, err := get(client(ca, ca.Issue(t, tlstest.Client("c")).TLS), "https://"+fwd.Addr()+"/y")
		if err != nil || got != "hello /y" {
			t.Fatalf("with a client certificate: %q, %v", got, err)
		}
	})

	t.Run("holds handshakes until released", func(t *testing.T) {
		fwd := tlstest.Forward(t, addr, server.ServerConfig())
		fwd.Hold()
		c := client(ca)
		c.Timeout = 200 * time.Millisecond
		if _, err := get(c, "https://"+fwd.Addr()+"/x"); err == nil {
			t.Fatal("a held handshake completed")
		}
		fwd.Release()
		c.Timeout = 10 * time.Second
		if got, err := get(c, "https://"+fwd.Addr()+"/x"); err != nil || got != "hello /x" {
			t.Fatalf("after Release: %q, %v", got, err)
		}
	})

	t.Run("issues expired certificates on request", func(t *testing.T) {
		fwd := tlstest.Forward(t, addr, ca.Issue(t, tlstest.Server("127.0.0.1").Expired()).ServerConfig())
		if _, err := get(client(ca), "https://"+fwd.Addr()+"/x"); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("expired certificate: %v", err)
		}
	})
}
