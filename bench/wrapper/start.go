package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// startRow is one way of starting the probe and its latencies.
type startRow struct {
	name    string
	argv    func(i int) []string
	samples []int64 // ns from just before exec to the probe's first stamp
}

// startResult is measurement 1.
type startResult struct {
	rows []*startRow
	// overhead is, per non-direct row, its median minus direct's, in ms;
	// overLauncher its median minus the launcher's, the design's budget.
	overhead, overLauncher map[string]float64
	skipped                []string
	inits                  *initTrace
}

const (
	rowDirect         = "probe (direct)"
	rowLauncher       = "minimal Go launcher (TERM subscribed) -- probe"
	rowLauncherNotify = "minimal Go launcher + signal.Notify of 43 signals -- probe"
	rowTini           = "tini -- probe"
	rowWrapperDown    = "sr-wrapper -- probe (registry down)"
	rowWrapperUp      = "sr-wrapper -- probe (registry up)"
	rowCompareDown    = "compared sr-wrapper -- probe (registry down)"
	rowCompareUp      = "compared sr-wrapper -- probe (registry up)"
)

// startTenants spreads the runs over tenants: a run whose child exits
// while its session is being created can leave that session to expire
// (3 s), and a tenant holds at most 100.
const startTenants = 10

// measureStart times, n times per row and interleaved, how long after
// the exec the probe's main runs: started directly, under the minimal Go
// launcher (without and with signal.Notify), under tini, and under
// sr-wrapper with the registry down and up. Each run waits for the
// previous one to exit. It then traces sr-wrapper's package
// initialisation.
func measureStart(ctx context.Context, h *harness, n int) (res *startResult, err error) {
	probe := []string{h.bins.probe}
	rows := []*startRow{
		{name: rowDirect, argv: func(int) []string { return probe }},
		{name: rowLauncher, argv: func(int) []string { return append([]string{h.bins.launcher}, probe...) }},
		{name: rowLauncherNotify, argv: func(int) []string { return append([]string{h.bins.launcher, "-notify"}, probe...) }},
	}
	res = &startResult{overhead: map[string]float64{}, overLauncher: map[string]float64{}}
	if h.bins.tini != "" {
		rows = append(rows, &startRow{name: rowTini, argv: func(int) []string { return tiniArgv(h.bins.tini, probe...) }})
	} else {
		res.skipped = append(res.skipped, rowTini+": tini is not installed (scripts/bench.sh installs it when run as root; or apt-get install tini)")
	}
	rows = append(rows,
		&startRow{name: rowWrapperDown, argv: func(i int) []string {
			return wrapperArgv(h.bins.wrapper, fmt.Sprintf("start-%d", i), h.deadURL, "start", probe...)
		}},
		&startRow{name: rowWrapperUp, argv: func(i int) []string {
			return wrapperArgv(h.bins.wrapper, fmt.Sprintf("start-%d", i), h.reg.url, fmt.Sprintf("start-%d", i%startTenants), probe...)
		}},
	)
	if h.bins.compare != "" {
		rows = append(rows,
			&startRow{name: rowCompareDown, argv: func(i int) []string {
				return wrapperArgv(h.bins.compare, fmt.Sprintf("start-%d", i), h.deadURL, "start", probe...)
			}},
			&startRow{name: rowCompareUp, argv: func(i int) []string {
				return wrapperArgv(h.bins.compare, fmt.Sprintf("cmp-%d", i), h.reg.url, fmt.Sprintf("start-%d", i%startTenants), probe...)
			}},
		)
	}
	// Warm-up runs (page cache, the registry's first tenant logins) are
	// not counted.
	const warmup = 3
	for j := 0; j < (warmup+n)*len(rows); j++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Rotate the order every round so that no row always follows
		// the same one.
		row := rows[(j+j/len(rows))%len(rows)]
		lat, err := startOnce(row.argv(j), filepath.Join(h.dir, "start.log"))
		if err != nil {
			return nil, fmt.Errorf("start latency, %s: %w", row.name, err)
		}
		if j >= warmup*len(rows) {
			row.samples = append(row.samples, lat)
		}
	}
	res.rows = rows
	direct := summarize(millis(rows[0].samples)).Median
	launcher := summarize(millis(rows[1].samples)).Median
	for _, r := range rows[1:] {
		m := summarize(millis(r.samples)).Median
		res.overhead[r.name] = m - direct
		res.overLauncher[r.name] = m - launcher
	}
	if res.inits, err = traceInits(ctx, h, min(n, 20)); err != nil {
		return nil, err
	}
	return res, nil
}

// initGroup sorts the packages whose initialisation sr-wrapper pays for on
// every start. The first group is a guard: sr-wrapper does not link the
// etcd client (sr-wrapper-etcd does), so a count above 0 means that an
// import brought it, and its few milliseconds of init, back.
func initGroup(pkg string) string {
	switch {
	case strings.HasPrefix(pkg, "go.etcd.io/"), strings.HasPrefix(pkg, "google.golang.org/"),
		strings.HasPrefix(pkg, "github.com/grpc-ecosystem/"), strings.HasPrefix(pkg, "github.com/golang/protobuf"),
		strings.HasPrefix(pkg, "github.com/gogo/"), strings.HasPrefix(pkg, "github.com/coreos/"):
		return initGroupEtcd
	}
	return "all other packages"
}

