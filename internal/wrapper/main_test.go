package wrapper

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindEtcdWrapper(t *testing.T) {
	withEtcd := t.TempDir()
	if err := os.WriteFile(filepath.Join(withEtcd, EtcdBinary), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExecutable := t.TempDir()
	if err := os.WriteFile(filepath.Join(notExecutable, EtcdBinary), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	t.Setenv("PATH", empty)

	exe := func(dir string) func() (string, error) {
		return func() (string, error) { return filepath.Join(dir, "sr-wrapper"), nil }
	}
	noProc := func() (string, error) { return "", errors.New("no /proc") }
	tests := []struct {
		name       string
		executable func() (string, error)
		argv0      string
		want       string
		wantErr    string
	}{
		{name: "next to the executable", executable: exe(withEtcd), argv0: "sr-wrapper", want: filepath.Join(withEtcd, EtcdBinary)},
		{name: "next to argv0 without /proc", executable: noProc, argv0: filepath.Join(withEtcd, "sr-wrapper"), want: filepath.Join(withEtcd, EtcdBinary)},
		{name: "not executable is not found", executable: exe(notExecutable), argv0: "sr-wrapper", wantErr: "not installed next to " + notExecutable},
		{name: "missing", executable: exe(empty), argv0: "sr-wrapper", wantErr: "sr-wrapper-etcd, which is not installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findEtcdWrapper(tt.executable, tt.argv0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("findEtcdWrapper = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("findEtcdWrapper = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("next to argv0 in the working directory", func(t *testing.T) {
		t.Chdir(withEtcd)
		got, err := findEtcdWrapper(noProc, "./sr-wrapper")
		if err != nil || got != "./"+EtcdBinary {
			t.Fatalf("findEtcdWrapper = %q, %v; want ./%s, not a PATH lookup", got, err, EtcdBinary)
		}
	})
	t.Run("in PATH", func(t *testing.T) {
		t.Setenv("PATH", withEtcd)
		got, err := findEtcdWrapper(exe(empty), "sr-wrapper")
		if err != nil || got != filepath.Join(withEtcd, EtcdBinary) {
			t.Fatalf("findEtcdWrapper = %q, %v", got, err)
		}
	})
}
