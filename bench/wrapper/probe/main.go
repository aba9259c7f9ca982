// Command probe is the child that the wrapper benchmark (bench/wrapper)
// runs under sr-wrapper, under tini and on its own. It timestamps, with
// CLOCK_MONOTONIC (one clock for every process on the machine), the moments
// the benchmark measures: the first thing main does, each signal received,
// and its own exit. The benchmark compares those stamps with its own,
// taken just before it starts a process or sends a signal.
//
// It is not a general tool and not a test fixture for behaviour (that is
// testdata/fakeproc): it does as little as possible, so that what it costs
// is the same in every row of a comparison.
//
// Output, one line per event on stdout, each written with one write:
//
//	start MONO_NS PID     once main runs (with -wait: after its signal
//	                      handlers are installed, so the benchmark knows
//	                      when it may signal; the stamp is still main's
//	                      first)
//	sig N MONO_NS         a signal N was received (-wait)
//	exit MONO_NS          just before exiting (-wait)
//
// Without -wait it exits at once after the start line. With -wait it runs
// until a line (or EOF) on stdin, or SIGTERM/SIGINT, and then writes the
// exit line and exits 0.
package main

import (
	"bufio"
	"flag"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func mono() int64 {
	var ts unix.Timespec
	// CLOCK_MONOTONIC cannot fail on Linux with a valid pointer.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func main() {
	start := mono()
	wait := flag.Bool("wait", false, "run until a line on stdin, EOF or SIGTERM; report signals")
	flag.Parse()
	pid := os.Getpid()
	if !*wait {
		emit("start " + strconv.FormatInt(start, 10) + " " + strconv.Itoa(pid) + "\n")
		return
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		// Any line, or EOF when the benchmark closes the pipe, ends it.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	emit("start " + strconv.FormatInt(start, 10) + " " + strconv.Itoa(pid) + "\n")
	for {
		select {
		case s := <-sigs:
			at := mono()
			n := int(s.(syscall.Signal))
			emit("sig " + strconv.Itoa(n) + " " + strconv.FormatInt(at, 10) + "\n")
			if s == syscall.SIGTERM || s == syscall.SIGINT {
				exit()
			}
		case <-done:
			exit()
		}
	}
}

func exit() {
	emit("exit " + strconv.FormatInt(mono(), 10) + "\n")
	os.Exit(0)
}

// emit writes one line in one write. A benchmark that went away leaves
// nobody to report to: exit rather than run on.
func emit(line string) {
	if _, err := os.Stdout.WriteString(line); err != nil {
		os.Exit(3)
	}
}
