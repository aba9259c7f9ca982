// Command fakeproc is the program the sr-wrapper tests run as the wrapped
// child. It does, on request, each thing a real service does that the
// wrapper must cope with: exit with a code, run for a while, die by a signal,
// handle or ignore signals, leave orphaned zombies behind, and listen on a
// port. It is not a general tool: it exists only for the tests, uses only the
// standard library, and is built explicitly (go build ./testdata/fakeproc),
// since ./... patterns skip testdata directories.
//
// Flags (one or two dashes):
//
//	--ready              print "ready pid=N" as the first line, once every
//	                     signal handler asked for is installed (with
//	                     --grandchild: "ready pid=N grandchild=M")
//	--exit N             exit with code N; at once unless --sleep is given
//	--sleep D            run for D (a Go duration), then exit; default: run
//	                     until killed (or 0 when --exit is given)
//	--print-env NAME     print "NAME=value", or "unset NAME"; repeatable
//	--report-signals     print "signal SIGUSR1" (SIGRTMIN+N for real-time
//	                     signals) for every catchable signal received, at
//	                     once; no signal ends the program unless another
//	                     flag says so (SIGCHLD, SIGURG and SIGPROF are not
//	                     reported: the Go runtime uses them)
//	--trap-term          on SIGTERM print "trapped SIGTERM" and keep running
//	--ignore-term        ignore SIGTERM (SIG_IGN, silently)
//	--exit-on-term N     on SIGTERM exit with code N
//	--grandchild         start a copy of itself in the same process group
//	                     (reporting signals, and trapping TERM when
//	                     --trap-term is given) and relay its lines prefixed
//	                     with "grandchild: "
//	--orphans K          make K orphans: an intermediate process starts K
//	                     grandchildren and exits; they wait until it is gone
//	                     (so they are re-parented to the nearest subreaper
//	                     or PID 1) and exit at once, staying zombies until
//	                     reaped. Prints "orphan pid=N" for each, then
//	                     "orphans done" once the intermediate has exited
//	--listen ADDR        serve HTTP on ADDR (e.g. 127.0.0.1:0); prints
//	                     "listening addr=HOST:PORT"
//	--http-status CODE   answer every HTTP request with CODE (default 200)
//	--kill-self SIG      die by signal SIG (name or number) after the other
//	                     start-up steps; core dumps are disabled first
//
// Output goes to stdout, one line per event, each written with one write so
// that lines from several processes sharing a pipe do not interleave. If
// stdout is gone, fakeproc exits (code 3) rather than spin on EPIPE.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	ready         bool
	exitCode      int
	exitSet       bool
	sleep         time.Duration
	sleepSet      bool
	printEnv      []string
	reportSignals bool
	trapTerm      bool
	ignoreTerm    bool
	exitOnTerm    int
	grandchild    bool
	orphans       int
	listen        string
	httpStatus    int
	killSelf      string
	tag           string

	// Hidden modes used by --orphans.
	orphanMaker int
	orphanOf    int
}

// out writes whole lines to stdout, prefixed with the tag of a grandchild.
type out struct {
	mu     sync.Mutex
	prefix string
}

func (o *out) println(format string, args ...any) {
	line := o.prefix + fmt.Sprintf(format, args...) + "\n"
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := io.WriteString(os.Stdout, line); err != nil {
		// The reader is gone: nothing this program does matters any more,
		// and with SIGPIPE caught a writer would otherwise loop forever.
		os.Exit(3)
	}
}

