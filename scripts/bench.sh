#!/usr/bin/env bash
# The project's benchmarks (make bench), each measured against its baseline
# in the same run; the figures in docs/BENCHMARKS.md come from here.
#
#   scripts/bench.sh                  both suites, about 5 minutes
#   scripts/bench.sh wrapper          only the wrapper's (bench/wrapper)
#   scripts/bench.sh registry         only sr-registry's load (bench/registryload)
#   BENCH_QUICK=1 scripts/bench.sh    every measurement briefly: a smoke test
#   BENCH_OUT=report.md scripts/bench.sh   also keep the Markdown report
#
# Loopback only; every measurement is bounded in count and time. The
# wrapper suite compares with tini: when tini is missing it is installed
# if this runs as root (Debian/Ubuntu), otherwise its rows are skipped
# with a message. Progress goes to stderr, the report to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(wrapper registry)
for s in "${suites[@]}"; do
	case $s in
	wrapper | registry) ;;
	*) echo "bench: unknown suite '$s' (known: wrapper, registry)" >&2; exit 2 ;;
	esac
done
quick=${BENCH_QUICK:-0}
out=${BENCH_OUT:-/dev/null}

ensure_tini() {
	if command -v tini >/dev/null 2>&1; then return 0; fi
	if [ "$(id -u)" != 0 ]; then
		echo "bench: tini is not installed and this is not root: the tini baseline rows are skipped (apt-get install tini to get them)" >&2
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "bench: tini is not installed and there is no apt-get: the tini baseline rows are skipped" >&2
		return 0
	fi
	echo "bench: installing tini (the start-latency and signal baseline)" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get install -y -qq --no-install-recommends tini >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends tini >/dev/null; }; }; then
		echo "bench: could not install tini: the tini baseline rows are skipped" >&2
	fi
}

run_wrapper() {
	ensure_tini
	local args=() n=200x
	[ "$quick" = 1 ] && args+=(-quick) && n=20x
	go run ./bench/wrapper "${args[@]}"
	echo "#### Two start-up steps of sr-wrapper, warm (in-process, go test -bench)"
	echo
	echo '```'
	go test -count=1 -run '^$' -bench . -benchtime "$n" ./bench/wrapper | grep '^Benchmark'
	echo '```'
	echo
}

run_registry() {
	local args=()
	[ "$quick" = 1 ] && args+=(-sessions 1000 -duration 2s -idle-conns 200)
	echo "## sr-registry load (bench/registryload)"
	echo
	echo '```'
	go run ./bench/registryload "${args[@]}"
	echo '```'
	echo
}

{
	for s in "${suites[@]}"; do
		echo "bench: suite $s ..." >&2
		"run_$s"
	done
} | tee "$out"
