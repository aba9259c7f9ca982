package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/wrapper"
)

// TestIdleProfile runs sr-wrapper's Run in this process, around a waiting
// probe, against the sr-registry binary in its own process, for
// BENCH_IDLE_SECONDS (default 60) with a CPU profile sampled at 1 kHz, so
// that the few tens of milliseconds the wrapper spends per minute while
// idle show where they go. It writes the profile to BENCH_PROFILE:
//
//	BENCH_PROFILE=/tmp/idle.pprof go test -run TestIdleProfile -v ./bench/wrapper
//	go tool pprof -top /tmp/idle.pprof
//
// The test process holds nothing else that runs: the registry, and the
// probe, are other processes.
func TestIdleProfile(t *testing.T) {
	out := os.Getenv("BENCH_PROFILE")
	if out == "" {
		t.Skip("set BENCH_PROFILE=FILE to profile the idle wrapper in-process (a minute)")
	}
	secs := 60
	if s := os.Getenv("BENCH_IDLE_SECONDS"); s != "" {
		var err error
		if secs, err = strconv.Atoi(s); err != nil || secs < 1 || secs > 600 {
			t.Fatalf("BENCH_IDLE_SECONDS=%q: want 1..600", s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bins, err := build(ctx, dir, "cmd/sr-registry", "bench/wrapper/probe")
	if err != nil {
		t.Fatal(err)
	}
	reg := registrytest.StartProcess(t, bins[0])

	cfg, err := cli.ParseWrapper([]string{"--id=idle-profile", "--interval=3", "--registry=" + reg.URL,
		"--username=idle", "--api-key=k", "--log-format=json", "--", bins[1], "-wait"},
		buildinfo.Get(), func(string) string { return "" }, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The probe waits for a line on its stdin: give it a pipe that stays
	// open, as the wrapper hands its own stdin to the child.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	saved := os.Stdin
	os.Stdin = stdinR
	defer func() { os.Stdin = saved }()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() { done <- wrapper.Run(runCtx, cfg, zap.NewNop(), wrapper.Backends{}) }()

	// Start-up is not what this is about: wait for the registration.
	c, err := srapiClient(reg.URL, "idle")
	if err != nil {
		t.Fatal(err)
	}
	if err := waitRegistered(ctx, c, "idle-profile", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)

	f, err := os.Create(filepath.Clean(out))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Before StartCPUProfile, which then keeps this rate (and says so).
	runtime.SetCPUProfileRate(1000)
	before := mustCPU(t)
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(secs) * time.Second)
	pprof.StopCPUProfile()
	used := mustCPU(t) - before
	t.Logf("this process used %s of CPU in %d s (%.3f %%), profiler included; profile in %s",
		used, secs, used.Seconds()/float64(secs)*100, out)

	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("wrapper.Run = %d, want 0 (the probe exits 0 on TERM)", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wrapper.Run did not return after its context ended")
	}
}

func mustCPU(t *testing.T) time.Duration {
	t.Helper()
	s, err := cpuTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
