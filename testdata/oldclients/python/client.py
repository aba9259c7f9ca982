"""Drives the Python Service Registry client (service-registry 0.1.9 on
apache-libcloud 0.12.1), unchanged, through its own calls against the
registry named by SR_URL (.../v1.0) and SR_AUTH_URL (.../v2.0), as user
SR_USER with key SR_KEY. Prints one JSON line per call: {"step", "result"}
on success, {"step", "error"} on the first failure (exit 1), or
{"step", "crash"} when the client raises something else (exit 2). After
the step "restart wanted" it waits for a line on stdin: the Go test
(internal/server/oldclients_test.go) restarts the registry, which forgets
its tokens, then sends it. The test reads the lines.

Both libraries were written for Python 2 (libcloud 0.12.1 ran on 3.2 at
most): the only adaptations are two module aliases below, so that their
imports of httplib and __builtin__.reload resolve on Python 3. Neither
library's code is changed. The client has no option for its identity URL;
it reads the module's DEFAULT_AUTH_URLS, which is set here.
"""

import http.client
import importlib
import json
import os
import sys
import threading
import time
import traceback
import types

sys.modules.setdefault('httplib', http.client)
_builtin = types.ModuleType('__builtin__')
_builtin.reload = importlib.reload
sys.modules.setdefault('__builtin__', _builtin)

import service_registry.client as src  # noqa: E402

src.DEFAULT_AUTH_URLS['us'] = os.environ['SR_AUTH_URL'] + '/tokens'
client = src.Client(os.environ['SR_USER'], os.environ['SR_KEY'],
                    base_url=os.environ['SR_URL'] + '/', region='us')
current = 'start'


def emit(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


def printable(v):
    if isinstance(v, (dict, list, str, int, float, bool)) or v is None:
        return v
    if isinstance(v, tuple):
        return [printable(x) for x in v]
    return '<%s>' % type(v).__name__


def step(name, fn, *args):
    global current
    current = name
    try:
        result = fn(*args)
    except src.ValidationError as e:
        emit({'step': name, 'error': str(e), 'status': e.code, 'type': e.type})
        sys.exit(1)
    except src.APIError as e:
        emit({'step': name, 'error': '%s: %s' % (type(e).__name__, e)})
        sys.exit(1)
    emit({'step': name, 'result': printable(result)})
    return result


def main():
    import libcloud
    import service_registry
    emit({'step': 'versions', 'result': {'service_registry': service_registry.__version__, 'libcloud': libcloud.__version__}})
    c = client
    step('account.get_limits', c.account.get_limits)
    created, session_id, _ = step('sessions.create', c.sessions.create, 15, {'metadata': {'client': 'python'}})
    nxt = step('sessions.heartbeat', c.sessions.heartbeat, session_id, created['token'])
    step('sessions.heartbeat again', c.sessions.heartbeat, session_id, nxt['token'])
    step('sessions.get', c.sessions.get, session_id)
    step('sessions.list', c.sessions.list)
    step('sessions.update', c.sessions.update, session_id, {'heartbeat_timeout': 20})

    step('services.create', c.services.create, session_id, 'py-svc-1', {'tags': ['www'], 'metadata': {'port': '80'}})
    step('services.register', c.services.register, session_id, 'py-svc-2', {'tags': ['api']}, 0.01)
    step('services.get', c.services.get, 'py-svc-1')
    step('services.list', c.services.list)
    step('services.list_for_tag', c.services.list_for_tag, 'www')
    step('services.update', c.services.update, 'py-svc-1', {'tags': ['www', 'http']})
    step('services.remove', c.services.remove, 'py-svc-2')

    cfg = c.configuration
    step('configuration.set configId', cfg.set, 'configId', 'v1')
    step('configuration.set /production/cassandra/listen_ip', cfg.set, '/production/cassandra/listen_ip', '10.0.0.5')
    step('configuration.set /production/cassandra/port', cfg.set, '/production/cassandra/port', '9042')
    step('configuration.get configId', cfg.get, 'configId')
    step('configuration.get /production/cassandra/listen_ip', cfg.get, '/production/cassandra/listen_ip')
    step('configuration.list', cfg.list)
    step('configuration.list_for_namespace production', cfg.list_for_namespace, 'production')
    step('configuration.list_for_namespace /production/cassandra/', cfg.list_for_namespace, '/production/cassandra/')
    step('configuration.remove /production/cassandra/port', cfg.remove, '/production/cassandra/port')

    step('events.list', c.events.list)

    # The client's own heartbeater (it blocks, so in a thread), on a
    # session of its own with a short timeout: a heartbeat 1.8 s after the
    # start and every 1.8 s after that; last_seen must move twice.
    _, beaten, hb = step('sessions.create (heartbeater)', c.sessions.create, 3)
    global current
    current = 'heartbeater'
    threading.Thread(target=hb.start, daemon=True).start()
    moves, last = 0, None
    deadline = time.time() + 15
    while moves < 2 and time.time() < deadline:
        time.sleep(0.1)
        now = c.sessions.get(beaten)['last_seen']
        if now != last:
            moves, last = moves + 1, now
    hb.stop()
    emit({'step': 'heartbeater', 'result': [moves, last]})

    # Pages of one, following the marker.
    page = step('configuration.list limit 1', c.configuration.list, None, 1)
    step('configuration.list marker', c.configuration.list, page['metadata']['next_marker'], 1)

    # A session that is not heartbeated expires: the events feed, read
    # from a marker, shows one services.timeout listing its service.
    marker = step('events.list (marker)', c.events.list)['values'][-1]['id']
    _, doomed, _ = step('sessions.create (expires)', c.sessions.create, 3)
    step('services.create (expires)', c.services.create, doomed, 'py-svc-doomed')
    current = 'events after expiry'
    timed_out = []
    deadline = time.time() + 15
    while not timed_out and time.time() < deadline:
        time.sleep(0.1)
        for e in c.events.list(marker)['values']:
            if e['type'] == 'services.timeout':
                timed_out = [s['id'] for s in e['payload']]
    emit({'step': 'events after expiry', 'result': timed_out})

    # The registry restarts and forgets its tokens.
    emit({'step': 'restart wanted', 'result': []})
    sys.stdin.readline()
    step('configuration.get after restart', c.configuration.get, 'configId')

    step('services.remove py-svc-1', c.services.remove, 'py-svc-1')
    emit({'step': 'done', 'result': []})


if __name__ == '__main__':
    try:
        main()
    except SystemExit:
        raise
    except BaseException:
        emit({'step': current, 'crash': traceback.format_exc()})
        sys.exit(2)
