#!/usr/bin/env bash
# The whole system on this machine: an sr-registry, a real program started
# under sr-wrapper, the service joining the registry, and leaving it when
# the program stops or crashes. Needs the binaries of `make build` in bin/.
set -euo pipefail
set -m
cd "$(dirname "$0")/.."
DEMO=demo
DEMO_CLEANUP='[ -z "${ORPHAN_CHILD:-}" ] || kill $ORPHAN_CHILD 2>/dev/null || true'
. scripts/demo-lib.sh

say "1. Start sr-registry (dev mode: any username works) on a free loopback port"
"$BIN/sr-registry" --dev --listen 127.0.0.1:0 --data-dir "$WORK/registry" --log-format json 2>"$WORK/registry.log" &
wait_for '"listening"' cat "$WORK/registry.log"
URL=$(grep '"listening"' "$WORK/registry.log" | sed 's/.*"url":"\([^"]*\)".*/\1/')
echo "registry at $URL"
printf '\n\033[1m   Dashboard: %s/ui/\033[0m   (sign in as demo, any API key)\n' "${URL%/v1.0}"

export SR_REGISTRY_URL=$URL SR_USERNAME=demo SR_API_KEY=demo-key

# A person at a terminal gets a moment to open the dashboard first.
if [ -t 0 ]; then
	printf '   Open it to watch; the demo goes on in 10 s (Enter: at once)\n'
	read -r -t 10 _ || true
fi

say "2. Follow the registry's events feed (srctl events follow)"
"$BIN/srctl" events follow 2>"$WORK/follow.err" | tee "$WORK/events" | sed -u 's/^/   [events] /' &
# The header comes after its first poll: from then on it reports every new event.
wait_for TYPE cat "$WORK/events"

say "3. Run a real program under sr-wrapper: a second sr-registry, as service 'demo-web'"
"$BIN/sr-wrapper" --id=demo-web --tags=demo,http --metadata=owner=demo,env=local \
	--interval=5 --log-format=console -- \
	"$BIN/sr-registry" --dev --listen 127.0.0.1:0 --data-dir "$WORK/child" --log-format console \
	> >(sed -u 's/^/   [wrapper] /') 2>&1 &
WRAPPER_PID=$!
wait_for demo-web "$BIN/srctl" services list
wait_for service.join cat "$WORK/events"

say "4. The service is registered while the program runs (srctl services list)"
"$BIN/srctl" services list

say "5. Stop it the way systemd or docker would: SIGTERM to the wrapper"
kill -TERM "$WRAPPER_PID"
wait "$WRAPPER_PID" || true
"$BIN/srctl" services list

say "6. A program that crashes (exit 3): deregistered at once, and its exit code is the wrapper's"
set +e
"$BIN/sr-wrapper" --id=demo-crash --tags=demo --interval=5 --log-format=console -- \
	sh -c 'echo "   [child] working for a second, then failing"; sleep 1; exit 3' 2>&1 | sed -u 's/^/   [wrapper] /'
code=${PIPESTATUS[0]}
set -e
echo "sr-wrapper exited with $code (the child's own code)"
"$BIN/srctl" services list

wait_for demo-crash cat "$WORK/events"

say "7. If the wrapper itself dies (kill -9), nobody deregisters: the session times out (3 s) instead"
"$BIN/sr-wrapper" --id=demo-orphan --tags=demo --interval=3 --log-format=console -- sleep 30 2>/dev/null &
ORPHAN_WRAPPER=$!
wait_for demo-orphan "$BIN/srctl" services list
# The child's pid, from the kernel's list of the wrapper's children (any thread).
ORPHAN_CHILD=$(cat /proc/"$ORPHAN_WRAPPER"/task/*/children)
kill -9 "$ORPHAN_WRAPPER"
wait "$ORPHAN_WRAPPER" 2>/dev/null || true
kill $ORPHAN_CHILD # nobody else would stop it now
wait_for services.timeout cat "$WORK/events"
"$BIN/srctl" services list

say "Done: services join when their program starts, leave the moment it stops, and time out if the wrapper itself dies."
if [ -t 0 ]; then
	printf '   The registry and its dashboard (%s/ui/) stay up: press Enter to stop them.\n' "${URL%/v1.0}"
	read -r _ || true
fi
