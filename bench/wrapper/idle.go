package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"
)

// idleRow is one kind of process watched while idle: k of them.
type idleRow struct {
	name string
	ps   []*proc
	// Per process, over the window: CPU used, and memory at its end.
	cpu []time.Duration
	mem []memory
	// Per process, over its whole life, from the rusage of wait4:
	// CPU (start-up and exit included) and peak RSS.
	lifeCPU []time.Duration
	maxRSS  []int64
}

// idleResult is measurement 2.
type idleResult struct {
	rows     []*idleRow
	window   time.Duration
	regCPU   time.Duration // sr-registry's CPU over the window
	regMem   memory
	skipped  []string
	wrappers int
}

const (
	rowIdleProbe   = "probe alone"
	rowIdleTini    = "tini (around a probe)"
	rowIdleWrapper = "sr-wrapper (around a probe)"
	rowIdleCompare = "compared sr-wrapper (around a probe)"
)

// measureIdle starts k wrappers, k tinis and k bare probes (each of them
// with a waiting probe child, the bare ones being the child alone), waits
// until the wrappers' services are registered, and reads the CPU time of
// each process before and after a window of the given length, and its
// peak RSS at the end. All run in the same window, so they see the same
// machine.
func measureIdle(ctx context.Context, h *harness, k int, window time.Duration) (*idleResult, error) {
	res := &idleResult{window: window, wrappers: k}
	probe := []string{h.bins.probe, "-wait"}
	kinds := []struct {
		name string
		argv func(i int) []string
	}{
		{rowIdleWrapper, func(i int) []string {
			return wrapperArgv(h.bins.wrapper, fmt.Sprintf("idle-%d", i), h.reg.url, "idle", probe...)
		}},
		{rowIdleProbe, func(int) []string { return probe }},
	}
	if h.bins.compare != "" {
		res.wrappers = 2 * k
		kinds = append(kinds, struct {
			name string
			argv func(i int) []string
		}{rowIdleCompare, func(i int) []string {
			return wrapperArgv(h.bins.compare, fmt.Sprintf("idle-cmp-%d", i), h.reg.url, "idle", probe...)
		}})
	}
	if h.bins.tini != "" {
		kinds = append(kinds, struct {
			name string
			argv func(i int) []string
		}{rowIdleTini, func(int) []string { return tiniArgv(h.bins.tini, probe...) }})
	} else {
		res.skipped = append(res.skipped, rowIdleTini+": tini is not installed")
	}
	defer func() {
		for _, r := range res.rows {
			for _, p := range r.ps {
				_ = p.cmd.Process.Kill()
				_ = p.wait(5 * time.Second)
			}
		}
	}()
	for _, kind := range kinds {
		row := &idleRow{name: kind.name}
		res.rows = append(res.rows, row)
		for i := range k {
			p, err := startProc(kind.argv(i), procOptions{Stdin: true, Log: filepath.Join(h.dir, fmt.Sprintf("idle-%d-%d.log", len(res.rows), i))})
			if err != nil {
				return nil, fmt.Errorf("idle: %w", err)
			}
			row.ps = append(row.ps, p)
			if _, err := p.expect("start", 10*time.Second); err != nil {
				return nil, fmt.Errorf("idle, %s: %w", kind.name, err)
			}
		}
	}
	c, err := h.reg.client("idle")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for i := range k {
		ids := []string{fmt.Sprintf("idle-%d", i)}
		if h.bins.compare != "" {
			ids = append(ids, fmt.Sprintf("idle-cmp-%d", i))
		}
		for _, id := range ids {
			if err := waitRegistered(ctx, c, id, 20*time.Second); err != nil {
				return nil, fmt.Errorf("idle: %w", err)
			}
		}
	}
	// Let start-up finish (first heartbeat, allocations that are kept)
	// before the window opens: the window is about the steady state.
	time.Sleep(2 * time.Second)

	before := make([][]cpuSample, len(res.rows))
	for r, row := range res.rows {
		for _, p := range row.ps {
			t, err := sampleCPU(p.pid())
			if err != nil {
				return nil, err
			}
			before[r] = append(before[r], t)
		}
	}
	regBefore, err := sampleCPU(h.reg.pid)
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for r, row := range res.rows {
		for i, p := range row.ps {
			t, err := sampleCPU(p.pid())
			if err != nil {
				return nil, err
			}
			m, err := readMemory(p.pid())
			if err != nil {
				return nil, err
			}
			row.cpu = append(row.cpu, cpuBetween(before[r][i], t))
			row.mem = append(row.mem, m)
		}
	}
	regAfter, err := sampleCPU(h.reg.pid)
	if err != nil {
		return nil, err
	}
	res.regCPU = cpuBetween(regBefore, regAfter)
	if res.regMem, err = readMemory(h.reg.pid); err != nil {
		return nil, err
	}
	// The services must still be there: the wrappers were heartbeating.
	for i := range k {
		if _, err := c.GetService(ctx, fmt.Sprintf("idle-%d", i)); err != nil {
			return nil, fmt.Errorf("idle: after the window: %w", err)
		}
	}
	// End every probe (the wrappers then deregister and exit) and take
	// the rusage of each process's whole life.
	for _, row := range res.rows {
		for _, p := range row.ps {
			_ = p.stdin.Close()
		}
		for _, p := range row.ps {
			if err := p.wait(15 * time.Second); err != nil {
				return nil, fmt.Errorf("idle, %s: %w", row.name, err)
			}
			ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
			if !ok {
				return nil, fmt.Errorf("idle: no rusage for pid %d", p.pid())
			}
			row.lifeCPU = append(row.lifeCPU, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
			row.maxRSS = append(row.maxRSS, ru.Maxrss<<10)
		}
	}
	return res, nil
}

// row is the row named name, or nil.
func (r *idleResult) row(name string) *idleRow {
	for _, row := range r.rows {
		if row.name == name {
			return row
		}
	}
	return nil
}

func (r *idleResult) write(w io.Writer) {
	fmt.Fprintln(w, "### 2. Idle cost: peak RSS and CPU")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d of each process side by side, started together; sr-wrapper with --interval 3 (a heartbeat every ~1.4 s) against the sr-registry binary. The window (%s) opens 2 s after every wrapper's service is registered. CPU = the sum over the process's threads of se.sum_exec_runtime (/proc/PID/task/TID/sched, ns resolution) over the window, checked against utime+stime of /proc/PID/stat, as %% of one CPU over the window's wall time. Peak RSS = VmHWM at the end of the window (it includes start-up); RSS splits into RssAnon (the process's own) and RssFile (mostly its executable's pages, shared by every process running it); PSS (smaps_rollup) counts shared pages divided among the processes sharing them. Life CPU = rusage of the process from exec to exit, start-up and deregistration included. The tini and sr-wrapper rows are the supervisor process alone, without its probe child.\n", r.wrappers, r.window)
	fmt.Fprintln(w)
	t := newTable("process", "n", "window CPU ms: median (min – max)", "CPU % median (max)", "peak RSS MiB: median (min – max)", "RSS at end MiB median (anon + file)", "PSS at end MiB median", "life CPU ms median (max)", "budget", "verdict")
	secs := r.window.Seconds()
	for _, row := range r.rows {
		cpu := make([]float64, len(row.cpu))
		for i, c := range row.cpu {
			cpu[i] = ms(c)
		}
		hwm := make([]float64, len(row.mem))
		rss := make([]float64, len(row.mem))
		anon := make([]float64, len(row.mem))
		file := make([]float64, len(row.mem))
		pss := make([]float64, len(row.mem))
		for i, m := range row.mem {
			hwm[i], rss[i], anon[i], file[i], pss[i] = mib(m.hwm), mib(m.rss), mib(m.anon), mib(m.file), mib(m.pss)
		}
		life := make([]float64, len(row.lifeCPU))
		for i, c := range row.lifeCPU {
			life[i] = ms(c)
		}
		sc, sh, sr, sl := summarize(cpu), summarize(hwm), summarize(rss), summarize(life)
		pct := func(v float64) float64 { return v / 1000 / secs * 100 }
		budget, v := "", ""
		if row.name == rowIdleWrapper {
			budget = "peak RSS < 10 MiB, CPU < 0.1 %"
			v = verdict(sh.Max < 10 && pct(sc.Max) < 0.1)
		}
		t.add(row.name, fmt.Sprint(sc.N),
			f(sc.Median, 0)+" ("+f(sc.Min, 0)+" – "+f(sc.Max, 0)+")",
			f(pct(sc.Median), 3)+" ("+f(pct(sc.Max), 3)+")",
			f(sh.Median, 2)+" ("+f(sh.Min, 2)+" – "+f(sh.Max, 2)+")",
			f(sr.Median, 2)+" ("+f(summarize(anon).Median, 2)+" + "+f(summarize(file).Median, 2)+")",
			f(summarize(pss).Median, 2),
			f(sl.Median, 0)+" ("+f(sl.Max, 0)+")",
			budget, v)
	}
	t.write(w)
	fmt.Fprintf(w, "sr-registry meanwhile (serving the %d wrappers' heartbeats): %.0f ms CPU = %.3f %% of one CPU; RSS %.1f MiB (peak %.1f MiB).\n\n",
		r.wrappers, ms(r.regCPU), ms(r.regCPU)/1000/secs*100, mib(r.regMem.rss), mib(r.regMem.hwm))
	for _, s := range r.skipped {
		fmt.Fprintln(w, "Skipped:", s)
		fmt.Fprintln(w)
	}
}