func main() {
	var o options
	fs := flag.NewFlagSet("fakeproc", flag.ExitOnError)
	fs.BoolVar(&o.ready, "ready", false, `print "ready pid=N" first`)
	fs.IntVar(&o.exitCode, "exit", 0, "exit code")
	fs.DurationVar(&o.sleep, "sleep", 0, "run this long (default forever, or 0 with --exit)")
	fs.Func("print-env", "print NAME=value (repeatable)", func(s string) error {
		o.printEnv = append(o.printEnv, s)
		return nil
	})
	fs.BoolVar(&o.reportSignals, "report-signals", false, "print every signal received")
	fs.BoolVar(&o.trapTerm, "trap-term", false, "on TERM print and keep running")
	fs.BoolVar(&o.ignoreTerm, "ignore-term", false, "ignore TERM")
	fs.IntVar(&o.exitOnTerm, "exit-on-term", -1, "on TERM exit with this code")
	fs.BoolVar(&o.grandchild, "grandchild", false, "start a signal-reporting grandchild in the same process group")
	fs.IntVar(&o.orphans, "orphans", 0, "make this many orphaned zombies")
	fs.StringVar(&o.listen, "listen", "", "serve HTTP on this address")
	fs.IntVar(&o.httpStatus, "http-status", http.StatusOK, "HTTP status to answer")
	fs.StringVar(&o.killSelf, "kill-self", "", "die by this signal")
	fs.StringVar(&o.tag, "tag", "", "prefix of every output line (used for the grandchild)")
	fs.IntVar(&o.orphanMaker, "orphan-maker", 0, "internal: be the intermediate of --orphans")
	fs.IntVar(&o.orphanOf, "orphan-of", 0, "internal: be an orphan of this intermediate pid")
	_ = fs.Parse(os.Args[1:]) // ExitOnError
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "exit":
			o.exitSet = true
		case "sleep":
			o.sleepSet = true
		}
	})
	os.Exit(run(&o))
}

func run(o *options) int {
	w := &out{}
	if o.tag != "" {
		w.prefix = o.tag + ": "
	}
	switch {
	case o.orphanOf != 0:
		return beOrphan(o.orphanOf)
	case o.orphanMaker != 0:
		return makeOrphans(w, o.orphanMaker)
	}

	installSignalHandlers(w, o)

	readyLine := fmt.Sprintf("ready pid=%d", os.Getpid())
	if o.grandchild {
		pid, err := startGrandchild(w, o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeproc:", err)
			return 1
		}
		readyLine += fmt.Sprintf(" grandchild=%d", pid)
	}
	if o.ready {
		w.println("%s", readyLine)
	}
	for _, name := range o.printEnv {
		if v, ok := os.LookupEnv(name); ok {
			w.println("%s=%s", name, v)
		} else {
			w.println("unset %s", name)
		}
	}
	if o.listen != "" {
		go serve(w, o)
	}
	if o.orphans > 0 {
		if err := runOrphanMaker(o.orphans, o.tag); err != nil {
			fmt.Fprintln(os.Stderr, "fakeproc: make orphans:", err)
			return 1
		}
		w.println("orphans done")
	}
	if o.killSelf != "" {
		return killSelf(o.killSelf)
	}

	switch {
	case o.sleepSet:
		time.Sleep(o.sleep)
	case o.exitSet:
	default:
		select {}
	}
	return o.exitCode
}

func installSignalHandlers(w *out, o *options) {
	if o.ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	var set []os.Signal
	if o.reportSignals {
		set = catchable()
	} else if o.trapTerm || o.exitOnTerm >= 0 {
		set = []os.Signal{syscall.SIGTERM}
	}
	if len(set) == 0 {
		return
	}
	// Buffered for one of each, so that a burst is not dropped before
	// it is printed.
	c := make(chan os.Signal, len(set))
	signal.Notify(c, set...)
	go func() {
		for s := range c {
			sig := s.(syscall.Signal)
			if o.reportSignals {
				w.println("signal %s", sigName(sig))
			}
			if sig != syscall.SIGTERM || o.ignoreTerm {
				continue
			}
			if o.trapTerm {
				w.println("trapped SIGTERM")
			}
			if o.exitOnTerm >= 0 {
				os.Exit(o.exitOnTerm)
			}
		}
	}()
}

// catchable lists what --report-signals subscribes to: everything a Go
// program can catch, except what the runtime uses for itself (SIGURG for
// preemption, SIGPROF for profiling, SIGCHLD which is noise here) and
// 32..34, which Go cannot catch at all.
func catchable() []os.Signal {
	var set []os.Signal
	for n := 1; n <= 64; n++ {
		switch syscall.Signal(n) {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGURG, syscall.SIGPROF, syscall.SIGCHLD:
			continue
		}
		if n >= 32 && n <= 34 {
			continue
		}
		set = append(set, syscall.Signal(n))
	}
	return set
}

