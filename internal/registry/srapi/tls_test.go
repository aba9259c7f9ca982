package srapi_test

// TLS: the client against a real sr-registry behind a TLS-terminating
// forwarder, with certificates of a CA made in the test.

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

// httpsConfig is a client configuration for the registry behind fwd, with
// its own identity endpoint (through fwd too).
func httpsConfig(fwd *tlstest.Forwarder, files srapi.TLSFiles) srapi.Config {
	return srapi.Config{RegistryURL: "https://" + fwd.Addr() + "/v1.0", Username: itUser, APIKey: itKey, TLS: files}
}

func TestTLSWithAPrivateCA(t *testing.T) {
	reg := registrytest.Start(t)
	ca := tlstest.NewCA(t)
	other := tlstest.NewCA(t)
	server := ca.Issue(t, tlstest.Server("127.0.0.1"))
	clientCert, clientKey := ca.Issue(t, tlstest.Client("wrapper")).Files(t)
	strangerCert, strangerKey := other.Issue(t, tlstest.Client("stranger")).Files(t)
	mutual := func() *tlstest.Forwarder {
		return tlstest.Forward(t, reg.Addr, tlstest.RequireClientCerts(server.ServerConfig(), ca))
	}

	tests := []struct {
		name  string
		fwd   *tlstest.Forwarder
		files srapi.TLSFiles
		// wantErr is the start of the TLS problem, "" for success.
		wantErr string
	}{
		{name: "CA given", fwd: tlstest.Forward(t, reg.Addr, server.ServerConfig()),
			files: srapi.TLSFiles{CACert: ca.File(t)}},
		{name: "no CA: the system roots do not know it", fwd: tlstest.Forward(t, reg.Addr, server.ServerConfig()),
			wantErr: "certificate signed by unknown authority for 127.0.0.1: use --cacert"},
		{name: "another CA", fwd: tlstest.Forward(t, reg.Addr, server.ServerConfig()),
			files:   srapi.TLSFiles{CACert: other.File(t)},
			wantErr: "certificate signed by unknown authority for 127.0.0.1: the CA that signed the registry's certificate is not in --cacert"},
		{name: "certificate for another host", fwd: tlstest.Forward(t, reg.Addr, ca.Issue(t, tlstest.Server("127.0.0.2")).ServerConfig()),
			files:   srapi.TLSFiles{CACert: ca.File(t)},
			wantErr: "certificate of the registry does not name 127.0.0.1"},
		{name: "expired certificate", fwd: tlstest.Forward(t, reg.Addr, ca.Issue(t, tlstest.Server("127.0.0.1").Expired()).ServerConfig()),
			files:   srapi.TLSFiles{CACert: ca.File(t)},
			wantErr: "certificate of the registry at 127.0.0.1 has expired or is not valid yet"},
		{name: "client certificate", fwd: mutual(),
			files: srapi.TLSFiles{CACert: ca.File(t), Cert: clientCert, Key: clientKey}},
		{name: "client certificate required, none given", fwd: mutual(),
			files:   srapi.TLSFiles{CACert: ca.File(t)},
			wantErr: "the registry at 127.0.0.1 requires a client certificate: use --cert and --key"},
		{name: "client certificate of another CA", fwd: mutual(),
			files:   srapi.TLSFiles{CACert: ca.File(t), Cert: strangerCert, Key: strangerKey},
			wantErr: "the registry at 127.0.0.1 refused the client certificate --cert " + strangerCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := backendFor(t, httpsConfig(tt.fwd, tt.files))
			sess, err := b.CreateSession(ctxFor(t, 20*time.Second), registry.SessionOptions{TTL: 10 * time.Second})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("create session over TLS: %v (server side: %v)", err, tt.fwd.HandshakeErrors())
				}
				if err := sess.Close(ctxFor(t, 10*time.Second)); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("session created, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error:\n %v\nwant it to contain\n %s", err, tt.wantErr)
			}
			if _, ok := errors.AsType[*srapi.TLSError](err); !ok {
				t.Fatalf("error %v is not a *srapi.TLSError", err)
			}
			// A configuration error: --abort-on-failure gives up at once.
			if !registry.IsPermanent(err) || srapi.IsTransient(err) {
				t.Fatalf("permanent %v, transient %v; want permanent only: %v", registry.IsPermanent(err), srapi.IsTransient(err), err)
			}
		})
	}
}

func TestTLSToAPlainHTTPServerIsAConfigurationError(t *testing.T) {
	reg := registrytest.Start(t)
	c := clientFor(t, srapi.Config{RegistryURL: "https://" + reg.Addr + "/v1.0", Username: itUser, APIKey: itKey})
	_, err := c.Limits(ctxFor(t, 10*time.Second))
	if want := "the registry at 127.0.0.1 does not speak TLS: use an http:// URL"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
	if !srapi.IsPermanent(err) {
		t.Fatalf("not permanent: %v", err)
	}
}

