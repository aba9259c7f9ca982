package main_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

// httpsRegistry is a real registry behind a TLS forwarder whose server
// certificate, for 127.0.0.1, is signed by ca; with mutual, the forwarder
// requires a client certificate signed by ca.
func httpsRegistry(t *testing.T, ca *tlstest.CA, mutual bool) (reg *registrytest.Registry, fwd *tlstest.Forwarder, httpsURL string) {
	t.Helper()
	reg = registrytest.Start(t)
	cfg := ca.Issue(t, tlstest.Server("127.0.0.1")).ServerConfig()
	if mutual {
		cfg = tlstest.RequireClientCerts(cfg, ca)
	}
	fwd = tlstest.Forward(t, reg.Addr, cfg)
	return reg, fwd, "https://" + fwd.Addr() + "/v1.0"
}

func TestTLSWithAPrivateCAAndAClientCertificate(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, tlstest.Client("wrapper")).Files(t)
	for _, tt := range []struct {
		name   string
		mutual bool
		flags  []string
	}{
		{"private CA", false, []string{"--cacert", ca.File(t)}},
		{"client certificate", true, []string{"--cacert", ca.File(t), "--cert", cert, "--key", key}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, _, httpsURL := httpsRegistry(t, ca, tt.mutual)
			acct := newAccount(t, reg.URL)
			w := startWrapper(t, cmdline(append(acct.flags(httpsURL, "over-tls"), tt.flags...), fakeproc("--ready", "--exit-on-term", "0")...))
			w.ready()
			sid := w.registered()
			acct.mustServiceIn(t, "over-tls", sid, "over TLS")
			if code, _ := w.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}
			acct.mustBeAbsent(t, "over-tls", "after the wrapper exited")
		})
	}
}

// TestTLSCertificateFailures: a certificate that does not verify, or a
// client certificate missing, is named plainly in the log; it is a
// configuration error, so --abort-on-failure gives up at once rather than
// after the heartbeat timeout (30 s here), and without it the child keeps
// running.
func TestTLSCertificateFailures(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	tests := []struct {
		name   string
		mutual bool
		flags  []string
		want   string
	}{
		{"no --cacert", false, nil, "certificate signed by unknown authority for 127.0.0.1: use --cacert"},
		{"no client certificate", true, []string{"--cacert", ca.File(t)}, "the registry at 127.0.0.1 requires a client certificate: use --cert and --key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg, fwd, httpsURL := httpsRegistry(t, ca, tt.mutual)
			acct := newAccount(t, reg.URL)
			flags := append(append(acct.flags(httpsURL, "bad-tls"), tt.flags...), "--interval", "30")

			t.Run("abort-on-failure exits 100 at once", func(t *testing.T) {
				// Held until the child is ready: a failure that came first
				// would stop it before it could report signals.
				fwd.Hold()
				w := startWrapper(t, cmdline(append(flags, "--abort-on-failure"), fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
				w.ready()
				released := time.Now()
				fwd.Release()
				if code := w.wait(exitWait); code != 100 {
					t.Fatalf("exit code %d, want 100", code)
				}
				if took := w.exitedAt.Sub(released); took > exitWait/2 {
					t.Fatalf("gave up %s after meeting the certificate; a configuration error must not wait out the timeout", took)
				}
				l := w.waitLog(eventWait, "registration failed for good; stopping the child (--abort-on-failure)")
				if !strings.Contains(l.Str("error"), tt.want) {
					t.Fatalf("error %q lacks %q", l.Str("error"), tt.want)
				}
				if got := w.stdout.all(exactly("signal SIGTERM")); len(got) != 1 {
					t.Fatal("the child was not asked to stop with TERM")
				}
			})
			t.Run("without it the child keeps running", func(t *testing.T) {
				w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--report-signals", "--exit-on-term", "0")...))
				w.ready()
				l := w.waitLog(eventWait, "registration failed; retrying")
				if l.Str("level") != "error" || !strings.Contains(l.Str("error"), tt.want) {
					t.Fatalf("log line %s: want an error naming %q", l.Text, tt.want)
				}
				if got := w.stdout.all(hasPrefix("signal ")); len(got) != 0 || w.exited() {
					t.Fatalf("the certificate failure reached the child: %v", got)
				}
				if code, _ := w.stop(syscall.SIGTERM); code != 0 {
					t.Fatalf("exit code %d, want 0", code)
				}
			})
			if s := acct.sessions(t); len(s) != 0 {
				t.Fatalf("sessions in the registry: %+v", s)
			}
		})
	}
}

// TestTLSFlagErrorsExit2: the TLS files are checked before anything
// starts.
func TestTLSFlagErrorsExit2(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, tlstest.Client("wrapper")).Files(t)
	acct := &account{User: "nobody", Key: "k"}
	base := acct.flags("https://127.0.0.1:1/v1.0", "tls-flags")
	for _, tt := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--cacert", "/nonexistent/ca.pem"}, "sr-wrapper: --cacert: open /nonexistent/ca.pem: no such file or directory"},
		{[]string{"--cacert", key}, "sr-wrapper: --cacert: no PEM certificate in " + key},
		{[]string{"--cert", cert}, "sr-wrapper: --cert and --key: give both or neither"},
		{[]string{"--cert", cert, "--key", cert}, "sr-wrapper: --key: no PEM private key in " + cert},
	} {
		w := startWrapper(t, cmdline(append(base, tt.flags...), fakeproc("--ready")...))
		if code := w.wait(exitWait); code != 2 {
			t.Errorf("%s: exit code %d, want 2", tt.flags, code)
			continue
		}
		if !w.stderr.WaitEOF(exitWait) || !w.stdout.WaitEOF(exitWait) {
			t.Fatalf("%s: output still open after the exit", tt.flags)
		}
		if got := w.stderr.String(); !strings.HasPrefix(got, tt.want) || strings.Count(got, "\n") != 1 {
			t.Errorf("%s: stderr %q, want one line starting %q", tt.flags, got, tt.want)
		}
		if w.stdout.String() != "" {
			t.Errorf("%s: the child started: %q", tt.flags, w.stdout.String())
		}
	}
}
