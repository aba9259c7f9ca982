package registrytest

import (
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
)

// RateWindow returns a rate-limit window of about approx whose current
// window, aligned as the server aligns them (on multiples of its length
// since the epoch), has at least room left and has already run a second.
// A test that counts requests against a fixed window would otherwise see
// the count reset when it happens to run across a boundary (a one-hour
// window resets on the hour). The window is approx plus a whole number of
// tenths of approx's unit (hours, minutes or seconds, as
// ratelimit.FormatWindow names it), so it is named in that unit ("1.6
// hours" for about 90 minutes); tests compare against FormatWindow of what
// this returns.
func RateWindow(t testing.TB, approx, room time.Duration) time.Duration {
	t.Helper()
	if approx < time.Second || (approx*10)%time.Second != 0 || room >= approx/2 {
		t.Fatalf("RateWindow(%s, %s): approx must be tenths of seconds, a second or more, and room under half of it", approx, room)
	}
	step := time.Second / 10
	for _, unit := range []time.Duration{time.Hour, time.Minute} {
		if approx >= unit && (approx*10)%unit == 0 {
			step = unit / 10
			break
		}
	}
	now := time.Now()
	// A window's phase moves by about now/approx steps per step, which
	// is effectively random: one of the first few candidates has room.
	for k := range 100 {
		w := approx + time.Duration(k)*step
		start := ratelimit.WindowStart(now, w)
		if left := start.Add(w).Sub(now); left >= room && now.Sub(start) >= time.Second {
			return w
		}
	}
	t.Fatalf("no window of about %s has %s left at %s", approx, room, now)
	return 0
}