// TestTLSFilesAreReadAtTheFirstConnection: NewClient reads nothing, so that
// the wrapper parses no certificate in front of its child; what Check
// cannot see (a certificate that does not parse, a key of another
// certificate) is a permanent error of the first call, sent nowhere.
func TestTLSFilesAreReadAtTheFirstConnection(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, _ := ca.Issue(t, tlstest.Client("a")).Files(t)
	_, otherKey := ca.Issue(t, tlstest.Client("b")).Files(t)
	garbage := tlstest.WriteFile(t, "garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
	missing := t.TempDir() + "/missing.pem"

	tests := []struct {
		name    string
		files   srapi.TLSFiles
		wantErr string
	}{
		{"missing CA file", srapi.TLSFiles{CACert: missing}, "--cacert " + missing + ": open "},
		{"CA that does not parse", srapi.TLSFiles{CACert: garbage}, "--cacert " + garbage + ": certificate 1: x509: "},
		{"key of another certificate", srapi.TLSFiles{Cert: cert, Key: otherKey}, "--cert " + cert + ", --key " + otherKey + ": tls: private key does not match public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			c := clientFor(t, srapi.Config{RegistryURL: srv.URL + "/v1.0", Username: itUser, APIKey: itKey, TLS: tt.files})
			_, err := c.Limits(ctxFor(t, 10*time.Second))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !srapi.IsPermanent(err) || srapi.IsTransient(err) {
				t.Fatalf("want a permanent error: %v", err)
			}
			if n := conns.Load(); n != 0 {
				t.Fatalf("%d connections to the server with TLS files that did not load", n)
			}
		})
	}
}

func TestTLSFilesCheck(t *testing.T) {
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, tlstest.Client("a")).Files(t)
	unreadable := tlstest.WriteFile(t, "unreadable.pem", ca.PEM)
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	caFile := ca.File(t)
	tests := []struct {
		name    string
		files   srapi.TLSFiles
		wantErr string
	}{
		{"none", srapi.TLSFiles{}, ""},
		{"CA", srapi.TLSFiles{CACert: caFile}, ""},
		{"client certificate", srapi.TLSFiles{Cert: cert, Key: key}, ""},
		{"all", srapi.TLSFiles{CACert: caFile, Cert: cert, Key: key}, ""},
		{"missing CA", srapi.TLSFiles{CACert: "/nonexistent/ca.pem"}, "--cacert: open /nonexistent/ca.pem: no such file or directory"},
		{"a key as CA", srapi.TLSFiles{CACert: key}, "--cacert: no PEM certificate in " + key},
		{"an empty CA file", srapi.TLSFiles{CACert: tlstest.WriteFile(t, "empty.pem", nil)}, "--cacert: no PEM certificate in "},
		{"certificate without key", srapi.TLSFiles{Cert: cert}, "--cert and --key: give both or neither"},
		{"key without certificate", srapi.TLSFiles{Key: key}, "--cert and --key: give both or neither"},
		{"key as certificate", srapi.TLSFiles{Cert: key, Key: key}, "--cert: no PEM certificate in " + key},
		{"certificate as key", srapi.TLSFiles{Cert: cert, Key: cert}, "--key: no PEM private key in " + cert},
	}
	if os.Geteuid() != 0 { // root reads any file
		tests = append(tests, struct {
			name    string
			files   srapi.TLSFiles
			wantErr string
		}{"unreadable CA", srapi.TLSFiles{CACert: unreadable}, "--cacert: open " + unreadable + ": permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.files.Check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestTLSFailureOfOneFrontend: a frontend whose certificate does not verify
// is left for the next; when none verifies, the error is permanent and
// names each.
func TestTLSFailureOfOneFrontend(t *testing.T) {
	reg := registrytest.Start(t)
	ca, other := tlstest.NewCA(t), tlstest.NewCA(t)
	good := tlstest.Forward(t, reg.Addr, ca.Issue(t, tlstest.Server("127.0.0.1")).ServerConfig())
	bad := tlstest.Forward(t, reg.Addr, other.Issue(t, tlstest.Server("127.0.0.1")).ServerConfig())
	worse := tlstest.Forward(t, reg.Addr, ca.Issue(t, tlstest.Server("127.0.0.1").Expired()).ServerConfig())
	cfg := func(fwds ...*tlstest.Forwarder) srapi.Config {
		var urls []string
		for _, f := range fwds {
			urls = append(urls, "https://"+f.Addr()+"/v1.0")
		}
		return srapi.Config{RegistryURL: strings.Join(urls, ","), Username: itUser, APIKey: itKey, TLS: srapi.TLSFiles{CACert: ca.File(t)}}
	}
	ctx := ctxFor(t, 20*time.Second)
	if _, err := clientFor(t, cfg(bad, good)).Limits(ctx); err != nil {
		t.Fatalf("bad certificate, then a good one: %v", err)
	}
	_, err := clientFor(t, cfg(bad, worse)).Limits(ctx)
	if !srapi.IsPermanent(err) || srapi.IsTransient(err) {
		t.Fatalf("no frontend verifies: %v, want a permanent error", err)
	}
	for _, want := range []string{"all 2 registry frontends failed", "unknown authority for 127.0.0.1", "has expired"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
