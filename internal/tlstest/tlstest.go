// Package tlstest is test support for TLS: a certificate authority made in
// the test with crypto/x509, the server and client certificates it signs
// (as PEM files, for flags such as --cacert, --cert and --key), and a
// TLS-terminating forwarder that puts HTTPS, optionally requiring client
// certificates, in front of a plain server such as a real sr-registry.
//
// It is not a PKI: keys are ECDSA P-256 made fresh for every test, nothing
// is revoked, and the forwarder copies bytes without looking at them. It
// holds no package-level state; files go to t.TempDir() and the forwarder
// closes with the test.
//
//	ca := tlstest.NewCA(t)
//	srv := ca.Issue(t, tlstest.Server("127.0.0.1"))
//	fwd := tlstest.Forward(t, reg.Addr, srv.ServerConfig())
//	// https://<fwd.Addr()>/v1.0 with --cacert ca.File(t)
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CA is a certificate authority of one test.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate in PEM form.
	PEM []byte
}

// NewCA makes a self-signed CA valid from an hour ago for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "tlstest CA " + t.Name()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("tlstest: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tlstest: parse CA: %v", err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool is a pool holding the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// File writes the CA certificate to a PEM file and returns its path.
func (ca *CA) File(t testing.TB) string {
	t.Helper()
	return WriteFile(t, "ca.pem", ca.PEM)
}

// Spec describes a certificate to issue.
type Spec struct {
	// CommonName is the subject's name.
	CommonName string
	// IPs and DNSNames are the names a server certificate is valid for.
	IPs      []net.IP
	DNSNames []string
	// Client makes a client certificate (ExtKeyUsageClientAuth) rather
	// than a server one.
	Client bool
	// NotBefore and NotAfter default to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
}

// Server is the Spec of a server certificate for host, an IP address or
// a DNS name.
func Server(host string) Spec {
	s := Spec{CommonName: host}
	if ip := net.ParseIP(host); ip != nil {
		s.IPs = []net.IP{ip}
	} else {
		s.DNSNames = []string{host}
	}
	return s
}

// Client is the Spec of a client certificate for name.
func Client(name string) Spec { return Spec{CommonName: name, Client: true} }

// Expired returns s valid only in the past: until an hour ago.
func (s Spec) Expired() Spec {
	s.NotBefore, s.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	return s
}

// KeyPair is an issued certificate and its private key.
type KeyPair struct {
	// CertPEM and KeyPEM are the certificate and the key (PKCS #8) in PEM.
	CertPEM, KeyPEM []byte
	// TLS is the pair for a tls.Config.
	TLS tls.Certificate
}

// Issue signs a certificate as spec says.
func (ca *CA) Issue(t testing.TB, spec Spec) *KeyPair {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: spec.CommonName},
		NotBefore:    spec.NotBefore,
		NotAfter:     spec.NotAfter,
		IPAddresses:  spec.IPs,
		DNSNames:     spec.DNSNames,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if spec.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("tlstest: issue %q: %v", spec.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("tlstest: marshal key: %v", err)
	}
	kp := &KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if kp.TLS, err = tls.X509KeyPair(kp.CertPEM, kp.KeyPEM); err != nil {
		t.Fatalf("tlstest: key pair: %v", err)
	}
	return kp
}

// Files writes the certificate and the key to PEM files and returns their
// paths.
func (kp *KeyPair) Files(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	return WriteFile(t, "cert.pem", kp.CertPEM), WriteFile(t, "key.pem", kp.KeyPEM)
}

// ServerConfig is a TLS server configuration presenting kp.
func (kp *KeyPair) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{kp.TLS}, MinVersion: tls.VersionTLS12}
}

// RequireClientCerts makes cfg require a client certificate signed by ca
// (tls.RequireAndVerifyClientCert) and returns it.
func RequireClientCerts(cfg *tls.Config, ca *CA) *tls.Config {
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = ca.Pool()
	return cfg
}

// WriteFile writes data to a new file named name in a fresh t.TempDir()
// (0600) and returns its path.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("tlstest: key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("tlstest: serial: %v", err)
	}
	return n
}

// handshakeTimeout bounds a client's TLS handshake with the forwarder.
const handshakeTimeout = 10 * time.Second

// Forwarder accepts TLS connections on a loopback port and copies each,
// once its handshake succeeded, to and from a new plain connection to its
// backend.
type Forwarder struct {
	ln      net.Listener
	backend string
	cfg     *tls.Config

	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	failures  []error       // handshakes that failed
	held      chan struct{} // while non-nil, handshakes wait for it to close
	closed    bool
	closing   chan struct{} // closed by Close
	wg        sync.WaitGroup
	accepting chan struct{}
}

// Forward starts a forwarder to backend (host:port) that serves TLS with
// cfg, and closes it when the test ends.
func Forward(t testing.TB, backend string, cfg *tls.Config) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tlstest: listen: %v", err)
	}
	f := &Forwarder{ln: ln, backend: backend, cfg: cfg, conns: map[net.Conn]struct{}{},
		closing: make(chan struct{}), accepting: make(chan struct{})}
	go f.accept()
	t.Cleanup(f.Close)
	return f
}

// Addr is where the forwarder listens, 127.0.0.1:PORT.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Hold makes the connections accepted from now on wait before their
// handshake, until Release: a test can then let a client start and meet
// the server's certificate only when the test is ready for what follows.
func (f *Forwarder) Hold() {
	f.mu.Lock()
	if f.held == nil {
		f.held = make(chan struct{})
	}
	f.mu.Unlock()
}

// Release lets the held connections, and every later one, go on.
func (f *Forwarder) Release() {
	f.mu.Lock()
	if f.held != nil {
		close(f.held)
		f.held = nil
	}
	f.mu.Unlock()
}

// HandshakeErrors are the server side's errors of the handshakes that
// failed so far ("tls: client didn't provide a certificate", ...).
func (f *Forwarder) HandshakeErrors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.failures...)
}

// Close stops listening, closes every connection and waits for the
// copying to end. Closing twice does nothing.
func (f *Forwarder) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.closing)
	_ = f.ln.Close()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	<-f.accepting
	f.wg.Wait()
}

// track adds c to the open connections, or closes it and returns false
// when the forwarder is closed.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	_ = c.Close()
}

func (f *Forwarder) accept() {
	defer close(f.accepting)
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *Forwarder) serve(raw net.Conn) {
	defer f.wg.Done()
	defer f.untrack(raw)
	f.mu.Lock()
	held := f.held
	f.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-f.closing:
			return
		}
	}
	tc := tls.Server(raw, f.cfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		f.mu.Lock()
		f.failures = append(f.failures, err)
		f.mu.Unlock()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	back, err := net.DialTimeout("tcp", f.backend, handshakeTimeout)
	if err != nil {
		return
	}
	if !f.track(back) {
		return
	}
	defer f.untrack(back)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so that the other direction can finish its reply.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(back, tc)
	go pipe(tc, back)
	<-done
	<-done
}
