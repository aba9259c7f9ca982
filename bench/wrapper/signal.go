package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// signalRow is one way of delivering SIGUSR1 to a waiting probe.
type signalRow struct {
	name    string
	p       *proc // what the signal is sent to; its stdout is the probe's
	samples []int64
}

// signalResult is measurement 4.
type signalResult struct {
	rows    []*signalRow
	skipped []string
}

const (
	rowSignalDirect  = "kill probe (direct)"
	rowSignalWrapper = "kill sr-wrapper → probe"
	rowSignalTini    = "kill tini → probe"
)

// measureSignal sends SIGUSR1 n times per row, interleaved, and times each
// from just before kill(2) to the probe's stamp on receipt. The wrapper
// is registered (idle-heartbeating) while it forwards.
func measureSignal(ctx context.Context, h *harness, n int) (*signalResult, error) {
	res := &signalResult{}
	probe := []string{h.bins.probe, "-wait"}
	argvs := []struct {
		name string
		argv []string
	}{
		{rowSignalDirect, probe},
		{rowSignalWrapper, wrapperArgv(h.bins.wrapper, "signal-bench", h.reg.url, "signal", probe...)},
	}
	if h.bins.tini != "" {
		argvs = append(argvs, struct {
			name string
			argv []string
		}{rowSignalTini, tiniArgv(h.bins.tini, probe...)})
	} else {
		res.skipped = append(res.skipped, rowSignalTini+": tini is not installed")
	}
	defer func() {
		for _, r := range res.rows {
			_ = r.p.stdin.Close()
			_ = r.p.wait(10 * time.Second)
		}
	}()
	for i, a := range argvs {
		p, err := startProc(a.argv, procOptions{Stdin: true, Log: filepath.Join(h.dir, fmt.Sprintf("signal-%d.log", i))})
		if err != nil {
			return nil, fmt.Errorf("signal latency: %w", err)
		}
		res.rows = append(res.rows, &signalRow{name: a.name, p: p})
		if _, err := p.expect("start", 10*time.Second); err != nil {
			return nil, fmt.Errorf("signal latency, %s: %w", a.name, err)
		}
	}
	c, err := h.reg.client("signal")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := waitRegistered(ctx, c, "signal-bench", 20*time.Second); err != nil {
		return nil, fmt.Errorf("signal latency: %w", err)
	}
	const warmup = 5
	want := strconv.Itoa(int(syscall.SIGUSR1))
	for j := 0; j < (warmup+n)*len(res.rows); j++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		row := res.rows[(j+j/len(res.rows))%len(res.rows)]
		at := mono()
		if err := syscall.Kill(row.p.pid(), syscall.SIGUSR1); err != nil {
			return nil, fmt.Errorf("signal latency, %s: kill %d: %w", row.name, row.p.pid(), err)
		}
		got, f, err := row.p.stamp("sig", 1, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("signal latency, %s: %w", row.name, err)
		}
		if f[0] != want {
			return nil, fmt.Errorf("signal latency, %s: probe got signal %s, want %s", row.name, f[0], want)
		}
		if j >= warmup*len(res.rows) {
			row.samples = append(row.samples, got-at)
		}
	}
	return res, nil
}

func (r *signalResult) write(w io.Writer) {
	fmt.Fprintln(w, "### 4. Signal forwarding latency")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "SIGUSR1 from just before kill(2) to the probe's stamp when its signal channel delivers it (both CLOCK_MONOTONIC); the next signal goes out once the previous one has arrived, rows interleaved. The wrapper is registered and heartbeating meanwhile.")
	fmt.Fprintln(w)
	t := newTable("row", "median ms", "p10 – p90 ms", "min – max ms", "n", "median over direct ms", "budget", "verdict")
	var direct float64
	for _, row := range r.rows {
		s := summarize(millis(row.samples))
		cells := spread(s, 3)
		switch row.name {
		case rowSignalDirect:
			direct = s.Median
			cells = append(cells, "(baseline)", "", "")
		case rowSignalWrapper:
			cells = append(cells, f(s.Median-direct, 3), "median < 1 ms", verdict(s.Median < 1))
		default:
			cells = append(cells, f(s.Median-direct, 3), "", "")
		}
		t.add(append([]string{row.name}, cells...)...)
	}
	t.write(w)
	for _, s := range r.skipped {
		fmt.Fprintln(w, "Skipped:", s)
		fmt.Fprintln(w)
	}
}
