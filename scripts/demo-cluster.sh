#!/usr/bin/env bash
# sr-registry as a cluster on this machine: a three-member etcd (Debian's
# etcd-server), three sr-registry frontends on it, a program under
# sr-wrapper given all three frontends; then the frontend in use is killed
# (kill -9) and the service stays registered, in the same session. Needs
# the binaries of `make build` in bin/ and the etcd binary (apt-get install
# etcd-server, or ETCD=/path/to/etcd).
set -euo pipefail
set -m
cd "$(dirname "$0")/.."
ETCD=${ETCD:-$(command -v etcd || true)}
if [ -z "$ETCD" ]; then
	echo "demo-cluster: no etcd binary: apt-get install etcd-server (or set ETCD=/path/to/etcd)" >&2
	exit 1
fi
DEMO=demo-cluster
. scripts/demo-lib.sh

# readyz prints a frontend's answer to GET /readyz (base URL http://host:port).
readyz() {
	local hp=${1#http://}
	exec 3<>"/dev/tcp/${hp%%:*}/${hp##*:}" || return 1
	printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$hp" >&3
	cat <&3
	exec 3<&-
}

# free_port prints a loopback port nothing listens on, from a random start.
free_port() {
	local p=$((20000 + RANDOM % 30000))
	while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
	echo $p
}

say "1. Start a three-member etcd cluster on loopback ($("$ETCD" --version | head -1))"
declare -a CLIENT PEER
for i in 0 1 2; do
	CLIENT[$i]=$(free_port)
	PEER[$i]=$(free_port)
	while [ "${PEER[$i]}" = "${CLIENT[$i]}" ]; do PEER[$i]=$(free_port); done
done
INITIAL="m0=http://127.0.0.1:${PEER[0]},m1=http://127.0.0.1:${PEER[1]},m2=http://127.0.0.1:${PEER[2]}"
for i in 0 1 2; do
	"$ETCD" --name "m$i" --data-dir "$WORK/etcd$i" \
		--listen-client-urls "http://127.0.0.1:${CLIENT[$i]}" --advertise-client-urls "http://127.0.0.1:${CLIENT[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${PEER[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PEER[$i]}" \
		--initial-cluster "$INITIAL" --initial-cluster-token demo-cluster --initial-cluster-state new \
		--logger zap --log-level error >"$WORK/etcd$i.log" 2>&1 &
done
STORE="etcd://127.0.0.1:${CLIENT[0]},127.0.0.1:${CLIENT[1]},127.0.0.1:${CLIENT[2]}/demo"
echo "etcd members at 127.0.0.1:${CLIENT[0]}, :${CLIENT[1]}, :${CLIENT[2]}"

say "2. Start three sr-registry frontends on it: --store $STORE"
declare -a URL FRONT
for i in 0 1 2; do
	"$BIN/sr-registry" --dev --listen 127.0.0.1:0 --store "$STORE" --log-format json 2>"$WORK/front$i.log" &
	FRONT[$i]=$!
done
for i in 0 1 2; do
	wait_for '"listening"' cat "$WORK/front$i.log"
	URL[$i]=$(grep '"listening"' "$WORK/front$i.log" | sed 's/.*"url":"\([^"]*\)".*/\1/')
	# Ready once it reaches etcd (the members elect a leader first).
	wait_for '"ok"' readyz "${URL[$i]%/v1.0}"
	echo "frontend $i at ${URL[$i]}"
done
ALL="${URL[0]},${URL[1]},${URL[2]}"
export SR_USERNAME=demo SR_API_KEY=demo-key

say "3. Run a program under sr-wrapper, given all three frontends: --registry $ALL"
"$BIN/sr-wrapper" --registry "$ALL" --id=demo-clustered --tags=demo,http --interval=3 --log-format=console -- \
	sleep 600 > >(sed -u 's/^/   [wrapper] /') 2>&1 &
WRAPPER_PID=$!
# Each frontend answers for all: list through the third.
wait_for demo-clustered "$BIN/srctl" --registry "${URL[2]}" services list
"$BIN/srctl" --registry "${URL[2]}" services list
session_of() { "$BIN/srctl" --registry "$1" services list | awk '$1 == "demo-clustered" { print $2 }'; }
SESSION=$(session_of "${URL[2]}")
echo "registered in session $SESSION, heartbeating through frontend 0 (${URL[0]})"

say "4. kill -9 the frontend in use (frontend 0)"
kill -9 "${FRONT[0]}"
wait "${FRONT[0]}" 2>/dev/null || true
# Two timeouts of heartbeats through the others: a lost session would have
# been replaced by now.
sleep 7
wait_for demo-clustered "$BIN/srctl" --registry "${URL[1]}" services list
"$BIN/srctl" --registry "${URL[1]}" services list
NOW=$(session_of "${URL[1]}")
if [ "$NOW" != "$SESSION" ]; then
	echo "demo-cluster: the service moved from session $SESSION to $NOW" >&2
	exit 1
fi
echo "still registered in the same session $NOW, seven seconds (more than two timeouts) after its frontend was killed"
"$BIN/srctl" --registry "${URL[1]}" sessions get "$SESSION"

say "5. Stop the program the way systemd would: SIGTERM to the wrapper"
kill -TERM "$WRAPPER_PID"
wait "$WRAPPER_PID" || true
"$BIN/srctl" --registry "${URL[2]}" services list

say "Done: one registry, three frontends; the service outlived the frontend it was using."