var sigNames = [...]string{
	1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
	7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
	13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD",
	18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU",
	23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF",
	28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}

// sigName spells signals as kill -l does on Linux with glibc, where
// SIGRTMIN is 34.
func sigName(s syscall.Signal) string {
	switch {
	case s > 0 && int(s) < len(sigNames):
		return sigNames[s]
	case s == 34:
		return "SIGRTMIN"
	case s > 34 && s <= 64:
		return fmt.Sprintf("SIGRTMIN+%d", s-34)
	}
	return fmt.Sprintf("signal %d", int(s))
}

func sigNumber(name string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return syscall.Signal(n), nil
	}
	want := "SIG" + strings.TrimPrefix(strings.ToUpper(name), "SIG")
	for n, s := range sigNames {
		if s != "" && s == want {
			return syscall.Signal(n), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", name)
}

// killSelf replaces this program with a shell that sends itself the
// signal: the Go runtime turns a SIGSEGV (and others) into a crash with
// exit code 2, never a death by that signal, and a shell keeps the default
// disposition. The pid stays the same across the exec.
func killSelf(name string) int {
	sig, err := sigNumber(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeproc:", err)
		return 1
	}
	// No core file from the tests.
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	script := fmt.Sprintf("kill -%d $$; sleep 5; exit 99", int(sig))
	err = syscall.Exec("/bin/sh", []string{"sh", "-c", script}, os.Environ())
	fmt.Fprintln(os.Stderr, "fakeproc: exec /bin/sh:", err)
	return 1
}

func startGrandchild(w *out, o *options) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	args := []string{"--report-signals", "--ready", "--tag", "grandchild"}
	if o.trapTerm {
		args = append(args, "--trap-term")
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("grandchild stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start grandchild: %w", err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "grandchild: ready ") {
		return 0, fmt.Errorf("grandchild did not get ready (first line %q)", lines.Text())
	}
	go func() {
		for lines.Scan() {
			// The grandchild prefixes its own lines already.
			w.mu.Lock()
			_, err := io.WriteString(os.Stdout, lines.Text()+"\n")
			w.mu.Unlock()
			if err != nil {
				os.Exit(3)
			}
		}
		_ = cmd.Wait()
	}()
	return cmd.Process.Pid, nil
}

// runOrphanMaker runs the intermediate and reaps it. The orphans it leaves
// behind are not this program's children.
func runOrphanMaker(k int, tag string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	args := []string{"--orphan-maker", strconv.Itoa(k)}
	if tag != "" {
		args = append(args, "--tag", tag)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// makeOrphans is the intermediate: it starts k orphans and exits without
// waiting for them. Each orphan holds the read end of a pipe whose write
// end only this process has, so EOF tells it that its parent is exiting.
func makeOrphans(w *out, k int) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeproc: find own executable:", err)
		return 1
	}
	r, wr, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeproc: pipe:", err)
		return 1
	}
	defer wr.Close()
	me := strconv.Itoa(os.Getpid())
	for range k {
		p, err := os.StartProcess(self, []string{self, "--orphan-of", me},
			&os.ProcAttr{Files: []*os.File{r, os.Stdout, os.Stderr}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeproc: start orphan:", err)
			return 1
		}
		w.println("orphan pid=%d", p.Pid)
		_ = p.Release()
	}
	return 0
}

// beOrphan exits as soon as its parent is gone and it has been re-parented.
func beOrphan(parent int) int {
	_, _ = io.Copy(io.Discard, os.Stdin) // EOF: the parent is exiting
	deadline := time.Now().Add(10 * time.Second)
	for os.Getppid() == parent && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return 0
}

func serve(w *out, o *options) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeproc: listen:", err)
		os.Exit(1)
	}
	w.println("listening addr=%s", ln.Addr())
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			rw.WriteHeader(o.httpStatus)
			_, _ = io.WriteString(rw, "fakeproc\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "fakeproc: serve:", err)
	}
}
