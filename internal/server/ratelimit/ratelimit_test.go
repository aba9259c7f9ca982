package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Limit
		err  string // a part of the error; "" when it parses
	}{
		{"500000/24h", Default, ""},
		{"20/1h", Limit{20, time.Hour}, ""},
		{"1/1s", Limit{1, time.Second}, ""},
		{"5/1.5s", Limit{5, 1500 * time.Millisecond}, ""},
		{"7/1h30m", Limit{7, 90 * time.Minute}, ""},
		{"9223372036854775807/8784h", Limit{1<<63 - 1, MaxWindow}, ""},
		{"", Limit{}, "no '/'"},
		{"500000", Limit{}, "no '/'"},
		{"/24h", Limit{}, "not a positive integer"},
		{"0/24h", Limit{}, "must be positive"},
		{"-5/24h", Limit{}, "not a positive integer"},
		{"+5/24h", Limit{}, "not a positive integer"},
		{" 5/24h", Limit{}, "not a positive integer"},
		{"5 /24h", Limit{}, "not a positive integer"},
		{"5_000/24h", Limit{}, "not a positive integer"},
		{"1e3/24h", Limit{}, "not a positive integer"},
		{"9223372036854775808/24h", Limit{}, "out of range"},
		{"5/", Limit{}, "not a duration"},
		{"5/24", Limit{}, "not a duration"},
		{"5/ 24h", Limit{}, "not a duration"},
		{"5/24h ", Limit{}, "not a duration"},
		{"5/-24h", Limit{}, "not a duration"},
		{"5/+24h", Limit{}, "not a duration"},
		{"5/day", Limit{}, "not a duration"},
		{"5/1h/2", Limit{}, "not a duration"},
		{"5/0s", Limit{}, "shorter than 1s"},
		{"5/999ms", Limit{}, "shorter than 1s"},
		{"5/8785h", Limit{}, "longer than"},
		{"5/1.0001s", Limit{}, "whole milliseconds"},
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.err != "" && err == nil:
			t.Errorf("Parse(%q) = %+v, want an error", tc.in, got)
		case tc.err != "" && (!strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "want N/DURATION")):
			t.Errorf("Parse(%q): %q, want it to say %q and the form", tc.in, err, tc.err)
		}
	}
}

func TestStringAndFormatWindow(t *testing.T) {
	tests := []struct {
		l      Limit
		str    string
		window string
	}{
		{Default, "500000/24h", "24.0 hours"},
		{Limit{20, time.Hour}, "20/1h", "1.0 hours"},
		{Limit{20, 90 * time.Minute}, "20/1h30m", "1.5 hours"},
		{Limit{20, 61 * time.Minute}, "20/1h1m", "61.0 minutes"},
		{Limit{20, 30 * time.Minute}, "20/30m", "30.0 minutes"},
		{Limit{20, time.Minute + 6*time.Second}, "20/1m6s", "1.1 minutes"},
		{Limit{20, 2 * time.Second}, "20/2s", "2.0 seconds"},
		{Limit{20, 1500 * time.Millisecond}, "20/1.5s", "1.5 seconds"},
		{Limit{20, time.Hour + time.Second}, "20/1h0m1s", "3601.0 seconds"},
		{Limit{20, 1234 * time.Millisecond}, "20/1.234s", "1.234 seconds"},
	}
	for _, tc := range tests {
		if got := tc.l.String(); got != tc.str {
			t.Errorf("%+v.String() = %q, want %q", tc.l, got, tc.str)
		}
		if back, err := Parse(tc.l.String()); err != nil || back != tc.l {
			t.Errorf("Parse(%q) = %+v, %v: want %+v", tc.l.String(), back, err, tc.l)
		}
		if got := FormatWindow(tc.l.Window); got != tc.window {
			t.Errorf("FormatWindow(%s) = %q, want %q", tc.l.Window, got, tc.window)
		}
	}
}

// FuzzParse checks that whatever Parse accepts is a valid limit that
// prints back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"500000/24h", "20/1h", "5/1.5s", "0/1h", "1/0.999s", "-1/1h", "1/-1h", "9223372036854775807/8784h", "1/1h1m1s1ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want N/DURATION") {
				t.Fatalf("Parse(%q): error %q does not give the form", s, err)
			}
			return
		}
		if err := l.Valid(); err != nil {
			t.Fatalf("Parse(%q) = %+v, not valid: %v", s, l, err)
		}
		back, err := Parse(l.String())
		if err != nil || back != l {
			t.Fatalf("Parse(%q) = %+v, whose String %q parses as %+v, %v", s, l, l.String(), back, err)
		}
		_ = FormatWindow(l.Window)
	})
}

func TestWindowStart(t *testing.T) {
	day := 24 * time.Hour
	at := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	if got, want := WindowStart(at, day), time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("day window of %s starts %s, want %s", at, got, want)
	}
	if got := WindowStart(time.UnixMilli(-1), time.Second); got.UnixMilli() != -1000 {
		t.Errorf("window of -1 ms starts at %d ms, want -1000", got.UnixMilli())
	}
}

// sharedCounts is a store's side of ShareRequests for tests: each
// frontend's count per tenant and window.
type sharedCounts struct {
	mu   sync.Mutex
	m    map[time.Time]map[string]map[int]int64 // window -> tenant -> frontend -> count
	fail bool
}

