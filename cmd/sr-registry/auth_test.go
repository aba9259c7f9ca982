package main

import (
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
		{"rate without slash", []string{"--dev", "--data-dir", dir, "--auth-rate-limit", "100"}, cli.ExitUsage, "", "--auth-rate-limit: \"100\": no '/': want N/DURATION"},
		{"rate zero", []string{"--dev", "--data-dir", dir, "--auth-rate-limit", "0/1m"}, cli.ExitUsage, "", "--auth-rate-limit: \"0/1m\": N must be positive"},
		{"rate bad duration", []string{"--dev", "--data-dir", dir, "--auth-rate-limit", "10/soon"}, cli.ExitUsage, "", "--auth-rate-limit: \"10/soon\": DURATION \"soon\" is not a duration"},
		{"negative verifications", []string{"--dev", "--data-dir", dir, "--auth-verifications=-1"}, cli.ExitUsage, "", "--auth-verifications must be 0"},
		{"help names the flags", []string{"--help"}, exitOK, "--auth-rate-limit", ""},
		{"hash-key help", []string{"hash-key", "--help"}, exitOK, "", "never from the command line"},
		{"hash-key with the key in argv", []string{"hash-key", "my-key"}, cli.ExitUsage, "", "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkRun(t, tc.args, tc.code, tc.stdout, tc.stderr) })
	}
}
