package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name, content, want, err string
	}{
		{"one line", "k1", "k1", ""},
		{"trailing newline", "k1\n", "k1", ""},
		{"blanks and CRLF", "  k1 \r\nsecond line\n", "k1", ""},
		{"empty", "", "", "is empty"},
		{"blank first line", "\nk1\n", "", "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if got != tt.want || (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Read = %q, %v; want %q, error containing %q", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a missing file: %v, want an error naming it", err)
	}
}
