package registryd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

// running is a Daemon started by start, in this process.
type running struct {
	addr   string
	d      *Daemon
	logs   *observer.ObservedLogs
	reload chan struct{}
}

// start runs a Daemon of cfg (dev mode on a temporary data dir, on
// 127.0.0.1:0, unless cfg says otherwise) until the test ends.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	cfg.Logger = zap.New(core)
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Server.DataDir == "" {
		cfg.Server.DataDir = t.TempDir()
	}
	if cfg.Server.Credentials == nil {
		cfg.Server.Dev = true
	}
	r := &running{logs: logs, reload: make(chan struct{})}
	cfg.Reload = r.reload
	addrc := make(chan string, 1)
	cfg.Listening = func(a net.Addr) { addrc <- a.String() }
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case r.addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("not listening within 20 s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("did not stop within 20 s")
		}
	})
	return r
}

// doReload reloads and waits for its log line (msg starting "reload: ").
func (r *running) doReload(t *testing.T, wantMsgs ...string) {
	t.Helper()
	before := r.logs.Len()
	r.reload <- struct{}{}
	for _, want := range wantMsgs {
		testsupport.EventuallyTrue(t, 5*time.Second, "log "+want, func() bool {
			for _, e := range r.logs.All()[before:] {
				if e.Message == want {
					return true
				}
			}
			return false
		})
	}
}

func (r *running) logged(msg string) []observer.LoggedEntry {
	return r.logs.FilterMessage(msg).All()
}

// certFiles writes kp's PEM to cert.pem and key.pem in dir (replacing them).
func certFiles(t *testing.T, dir string, kp *tlstest.KeyPair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, data := range map[string][]byte{certFile: kp.CertPEM, keyFile: kp.KeyPEM} {
		if err := os.WriteFile(f+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func httpsClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// serialOf makes a request with hc and returns the serial of the server's
// certificate and whether the connection was reused.
func serialOf(t *testing.T, hc *http.Client, url string) (serial string, reused bool) {
	t.Helper()
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET %s: %s, TLS %v", url, resp.Status, resp.TLS != nil)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Text(16), reused
}

func TestTLSCertificateReload(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	first, second := ca.Issue(t, tlstest.Server("127.0.0.1")), ca.Issue(t, tlstest.Server("127.0.0.1"))
	dir := t.TempDir()
	certFile, keyFile := certFiles(t, dir, first)
	r := start(t, Config{TLSCert: certFile, TLSKey: keyFile})
	url := "https://" + r.addr + "/healthz"
	serial := func(kp *tlstest.KeyPair) string { return kp.TLS.Leaf.SerialNumber.Text(16) }

	if l := r.logged("listening"); len(l) != 1 || !strings.HasPrefix(l[0].ContextMap()["url"].(string), "https://") ||
		l[0].ContextMap()["cert_serial"] != serial(first) {
		t.Fatalf("listening line %+v: want an https url and the certificate's serial", l)
	}
	kept := httpsClient(ca.Pool())
	if got, _ := serialOf(t, kept, url); got != serial(first) {
		t.Fatalf("serial %s, want the first certificate's %s", got, serial(first))
	}
	// TLS 1.1 is refused.
	old := &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}
	if c, err := tls.Dial("tcp", r.addr, old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}

	certFiles(t, dir, second)
	r.doReload(t, "reload: certificate reloaded")
	if got, _ := serialOf(t, httpsClient(ca.Pool()), url); got != serial(second) {
		t.Fatalf("a new connection after the reload got serial %s, want the new certificate's %s", got, serial(second))
	}
	// The connection made before the reload lives on, with its certificate.
	if got, reused := serialOf(t, kept, url); !reused || got != serial(first) {
		t.Fatalf("the connection made before the reload: reused %v, serial %s; want it kept with %s", reused, got, serial(first))
	}

	// A reload that fails keeps what serves.
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.doReload(t, "reload: keeping the previous certificate")
	if got, _ := serialOf(t, httpsClient(ca.Pool()), url); got != serial(second) {
		t.Fatalf("after a failed reload: serial %s, want %s still", got, serial(second))
	}
	for _, e := range r.logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "PRIVATE KEY") {
				t.Fatalf("log %q field %s quotes the key", e.Message, k)
			}
		}
	}
}

