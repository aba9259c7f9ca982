// Command srctl is the command-line client for people: it lists services,
// sessions, events and configuration values of a Service Registry API
// registry, follows its events feed, and changes what it holds. See
// README.md and srctl --help. The logic is in internal/srctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
)

func main() {
	// Ctrl-C and SIGTERM cancel the command: events follow ends cleanly
	// with status 0, anything else stops where it is.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := srctl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
