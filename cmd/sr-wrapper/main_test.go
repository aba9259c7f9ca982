// End-to-end tests of sr-wrapper: the built sr-wrapper binary runs as a
// subprocess around the built testdata/fakeproc, against a real sr-registry
// (in-process through internal/registrytest, or the built binary where a
// test kills and restarts it), through internal/faultproxy where a test
// needs faults, and against real embedded etcd (internal/etcdtest) for the
// etcd backend.
//
// The tests synchronise on events only: fakeproc's lines on the wrapper's
// stdout (the child inherits it), the wrapper's JSON log lines on stderr,
// and registry state polled with a deadline.
//
// SR_E2E_RACE_WRAPPER=1 builds the wrapper itself with the race detector
// (the test binary's -race does not reach a subprocess).
// SR_E2E_WRAPPER=/path/to/sr-wrapper tests that binary instead of building
// one (a release build, or a deliberately broken one to check that the
// tests catch the breakage).
package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

const (
	wrapperPackage  = "github.com/sr-wrapper/sr-wrapper/cmd/sr-wrapper"
	fakeprocPackage = "github.com/sr-wrapper/sr-wrapper/testdata/fakeproc"
)

// binaries are the programs TestMain built, once per test binary. They are
// written before any test runs and only read afterwards.
type binaries struct {
	wrapper, fakeproc, registry string
}

var bin binaries

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sr-wrapper-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := buildAll(ctx, dir, os.Getenv("SR_E2E_RACE_WRAPPER") == "1"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	bin = binaries{
		wrapper:  filepath.Join(dir, "sr-wrapper"),
		fakeproc: filepath.Join(dir, "fakeproc"),
		registry: filepath.Join(dir, "sr-registry"),
	}
	if given := os.Getenv("SR_E2E_WRAPPER"); given != "" {
		bin.wrapper = given
	}
	return m.Run()
}

// etcdWrapperPackage is the wrapper with the etcd backend, which
// sr-wrapper execs for etcd:// registries; it must sit next to sr-wrapper.
const etcdWrapperPackage = "github.com/sr-wrapper/sr-wrapper/cmd/sr-wrapper-etcd"

// buildAll builds the programs in one go command, so that they share
// one load of the module; with race the wrapper gets a build of its own.
func buildAll(ctx context.Context, dir string, race bool) error {
	pkgs := []string{fakeprocPackage, registrytest.RegistryPackage}
	if !race {
		pkgs = append(pkgs, wrapperPackage, etcdWrapperPackage)
	}
	if err := registrytest.Build(ctx, dir, nil, pkgs...); err != nil {
		return err
	}
	if race {
		return registrytest.Build(ctx, dir, []string{"-race"}, wrapperPackage, etcdWrapperPackage)
	}
	return nil
}
