package testsupport

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Buffer collects what other goroutines write (a process's log, say) and
// can be read while they write. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ModuleRoot is the directory of the repository's go.mod, found upwards
// from the test's working directory: tests that build the binaries or
// read the repository's files start there.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("find the module root: no go.mod above %s", dir)
		}
		dir = parent
	}
}
