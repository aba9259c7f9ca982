package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// loopbackUp skips the test on a host whose lo is missing or down.
func loopbackUp(t *testing.T) {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil || lo.Flags&net.FlagUp == 0 {
		testsupport.SkipUnsupported(t, "this host's lo is missing or down (%v)", err)
	}
}

// TestAdvertiseIPAndPort: --advertise-ip puts the host's address in the
// service metadata as ip=, --advertise-port puts port=, and an explicit
// --metadata entry of the same key wins.
func TestAdvertiseIPAndPort(t *testing.T) {
	t.Parallel()
	loopbackUp(t)
	reg := registrytest.Start(t)
	tests := []struct {
		name  string
		flags []string
		want  map[string]string
	}{
		{name: "interface and port", flags: []string{"--advertise-ip", "lo", "--advertise-port", "8080", "-m", "dc=lon"},
			want: map[string]string{"ip": "127.0.0.1", "port": "8080", "dc": "lon"}},
		{name: "CIDR", flags: []string{"--advertise-ip", "127.0.0.0/8"}, want: map[string]string{"ip": "127.0.0.1"}},
		{name: "--metadata wins", flags: []string{"--advertise-ip", "lo", "--advertise-port", "8080", "-m", "ip=192.0.2.7,port=80"},
			want: map[string]string{"ip": "192.0.2.7", "port": "80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			acct := newAccount(t, reg.URL)
			w := startWrapper(t, cmdline(append(acct.flags(reg.URL, "advertised"), tt.flags...), fakeproc("--ready")...))
			w.ready()
			w.registered()
			if got := acct.mustService(t, "advertised").Metadata; !maps.Equal(got, tt.want) {
				t.Errorf("metadata %v, want %v", got, tt.want)
			}
			if code, _ := w.stop(syscall.SIGTERM); code != 128+int(syscall.SIGTERM) {
				t.Errorf("exit code %d, want %d", code, 128+int(syscall.SIGTERM))
			}
		})
	}
}

// TestAdvertiseIPNotFound: when no address of the host matches
// --advertise-ip, the wrapper says so and retries with the registration
// backoff, the child untouched, rather than register the service without
// its address; with --abort-on-failure it gives up after one heartbeat
// timeout, as for any registration that does not succeed.
func TestAdvertiseIPNotFound(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	// TEST-NET-3: on no host.
	const selector = "203.0.113.0/24"

	t.Run("retries", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		flags := append(acct.flags(reg.URL, "unaddressed"), "--advertise-ip", selector)
		w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--exit-on-term", "0")...))
		w.ready()
		first := w.waitLog(startWait, "registration failed; retrying", func(l line) bool {
			e := l.Str("error")
			return strings.Contains(e, `--advertise-ip: resolve address "`+selector+`": no matching address`)
		})
		w.waitLogFrom(w.stderr.Len(), eventWait, "registration failed; retrying", func(l line) bool { return l.Int("attempt") >= 2 })
		if w.exited() {
			t.Fatal("the wrapper exited")
		}
		acct.mustBeAbsent(t, "unaddressed", "while no address matches")
		if got := w.stderr.all(logMsg("service registered")); len(got) != 0 {
			t.Fatalf("registered without its address: %s", got[0].Text)
		}
		t.Logf("%s", first.Str("error"))
		if code, _ := w.stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("exit code %d, want the child's 0", code)
		}
	})

	t.Run("--abort-on-failure", func(t *testing.T) {
		t.Parallel()
		acct := newAccount(t, reg.URL)
		flags := append(acct.flags(reg.URL, "unaddressed-abort"), "--advertise-ip", selector, "--abort-on-failure")
		w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--exit-on-term", "0")...))
		w.ready()
		if code := w.wait(ttl + exitWait); code != 100 {
			t.Fatalf("exit code %d, want 100", code)
		}
		l := w.waitLog(eventWait, "registration failed for good; stopping the child (--abort-on-failure)")
		if e := l.Str("error"); !strings.Contains(e, "no success within one heartbeat timeout") || !strings.Contains(e, "no matching address") {
			t.Fatalf("error %q, want one naming the timeout and the missing address", e)
		}
	})
}

