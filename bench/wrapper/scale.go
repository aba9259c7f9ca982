package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// scaleResult is measurement 5.
type scaleResult struct {
	wrappers int
	tenants  int
	window   time.Duration

	startAll time.Duration // from the first start to all registered
	stopAll  time.Duration // from the first TERM to all exited

	regCPU           time.Duration // sr-registry's CPU over the window
	regMem           memory        // at the end of the window
	wrapperMem       []memory      // each wrapper's at the end of the window
	wrapperCPU       []time.Duration
	samples          int   // times the sessions were listed in the window
	maxStaleness     int64 // ms, the most any session's last_seen lagged a sample
	sessionsChanged  int   // samples whose session ids differed from the first
	timeoutEvents    int   // services.timeout events from start to after cleanup
	problemLines     int   // warn/error lines in the wrappers' logs
	problemExamples  []string
	leftSessions     int // after all wrappers exited
	leftServices     int
	badExits         int // wrappers that did not exit 0
	firstBadExit     string
	heartbeatTimeout time.Duration
}

// perTenant keeps each tenant within the registry's default limit of 100
// sessions.
const perTenant = 50

// measureScale runs n wrappers with --interval 3 on a fresh sr-registry
// binary for the window, checks that no heartbeat was lost, reads the
// registry's CPU and every wrapper's memory, stops them all with TERM and
// checks that every service and session is gone.
func measureScale(ctx context.Context, h *harness, n int, window time.Duration) (_ *scaleResult, err error) {
	dir := filepath.Join(h.dir, "scale")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	reg, err := startRegistry(ctx, h.bins.registry, dir)
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	defer reg.stop()
	res := &scaleResult{wrappers: n, tenants: (n + perTenant - 1) / perTenant, window: window, heartbeatTimeout: 3 * time.Second}
	clients := make([]*srapi.Client, res.tenants)
	for t := range clients {
		if clients[t], err = reg.client(fmt.Sprintf("scale-%d", t)); err != nil {
			return nil, err
		}
		defer clients[t].Close()
	}

	// One pipe is every probe's stdin; nobody writes to it, so they wait
	// for TERM (forwarded by their wrapper).
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	defer stdinW.Close()
	var ps []*proc
	var logs []string
	defer func() {
		for _, p := range ps {
			_ = p.cmd.Process.Kill()
			_ = p.wait(5 * time.Second)
		}
	}()
	begin := time.Now()
	for i := range n {
		log := filepath.Join(dir, fmt.Sprintf("wrapper-%03d.log", i))
		argv := wrapperArgv(h.bins.wrapper, fmt.Sprintf("scale-%03d", i), reg.url, fmt.Sprintf("scale-%d", i/perTenant), h.bins.probe, "-wait")
		p, err := startProc(argv, procOptions{SharedStdin: stdinR, NoStdout: true, Log: log})
		if err != nil {
			stdinR.Close()
			return nil, fmt.Errorf("scale: wrapper %d: %w", i, err)
		}
		ps = append(ps, p)
		logs = append(logs, log)
	}
	stdinR.Close()
	if err := waitCounts(ctx, clients, n, 60*time.Second); err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	res.startAll = time.Since(begin)
	// Every session has been heartbeated once (~1.4 s after it was made)
	// before the window opens, so that every last_seen is set.
	time.Sleep(2 * time.Second)

	regBefore, err := sampleCPU(reg.pid)
	if err != nil {
		return nil, err
	}
	wrapBefore := make([]cpuSample, n)
	for i, p := range ps {
		if wrapBefore[i], err = sampleCPU(p.pid()); err != nil {
			return nil, err
		}
	}
	windowStart := time.Now()
	var firstIDs map[string]bool
	for time.Since(windowStart) < window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ids, stale, err := sampleSessions(ctx, clients)
		if err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
		res.samples++
		res.maxStaleness = max(res.maxStaleness, stale)
		if firstIDs == nil {
			firstIDs = ids
		} else if !sameSet(ids, firstIDs) {
			res.sessionsChanged++
		}
		time.Sleep(time.Second - time.Since(windowStart)%time.Second)
	}
	elapsed := time.Since(windowStart)
	res.window = elapsed
	regAfter, err := sampleCPU(reg.pid)
	if err != nil {
		return nil, err
	}
	res.regCPU = cpuBetween(regBefore, regAfter)
	if res.regMem, err = readMemory(reg.pid); err != nil {
		return nil, err
	}
	for i, p := range ps {
		t, err := sampleCPU(p.pid())
		if err != nil {
			return nil, err
		}
		m, err := readMemory(p.pid())
		if err != nil {
			return nil, err
		}
		res.wrapperCPU = append(res.wrapperCPU, cpuBetween(wrapBefore[i], t))
		res.wrapperMem = append(res.wrapperMem, m)
	}

	stopBegin := time.Now()
	if err := stopAll(ps, syscall.SIGTERM, 60*time.Second); err != nil {
		return nil, fmt.Errorf("scale: stop: %w", err)
	}
	res.stopAll = time.Since(stopBegin)
	for i, p := range ps {
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			res.badExits++
			if res.firstBadExit == "" {
				res.firstBadExit = fmt.Sprintf("wrapper %d: %s", i, p.cmd.ProcessState)
			}
		}
	}
	ps = nil

	for _, c := range clients {
		sessions, err := srapi.All(ctx, c.ListSessions, srapi.ListOptions{Limit: 1000}, 0)
		if err != nil {
			return nil, fmt.Errorf("scale: after stop: %w", err)
		}
		services, err := srapi.All(ctx, c.ListServices, srapi.ListOptions{Limit: 1000}, 0)
		if err != nil {
			return nil, fmt.Errorf("scale: after stop: %w", err)
		}
		events, err := srapi.All(ctx, c.ListEvents, srapi.ListOptions{Limit: 1000}, 0)
		if err != nil {
			return nil, fmt.Errorf("scale: after stop: %w", err)
		}
		res.leftSessions += len(sessions)
		res.leftServices += len(services)
		for _, e := range events {
			if e.Type == api.EventServicesTimeout {
				res.timeoutEvents++
			}
		}
	}
	res.problemLines, res.problemExamples, err = countLines(logs, `"level":"warn"`, `"level":"error"`)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// waitCounts waits until every tenant lists its share of the n services.
