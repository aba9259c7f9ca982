package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Errors wrapped by StartError, for errors.Is.
var (
	ErrCommandNotFound = errors.New("command not found")
	ErrNotExecutable   = errors.New("not executable")
)

// Exit codes the wrapper uses for a child that never ran, as shells do.
const (
	ExitNotFound      = 127 // the command was not found
	ExitNotExecutable = 126 // found, but could not be executed
)

// defaultPath is searched when the child's environment has no PATH: the
// path systemd and Docker give a service.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// StartError says why the child could not be started, with the exit code
// the wrapper should end with (127 not found, 126 not executable).
type StartError struct {
	Command string // argv[0] as given
	Path    string // what it resolved to, if it was found
	Code    int
	Err     error // wraps ErrCommandNotFound or ErrNotExecutable, and the cause
}

func (e *StartError) Error() string {
	if e.Path != "" && e.Path != e.Command {
		return fmt.Sprintf("start %q (%s): %v", e.Command, e.Path, e.Err)
	}
	return fmt.Sprintf("start %q: %v", e.Command, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// ExitCode is the code the wrapper exits with: 127 or 126.
func (e *StartError) ExitCode() int { return e.Code }

func notFound(cmd, path string, err error) *StartError {
	return &StartError{Command: cmd, Path: path, Code: ExitNotFound, Err: err}
}

func notExecutable(cmd, path string, err error) *StartError {
	return &StartError{Command: cmd, Path: path, Code: ExitNotExecutable, Err: err}
}

// lookPath resolves argv[0] as exec.LookPath would, but in the PATH of the
// child's environment rather than the wrapper's. A name with a slash is
// taken as a path (relative to dir, where the child will run). Empty and
// relative PATH entries are skipped, as exec.LookPath refuses them
// (exec.ErrDot). A non-executable match is remembered and reported as 126
// when no executable one follows, as bash does.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if dir != "" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", notFound(name, "", fmt.Errorf("%w: no such file: %w", ErrCommandNotFound, err))
			}
			return "", notExecutable(name, p, fmt.Errorf("%w: %w", ErrNotExecutable, err))
		}
		// Keep it as given: the child resolves it after its chdir to dir.
		return name, nil
	}
	pathEnv, ok := lookupEnv(env, "PATH")
	if !ok {
		pathEnv = defaultPath
	}
	var firstDenied *StartError
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if firstDenied == nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			firstDenied = notExecutable(name, p, fmt.Errorf("%w: %w", ErrNotExecutable, err))
		}
	}
	if firstDenied != nil {
		return "", firstDenied
	}
	return "", notFound(name, "", fmt.Errorf("%w in PATH %q", ErrCommandNotFound, pathEnv))
}

// checkExecutable tells whether execve could run p: a regular file (after
// symlinks) that this process may execute (access(X_OK) also catches
// noexec mounts).
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory: %w", p, syscall.EISDIR)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: %w", p, syscall.EACCES)
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return fmt.Errorf("%s: permission denied: %w", p, err)
	}
	return nil
}

// classifyExecError turns the error of a fork/exec of a file that
// lookPath accepted into a StartError. ENOENT there means the file's #!
// interpreter or dynamic loader is missing: 126 for a script, as bash
// says "bad interpreter", else 127.
func classifyExecError(cmd, path string, err error) *StartError {
	switch {
	case errors.Is(err, syscall.ENOENT) && isScript(path):
		return notExecutable(cmd, path, fmt.Errorf("%w: bad #! interpreter: %w", ErrNotExecutable, err))
	case errors.Is(err, syscall.ENOENT):
		return notFound(cmd, path, fmt.Errorf("%w: missing file or dynamic loader: %w", ErrCommandNotFound, err))
	case errors.Is(err, syscall.ENOEXEC):
		return notExecutable(cmd, path, fmt.Errorf("%w: not a binary this system can run and no #! line: %w", ErrNotExecutable, err))
	}
	return notExecutable(cmd, path, fmt.Errorf("%w: %w", ErrNotExecutable, err))
}

func isScript(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [2]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == "#!"
}

// lookupEnv finds a variable as the child will see it: after dedupEnv,
// the last entry wins.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// dedupEnv keeps the last value of each variable, in the position of its
// first appearance, as exec.Cmd does: the C library's getenv returns the
// first match, so a duplicate would hide a value the caller appended.
func dedupEnv(env []string) []string {
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