// TestAdvertiseIPAppearsLater: a wrapper started before its network is
// up registers the service once the address is there, with that address.
// The wrapper and a real sr-registry run in a network namespace of the
// test's own (the registry on its loopback), where the test adds the
// address after the wrapper has said it found none. The wrapper's
// --debug log shows the registration it sent and the registry's answer.
func TestAdvertiseIPAppearsLater(t *testing.T) {
	t.Parallel()
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		testsupport.SkipUnsupported(t, "needs ip(8) (iproute2) to make a network namespace")
	}
	ns := "sr-e2e-" + randomHex(4)
	if out, err := exec.Command(ipCmd, "netns", "add", ns).CombinedOutput(); err != nil {
		testsupport.SkipUnsupported(t, "cannot make a network namespace here (ip netns add: %v %s); needs root", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _ = exec.Command(ipCmd, "netns", "del", ns).Run() })
	inNS := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipCmd, append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
	}
	inNS("link", "set", "lo", "up")

	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	var regLog testsupport.Buffer
	// Launch puts its own flags first: the namespace goes in a script.
	inNSRegistry := filepath.Join(t.TempDir(), "sr-registry-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", ipCmd, ns, bin.registry)
	if err := os.WriteFile(inNSRegistry, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	regProc, err := registrytest.Launch(ctx, inNSRegistry, &regLog, "--data-dir", t.TempDir())
	if err != nil {
		t.Fatalf("sr-registry in %s: %v\n%s", ns, err, regLog.String())
	}
	t.Cleanup(func() { _, _ = regProc.Stop(syscall.SIGKILL) })

	acct := &account{User: "e2e-" + randomHex(4), Key: "secret-key-" + randomHex(8)}
	flags := append(acct.flags(regProc.URL, "late-net"), "--advertise-ip", "10.77.0.0/16", "--debug")
	w := startWrapper(t, cmdline(flags, fakeproc("--ready", "--exit-on-term", "0")...),
		startOpts{Prefix: []string{ipCmd, "netns", "exec", ns}})
	w.ready()
	w.waitLog(startWait, "session created")
	w.waitLog(eventWait, "registration failed; retrying", func(l line) bool {
		return strings.Contains(l.Str("error"), "no matching address")
	})
	if got := w.stderr.all(logMsg("service registered")); len(got) != 0 {
		t.Fatalf("registered before the address existed: %s", got[0].Text)
	}

	// A veth pair with both ends in the namespace: dummy interfaces need
	// a module that not every kernel has.
	inNS("link", "add", "sr0", "type", "veth", "peer", "name", "sr1")
	inNS("addr", "add", "10.77.1.2/16", "dev", "sr0")
	inNS("link", "set", "sr1", "up")
	inNS("link", "set", "sr0", "up")
	w.waitLog(eventWait+ttl, "service registered")

	// Every POST /services the wrapper sent carried the address; the
	// registry accepted one.
	var posts, accepted int
	for _, l := range w.stderr.all(logMsg("http transaction")) {
		if !strings.HasSuffix(l.Str("url"), "/services") || l.Str("method") != "POST" {
			continue
		}
		posts++
		var body struct {
			Metadata map[string]string `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(l.Str("request")), &body); err != nil || body.Metadata["ip"] != "10.77.1.2" {
			t.Errorf("POST /services with %s; want metadata ip=10.77.1.2", l.Str("request"))
		}
		if l.Int("status") == 201 {
			accepted++
		}
	}
	if posts == 0 || accepted != 1 {
		t.Errorf("%d registrations sent, %d accepted; want every one with the address, one accepted", posts, accepted)
	}
	if code, _ := w.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d, want the child's 0", code)
	}
}
