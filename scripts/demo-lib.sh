# Sourced by the demo scripts (demo.sh, demo-cluster.sh): a work directory
# that goes, with every background job, when the script exits; `say` for
# the headings; `wait_for` to wait on events rather than sleep.
# Set DEMO before sourcing (it names the script in errors); a script that
# leaves processes outside its jobs sets DEMO_CLEANUP to a command that
# ends them.
BIN=$PWD/bin
WORK=$(mktemp -d)
cleanup() {
	# Each background job is its own process group (set -m): end all of it.
	for pgid in $(jobs -p); do kill -- "-$pgid" 2>/dev/null || true; done
	if [ -n "${DEMO_CLEANUP:-}" ]; then eval "$DEMO_CLEANUP"; fi
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for STRING COMMAND...: wait until COMMAND's output contains STRING,
# giving up after 20 s.
wait_for() {
	local what=$1; shift
	for _ in $(seq 200); do
		if "$@" 2>/dev/null | grep -q -- "$what"; then return 0; fi
		sleep 0.1
	done
	echo "$DEMO: timed out waiting for '$what' from: $*" >&2
	return 1
}
