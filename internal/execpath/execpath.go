// Package execpath finds the file a command name runs, for the wrapped
// child and for health-check commands alike: the one set of rules for
// where a command is looked up, in which environment, and why it cannot
// run.
//
// It starts nothing; the caller turns its errors into exit statuses (127,
// 126) or messages.
package execpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Errors wrapped by Find's, for errors.Is.
var (
	ErrNotFound      = errors.New("command not found")
	ErrNotExecutable = errors.New("not executable")
)

// DefaultPath is searched when the environment has no PATH: the path
// systemd and Docker give a service.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Error says why a command cannot be run.
type Error struct {
	Name string // as given
	Path string // the file it resolved to, if one was found
	Err  error  // wraps ErrNotFound or ErrNotExecutable, and the cause
}

func (e *Error) Error() string {
	if e.Path != "" && e.Path != e.Name {
		return fmt.Sprintf("%q (%s): %v", e.Name, e.Path, e.Err)
	}
	return fmt.Sprintf("%q: %v", e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Find resolves name as a shell would before execve, but in the PATH of
// env (the command's own environment, "KEY=value" strings; the last of a
// repeated key wins) rather than the caller's, and DefaultPath when env
// has none. A name with a slash is a path, relative to dir (where the
// command will run) when it is relative; it is returned as given, for the
// process to resolve after its chdir. Empty and relative PATH entries are
// skipped, as exec.LookPath refuses them. A match that cannot be executed
// is remembered and reported when no executable one follows, as bash
// does. The error is an *Error.
func Find(name string, env []string, dir string) (string, error) {
	if name == "" {
		return "", &Error{Err: fmt.Errorf("%w: no command given", ErrNotFound)}
	}
	if strings.Contains(name, "/") {
		p := name
		if dir != "" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", &Error{Name: name, Err: fmt.Errorf("%w: %w", ErrNotFound, err)}
			}
			return "", &Error{Name: name, Path: p, Err: fmt.Errorf("%w: %w", ErrNotExecutable, err)}
		}
		return name, nil
	}
	pathEnv, ok := lookupEnv(env, "PATH")
	if !ok {
		pathEnv = DefaultPath
	}
	var denied *Error
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if denied == nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			denied = &Error{Name: name, Path: p, Err: fmt.Errorf("%w: %w", ErrNotExecutable, err)}
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", &Error{Name: name, Err: fmt.Errorf("%w in PATH %q", ErrNotFound, pathEnv)}
}

// checkExecutable tells whether execve could run p: a regular file (after
// symlinks) that this process may execute (access(X_OK) also catches
// noexec mounts).
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return &fs.PathError{Op: "exec", Path: p, Err: syscall.EISDIR}
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file: %w", p, syscall.EACCES)
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return &fs.PathError{Op: "exec", Path: p, Err: err}
	}
	return nil
}

// Dedup keeps the last value of each variable of env, in the position of
// its first appearance, as exec.Cmd does: the C library's getenv returns
// the first match, so a duplicate would hide a value the caller appended.
// Find reads env as Dedup leaves it.
func Dedup(env []string) []string {
	last := make(map[string]string, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = kv
	}
	out := make([]string, 0, len(last))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := last[k]; ok {
			out = append(out, v)
			delete(last, k)
		}
	}
	return out
}

// lookupEnv finds a variable as Dedup would leave it: the last entry
// wins.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
