package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ShareFunc records this process's counts of requests in the window that
// starts at start (each tenant's total here since the window began, not
// a delta, so that a failed share is simply redone by the next one) and
// returns each tenant's total over every process that shares them. It is
// store.Store's ShareRequests.
type ShareFunc func(ctx context.Context, start time.Time, length time.Duration, counts map[string]int64) (totals map[string]int64, err error)

// Counter counts each tenant's requests in the current window and decides
// whether one more is allowed. Safe for concurrent use.
//
// Across frontends: a frontend admits a request when its own count since
// its last flush plus the cluster's total as of that flush is below the
// limit. Flush (every second, run by Run) writes the frontend's count and
// reads the total back. So the cluster may admit, past the limit, at most
// what every frontend admits between two of its flushes: about
// frontends × one second of the tenant's traffic. With one process the
// count is exact.
type Counter struct {
	limit Limit
	now   func() time.Time

	mu      sync.Mutex
	tenants map[string]*count

	flushMu sync.Mutex // one Flush at a time
}

// count is one tenant's in its current window.
type count struct {
	window  int64 // start of the window, unix ms
	local   int64 // this process's requests in the window
	flushed int64 // local as of the last successful share
	shared  int64 // every process's total as that share returned it (flushed included)
}

// NewCounter counts against l (which must be Valid) on the clock now
// (nil: time.Now).
func NewCounter(l Limit, now func() time.Time) *Counter {
	if now == nil {
		now = time.Now
	}
	return &Counter{limit: l, now: now, tenants: map[string]*count{}}
}

// Limit is the limit counted against.
func (c *Counter) Limit() Limit { return c.limit }

// of returns the tenant's count in the window of now, started afresh when
// the window has moved on. c.mu must be held.
func (c *Counter) of(tenant string, now time.Time) *count {
	w := WindowStart(now, c.limit.Window).UnixMilli()
	n := c.tenants[tenant]
	if n == nil {
		n = &count{window: w}
		c.tenants[tenant] = n
	} else if n.window != w {
		*n = count{window: w}
	}
	return n
}

func (n *count) used() int64 { return n.shared + n.local - n.flushed }

// Take counts one request of the tenant and returns true, unless the
// tenant's count in this window has reached the limit: then it counts
// nothing and returns false with the end of the window (when requests are
// allowed again).
func (c *Counter) Take(tenant string) (ok bool, resetAt time.Time) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.of(tenant, now)
	if n.used() >= c.limit.Requests {
		return false, time.UnixMilli(n.window).Add(c.limit.Window)
	}
	n.local++
	return true, time.Time{}
}

// Count counts one request of the tenant that is allowed whatever the
// count (a deregistration, a look at the limits).
func (c *Counter) Count(tenant string) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.of(tenant, now).local++
}

// Used is the tenant's count in the current window: the cluster's total
// as of the last flush plus what this process counted since.
func (c *Counter) Used(tenant string) int64 {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.of(tenant, now).used()
}

// Flush shares the counts of the current window that changed since the
// last flush (share) and takes the totals it returns as the cluster's.
// Tenants whose window has passed are forgotten. On error nothing is
// lost: the next flush shares the counts again.
func (c *Counter) Flush(ctx context.Context, share ShareFunc) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	now := c.now()
	w := WindowStart(now, c.limit.Window).UnixMilli()
	counts := map[string]int64{}
	c.mu.Lock()
	for t, n := range c.tenants {
		switch {
		case n.window != w:
			delete(c.tenants, t)
		case n.local != n.flushed:
			counts[t] = n.local
		}
	}
	c.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	totals, err := share(ctx, time.UnixMilli(w), c.limit.Window, counts)
	if err != nil {
		return fmt.Errorf("share the request counts of %d tenants: %w", len(counts), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, local := range counts {
		n := c.tenants[t]
		if n == nil || n.window != w {
			continue // the window moved on meanwhile
		}
		n.flushed = local
		n.shared = max(totals[t], local)
	}
	return nil
}

// Run flushes every period until ctx is done, giving each failure to
// onErr.
func (c *Counter) Run(ctx context.Context, period time.Duration, share ShareFunc, onErr func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.Flush(ctx, share); err != nil && ctx.Err() == nil {
			onErr(err)
		}
	}
}
