// Command sr-wrapper runs a program as its child and keeps it registered in
// a service registry for exactly as long as it lives. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/logging"
	"github.com/sr-wrapper/sr-wrapper/internal/wrapper"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg, err := cli.ParseWrapper(os.Args[1:], buildinfo.Get(), os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		var exit *cli.ErrExit
		if errors.As(err, &exit) {
			return exit.Code
		}
		fmt.Fprintf(os.Stderr, "sr-wrapper: %v\n", err)
		return cli.ExitUsage
	}
	log, err := logging.New(cfg.Log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sr-wrapper: %v\n", err)
		return cli.ExitUsage
	}
	defer func() { _ = log.Sync() }()
	return wrapper.Run(context.Background(), cfg, log)
}
