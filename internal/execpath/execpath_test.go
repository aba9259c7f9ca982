package execpath

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	bin, deny, other := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(dir, name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tool := write(bin, "tool", 0o755)
	write(deny, "tool", 0o644)
	write(deny, "only-denied", 0o644)
	write(other, "rel", 0o755)

	tests := []struct {
		name, cmd, dir string
		env            []string
		want           string
		is             error
	}{
		{name: "in the command's PATH", cmd: "tool", env: []string{"PATH=/nonexistent:" + bin}, want: tool},
		{name: "the last PATH wins", cmd: "tool", env: []string{"PATH=/nonexistent", "PATH=" + bin}, want: tool},
		{name: "a denied match before an executable one", cmd: "tool", env: []string{"PATH=" + deny + ":" + bin}, want: tool},
		{name: "only a denied match", cmd: "only-denied", env: []string{"PATH=" + deny + ":" + bin}, is: ErrNotExecutable},
		{name: "relative PATH entries are skipped", cmd: "rel", dir: "", env: []string{"PATH=."}, is: ErrNotFound},
		{name: "not in PATH", cmd: "sh", env: []string{"PATH=" + bin}, is: ErrNotFound},
		{name: "the default PATH without one", cmd: "sh", env: []string{}, want: "sh"}, // somewhere in it
		{name: "a path is kept as given", cmd: tool, want: tool},
		{name: "relative to dir", cmd: "./rel", dir: other, want: "./rel"},
		{name: "missing file", cmd: "./rel", dir: bin, is: ErrNotFound},
		{name: "directory", cmd: bin, is: ErrNotExecutable},
		{name: "empty", cmd: "", is: ErrNotFound},
	}
	t.Chdir(other)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Find(tt.cmd, tt.env, tt.dir)
			if tt.is != nil {
				var e *Error
				if !errors.Is(err, tt.is) || !errors.As(err, &e) {
					t.Fatalf("Find(%q) = %q, %v; want an *Error wrapping %v", tt.cmd, got, err, tt.is)
				}
				return
			}
			if !filepath.IsAbs(tt.want) && !strings.HasPrefix(tt.want, ".") && filepath.IsAbs(got) {
				got = filepath.Base(got)
			}
			if err != nil || got != tt.want {
				t.Fatalf("Find(%q) = %q, %v; want %q", tt.cmd, got, err, tt.want)
			}
		})
	}
}

func TestDedupKeepsTheLastValueInTheFirstPlace(t *testing.T) {
	got := Dedup([]string{"A=1", "B=2", "A=3", "C", "B=4"})
	if want := []string{"A=3", "B=4", "C"}; !slices.Equal(got, want) {
		t.Fatalf("Dedup = %q, want %q", got, want)
	}
}
