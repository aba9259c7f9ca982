// Command launcher is the least a Go process can do to run a child: it
// exists only so that the wrapper benchmark (bench/wrapper) can show, in
// the same run, what any Go wrapper costs its child before sr-wrapper's
// own work begins — a second exec and a Go runtime start-up — and, with
// -notify, what subscribing to the signals sr-wrapper forwards adds.
//
//	launcher [-notify] COMMAND [ARGS...]
//
// It starts COMMAND in its own process group, as sr-wrapper does, waits
// for it and exits with its code. It forwards nothing and registers
// nothing: it is a measuring stick, not a tool.
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
	if *notify {
		c := make(chan os.Signal, 64)
		signal.Notify(c, signals.Forwarded()...)
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