func waitCounts(ctx context.Context, clients []*srapi.Client, n int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		total := 0
		for _, c := range clients {
			l, err := c.ListServices(ctx, srapi.ListOptions{Limit: 1000})
			if err != nil {
				return fmt.Errorf("wait for %d services: %w", n, err)
			}
			total += len(l.Values)
		}
		if total == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d services: %d registered: %w", n, total, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sampleSessions lists every session and returns their ids and how long
// ago, at most, one of them was last heartbeated, in ms.
func sampleSessions(ctx context.Context, clients []*srapi.Client) (map[string]bool, int64, error) {
	ids := map[string]bool{}
	var stale int64
	for _, c := range clients {
		l, err := c.ListSessions(ctx, srapi.ListOptions{Limit: 1000})
		if err != nil {
			return nil, 0, fmt.Errorf("list sessions: %w", err)
		}
		now := time.Now().UnixMilli()
		for _, s := range l.Values {
			ids[s.ID] = true
			if s.LastSeen == nil {
				return nil, 0, errors.New("list sessions: session " + s.ID + " was never heartbeated")
			}
			stale = max(stale, now-*s.LastSeen)
		}
	}
	return ids, stale, nil
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// lost reports whether any sign of a lost heartbeat was seen.
func (r *scaleResult) lost() bool {
	return r.timeoutEvents > 0 || r.sessionsChanged > 0 || r.problemLines > 0 ||
		time.Duration(r.maxStaleness)*time.Millisecond >= r.heartbeatTimeout
}

func (r *scaleResult) clean() bool {
	return r.leftServices == 0 && r.leftSessions == 0 && r.badExits == 0
}

func (r *scaleResult) write(w io.Writer) {
	fmt.Fprintln(w, "### 5. Scale: many wrappers on one sr-registry")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d sr-wrapper processes (each around a waiting probe) with --interval 3 on one sr-registry binary (dev mode, %d tenants of %d), for a window of %s that opens 2 s after all are registered. Every second of the window the benchmark lists all sessions (%d samples). Then TERM to every wrapper, and the registry is checked for leftovers.\n",
		r.wrappers, r.tenants, perTenant, r.window.Round(time.Millisecond), r.samples)
	fmt.Fprintln(w)
	secs := r.window.Seconds()
	hwm := make([]float64, len(r.wrapperMem))
	rss := make([]float64, len(r.wrapperMem))
	anon := make([]float64, len(r.wrapperMem))
	pss := make([]float64, len(r.wrapperMem))
	for i, m := range r.wrapperMem {
		hwm[i], rss[i], anon[i], pss[i] = mib(m.hwm), mib(m.rss), mib(m.anon), mib(m.pss)
	}
	cpu := make([]float64, len(r.wrapperCPU))
	for i, c := range r.wrapperCPU {
		cpu[i] = ms(c) / 1000 / secs * 100
	}
	sh, sr, sc := summarize(hwm), summarize(rss), summarize(cpu)
	t := newTable("figure", "value", "budget / expectation", "verdict")
	t.add("start all → all registered", r.startAll.Round(time.Millisecond).String(), "", "")
	t.add("services.timeout events (whole run)", fmt.Sprint(r.timeoutEvents), "0", verdict(r.timeoutEvents == 0))
	t.add("samples whose session ids changed (a lost session is replaced)", fmt.Sprint(r.sessionsChanged), "0", verdict(r.sessionsChanged == 0))
	t.add("largest now − last_seen seen in a sample", fmt.Sprintf("%d ms", r.maxStaleness), "< 3000 ms (the timeout)", verdict(time.Duration(r.maxStaleness)*time.Millisecond < r.heartbeatTimeout))
	ex := ""
	if len(r.problemExamples) > 0 {
		ex = " e.g. `" + r.problemExamples[0] + "`"
	}
	t.add("warn/error lines in the wrappers' logs", fmt.Sprint(r.problemLines)+ex, "0", verdict(r.problemLines == 0))
	t.add("heartbeats lost (any of the above)", map[bool]string{true: "some", false: "0"}[r.lost()], "0", verdict(!r.lost()))
	t.add("sr-registry CPU over the window", fmt.Sprintf("%.0f ms = %.2f %% of one CPU (%.2f %% of the machine's %d)", ms(r.regCPU), ms(r.regCPU)/1000/secs*100, ms(r.regCPU)/1000/secs*100/float64(numCPU()), numCPU()), "", "")
	t.add("sr-registry RSS at the end (peak)", fmt.Sprintf("%.1f MiB (%.1f MiB)", mib(r.regMem.rss), mib(r.regMem.hwm)), "", "")
	t.add("wrapper peak RSS each: median (p10 – p90, min – max)", fmt.Sprintf("%.2f MiB (%.2f – %.2f, %.2f – %.2f), n=%d", sh.Median, sh.P10, sh.P90, sh.Min, sh.Max, sh.N), "< 10 MiB", verdict(sh.Max < 10))
	t.add("wrapper RSS at the end each: median (max)", fmt.Sprintf("%.2f MiB (%.2f)", sr.Median, sr.Max), "", "")
	sa, sp := summarize(anon), summarize(pss)
	t.add("of which RssAnon (the wrapper's own): median (max)", fmt.Sprintf("%.2f MiB (%.2f)", sa.Median, sa.Max), "", "")
	t.add("wrapper PSS each (shared executable pages divided among all): median (max)", fmt.Sprintf("%.2f MiB (%.2f)", sp.Median, sp.Max), "", "")
	t.add("wrapper CPU each over the window: median (max)", fmt.Sprintf("%.3f %% (%.3f %%)", sc.Median, sc.Max), "< 0.1 %", verdict(sc.Max < 0.1))
	t.add("TERM to all → all exited", r.stopAll.Round(time.Millisecond).String(), "", "")
	bad := fmt.Sprint(r.badExits)
	if r.firstBadExit != "" {
		bad += " (" + r.firstBadExit + ")"
	}
	t.add("wrappers not exiting 0 after TERM", bad, "0", verdict(r.badExits == 0))
	t.add("sessions / services left after all exited", fmt.Sprintf("%d / %d", r.leftSessions, r.leftServices), "0 / 0", verdict(r.leftSessions == 0 && r.leftServices == 0))
	t.write(w)
}
