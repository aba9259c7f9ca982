// sr-registry dashboard. It signs in through the identity endpoint
// (POST /v2.0/tokens) and then polls the tenant's v1.0 API, as every client
// does: services, /views/overview and the events feed every second, the
// configuration when it changes. The token lives in sessionStorage (this tab
// only); the API key lives only in memory, to sign in again by itself when
// the token expires or the registry restarts, and is never stored.
'use strict';

(() => {
  const STORE_KEY = 'sr-registry.dashboard';
  const POLL_MS = 1000;        // a join or a timeout shows within 2 s
  const PAGE_LIMIT = 1000;     // the API's largest page
  const MAX_PAGES = 10000;     // a bound on a list that never ends
  const MAX_EVENTS = 500;      // events kept on the page
  const CONFIG_EVERY_MS = 10000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 15000;
  const VIEWS = ['services', 'sessions', 'configuration', 'events'];

  const $ = (id) => document.getElementById(id);

  // h builds an element: h('td', {class: 'x', 'data-label': 'ID'}, 'text', child).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  // State of the signed-in page. gen changes at every sign-in and sign-out,
  // so that replies to requests of an earlier sign-in are dropped.
  const st = {
    gen: 0,
    auth: null,        // {token, tenant, user, expires}
    apiKey: null,      // memory only
    reauth: null,      // the sign-in in progress after a 401
    view: 'services',
    services: [],
    servicesSig: '',
    overview: [],
    overviewSig: '',
    config: [],
    configSig: '',
    configLoaded: false,
    configDirty: true,
    configAt: 0,
    events: [],        // newest first, as shown
    held: [],          // arrived while paused, oldest first
    lastEventID: '',   // the feed's position: the last event handed out
    eventsLoaded: false,
    paused: false,
    firstSeen: new Map(),  // session id -> when this page first saw it
    skewMS: 0,             // the registry's clock minus ours, when it matters
    failures: 0,
    fresh: null,       // keys that joined since the last poll, while rendering
    busy: false,       // a tick is running
    again: false,      // and another was asked for meanwhile
    timer: 0,
    countdown: 0,
    loaded: false,
    filter: {q: '', tag: ''},
    openNS: new Set(),
  };

  class APIError extends Error {
    constructor(status, message, retryable) {
      super(message);
      this.status = status;
      this.retryable = retryable;
    }
  }
  class Stale extends Error {}

  // ---- Identity -----------------------------------------------------------

  async function authenticate(user, key) {
    let res;
    try {
      res = await fetch('/v2.0/tokens', {
        method: 'POST',
        headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
        body: JSON.stringify({auth: {'RAX-KSKEY:apiKeyCredentials': {username: user, apiKey: key}}}),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new APIError(0, 'the registry cannot be reached', true);
    }
    if (!res.ok) {
      throw new APIError(res.status, await faultMessage(res), res.status >= 500 || res.status === 429);
    }
    const body = await res.json();
    const tok = body && body.access && body.access.token;
    const tenant = tok && tok.tenant && tok.tenant.id;
    if (!tok || !tok.id || !tenant) throw new APIError(0, 'the identity reply has no token or tenant', false);
    return {token: String(tok.id), tenant: String(tenant), user, expires: tok.expires || ''};
  }

  async function faultMessage(res) {
    try {
      const f = await res.json();
      if (f && f.message) return f.details ? `${f.message} (${f.details})` : f.message;
    } catch (e) { /* not JSON */ }
    return `${res.status} ${res.statusText}`;
  }

  function saveAuth(a) {
    sessionStorage.setItem(STORE_KEY, JSON.stringify({token: a.token, tenant: a.tenant, user: a.user, expires: a.expires}));
  }

  function loadAuth() {
    try {
      const a = JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null');
      if (a && typeof a.token === 'string' && typeof a.tenant === 'string') return a;
    } catch (e) { /* damaged: sign in again */ }
    sessionStorage.removeItem(STORE_KEY);
    return null;
  }

  // signInAgain gets a new token with the API key in memory, once for all
  // the requests that got a 401 together.
  function signInAgain() {
    if (!st.reauth) {
      const gen = st.gen;
      st.reauth = authenticate(st.auth.user, st.apiKey).then((a) => {
        if (gen !== st.gen) throw new Stale();
        st.auth = a;
        saveAuth(a);
      }).finally(() => { st.reauth = null; });
    }
    return st.reauth;
  }

  // ---- The v1.0 API -------------------------------------------------------

  async function get(path, again) {
    const gen = st.gen;
    const auth = st.auth;
    let res;
    try {
      res = await fetch(`/v1.0/${encodeURIComponent(auth.tenant)}${path}`, {
        headers: {'X-Auth-Token': auth.token, 'Accept': 'application/json'},
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new APIError(0, 'the registry cannot be reached', true);
    }
    if (gen !== st.gen) throw new Stale();
    noteClock(res);
    if (res.status === 401) {
      if (st.apiKey && !again) {
        if (st.auth.token === auth.token) {
          try {
            await signInAgain();
          } catch (e) {
            if (e instanceof APIError && e.status === 401) throw new APIError(401, 'the API key is no longer accepted', false);
            throw e;
          }
        }
        return get(path, true);
      }
      throw new APIError(401, await faultMessage(res), false);
    }
    if (!res.ok) {
      throw new APIError(res.status, await faultMessage(res), res.status >= 500 || res.status === 429 || res.status === 400);
    }
    const body = await res.json();
    // Signed out (or in as someone else) while the body was on its way.
    if (gen !== st.gen) throw new Stale();
    return body;
  }

  // list follows next_marker to the end of a list.
  async function list(path) {
    const out = [];
    let marker = null;
    for (let i = 0; i < MAX_PAGES; i++) {
      const q = new URLSearchParams({limit: String(PAGE_LIMIT)});
      if (marker !== null) q.set('marker', marker);
      const page = await get(`${path}?${q}`);
      out.push(...(page.values || []));
      const next = page.metadata && page.metadata.next_marker;
      if (!next || next === marker) break;
      marker = next;
    }
    return out;
  }

  // noteClock estimates the registry's clock from the Date header, so that
  // the age of a heartbeat is right when the two clocks differ. The header
  // has whole seconds: differences under 2 s are taken as none.
  function noteClock(res) {
    const d = Date.parse(res.headers.get('Date') || '');
    if (Number.isNaN(d)) return;
    const skew = d + 500 - Date.now();
    st.skewMS = Math.abs(skew) > 2000 ? skew : 0;
  }
  const now = () => Date.now() + st.skewMS;

  // ---- Polling ------------------------------------------------------------

  async function tick() {
    clearTimeout(st.timer);
    st.timer = 0;
    if (!st.auth) return;
    if (st.busy) {
      st.again = true;
      return;
    }
    const gen = st.gen;
    st.busy = true;
    st.again = false;
    try {
      const jobs = [refreshServices(), refreshOverview(), followEvents()];
      if (st.configDirty || (st.view === 'configuration' && Date.now() - st.configAt > CONFIG_EVERY_MS)) {
        jobs.push(refreshConfig());
      }
      const results = await Promise.allSettled(jobs);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (gen !== st.gen) return;
      if (!st.loaded) {
        st.loaded = true;
        renderAll();
      }
      recovered();
      schedule(st.again ? 0 : POLL_MS);
    } catch (e) {
      if (gen !== st.gen || e instanceof Stale) return;
      failed(e);
    } finally {
      if (gen === st.gen) st.busy = false;
    }
  }

  function schedule(ms) {
    clearTimeout(st.timer);
    st.timer = setTimeout(tick, ms);
  }

  async function refreshServices() {
    const values = await list('/services');
    const sig = JSON.stringify(values);
    if (sig === st.servicesSig) return;
    st.fresh = newKeys(st.services, values, (s) => s.id);
    st.services = values;
    st.servicesSig = sig;
    renderServices();
    st.fresh = null;
  }

  // newKeys are the keys of after that before lacks, to highlight what
  // joined since the last poll (nothing at the first).
  function newKeys(before, after, key) {
    if (!st.loaded) return null;
    const had = new Set(before.map(key));
    return new Set(after.map(key).filter((k) => !had.has(k)));
  }

  async function refreshOverview() {
    const values = await list('/views/overview');
    const t = Date.now();
    const ids = new Set();
    for (const e of values) {
      ids.add(e.session.id);
      if (!st.firstSeen.has(e.session.id)) st.firstSeen.set(e.session.id, t);
    }
    for (const id of st.firstSeen.keys()) if (!ids.has(id)) st.firstSeen.delete(id);
    const sig = JSON.stringify(values);
    if (sig === st.overviewSig) return;
    st.fresh = newKeys(st.overview, values, (e) => e.session.id);
    st.overview = values;
    st.overviewSig = sig;
    renderSessions();
    st.fresh = null;
  }

  async function refreshConfig() {
    st.configDirty = false;
    try {
      const values = await list('/configuration');
      st.configAt = Date.now();
      st.configLoaded = true;
      const sig = JSON.stringify(values);
      if (sig === st.configSig) return;
      st.config = values;
      st.configSig = sig;
      renderConfig();
    } catch (e) {
      st.configDirty = true;
      throw e;
    }
  }

  // followEvents reads the feed from where it stopped. The feed's marker
  // is inclusive, so each read starts at the last event handed out and
  // skips it; each page is delivered as it comes, so that an error halfway
  // loses nothing.
  async function followEvents() {
    let marker = st.lastEventID || null;
    for (let i = 0; i < MAX_PAGES; i++) {
      const q = new URLSearchParams({limit: String(PAGE_LIMIT)});
      if (marker !== null) q.set('marker', marker);
      const page = await get(`/events?${q}`);
      const fresh = (page.values || []).filter((e) => !st.lastEventID || e.id > st.lastEventID);
      if (fresh.length) {
        st.lastEventID = fresh[fresh.length - 1].id;
        deliver(fresh);
      }
      const next = page.metadata && page.metadata.next_marker;
      if (!next || next === marker) break;
      marker = next;
    }
    if (!st.eventsLoaded) {
      st.eventsLoaded = true;
      renderEventState();
    }
  }

  function deliver(fresh) {
    if (fresh.some((e) => e.type && e.type.startsWith('configuration_value.'))) st.configDirty = true;
    if (st.paused) {
      st.held.push(...fresh);
      if (st.held.length > MAX_EVENTS) st.held.splice(0, st.held.length - MAX_EVENTS);
      renderEventState();
      return;
    }
    prependEvents(fresh);
  }

  // ---- Errors and recovery --------------------------------------------------

  function failed(e) {
    if (e instanceof APIError && e.status === 401) {
      expired();
      return;
    }
    st.failures++;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (st.failures - 1));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    const what = e instanceof APIError ? describe(e) : `unexpected error: ${e && e.message ? e.message : e}`;
    const until = Date.now() + delay;
    // The message is announced once; the countdown beside it is not.
    const text = `${what}; what is shown may be out of date.`;
    if ($('banner-text').textContent !== text) $('banner-text').textContent = text;
    const show = () => {
      const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      $('banner-when').textContent = `Retrying in ${s} s.`;
    };
    show();
    $('banner').hidden = false;
    clearInterval(st.countdown);
    st.countdown = setInterval(show, 1000);
    setStatus('down', 'Reconnecting');
    schedule(delay);
  }

  function describe(e) {
    if (e.status === 0) return `Cannot reach the registry at ${location.host} (it may be restarting)`;
    if (e.status === 503) return `The registry is unavailable (${e.message})`;
    if (e.status >= 500) return `The registry failed (${e.message})`;
    return `The registry refused a request (${e.message})`;
  }

  function recovered() {
    st.failures = 0;
    clearInterval(st.countdown);
    $('banner').hidden = true;
    setStatus(st.paused ? 'paused' : 'live', st.paused ? 'Live · feed paused' : 'Live');
    $('status').title = `Last update ${new Date().toLocaleTimeString()}`;
  }

  function setStatus(cls, text) {
    const s = $('status');
    s.className = `status ${cls}`;
    if (s.textContent !== text) s.textContent = text;
  }

  // ---- Sign-in and sign-out -------------------------------------------------

  function start(auth, apiKey) {
    reset();
    st.auth = auth;
    st.apiKey = apiKey;
    $('signin').hidden = true;
    $('app').hidden = false;
    $('who').hidden = false;
    $('who-user').textContent = auth.user;
    $('who-tenant').textContent = auth.tenant;
    setStatus('', 'Loading');
    route();
    renderAll();
    tick();
  }

  // reset forgets everything the page knew of the registry and empties
  // the views.
  function reset() {
    st.gen++;
    clearTimeout(st.timer);
    clearInterval(st.countdown);
    Object.assign(st, {
      auth: null, apiKey: null, reauth: null,
      services: [], servicesSig: '', overview: [], overviewSig: '',
      config: [], configSig: '', configLoaded: false, configDirty: true, configAt: 0,
      events: [], held: [], lastEventID: '', eventsLoaded: false, paused: false,
      failures: 0, loaded: false, skewMS: 0, busy: false, again: false,
      filter: {q: '', tag: ''},
    });
    st.firstSeen.clear();
    st.openNS.clear();
    for (const id of ['svc-rows', 'sess-list', 'cfg-tree', 'ev-list']) $(id).replaceChildren();
    $('svc-search').value = '';
    $('svc-tag').replaceChildren(h('option', {value: ''}, 'All tags'));
    delete $('svc-tag').dataset.sig;
    $('banner').hidden = true;
    $('banner-text').textContent = '';
  }

  function showSignIn(note) {
    reset();
    sessionStorage.removeItem(STORE_KEY);
    $('app').hidden = true;
    $('who').hidden = true;
    $('signin').hidden = false;
    $('signin-note').hidden = !note;
    $('signin-note').textContent = note || '';
    $('signin-error').hidden = true;
    $('apikey').value = '';
    const focus = $('username').value ? $('apikey') : $('username');
    focus.focus();
  }

  function signOut() {
    $('username').value = '';
    showSignIn('');
  }

  function expired() {
    const user = st.auth ? st.auth.user : '';
    $('username').value = user;
    showSignIn('Your sign-in has expired, or the registry restarted and forgot it. Enter your API key to go on.');
  }

  async function onSignIn(ev) {
    ev.preventDefault();
    const user = $('username').value.trim();
    const key = $('apikey').value;
    const err = $('signin-error');
    if (!user || !key) {
      err.textContent = !user ? 'Enter a username.' : 'Enter an API key.';
      err.hidden = false;
      (!user ? $('username') : $('apikey')).focus();
      return;
    }
    const button = $('signin-submit');
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      const auth = await authenticate(user, key);
      saveAuth(auth);
      $('apikey').value = '';
      start(auth, key);
      $('main').focus();
    } catch (e) {
      err.textContent = e.status === 401
        ? 'The registry did not accept this username and API key.'
        : `Could not sign in: ${e.message}.`;
      err.hidden = false;
      $('apikey').focus();
    } finally {
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  }

  // ---- Views ----------------------------------------------------------------

  function route() {
    const want = location.hash.slice(1);
    if (VIEWS.includes(want)) st.view = want;
    else if (!want) st.view = 'services';
    for (const v of VIEWS) {
      $(`view-${v}`).hidden = v !== st.view;
      const tab = $(`tab-${v}`);
      if (v === st.view) tab.setAttribute('aria-current', 'page');
      else tab.removeAttribute('aria-current');
    }
    if (st.view === 'sessions') drawBars();
    if (st.auth && st.view === 'configuration' && Date.now() - st.configAt > CONFIG_EVERY_MS && st.loaded) {
      st.configDirty = true;
      tick();
    }
  }

  function renderAll() {
    renderServices();
    renderSessions();
    renderConfig();
    renderEventState();
  }

  // reconcile makes parent's children one element per item, in order,
  // reusing the element of the same key so that focus and animations
  // survive an update. update is called only when the item changed. A new
  // element whose key is in st.fresh (it joined since the last poll) is
  // highlighted.
  function reconcile(parent, items, key, create, update) {
    const old = new Map();
    for (const el of parent.children) old.set(el.dataset.key, el);
    let prev = null;
    for (const item of items) {
      const k = key(item);
      let el = old.get(k);
      if (el) {
        old.delete(k);
      } else {
        el = create(item);
        el.dataset.key = k;
        if (st.fresh && st.fresh.has(k)) el.classList.add('fresh');
      }
      const sig = JSON.stringify(item);
      if (el.dataset.sig !== sig) {
        update(el, item);
        el.dataset.sig = sig;
      }
      const want = prev ? prev.nextElementSibling : parent.firstElementChild;
      if (el !== want) parent.insertBefore(el, want);
      prev = el;
    }
    for (const el of old.values()) el.remove();
  }

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  function kvList(map) {
    const keys = Object.keys(map || {}).sort();
    if (!keys.length) return h('span', {class: 'none'}, '—');
    return h('ul', {class: 'chips'}, keys.map((k) => h('li', {class: 'kv'}, h('b', null, k), '=', map[k])));
  }

  // Services

  function renderServices() {
    const all = st.services;
    const counts = new Map();
    for (const s of all) for (const t of s.tags || []) counts.set(t, (counts.get(t) || 0) + 1);
    const {q, tag} = st.filter;
    renderTagOptions(counts, tag);
    const needle = q.toLowerCase();
    const shown = all.filter((s) => (!needle || s.id.toLowerCase().includes(needle)) && (!tag || (s.tags || []).includes(tag)));
    reconcile($('svc-rows'), shown, (s) => s.id, () => h('tr'), (tr, s) => {
      tr.replaceChildren(
        h('td', {'data-label': 'ID'}, s.id),
        h('td', {'data-label': 'Tags'}, tagChips(s.tags || [])),
        h('td', {'data-label': 'Metadata'}, kvList(s.metadata)),
        h('td', {'data-label': 'Session'}, h('button', {
          type: 'button', class: 'link-btn', title: 'Show this session',
          onclick: () => showSession(s.session_id),
        }, s.session_id)),
      );
    });
    // The pressed state of the chips follows the filter without a rebuild.
    for (const chip of $('svc-rows').querySelectorAll('.chip')) {
      chip.setAttribute('aria-pressed', String(chip.dataset.tag === tag));
    }
    const filtered = q || tag;
    $('svc-count').textContent = filtered
      ? `${shown.length} of ${plural(all.length, 'service', 'services')} match`
      : plural(all.length, 'service', 'services');
    $('count-services').textContent = String(all.length);
    $('svc-clear').hidden = !filtered;
    $('svc-table').hidden = shown.length === 0;
    const empty = $('svc-empty');
    empty.hidden = shown.length !== 0;
    if (!st.loaded && all.length === 0) {
      empty.replaceChildren('Loading…');
    } else if (all.length === 0) {
      empty.replaceChildren('No services are registered. Run a program under ', h('code', null, 'sr-wrapper --id=web1 -- PROGRAM'), ' and it appears here.');
    } else {
      empty.replaceChildren('No service matches ', filterText(), '. ', h('button', {type: 'button', class: 'btn btn-small', onclick: clearFilter}, 'Clear filter'));
    }
  }

  function filterText() {
    const parts = [];
    if (st.filter.q) parts.push(`the id “${st.filter.q}”`);
    if (st.filter.tag) parts.push(`the tag “${st.filter.tag}”`);
    return parts.join(' and ');
  }

  function tagChips(tags) {
    if (!tags.length) return h('span', {class: 'none'}, '—');
    return h('ul', {class: 'chips'}, tags.map((t) => h('li', null, h('button', {
      type: 'button', class: 'chip', 'data-tag': t, 'aria-pressed': String(t === st.filter.tag),
      title: `Show only the services tagged ${t}`,
      onclick: () => setTag(st.filter.tag === t ? '' : t),
    }, t))));
  }

  function renderTagOptions(counts, selected) {
    const sel = $('svc-tag');
    const tags = [...counts.keys()].sort();
    if (selected && !counts.has(selected)) tags.push(selected);
    const want = ['', ...tags].map((t) => `${t}\u0000${counts.get(t) || 0}`).join('\u0001');
    if (sel.dataset.sig !== want) {
      sel.replaceChildren(h('option', {value: ''}, 'All tags'),
        ...tags.map((t) => h('option', {value: t}, `${t} (${counts.get(t) || 0})`)));
      sel.dataset.sig = want;
    }
    sel.value = selected;
  }

  function setTag(tag) {
    st.filter.tag = tag;
    renderServices();
  }

  function clearFilter() {
    st.filter = {q: '', tag: ''};
    $('svc-search').value = '';
    renderServices();
    $('svc-search').focus();
  }

  function showSession(id) {
    location.hash = '#sessions';
    route();
    const card = $('sess-list').querySelector(`[data-key="${CSS.escape(id)}"]`);
    if (card) {
      card.focus();
      card.classList.remove('flash');
      void card.offsetWidth; // restart the animation
      card.classList.add('flash');
    }
  }

  // Sessions

  function renderSessions() {
    const entries = st.overview;
    reconcile($('sess-list'), entries, (e) => e.session.id, (e) => {
      const bar = h('div', {class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-label': 'Time since the last heartbeat'}, h('span'));
      return h('li', {class: 'session', tabindex: '-1', 'aria-label': `Session ${e.session.id}`},
        h('div', {class: 'session-head'}, h('h3', null, e.session.id), h('span', {class: 'muted small svc-count'})),
        h('div', {class: 'hb'}, h('div', {class: 'hb-label'}, h('span', {class: 'hb-text'}), h('span', {class: 'hb-age'})), bar),
        h('div', {class: 'sess-meta'}),
        h('div', {class: 'sess-services'}));
    }, (li, e) => {
      const s = e.session;
      li.dataset.lastSeen = s.last_seen === null || s.last_seen === undefined ? '' : String(s.last_seen);
      li.dataset.timeout = String(s.heartbeat_timeout);
      li.querySelector('.svc-count').textContent = plural((e.services || []).length, 'service', 'services');
      li.querySelector('.bar').setAttribute('aria-valuemax', String(s.heartbeat_timeout));
      li.querySelector('.sess-meta').replaceChildren(h('p', {class: 'section-label'}, 'Metadata'), kvList(s.metadata));
      const svcs = e.services || [];
      li.querySelector('.sess-services').replaceChildren(
        h('p', {class: 'section-label'}, 'Services'),
        svcs.length
          ? h('ul', {class: 'chips'}, svcs.map((x) => h('li', {class: 'kv'}, x.id)))
          : h('span', {class: 'none'}, 'none registered'));
    });
    const nServices = entries.reduce((n, e) => n + (e.services || []).length, 0);
    $('sess-count').textContent = `${plural(entries.length, 'session', 'sessions')} holding ${plural(nServices, 'service', 'services')}`;
    $('count-sessions').textContent = String(entries.length);
    $('sess-empty').hidden = entries.length !== 0 || !st.loaded;
    drawBars();
  }

  // drawBars moves every heartbeat bar to the time since its session's
  // last heartbeat (or, before the first, since this page first saw it).
  function drawBars() {
    if (st.view !== 'sessions') return;
    const t = now();
    for (const li of $('sess-list').children) {
      const timeoutMS = Number(li.dataset.timeout) * 1000;
      const seen = li.dataset.lastSeen;
      const since = seen ? Number(seen) : (st.firstSeen.get(li.dataset.key) || Date.now()) + st.skewMS;
      const age = Math.max(0, t - since);
      const frac = timeoutMS > 0 ? Math.min(1, age / timeoutMS) : 0;
      const bar = li.querySelector('.bar');
      bar.firstElementChild.style.width = `${(frac * 100).toFixed(1)}%`;
      bar.classList.toggle('warn', frac >= 0.6 && frac < 0.85);
      bar.classList.toggle('bad', frac >= 0.85);
      const secs = (age / 1000).toFixed(1);
      // Before the first heartbeat the page knows only when it first saw
      // the session: the age is at least that.
      const text = seen ? `last heartbeat ${secs} s ago` : `no heartbeat yet (seen ${secs} s ago)`;
      li.querySelector('.hb-text').textContent = text;
      li.querySelector('.hb-age').textContent = `timeout ${li.dataset.timeout} s`;
      bar.setAttribute('aria-valuenow', (age / 1000).toFixed(1));
      bar.setAttribute('aria-valuetext', `${text}, times out after ${li.dataset.timeout} s`);
    }
  }

  // Configuration

  // tree turns ids into namespaces: "/production/cassandra/listen_ip" is
  // the value listen_ip in production/ > cassandra/; "configId", an id
  // without a leading slash, is a value at the top.
  function tree(values) {
    const root = {name: '', path: '', ns: new Map(), leaves: [], count: 0};
    for (const v of values) {
      const slash = v.id.startsWith('/');
      const parts = (slash ? v.id.slice(1) : v.id).split('/');
      const name = parts.pop();
      let node = root;
      root.count++;
      let path = '/';
      for (const p of parts) {
        path += `${p}/`;
        if (!node.ns.has(p)) node.ns.set(p, {name: p, path, ns: new Map(), leaves: [], count: 0});
        node = node.ns.get(p);
        node.count++;
      }
      node.leaves.push({name: name || v.id, id: v.id, value: v.value});
    }
    return root;
  }

  function renderConfig() {
    const root = tree(st.config);
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#cfg-tree summary');
    const focusPath = focused ? focused.parentElement.dataset.path : null;
    const treeEl = $('cfg-tree');
    treeEl.replaceChildren(st.config.length ? drawNamespace(root) : '');
    treeEl.hidden = st.config.length === 0;
    if (focusPath) {
      const d = treeEl.querySelector(`details[data-path="${CSS.escape(focusPath)}"] > summary`);
      if (d) d.focus();
    }
    $('cfg-count').textContent = st.configLoaded ? plural(st.config.length, 'value', 'values') : '';
    $('count-configuration').textContent = String(st.config.length);
    $('cfg-empty').hidden = st.config.length !== 0 || !st.configLoaded;
    $('cfg-expand').hidden = $('cfg-collapse').hidden = root.ns.size === 0;
  }

  function drawNamespace(node) {
    const items = [];
    for (const child of [...node.ns.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const d = h('details', {'data-path': child.path, open: st.openNS.has(child.path)},
        h('summary', null, `${child.name}/`, ' ', h('span', {class: 'muted'}, `(${plural(child.count, 'value', 'values')})`)),
        drawNamespace(child));
      d.addEventListener('toggle', () => {
        if (d.open) st.openNS.add(child.path);
        else st.openNS.delete(child.path);
      });
      items.push(h('li', null, d));
    }
    for (const leaf of node.leaves.sort((a, b) => a.id.localeCompare(b.id))) {
      items.push(h('li', {class: 'leaf', 'data-id': leaf.id},
        h('span', {class: 'leaf-name'}, leaf.name),
        h('span', {class: 'leaf-value'}, h('span', {class: 'eq'}, '= '), leaf.value),
        leaf.id !== leaf.name ? h('span', {class: 'leaf-id'}, leaf.id) : null));
    }
    return h('ul', {role: 'list'}, items);
  }

  function expandAll(open) {
    for (const d of $('cfg-tree').querySelectorAll('details')) {
      d.open = open;
      if (open) st.openNS.add(d.dataset.path);
    }
    if (!open) st.openNS.clear();
  }

  // Events

  function eventItem(e) {
    const when = new Date(e.timestamp);
    const today = new Date().toDateString() === when.toDateString();
    const time = h('time', {datetime: when.toISOString(), title: when.toLocaleString()},
      today ? when.toLocaleTimeString([], {hour12: false}) : when.toLocaleString([], {hour12: false}));
    let cls = '';
    let desc;
    const p = e.payload;
    switch (e.type) {
      case 'service.join':
        cls = 'join';
        desc = [h('span', {class: 'mono'}, p && p.id), ' joined',
          p && p.tags && p.tags.length ? [' with tags ', p.tags.join(', ')] : '',
          p && p.session_id ? [' in session ', h('span', {class: 'mono'}, p.session_id)] : ''];
        break;
      case 'services.timeout': {
        cls = 'timeout';
        const svcs = Array.isArray(p) ? p : [];
        const session = svcs.length ? svcs[0].session_id : '';
        desc = svcs.length
          ? [session ? ['Session ', h('span', {class: 'mono'}, session), ' timed out: '] : 'Timed out: ',
            svcs.map((s, i) => [i ? ', ' : '', h('span', {class: 'mono'}, s.id)]), ' removed']
          : 'A session without services timed out';
        break;
      }
      case 'configuration_value.update':
        desc = [h('span', {class: 'mono'}, p && p.configuration_value_id), ' set to ', quote(p && p.new_value),
          p && p.old_value !== null && p.old_value !== undefined ? [' (was ', quote(p.old_value), ')'] : ' (new)'];
        break;
      case 'configuration_value.remove':
        desc = [h('span', {class: 'mono'}, p && p.configuration_value_id), ' removed',
          p && p.old_value !== null && p.old_value !== undefined ? [' (was ', quote(p.old_value), ')'] : ''];
        break;
      default:
        desc = JSON.stringify(p);
    }
    return h('li', {'data-id': e.id, 'data-type': e.type},
      time, h('span', {class: `etype ${cls}`}, e.type), h('span', {class: 'edesc'}, desc));
  }

  function quote(v) {
    const s = String(v === null || v === undefined ? '' : v);
    return `“${s.length > 120 ? `${s.slice(0, 117)}…` : s}”`;
  }

  // prependEvents puts events (oldest first) at the top of the feed,
  // newest first, keeping what the reader looks at where it is.
  function prependEvents(fresh) {
    if (!fresh.length) return;
    const listEl = $('ev-list');
    const anchor = listEl.firstElementChild;
    const before = anchor ? anchor.getBoundingClientRect().top : 0;
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0 && i >= fresh.length - MAX_EVENTS; i--) {
      const li = eventItem(fresh[i]);
      if (st.eventsLoaded) li.classList.add('fresh');
      frag.append(li);
    }
    listEl.prepend(frag);
    st.events = fresh.slice(-MAX_EVENTS).reverse().concat(st.events).slice(0, MAX_EVENTS);
    while (listEl.children.length > MAX_EVENTS) listEl.lastElementChild.remove();
    // Scrolled down into the feed: stay on the same events.
    if (anchor && anchor.isConnected && st.view === 'events' && window.scrollY > 0) {
      window.scrollBy(0, anchor.getBoundingClientRect().top - before);
    }
    renderEventState();
  }

  function renderEventState() {
    const n = st.events.length;
    let text;
    if (!st.eventsLoaded) text = st.auth ? 'Loading…' : '';
    else if (st.paused) text = st.held.length ? `Paused: ${plural(st.held.length, 'new event', 'new events')} waiting` : 'Paused: new events wait until you resume';
    else text = `Following the feed live${n >= MAX_EVENTS ? `, the latest ${MAX_EVENTS} shown` : ''}`;
    $('ev-state').textContent = text;
    $('count-events').textContent = st.paused && st.held.length ? `${n}+${st.held.length}` : String(n);
    $('ev-empty').hidden = n !== 0 || !st.eventsLoaded;
    $('ev-list').hidden = n === 0;
    const b = $('ev-pause');
    b.setAttribute('aria-pressed', String(st.paused));
    b.textContent = st.paused ? 'Resume' : 'Pause';
  }

  function togglePause() {
    st.paused = !st.paused;
    if (!st.paused) {
      const held = st.held;
      st.held = [];
      prependEvents(held);
    }
    renderEventState();
    if (!$('banner').hidden) return;
    setStatus(st.paused ? 'paused' : 'live', st.paused ? 'Live · feed paused' : 'Live');
  }

  // ---- Wiring ---------------------------------------------------------------

  function init() {
    $('signin-form').addEventListener('submit', onSignIn);
    $('signout').addEventListener('click', signOut);
    $('banner-retry').addEventListener('click', () => tick());
    $('svc-search').addEventListener('input', (e) => { st.filter.q = e.target.value.trim(); renderServices(); });
    $('svc-tag').addEventListener('change', (e) => setTag(e.target.value));
    $('svc-clear').addEventListener('click', clearFilter);
    $('cfg-expand').addEventListener('click', () => expandAll(true));
    $('cfg-collapse').addEventListener('click', () => expandAll(false));
    $('ev-pause').addEventListener('click', togglePause);
    // The skip link moves the focus, not the view.
    document.querySelector('.skip').addEventListener('click', (e) => {
      e.preventDefault();
      $(st.auth ? 'main' : 'username').focus();
    });
    window.addEventListener('hashchange', route);
    setInterval(drawBars, 200);
    const auth = loadAuth();
    if (auth) {
      start(auth, null);
    } else {
      showSignIn('');
    }
  }

  init();
})();
