// FlashKart HQ dashboard: plain DOM and SVG, no framework, no build step.
// Served by the cloud at /hq/ (this file at /hq/ui/app.js) under a strict CSP: no inline
// scripts, styles or handlers. All HQ-facing text comes from strings.js through t().
//
// The session is the cookie HQ's sign-in sets (HttpOnly); the page keeps only the CSRF token,
// which it gets back from /hq/api/me after every reload, and sends it on every non-GET request.
// Everything live comes from one EventSource (/admin/v1/dashboard/events: the whole snapshot
// at once and on every change); the screen is redrawn from it, and nothing polls.
(function () {
  'use strict';

  const t = window.t;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
  const SCREENS = ['overview', 'orders', 'stores', 'riders', 'catalog', 'charts', 'users', 'audit'];
  const SCREEN_ROLE = { users: 'admin', audit: 'admin' };
  const SCREEN_DATA = {
    stores: ['stores'], riders: ['riders'], catalog: ['products', 'coupons'], users: ['users'], audit: ['audit'],
  };
  // Every status an order can have, in the order it goes through them.
  const STATUSES = ['PENDING', 'CONFIRMED', 'ROUTED', 'ACCEPTED', 'PICKING', 'PACKED', 'READY', 'ASSIGNED',
    'PICKED_UP', 'DELIVERED', 'CLOSED', 'CANCELLED', 'REFUNDED'];
  const OPEN_COLUMNS = ['ACCEPTED', 'PICKING', 'PACKED', 'READY', 'ASSIGNED', 'PICKED_UP'];
  const CLOSED = ['DELIVERED', 'CLOSED', 'CANCELLED', 'REFUNDED'];
  const HEALTHS = ['ok', 'degraded', 'late', 'offline', 'paused'];
  // What PUT /admin/v1/products/{id} and PUT /admin/v1/riders/{id} accept (both refuse
  // unknown fields): an edit sends back what it read, restricted to these.
  const PRODUCT_FIELDS = ['name', 'sku', 'category_id', 'unit', 'pack_size', 'unit_weight_g', 'plu', 'active',
    'price_minor', 'currency', 'gtins'];
  const RIDER_FIELDS = ['home_store_id', 'name', 'vehicle', 'capacity', 'rating', 'shift', 'active'];

  const state = {
    me: null,
    csrf: null,
    screen: null,
    snap: null,
    stream: null,
    streamDown: false,
    reconnectTimer: null,
    reconnectDelay: 1000,
    data: {},
    loadErrors: {},
    results: {},
    code: null,
    panel: null,
    ui: newUi(),
  };

  function newUi() {
    return {
      pause: {},
      profile: { storeId: '' },
      rider: { vehicle: 'bicycle' },
      product: {},
      coupon: { active: true },
      user: { role: 'viewer' },
    };
  }

  // ---------------------------------------------------------------------------------
  // Small helpers

  function $(sel) { return document.querySelector(sel); }

  function setProps(el, props) {
    for (const key of Object.keys(props || {})) {
      const v = props[key];
      if (v === null || v === undefined || v === false) continue;
      if (key === 'class') el.setAttribute('class', v);
      else if (key === 'text') el.textContent = v;
      else if (key.slice(0, 2) === 'on') el.addEventListener(key.slice(2), v);
      else if (key === 'value') el.value = v;
      else if (key === 'checked' || key === 'disabled' || key === 'hidden' || key === 'selected'
        || key === 'required' || key === 'readOnly') el[key] = true;
      else if (key === 'key') el.dataset.key = v;
      else el.setAttribute(key, v === true ? '' : String(v));
    }
  }
  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach((c) => append(el, c)); return; }
    el.append(child instanceof Node ? child : String(child));
  }
  /** An HTML element: h('button', {class, text, onclick, 'aria-label'}, ...children). */
  function h(tag, props) {
    const el = document.createElement(tag);
    setProps(el, props);
    for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  /** An SVG element, the same way. */
  function s(tag, props) {
    const el = document.createElementNS(SVG_NS, tag);
    setProps(el, props);
    for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  let uid = 0;
  function nextId(prefix) { uid += 1; return prefix + '-' + uid; }

  /** A labelled input, select, textarea or checkbox bound to obj[prop]. */
  function field(opts) {
    const id = 'f-' + opts.key;
    const hintId = opts.hint ? id + '-hint' : null;
    const current = opts.obj ? opts.obj[opts.prop] : opts.value;
    const common = {
      id: id, key: opts.key, name: opts.key, 'aria-describedby': hintId,
      autocomplete: opts.autocomplete || 'off',
    };
    let control;
    if (opts.type === 'checkbox') {
      control = h('input', Object.assign(common, {
        type: 'checkbox', checked: !!current,
        onchange: (e) => { if (opts.obj) opts.obj[opts.prop] = e.target.checked; },
      }));
      return h('div', { class: 'field check' }, control, h('label', { for: id }, opts.label));
    }
    const onChange = (e) => {
      if (opts.obj) opts.obj[opts.prop] = e.target.value;
      if (opts.onInput) opts.onInput(e.target.value);
    };
    if (opts.options) {
      control = h('select', Object.assign(common, { onchange: onChange }));
      for (const o of opts.options) {
        control.append(h('option', { value: o.value, selected: String(o.value) === String(current ?? '') }, o.label));
      }
    } else if (opts.type === 'textarea') {
      control = h('textarea', Object.assign(common, { oninput: onChange, rows: opts.rows || 4, spellcheck: 'false' }));
      control.value = current ?? '';
    } else {
      control = h('input', Object.assign(common, {
        type: opts.type || 'text', oninput: onChange, inputmode: opts.inputmode, spellcheck: 'false',
      }));
      control.value = current ?? '';
    }
    return h('div', { class: 'field' + (opts.wide ? ' wide' : '') },
      h('label', { for: id }, opts.label),
      control,
      opts.hint ? h('p', { class: 'hint', id: hintId }, opts.hint) : null);
  }

  function button(text, onclick, opts) {
    opts = opts || {};
    return h('button', {
      type: opts.submit ? 'submit' : 'button',
      class: 'btn ' + (opts.kind || 'secondary') + (opts.small ? ' small' : ''),
      onclick: onclick || null, key: opts.key, 'aria-label': opts.label, disabled: opts.disabled,
    }, text);
  }

  function form(key, onsubmit, children, opts) {
    return h('form', {
      key: key, novalidate: true, class: 'form', 'aria-label': opts && opts.label,
      onsubmit: (e) => { e.preventDefault(); onsubmit(e.submitter || e.target.querySelector('[type=submit]')); },
    }, children);
  }

  /** A section with a heading that names it (a region for assistive technology). */
  function section(title, children, opts) {
    opts = opts || {};
    const hid = nextId('h');
    return h('section', { class: opts.class || 'card', 'aria-labelledby': hid },
      h(opts.level || 'h2', { id: hid }, title), children);
  }

  function roleAtLeast(role) {
    return !!state.me && (ROLE_RANK[state.me.role] || 0) >= ROLE_RANK[role];
  }
  const canOperate = () => roleAtLeast('operator');

  /** An order's short reference for people: order ids are long UUIDs, their end tells them apart. */
  function ref(id) {
    const text = String(id || '');
    return text.length > 12 ? text.slice(-6) : text;
  }

  function parseTime(iso) {
    const ms = Date.parse(iso || '');
    return Number.isNaN(ms) ? null : ms;
  }
  /** Now by the server's clock (the snapshot's time plus what passed since it arrived). */
  function serverNow() {
    if (state.snap && state.snapAt) {
      const at = parseTime(state.snap.at);
      if (at !== null) return at + (Date.now() - state.snapAt);
    }
    return Date.now();
  }
  function fmtTime(iso, seconds) {
    const ms = parseTime(iso);
    if (ms === null) return iso ? String(iso) : t('common.dash');
    const opts = seconds ? { hour: '2-digit', minute: '2-digit', second: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
    return new Date(ms).toLocaleTimeString(t('_locale'), opts);
  }
  function fmtDateTime(iso) {
    const ms = parseTime(iso);
    if (ms === null) return iso ? String(iso) : t('common.dash');
    return new Date(ms).toLocaleString(t('_locale'), { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  function fmtAgo(iso) {
    const ms = parseTime(iso);
    if (ms === null) return t('common.never');
    const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 5) return t('common.justNow');
    if (s < 90) return t('common.agoSeconds', { n: s });
    const m = Math.round(s / 60);
    if (m < 90) return t('common.agoMinutes', { n: m });
    return t('common.agoHours', { n: Math.round(m / 60) });
  }
  function fmtMoney(minor, currency) {
    if (minor === null || minor === undefined || minor === '') return t('common.dash');
    try {
      return new Intl.NumberFormat(t('_locale'), { style: 'currency', currency: currency || t('_currency') }).format(Number(minor) / 100);
    } catch (e) {
      return (Number(minor) / 100).toFixed(2) + ' ' + (currency || '');
    }
  }
  function majorText(minor) {
    return minor === null || minor === undefined ? '' : (Number(minor) / 100).toFixed(2);
  }
  /** "1.99" or "1,99" as 199; null when it is not a sum of money. */
  function parseMinor(text) {
    const clean = String(text ?? '').trim().replace(',', '.');
    if (!/^\d+(\.\d{1,2})?$/.test(clean)) return null;
    return Math.round(Number(clean) * 100);
  }
  function fmtShare(share) {
    return share === null || share === undefined ? t('common.dash') : t('common.percent', { n: Math.round(Number(share) * 100) });
  }
  function fmtSeconds(sec) {
    return sec === null || sec === undefined ? t('common.dash') : t('common.seconds', { n: Math.round(Number(sec)) });
  }
  function num(value) {
    return value === null || value === undefined ? t('common.dash') : String(value);
  }
  /** A server message as a sentence: capital first letter. */
  function sentence(text) {
    const str = String(text || '');
    return str.charAt(0).toUpperCase() + str.slice(1);
  }
  function statusWord(status) {
    return STATUSES.includes(status) ? t('status.' + status) : String(status || t('common.dash'));
  }
  function healthWord(health) {
    return HEALTHS.includes(health) ? t('health.' + health) : t('health.unknown');
  }
  function healthTag(health) {
    const cls = { ok: 'ok', degraded: 'risk', late: 'late', offline: 'offline', paused: 'paused' }[health] || 'offline';
    return h('span', { class: 'tag ' + cls }, healthWord(health));
  }
  function riderWord(st) {
    return ['offline', 'idle', 'busy'].includes(st) ? t('rider.' + st) : String(st || t('common.dash'));
  }

  function stores() { return (state.snap && state.snap.stores) || []; }
  function storeName(id) {
    const st = stores().find((x) => x.id === id);
    return st ? st.name : (id || t('common.dash'));
  }
  function riderName(id) {
    if (!id) return t('orders.unassigned');
    const r = ((state.snap && state.snap.riders) || []).find((x) => x.id === id);
    return r ? r.name + ' (' + id + ')' : id;
  }
  function openOrders() {
    return ((state.snap && state.snap.orders) || []).filter((o) => !CLOSED.includes(o.status));
  }
  /** The words of an order's timing: late, at risk or on time, and by how much. */
  function dueWords(o) {
    const promised = parseTime(o.promised_at);
    let when = t('order.noPromise');
    if (promised !== null) {
      const min = Math.round((promised - serverNow()) / 60000);
      when = min > 0 ? t('order.dueIn', { n: min }) : min === 0 ? t('order.dueNow') : t('order.lateBy', { n: -min });
    }
    if (o.late) return { cls: 'late', word: t('order.late'), when: when };
    if (o.at_risk) return { cls: 'risk', word: t('order.atRisk'), when: when };
    return { cls: 'ok', word: t('order.onTime'), when: when };
  }
  function dueTag(o) {
    const d = dueWords(o);
    return [h('span', { class: 'tag ' + d.cls }, d.word), ' ', h('span', { class: 'muted' }, d.when)];
  }

  // ---------------------------------------------------------------------------------
  // Messages: one alert region (errors), one status region (confirmations)

  let noticeTimer = null;
  function showAlert(message) {
    $('#alert').textContent = message;
    $('#alert-box').classList.add('shown');
  }
  function clearAlert() {
    $('#alert').textContent = '';
    $('#alert-box').classList.remove('shown');
  }
  function showNotice(message) {
    const el = $('#notice');
    el.textContent = message;
    el.classList.add('shown');
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(clearNotice, 12000);
  }
  function clearNotice() {
    const el = $('#notice');
    el.textContent = '';
    el.classList.remove('shown');
  }

  // ---------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message, data) {
      super(message);
      this.status = status;
      this.code = code;
      this.data = data;
    }
  }

  /** One request; resolves to {status, data}, rejects with an ApiError. */
  async function request(method, path, body, opts) {
    opts = opts || {};
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    let res;
    try {
      res = await fetch(path, {
        method: method, headers: headers, cache: 'no-store', credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', t('error.network'), null);
    }
    const text = await res.text().catch(() => '');
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = text; } }
    if (res.status === 401 && !opts.noSession) {
      sessionEnded();
      throw new ApiError(401, 'unauthorized', t('session.ended'), data);
    }
    if (!res.ok) {
      let message = data && typeof data === 'object' && data.message ? data.message : t('error.status', { status: res.status });
      const retry = res.headers.get('Retry-After');
      if (res.status === 429 && retry && !(data && data.message)) message = t('signin.throttled', { n: retry });
      throw new ApiError(res.status, (data && data.error) || 'error', message, data);
    }
    return { status: res.status, data: data };
  }
  async function api(method, path, body, opts) {
    return (await request(method, path, body, opts)).data;
  }
  const enc = encodeURIComponent;

  /**
   * Runs a control: the button is disabled while its request runs, and the API's answer (the
   * error's message on failure) is kept under `key` and shown beside the control.
   */
  async function control(key, btn, call, success) {
    // A disabled button loses focus: it is given back (by its key) once the answer is shown.
    const focusKey = btn && btn.dataset.key;
    if (btn) btn.disabled = true;
    try {
      const answer = await call();
      state.results[key] = { ok: true, status: answer.status, message: success(answer.data), body: answer.data };
      return answer;
    } catch (err) {
      if (err.status === 401) return null;
      if (err instanceof ApiError) {
        state.results[key] = {
          ok: false, status: err.status, message: t('common.refused', { status: err.status, message: sentence(err.message) }),
          body: err.data,
        };
      } else {
        state.results[key] = { ok: false, status: 0, message: sentence(err.message || String(err)), body: null };
      }
      return null;
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
      render();
      renderPanel();
      refocus(focusKey);
      const shown = document.querySelector('[data-result="' + CSS.escape(key) + '"]');
      if (shown) shown.scrollIntoView({ block: 'nearest' });
    }
  }
  function refocus(key) {
    const active = document.activeElement;
    if (!key || (active && active !== document.body)) return;
    const el = document.querySelector('[data-key="' + CSS.escape(key) + '"]');
    if (el) el.focus({ preventScroll: true });
  }
  /** A refusal decided here, before any request (a missing field), shown like the API's. */
  function refuseHere(key, message) {
    state.results[key] = { ok: false, status: 0, message: message, body: null };
    render();
    renderPanel();
  }

  /** The answer kept under `key`, as a status (or alert) with the API's JSON under it. */
  function resultView(key) {
    const r = state.results[key];
    if (!r) return null;
    return h('div', { class: 'result ' + (r.ok ? 'ok' : 'err'), role: r.ok ? 'status' : 'alert', 'data-result': key },
      h('p', null, r.message),
      r.status ? h('details', null,
        h('summary', null, t('common.apiAnswer')),
        h('pre', null, r.status + (r.body !== null && r.body !== undefined && r.body !== ''
          ? '\n' + (typeof r.body === 'string' ? r.body : JSON.stringify(r.body, null, 2)) : ''))) : null);
  }

  // ---------------------------------------------------------------------------------
  // Session

  async function boot() {
    translateStatic();
    installGlobalHandlers();
    try {
      const me = await api('GET', '/hq/api/me', undefined, { noSession: true });
      startSession(me);
    } catch (err) {
      showSignIn(err.status === 401 ? null : err.message);
    }
  }

  function translateStatic() {
    document.title = t('app.title');
    document.documentElement.lang = t('_lang');
    for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
    for (const el of document.querySelectorAll('[data-t-label]')) el.setAttribute('aria-label', t(el.dataset.tLabel));
  }

  function installGlobalHandlers() {
    $('#sign-out').addEventListener('click', (e) => signOut(e.currentTarget));
    $('#alert-dismiss').addEventListener('click', clearAlert);
    for (const btn of document.querySelectorAll('#nav [data-screen]')) {
      btn.addEventListener('click', () => go(btn.dataset.screen, { focus: true }));
    }
    window.addEventListener('hashchange', () => {
      const screen = location.hash.slice(1);
      if (state.me && SCREENS.includes(screen) && screen !== state.screen) go(screen, { focus: true });
    });
    document.addEventListener('keydown', (e) => {
      const active = document.activeElement;
      if (e.key === 'Escape' && state.panel && (!active || active === document.body || $('#panel').contains(active))) closePanel();
    });
  }

  function startSession(me) {
    state.me = { username: me.username, name: me.name, role: me.role, expires_at: me.expires_at };
    state.csrf = me.csrf_token;
    $('#topbar').hidden = false;
    $('#who-name').textContent = t('nav.signedInAs', { name: me.name || me.username, role: t('role.' + me.role) });
    for (const btn of document.querySelectorAll('#nav [data-screen]')) btn.hidden = !allowed(btn.dataset.screen);
    updateStreamState();
    connectStream();
    // Relative times ("2 min ago", "due in 5 min") age between snapshots: the slots that show
    // them are looked at again every 15 s (a redraw here, never a request).
    clearInterval(state.tick);
    state.tick = setInterval(() => { if (state.snap) updateLive(); }, 15000);
    const wanted = location.hash.slice(1);
    go(SCREENS.includes(wanted) && allowed(wanted) ? wanted : 'overview');
  }

  function clearSession() {
    closeStream();
    clearInterval(state.tick);
    clearTimeout(state.reconnectTimer);
    state.me = null;
    state.csrf = null;
    state.snap = null;
    state.streamDown = false;
    state.data = {};
    state.loadErrors = {};
    state.results = {};
    state.code = null;
    state.panel = null;
    state.ui = newUi();
    $('#summary').textContent = '';
    $('#stream-state').textContent = '';
    $('#conn-banner').textContent = '';
    $('#conn-banner').classList.remove('shown');
    renderPanel();
  }

  function sessionEnded() {
    if (!state.me) return;
    clearSession();
    showSignIn();
    clearNotice();
    showAlert(t('session.ended'));
  }

  async function signOut(btn) {
    if (btn) btn.disabled = true;
    try {
      await request('POST', '/hq/api/sign-out', undefined, { noSession: true });
    } catch (e) { /* signed out here anyway */ }
    if (btn) btn.disabled = false;
    clearSession();
    showSignIn();
    clearAlert();
    showNotice(t('signin.signedOut'));
  }

  function allowed(screen) {
    const need = SCREEN_ROLE[screen];
    return !need || roleAtLeast(need);
  }

  // ---------------------------------------------------------------------------------
  // Sign-in

  function showSignIn(message) {
    state.screen = null;
    $('#topbar').hidden = true;
    const main = $('#main');
    const user = field({ key: 'signin-username', label: t('signin.username'), autocomplete: 'username' });
    const pass = field({ key: 'signin-password', label: t('signin.password'), type: 'password', autocomplete: 'current-password' });
    const userInput = user.querySelector('input');
    const passInput = pass.querySelector('input');
    const submit = h('button', { type: 'submit', class: 'btn primary' }, t('signin.submit'));
    const f = h('form', {
      class: 'form', novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const username = userInput.value.trim();
        const password = passInput.value;
        if (!username || !password) { showAlert(t('signin.missing')); (username ? passInput : userInput).focus(); return; }
        submit.disabled = true;
        submit.textContent = t('signin.busy');
        try {
          const me = await api('POST', '/hq/api/sign-in', { username: username, password: password }, { noSession: true });
          clearAlert();
          clearNotice();
          startSession(me);
        } catch (err) {
          // A 401 says only "unknown credential"; a 429 says when to try again.
          showAlert(err.status === 401 ? t('signin.failed') : sentence(err.message));
          passInput.value = '';
          passInput.focus();
        } finally {
          if (submit.isConnected) { submit.disabled = false; submit.textContent = t('signin.submit'); }
        }
      },
    }, user, pass, h('div', { class: 'actions' }, submit));
    main.replaceChildren(h('section', { class: 'signin', 'aria-labelledby': 'signin-title' },
      h('p', { class: 'signin-brand' }, t('app.title')),
      h('h1', { id: 'signin-title', tabindex: '-1' }, t('signin.title')),
      h('p', null, t('signin.intro')),
      f));
    if (message) showAlert(message);
    userInput.focus();
  }

  // ---------------------------------------------------------------------------------
  // Navigation and rendering
  //
  // A screen is drawn whole when it is shown or after a control ran; what the snapshot feeds
  // lives in "live" slots that are redrawn on their own, and only when what they show changed,
  // so a form being filled in is never redrawn under the operator's hands.

  let liveSlots = [];

  function go(screen, opts) {
    opts = opts || {};
    if (!state.me) return;
    if (!allowed(screen)) screen = 'overview';
    state.screen = screen;
    if (location.hash.slice(1) !== screen) history.replaceState(null, '', '#' + screen);
    for (const btn of document.querySelectorAll('#nav [data-screen]')) {
      if (btn.dataset.screen === screen) btn.setAttribute('aria-current', 'page');
      else btn.removeAttribute('aria-current');
    }
    render();
    if (opts.focus) {
      const title = $('#main h1');
      if (title) title.focus();
    }
    loadScreenData(screen);
  }

  async function loadScreenData(screen) {
    const names = SCREEN_DATA[screen] || [];
    if (!names.length) return;
    await reload(names);
    if (state.screen === screen) render();
  }

  const LOADERS = {
    stores: () => api('GET', '/admin/v1/stores'),
    riders: () => api('GET', '/admin/v1/riders'),
    products: () => api('GET', '/admin/v1/products'),
    coupons: () => api('GET', '/admin/v1/coupons'),
    users: () => api('GET', '/admin/v1/hq-users'),
    audit: () => api('GET', '/admin/v1/audit?limit=100'),
  };
  async function reload(names) {
    await Promise.all(names.map(async (name) => {
      try {
        state.data[name] = await LOADERS[name]();
        state.loadErrors[name] = null;
      } catch (err) {
        state.loadErrors[name] = err.status === 401 ? null : err;
      }
    }));
  }
  function loadError(name) {
    const err = state.loadErrors[name];
    return err ? h('p', { class: 'result err', role: 'alert' }, t('common.refused', { status: err.status, message: sentence(err.message) })) : null;
  }

  /**
   * Restores focus (and the caret) after a redraw to the element with the same data-key (or,
   * for headings, the same id), so a live update never takes the focus away.
   */
  function keepFocus(container, redraw) {
    const active = document.activeElement;
    const inside = active && container.contains(active);
    const key = inside ? active.dataset.key : null;
    const id = inside && !key ? active.id : null;
    let sel = null;
    if (key) { try { sel = [active.selectionStart, active.selectionEnd]; } catch (e) { sel = null; } }
    redraw();
    if (id) {
      const el = document.getElementById(id);
      if (el && container.contains(el)) el.focus({ preventScroll: true });
    }
    if (key) {
      const el = container.querySelector('[data-key="' + CSS.escape(key) + '"]');
      if (el) {
        el.focus({ preventScroll: true });
        if (sel && sel[0] !== null && sel[0] !== undefined) { try { el.setSelectionRange(sel[0], sel[1]); } catch (e) { /* not a text field */ } }
      }
    }
  }

  function render() {
    const screen = screens[state.screen];
    if (!screen || !state.me) return;
    const main = $('#main');
    keepFocus(main, () => {
      liveSlots = [];
      main.replaceChildren(h('div', { class: 'screen screen-' + state.screen }, screen()));
    });
    main.classList.toggle('stale', state.streamDown);
  }

  /** A slot fed by the snapshot: sig() says what it shows, draw() draws it. */
  function live(name, sig, draw, opts) {
    const el = h((opts && opts.tag) || 'div', { class: 'live ' + ((opts && opts.class) || ''), 'data-live': name });
    const slot = { name: name, el: el, sig: sig, draw: draw, last: null };
    fill(slot);
    liveSlots.push(slot);
    return el;
  }
  function fill(slot) {
    const now = state.snap ? JSON.stringify(slot.sig()) : null;
    if (now !== null && now === slot.last) return;
    slot.last = now;
    keepFocus(slot.el, () => {
      slot.el.replaceChildren();
      append(slot.el, state.snap ? slot.draw() : h('p', { class: 'empty' }, t('common.loading')));
    });
  }
  function updateLive() {
    for (const slot of liveSlots) if (slot.el.isConnected) fill(slot);
  }

  // ---------------------------------------------------------------------------------
  // The live stream (SSE)

  function closeStream() {
    if (state.stream) { state.stream.close(); state.stream = null; }
  }

  function connectStream() {
    closeStream();
    clearTimeout(state.reconnectTimer);
    if (!state.me) return;
    // Same origin: the browser sends the session cookie; no token in the URL.
    const es = new EventSource('/admin/v1/dashboard/events');
    state.stream = es;
    es.addEventListener('snapshot', (ev) => { if (es === state.stream) onSnapshot(ev); });
    es.addEventListener('error', () => { if (es === state.stream) onStreamError(es); });
  }

  function onSnapshot(ev) {
    let snap;
    try { snap = JSON.parse(ev.data); } catch (e) { return; }
    if (!snap || typeof snap !== 'object') return;
    state.snap = snap;
    state.snapAt = Date.now();
    state.reconnectDelay = 1000;
    if (state.streamDown) {
      state.streamDown = false;
      $('#main').classList.remove('stale');
    }
    updateStreamState();
    updateSummary();
    updateLive();
    panelOnSnapshot();
  }

  async function onStreamError(es) {
    state.streamDown = true;
    $('#main').classList.add('stale');
    updateStreamState();
    if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Closed for good (a refusal): is the session still valid?
    try {
      await api('GET', '/hq/api/me');
    } catch (err) {
      if (err.status === 401) return; // sessionEnded() ran
    }
    if (!state.me) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connectStream, state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
  }

  function updateStreamState() {
    const el = $('#stream-state');
    const banner = $('#conn-banner');
    let text;
    if (!state.me) text = '';
    else if (state.streamDown) text = t('stream.reconnecting');
    else if (!state.snap) text = t('stream.connecting');
    else text = t('stream.live', { time: fmtTime(state.snap.at, true) });
    if (el.textContent !== text) el.textContent = state.streamDown ? '' : text;
    el.classList.toggle('down', state.streamDown);
    const bannerText = state.me && state.streamDown ? t('stream.reconnecting') : '';
    if (banner.textContent !== bannerText) banner.textContent = bannerText;
    banner.classList.toggle('shown', !!bannerText);
  }

  function updateSummary() {
    const orders = openOrders();
    const text = t('summary.text', {
      open: orders.length,
      risk: orders.filter((o) => o.at_risk && !o.late).length,
      late: orders.filter((o) => o.late).length,
      attention: stores().filter((x) => x.health !== 'ok').length,
      online: ((state.snap && state.snap.riders) || []).filter((r) => r.state && r.state !== 'offline').length,
    });
    const el = $('#summary');
    if (el.textContent !== text) el.textContent = text;
  }

  // ---------------------------------------------------------------------------------
  // The city map (SVG, from coordinates: an equirectangular projection fitted to the bounding
  // box of every store's service area)

  /** The rings of a GeoJSON Polygon or MultiPolygon, as arrays of [lon, lat]. */
  function rings(geometry) {
    if (!geometry || !Array.isArray(geometry.coordinates)) return [];
    if (geometry.type === 'Polygon') return geometry.coordinates;
    if (geometry.type === 'MultiPolygon') return [].concat(...geometry.coordinates);
    return [];
  }

  function projection(list) {
    let minLon = Infinity; let maxLon = -Infinity; let minLat = Infinity; let maxLat = -Infinity;
    const see = (lon, lat) => {
      if (typeof lon !== 'number' || typeof lat !== 'number') return;
      minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon);
      minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
    };
    for (const st of list) for (const ring of rings(st.service_area)) for (const p of ring) see(p[0], p[1]);
    if (minLon === Infinity) for (const st of list) see(st.lon, st.lat);
    if (minLon === Infinity) return null;
    const padLon = Math.max((maxLon - minLon) * 0.04, 0.002);
    const padLat = Math.max((maxLat - minLat) * 0.04, 0.002);
    minLon -= padLon; maxLon += padLon; minLat -= padLat; maxLat += padLat;
    const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = (maxLon - minLon) * k;
    const spanY = maxLat - minLat;
    const W = 1000;
    const H = Math.max(420, Math.min(760, Math.round(W * spanY / spanX)));
    const margin = 24;
    const scale = Math.min((W - 2 * margin) / spanX, (H - 2 * margin) / spanY);
    const ox = (W - spanX * scale) / 2;
    const oy = (H - spanY * scale) / 2;
    return {
      W: W, H: H,
      x: (lon) => ox + (lon - minLon) * k * scale,
      y: (lat) => oy + (maxLat - lat) * scale,
    };
  }

  function hash(text) {
    let n = 0;
    for (const c of String(text)) n = (n * 31 + c.charCodeAt(0)) >>> 0;
    return n;
  }

  function pinPath(x, y) {
    return 'M' + x.toFixed(1) + ' ' + y.toFixed(1) + 'c-5 -8 -10 -12 -10 -19a10 10 0 1 1 20 0c0 7 -5 11 -10 19z';
  }

  function mapView() {
    const list = stores();
    const proj = projection(list);
    const titleId = nextId('map-title');
    if (!proj) return h('p', { class: 'empty' }, t('overview.mapEmpty'));
    const tipText = s('text', { x: 8, y: 19 });
    const tipRect = s('rect', { x: 0, y: 0, width: 10, height: 28, rx: 5 });
    const tip = s('g', { class: 'tip', visibility: 'hidden', 'aria-hidden': 'true' }, tipRect, tipText);
    const showTip = (text, x, y) => {
      tipText.textContent = text;
      const width = Math.round(text.length * 7.4 + 16);
      const left = Math.max(4, Math.min(proj.W - width - 4, x - width / 2));
      const top = Math.max(4, y - 62);
      tipRect.setAttribute('width', width);
      tip.setAttribute('transform', 'translate(' + left.toFixed(0) + ' ' + top.toFixed(0) + ')');
      tip.setAttribute('visibility', 'visible');
    };
    const hideTip = () => tip.setAttribute('visibility', 'hidden');

    const areas = list.map((st) => {
      const d = rings(st.service_area).map((ring) => ring.map((p, i) =>
        (i ? 'L' : 'M') + proj.x(p[0]).toFixed(1) + ' ' + proj.y(p[1]).toFixed(1)).join('') + 'Z').join('');
      return d ? s('path', { class: 'area h-' + (HEALTHS.includes(st.health) ? st.health : 'offline'), d: d, 'fill-rule': 'evenodd' },
        s('title', null, t('map.store', { name: st.name, health: healthWord(st.health) }))) : null;
    });

    const riders = ((state.snap && state.snap.riders) || [])
      .filter((r) => r.state && r.state !== 'offline' && typeof r.lat === 'number' && typeof r.lon === 'number')
      .map((r) => {
        const label = t('map.rider', { name: r.name || r.id, state: riderWord(r.state) });
        return s('circle', {
          class: r.state === 'busy' ? 'rider-busy' : 'rider-idle', cx: proj.x(r.lon).toFixed(1), cy: proj.y(r.lat).toFixed(1),
          r: 6, role: 'img', 'aria-label': label,
        }, s('title', null, label));
      });

    const pins = openOrders().filter((o) => typeof o.lat === 'number' && typeof o.lon === 'number').map((o) => {
      const n = hash(o.id);
      const x = proj.x(o.lon) + ((n % 17) - 8);
      const y = proj.y(o.lat) + (((n >> 5) % 17) - 8);
      const flagged = o.late || o.at_risk;
      const flag = o.late ? t('order.late') : o.at_risk ? t('order.atRisk') : '';
      const label = t('map.order', {
        id: ref(o.id), status: statusWord(o.status), store: storeName(o.store_id),
        flag: flag ? t('map.orderFlag', { flag: flag }) : '',
      });
      const selected = state.panel && state.panel.id === o.id;
      const g = s('g', {
        class: 'pin' + (flagged ? ' flagged' : '') + (selected ? ' selected' : ''), tabindex: '0', role: 'button',
        'aria-label': label, key: 'pin-' + o.id,
        onclick: () => openOrder(o.id),
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openOrder(o.id); } },
        onmouseenter: () => showTip(label, x, y), onmouseleave: hideTip,
        onfocus: () => showTip(label, x, y), onblur: hideTip,
      }, s('title', null, label), s('path', { d: pinPath(x, y) }),
      flagged ? s('text', { x: x.toFixed(1), y: (y - 15).toFixed(1) }, '!') : null);
      return g;
    });

    // Store markers under the pins, their names over everything (moved down where two would
    // overlap); the marker carries the same words for assistive technology.
    const placed = [];
    const labels = [];
    const markers = list.slice().sort((a, b) => b.lat - a.lat).map((st) => {
      if (typeof st.lat !== 'number' || typeof st.lon !== 'number') return null;
      const x = proj.x(st.lon);
      const y = proj.y(st.lat);
      const health = HEALTHS.includes(st.health) ? st.health : 'offline';
      const text = t('map.storeLabel', { name: st.name, health: healthWord(st.health) });
      const width = text.length * 8.6;
      const toLeft = x + 16 + width > proj.W;
      const lx = toLeft ? x - 16 - width : x + 16;
      let ly = y + 5;
      for (let tries = 0; tries < 12 && placed.some((b) => Math.abs(b.y - ly) < 20 && b.x < lx + width && lx < b.x + b.w); tries++) ly += 22;
      placed.push({ x: lx, y: ly, w: width });
      const aria = t('map.storeAria', { name: st.name, health: healthWord(st.health), open: st.open_orders ?? 0 });
      labels.push(s('text', { class: 'label', x: lx.toFixed(1), y: ly.toFixed(1) }, text));
      return s('g', { class: 'store', role: 'img', 'aria-label': aria },
        s('title', null, aria),
        s('circle', { class: 'store-marker h-' + health, cx: x.toFixed(1), cy: y.toFixed(1), r: 11 }));
    });

    const svg = s('svg', {
      class: 'map', viewBox: '0 0 ' + proj.W + ' ' + proj.H, role: 'group', 'aria-labelledby': titleId,
      preserveAspectRatio: 'xMidYMid meet',
    }, s('title', { id: titleId }, t('overview.mapLabel')),
    s('g', { class: 'areas' }, areas), s('g', { class: 'stores' }, markers), s('g', { class: 'riders' }, riders),
    s('g', { class: 'pins' }, pins), s('g', { class: 'labels', 'aria-hidden': 'true' }, labels), tip);
    return h('div', { class: 'map-wrap' }, svg, legend());
  }

  function legend() {
    const icon = (...children) => s('svg', { viewBox: '0 0 20 20', 'aria-hidden': 'true' }, children);
    return h('ul', { class: 'legend', 'aria-label': t('map.legend') },
      h('li', null, icon(s('circle', { class: 'store-marker h-ok', cx: 10, cy: 10, r: 7 })), t('map.legendStore')),
      h('li', null, icon(s('rect', { class: 'area h-ok', x: 2, y: 2, width: 16, height: 16 })), t('map.legendArea')),
      h('li', null, icon(s('path', { d: pinPath(10, 19), class: 'pin-icon' })), t('map.legendOrder')),
      h('li', null, icon(s('path', { d: pinPath(10, 19), fill: '#b00020' }), s('text', { x: 10, y: 8, fill: '#fff', 'font-size': 10, 'text-anchor': 'middle' }, '!')), t('map.legendRisk')),
      h('li', null, icon(s('circle', { class: 'rider-busy', cx: 10, cy: 10, r: 6 })), t('map.legendBusy')),
      h('li', null, icon(s('circle', { class: 'rider-idle', cx: 10, cy: 10, r: 6 })), t('map.legendIdle')),
      h('li', null, t('map.legendOffline')));
  }

  // ---------------------------------------------------------------------------------
  // Shared views of the snapshot

  function storeSummary(st) {
    return h('dl', { class: 'figures' },
      h('dt', null, t('store.health')), h('dd', null, healthTag(st.health),
        st.paused && st.paused_reason ? [' ', h('span', { class: 'muted' }, t('store.pausedBecause', { reason: st.paused_reason }))] : null),
      h('dt', null, t('store.online')), h('dd', null,
        t(st.online ? 'store.onlineYes' : 'store.onlineNo', { when: fmtAgo(st.last_contact_at) })),
      h('dt', null, t('store.open')), h('dd', null, num(st.open_orders)),
      h('dt', null, t('store.atRisk')), h('dd', { class: st.at_risk ? 'warm' : null }, num(st.at_risk)),
      h('dt', null, t('store.late')), h('dd', { class: st.late ? 'hot' : null }, num(st.late)));
  }

  function storeFigures(st) {
    return h('dl', { class: 'figures' },
      h('dt', null, t('store.health')), h('dd', null, healthTag(st.health),
        st.paused && st.paused_reason ? [' ', h('span', { class: 'muted' }, t('store.pausedBecause', { reason: st.paused_reason }))] : null),
      h('dt', null, t('store.online')), h('dd', null,
        t(st.online ? 'store.onlineYes' : 'store.onlineNo', { when: fmtAgo(st.last_contact_at) })),
      h('dt', null, t('store.open')), h('dd', null, num(st.open_orders)),
      h('dt', null, t('store.atRisk')), h('dd', null, num(st.at_risk)),
      h('dt', null, t('store.late')), h('dd', null, num(st.late)),
      h('dt', null, t('store.delivered1h')), h('dd', null, num(st.delivered_1h)),
      h('dt', null, t('store.pickedUp1h')), h('dd', null, num(st.picked_up_1h)),
      h('dt', null, t('store.onTime1h')), h('dd', null, fmtShare(st.on_time_share_1h)),
      h('dt', null, t('store.pickToReady1h')), h('dd', null, fmtSeconds(st.pick_to_ready_s_1h)),
      h('dt', null, t('store.stockOuts')), h('dd', null, num(st.stock_outs)),
      h('dt', null, t('store.lowStock')), h('dd', null, num(st.low_stock)),
      h('dt', null, t('store.sla')), h('dd', null, st.sla_minutes ? t('store.slaValue', { n: st.sla_minutes }) : t('common.dash')),
      h('dt', null, t('store.capacity')), h('dd', null, st.capacity ? t('store.capacityValue', { n: st.capacity }) : t('common.dash')),
      h('dt', null, t('store.syncLag')), h('dd', { class: st.sync_lag_s >= 60 ? 'warm' : null },
        st.sync_lag_s === null || st.sync_lag_s === undefined ? t('store.syncLagNone')
          : t('store.syncLagValue', { lag: fmtLag(st.sync_lag_s), when: fmtAgo(st.sync_lag_at) })),
      h('dt', null, t('store.rating7d')), h('dd', null, fmtRatings(st)),
      h('dt', null, t('store.devices')), h('dd', null, deviceList(st)));
  }

  /** Customers' ratings of the last 7 days: mean order and delivery stars and how many. */
  function fmtRatings(st) {
    if (!st.ratings_7d) return h('span', { class: 'muted' }, t('store.rating7dNone'));
    const stars = (v) => (v === null || v === undefined ? t('common.dash') : Number(v).toFixed(1));
    return t('store.rating7dValue', {
      n: st.ratings_7d, order: stars(st.rating_order_7d), delivery: stars(st.rating_delivery_7d),
    });
  }

  /** A delay in words: tenths of a second under ten seconds, then whole seconds or minutes. */
  function fmtLag(sec) {
    const n = Number(sec);
    if (n < 10) return t('common.secondsTenths', { n: n.toFixed(1) });
    if (n < 120) return t('common.seconds', { n: Math.round(n) });
    return t('common.minutes', { n: Math.round(n / 60) });
  }

  /** The store's devices as it reports them: a word for each, faults and reasons spelled out. */
  function deviceList(st) {
    const devices = st.devices || [];
    if (!devices.length) return h('span', { class: 'muted' }, t('store.devicesNone'));
    return h('ul', { class: 'plain devices', 'aria-label': t('store.devicesOf', { name: st.name }) }, devices.map((d) => {
      const faulted = d.faults && d.faults.length > 0;
      const down = d.health !== 'connected' || faulted;
      // A connected printer with faults is a printer that cannot print: the fault is the news.
      const word = faulted && d.health === 'connected' ? t('device.fault')
        : ['connecting', 'connected', 'disconnected', 'unhealthy'].includes(d.health) ? t('device.' + d.health) : String(d.health);
      const detail = [d.reason, ...(d.faults || [])].filter(Boolean).join(', ');
      return h('li', null,
        h('span', { class: 'tag ' + (down ? 'late' : 'ok') }, word), ' ',
        h('strong', null, d.id), ' ', h('span', { class: 'muted' }, d.kind),
        detail ? [' ', h('span', null, '(' + detail + ')')] : null);
    }));
  }

  function riderCounts() {
    const riders = (state.snap && state.snap.riders) || [];
    const sum = (k) => riders.reduce((acc, r) => acc + (Number(r[k]) || 0), 0);
    const item = (label, value) => h('div', null, h('dt', null, label), h('dd', null, String(value)));
    return h('dl', { class: 'counts' },
      item(t('riders.online'), riders.filter((r) => r.state && r.state !== 'offline').length),
      item(t('riders.busy'), riders.filter((r) => r.state === 'busy').length),
      item(t('riders.idle'), riders.filter((r) => r.state === 'idle').length),
      item(t('riders.offers'), sum('offers_1h')),
      item(t('riders.declines'), sum('declines_1h')),
      item(t('riders.deliveries'), sum('deliveries_1h')));
  }

  function ordersSig() {
    return openOrders().map((o) => [o.id, o.status, o.status_at, o.at_risk, o.late, o.rider_id, o.store_id])
      .concat([state.panel && state.panel.id, Math.floor(serverNow() / 60000)]);
  }

  function byPlaced(a, b) { return String(b.placed_at || '').localeCompare(String(a.placed_at || '')); }

  /** The accessible list of the open orders (what the map's pins show). */
  function ordersList() {
    const orders = openOrders().slice().sort(byPlaced);
    if (!orders.length) return h('p', { class: 'empty' }, t('overview.noOrders'));
    return h('ul', { class: 'plain orders-list' }, orders.map((o) => h('li', {
      class: state.panel && state.panel.id === o.id ? 'selected' : null,
    },
    h('button', { type: 'button', class: 'link-btn', key: 'list-' + o.id, 'aria-label': t('orders.open', { id: ref(o.id) }), onclick: () => openOrder(o.id) },
      t('order.ref', { id: ref(o.id) })),
    h('span', { class: 'status' }, statusWord(o.status)),
    h('span', null, storeName(o.store_id)),
    dueTag(o))));
  }

  // ---------------------------------------------------------------------------------
  // Charts (hand-written SVG; every number is also written out)

  function fmtHour(value) {
    if (typeof value === 'number') return String(value).padStart(2, '0') + ':00';
    const ms = parseTime(value);
    if (ms === null) return String(value ?? '');
    return new Date(ms).toLocaleTimeString(t('_locale'), { hour: '2-digit', minute: '2-digit' });
  }

  function barChart(title, values, hours, fmt, opts) {
    opts = opts || {};
    const W = 1000; const H = 230; const left = 16; const right = 16; const top = 24; const bottom = 30;
    const n = values.length || 1;
    const step = (W - left - right) / n;
    const max = opts.max || Math.max(1, ...values.filter((v) => v !== null && v !== undefined).map(Number));
    const titleId = nextId('chart');
    const bars = values.map((v, i) => {
      const cx = left + step * i + step / 2;
      const parts = [];
      if (v === null || v === undefined) {
        parts.push(s('text', { class: 'nodata', x: cx.toFixed(1), y: H - bottom - 4 }, t('charts.noData')));
      } else {
        const bh = (Number(v) / max) * (H - top - bottom);
        parts.push(s('rect', { class: 'bar' + (opts.alt ? ' alt' : ''), x: (cx - step * 0.35).toFixed(1), y: (H - bottom - bh).toFixed(1), width: (step * 0.7).toFixed(1), height: Math.max(0, bh).toFixed(1) }));
        parts.push(s('text', { class: 'val', x: cx.toFixed(1), y: (H - bottom - bh - 5).toFixed(1) }, fmt(v)));
      }
      parts.push(s('text', { class: 'tick', x: cx.toFixed(1), y: H - 10 }, fmtHour(hours[i]).slice(0, 2)));
      return parts;
    });
    const svg = s('svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': titleId },
      s('title', { id: titleId }, title),
      s('line', { class: 'axis', x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }),
      bars);
    return svg;
  }

  function seriesTable(caption, hours, rows) {
    return h('div', { class: 'table-wrap' }, h('table', { class: 'series' },
      h('caption', null, caption),
      h('thead', null, h('tr', null, h('th', { scope: 'row' }, t('charts.hour')),
        hours.map((x) => h('th', { scope: 'col' }, fmtHour(x))))),
      h('tbody', null, rows.map((r) => h('tr', null, h('th', { scope: 'row' }, r.label),
        r.values.map((v) => h('td', { class: 'num' }, v === null || v === undefined ? t('common.dash') : r.fmt(v))))))));
  }

  // ---------------------------------------------------------------------------------
  // Screens

  const screens = {
    overview() {
      return [
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.overview')),
        state.me.role === 'viewer' ? h('p', { class: 'note' }, t('role.viewerNote')) : null,
        h('div', { class: 'grid-overview' },
          h('div', { class: 'stack' },
            section(t('overview.mapTitle'), live('map', () => [stores(), ordersSig(), state.snap.riders], mapView)),
            section(t('overview.ordersTitle'), live('orders-list', ordersSig, ordersList, { tag: 'div' }))),
          h('div', { class: 'stack' },
            section(t('overview.storesTitle'), live('store-summaries', () => [stores(), Math.floor(serverNow() / 10000)], () =>
              stores().map((st) => h('article', { class: 'store-summary', 'aria-label': st.name },
                h('h3', null, st.name), storeSummary(st))))),
            section(t('overview.ridersTitle'), live('rider-counts', () => state.snap.riders, riderCounts)))),
      ];
    },

    orders() {
      return [
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.orders')),
        section(t('orders.byStateTitle'), live('by-state', () => stores().map((x) => [x.id, x.name, x.orders_by_state, x.at_risk, x.late, x.health]), () => {
          const seen = new Set(OPEN_COLUMNS);
          for (const st of stores()) for (const k of Object.keys(st.orders_by_state || {})) if (!CLOSED.includes(k)) seen.add(k);
          const cols = STATUSES.filter((x) => seen.has(x)).concat([...seen].filter((x) => !STATUSES.includes(x)));
          return h('div', { class: 'table-wrap' }, h('table', null,
            h('caption', null, t('orders.byStateCaption')),
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('orders.colStore')),
              cols.map((c) => h('th', { scope: 'col', class: 'num' }, statusWord(c))),
              h('th', { scope: 'col', class: 'num' }, t('orders.colAtRisk')), h('th', { scope: 'col', class: 'num' }, t('orders.colLate')))),
            h('tbody', null, stores().map((st) => h('tr', null,
              h('th', { scope: 'row' }, st.name, ' ', healthTag(st.health)),
              cols.map((c) => h('td', { class: 'num' }, String((st.orders_by_state || {})[c] || 0))),
              h('td', { class: 'num' + (st.at_risk ? ' warm' : '') }, st.at_risk ? t('order.atRisk') + ': ' + st.at_risk : '0'),
              h('td', { class: 'num' + (st.late ? ' hot' : '') }, st.late ? t('order.late') + ': ' + st.late : '0'))))));
        })),
        section(t('orders.listTitle'), live('orders-table', ordersSig, () => {
          const orders = openOrders().slice().sort(byPlaced);
          if (!orders.length) return h('p', { class: 'empty' }, t('orders.none'));
          return h('div', { class: 'table-wrap' }, h('table', null,
            h('caption', null, t('orders.listCaption')),
            h('thead', null, h('tr', null, ['colOrder', 'colStore', 'colStatus', 'colPlaced', 'colDue', 'colTotal', 'colRider']
              .map((c) => h('th', { scope: 'col' }, t('orders.' + c))))),
            h('tbody', null, orders.map((o) => h('tr', { class: state.panel && state.panel.id === o.id ? 'selected' : null },
              h('td', null, h('button', { type: 'button', class: 'link-btn', key: 'row-' + o.id, 'aria-label': t('orders.open', { id: ref(o.id) }), onclick: () => openOrder(o.id) },
                t('order.ref', { id: ref(o.id) }))),
              h('td', null, storeName(o.store_id)),
              h('td', null, statusWord(o.status)),
              h('td', null, fmtTime(o.placed_at)),
              h('td', null, dueTag(o)),
              h('td', { class: 'num' }, fmtMoney(o.total_minor)),
              h('td', null, riderName(o.rider_id)))))));
        })),
      ];
    },

    stores() {
      const parts = [h('h1', { tabindex: '-1', key: 'title' }, t('screen.stores'))];
      if (state.me.role === 'viewer') parts.push(h('p', { class: 'note' }, t('role.viewerNote')));
      parts.push(live('store-cards', () => [stores(), Math.floor(serverNow() / 10000)], () => h('div', { class: 'cards' }, stores().map((st) => {
        const hid = 'store-' + st.id;
        return h('article', { class: 'card', 'aria-labelledby': hid },
          h('h2', { id: hid }, st.name),
          storeFigures(st),
          canOperate() ? pauseForm(st) : null);
      }))));
      if (canOperate()) parts.push(profileForm());
      return parts;
    },

    riders() {
      const parts = [h('h1', { tabindex: '-1', key: 'title' }, t('screen.riders'))];
      if (state.me.role === 'viewer') parts.push(h('p', { class: 'note' }, t('role.viewerNote')));
      parts.push(section(t('overview.ridersTitle'), live('rider-counts', () => state.snap.riders, riderCounts)));
      parts.push(section(t('riders.rosterTitle'), [
        loadError('riders'),
        live('roster', () => [state.snap.riders, state.data.riders, stores().map((x) => x.name)], rosterTable),
        resultView('roster'),
      ]));
      if (state.code) parts.push(codeView(state.code));
      if (canOperate()) parts.push(addRiderForm());
      return parts;
    },

    catalog() {
      const parts = [h('h1', { tabindex: '-1', key: 'title' }, t('screen.catalog'))];
      if (state.me.role === 'viewer') parts.push(h('p', { class: 'note' }, t('role.viewerNote')));
      parts.push(h('div', { class: 'grid-two' },
        h('div', { class: 'stack' }, section(t('catalog.productsTitle'), [loadError('products'), productsTable()]),
          canOperate() ? productForm() : null),
        h('div', { class: 'stack' }, section(t('coupons.title'), [loadError('coupons'), couponsTable()]),
          canOperate() ? couponForm() : null)));
      return parts;
    },

    charts() {
      return [
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.charts')),
        live('charts', () => state.snap.series, () => {
          const series = state.snap.series || {};
          const hours = series.hours || [];
          if (!hours.length) return h('p', { class: 'empty' }, t('charts.empty'));
          const pct = (v) => t('common.percent', { n: Math.round(Number(v) * 100) });
          const sec = (v) => t('common.seconds', { n: Math.round(Number(v)) });
          const count = (v) => String(v);
          return h('div', { class: 'stack' },
            section(t('charts.ordersTitle'), [
              barChart(t('charts.ordersTitle'), series.orders || [], hours, count),
              seriesTable(t('charts.numbers') + ': ' + t('charts.ordersTitle'), hours, [
                { label: t('charts.orders'), values: series.orders || [], fmt: count },
                { label: t('charts.delivered'), values: series.delivered || [], fmt: count }]),
            ]),
            section(t('charts.onTimeTitle'), [
              barChart(t('charts.onTimeTitle'), series.on_time_share || [], hours, pct, { max: 1, alt: true }),
              seriesTable(t('charts.numbers') + ': ' + t('charts.onTimeTitle'), hours, [
                { label: t('charts.onTime'), values: series.on_time_share || [], fmt: pct }]),
            ]),
            section(t('charts.pickTitle'), [
              barChart(t('charts.pickTitle'), series.pick_time_s || [], hours, sec),
              seriesTable(t('charts.numbers') + ': ' + t('charts.pickTitle'), hours, [
                { label: t('charts.pick'), values: series.pick_time_s || [], fmt: sec }]),
            ]));
        }),
      ];
    },

    users() {
      const users = Array.isArray(state.data.users) ? state.data.users : [];
      const table = users.length ? h('div', { class: 'table-wrap' }, h('table', null,
        h('caption', null, t('users.caption')),
        h('thead', null, h('tr', null, ['colUsername', 'colName', 'colRole', 'colActive', 'colActions'].map((c) => h('th', { scope: 'col' }, t('users.' + c))))),
        h('tbody', null, users.map((u) => h('tr', null,
          h('td', null, u.username), h('td', null, u.name), h('td', null, t('role.' + u.role)),
          h('td', null, u.active ? t('users.active') : t('users.inactive')),
          h('td', null, u.active && u.username !== state.me.username
            ? button(t('users.deactivate'), (e) => deactivateUser(u, e.currentTarget), { small: true, label: t('users.deactivateFor', { name: u.name || u.username }), key: 'deactivate-' + u.username })
            : null)))))) : h('p', { class: 'empty' }, t('users.none'));
      const ui = state.ui.user;
      return [
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.users')),
        section(t('users.title'), [loadError('users'), table, resultView('users')]),
        section(t('users.addTitle'), form('user-form', (btn) => addUser(btn), [
          field({ key: 'user-username', label: t('users.addUsername'), obj: ui, prop: 'username', autocomplete: 'off' }),
          field({ key: 'user-name', label: t('users.addName'), obj: ui, prop: 'name' }),
          field({ key: 'user-role', label: t('users.addRole'), obj: ui, prop: 'role', options: ['viewer', 'operator', 'admin'].map((r) => ({ value: r, label: t('role.' + r) })) }),
          field({ key: 'user-password', label: t('users.addPassword'), obj: ui, prop: 'password', type: 'password', autocomplete: 'new-password' }),
          h('div', { class: 'actions' }, button(t('users.addSubmit'), null, { submit: true, kind: 'primary' })),
          resultView('user-add'),
        ])),
      ];
    },

    audit() {
      const rows = Array.isArray(state.data.audit) ? state.data.audit : [];
      return [
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.audit')),
        section(t('audit.title'), [
          h('div', { class: 'actions' }, button(t('common.refresh'), async (e) => {
            const btn = e.currentTarget;
            btn.disabled = true;
            await reload(['audit']);
            render();
          }, { key: 'audit-refresh' })),
          loadError('audit'),
          rows.length ? h('div', { class: 'table-wrap' }, h('table', null,
            h('caption', null, t('audit.caption')),
            h('thead', null, h('tr', null, ['colAt', 'colActor', 'colRole', 'colAction', 'colStatus', 'colReason'].map((c) => h('th', { scope: 'col' }, t('audit.' + c))))),
            h('tbody', null, rows.map((r) => h('tr', null,
              h('td', null, fmtDateTime(r.at)), h('td', null, r.actor), h('td', null, r.role ? t('role.' + r.role) : t('common.dash')),
              h('td', null, h('code', null, (r.method || '') + ' ' + (r.path || ''))), h('td', { class: 'num' }, num(r.status)),
              h('td', null, r.reason || t('common.dash'))))))) : h('p', { class: 'empty' }, t('audit.none')),
        ]),
      ];
    },
  };

  // ---------------------------------------------------------------------------------
  // Stores: pause and resume, the profile

  function pauseForm(st) {
    const ui = state.ui.pause[st.id] || (state.ui.pause[st.id] = { reason: '' });
    const paused = !!st.paused;
    const key = 'pause-' + st.id;
    return form(key + '-form', (btn) => {
      const reason = (ui.reason || '').trim();
      if (!reason) { refuseHere(key, t('panel.reasonMissing')); return; }
      control(key, btn, () => request('POST', '/admin/v1/stores/' + enc(st.id) + '/pause', { paused: !paused, reason: reason }),
        () => { ui.reason = ''; return t(paused ? 'stores.resumed' : 'stores.paused', { name: st.name }); });
    }, [
      field({ key: key + '-reason', label: t(paused ? 'stores.resumeReason' : 'stores.pauseReason', { name: st.name }), obj: ui, prop: 'reason', wide: true }),
      h('div', { class: 'actions' }, button(t(paused ? 'stores.resume' : 'stores.pause', { name: st.name }), null,
        { submit: true, kind: paused ? 'primary' : 'danger', key: key + '-submit' })),
      resultView(key),
    ]);
  }

  function profileFor(id) {
    const list = Array.isArray(state.data.stores) ? state.data.stores : [];
    const entry = list.find((x) => (x.profile ? x.profile.id : x.id) === id);
    return entry ? (entry.profile || entry) : null;
  }

  function fillProfileUi(id) {
    const ui = state.ui.profile;
    const p = profileFor(id);
    ui.storeId = id;
    ui.name = p ? p.name : '';
    ui.opens = p && p.hours ? p.hours.opens : '';
    ui.closes = p && p.hours ? p.hours.closes : '';
    ui.capacity = p ? String(p.capacity ?? '') : '';
    ui.sla = p ? String(p.sla_minutes ?? '') : '';
    ui.area = p ? areaText(p.service_area) : '';
  }

  /** GeoJSON as compact text: one position per line. */
  function areaText(geometry) {
    return JSON.stringify(geometry).replace(/\],\[(?=-?\d)/g, '],\n  [');
  }

  function profileForm() {
    const list = Array.isArray(state.data.stores) ? state.data.stores : [];
    const ids = list.map((x) => (x.profile ? x.profile.id : x.id)).filter(Boolean);
    const ui = state.ui.profile;
    if (ids.length && !ids.includes(ui.storeId)) fillProfileUi(ids[0]);
    const body = !ids.length ? h('p', { class: 'empty' }, state.loadErrors.stores ? '' : t('stores.profileNone')) : form('profile-form', (btn) => saveProfile(btn), [
      field({ key: 'profile-store', label: t('stores.profileStore'), obj: ui, prop: 'storeId',
        options: ids.map((id) => ({ value: id, label: (profileFor(id) || {}).name || id })),
        onInput: (id) => { fillProfileUi(id); render(); } }),
      field({ key: 'profile-name', label: t('stores.profileName'), obj: ui, prop: 'name' }),
      field({ key: 'profile-opens', label: t('stores.profileOpens'), obj: ui, prop: 'opens' }),
      field({ key: 'profile-closes', label: t('stores.profileCloses'), obj: ui, prop: 'closes' }),
      field({ key: 'profile-capacity', label: t('stores.profileCapacity'), obj: ui, prop: 'capacity', inputmode: 'numeric' }),
      field({ key: 'profile-sla', label: t('stores.profileSla'), obj: ui, prop: 'sla', inputmode: 'numeric' }),
      field({ key: 'profile-area', label: t('stores.profileArea'), obj: ui, prop: 'area', type: 'textarea', rows: 8, wide: true, hint: t('stores.profileAreaHint') }),
      h('div', { class: 'actions' }, button(t('stores.profileSave'), null, { submit: true, kind: 'primary', key: 'profile-submit' })),
      resultView('profile'),
    ]);
    return section(t('stores.profileTitle'), [loadError('stores'), body]);
  }

  async function saveProfile(btn) {
    const ui = state.ui.profile;
    const current = profileFor(ui.storeId);
    if (!current) return;
    let area;
    try { area = JSON.parse(ui.area); } catch (e) { refuseHere('profile', t('stores.profileAreaBad', { message: e.message })); return; }
    const whole = (text) => (/^\d+$/.test(String(text ?? '').trim()) ? Number(String(text).trim()) : null);
    const capacity = whole(ui.capacity);
    const sla = whole(ui.sla);
    if (capacity === null) { refuseHere('profile', t('stores.numberBad', { field: t('stores.profileCapacity') })); return; }
    if (sla === null) { refuseHere('profile', t('stores.numberBad', { field: t('stores.profileSla') })); return; }
    const profile = {
      name: (ui.name || '').trim(),
      lat: current.lat,
      lon: current.lon,
      service_area: area,
      max_radius_m: current.max_radius_m,
      hours: Object.assign({}, current.hours || {}, { opens: (ui.opens || '').trim(), closes: (ui.closes || '').trim() }),
      capacity: capacity,
      sla_minutes: sla,
    };
    const id = ui.storeId;
    const answer = await control('profile', btn, () => request('PUT', '/admin/v1/stores/' + enc(id) + '/profile', profile),
      () => t('stores.profileSaved', { name: profile.name }));
    if (answer) {
      await reload(['stores']);
      fillProfileUi(id);
      render();
    }
  }

  // ---------------------------------------------------------------------------------
  // Riders: the roster, enrolment codes

  function roster() {
    const snapRiders = (state.snap && state.snap.riders) || [];
    const listed = Array.isArray(state.data.riders) ? state.data.riders : null;
    const base = listed || snapRiders;
    const ids = new Set(base.map((r) => r.id));
    const all = base.concat(listed ? snapRiders.filter((r) => !ids.has(r.id)) : []);
    return all.map((r) => Object.assign({}, r, { live: snapRiders.find((x) => x.id === r.id) || null }))
      .sort((a, b) => String(a.name || a.id).localeCompare(String(b.name || b.id)));
  }

  function rosterTable() {
    const list = roster();
    if (!list.length) return h('p', { class: 'empty' }, t('riders.none'));
    const operate = canOperate();
    const cols = ['colName', 'colId', 'colHome', 'colState', 'colActive', 'colOffers', 'colDeclines', 'colDeliveries', 'colSeen'];
    if (operate) cols.push('colActions');
    return h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', null, t('riders.rosterCaption')),
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: /Offers|Declines|Deliveries/.test(c) ? 'num' : null }, t('riders.' + c))))),
      h('tbody', null, list.map((r) => {
        const l = r.live || {};
        const name = r.name || r.id;
        const active = r.active !== false;
        return h('tr', null,
          h('td', null, name), h('td', null, h('code', null, r.id)), h('td', null, storeName(r.home_store_id)),
          h('td', null, riderWord(l.state || 'offline')),
          h('td', null, active ? t('riders.active') : t('riders.inactive')),
          h('td', { class: 'num' }, num(l.offers_1h)), h('td', { class: 'num' }, num(l.declines_1h)), h('td', { class: 'num' }, num(l.deliveries_1h)),
          h('td', null, l.position_at ? fmtAgo(l.position_at) : t('common.never')),
          operate ? h('td', null, h('div', { class: 'actions' },
            button(active ? t('riders.deactivate') : t('riders.reactivate'), (e) => setRiderActive(r, !active, e.currentTarget),
              { small: true, key: 'active-' + r.id, label: t(active ? 'riders.deactivateFor' : 'riders.reactivateFor', { name: name }) }),
            active ? button(t('riders.issue'), (e) => issueCode(r, e.currentTarget),
              { small: true, key: 'code-' + r.id, label: t('riders.issueFor', { name: name }) }) : null)) : null);
      }))));
  }

  function riderBody(r, changes) {
    const body = {};
    for (const k of RIDER_FIELDS) if (r[k] !== undefined && r[k] !== null) body[k] = r[k];
    return Object.assign(body, changes);
  }

  async function setRiderActive(r, active, btn) {
    const name = r.name || r.id;
    const answer = await control('roster', btn, () => request('PUT', '/admin/v1/riders/' + enc(r.id), riderBody(r, { active: active })),
      () => t(active ? 'riders.reactivated' : 'riders.deactivated', { name: name }));
    if (answer) { await reload(['riders']); render(); }
  }

  async function issueCode(r, btn) {
    const name = r.name || r.id;
    state.code = null;
    const answer = await control('roster', btn, () => request('POST', '/admin/v1/riders/' + enc(r.id) + '/enrolment-code'),
      () => t('riders.issued', { name: name }));
    if (answer) {
      state.code = { name: name, answer: answer.data };
      render();
      const heading = document.getElementById('code-title');
      if (heading) heading.focus();
    }
  }

  function codeView(code) {
    const a = code.answer || {};
    let qr;
    try {
      qr = qrSvg(String(a.qr_payload || ''), t('code.qr', { name: code.name }));
    } catch (e) {
      qr = h('p', { class: 'result err', role: 'alert' }, sentence(e.message));
    }
    return h('section', { class: 'card', 'aria-labelledby': 'code-title' },
      h('h2', { id: 'code-title', tabindex: '-1' }, t('code.title', { name: code.name })),
      h('p', null, t('code.intro')),
      h('div', { class: 'qr-box' }, qr,
        h('dl', { class: 'figures' },
          h('dt', null, t('code.code')), h('dd', null, h('span', { class: 'code-big' }, a.code || '')),
          h('dt', null, t('code.payload')), h('dd', null, h('code', { class: 'payload' }, a.qr_payload || '')),
          h('dt', null, t('code.expires')), h('dd', null, fmtDateTime(a.expires_at)))));
  }

  function addRiderForm() {
    const ui = state.ui.rider;
    const list = stores();
    if (!ui.home && list.length) ui.home = list[0].id;
    return section(t('riders.addTitle'), form('rider-form', (btn) => {
      const body = { name: (ui.name || '').trim(), home_store_id: ui.home, vehicle: ui.vehicle || 'bicycle', active: true };
      const id = (ui.id || '').trim();
      if (!id || !body.name || !body.home_store_id) { refuseHere('rider-add', t('riders.missing')); return; }
      control('rider-add', btn, () => request('PUT', '/admin/v1/riders/' + enc(id), body), () => t('riders.added', { name: body.name }))
        .then(async (answer) => { if (answer) { state.ui.rider = { vehicle: 'bicycle', home: ui.home }; await reload(['riders']); render(); } });
    }, [
      field({ key: 'rider-id', label: t('riders.addId'), obj: ui, prop: 'id' }),
      field({ key: 'rider-name', label: t('riders.addName'), obj: ui, prop: 'name' }),
      field({ key: 'rider-home', label: t('riders.addHome'), obj: ui, prop: 'home', options: list.map((x) => ({ value: x.id, label: x.name })) }),
      field({ key: 'rider-vehicle', label: t('riders.addVehicle'), obj: ui, prop: 'vehicle', options: ['bicycle', 'scooter', 'car'].map((v) => ({ value: v, label: t('vehicle.' + v) })) }),
      h('div', { class: 'actions' }, button(t('riders.addSubmit'), null, { submit: true, kind: 'primary', key: 'rider-submit' })),
      resultView('rider-add'),
    ]));
  }

  // ---------------------------------------------------------------------------------
  // Catalog: products and coupons

  function productPrice(p) {
    return p.price_minor ?? p.unit_price_minor ?? (p.price && p.price.unit_price_minor);
  }
  function gtinList(p) {
    return (p.gtins || []).map((g) => (typeof g === 'string' ? { gtin: g, pack_qty: 1 } : { gtin: g.gtin, pack_qty: g.pack_qty || 1 }));
  }

  function productsTable() {
    const list = Array.isArray(state.data.products) ? state.data.products : [];
    if (!list.length) return state.loadErrors.products ? null : h('p', { class: 'empty' }, t('catalog.none'));
    const operate = canOperate();
    const cols = ['colId', 'colName', 'colPrice', 'colGtins', 'colActive'].concat(operate ? ['colActions'] : []);
    return h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', null, t('catalog.productsCaption')),
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, t('catalog.' + c))))),
      h('tbody', null, list.map((p) => h('tr', { class: state.ui.product.id === p.id ? 'selected' : null },
        h('td', null, h('code', null, p.id)), h('td', null, p.name),
        h('td', { class: 'num' }, fmtMoney(productPrice(p), p.currency)),
        h('td', null, gtinList(p).map((g) => g.gtin + (g.pack_qty > 1 ? ' ×' + g.pack_qty : '')).join(', ')),
        h('td', null, p.active === false ? t('common.no') : t('common.yes')),
        operate ? h('td', null, button(t('catalog.edit'), () => editProduct(p), { small: true, key: 'edit-' + p.id, label: t('catalog.editFor', { name: p.name }) })) : null)))));
  }

  function editProduct(p) {
    state.ui.product = {
      id: p.id, name: p.name, price: majorText(productPrice(p)),
      gtins: gtinList(p).map((g) => g.gtin).join('\n'),
    };
    delete state.results.product;
    render();
    const input = document.getElementById('f-product-name');
    if (input) input.focus();
  }

  function productForm() {
    const ui = state.ui.product;
    return section(t('catalog.formTitle'), form('product-form', (btn) => saveProduct(btn), [
      field({ key: 'product-id', label: t('catalog.formId'), obj: ui, prop: 'id' }),
      field({ key: 'product-name', label: t('catalog.formName'), obj: ui, prop: 'name' }),
      field({ key: 'product-price', label: t('catalog.formPrice'), obj: ui, prop: 'price', inputmode: 'decimal' }),
      field({ key: 'product-gtins', label: t('catalog.formGtins'), obj: ui, prop: 'gtins', type: 'textarea', rows: 3, wide: true }),
      h('div', { class: 'actions' }, button(t('catalog.formSave'), null, { submit: true, kind: 'primary', key: 'product-submit' })),
      resultView('product'),
    ]));
  }

  async function saveProduct(btn) {
    const ui = state.ui.product;
    const id = (ui.id || '').trim();
    const name = (ui.name || '').trim();
    const price = parseMinor(ui.price);
    if (!id || !name || ui.price === undefined || ui.price === '') { refuseHere('product', t('catalog.missing')); return; }
    if (price === null) { refuseHere('product', t('catalog.priceBad')); return; }
    const list = Array.isArray(state.data.products) ? state.data.products : [];
    const old = list.find((p) => p.id === id) || {};
    const packs = {};
    for (const g of gtinList(old)) packs[g.gtin] = g.pack_qty;
    const body = {};
    for (const k of PRODUCT_FIELDS) if (old[k] !== undefined && old[k] !== null) body[k] = old[k];
    body.name = name;
    body.price_minor = price;
    body.gtins = String(ui.gtins || '').split(/[\s,;]+/).filter(Boolean).map((g) => ({ gtin: g, pack_qty: packs[g] || 1 }));
    const answer = await control('product', btn, () => request('PUT', '/admin/v1/products/' + enc(id), body), () => t('catalog.saved', { name: name }));
    if (answer) { await reload(['products']); render(); }
  }

  function couponsTable() {
    const list = Array.isArray(state.data.coupons) ? state.data.coupons : [];
    if (!list.length) return state.loadErrors.coupons ? null : h('p', { class: 'empty' }, t('coupons.none'));
    return h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', null, t('coupons.caption')),
      h('thead', null, h('tr', null, ['colCode', 'colPercent', 'colAmount', 'colMin', 'colActive'].map((c) => h('th', { scope: 'col' }, t('coupons.' + c))))),
      h('tbody', null, list.map((c) => h('tr', null,
        h('td', null, canOperate()
          ? h('button', { type: 'button', class: 'link-btn', key: 'coupon-' + c.code, onclick: () => editCoupon(c) }, c.code)
          : h('code', null, c.code)),
        h('td', { class: 'num' }, t('common.percent', { n: c.percent_off || 0 })),
        h('td', { class: 'num' }, fmtMoney(c.amount_off_minor || 0)),
        h('td', { class: 'num' }, fmtMoney(c.min_basket_minor || 0)),
        h('td', null, c.active === false ? t('common.no') : t('common.yes')))))));
  }

  function editCoupon(c) {
    state.ui.coupon = {
      code: c.code, percent: String(c.percent_off || 0), amount: majorText(c.amount_off_minor || 0),
      min: majorText(c.min_basket_minor || 0), active: c.active !== false,
    };
    delete state.results.coupon;
    render();
  }

  function couponForm() {
    const ui = state.ui.coupon;
    return section(t('coupons.formTitle'), form('coupon-form', (btn) => saveCoupon(btn), [
      field({ key: 'coupon-code', label: t('coupons.formCode'), obj: ui, prop: 'code' }),
      field({ key: 'coupon-percent', label: t('coupons.formPercent'), obj: ui, prop: 'percent', inputmode: 'numeric' }),
      field({ key: 'coupon-amount', label: t('coupons.formAmount'), obj: ui, prop: 'amount', inputmode: 'decimal' }),
      field({ key: 'coupon-min', label: t('coupons.formMin'), obj: ui, prop: 'min', inputmode: 'decimal' }),
      field({ key: 'coupon-active', label: t('coupons.formActive'), obj: ui, prop: 'active', type: 'checkbox' }),
      h('div', { class: 'actions' }, button(t('coupons.formSave'), null, { submit: true, kind: 'primary', key: 'coupon-submit' })),
      resultView('coupon'),
    ]));
  }

  async function saveCoupon(btn) {
    const ui = state.ui.coupon;
    const code = (ui.code || '').trim();
    if (!code) { refuseHere('coupon', t('coupons.missing')); return; }
    const percent = /^\d+$/.test(String(ui.percent || '0').trim()) ? Number(String(ui.percent || '0').trim()) : null;
    const amount = parseMinor(ui.amount || '0');
    const min = parseMinor(ui.min || '0');
    if (percent === null || amount === null || min === null) { refuseHere('coupon', t('coupons.numberBad')); return; }
    const body = { percent_off: percent, amount_off_minor: amount, min_basket_minor: min, active: !!ui.active };
    const answer = await control('coupon', btn, () => request('PUT', '/admin/v1/coupons/' + enc(code), body), () => t('coupons.saved', { code: code }));
    if (answer) { await reload(['coupons']); render(); }
  }

  // ---------------------------------------------------------------------------------
  // HQ users (admin)

  async function addUser(btn) {
    const ui = state.ui.user;
    const username = (ui.username || '').trim();
    const body = { name: (ui.name || '').trim(), role: ui.role || 'viewer', password: ui.password || '', active: true };
    if (!username || !body.name || !body.password) { refuseHere('user-add', t('users.missing')); return; }
    const answer = await control('user-add', btn, () => request('PUT', '/admin/v1/hq-users/' + enc(username), body), () => t('users.added', { name: body.name }));
    if (answer) { state.ui.user = { role: 'viewer' }; await reload(['users']); render(); }
  }

  async function deactivateUser(u, btn) {
    const name = u.name || u.username;
    const answer = await control('users', btn, () => request('PUT', '/admin/v1/hq-users/' + enc(u.username), { name: u.name, role: u.role, active: false }),
      () => t('users.deactivated', { name: name }));
    if (answer) { await reload(['users']); render(); }
  }

  // ---------------------------------------------------------------------------------
  // The order panel: timeline, lines, payment, rider; cancel and reroute

  function openOrder(id) {
    // Where the focus goes back to when the panel closes: what opened it (a pin, a row).
    const active = document.activeElement;
    const opener = active && !$('#panel').contains(active) ? active.dataset.key : null;
    if (!state.panel || state.panel.id !== id) {
      state.panel = { id: id, detail: null, error: null, sig: orderSig(id), ui: { cancelReason: '', rerouteStore: '', rerouteReason: '' } };
    }
    if (opener) state.panel.opener = opener;
    renderPanel();
    updateLive();
    const title = document.getElementById('panel-title');
    if (title) title.focus();
    loadDetail();
  }

  function closePanel() {
    const id = state.panel && state.panel.id;
    const opener = state.panel && state.panel.opener;
    state.panel = null;
    renderPanel();
    updateLive();
    const byKey = (key) => (key ? $('[data-key="' + CSS.escape(key) + '"]') : null);
    const back = id && (byKey(opener) || byKey('list-' + id) || byKey('row-' + id) || byKey('pin-' + id));
    if (back) back.focus();
    else $('#main').focus();
  }

  function orderSig(id) {
    const o = ((state.snap && state.snap.orders) || []).find((x) => x.id === id);
    return o ? [o.status, o.status_at, o.rider_id, o.store_id].join('|') : 'gone';
  }

  let detailLoading = null;
  let detailAgain = false;
  async function loadDetail() {
    if (detailLoading) { detailAgain = true; return; }
    const panel = state.panel;
    if (!panel) return;
    detailLoading = (async () => {
      try {
        panel.detail = await api('GET', '/admin/v1/orders/' + enc(panel.id));
        panel.error = null;
      } catch (err) {
        if (err.status !== 401) panel.error = err;
      }
    })();
    await detailLoading;
    detailLoading = null;
    if (state.panel === panel) renderPanel();
    if (detailAgain) { detailAgain = false; loadDetail(); }
  }

  function panelOnSnapshot() {
    if (!state.panel) return;
    const sig = orderSig(state.panel.id);
    if (sig !== state.panel.sig) {
      state.panel.sig = sig;
      loadDetail();
    }
  }

  /** The order as the panel shows it: the detail's fields over the snapshot's. */
  function panelOrder() {
    const p = state.panel;
    const snapOrder = ((state.snap && state.snap.orders) || []).find((x) => x.id === p.id) || {};
    const d = p.detail && typeof p.detail === 'object' ? p.detail : {};
    const inner = d.order && typeof d.order === 'object' ? d.order : {};
    const o = Object.assign({}, snapOrder, inner, d);
    delete o.order;
    return o;
  }

  function scalarText(v) {
    if (v === null || v === undefined) return t('common.dash');
    if (typeof v === 'boolean') return v ? t('common.yes') : t('common.no');
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  function kvList(obj, skip) {
    const keys = Object.keys(obj || {}).filter((k) => !(skip || []).includes(k));
    if (!keys.length) return null;
    const text = (k, v) => {
      if (/_minor$/.test(k) && typeof v === 'number') return fmtMoney(v, obj.currency);
      if (/_at$/.test(k) && typeof v === 'string') return fmtDateTime(v);
      return scalarText(v);
    };
    return h('dl', { class: 'figures' }, keys.map((k) => [
      h('dt', null, k.replace(/_minor$/, '').replace(/_/g, ' ')),
      h('dd', null, h('span', { class: 'mono' }, text(k, obj[k])))]));
  }

  function linesTable(lines) {
    if (!Array.isArray(lines) || !lines.length) return h('p', { class: 'empty' }, t('panel.linesEmpty'));
    const has = (k) => lines.some((l) => l && l[k] !== undefined && l[k] !== null);
    const cols = [
      { head: t('panel.colItem'), cell: (l) => [l.name || l.product_id || t('common.dash'),
        l.substitute_product_id ? [' ', h('span', { class: 'muted' }, t('panel.substitute', { name: l.substitute_name || l.substitute_product_id }))] : null] },
      { head: t('panel.colQty'), num: true, cell: (l) => num(l.qty) },
    ];
    if (has('picked_qty')) cols.push({ head: t('panel.colPicked'), num: true, cell: (l) => num(l.picked_qty) });
    if (has('short_qty')) cols.push({ head: t('panel.colShort'), num: true, cell: (l) => (l.short_qty ? h('strong', null, String(l.short_qty)) : '0') });
    if (has('line_minor') || has('unit_price_minor')) {
      cols.push({ head: t('panel.colAmount'), num: true, cell: (l) => fmtMoney(l.line_minor ?? (l.unit_price_minor * (l.qty || 0))) });
    }
    return h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.head)))),
      h('tbody', null, lines.map((l) => h('tr', null, cols.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(l || {}))))))));
  }

  function renderPanel() {
    const aside = $('#panel');
    if (!state.panel || !state.me) {
      aside.hidden = true;
      aside.replaceChildren();
      return;
    }
    keepFocus(aside, () => {
      aside.hidden = false;
      aside.setAttribute('aria-labelledby', 'panel-title');
      aside.replaceChildren(panelView());
    });
  }

  function panelView() {
    const p = state.panel;
    const o = panelOrder();
    const id = p.id;
    const parts = [h('div', { class: 'panel-head' },
      h('h2', { id: 'panel-title', tabindex: '-1' }, t('panel.title', { id: ref(id) })),
      button(t('panel.close'), closePanel, { small: true, label: t('panel.closeLabel'), key: 'panel-close' }))];
    if (p.error) parts.push(h('p', { class: 'result err', role: 'alert' }, p.error.status === 404 ? t('panel.notFound') : sentence(p.error.message)));
    if (!p.detail && !p.error) parts.push(h('p', { class: 'empty' }, t('common.loading')));
    const risk = o.late ? h('span', { class: 'tag late' }, t('order.late')) : o.at_risk ? h('span', { class: 'tag risk' }, t('order.atRisk')) : null;
    parts.push(section(t('panel.summary'), h('dl', { class: 'figures' },
      h('dt', null, t('panel.status')), h('dd', { class: 'order-status' }, statusWord(o.status), risk ? [' ', risk] : null),
      h('dt', null, t('panel.store')), h('dd', null, storeName(o.store_id)),
      h('dt', null, t('panel.placed')), h('dd', null, fmtDateTime(o.placed_at)),
      h('dt', null, t('panel.promised')), h('dd', null, o.promised_at ? fmtDateTime(o.promised_at) : t('common.dash')),
      h('dt', null, t('panel.total')), h('dd', null, fmtMoney(o.total_minor, o.currency)),
      h('dt', null, t('panel.rider')), h('dd', null, riderName(o.rider_id || (o.rider && o.rider.id)))), { level: 'h3', class: 'sub' }));
    const timeline = Array.isArray(o.timeline) ? o.timeline : [];
    parts.push(section(t('panel.timeline'), timeline.length ? h('ol', { class: 'timeline' }, timeline.map((e) => h('li', null,
      h('strong', null, t('panel.timelineEntry', { time: fmtTime(e.at, true), status: statusWord(e.status) })),
      e.actor ? [' ', h('span', { class: 'muted' }, t('panel.by', { actor: e.actor }))] : null,
      e.store_id && e.store_id !== o.store_id ? [' ', h('span', { class: 'muted' }, storeName(e.store_id))] : null,
      e.note ? [' — ', e.note] : null))) : h('p', { class: 'empty' }, t('panel.timelineEmpty')), { level: 'h3', class: 'sub' }));
    parts.push(section(t('panel.lines'), linesTable(o.lines), { level: 'h3', class: 'sub' }));
    parts.push(section(t('panel.payment'), o.payment && typeof o.payment === 'object'
      ? kvList(o.payment) : h('p', { class: 'empty' }, t('panel.paymentNone')), { level: 'h3', class: 'sub' }));
    const more = kvList(o, ['timeline', 'lines', 'payment', 'id', 'status', 'store_id', 'placed_at', 'promised_at', 'total_minor', 'rider_id', 'rider', 'lat', 'lon', 'at_risk', 'late']);
    if (more) parts.push(h('details', null, h('summary', null, t('panel.more')), more));
    if (canOperate()) {
      const ui = p.ui;
      const others = stores().filter((x) => x.id !== o.store_id);
      if (!others.some((x) => x.id === ui.rerouteStore)) ui.rerouteStore = others.length ? others[0].id : '';
      parts.push(section(t('panel.cancelTitle'), form('cancel-form', (btn) => {
        const reason = (ui.cancelReason || '').trim();
        if (!reason) { refuseHere('cancel-' + id, t('panel.reasonMissing')); return; }
        control('cancel-' + id, btn, () => request('POST', '/api/v1/orders/' + enc(id) + '/cancel', { reason: reason }),
          () => t('panel.cancelled', { id: ref(id) })).then((answer) => { if (answer) loadDetail(); });
      }, [
        field({ key: 'cancel-reason', label: t('panel.cancelReason'), obj: ui, prop: 'cancelReason', wide: true }),
        h('div', { class: 'actions' }, button(t('panel.cancel'), null, { submit: true, kind: 'danger', key: 'cancel-submit' })),
        resultView('cancel-' + id),
      ]), { level: 'h3', class: 'sub' }));
      parts.push(section(t('panel.rerouteTitle'), form('reroute-form', (btn) => {
        const reason = (ui.rerouteReason || '').trim();
        if (!reason || !ui.rerouteStore) { refuseHere('reroute-' + id, t('panel.reasonMissing')); return; }
        control('reroute-' + id, btn, () => request('POST', '/admin/v1/orders/' + enc(id) + '/reroute', { store_id: ui.rerouteStore, reason: reason }),
          () => t('panel.rerouted', { id: ref(id) })).then((answer) => { if (answer) loadDetail(); });
      }, [
        field({ key: 'reroute-store', label: t('panel.rerouteStore'), obj: ui, prop: 'rerouteStore', options: others.map((x) => ({ value: x.id, label: x.name })) }),
        field({ key: 'reroute-reason', label: t('panel.rerouteReason'), obj: ui, prop: 'rerouteReason', wide: true }),
        h('div', { class: 'actions' }, button(t('panel.reroute'), null, { submit: true, kind: 'secondary', key: 'reroute-submit' })),
        resultView('reroute-' + id),
      ]), { level: 'h3', class: 'sub' }));
    }
    return h('div', { class: 'stack' }, parts);
  }

  // ---------------------------------------------------------------------------------
  // QR codes: byte mode, error correction level M, versions 1-10 (ISO/IEC 18004), drawn as
  // SVG. Enough for an enrolment payload (about 140 bytes: version 8).

  const QR = (function () {
    // Per version: EC codewords per block, then (blocks, data codewords each) of groups 1, 2.
    const EC_M = [null, [10, 1, 16, 0, 0], [16, 1, 28, 0, 0], [26, 1, 44, 0, 0], [18, 2, 32, 0, 0], [24, 2, 43, 0, 0],
      [16, 4, 27, 0, 0], [18, 4, 31, 0, 0], [22, 2, 38, 2, 39], [22, 3, 36, 2, 37], [26, 4, 43, 1, 44]];
    const ALIGN = [null, [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34], [6, 22, 38], [6, 24, 42], [6, 26, 46], [6, 28, 50]];
    const dataCodewords = (v) => EC_M[v][1] * EC_M[v][2] + EC_M[v][3] * EC_M[v][4];

    function gfMul(x, y) {
      let z = 0;
      for (let i = 7; i >= 0; i--) {
        z = (z << 1) ^ ((z >>> 7) * 0x11D);
        z ^= ((y >>> i) & 1) * x;
      }
      return z & 0xFF;
    }
    function rsDivisor(degree) {
      const result = new Array(degree).fill(0);
      result[degree - 1] = 1;
      let root = 1;
      for (let i = 0; i < degree; i++) {
        for (let j = 0; j < degree; j++) {
          result[j] = gfMul(result[j], root);
          if (j + 1 < degree) result[j] ^= result[j + 1];
        }
        root = gfMul(root, 0x02);
      }
      return result;
    }
    function rsRemainder(data, divisor) {
      const result = new Array(divisor.length).fill(0);
      for (const b of data) {
        const factor = b ^ result.shift();
        result.push(0);
        for (let i = 0; i < divisor.length; i++) result[i] ^= gfMul(divisor[i], factor);
      }
      return result;
    }

    /** The codewords (data and error correction, interleaved) of `bytes` in `version`. */
    function codewords(bytes, version) {
      const bits = [];
      const put = (value, length) => { for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1); };
      put(0b0100, 4);
      put(bytes.length, version < 10 ? 8 : 16);
      for (const b of bytes) put(b, 8);
      const capacity = dataCodewords(version) * 8;
      put(0, Math.min(4, capacity - bits.length));
      put(0, (8 - (bits.length % 8)) % 8);
      const data = [];
      for (let i = 0; i < bits.length; i += 8) {
        let b = 0;
        for (let j = 0; j < 8; j++) b = (b << 1) | bits[i + j];
        data.push(b);
      }
      for (let pad = 0xEC; data.length < dataCodewords(version); pad ^= 0xEC ^ 0x11) data.push(pad);
      const [ecLen, n1, k1, n2, k2] = EC_M[version];
      const sizes = [];
      for (let i = 0; i < n1; i++) sizes.push(k1);
      for (let i = 0; i < n2; i++) sizes.push(k2);
      const divisor = rsDivisor(ecLen);
      let at = 0;
      const blocks = sizes.map((k) => { const b = data.slice(at, at + k); at += k; return b; });
      const ecc = blocks.map((b) => rsRemainder(b, divisor));
      const out = [];
      for (let i = 0; i < Math.max(...sizes); i++) for (const b of blocks) if (i < b.length) out.push(b[i]);
      for (let i = 0; i < ecLen; i++) for (const e of ecc) out.push(e[i]);
      return out;
    }

    const MASKS = [
      (x, y) => (x + y) % 2 === 0,
      (x, y) => y % 2 === 0,
      (x) => x % 3 === 0,
      (x, y) => (x + y) % 3 === 0,
      (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
      (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
      (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
      (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
    ];

    /** The dark modules of `text` (UTF-8, byte mode, level M): rows of booleans. */
    function encode(text) {
      const bytes = Array.from(new TextEncoder().encode(text));
      let version = 0;
      for (let v = 1; v <= 10; v++) {
        if (4 + (v < 10 ? 8 : 16) + bytes.length * 8 <= dataCodewords(v) * 8) { version = v; break; }
      }
      if (!version) throw new Error('The QR payload is too long (' + bytes.length + ' bytes).');
      const size = 17 + 4 * version;
      const dark = Array.from({ length: size }, () => new Array(size).fill(false));
      const fixed = Array.from({ length: size }, () => new Array(size).fill(false));
      const set = (x, y, on) => { dark[y][x] = on; fixed[y][x] = true; };

      for (let i = 0; i < size; i++) { set(6, i, i % 2 === 0); set(i, 6, i % 2 === 0); }
      for (const [cx, cy] of [[3, 3], [size - 4, 3], [3, size - 4]]) {
        for (let dy = -4; dy <= 4; dy++) {
          for (let dx = -4; dx <= 4; dx++) {
            const x = cx + dx; const y = cy + dy;
            const d = Math.max(Math.abs(dx), Math.abs(dy));
            if (x >= 0 && x < size && y >= 0 && y < size) set(x, y, d !== 2 && d !== 4);
          }
        }
      }
      const pos = ALIGN[version];
      const last = pos.length - 1;
      for (let i = 0; i <= last; i++) {
        for (let j = 0; j <= last; j++) {
          if ((i === 0 && j === 0) || (i === 0 && j === last) || (i === last && j === 0)) continue;
          for (let dy = -2; dy <= 2; dy++) {
            for (let dx = -2; dx <= 2; dx++) set(pos[i] + dx, pos[j] + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
          }
        }
      }
      const drawFormat = (mask) => {
        const bitsIn = (0b00 << 3) | mask; // level M is 00
        let rem = bitsIn;
        for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
        const bits = ((bitsIn << 10) | rem) ^ 0x5412;
        const bit = (i) => ((bits >>> i) & 1) !== 0;
        for (let i = 0; i <= 5; i++) set(8, i, bit(i));
        set(8, 7, bit(6));
        set(8, 8, bit(7));
        set(7, 8, bit(8));
        for (let i = 9; i < 15; i++) set(14 - i, 8, bit(i));
        for (let i = 0; i < 8; i++) set(size - 1 - i, 8, bit(i));
        for (let i = 8; i < 15; i++) set(8, size - 15 + i, bit(i));
        set(8, size - 8, true);
      };
      drawFormat(0);
      if (version >= 7) {
        let rem = version;
        for (let i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1F25);
        const bits = (version << 12) | rem;
        for (let i = 0; i < 18; i++) {
          const on = ((bits >>> i) & 1) !== 0;
          const a = size - 11 + (i % 3); const b = Math.floor(i / 3);
          set(a, b, on);
          set(b, a, on);
        }
      }

      const words = codewords(bytes, version);
      let i = 0;
      for (let right = size - 1; right >= 1; right -= 2) {
        if (right === 6) right = 5;
        for (let vert = 0; vert < size; vert++) {
          for (let j = 0; j < 2; j++) {
            const x = right - j;
            const upward = ((right + 1) & 2) === 0;
            const y = upward ? size - 1 - vert : vert;
            if (!fixed[y][x] && i < words.length * 8) {
              dark[y][x] = ((words[i >>> 3] >>> (7 - (i & 7))) & 1) !== 0;
              i++;
            }
          }
        }
      }

      const applyMask = (m) => {
        for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) if (!fixed[y][x] && MASKS[m](x, y)) dark[y][x] = !dark[y][x];
      };
      let best = 0; let bestScore = Infinity;
      for (let m = 0; m < 8; m++) {
        applyMask(m);
        drawFormat(m);
        const score = penalty(dark);
        if (score < bestScore) { best = m; bestScore = score; }
        applyMask(m);
      }
      applyMask(best);
      drawFormat(best);
      return dark;
    }

    /** The four penalty rules of the standard, to choose the mask. */
    function penalty(m) {
      const size = m.length;
      let score = 0;
      const lines = [];
      for (let y = 0; y < size; y++) lines.push(m[y]);
      for (let x = 0; x < size; x++) lines.push(m.map((row) => row[x]));
      const finderA = [1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0];
      const finderB = [0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1];
      for (const line of lines) {
        let run = 1;
        for (let i = 1; i <= size; i++) {
          if (i < size && line[i] === line[i - 1]) { run++; continue; }
          if (run >= 5) score += 3 + (run - 5);
          run = 1;
        }
        for (let i = 0; i + 11 <= size; i++) {
          const matches = (p) => p.every((v, k) => (line[i + k] ? 1 : 0) === v);
          if (matches(finderA)) score += 40;
          if (matches(finderB)) score += 40;
        }
      }
      let darkCount = 0;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          if (m[y][x]) darkCount++;
          if (x + 1 < size && y + 1 < size && m[y][x] === m[y][x + 1] && m[y][x] === m[y + 1][x] && m[y][x] === m[y + 1][x + 1]) score += 3;
        }
      }
      score += Math.floor(Math.abs(darkCount * 100 / (size * size) - 50) / 5) * 10;
      return score;
    }

    return { encode: encode };
  }());

  /** A QR code as SVG: whole pixels per module and the 4-module quiet zone. */
  function qrSvg(text, label) {
    const modules = QR.encode(text);
    const size = modules.length;
    const quiet = 4;
    const dim = size + 2 * quiet;
    const px = Math.max(4, Math.floor(300 / dim));
    let d = '';
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) if (modules[y][x]) d += 'M' + (x + quiet) + ' ' + (y + quiet) + 'h1v1h-1z';
    }
    return s('svg', {
      class: 'qr', viewBox: '0 0 ' + dim + ' ' + dim, width: dim * px, height: dim * px, role: 'img', 'aria-label': label,
      'shape-rendering': 'crispEdges',
    }, s('rect', { x: 0, y: 0, width: dim, height: dim, fill: '#fff' }), s('path', { d: d, fill: '#000' }));
  }

  // ---------------------------------------------------------------------------------

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
}());