func TestCredentialsReload(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "credentials")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice alice-secret-key 100001\n")
	creds, err := server.LoadCredentials(file)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{CredentialsFile: file, Server: server.Config{Credentials: creds}})
	authURL := "http://" + r.addr
	login := func(user, key string) error {
		_, err := registrytest.Login(context.Background(), authURL, user, key)
		return err
	}
	if err := login("alice", "alice-secret-key"); err != nil {
		t.Fatalf("alice before the reload: %v", err)
	}
	write("bob bob-secret-key 100002\n")
	r.doReload(t, "reload: credentials reloaded")
	if err := login("bob", "bob-secret-key"); err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	if err := login("alice", "alice-secret-key"); err == nil {
		t.Fatal("alice still authenticates after the reload removed her")
	}
	write("carol carol-secret-key\n") // two fields: the file is broken
	r.doReload(t, "reload: keeping the previous credentials")
	if err := login("bob", "bob-secret-key"); err != nil {
		t.Fatalf("bob after a failed reload: %v", err)
	}
	for _, e := range r.logs.All() {
		if s := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(s, "secret-key") {
			t.Fatalf("a log line quotes a key: %s", s)
		}
	}
}

// dribble sends head, then one byte of more every 500 ms, and returns how
// long the server took to close the connection (at most 40 s: then the
// test fails).
func dribble(t *testing.T, addr, head, more string) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = c.SetReadDeadline(time.Now().Add(40 * time.Second))
		_, _ = io.Copy(io.Discard, c) // a 400 or nothing, then EOF
	}()
	for i := 0; ; i++ {
		select {
		case <-closed:
			return time.Since(start)
		case <-time.After(500 * time.Millisecond):
		}
		if time.Since(start) > 40*time.Second {
			t.Fatalf("still connected after %s of dribbling", time.Since(start))
		}
		if _, err := c.Write([]byte{more[i%len(more)]}); err != nil {
			<-closed
			return time.Since(start)
		}
	}
}

// TestSlowClientsAreCutOff: with the default timeouts a client that
// dribbles its header, or its body, a byte every 500 ms is cut off within
// 30 s, and the server answers others meanwhile.
func TestSlowClientsAreCutOff(t *testing.T) {
	t.Parallel()
	r := start(t, Config{})
	tests := []struct {
		name, head, more string
		atLeast          time.Duration
	}{
		{"header", "POST /v2.0/tokens HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaa\r\n", server.DefaultReadHeaderTimeout},
		{"body", "POST /v2.0/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n", `{"auth":`, server.DefaultReadTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			took := dribble(t, r.addr, tc.head, tc.more)
			if took > 30*time.Second || took < tc.atLeast-time.Second {
				t.Fatalf("cut off after %s; want within 30 s, and not before the %s timeout", took, tc.atLeast)
			}
			t.Logf("cut off after %s", took.Round(100*time.Millisecond))
		})
	}
	t.Run("others are answered meanwhile", func(t *testing.T) {
		t.Parallel()
		// With -parallel 2 (two cores) one slow client may still wait
		// for its turn: one connected is the case to test.
		testsupport.EventuallyTrue(t, 30*time.Second, "a slow client connected", func() bool {
			open, _, _, _ := r.d.limiter.counts()
			return open >= 1
		})
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + r.addr + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: %v, %v", resp, err)
		}
		resp.Body.Close()
	})
}

// TestKeepAliveOutlivesTheReadTimeout: the read timeout bounds each
// request, not the connection: a heartbeat connection idle for longer
// than it is reused.
func TestKeepAliveOutlivesTheReadTimeout(t *testing.T) {
	t.Parallel()
	r := start(t, Config{HTTP: server.HTTPLimits{ReadHeaderTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, IdleTimeout: 30 * time.Second}})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	get := func() bool {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/healthz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return reused
	}
	get()
	time.Sleep(2500 * time.Millisecond) // over the read timeout, well within the idle one
	if !get() {
		t.Fatal("the keep-alive connection was closed after the read timeout; it must live on the idle timeout")
	}
}

// idleConns opens n connections that each make one keep-alive request and
// then stay open, idle, until the test ends.
// idleConns opens n keep-alive connections, one request each, and returns
// once the server counts them all idle: net/http marks a connection idle
// only after the client may have read its response, so on a busy machine
// the order in which they become idle is not the order they were opened
// until each has been seen idle.
func idleConns(t *testing.T, r *running, n int) []net.Conn {
	t.Helper()
	addr := r.addr
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns), err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetDeadline(time.Time{})
		// One at a time, so that the idle list is in the order opened.
		testsupport.EventuallyTrue(t, 5*time.Second, fmt.Sprintf("connection %d idle", len(conns)), func() bool {
			_, idle, _, _ := r.d.limiter.counts()
			return idle >= len(conns)
		})
	}
	return conns
}

