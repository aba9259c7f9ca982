package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/cli"
)

func TestAuthFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"rate without slash", []string{"--dev", "--data-dir", dir, "--auth-rate-limit", "100"}, cli.ExitUsage, "", "--auth-rate-limit: auth rate limit \"100\": want N/DURATION"},
		{"rate zero", []string{"--dev", "--data-dir", dir, "--auth-rate-limit", "0/1m"}, cli.ExitUsage, "", "N must be a positive integer"},
		{"rate bad duration", []string{"--dev", "--data-dir", dir, "--auth-rate-limit", "10/soon"}, cli.ExitUsage, "", "DURATION must be positive"},
		{"negative verifications", []string{"--dev", "--data-dir", dir, "--auth-verifications=-1"}, cli.ExitUsage, "", "--auth-verifications must be 0"},
		{"help names the flags", []string{"--help"}, exitOK, "--auth-rate-limit", ""},
		{"hash-key help", []string{"hash-key", "--help"}, exitOK, "", "never from the command line"},
		{"hash-key with the key in argv", []string{"hash-key", "my-key"}, cli.ExitUsage, "", "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr %s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tc.stdout, stderr.String(), tc.stderr)
			}
		})
	}
}
