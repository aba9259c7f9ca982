// Command wrapper is the benchmark of sr-wrapper: it measures what the
// wrapper costs the program it wraps, each figure against a baseline
// measured in the same run, and prints Markdown tables with medians,
// spreads and the verdicts against the budgets of the design
// (../shared/docs/design.md, "Performance budgets"):
//
//  1. child start latency: exec → the child's main, direct vs under
//     sr-wrapper (registry up, registry down) vs under tini;
//  2. idle cost: the wrapper's peak RSS and CPU while heartbeating every
//     ~1.4 s (--interval 3), beside tini and the child alone;
//  3. deregistration latency: child exit → service gone, against the
//     registry's own DELETE round trip;
//  4. signal forwarding latency: kill(wrapper) → the child's handler,
//     against kill(child) and kill(tini);
//  5. scale: 200 wrappers on one sr-registry for a minute: heartbeats
//     lost, registry CPU, wrapper RSS each, and cleanup.
//
// The child is bench/wrapper/probe, which stamps CLOCK_MONOTONIC when its
// main starts, when a signal arrives and before it exits. sr-registry runs
// as the built binary in its own process, so that its CPU can be read from
// /proc. Everything talks over 127.0.0.1 only; every wait is bounded.
//
// It is a measurement tool, not a test: it reports figures and verdicts
// and exits non-zero only when it could not measure. It builds the
// binaries itself (static, as `make build` does) unless given them.
//
//	go run ./bench/wrapper                 # full: about 4 minutes
//	go run ./bench/wrapper -quick          # every measurement briefly (~30 s)
//	go run ./bench/wrapper -only start,signal
//
// scripts/bench.sh (make bench) runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options bound every measurement in count and time.
type options struct {
	wrapper, registry, probe string // prebuilt binaries; built when empty
	// compare is another sr-wrapper (an earlier build), measured beside
	// wrapper in the start rows; "" for none.
	compare string
	tini    string // "" looks tini up in PATH; "none" skips it
	quick   bool
	only    []string

	startRuns    int
	signalRuns   int
	deregRuns    int
	deregPoll    time.Duration
	idleProcs    int
	idleWindow   time.Duration
	scaleProcs   int
	scaleWindow  time.Duration
	keepWorkDir  bool
	progress     io.Writer
	markdownHead bool
}

var measurements = []string{"start", "signal", "dereg", "idle", "scale"}

// withDefaults fills every zero bound with the default of the mode.
func (o options) withDefaults() options {
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	defd := func(v *time.Duration, full, quick time.Duration) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.startRuns, 200, 20)
	def(&o.signalRuns, 300, 30)
	def(&o.deregRuns, 30, 5)
	defd(&o.deregPoll, time.Millisecond, time.Millisecond)
	def(&o.idleProcs, 5, 2)
	defd(&o.idleWindow, 60*time.Second, 5*time.Second)
	def(&o.scaleProcs, 200, 20)
	defd(&o.scaleWindow, 60*time.Second, 5*time.Second)
	if len(o.only) == 0 {
		o.only = measurements
	}
	return o
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", os.Getenv("BENCH_QUICK") == "1", "run every measurement briefly, as a smoke test (default from BENCH_QUICK=1)")
	flag.StringVar(&o.wrapper, "wrapper", "", "sr-wrapper binary to measure (default: build it)")
	flag.StringVar(&o.registry, "registry", "", "sr-registry binary (default: build it)")
	flag.StringVar(&o.compare, "compare", "", "another sr-wrapper binary (an earlier build) to measure beside -wrapper in the start latency rows")
	flag.StringVar(&o.probe, "probe", "", "probe binary (default: build ./bench/wrapper/probe)")
	flag.StringVar(&o.tini, "tini", "", `tini binary for the baseline rows (default: "tini" from PATH; "none" skips them)`)
	only := flag.String("only", strings.Join(measurements, ","), "measurements to run, comma-separated: "+strings.Join(measurements, ","))
	// Zero means the mode's default, so that -quick and these combine.
	flag.IntVar(&o.startRuns, "start-runs", 0, "start latency: runs per row, 1..2000 (default 200, quick 20)")
	flag.IntVar(&o.signalRuns, "signal-runs", 0, "signal latency: signals per row, 1..5000 (default 300, quick 30)")
	flag.IntVar(&o.deregRuns, "dereg-runs", 0, "deregistration latency: runs, 1..500 (default 30, quick 5)")
	flag.DurationVar(&o.deregPoll, "dereg-poll", 0, "deregistration latency: pause between two GETs while watching, up to 100ms (default 1ms)")
	flag.IntVar(&o.idleProcs, "idle-procs", 0, "idle cost: processes of each kind, 1..50 (default 5, quick 2)")
	flag.DurationVar(&o.idleWindow, "idle-window", 0, "idle cost: measurement window, 1s..10m (default 60s, quick 5s)")
	flag.IntVar(&o.scaleProcs, "scale-wrappers", 0, "scale: wrappers, 1..1000 (default 200, quick 20)")
	flag.DurationVar(&o.scaleWindow, "scale-window", 0, "scale: measurement window, 1s..10m (default 60s, quick 5s)")
	flag.BoolVar(&o.keepWorkDir, "keep", false, "keep the work directory (logs of every process) and print its path")
	flag.Parse()
	o.only = strings.Split(*only, ",")
	o.progress = os.Stderr
	o.markdownHead = true
	o = o.withDefaults()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/wrapper:", err)
		os.Exit(1)
	}
}

