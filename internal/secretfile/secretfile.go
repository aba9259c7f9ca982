// Package secretfile reads a secret (an API key, a password) from a file
// named by a flag such as --api-key-file: its first line, trimmed, so
// that `echo KEY > file` and an editor's trailing newline both work.
package secretfile

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the first line of the file at path, without surrounding
// blanks. An empty first line is an error, so that a truncated file is
// not taken for a key. The error of an unreadable file names the path.
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return line, nil
}
