package wrapper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
)

// EtcdBinary is the name of the wrapper binary that links the etcd client.
const EtcdBinary = "sr-wrapper-etcd"

// Main is the whole main of a wrapper binary: parse and validate args (the
// command line without the program name), then run, and return the exit
// status. A binary without the etcd backend replaces itself with
// sr-wrapper-etcd (same process, same pid, nothing started yet) when the
// registry is etcd://.
func Main(args []string, backends Backends) int {
	cfg, err := cli.ParseWrapper(args, buildinfo.Get(), os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		var exit *cli.ErrExit
		if errors.As(err, &exit) {
			return exit.Code
		}
		fmt.Fprintf(os.Stderr, "sr-wrapper: %v\n", err)
		return cli.ExitUsage
	}
	if cfg.Connection.Backend == cli.BackendEtcd && backends.Etcd == nil {
		err := execEtcdWrapper(args)
		// Only a failed exec returns.
		fmt.Fprintf(os.Stderr, "sr-wrapper: --registry %s: %v\n", cfg.Connection.RegistryURL, err)
		return cli.ExitUsage
	}
	log, err := logging.New(cfg.Log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sr-wrapper: %v\n", err)
		return cli.ExitUsage
	}
	defer func() { _ = log.Sync() }()
	return Run(context.Background(), cfg, log, backends)
}

// execEtcdWrapper replaces this process with sr-wrapper-etcd, found next to
// this binary or else in PATH, with the same arguments and environment.
func execEtcdWrapper(args []string) error {
	path, err := findEtcdWrapper(os.Executable, os.Args[0])
	if err != nil {
		return err
	}
	if err := syscall.Exec(path, append([]string{path}, args...), os.Environ()); err != nil {
		return fmt.Errorf("the etcd backend is in %s: exec: %w", path, err)
	}
	return nil
}

// findEtcdWrapper looks next to the running binary first (a release or
// image ships both side by side), then next to argv[0] (os.Executable
// needs /proc, which an empty container root may lack), then in PATH.
func findEtcdWrapper(executable func() (string, error), argv0 string) (string, error) {
	var dirs []string
	if exe, err := executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	if filepath.Base(argv0) != argv0 {
		dirs = append(dirs, filepath.Dir(argv0))
	}
	for _, dir := range dirs {
		// With a slash, LookPath checks that file alone, not PATH.
		p := filepath.Join(dir, EtcdBinary)
		if !strings.Contains(p, "/") {
			p = "./" + p
		}
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(EtcdBinary); err == nil {
		return p, nil
	}
	where := "in PATH"
	if len(dirs) > 0 {
		where = fmt.Sprintf("next to %s or in PATH", dirs[0])
	}
	return "", fmt.Errorf("the etcd backend is in %s, which is not installed %s", EtcdBinary, where)
}
