package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

// TestTLSFlagErrorsExit2: the TLS pair is checked before anything starts,
// and the error names the file to fix.
func TestTLSFlagErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	cert, key := ca.Issue(t, tlstest.Server("127.0.0.1")).Files(t)
	_, otherKey := ca.Issue(t, tlstest.Server("127.0.0.1")).Files(t)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--dev", "--data-dir", dir, "--log-format", "json"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert", cert}, "sr-registry: --tls-cert and --tls-key: give both"},
		{"key without cert", []string{"--tls-key", key}, "sr-registry: --tls-cert and --tls-key: give both"},
		{"missing cert", []string{"--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", key}, "sr-registry: --tls-cert: open " + filepath.Join(dir, "none.pem")},
		{"missing key", []string{"--tls-cert", cert, "--tls-key", filepath.Join(dir, "none.pem")}, "sr-registry: --tls-key: open " + filepath.Join(dir, "none.pem")},
		{"not PEM", []string{"--tls-cert", garbage, "--tls-key", key}, "sr-registry: --tls-cert " + garbage + " and --tls-key " + key + ": not a matching PEM certificate and private key"},
		{"mismatched pair", []string{"--tls-cert", cert, "--tls-key", otherKey}, "sr-registry: --tls-cert " + cert + " and --tls-key " + otherKey + ": not a matching"},
		{"negative cap", []string{"--max-connections=-1"}, "sr-registry: --max-connections -1: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append(base, tc.args...), &stdout, &stderr); code != cli.ExitUsage {
				t.Fatalf("exit code %d, want %d; stderr %s", code, cli.ExitUsage, stderr.String())
			}
			if got := stderr.String(); !strings.HasPrefix(got, tc.want) || strings.Count(got, "\n") != 1 {
				t.Fatalf("stderr %q, want one line starting %q", got, tc.want)
			}
			if strings.Contains(stderr.String(), "PRIVATE KEY") {
				t.Fatal("the error quotes the key")
			}
		})
	}
}
