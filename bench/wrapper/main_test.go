package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSummarizeOrderStatistics(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", []float64{7}, summary{N: 1, Min: 7, P10: 7, Median: 7, P90: 7, Max: 7}},
		{"unsorted ten", []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, summary{N: 10, Min: 1, P10: 1, Median: 5, P90: 9, Max: 10}},
		{"odd count", []float64{3, 1, 2}, summary{N: 3, Min: 1, P10: 1, Median: 2, P90: 3, Max: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestProcReadersOnThisProcess(t *testing.T) {
	before, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the coarse figure has moved by 30 ms (a busy machine
	// stretches the wall time, not the CPU time), at most 10 s.
	var after cpuSample
	for deadline := time.Now().Add(10 * time.Second); ; {
		if after, err = sampleCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if after.ticks-before.ticks >= 30*time.Millisecond || time.Now().After(deadline) {
			break
		}
	}
	coarse := after.ticks - before.ticks
	if coarse < 30*time.Millisecond {
		t.Fatalf("utime+stime moved by %s in 10 s of spinning", coarse)
	}
	// The precise figure agrees with the coarse one within its 10 ms
	// steps (and whatever ran between the two reads).
	if d := cpuBetween(before, after); d < coarse-20*time.Millisecond || d > coarse+20*time.Millisecond {
		t.Errorf("cpuBetween = %s, utime+stime moved by %s", d, coarse)
	}
	m, err := readMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.rss <= 0 || m.hwm < m.rss || m.anon <= 0 || m.file <= 0 || m.anon+m.file > m.rss+(1<<20) {
		t.Errorf("readMemory = %+v, want 0 < rss <= hwm and anon+file ≈ rss", m)
	}
}

func TestOptionsBounds(t *testing.T) {
	tests := []struct {
		name string
		edit func(*options)
		ok   bool
	}{
		{"full defaults", func(*options) {}, true},
		{"quick defaults", func(o *options) { o.quick = true }, true},
		{"unknown measurement", func(o *options) { o.only = []string{"start", "bogus"} }, false},
		{"too many wrappers", func(o *options) { o.scaleProcs = 5000 }, false},
		{"window too long", func(o *options) { o.idleWindow = time.Hour }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o options
			tt.edit(&o)
			o = o.withDefaults()
			if err := o.validate(); (err == nil) != tt.ok {
				t.Errorf("validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestQuickBenchmark runs every measurement in quick mode and checks the
// figures against thresholds far looser than the budgets: it proves the
// benchmark works and catches gross regressions, without being flaky on a
// busy machine. It takes about half a minute, so it runs only when asked:
//
//	BENCH_SMOKE=1 go test -run TestQuickBenchmark -v ./bench/wrapper
func TestQuickBenchmark(t *testing.T) {
	if os.Getenv("BENCH_SMOKE") != "1" {
		t.Skip("set BENCH_SMOKE=1 to run the benchmark's quick mode (about 30 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := options{quick: true, progress: testWriter{t}}.withDefaults()
	var out strings.Builder
	res, err := measure(ctx, o, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}

	direct := summarize(millis(res.start.rows[0].samples)).Median
	if direct > 50 {
		t.Errorf("direct start takes %.1f ms (median); is the machine overloaded?", direct)
	}
	for _, name := range []string{rowWrapperUp, rowWrapperDown} {
		if over := res.start.overhead[name]; over > 100 {
			t.Errorf("%s: %.1f ms over direct (median), want well under 100", name, over)
		}
	}
	for _, row := range res.signal.rows {
		if m := summarize(millis(row.samples)).Median; m > 20 {
			t.Errorf("signal latency %s: median %.2f ms, want well under 20", row.name, m)
		}
	}
	if m := summarize(millis(res.dereg.wrapper)).Max; m > 1000 {
		t.Errorf("deregistration took up to %.0f ms, want well under 1 s", m)
	}
	w := res.idle.row(rowIdleWrapper)
	for i, m := range w.mem {
		if m.hwm > 64<<20 {
			t.Errorf("idle wrapper %d: peak RSS %.1f MiB, want well under 64", i, mib(m.hwm))
		}
	}
	for i, c := range w.cpu {
		if pct := c.Seconds() / res.idle.window.Seconds() * 100; pct > 5 {
			t.Errorf("idle wrapper %d: %.2f %% CPU while idle, want well under 5 %%", i, pct)
		}
	}
	if res.scale.lost() {
		t.Errorf("scale: heartbeats lost: %+v", res.scale)
	}
	if !res.scale.clean() {
		t.Errorf("scale: not clean after stopping: %d sessions, %d services left, %d bad exits (%s)",
			res.scale.leftSessions, res.scale.leftServices, res.scale.badExits, res.scale.firstBadExit)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
