package main_test

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

const srctlPackage = "github.com/sr-wrapper/sr-wrapper/cmd/srctl"

// writePair writes kp to cert.pem and key.pem in dir, each replaced at
// once (renamed into place), as a certificate renewal does.
func writePair(t *testing.T, dir string, kp *tlstest.KeyPair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, data := range map[string][]byte{certFile: kp.CertPEM, keyFile: kp.KeyPEM} {
		if err := os.WriteFile(f+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".new", f); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// servedSerial is the serial of the certificate a new TLS connection to
// addr gets, verified against ca.
func servedSerial(t *testing.T, addr string, ca *tlstest.CA) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// TestHTTPSRegistryBinary: the sr-registry binary serves HTTPS with
// --tls-cert; sr-wrapper and srctl use it with --cacert. SIGHUP swaps the
// certificate for new connections while the wrapper heartbeats on in its
// session; a reload that fails keeps the certificate that serves.
func TestHTTPSRegistryBinary(t *testing.T) {
	t.Parallel()
	srctl := registrytest.BuildBinary(t, srctlPackage)
	ca := tlstest.NewCA(t)
	caFile := ca.File(t)
	first, second := ca.Issue(t, tlstest.Server("127.0.0.1")), ca.Issue(t, tlstest.Server("127.0.0.1"))
	serial := func(kp *tlstest.KeyPair) string { return kp.TLS.Leaf.SerialNumber.Text(16) }
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, first)
	reg := registrytest.StartProcess(t, bin.registry, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(reg.URL, "https://") {
		t.Fatalf("the listening line's url is %s, want https://", reg.URL)
	}

	user, key := "e2e-"+randomHex(4), "secret-key-"+randomHex(8)
	api, err := srapi.NewClient(srapi.Config{RegistryURL: reg.URL, Username: user, APIKey: key, TLS: srapi.TLSFiles{CACert: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	acct := &account{User: user, Key: key, API: api}
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(srctl, append([]string{"--registry", reg.URL, "--username", user, "--api-key", key, "--cacert", caFile}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("srctl %s: %v; stderr %s", args, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("srctl %s: no exit within 20 s", args)
		}
		return stdout.String()
	}

	w := startWrapper(t, cmdline(append(acct.flags(reg.URL, "over-https"), "--cacert", caFile), fakeproc("--ready", "--exit-on-term", "0")...))
	w.ready()
	sid := w.registered()
	if out := ctl("services", "list"); !strings.Contains(out, "over-https") {
		t.Fatalf("srctl services list: %q; want over-https", out)
	}
	if got := servedSerial(t, reg.Addr, ca); got != serial(first) {
		t.Fatalf("served serial %s, want %s", got, serial(first))
	}
	lastSeen := func() int64 {
		s, err := acct.session(sid)
		if err != nil || s == nil || s.LastSeen == nil {
			return 0
		}
		return *s.LastSeen
	}
	reloaded := func(msg string) func() bool {
		n := strings.Count(reg.Logs(), `"msg":"`+msg+`"`)
		return func() bool { return strings.Count(reg.Logs(), `"msg":"`+msg+`"`) > n }
	}

	// Renewal: new files, SIGHUP.
	writePair(t, dir, second)
	done := reloaded("reload: certificate reloaded")
	reg.Signal(syscall.SIGHUP)
	testsupport.EventuallyTrue(t, eventWait, "the reload logged", done)
	reloadedAt := time.Now().UnixMilli()
	if got := servedSerial(t, reg.Addr, ca); got != serial(second) {
		t.Fatalf("after SIGHUP a new connection got serial %s, want the new certificate's %s", got, serial(second))
	}
	// Heartbeats go on for longer than the session timeout, in the same
	// session: a lost session would have been replaced by then.
	testsupport.EventuallyTrue(t, 3*ttl, "heartbeats for a timeout after the reload", func() bool {
		return lastSeen() > reloadedAt+ttl.Milliseconds()
	})

	// A broken renewal: the old certificate goes on serving.
	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	done = reloaded("reload: keeping the previous certificate")
	reg.Signal(syscall.SIGHUP)
	testsupport.EventuallyTrue(t, eventWait, "the failed reload logged", done)
	if got := servedSerial(t, reg.Addr, ca); got != serial(second) {
		t.Fatalf("after a failed reload: serial %s, want %s still", got, serial(second))
	}
	if out := ctl("services", "list"); !strings.Contains(out, "over-https") {
		t.Fatalf("srctl after a failed reload: %q; want over-https", out)
	}

	if n := sessionsCreated(w); n != 1 {
		t.Fatalf("%d sessions created, want 1: the reload cost the wrapper its session", n)
	}
	if s := acct.sessions(t); len(s) != 1 || s[0].ID != sid {
		t.Fatalf("sessions %+v; want %s alone", s, sid)
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	acct.mustBeAbsent(t, "over-https", "after the wrapper exited")
	if out := ctl("services", "list"); strings.Contains(out, "over-https") {
		t.Fatalf("srctl services list after the exit: %q", out)
	}
	if code := reg.Terminate(); code != 0 {
		t.Fatalf("sr-registry exit code %d after SIGTERM, want 0", code)
	}
}
