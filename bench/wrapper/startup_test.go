package main

import (
	"io"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
)

// The two steps of sr-wrapper's start-up that run on every start before
// its child does, warm (in a running process, no page faults): what they
// cost is CPU work, not the cold start of a binary.
//
//	go test -run '^$' -bench . ./bench/wrapper

// BenchmarkParseWrapper is the command line parsing (kong) of a typical
// sr-wrapper invocation.
func BenchmarkParseWrapper(b *testing.B) {
	args := []string{"--id=web-1", "--interval=3", "--registry=http://127.0.0.1:8181/v1.0",
		"--username=alice", "--api-key=secret", "--log-format=json", "--", "/usr/sbin/nginx", "-g", "daemon off;"}
	for b.Loop() {
		if _, err := cli.ParseWrapper(args, buildinfo.Get(), func(string) string { return "" }, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignalsSubscribe is the subscription to the standard forwarded
// signals, which the wrapper makes before starting its child (os/signal's
// Notify: one round trip to the runtime's signal-mask thread per signal).
// The unsubscription, as costly, is not timed.
func BenchmarkSignalsSubscribe(b *testing.B) {
	for b.Loop() {
		sub := signals.Subscribe()
		b.StopTimer()
		sub.Stop()
		b.StartTimer()
	}
}

// BenchmarkSignalsSubscribeRealtime is the rest, made after the child has
// started.
func BenchmarkSignalsSubscribeRealtime(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		sub := signals.Subscribe()
		b.StartTimer()
		sub.AddRealtime()
		b.StopTimer()
		sub.Stop()
		b.StartTimer()
	}
}
