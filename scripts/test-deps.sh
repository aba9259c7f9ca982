#!/bin/sh
# Installs the Debian packages that the integration tests drive for real
# (supervisord for the supervisord test, util-linux's unshare for the PID 1
# tests, iproute2 for internal/hostaddr's network namespace test, git for
# internal/buildinfo's build of a fresh repository, Node.js and npm for the
# old Node.js clients of internal/server/oldclients_test.go, Chromium for
# internal/dashboard's browser tests, etcd-server for make demo-cluster and
# its test), when they are missing. Go fetches
# everything else itself, and that test installs the npm packages it pins
# (testdata/oldclients); tini, the benchmarks' baseline, is installed by
# scripts/bench.sh.
set -eu
need=""
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
command -v supervisord >/dev/null 2>&1 || need="$need supervisor"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v git >/dev/null 2>&1 || need="$need git"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "test-deps: missing$need; install them (as root: apt-get install$need) or the tests that need them skip" >&2
	exit 0
fi
echo "test-deps: installing$need" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || apt-get update
# supervisor's and etcd-server's packages start system daemons; the tests
# and the demo run their own.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends $need >/dev/null
