#!/bin/sh
# Writes registry.db in this directory with an sr-registry built from
# commit b19db5a (the last one that stored every configuration id with a
# leading slash and gave --dev users 10-digit tenant ids):
#
#	git worktree add /tmp/old b19db5a && (cd /tmp/old && go build -o /tmp/old-sr-registry ./cmd/sr-registry)
#	internal/server/testdata/olddata/make.sh /tmp/old-sr-registry
#
# TestRestartOnOldDataDir reads what it writes. alice's dev tenant
# (2090220207) is below 2^31 and keeps its id; bob's (8748178650) is not.
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=18181
"$bin" --dev --listen 127.0.0.1:$port --data-dir "$dir" --log-format json 2>"$dir/log" &
pid=$!
base=http://127.0.0.1:$port
until curl -fsS -o /dev/null -X POST -d '{}' "$base/v2.0/tokens" 2>/dev/null || grep -q listening "$dir/log"; do sleep 0.1; done

token() { # user -> "tenant token"
	curl -fsS -X POST -H 'Content-Type: application/json' \
		-d "{\"auth\":{\"RAX-KSKEY:apiKeyCredentials\":{\"username\":\"$1\",\"apiKey\":\"k\"}}}" "$base/v2.0/tokens" |
		sed -E 's/.*"token":\{"id":"([^"]+)".*"tenant":\{"id":"([^"]+)".*/\2 \1/'
}
call() { # method path [body]
	curl -fsS -o /dev/null -X "$1" -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' ${3:+-d "$3"} "$base/v1.0/$tenant$2"
}
session() { # -> session id (the last segment of Location)
	curl -fsS -D - -o /dev/null -X POST -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' \
		-d '{"heartbeat_timeout":30}' "$base/v1.0/$tenant/sessions" | tr -d '\r' | sed -n 's,^Location: .*/,,p'
}

set -- $(token alice); tenant=$1 tok=$2
call PUT /configuration/configId '{"value":"v1"}'
call PUT /configuration/production/cassandra/listen_ip '{"value":"10.0.0.5"}'
call PUT /configuration/production/cassandra/port '{"value":"9042"}'
call PUT /configuration/api_key '{"value":"old"}'
call PUT /configuration/api_key '{"value":"secret"}'
sid=$(session)
call POST /services "{\"id\":\"web-1\",\"session_id\":\"$sid\",\"tags\":[\"www\"]}"

set -- $(token bob); tenant=$1 tok=$2
call PUT /configuration/bobs_value '{"value":"b"}'
call PUT /configuration/team/db_host '{"value":"10.1.1.1"}'
sid=$(session)
call POST /services "{\"id\":\"bob-svc\",\"session_id\":\"$sid\"}"

kill -TERM "$pid"
wait "$pid"
cp "$dir/registry.db" "$here/registry.db"