func (o options) validate() error {
	for _, m := range o.only {
		if !slices.Contains(measurements, m) {
			return fmt.Errorf("-only: unknown measurement %q (known: %s)", m, strings.Join(measurements, ","))
		}
	}
	switch {
	case o.startRuns < 1 || o.startRuns > 2000,
		o.signalRuns < 1 || o.signalRuns > 5000,
		o.deregRuns < 1 || o.deregRuns > 500,
		o.deregPoll < 0 || o.deregPoll > 100*time.Millisecond,
		o.idleProcs < 1 || o.idleProcs > 50,
		o.idleWindow < time.Second || o.idleWindow > 10*time.Minute,
		o.scaleProcs < 1 || o.scaleProcs > 1000,
		o.scaleWindow < time.Second || o.scaleWindow > 10*time.Minute:
		return errors.New("a flag is out of bounds (see -help)")
	}
	return nil
}

// harness is what every measurement shares.
type harness struct {
	bins    binaries
	dir     string        // work directory: logs, data
	reg     *registryProc // for measurements 1–4; scale starts its own
	deadURL string        // a registry URL where nothing listens
}

// results are what run measured; nil for a measurement not run.
type results struct {
	start  *startResult
	signal *signalResult
	dereg  *deregResult
	idle   *idleResult
	scale  *scaleResult
}

func run(ctx context.Context, o options, out io.Writer) error {
	_, err := measure(ctx, o, out)
	return err
}

// measure runs the selected measurements, writes their tables to out, and
// returns the results.
func measure(ctx context.Context, o options, out io.Writer) (*results, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.progress == nil {
		o.progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "bench-wrapper-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	if o.keepWorkDir {
		fmt.Fprintln(o.progress, "work directory (kept):", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	h := &harness{dir: dir}
	if h.bins, err = binariesFor(ctx, o, dir); err != nil {
		return nil, err
	}
	if h.deadURL, err = deadRegistryURL(); err != nil {
		return nil, err
	}
	if h.reg, err = startRegistry(ctx, h.bins.registry, dir); err != nil {
		return nil, err
	}
	defer h.reg.stop()

	if o.markdownHead {
		writeMachine(ctx, out, o)
	}
	res := &results{}
	step := func(name string, fn func() error) error {
		if !slices.Contains(o.only, name) {
			return nil
		}
		fmt.Fprintf(o.progress, "bench/wrapper: %s ...\n", name)
		began := time.Now()
		if err := fn(); err != nil {
			return err
		}
		fmt.Fprintf(o.progress, "bench/wrapper: %s done in %s\n", name, time.Since(began).Round(100*time.Millisecond))
		return nil
	}
	err = errors.Join(
		step("start", func() (err error) {
			if res.start, err = measureStart(ctx, h, o.startRuns); err == nil {
				res.start.write(out)
			}
			return err
		}),
		step("signal", func() (err error) {
			if res.signal, err = measureSignal(ctx, h, o.signalRuns); err == nil {
				res.signal.write(out)
			}
			return err
		}),
		step("dereg", func() (err error) {
			if res.dereg, err = measureDereg(ctx, h, o.deregRuns, o.deregPoll); err == nil {
				res.dereg.write(out)
			}
			return err
		}),
		step("idle", func() (err error) {
			if res.idle, err = measureIdle(ctx, h, o.idleProcs, o.idleWindow); err == nil {
				res.idle.write(out)
			}
			return err
		}),
		step("scale", func() (err error) {
			if res.scale, err = measureScale(ctx, h, o.scaleProcs, o.scaleWindow); err == nil {
				res.scale.write(out)
			}
			return err
		}),
	)
	if o.markdownHead {
		fmt.Fprintf(out, "Load average at the end: %s.\n", loadAverage())
	}
	if err != nil && o.keepWorkDir {
		err = fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return res, err
}

// binariesFor returns the binaries given in o, building the missing ones
// (the launcher always).
func binariesFor(ctx context.Context, o options, dir string) (binaries, error) {
	b := binaries{wrapper: o.wrapper, registry: o.registry, probe: o.probe, compare: o.compare}
	pkgs := []string{"bench/wrapper/launcher"}
	targets := []*string{&b.launcher}
	for _, t := range []struct {
		path *string
		pkg  string
	}{{&b.wrapper, "cmd/sr-wrapper"}, {&b.registry, "cmd/sr-registry"}, {&b.probe, "bench/wrapper/probe"}} {
		if *t.path == "" {
			pkgs = append(pkgs, t.pkg)
			targets = append(targets, t.path)
		}
	}
	fmt.Fprintf(o.progress, "bench/wrapper: building %s ...\n", strings.Join(pkgs, ", "))
	built, err := build(ctx, dir, pkgs...)
	if err != nil {
		return b, err
	}
	for i, t := range targets {
		*t = built[i]
	}
	switch o.tini {
	case "none":
	case "":
		if p, err := exec.LookPath("tini"); err == nil {
			b.tini = p
		}
	default:
		b.tini = o.tini
	}
	return b, nil
}

func numCPU() int { return runtime.NumCPU() }

// writeMachine states what the figures were measured on.
func writeMachine(ctx context.Context, w io.Writer, o options) {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	goVersion := runtime.Version()
	if out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	mode := "full"
	if o.quick {
		mode = "quick (smoke test; figures are indicative only)"
	}
	fmt.Fprintf(w, "## sr-wrapper benchmark (bench/wrapper), %s mode\n\n", mode)
	fmt.Fprintf(w, "Run %s on %d CPUs (%s), kernel %s, %s, %s/%s; load average at the start: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), model, kernel, goVersion, runtime.GOOS, runtime.GOARCH, loadAverage())
}

// loadAverage is the 1, 5 and 15 minute load average: other work on the
// machine widens the spreads, and the reader should know of it.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