const initGroupEtcd = "etcd client, gRPC, protobuf (must be 0: sr-wrapper does not link them)"

var initGroups = []string{initGroupEtcd, "all other packages"}

// initTrace is where sr-wrapper's package initialisation goes, from
// GODEBUG=inittrace=1: per group, the wall time the init functions took
// (median over the runs), and how many packages.
type initTrace struct {
	runs     int
	packages map[string]int
	clock    map[string]summary // ms
	total    summary            // ms
}

// traceInits runs sr-wrapper (registry down) around the probe n times
// with GODEBUG=inittrace=1 and sums the init clock per group.
func traceInits(ctx context.Context, h *harness, n int) (*initTrace, error) {
	tr := &initTrace{runs: n, packages: map[string]int{}, clock: map[string]summary{}}
	per := map[string][]float64{}
	var totals []float64
	log := filepath.Join(h.dir, "inittrace.log")
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := startProc(wrapperArgv(h.bins.wrapper, "inittrace", h.deadURL, "start", h.bins.probe),
			procOptions{Log: log, Env: []string{"GODEBUG=inittrace=1"}})
		if err != nil {
			return nil, fmt.Errorf("init trace: %w", err)
		}
		if err := p.wait(10 * time.Second); err != nil {
			return nil, fmt.Errorf("init trace: %w", err)
		}
		b, err := os.ReadFile(log)
		if err != nil {
			return nil, fmt.Errorf("init trace: %w", err)
		}
		sums := map[string]float64{}
		total := 0.0
		for l := range strings.SplitSeq(string(b), "\n") {
			// init PKG @T ms, C ms clock, B bytes, A allocs
			f := strings.Fields(l)
			if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
				continue
			}
			c, err := strconv.ParseFloat(f[4], 64)
			if err != nil {
				continue
			}
			g := initGroup(f[1])
			sums[g] += c
			total += c
			if i == 0 {
				tr.packages[g]++
			}
		}
		for _, g := range initGroups {
			per[g] = append(per[g], sums[g])
		}
		totals = append(totals, total)
	}
	for _, g := range initGroups {
		tr.clock[g] = summarize(per[g])
	}
	tr.total = summarize(totals)
	return tr, nil
}

// startOnce runs argv once and returns the time from just before the exec
// to the probe's first stamp.
func startOnce(argv []string, log string) (int64, error) {
	var at int64
	p, err := startProc(argv, procOptions{Log: log, Started: &at})
	if err != nil {
		return 0, err
	}
	stamp, _, err := p.stamp("start", 0, 10*time.Second)
	if err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.wait(time.Second)
		return 0, err
	}
	if err := p.wait(10 * time.Second); err != nil {
		return 0, fmt.Errorf("%v: %w", argv, err)
	}
	return stamp - at, nil
}

func (r *startResult) write(w io.Writer) {
	fmt.Fprintln(w, "### 1. Child start latency")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "From just before the exec (CLOCK_MONOTONIC in the benchmark) to the first statement of the probe's main (CLOCK_MONOTONIC in the probe). Every row includes the probe's own exec and Go runtime start-up, the same in each. Runs interleaved, each after the previous one exited. The minimal Go launcher (bench/wrapper/launcher) is the floor of any Go wrapper and the design's budget: one more exec and Go runtime start-up, a subscription to TERM, then os.StartProcess; with -notify it subscribes to all 43 signals sr-wrapper forwards instead (sr-wrapper subscribes to the 13 standard ones before its child starts, the 30 real-time ones after).")
	fmt.Fprintln(w)
	t := newTable("row", "median ms", "p10 – p90 ms", "min – max ms", "n", "median over direct ms", "median over launcher ms", "budget", "verdict")
	for _, row := range r.rows {
		cells := spread(summarize(millis(row.samples)), 3)
		switch row.name {
		case rowDirect:
			cells = append(cells, "(baseline)", "", "", "")
		case rowLauncher:
			cells = append(cells, f(r.overhead[row.name], 3), "(floor)", "", "")
		default:
			over := r.overLauncher[row.name]
			budget, v := "", ""
			if row.name == rowWrapperUp || row.name == rowWrapperDown {
				budget, v = "≤ launcher + 1 ms", verdict(over <= 1)
			}
			cells = append(cells, f(r.overhead[row.name], 3), f(over, 3), budget, v)
		}
		t.add(append([]string{row.name}, cells...)...)
	}
	t.write(w)
	for _, s := range r.skipped {
		fmt.Fprintln(w, "Skipped:", s)
		fmt.Fprintln(w)
	}
	if r.inits == nil {
		return
	}
	fmt.Fprintf(w, "Where part of sr-wrapper's start-up goes: its package initialisation, from GODEBUG=inittrace=1 (sum of the init functions' wall time; the tracing itself slows it a little), %d runs:\n\n", r.inits.runs)
	t = newTable("packages", "count", "init ms median", "p10 – p90 ms")
	for _, g := range initGroups {
		s := r.inits.clock[g]
		t.add(g, fmt.Sprint(r.inits.packages[g]), f(s.Median, 2), f(s.P10, 2)+" – "+f(s.P90, 2))
	}
	t.add("total", "", f(r.inits.total.Median, 2), f(r.inits.total.P10, 2)+" – "+f(r.inits.total.P90, 2))
	t.write(w)
}