func (s *sharedCounts) share(frontend int) ShareFunc {
	return func(_ context.Context, start time.Time, _ time.Duration, counts map[string]int64) (map[string]int64, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail {
			return nil, errors.New("store down")
		}
		if s.m == nil {
			s.m = map[time.Time]map[string]map[int]int64{}
		}
		if s.m[start] == nil {
			s.m[start] = map[string]map[int]int64{}
		}
		totals := map[string]int64{}
		for t, n := range counts {
			if s.m[start][t] == nil {
				s.m[start][t] = map[int]int64{}
			}
			s.m[start][t][frontend] = n
			for _, v := range s.m[start][t] {
				totals[t] += v
			}
		}
		return totals, nil
	}
}

// takeUntilRefused takes requests of tenant until refused (at most max)
// and returns how many were allowed.
func takeUntilRefused(c *Counter, tenant string, max int) int {
	for i := range max {
		if ok, _ := c.Take(tenant); !ok {
			return i
		}
	}
	return max
}

func TestCounterOneProcessIsExactAndRollsOver(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		l := Limit{Requests: 5, Window: time.Minute}
		// Start just after a window began, as synctest's clock does not.
		time.Sleep(time.Until(WindowStart(time.Now(), l.Window).Add(l.Window)))
		c := NewCounter(l, nil)
		var sc sharedCounts
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx, time.Second, sc.share(0), func(err error) { t.Error(err) }) }()

		if n := takeUntilRefused(c, "t1", 100); n != 5 {
			t.Fatalf("allowed %d requests, want 5", n)
		}
		ok, reset := c.Take("t1")
		if ok || !reset.Equal(WindowStart(time.Now(), l.Window).Add(l.Window)) {
			t.Fatalf("Take at the limit = %v, reset %s: want false and the window's end", ok, reset)
		}
		c.Count("t1") // exempt: counted, never refused
		if u := c.Used("t1"); u != 6 {
			t.Fatalf("used %d, want 6", u)
		}
		if n := takeUntilRefused(c, "t2", 100); n != 5 {
			t.Fatalf("another tenant: allowed %d, want 5", n)
		}
		time.Sleep(30 * time.Second) // flushes in between change nothing
		if u := c.Used("t1"); u != 6 {
			t.Fatalf("used %d after flushes, want 6", u)
		}
		time.Sleep(30 * time.Second) // the next window
		if u := c.Used("t1"); u != 0 {
			t.Fatalf("used %d in the next window, want 0", u)
		}
		if n := takeUntilRefused(c, "t1", 100); n != 5 {
			t.Fatalf("next window: allowed %d, want 5", n)
		}
		cancel()
		<-done
	})
}

func TestCountersShareWithinOneFlushOfSlack(t *testing.T) {
	testsupport.Synctest(t, func(t *testing.T) {
		l := Limit{Requests: 20, Window: time.Hour}
		time.Sleep(time.Until(WindowStart(time.Now(), l.Window).Add(l.Window)))
		var sc sharedCounts
		a, b := NewCounter(l, nil), NewCounter(l, nil)
		ctx := t.Context()
		for i := range 10 {
			if ok, _ := a.Take("t"); !ok {
				t.Fatalf("a refused request %d", i)
			}
			if ok, _ := b.Take("t"); !ok {
				t.Fatalf("b refused request %d", i)
			}
		}
		// Before a flush each frontend knows only its own 10.
		if ua, ub := a.Used("t"), b.Used("t"); ua != 10 || ub != 10 {
			t.Fatalf("used before flush %d, %d; want 10, 10", ua, ub)
		}
		flush := func(c *Counter, i int) {
			t.Helper()
			if err := c.Flush(ctx, sc.share(i)); err != nil {
				t.Fatal(err)
			}
		}
		flush(a, 0)
		flush(b, 1)
		// b flushed last and knows the total; a, without requests since its
		// flush, does not yet: that is the slack.
		if ua, ub := a.Used("t"), b.Used("t"); ua != 10 || ub != 20 {
			t.Fatalf("used after one flush each %d, %d; want 10, 20", ua, ub)
		}
		if ok, _ := b.Take("t"); ok {
			t.Fatal("b allowed a request past the shared limit")
		}
		if ok, _ := a.Take("t"); !ok {
			t.Fatal("a refused a request before its flush told it the total")
		}
		flush(a, 0)
		if ua := a.Used("t"); ua != 21 {
			t.Fatalf("a's used after its flush %d, want 21", ua)
		}
		if ok, _ := a.Take("t"); ok {
			t.Fatal("a allowed a request past the shared limit after its flush")
		}

		// A failed flush loses nothing: the next one shares the counts.
		c := NewCounter(l, nil)
		c.Count("u")
		sc.fail = true
		if err := c.Flush(ctx, sc.share(2)); err == nil {
			t.Fatal("flush to a failing store succeeded")
		}
		sc.fail = false
		c.Count("u")
		if err := c.Flush(ctx, sc.share(2)); err != nil {
			t.Fatal(err)
		}
		if got := sc.m[WindowStart(time.Now(), l.Window)]["u"][2]; got != 2 {
			t.Fatalf("shared count %d after a failed flush and a good one, want 2", got)
		}
	})
}
