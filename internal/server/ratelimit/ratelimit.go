// Package ratelimit is sr-registry's per-tenant request rate limit: the
// form of --rate-limit (N/DURATION: Parse, Limit), how GET /limits names
// the window ("24.0 hours": FormatWindow), and the Counter that counts
// each tenant's requests in the current window and shares its counts with
// the other frontends of a cluster through the store (Counter.Flush).
//
// Windows are fixed and aligned on multiples of their length since the
// Unix epoch (a 24h window is a UTC day), so that every frontend agrees on
// the current window without talking to the others; the count starts
// again from zero when a window begins.
//
// It is not a traffic shaper or a defence against floods: it is the
// account's allowance, as the hosted service had one. A frontend admits
// requests on its own count plus the cluster's total as of its last
// flush, so a cluster may admit a little more than the limit (see
// Counter).
package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bounds of a window.
const (
	MinWindow = time.Second
	MaxWindow = 366 * 24 * time.Hour
)

// Form is how --rate-limit is written, for error messages.
const Form = "N/DURATION (N a positive integer, DURATION a Go duration from 1s to 8784h in whole milliseconds, e.g. 500000/24h)"

// Limit is at most Requests requests per tenant in each Window.
type Limit struct {
	Requests int64
	Window   time.Duration
}

// Default is the hosted service's limit: 500,000 requests a day.
var Default = Limit{Requests: 500000, Window: 24 * time.Hour}

// Parse reads N/DURATION strictly: N is decimal digits only (no sign,
// spaces or separators) and positive; DURATION is a time.ParseDuration
// duration, of whole milliseconds, from MinWindow to MaxWindow.
func Parse(s string) (Limit, error) {
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, bad(s, "no '/'")
	}
	if n == "" || strings.TrimLeft(n, "0123456789") != "" {
		return Limit{}, bad(s, fmt.Sprintf("N %q is not a positive integer", n))
	}
	reqs, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return Limit{}, bad(s, fmt.Sprintf("N %q is out of range", n))
	}
	if reqs <= 0 {
		return Limit{}, bad(s, "N must be positive")
	}
	// ParseDuration takes a sign: a window has none.
	if d == "" || d[0] < '0' || d[0] > '9' {
		return Limit{}, bad(s, fmt.Sprintf("DURATION %q is not a duration", d))
	}
	win, err := time.ParseDuration(d)
	if err != nil {
		return Limit{}, bad(s, fmt.Sprintf("DURATION %q is not a duration", d))
	}
	switch {
	case win < MinWindow:
		return Limit{}, bad(s, fmt.Sprintf("DURATION %s is shorter than %s", win, MinWindow))
	case win > MaxWindow:
		return Limit{}, bad(s, fmt.Sprintf("DURATION %s is longer than %s", win, MaxWindow))
	case win%time.Millisecond != 0:
		return Limit{}, bad(s, fmt.Sprintf("DURATION %s is not whole milliseconds", win))
	}
	return Limit{Requests: reqs, Window: win}, nil
}

func bad(s, why string) error {
	return fmt.Errorf("%q: %s: want %s", s, why, Form)
}

// Valid returns nil when l could have come from Parse.
func (l Limit) Valid() error {
	switch {
	case l.Requests <= 0:
		return errors.New("the rate limit's request count must be positive")
	case l.Window < MinWindow || l.Window > MaxWindow || l.Window%time.Millisecond != 0:
		return fmt.Errorf("the rate limit's window %s must be whole milliseconds from %s to %s", l.Window, MinWindow, MaxWindow)
	}
	return nil
}

// String is l in the form Parse reads, with the duration's zero units
// left out: "500000/24h", "20/1h30m", "5/1.5s".
func (l Limit) String() string {
	d := l.Window.String()
	for _, zero := range []string{"0s", "0m"} {
		if strings.HasSuffix(d, "m"+zero) || strings.HasSuffix(d, "h"+zero) {
			d = strings.TrimSuffix(d, zero)
		}
	}
	return strconv.FormatInt(l.Requests, 10) + "/" + d
}

// FormatWindow names a window as the hosted service's GET /limits did,
// "24.0 hours": the largest of hours, minutes and seconds in which it is
// exact to one decimal (seconds with as many decimals as it needs).
func FormatWindow(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "hours"}, {time.Minute, "minutes"}} {
		if d >= u.d && (d*10)%u.d == 0 {
			return strconv.FormatFloat(float64(d)/float64(u.d), 'f', 1, 64) + " " + u.name
		}
	}
	s := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s + " seconds"
}

// WindowStart is the start of the window of length d that holds t.
func WindowStart(t time.Time, d time.Duration) time.Time {
	ms := t.UnixMilli()
	dms := d.Milliseconds()
	start := ms - ms%dms
	if ms < 0 && ms%dms != 0 {
		start -= dms
	}
	return time.UnixMilli(start)
}
