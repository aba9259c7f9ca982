package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// deregResult is measurement 3.
type deregResult struct {
	// wrapper: from the probe's exit stamp to the first 404 seen.
	wrapper []int64
	// deleteRTT: the DELETE /sessions/{id} round trip the wrapper makes,
	// made by the benchmark itself.
	deleteRTT []int64
	// deleteGone: from just before that DELETE to the first 404 seen,
	// the same observation as wrapper's with the harness as the client.
	deleteGone []int64
	// poll is the pause between two GETs while watching.
	poll time.Duration
}

const deregTenant = "dereg"

// measureDereg n times starts sr-wrapper around a waiting probe, waits
// for the service, lets the wrapper settle into heartbeating, ends the
// probe, and watches GET /services/{id} until it is 404. Between wrapper
// runs it measures the baseline: a session and service created by the
// benchmark and deleted with the call the wrapper makes.
func measureDereg(ctx context.Context, h *harness, n int, poll time.Duration) (*deregResult, error) {
	c, err := h.reg.client(deregTenant)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res := &deregResult{poll: poll}
	const warmup = 1
	for i := range warmup + n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := fmt.Sprintf("dereg-%d", i)
		lat, err := deregWrapperOnce(ctx, h, c, id, poll)
		if err != nil {
			return nil, fmt.Errorf("deregistration latency, run %d: %w", i, err)
		}
		rtt, gone, err := deregDirectOnce(ctx, c, id+"-direct", poll)
		if err != nil {
			return nil, fmt.Errorf("deregistration baseline, run %d: %w", i, err)
		}
		if i >= warmup {
			res.wrapper = append(res.wrapper, lat)
			res.deleteRTT = append(res.deleteRTT, rtt)
			res.deleteGone = append(res.deleteGone, gone)
		}
	}
	return res, nil
}

// settle is how long a registered wrapper idles before its child exits:
// past the registration, between two heartbeats (every ~1.4 s at
// --interval 3), as in steady state.
const settle = 300 * time.Millisecond

func deregWrapperOnce(ctx context.Context, h *harness, c *srapi.Client, id string, poll time.Duration) (int64, error) {
	p, err := startProc(wrapperArgv(h.bins.wrapper, id, h.reg.url, deregTenant, h.bins.probe, "-wait"),
		procOptions{Stdin: true, Log: filepath.Join(h.dir, "dereg.log")})
	if err != nil {
		return 0, err
	}
	defer func() { _ = p.wait(10 * time.Second) }()
	if _, err := p.expect("start", 10*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		return 0, err
	}
	if err := waitRegistered(ctx, c, id, 20*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		return 0, err
	}
	time.Sleep(settle)
	if _, err := p.stdin.WriteString("exit\n"); err != nil {
		_ = p.cmd.Process.Kill()
		return 0, fmt.Errorf("tell the probe to exit: %w", err)
	}
	gone, err := watchGone(ctx, c, id, poll)
	if err != nil {
		_ = p.cmd.Process.Kill()
		return 0, err
	}
	exited, _, err := p.stamp("exit", 0, 5*time.Second)
	if err != nil {
		return 0, err
	}
	if err := p.wait(10 * time.Second); err != nil {
		return 0, fmt.Errorf("sr-wrapper: %w", err)
	}
	return gone - exited, nil
}

func deregDirectOnce(ctx context.Context, c *srapi.Client, id string, poll time.Duration) (rtt, gone int64, err error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sid, _, err := c.CreateSession(cctx, api.CreateSessionRequest{HeartbeatTimeout: 3})
	if err != nil {
		return 0, 0, err
	}
	if _, err := c.CreateService(cctx, api.CreateServiceRequest{ID: id, SessionID: sid}); err != nil {
		return 0, 0, err
	}
	time.Sleep(settle)
	at := mono()
	if err := c.DeleteSession(cctx, sid); err != nil {
		return 0, 0, err
	}
	rtt = mono() - at
	g, err := watchGone(ctx, c, id, poll)
	if err != nil {
		return 0, 0, err
	}
	return rtt, g - at, nil
}

// watchGone polls GET /services/{id} every poll until it is 404 and
// returns the moment that answer arrived; at most 10 s.
func watchGone(ctx context.Context, c *srapi.Client, id string, poll time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		_, err := c.GetService(ctx, id)
		at := mono()
		switch {
		case srapi.IsNotFound(err):
			return at, nil
		case err != nil:
			return 0, fmt.Errorf("watch service %q: %w", id, err)
		}
		if poll > 0 {
			time.Sleep(poll)
		}
	}
}

func (r *deregResult) write(w io.Writer) {
	fmt.Fprintln(w, "### 3. Deregistration latency")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Child exit → service gone: from the probe's stamp just before it exits to the arrival of the first 404 to GET /services/{id}, polled every %s by the benchmark (so each figure is an upper bound, late by at most one poll and one GET). The wrapper was registered and idle for %s before the child exited. Baseline, alternating with the wrapper runs: the DELETE /sessions/{id} that the wrapper sends, sent by the benchmark on a warm connection.\n", r.poll, settle)
	fmt.Fprintln(w)
	t := newTable("row", "median ms", "p10 – p90 ms", "min – max ms", "n", "budget", "verdict")
	t.add(append(append([]string{"baseline: DELETE /sessions/{id} round trip"}, spread(summarize(millis(r.deleteRTT)), 3)...), "", "")...)
	t.add(append(append([]string{"baseline: DELETE sent → 404 seen"}, spread(summarize(millis(r.deleteGone)), 3)...), "", "")...)
	s := summarize(millis(r.wrapper))
	t.add(append(append([]string{"sr-wrapper: child exit → 404 seen"}, spread(s, 3)...), "every run < 100 ms", verdict(s.Max < 100))...)
	t.write(w)
}
