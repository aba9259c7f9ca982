package cli

import (
	"io"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
)

// Parse parses a command's arguments (without the program name) into
// target, a kong flag struct, for commands that need nothing of this
// package beyond its parsing (sr-registry). A kong.VersionFlag field
// prints "<name> <version>". Help and version go to stdout and come back
// as *ErrExit with status 0; any other error is a usage error, for the
// caller to print and exit with ExitUsage.
func Parse(target any, name, description string, args []string, version buildinfo.Info, stdout, stderr io.Writer) error {
	_, err := parse(target, name, description, nil, args, version, stdout, stderr)
	return err
}
