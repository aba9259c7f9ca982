package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/sr-wrapper/sr-wrapper/internal/execpath"
)

// Errors wrapped by StartError, for errors.Is.
var (
	ErrCommandNotFound = execpath.ErrNotFound
	ErrNotExecutable   = execpath.ErrNotExecutable
)

// Exit codes the wrapper uses for a child that never ran, as shells do.
const (
	ExitNotFound      = 127 // the command was not found
	ExitNotExecutable = 126 // found, but could not be executed
)

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

// lookPath resolves argv[0] in the PATH of the child's environment and
// relative to its working directory (see execpath.Find).
func lookPath(name string, env []string, dir string) (string, error) {
	path, err := execpath.Find(name, env, dir)
	var e *execpath.Error
	switch {
	case err == nil:
		return path, nil
	case !errors.As(err, &e):
		return "", notExecutable(name, "", err)
	case errors.Is(err, execpath.ErrNotFound):
		return "", notFound(name, e.Path, e.Err)
	}
	return "", notExecutable(name, e.Path, e.Err)
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
