package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/cli"
)

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := os.WriteFile(creds, []byte("alice key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"neither dev nor credentials", []string{"--data-dir", dir}, cli.ExitUsage, "", "refusing to start"},
		{"unknown flag", []string{"--dev", "--bogus"}, cli.ExitUsage, "", "unknown flag --bogus"},
		{"bad log level", []string{"--dev", "--log-level", "loud"}, cli.ExitUsage, "", "--log-level"},
		{"bad log format", []string{"--dev", "--log-format", "xml"}, cli.ExitUsage, "", "--log-format"},
		{"missing credentials file", []string{"--credentials", filepath.Join(dir, "none")}, cli.ExitUsage, "", "--credentials"},
		{"malformed credentials file", []string{"--credentials", creds}, cli.ExitUsage, "", "want 3 fields"},
		{"version", []string{"--version"}, exitOK, "sr-registry", ""},
		{"help", []string{"--help"}, exitOK, "--data-dir", ""},
		{"store and data dir", []string{"--dev", "--data-dir", dir, "--store", "etcd://127.0.0.1:2379"}, cli.ExitUsage, "", "--store and --data-dir: give one"},
		{"store not etcd", []string{"--dev", "--store", "http://127.0.0.1:2379"}, cli.ExitUsage, "", "--store: scheme must be etcd:// or etcds://"},
		{"store without endpoint", []string{"--dev", "--store", "etcd:///sr"}, cli.ExitUsage, "", "--store: needs at least one endpoint"},
		{"store with credentials in it", []string{"--dev", "--store", "etcd://u:p@127.0.0.1:2379"}, cli.ExitUsage, "", "--store: must not contain a user name"},
		{"etcd flag without store", []string{"--dev", "--data-dir", dir, "--etcd-username", "u"}, cli.ExitUsage, "", "--etcd-*: only apply with --store"},
		{"etcd user without password", []string{"--dev", "--store", "etcd://127.0.0.1:2379", "--etcd-username", "u"}, cli.ExitUsage, "", "--etcd-username and --etcd-password"},
		{"listen fails", []string{"--dev", "--data-dir", dir, "--listen", "256.0.0.1:1", "--log-format", "json"}, exitError, "", "listen on 256.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkRun(t, tc.args, tc.code, tc.stdout, tc.stderr) })
	}
}

// checkRun runs sr-registry in process with args and checks its exit code,
// that stdout contains wantStdout and that stderr contains each of
// wantStderr.
func checkRun(t *testing.T, args []string, wantCode int, wantStdout string, wantStderr ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != wantCode {
		t.Fatalf("exit code %d, want %d; stderr %s", code, wantCode, stderr.String())
	}
	if !strings.Contains(stdout.String(), wantStdout) {
		t.Errorf("stdout %q: want it to contain %q", stdout.String(), wantStdout)
	}
	for _, want := range wantStderr {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q: want it to say %q", stderr.String(), want)
		}
	}
}