func TestThousandIdleConnectionsDoNotStopTheServer(t *testing.T) {
	t.Parallel()
	r := start(t, Config{})
	idleConns(t, r, 1000)
	start := time.Now()
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}).Get("http://" + r.addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("with 1,000 idle connections: %v, %v", resp, err)
	}
	resp.Body.Close()
	if open, idle, evicted, refused := r.d.limiter.counts(); open < 1000 || idle < 999 || evicted != 0 || refused != 0 {
		t.Fatalf("counted %d open, %d idle, %d evicted, %d refused; want the 1,000 idle ones kept (under the cap)", open, idle, evicted, refused)
	}
	t.Logf("answered in %s with 1,000 idle connections open", time.Since(start))
}

// TestConnectionCap: when the cap is reached a new connection takes the
// place of the longest-idle one; when none is idle it is refused at once,
// not left waiting. /metrics counts both.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	const max = 20
	t.Run("the longest-idle connection makes room", func(t *testing.T) {
		t.Parallel()
		r := start(t, Config{MaxConnections: max})
		conns := idleConns(t, r, max)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		resp, err := hc.Get("http://" + r.addr + "/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("at the cap: %v, %v", resp, err)
		}
		resp.Body.Close()
		_ = conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conns[0].Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("the longest-idle connection: read %d, %v; want it closed (EOF)", n, err)
		}
		_ = conns[1].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := conns[1].Read(make([]byte, 1)); !os.IsTimeout(err) {
			t.Fatalf("the second-longest idle connection: %v; want it still open", err)
		}
		if open, _, evicted, refused := r.d.limiter.counts(); open > max || evicted != 1 || refused != 0 {
			t.Fatalf("open %d, evicted %d, refused %d; want at most %d, 1, 0", open, evicted, refused, max)
		}
		// On the connection of the /healthz, so that the scrape evicts
		// nothing more.
		m := registrytest.Metrics(t, hc, "http://"+r.addr+"/metrics")
		if m["sr_registry_connections"] != max || m["sr_registry_connections_max"] != max ||
			m["sr_registry_connections_evicted_total"] != 1 || m["sr_registry_connections_refused_total"] != 0 {
			t.Fatalf("connections %v of max %v, evicted %v, refused %v; want %d of %d, 1, 0", m["sr_registry_connections"],
				m["sr_registry_connections_max"], m["sr_registry_connections_evicted_total"], m["sr_registry_connections_refused_total"], max, max)
		}
	})
	t.Run("none idle: refused at once", func(t *testing.T) {
		t.Parallel()
		r := start(t, Config{MaxConnections: max})
		busy := make([]net.Conn, 0, max)
		defer func() {
			for _, c := range busy {
				c.Close()
			}
		}()
		for range max {
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			busy = append(busy, c)
			// Half a header: busy, not idle.
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\n"); err != nil {
				t.Fatal(err)
			}
		}
		testsupport.EventuallyTrue(t, 5*time.Second, "the cap reached", func() bool { open, _, _, _ := r.d.limiter.counts(); return open == max })
		start := time.Now()
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err == nil {
			if _, err = c.Read(make([]byte, 1)); os.IsTimeout(err) || err == nil {
				t.Fatalf("over the cap: read %v; want the connection closed at once", err)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("refused after %s; want at once", d)
		}
		if l := r.logged("connection limit reached and no connection idle: refusing new connections (raise --max-connections, or add frontends)"); len(l) != 1 {
			t.Fatalf("warnings %v; want one", l)
		}
		// Once the busy ones go, others are served again.
		for _, c := range busy {
			c.Close()
		}
		testsupport.Eventually(t, 10*time.Second, "served again", func() error {
			resp, err := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}).Get("http://" + r.addr + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		})
		// The probes above may have been refused too, before the busy
		// connections were gone; none was idle to evict.
		m := registrytest.Metrics(t, &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}, "http://"+r.addr+"/metrics")
		if m["sr_registry_connections_refused_total"] < 1 || m["sr_registry_connections_evicted_total"] != 0 {
			t.Fatalf("refused %v, evicted %v; want at least 1, 0", m["sr_registry_connections_refused_total"], m["sr_registry_connections_evicted_total"])
		}
	})
}

