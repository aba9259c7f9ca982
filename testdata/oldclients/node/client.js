// Drives the Node.js Service Registry client (service-registry-client
// 0.1.13), unchanged, through its own calls against the registry named by
// SR_URL (…/v1.0) and SR_AUTH_URL (…/v2.0), as user SR_USER with key
// SR_KEY. Prints one JSON line per call: {"step", "result"} on success,
// {"step", "error", "status", "body"} on the first failure (exit 1), or
// {"step", "crash"} when the client throws (exit 2). After the step
// "restart wanted" it waits for a line on stdin: the Go test
// (internal/server/oldclients_test.go) restarts the registry, which
// forgets its tokens, then sends it. The test reads the lines and checks
// the registry's state.
'use strict';

const Client = require('service-registry-client').Client;
const EventsFeedPoller = require('service-registry-client').EventsFeedPoller;

const client = new Client(process.env.SR_USER, process.env.SR_KEY, null, {
  url: process.env.SR_URL,
  authUrl: process.env.SR_AUTH_URL,
});

let current = 'start';
function print(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

process.on('uncaughtException', (err) => {
  print({step: current, crash: String(err && err.stack || err)});
  process.exit(2);
});

// step calls fn(...args, callback) and resolves with the callback's
// arguments after the error.
function step(name, fn, ...args) {
  current = name;
  return new Promise((resolve) => {
    fn(...args, (err, ...result) => {
      if (err) {
        const res = err.response || {};
        print({step: name, error: String(err.message || err), status: err.statusCode || res.statusCode, body: res.body});
        process.exit(1);
      }
      print({step: name, result: result.map(printable)});
      resolve(result);
    });
  });
}

// printable keeps plain data and names the client's own objects (the
// HeartBeater that sessions.create hands back) instead of dumping them.
function printable(v) {
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype) {
    return '<' + v.constructor.name + '>';
  }
  return v;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const c = client;
  print({step: 'versions', result: [{
    'service-registry-client': require('service-registry-client/package.json').version,
    'keystone-client': require('keystone-client/package.json').version,
  }]});
  await step('account.getLimits', c.account.getLimits.bind(c.account));

  const [sessionId, created] = await step('sessions.create', c.sessions.create.bind(c.sessions), 15, {metadata: {client: 'node'}});
  const [next] = await step('sessions.heartbeat', c.sessions.heartbeat.bind(c.sessions), sessionId, created.token);
  await step('sessions.heartbeat again', c.sessions.heartbeat.bind(c.sessions), sessionId, next);
  await step('sessions.get', c.sessions.get.bind(c.sessions), sessionId);
  await step('sessions.list', c.sessions.list.bind(c.sessions), {});
  await step('sessions.update', c.sessions.update.bind(c.sessions), sessionId, {heartbeat_timeout: 20});

  await step('services.create', c.services.create.bind(c.services), sessionId, 'node-svc-1', {tags: ['www'], metadata: {port: '80'}});
  await step('services.register', c.services.register.bind(c.services), sessionId, 'node-svc-2', {tags: ['api']}, {retryDelay: 10});
  await step('services.get', c.services.get.bind(c.services), 'node-svc-1');
  await step('services.list', c.services.list.bind(c.services), {});
  await step('services.listForTag', c.services.listForTag.bind(c.services), 'www', {});
  await step('services.update', c.services.update.bind(c.services), 'node-svc-1', {tags: ['www', 'http']});
  await step('services.remove', c.services.remove.bind(c.services), 'node-svc-2');

  const cfg = c.configuration;
  await step('configuration.set configId', cfg.set.bind(cfg), 'configId', 'v1');
  await step('configuration.set /production/cassandra/listen_ip', cfg.set.bind(cfg), '/production/cassandra/listen_ip', '10.0.0.5');
  await step('configuration.set /production/cassandra/port', cfg.set.bind(cfg), '/production/cassandra/port', '9042');
  await step('configuration.get configId', cfg.get.bind(cfg), 'configId');
  await step('configuration.get /production/cassandra/listen_ip', cfg.get.bind(cfg), '/production/cassandra/listen_ip');
  await step('configuration.list', cfg.list.bind(cfg), {});
  await step('configuration.listForNamespace production', cfg.listForNamespace.bind(cfg), 'production', {});
  await step('configuration.listForNamespace /production/cassandra/', cfg.listForNamespace.bind(cfg), '/production/cassandra/', {});
  await step('configuration.remove /production/cassandra/port', cfg.remove.bind(cfg), '/production/cassandra/port');

  await step('events.list', c.events.list.bind(c.events), null, {});
  await step('views.getOverview', c.views.getOverview.bind(c.views), {});

  // The client's own heartbeater, on a session of its own with a short
  // timeout (a heartbeat at once, the next 1.8 s later): that session's
  // last_seen must move twice.
  const [beaten, , hb] = await step('sessions.create (heartbeater)', c.sessions.create.bind(c.sessions), 3, {});
  current = 'heartbeater';
  const lastSeen = () => new Promise((resolve) => {
    c.sessions.get(beaten, (err, s) => resolve(err ? 'error: ' + err.message : s.last_seen));
  });
  hb.start();
  let moves = 0, last = null;
  for (let i = 0; i < 100 && moves < 2; i++) {
    await sleep(100);
    const now = await lastSeen();
    if (now !== last) { moves++; last = now; }
  }
  hb.stop();
  print({step: 'heartbeater', result: [moves, last]});

  // Pages of one, following the marker the client hands back.
  const [, marker] = await step('configuration.list limit 1', cfg.list.bind(cfg), {limit: 1});
  await step('configuration.list marker', cfg.list.bind(cfg), {limit: 1, marker: marker});

  // The client's events feed poller sees a session expire: one
  // service.timeout per service of the session.
  const poller = new EventsFeedPoller(c.events, {pollInterval: 100});
  const timedOut = [];
  poller.on('service.timeout', (e) => timedOut.push(e.payload.id));
  poller.start();
  const [doomed] = await step('sessions.create (expires)', c.sessions.create.bind(c.sessions), 3, {});
  await step('services.create (expires)', c.services.create.bind(c.services), doomed, 'node-svc-doomed', {});
  current = 'events poller';
  for (let i = 0; i < 150 && timedOut.length === 0; i++) {
    await sleep(100);
  }
  poller.stop();
  print({step: 'events poller', result: timedOut});

  // The registry restarts and forgets its tokens: the client gets 401,
  // authenticates again and retries.
  print({step: 'restart wanted', result: []});
  await new Promise((resolve) => process.stdin.once('data', resolve));
  await step('configuration.get after restart', cfg.get.bind(cfg), 'configId');

  await step('services.remove node-svc-1', c.services.remove.bind(c.services), 'node-svc-1');
  print({step: 'done', result: []});
  process.exit(0);
}

main();
