// Command launcher is the least a Go process can do to run a child and
// not strand it: the floor of the design's start-up budget ("a minimal Go
// launcher: start the child, subscribe to TERM, wait"). It exists only so
// that the wrapper benchmark (bench/wrapper) can show, in the same run,
// what any Go wrapper costs its child before sr-wrapper's own work begins
// — a second exec, a Go runtime start-up, the first signal subscription —
// and, with -notify, what subscribing to every signal sr-wrapper forwards
// adds.
//
//	launcher [-notify] COMMAND [ARGS...]
//
// It subscribes to TERM (with -notify, to all of signals.Forwarded), starts
// COMMAND in its own process group, as sr-wrapper does, waits for it and
// exits with its code. It forwards nothing and registers nothing: it is a
// measuring stick, not a tool.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

func main() {
	notify := flag.Bool("notify", false, "subscribe to every signal sr-wrapper forwards before starting the child")
	flag.Parse()
	argv := flag.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: launcher [-notify] COMMAND [ARGS...]")
		os.Exit(2)
	}
	// Without a subscription a TERM would end the launcher and strand the
	// child.
	c := make(chan os.Signal, 64)
	if *notify {
		signal.Notify(c, signals.Forwarded()...)
	} else {
		signal.Notify(c, syscall.SIGTERM)
	}
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(127)
	}
	st, err := p.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(1)
	}
	os.Exit(st.ExitCode())
}