func TestPlainHTTPBeyondLoopbackWarns(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	certFile, keyFile := certFiles(t, t.TempDir(), ca.Issue(t, tlstest.Server("127.0.0.1")))
	const warning = "serving plain HTTP beyond loopback: API keys and tokens cross the network in clear; " +
		"give --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS-terminating proxy"
	tests := []struct {
		name string
		cfg  Config
		warn bool
	}{
		// Nothing is sent to the all-interfaces listeners: they exist for
		// the warning and stop at once.
		{"0.0.0.0", Config{Listen: "0.0.0.0:0"}, true},
		{"127.0.0.1", Config{Listen: "127.0.0.1:0"}, false},
		{"localhost", Config{Listen: "localhost:0"}, false},
		{"0.0.0.0 with TLS", Config{Listen: "0.0.0.0:0", TLSCert: certFile, TLSKey: keyFile}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := start(t, tc.cfg)
			if got := len(r.logged(warning)) == 1; got != tc.warn {
				t.Fatalf("warned %v, want %v", got, tc.warn)
			}
		})
	}
}

// TestOversizedBodyOverTLS: the 413 of a body over the limit reaches a
// client that writes its whole body before reading, over TLS too, for
// both framings (plain HTTP is internal/server's conformance test).
func TestOversizedBodyOverTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	certFile, keyFile := certFiles(t, t.TempDir(), ca.Issue(t, tlstest.Server("127.0.0.1")))
	r := start(t, Config{TLSCert: certFile, TLSKey: keyFile})
	// A real token: a chunked body's size is known only once read, after
	// the authentication.
	hc := httpsClient(ca.Pool())
	resp, err := hc.Post("https://"+r.addr+"/v2.0/tokens", "application/json",
		strings.NewReader(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"alice","apiKey":"k"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var ar api.AuthResponse
	err = json.NewDecoder(resp.Body).Decode(&ar)
	resp.Body.Close()
	if err != nil || ar.Access.Token.ID == "" {
		t.Fatalf("authenticate over TLS: %s, %v", resp.Status, err)
	}
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			value := []byte(`{"value":"` + strings.Repeat("x", 4<<20) + `"}`)
			body, framing := value, fmt.Sprintf("Content-Length: %d", len(value))
			if chunked {
				var b strings.Builder
				for rest := value; len(rest) > 0; {
					n := min(len(rest), 32<<10)
					fmt.Fprintf(&b, "%x\r\n%s\r\n", n, rest[:n])
					rest = rest[n:]
				}
				b.WriteString("0\r\n\r\n")
				body, framing = []byte(b.String()), "Transfer-Encoding: chunked"
			}
			c, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: ca.Pool()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			head := fmt.Sprintf("PUT /v1.0/%s/configuration/key HTTP/1.1\r\nHost: x\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\n%s\r\n\r\n",
				ar.TenantID(), ar.Access.Token.ID, framing)
			if _, err := c.Write(append([]byte(head), body...)); err != nil {
				t.Fatalf("writing the %d-byte request: %v", len(body), err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the reply: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("reply %s, want 413", resp.Status)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the 413: %q, %v; want a clean close", rest, err)
			}
		})
	}
}

// TestMetricsListenerServesTLSToo: with --tls-cert the metrics listener
// is HTTPS as well; plain HTTP gets no metrics there.
func TestMetricsListenerServesTLSToo(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	certFile, keyFile := certFiles(t, t.TempDir(), ca.Issue(t, tlstest.Server("127.0.0.1")))
	r := start(t, Config{TLSCert: certFile, TLSKey: keyFile, MetricsListen: "127.0.0.1:0", Server: server.Config{SeparateMetrics: true}})
	l := r.logged("serving metrics")
	if len(l) != 1 {
		t.Fatalf("serving metrics lines %v, want one", l)
	}
	url, _ := l[0].ContextMap()["url"].(string)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("metrics url %q, want https://", url)
	}
	resp, err := httpsClient(ca.Pool()).Get(url)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v, %v", url, resp, err)
	}
	resp.Body.Close()
	plain := "http://" + strings.TrimPrefix(url, "https://")
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(plain); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("GET %s over plain HTTP: %s; want no metrics", plain, resp.Status)
		}
	}
}
