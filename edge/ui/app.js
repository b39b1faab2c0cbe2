// FlashKart store tablet: plain DOM, no framework, no build step.
// Served by the edge daemon at / (this file at /ui/app.js) under a strict CSP: no inline
// scripts, styles or handlers. All staff-facing text comes from strings.js through t().
(function () {
  'use strict';

  const t = window.t;
  const API = '/api/v1';
  const ROLE_RANK = { picker: 1, lead: 2, manager: 3 };
  const SCREENS = ['queues', 'pick', 'pack', 'handoff', 'goods', 'devices', 'staff'];
  const SCREEN_ROLE = { staff: 'manager' };
  // A keyboard-wedge scanner "types" a whole code in a burst and ends it with Enter: at least
  // 6 characters, 35 ms apart on average (no person types that fast for 6 keys). One gap may
  // be longer (up to 100 ms): a busy, cheap tablet delays key events now and then.
  const WEDGE_MIN_LEN = 6;
  const WEDGE_MEAN_GAP_MS = 35;
  const WEDGE_MAX_GAP_MS = 100;

  const store = window.sessionStorage;
  const state = {
    token: store.getItem('fk.token'),
    me: null,
    screen: null,
    loaded: false,
    // the live stream
    stream: null,
    streamDown: false,
    reconnectTimer: null,
    reconnectDelay: 1000,
    stale: false,
    skewMs: 0,
    sync: null,
    queues: null,
    devices: null,
    products: null,
    bins: null,
    weight: null,
    signin: { target: 'pin' },
    queuesUi: { selected: new Set() },
    pick: { orderIds: [], totes: {}, stops: null, details: {}, ui: {} },
    pack: { orderId: null, detail: null, labels: {}, tolerance: null, needOverride: false, ui: { bags: '1', reason: '' } },
    handoff: { label: '', entry: null, riderId: '' },
    goods: { ui: {}, received: [] },
    staff: { list: null, ui: { role: 'picker' }, resetFor: null },
  };
  restoreWork();

  // ---------------------------------------------------------------------------------
  // Small helpers

  function $(sel) { return document.querySelector(sel); }

  /** Creates an element: h('button', {class, text, onclick, 'aria-label'}, ...children). */
  function h(tag, props) {
    const el = document.createElement(tag);
    if (props) {
      for (const key of Object.keys(props)) {
        const v = props[key];
        if (v === null || v === undefined || v === false) continue;
        if (key === 'class') el.className = v;
        else if (key === 'text') el.textContent = v;
        else if (key.slice(0, 2) === 'on') el.addEventListener(key.slice(2), v);
        else if (key === 'value') el.value = v;
        else if (key === 'checked' || key === 'disabled' || key === 'hidden' || key === 'selected'
          || key === 'required' || key === 'multiple') el[key] = true;
        else if (key === 'key') el.dataset.key = v;
        else el.setAttribute(key, v === true ? '' : String(v));
      }
    }
    for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach((c) => append(el, c)); return; }
    el.append(child instanceof Node ? child : String(child));
  }

  let uid = 0;
  function nextId(prefix) { uid += 1; return prefix + '-' + uid; }

  /** A labelled input (or select/textarea) bound to obj[prop]. */
  function field(opts) {
    const id = 'f-' + opts.key;
    const hintId = opts.hint ? id + '-hint' : null;
    let control;
    const common = {
      id: id, key: opts.key, name: opts.name || opts.key,
      'aria-describedby': hintId, required: opts.required,
      autocomplete: opts.autocomplete || 'off',
    };
    const onChange = (e) => {
      if (opts.obj) opts.obj[opts.prop] = e.target.value;
      if (opts.onInput) opts.onInput(e.target.value);
    };
    const current = opts.obj ? opts.obj[opts.prop] : opts.value;
    if (opts.options) {
      control = h('select', Object.assign(common, { onchange: onChange }));
      for (const o of opts.options) {
        control.append(h('option', { value: o.value, selected: String(o.value) === String(current ?? '') }, o.label));
      }
    } else if (opts.type === 'textarea') {
      control = h('textarea', Object.assign(common, { oninput: onChange, rows: 3 }));
      control.value = current ?? '';
    } else {
      control = h('input', Object.assign(common, {
        type: opts.type || 'text', oninput: onChange, inputmode: opts.inputmode,
        min: opts.min, max: opts.max, placeholder: opts.placeholder,
        autocapitalize: opts.autocapitalize, spellcheck: 'false',
      }));
      control.value = current ?? '';
    }
    if (opts.onFocus) control.addEventListener('focus', opts.onFocus);
    return h('div', { class: 'field' + (opts.wide ? ' wide' : '') },
      h('label', { for: id }, opts.label),
      control,
      opts.hint ? h('p', { class: 'hint', id: hintId }, opts.hint) : null);
  }

  function button(text, onclick, opts) {
    opts = opts || {};
    return h('button', {
      type: opts.submit ? 'submit' : 'button',
      class: 'btn ' + (opts.kind || 'secondary') + (opts.big ? ' big' : ''),
      onclick: onclick || null, key: opts.key, 'aria-label': opts.label,
      disabled: opts.disabled, 'aria-describedby': opts.describedby,
    }, text);
  }

  function form(key, onsubmit, children) {
    return h('form', {
      key: key, novalidate: true, class: 'form',
      onsubmit: (e) => { e.preventDefault(); onsubmit(e); },
    }, children);
  }

  function section(title, children, opts) {
    opts = opts || {};
    const hid = nextId('h');
    return h('section', { class: 'panel ' + (opts.class || ''), 'aria-labelledby': hid },
      h(opts.level || 'h2', { id: hid }, title), children);
  }

  function roleAtLeast(role) {
    return state.me && ROLE_RANK[state.me.role] >= ROLE_RANK[role];
  }

  function serverNow() { return Date.now() + state.skewMs; }
  function setSkew(serverIso) {
    const server = Date.parse(serverIso || '');
    if (!Number.isNaN(server)) state.skewMs = server - Date.now();
  }

  /** An order's short reference for people: order ids are long UUIDs, their end tells them apart. */
  function ref(id) {
    const s = String(id || '');
    return s.length > 12 ? s.slice(-6) : s;
  }

  function initials(name) {
    const words = String(name || '?').split(/[\s\-_/]+/).filter((w) => /[A-Za-z\u00C0-\u024F]/.test(w));
    const letters = words.slice(0, 2).map((w) => w.match(/[A-Za-z\u00C0-\u024F]/)[0].toUpperCase());
    return letters.join('') || '?';
  }
  function hue(text) {
    let n = 0;
    for (const c of String(text)) n = (n * 31 + c.charCodeAt(0)) >>> 0;
    return 'hue-' + (n % 8);
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso || '';
    return d.toLocaleTimeString(t('_locale'), { hour: '2-digit', minute: '2-digit' });
  }
  function fmtMoney(minor, currency) {
    try {
      return new Intl.NumberFormat(t('_locale'), { style: 'currency', currency: currency || 'EUR' }).format(minor / 100);
    } catch (e) {
      return (minor / 100).toFixed(2) + ' ' + (currency || '');
    }
  }
  /** A server message as a sentence: capital first letter. */
  function sentence(text) {
    const s = String(text || '');
    return s.charAt(0).toUpperCase() + s.slice(1);
  }
  function locationText(loc) {
    if (!loc) return '';
    if (typeof loc === 'string') return loc;
    return loc.path || loc.address || loc.host || Object.values(loc).filter((v) => typeof v === 'string').join(' ');
  }

  function productName(id) {
    const p = (state.products || []).find((x) => x.id === id);
    return p ? p.name : id;
  }

  // ---------------------------------------------------------------------------------
  // Messages: one alert region (errors, refused scans), one status region (confirmations)

  let noticeTimer = null;
  function showAlert(message, opts) {
    const box = $('#alert-box');
    $('#alert').textContent = message;
    box.classList.add('shown');
    if (opts && opts.beep) beep(false);
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
    noticeTimer = setTimeout(() => { el.textContent = ''; el.classList.remove('shown'); }, 12000);
  }
  function clearNotice() {
    const el = $('#notice');
    el.textContent = '';
    el.classList.remove('shown');
  }

  // Sounds: a WebAudio oscillator, created on the first touch or key (browsers need a gesture).
  let audio = null;
  function unlockAudio() {
    if (audio) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try { audio = new Ctx(); } catch (e) { audio = null; }
  }
  function beep(ok) {
    if (!audio) unlockAudio();
    if (!audio) return;
    try {
      if (audio.state === 'suspended') audio.resume();
      const tones = ok ? [[1320, 0, 0.08]] : [[220, 0, 0.18], [180, 0.24, 0.3]];
      for (const [freq, start, dur] of tones) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = ok ? 'sine' : 'square';
        osc.frequency.value = freq;
        gain.gain.value = ok ? 0.15 : 0.3;
        osc.connect(gain).connect(audio.destination);
        const at = audio.currentTime + start;
        osc.start(at);
        osc.stop(at + dur);
      }
    } catch (e) { /* no sound is not an error */ }
  }

  // ---------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body, opts) {
    opts = opts || {};
    const headers = { Accept: 'application/json' };
    if (state.token && !opts.noAuth) headers.Authorization = 'Bearer ' + state.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(API + path, {
        method: method, headers: headers, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', t('error.network'));
    }
    const text = await res.text().catch(() => '');
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (res.status === 401 && !opts.noAuth) {
      sessionEnded();
      throw new ApiError(401, 'unauthorized', t('session.ended'));
    }
    if (!res.ok) {
      const message = (data && data.message) || t('error.status', { status: res.status });
      throw new ApiError(res.status, (data && data.error) || 'error', message);
    }
    return data;
  }

  /** Shows an API error to staff (a 401 has already sent them to sign-in). */
  function fail(err, opts) {
    if (err && err.status === 401) return;
    const message = sentence(err && err.message ? err.message : String(err));
    showAlert(opts && opts.prefix ? t(opts.prefix, { message: message }) : message, { beep: opts && opts.beep });
  }

  /** Runs an action from a button: disables it while the request runs. */
  async function act(btn, fn) {
    if (btn) btn.disabled = true;
    try {
      await fn();
    } catch (err) {
      fail(err);
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------
  // Session

  function saveWork() {
    store.setItem('fk.screen', state.screen || 'queues');
    store.setItem('fk.work', JSON.stringify({
      pick: { orderIds: state.pick.orderIds, totes: state.pick.totes },
      pack: state.pack.orderId,
    }));
  }
  function restoreWork() {
    try {
      const w = JSON.parse(store.getItem('fk.work') || '{}');
      if (w.pick && Array.isArray(w.pick.orderIds)) {
        state.pick.orderIds = w.pick.orderIds;
        state.pick.totes = w.pick.totes || {};
      }
      if (w.pack) state.pack.orderId = w.pack;
    } catch (e) { /* nothing to restore */ }
  }

  async function boot() {
    translateStatic();
    installGlobalHandlers();
    if (!state.token) { showSignIn(); return; }
    try {
      state.me = await api('GET', '/auth/me');
    } catch (err) {
      if (err.status !== 401) showSignIn(err.message);
      return;
    }
    startSession(store.getItem('fk.screen'));
  }

  function translateStatic() {
    document.title = t('app.title');
    document.documentElement.lang = t('_lang');
    for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
    for (const el of document.querySelectorAll('[data-t-label]')) el.setAttribute('aria-label', t(el.dataset.tLabel));
  }

  function startSession(screen) {
    $('#topbar').hidden = false;
    $('#who-name').textContent = t('nav.signedInAs', { name: state.me.name, role: t('role.' + state.me.role) });
    for (const btn of document.querySelectorAll('#nav [data-screen]')) {
      btn.hidden = !allowed(btn.dataset.screen);
    }
    connectStream();
    loadSync();
    go(SCREENS.includes(screen) && allowed(screen) ? screen : 'queues', { keepAlert: true });
  }

  function clearSession() {
    state.token = null;
    state.me = null;
    store.removeItem('fk.token');
    store.removeItem('fk.screen');
    store.removeItem('fk.work');
    closeStream();
    clearTimeout(state.reconnectTimer);
    state.streamDown = false;
    state.stale = false;
    state.sync = null;
    state.pick = { orderIds: [], totes: {}, stops: null, details: {}, ui: {} };
    state.pack = { orderId: null, detail: null, labels: {}, tolerance: null, needOverride: false, ui: { bags: '1', reason: '' } };
    state.handoff = { label: '', entry: null, riderId: '' };
    state.goods = { ui: {}, received: [] };
    state.staff = { list: null, ui: { role: 'picker' }, resetFor: null };
    state.queuesUi.selected.clear();
    state.queues = state.devices = state.products = state.bins = state.weight = null;
    updateBanners();
  }

  function sessionEnded() {
    if (!state.token && !state.me) return;
    clearSession();
    showSignIn();
    clearNotice();
    showAlert(t('session.ended'));
  }

  async function signOut(btn) {
    if (btn) btn.disabled = true;
    const scanner = state.pick.boundScanner;
    const token = state.token;
    try {
      if (scanner) await api('DELETE', '/devices/' + encodeURIComponent(scanner) + '/bind').catch(() => {});
      await fetch(API + '/auth/sign-out', { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
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
    updateBanners();
    const main = $('#main');
    main.classList.remove('stale');
    const ui = state.signin;
    const staffField = field({
      key: 'signin-staff', label: t('signin.staffId'), autocomplete: 'username', autocapitalize: 'none',
      onFocus: () => { ui.target = 'staff'; },
    });
    const pinField = field({
      key: 'signin-pin', label: t('signin.pin'), type: 'password', inputmode: 'numeric',
      autocomplete: 'current-password', hint: t('signin.pinHint'),
      onFocus: () => { ui.target = 'pin'; },
    });
    const staffInput = staffField.querySelector('input');
    const pinInput = pinField.querySelector('input');
    ui.target = 'pin';
    staffInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !pinInput.value) { e.preventDefault(); pinInput.focus(); }
    });
    const target = () => (ui.target === 'staff' ? staffInput : pinInput);
    const press = (key) => {
      const input = target();
      if (key === 'clear') input.value = '';
      else if (key === 'back') input.value = input.value.slice(0, -1);
      else input.value += key;
    };
    const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9', 'clear', '0', 'back'];
    const keypad = h('div', { class: 'keypad', role: 'group', 'aria-label': t('signin.keypad') },
      keys.map((k) => {
        const text = k === 'clear' ? t('signin.clear') : k === 'back' ? t('signin.back') : k;
        const label = k === 'back' ? t('signin.backLabel') : null;
        return h('button', {
          type: 'button', class: 'btn key' + (k.length > 1 ? ' key-word' : ''), 'aria-label': label,
          onclick: () => press(k),
          // keep the caret where it was: a tap on the keypad does not take focus from the field
          onmousedown: (e) => e.preventDefault(),
        }, text);
      }));
    const submit = h('button', { type: 'submit', class: 'btn primary big' }, t('signin.submit'));
    const f = h('form', {
      class: 'signin-form', novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const staffId = staffInput.value.trim();
        const pin = pinInput.value.trim();
        if (!staffId || !pin) { showAlert(t('signin.missing')); (staffId ? pinInput : staffInput).focus(); return; }
        submit.disabled = true;
        submit.textContent = t('signin.busy');
        try {
          const res = await api('POST', '/auth/sign-in', { staff_id: staffId, pin: pin }, { noAuth: true });
          state.token = res.token;
          store.setItem('fk.token', res.token);
          state.me = { staff_id: res.staff_id, name: res.name, role: res.role, expires_at: res.expires_at };
          clearAlert();
          clearNotice();
          restoreWork();
          startSession('queues');
        } catch (err) {
          showAlert(err.message || t('signin.failed'));
          pinInput.value = '';
          ui.target = 'pin';
          pinInput.focus();
        } finally {
          if (submit.isConnected) { submit.disabled = false; submit.textContent = t('signin.submit'); }
        }
      },
    }, staffField, pinField, keypad, submit);
    main.replaceChildren(h('section', { class: 'signin', 'aria-labelledby': 'signin-title' },
      h('h1', { id: 'signin-title', tabindex: '-1' }, t('signin.title')),
      h('p', { class: 'lead' }, t('signin.intro')),
      f));
    if (message) showAlert(message);
    staffInput.focus();
  }

  // ---------------------------------------------------------------------------------
  // Navigation and rendering

  function go(screen, opts) {
    opts = opts || {};
    if (!state.me) return;
    if (!allowed(screen)) screen = 'queues';
    const changed = state.screen !== screen;
    state.screen = screen;
    saveWork();
    if (!opts.keepAlert) clearAlert();
    for (const btn of document.querySelectorAll('#nav [data-screen]')) {
      if (btn.dataset.screen === screen) btn.setAttribute('aria-current', 'page');
      else btn.removeAttribute('aria-current');
    }
    state.loaded = false;
    render();
    if (changed || opts.focus) {
      const title = $('#main h1');
      if (title) title.focus({ preventScroll: false });
    }
    reloadNow();
  }

  function render() {
    const screen = screens[state.screen];
    if (!screen || !state.me) return;
    const main = $('#main');
    const active = document.activeElement;
    const key = active && main.contains(active) ? active.dataset.key : null;
    let sel = null;
    if (key) { try { sel = [active.selectionStart, active.selectionEnd]; } catch (e) { sel = null; } }
    const view = state.loaded ? screen.render() : h('div', { class: 'screen' },
      h('h1', { tabindex: '-1', key: 'title' }, t('screen.' + state.screen)),
      h('p', { class: 'loading' }, t('common.loading')));
    main.replaceChildren(view);
    main.classList.toggle('stale', state.stale);
    main.setAttribute('aria-busy', state.stale ? 'true' : 'false');
    if (key) {
      const el = main.querySelector('[data-key="' + CSS.escape(key) + '"]');
      if (el) {
        el.focus({ preventScroll: true });
        if (sel && sel[0] !== null && sel[0] !== undefined) { try { el.setSelectionRange(sel[0], sel[1]); } catch (e) { /* not a text field */ } }
      }
    }
  }

  // Reloads of the visible screen are coalesced: events that arrive while one runs lead
  // to exactly one more.
  let reloadTimer = null;
  let reloading = null;
  let reloadAgain = false;
  function scheduleReload(delay) {
    if (reloadTimer) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; reloadNow(); }, delay === undefined ? 120 : delay);
  }
  async function reloadNow() {
    if (reloading) { reloadAgain = true; return reloading; }
    const screenName = state.screen;
    const screen = screens[screenName];
    if (!screen || !state.me) return true;
    let ok = true;
    reloading = (async () => {
      try {
        await screen.load();
        if (state.screen === screenName && state.me) { state.loaded = true; render(); }
      } catch (err) {
        ok = false;
        fail(err);
      }
    })();
    await reloading;
    reloading = null;
    if (reloadAgain) { reloadAgain = false; return reloadNow(); }
    return ok;
  }

  // ---------------------------------------------------------------------------------
  // The live stream (SSE) and the banners

  function closeStream() {
    if (state.stream) { state.stream.close(); state.stream = null; }
  }

  function connectStream() {
    closeStream();
    clearTimeout(state.reconnectTimer);
    if (!state.token) return;
    const es = new EventSource(API + '/events?access_token=' + encodeURIComponent(state.token));
    state.stream = es;
    es.addEventListener('open', () => { if (es === state.stream) onStreamOpen(); });
    es.addEventListener('error', () => { if (es === state.stream) onStreamError(es); });
    for (const name of ['hello', 'order', 'stock', 'device', 'sync', 'cash', 'lagged', 'reset']) {
      es.addEventListener(name, (ev) => { if (es === state.stream) onStreamEvent(name, ev); });
    }
  }

  function setDown() {
    if (!state.streamDown) {
      state.streamDown = true;
      state.stale = true;
      updateBanners();
      const main = $('#main');
      main.classList.add('stale');
      main.setAttribute('aria-busy', 'true');
    }
  }

  async function onStreamOpen() {
    state.reconnectDelay = 1000;
    // The server subscribed this stream before it answered: what changed before then is not
    // in it. Refetch what the screen shows, and the cloud link, after every (re)connection;
    // after a loss, only then say the screen is current again.
    const stream = state.stream;
    const [ok] = await Promise.all([reloadNow(), loadSync()]);
    if (!state.streamDown) return;
    if (stream !== state.stream || !state.me) return;
    if (ok && stream.readyState === EventSource.OPEN) {
      state.streamDown = false;
      state.stale = false;
      updateBanners();
      const main = $('#main');
      main.classList.remove('stale');
      main.setAttribute('aria-busy', 'false');
    } else {
      clearTimeout(state.reconnectTimer);
      state.reconnectTimer = setTimeout(() => { if (state.stream === stream) onStreamOpen(); }, 2000);
    }
  }

  async function onStreamError(es) {
    setDown();
    if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Closed for good (e.g. 401): is the session still valid?
    try {
      await api('GET', '/auth/me');
    } catch (err) {
      if (err.status === 401) return; // sessionEnded() ran
    }
    if (!state.token) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connectStream, state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
  }

  function onStreamEvent(name, ev) {
    let data = {};
    try { data = JSON.parse(ev.data || '{}'); } catch (e) { data = {}; }
    const screen = screens[state.screen];
    switch (name) {
      case 'hello':
        break;
      case 'order':
        if (screen && screen.onOrder) screen.onOrder(data);
        break;
      case 'stock':
        onStock(data);
        break;
      case 'device':
        onDevice(data);
        break;
      case 'sync':
        syncVersion += 1;
        state.sync = {
          configured: true,
          online: !!data.online,
          last_error: data.last_error,
          last_success_unix_ms: data.last_success_unix_ms,
          lag_changes: state.sync && state.sync.lag_changes,
        };
        updateBanners();
        if (state.screen === 'devices') scheduleReload();
        break;
      case 'cash':
        showNotice(t('cash.handedIn', {
          rider: data.rider_id, amount: fmtMoney(data.amount_minor, data.currency),
          expected: fmtMoney(data.expected_minor, data.currency),
        }));
        break;
      case 'lagged':
      case 'reset':
        scheduleReload(0);
        break;
      default:
        break;
    }
  }

  function updateBanners() {
    const conn = $('#conn-banner');
    const offline = $('#offline-banner');
    const signedIn = !!state.me;
    const connText = signedIn && state.streamDown ? t('stream.reconnecting') : '';
    if (conn.textContent !== connText) conn.textContent = connText;
    conn.classList.toggle('shown', !!connText);
    const isOffline = signedIn && state.sync && state.sync.configured && state.sync.online === false;
    const offText = isOffline ? t('sync.offlineBanner') : '';
    if (offline.textContent !== offText) offline.textContent = offText;
    offline.classList.toggle('shown', !!offText);
  }

  // A status fetched while a `sync` event arrived is older than the event: it is dropped.
  let syncVersion = 0;
  function setSyncStatus(s, version) {
    if (version !== syncVersion) return;
    state.sync = s && s.configured
      ? Object.assign({ configured: true }, s.status || {}, { online: s.status ? s.status.online !== false : true })
      : { configured: false, message: s && s.message };
    updateBanners();
  }

  async function loadSync() {
    const version = syncVersion;
    try {
      setSyncStatus(await api('GET', '/sync/status'), version);
      return true;
    } catch (err) {
      return false;
    }
  }

  function onStock(level) {
    const p = (state.products || []).find((x) => x.id === level.product_id);
    if (p) {
      p.on_hand = level.on_hand;
      p.reserved = level.reserved;
      p.available = level.available;
    }
  }

  function onDevice(d) {
    const detail = d.detail || {};
    if (d.change === 'weight') {
      const scale = state.devices && state.devices.pack_scale;
      if (!scale || scale === d.device) {
        state.weight = { device: d.device, grams: detail.grams, stable: detail.stable };
        if (state.screen === 'pack') updateScale();
      }
      return;
    }
    if (d.change === 'scan') { onDeviceScan(d); return; }
    if (state.screen === 'devices' || state.screen === 'pack'
      || (d.change === 'health' && (state.screen === 'pick' || state.screen === 'goods'))) scheduleReload();
  }

  function onDeviceScan(d) {
    const detail = d.detail || {};
    const me = state.me && state.me.staff_id;
    const mine = detail.staff_id ? detail.staff_id === me
      : state.pick.boundScanner === d.device || state.goods.boundScanner === d.device
        || state.screen === 'pick' || state.screen === 'goods';
    if (!mine) return;
    if (!d.ok) {
      showAlert(t('scan.refused', { message: sentence(d.message) }), { beep: true });
      return;
    }
    clearAlert();
    beep(true);
    if (detail.order_id) {
      showNotice(scanText(detail));
      if (state.screen === 'pick') scheduleReload(0);
    } else if (detail.product_id) {
      received(detail);
    } else {
      showNotice(d.message);
    }
  }

  function scanText(r) {
    const name = r.product_name || productName(r.product_id);
    if (r.order_open_qty === 0) return t('pick.scannedOrderDone', { name: name, order: ref(r.order_id) });
    if (r.line_open_qty === 0) return t('pick.scannedLineDone', { name: name, left: r.order_open_qty });
    return t('pick.scannedMore', { name: name, more: r.line_open_qty });
  }

  // ---------------------------------------------------------------------------------
  // Keyboard-wedge scanners: a burst of keys ending in Enter, while focus is not in a field

  const wedge = { chars: '', times: [] };
  function isTextField(el) {
    if (!el) return false;
    if (el.isContentEditable) return true;
    const tag = el.tagName;
    if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
    if (tag !== 'INPUT') return false;
    return !['button', 'checkbox', 'radio', 'submit', 'reset', 'range', 'color', 'file'].includes(el.type);
  }
  function onKeyDown(e) {
    unlockAudio();
    if (!state.me || e.ctrlKey || e.altKey || e.metaKey || isTextField(e.target)) { wedge.chars = ''; wedge.times = []; return; }
    const now = performance.now();
    if (e.key === 'Enter') {
      const code = wedge.chars;
      const times = wedge.times;
      wedge.chars = '';
      wedge.times = [];
      if (code.length < WEDGE_MIN_LEN) return;
      const gaps = [];
      for (let i = 1; i < times.length; i++) gaps.push(times[i] - times[i - 1]);
      gaps.push(now - times[times.length - 1]);
      const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
      const max = Math.max.apply(null, gaps);
      if (mean < WEDGE_MEAN_GAP_MS && max < WEDGE_MAX_GAP_MS) {
        e.preventDefault();
        e.stopPropagation();
        onCodeScanned(code);
      }
      return;
    }
    if (e.key.length !== 1) return;
    const last = wedge.times[wedge.times.length - 1];
    if (last !== undefined && now - last > WEDGE_MAX_GAP_MS) { wedge.chars = ''; wedge.times = []; }
    wedge.chars += e.key;
    wedge.times.push(now);
  }

  /** A code from the keyboard-wedge scanner: what it means depends on the screen. */
  function onCodeScanned(code) {
    if (/^FK-/i.test(code) || state.screen === 'handoff') {
      if (state.screen !== 'handoff') go('handoff');
      state.handoff.label = code;
      findBag(code);
      return;
    }
    if (state.screen === 'pick' && state.pick.orderIds.length) { pickScan(code); return; }
    if (state.screen === 'goods') { receiveScan(code); return; }
    showAlert(t('scan.nowhere', { code: code }), { beep: true });
  }

  function installGlobalHandlers() {
    document.addEventListener('keydown', onKeyDown, true);
    document.addEventListener('pointerdown', unlockAudio, { once: true });
    $('#alert-dismiss').addEventListener('click', clearAlert);
    $('#sign-out').addEventListener('click', (e) => signOut(e.currentTarget));
    for (const btn of document.querySelectorAll('#nav [data-screen]')) {
      btn.addEventListener('click', () => { clearNotice(); go(btn.dataset.screen, { focus: true }); });
    }
    // The tablet lost its Wi-Fi: say so at once instead of waiting for the stream to notice.
    window.addEventListener('offline', () => {
      if (!state.me) return;
      setDown();
      closeStream();
    });
    window.addEventListener('online', () => {
      if (!state.me) return;
      state.reconnectDelay = 1000;
      connectStream();
    });
    // SLA countdowns move on without asking the server.
    setInterval(() => {
      if (state.screen === 'queues' && state.loaded && !state.stale) render();
    }, 20000);
  }

  // ---------------------------------------------------------------------------------
  // Queues

  const STATUS_WORD = {
    ACCEPTED: 'status.new', PICKING: 'status.picking', PACKED: 'status.packed', READY: 'status.ready',
    ASSIGNED: 'status.assigned', PICKED_UP: 'status.pickedUp', DELIVERED: 'status.delivered',
    CANCELLED: 'status.cancelled',
  };
  function statusWord(s) { return STATUS_WORD[s] ? t(STATUS_WORD[s]) : s; }

  /** "Due in 3 min" / "Late 2 min", and how long it has waited. */
  function slaInfo(entry, slaMinutes) {
    const now = serverNow();
    if (entry.status === 'READY' || entry.status === 'ASSIGNED') {
      // Its time limit was to be ready; now it waits for (or has) a rider.
      const since = Date.parse(entry.status_at || '');
      const mins = Number.isNaN(since) ? 0 : Math.max(0, Math.floor((now - since) / 60000));
      return { cls: 'ok', text: t('sla.onShelf', { n: mins }), age: '' };
    }
    let due = Date.parse(entry.due_at || '');
    const accepted = Date.parse(entry.accepted_at || entry.placed_at || entry.status_at || '');
    if (Number.isNaN(due) && !Number.isNaN(accepted) && slaMinutes) due = accepted + slaMinutes * 60000;
    const out = { cls: 'ok', text: '', age: '' };
    if (!Number.isNaN(accepted)) {
      const mins = Math.max(0, Math.floor((now - accepted) / 60000));
      out.age = mins < 1 ? t('sla.justArrived') : t('sla.waiting', { n: mins });
    }
    if (!Number.isNaN(due)) {
      const diff = due - now;
      if (diff < 0) {
        out.cls = 'late';
        out.text = t('sla.late', { n: Math.max(1, Math.ceil(-diff / 60000)) });
      } else {
        const n = Math.ceil(diff / 60000);
        out.cls = n <= 2 ? 'soon' : 'ok';
        out.text = n < 1 ? t('sla.dueNow') : t('sla.dueIn', { n: n });
      }
    }
    return out;
  }

  function orderCard(entry, actions, extra) {
    const q = state.queues || {};
    const sla = slaInfo(entry, slaMinutes(q));
    const hid = nextId('o');
    const name = entry.customer_first_name || '';
    return h('li', { class: 'card order-card ' + sla.cls, 'aria-labelledby': hid },
      h('h3', { id: hid }, t('order.ref', { id: ref(entry.order_id) }), name ? h('span', { class: 'customer' }, ' · ' + name) : null),
      entry.tote ? h('p', { class: 'tote-tag' }, t('pick.tote', { tote: entry.tote })) : null,
      h('p', { class: 'meta' }, t('queues.lineCount', { n: entry.lines }), ' · ',
        entry.status === 'ACCEPTED' || entry.status === 'PICKING'
          ? t('queues.toPick', { n: entry.open_qty })
          : t('queues.label', { label: entry.label_id || '—' })),
      sla.text ? h('p', { class: 'sla ' + sla.cls },
        h('span', { class: 'sla-mark', 'aria-hidden': 'true' }, sla.cls === 'late' ? '!' : sla.cls === 'soon' ? '◔' : '✓'),
        ' ', h('strong', null, sla.text), sla.age ? ' · ' + sla.age : '') : null,
      extra || null,
      actions && actions.length ? h('div', { class: 'actions' }, actions) : null);
  }

  /** The contract's `sla_minutes`; the daemon calls it `ready_within_minutes`. */
  function slaMinutes(q) {
    return (q && (q.sla_minutes || q.ready_within_minutes)) || 0;
  }

  function openPick(orderIds, totes) {
    state.pick = { orderIds: orderIds, totes: totes || {}, stops: null, details: {}, ui: {}, boundScanner: state.pick.boundScanner };
    go('pick', { focus: true });
  }
  function openPack(orderId) {
    state.pack = Object.assign(state.pack, { orderId: orderId, detail: null, tolerance: null, needOverride: false, ui: { bags: '1', reason: '' } });
    go('pack', { focus: true });
  }
  function openHandoff(entry) {
    state.handoff = { label: entry.label_id || '', entry: entry.label_id ? entry : null, riderId: '' };
    go('handoff', { focus: true });
  }

  function entryActions(entry, col) {
    const id = entry.order_id;
    if (col === 'new') return [button(t('queues.pick'), () => openPick([id]), { kind: 'primary', label: t('queues.pickLabel', { id: ref(id) }) })];
    if (col === 'picking') {
      if (entry.open_qty === 0) return [button(t('queues.pack'), () => openPack(id), { kind: 'primary', label: t('queues.packLabel', { id: ref(id) }) })];
      return [button(t('queues.continue'), () => openPick([id]), { kind: 'primary', label: t('queues.continueLabel', { id: ref(id) }) })];
    }
    if (col === 'packed') return [button(t('queues.ready'), () => openPack(id), { kind: 'primary', label: t('queues.readyLabel', { id: ref(id) }) })];
    return [button(t('queues.handoff'), () => openHandoff(entry), { kind: 'primary', label: t('queues.handoffLabel', { id: ref(id) }) })];
  }

  function batchSelect(entry) {
    const id = entry.order_id;
    const sel = state.queuesUi.selected;
    const cid = 'sel-' + id;
    return h('div', { class: 'check' },
      h('input', {
        type: 'checkbox', id: cid, key: cid, checked: sel.has(id),
        onchange: (e) => { if (e.target.checked) sel.add(id); else sel.delete(id); render(); },
      }),
      h('label', { for: cid }, t('queues.select', { id: ref(id) })));
  }

  async function pickTogether(btn) {
    const ids = Array.from(state.queuesUi.selected);
    await act(btn, async () => {
      const res = await api('POST', '/pick-batches', { order_ids: ids });
      const totes = {};
      for (const [order, tote] of res.totes || []) totes[order] = tote;
      state.queuesUi.selected.clear();
      showNotice(t('queues.batchStarted', { n: ids.length }));
      openPick(ids, totes);
    });
  }

  const screens = {};

  screens.queues = {
    async load() {
      state.queues = await api('GET', '/queues');
      setSkew(state.queues.now);
      const newIds = new Set((state.queues.new || []).map((e) => e.order_id));
      for (const id of Array.from(state.queuesUi.selected)) if (!newIds.has(id)) state.queuesUi.selected.delete(id);
    },
    onOrder() { scheduleReload(); },
    render() {
      const q = state.queues || {};
      const ready = (q.ready || []).filter((e) => e.status !== 'ASSIGNED');
      const assigned = (q.ready || []).filter((e) => e.status === 'ASSIGNED');
      const cols = [
        ['new', q.new || []], ['picking', q.picking || []], ['packed', q.packed || []],
        ['ready', ready], ['assigned', assigned],
      ];
      const sel = state.queuesUi.selected;
      return h('div', { class: 'screen queues' },
        h('div', { class: 'screen-head' },
          h('h1', { tabindex: '-1', key: 'title' }, t('screen.queues')),
          slaMinutes(q) ? h('p', { class: 'lead' }, t('queues.sla', { n: slaMinutes(q) })) : null),
        h('div', { class: 'columns' }, cols.map(([col, list]) => {
          const hid = 'col-' + col;
          return h('section', { class: 'column col-' + col, 'aria-labelledby': hid },
            h('h2', { id: hid }, t('queues.col.' + col), ' ', h('span', { class: 'count' }, t('queues.count', { n: list.length }))),
            col === 'new' && list.length ? h('div', { class: 'batch-bar' },
              button(t('queues.pickTogether', { n: sel.size }), (e) => pickTogether(e.currentTarget),
                { kind: 'primary', key: 'pick-together', disabled: sel.size < 1, describedby: 'batch-hint' }),
              h('p', { class: 'hint', id: 'batch-hint' }, t('queues.batchHint'))) : null,
            list.length
              ? h('ul', { class: 'cards' }, list.map((e) => orderCard(e, entryActions(e, col),
                col === 'new' ? batchSelect(e)
                  : col === 'assigned' || e.rider_name ? h('p', { class: 'meta' }, t('queues.rider', { name: e.rider_name || e.rider_id })) : null)))
              : h('p', { class: 'empty' }, t('queues.empty')));
        })));
    },
  };

  // ---------------------------------------------------------------------------------
  // Pick

  async function loadProducts(force) {
    if (!state.products || force) state.products = await api('GET', '/products');
    return state.products;
  }

  function myScannerBinding() {
    const devs = (state.devices && state.devices.devices) || [];
    const me = state.me.staff_id;
    return devs.find((d) => d.kind === 'scanner' && d.bound && d.bound.staff_id === me
      && d.bound.order_id && state.pick.orderIds.includes(d.bound.order_id)) || null;
  }

  screens.pick = {
    async load() {
      const p = state.pick;
      if (!p.orderIds.length) {
        state.queues = await api('GET', '/queues');
        setSkew(state.queues.now);
        return;
      }
      const ids = p.orderIds.slice();
      const [lists, details, devices] = await Promise.all([
        Promise.all(ids.map((id) => api('GET', '/orders/' + encodeURIComponent(id) + '/pick-list'))),
        Promise.all(ids.map((id) => api('GET', '/orders/' + encodeURIComponent(id)))),
        api('GET', '/devices').catch(() => null),
        loadProducts().catch(() => null),
      ]);
      if (ids.join() !== p.orderIds.join()) return;
      const stops = [];
      lists.forEach((list, i) => list.forEach((s, j) => stops.push(Object.assign({ _o: i, _j: j }, s))));
      stops.sort((a, b) => {
        const sa = a.pick_seq === null || a.pick_seq === undefined ? Infinity : a.pick_seq;
        const sb = b.pick_seq === null || b.pick_seq === undefined ? Infinity : b.pick_seq;
        return sa - sb || a._o - b._o || a._j - b._j;
      });
      p.stops = stops;
      p.details = {};
      details.forEach((d) => { p.details[d.id] = d; if (d.tote) p.totes[d.id] = d.tote; });
      state.devices = devices;
      const bound = myScannerBinding();
      p.boundScanner = bound ? bound.id : null;
      // Walking a batch: the scanner follows the order of the next stop.
      const next = stops[0];
      if (bound && next && bound.bound.order_id !== next.order_id) {
        try {
          await api('POST', '/devices/' + encodeURIComponent(bound.id) + '/bind', { order_id: next.order_id });
          bound.bound.order_id = next.order_id;
        } catch (err) { fail(err); }
      }
    },
    onOrder(ev) {
      if (!state.pick.orderIds.length || state.pick.orderIds.includes(ev.order_id)) scheduleReload();
    },
    render() {
      const p = state.pick;
      if (!p.orderIds.length) return renderPickChooser();
      const ids = p.orderIds;
      const details = ids.map((id) => p.details[id]).filter(Boolean);
      const head = h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.pick')),
        ids.length === 1
          ? h('p', { class: 'lead' }, t('pick.orderFor', { id: ref(ids[0]), name: (details[0] && details[0].customer_first_name) || '' }))
          : h('p', { class: 'lead' }, t('pick.batchOf', { n: ids.length }), ' ',
            ids.map((id) => h('span', { class: 'tote-tag inline' }, t('pick.orderInTote', { id: ref(id), tote: p.totes[id] || '—' })))),
        button(t('pick.close'), () => { state.pick = { orderIds: [], totes: {}, stops: null, details: {}, ui: {} }; go('queues', { focus: true }); }, { key: 'pick-close' }));
      const cancelled = details.filter((d) => d.cancel_requested_at).map((d) =>
        h('p', { class: 'warn-banner' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '!'), ' ', t('order.cancelled', { id: ref(d.id) })));
      return h('div', { class: 'screen pick' }, head, cancelled,
        h('div', { class: 'pick-grid' },
          h('div', { class: 'pick-main' }, renderStop(), renderManualCode()),
          h('div', { class: 'pick-side' }, renderScannerPanel(), renderLines())));
    },
  };

  function renderPickChooser() {
    const q = state.queues || {};
    const list = [].concat(q.new || [], (q.picking || []).filter((e) => e.open_qty > 0));
    return h('div', { class: 'screen pick' },
      h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.pick')),
        h('p', { class: 'lead' }, t('pick.choose'))),
      list.length
        ? h('ul', { class: 'cards wide' }, list.map((e) => orderCard(e, entryActions(e, e.status === 'ACCEPTED' ? 'new' : 'picking'))))
        : h('p', { class: 'empty' }, t('pick.nothing')));
  }

  function lineOf(stop) {
    const d = state.pick.details[stop.order_id];
    return d ? d.lines.find((l) => l.line_no === stop.line_no) : null;
  }

  function pickProgress() {
    let total = 0;
    let done = 0;
    for (const id of state.pick.orderIds) {
      const d = state.pick.details[id];
      if (!d) continue;
      for (const l of d.lines) { total += l.qty - l.short_qty; done += l.picked_qty; }
    }
    return { total: total, done: done };
  }

  function renderStop() {
    const p = state.pick;
    const ui = p.ui;
    const next = (p.stops || [])[0];
    if (!next) {
      const ids = p.orderIds;
      const open = ids.map((id) => p.details[id]).filter((d) => d && d.lines.some((l) => l.open_qty > 0));
      return section(t('pick.nextTitle'), [
        h('p', { class: 'done-banner' },
          h('span', { class: 'icon', 'aria-hidden': 'true' }, '✓'), ' ',
          open.length ? t('pick.noStops') : t('pick.allPicked')),
        h('div', { class: 'actions' }, ids.map((id) => button(
          ids.length === 1 ? t('pick.goPack') : t('pick.goPackOrder', { id: ref(id) }),
          () => openPack(id), { kind: 'primary', big: true, label: t('queues.packLabel', { id: ref(id) }) }))),
      ], { class: 'stop' });
    }
    const line = lineOf(next) || { qty: next.qty, picked_qty: 0, short_qty: 0, open_qty: next.qty };
    const prog = pickProgress();
    const name = line.substitute_name || next.product_name;
    const bin = next.bin_id || t('pick.noBin');
    const key = next.order_id + ':' + next.line_no;
    if (ui.for !== key) { p.ui = { for: key }; }
    const u = p.ui;
    const children = [
      h('p', { class: 'instruction', 'aria-live': 'polite' }, t('pick.instruction', {
        n: Math.min(prog.done + 1, prog.total), total: prog.total, name: name, bin: bin,
      })),
      next.tote ? h('p', { class: 'tote-big' }, t('pick.putInTote', { tote: next.tote })) : null,
      p.orderIds.length > 1 ? h('p', { class: 'meta' }, t('pick.forOrder', { id: ref(next.order_id) })) : null,
      h('div', { class: 'stop-body' },
        h('div', { class: 'product-img ' + hue(name), 'aria-hidden': 'true' }, initials(name)),
        h('div', { class: 'stop-text' },
          h('p', { class: 'product-name' }, name),
          line.substitute_name ? h('p', { class: 'meta' }, t('pick.substituteFor', { name: line.product_name })) : null,
          h('p', { class: 'bin' }, h('span', { class: 'bin-label' }, t('pick.bin')), ' ', h('strong', null, bin)),
          h('p', { class: 'qty' }, t('pick.take', { n: line.open_qty })),
          h('p', { class: 'done-count' }, t('pick.doneOf', { done: line.picked_qty, qty: line.qty - line.short_qty })),
          next.lot || next.expiry ? h('p', { class: 'meta' }, t('pick.lot', { lot: next.lot || '—', expiry: next.expiry || '—' })) : null)),
      h('div', { class: 'actions' },
        button(t('pick.short'), () => { u.shortOpen = !u.shortOpen; u.subOpen = false; render(); },
          { key: 'short-toggle', kind: u.shortOpen ? 'pressed' : 'secondary' }),
        button(t('pick.substitute'), async (e) => {
          u.subOpen = !u.subOpen; u.shortOpen = false;
          if (u.subOpen) { try { await loadProducts(); } catch (err) { fail(err); } }
          render();
        }, { key: 'sub-toggle', kind: u.subOpen ? 'pressed' : 'secondary' })),
    ];
    if (u.shortOpen) {
      children.push(form('short-form', (e) => doShort(next, line, e.submitter), [
        h('h3', null, t('pick.shortTitle', { name: name })),
        field({
          key: 'short-qty', label: t('pick.shortQty'), type: 'number', inputmode: 'numeric', min: 1, max: line.open_qty,
          obj: u, prop: 'shortQty', hint: t('pick.shortHint', { n: line.open_qty }),
        }),
        h('div', { class: 'actions' },
          button(t('pick.shortConfirm'), null, { submit: true, kind: 'danger' }),
          button(t('common.cancel'), () => { u.shortOpen = false; render(); })),
      ]));
    }
    if (u.subOpen) {
      const products = (state.products || []).filter((x) => x.id !== line.product_id);
      const options = [{ value: '', label: t('pick.subChoose') }].concat(products.map((x) => ({
        value: x.id, label: t('pick.subOption', { name: x.name, n: x.available === undefined ? '?' : x.available }),
      })));
      children.push(form('sub-form', (e) => doSubstitute(next, e.submitter), [
        h('h3', null, t('pick.subTitle', { name: name })),
        field({ key: 'sub-product', label: t('pick.subProduct'), options: options, obj: u, prop: 'subProduct' }),
        h('div', { class: 'actions' },
          button(t('pick.subConfirm'), null, { submit: true, kind: 'primary' }),
          button(t('common.cancel'), () => { u.subOpen = false; render(); })),
      ]));
    }
    return section(t('pick.nextTitle'), children, { class: 'stop' });
  }

  function renderManualCode() {
    const ui = state.pick;
    return section(t('pick.manualTitle'), form('code-form', (e) => {
      const code = (ui.code || '').trim();
      if (!code) { showAlert(t('pick.codeMissing')); return; }
      pickScan(code, e.submitter).then((ok) => { if (ok) { ui.code = ''; render(); } });
    }, [
      field({ key: 'code', label: t('pick.codeLabel'), obj: ui, prop: 'code', hint: t('pick.codeHint'), autocapitalize: 'none' }),
      button(t('pick.codeSubmit'), null, { submit: true, kind: 'secondary' }),
    ]), { class: 'manual' });
  }

  function renderScannerPanel() {
    const devs = ((state.devices && state.devices.devices) || []).filter((d) => d.kind === 'scanner');
    const p = state.pick;
    const next = (p.stops || [])[0];
    const items = [];
    if (!devs.length) items.push(h('p', { class: 'meta' }, t('pick.noScanner')));
    for (const d of devs) {
      const b = d.bound;
      const health = d.health && d.health.state;
      const mineHere = b && b.staff_id === state.me.staff_id && b.order_id && p.orderIds.includes(b.order_id);
      if (mineHere) {
        items.push(h('p', { class: 'ok-line' },
          h('span', { class: 'icon', 'aria-hidden': 'true' }, '✓'), ' ', t('pick.scannerBound', { id: d.id, order: ref(b.order_id) })));
        items.push(button(t('pick.unbind', { id: d.id }), (e) => unbindScanner(d.id, e.currentTarget, 'pick'), { key: 'unbind-' + d.id }));
      } else {
        if (b) items.push(h('p', { class: 'meta' }, b.receiving ? t('devices.boundReceiving', { name: b.name || b.staff_id })
          : t('devices.boundTo', { name: b.name || b.staff_id, order: ref(b.order_id) })));
        items.push(button(t('pick.bind', { id: d.id }), (e) => bindScanner(d.id, { order_id: next ? next.order_id : p.orderIds[0] }, e.currentTarget, 'pick'),
          { kind: 'primary', key: 'bind-' + d.id }));
      }
      if (health && health !== 'connected') items.push(h('p', { class: 'warn-line' }, t('pick.scannerHealth', { id: d.id, state: t('health.' + health) })));
    }
    items.push(h('p', { class: 'hint' }, t('pick.wedgeHint')));
    return section(t('pick.scannerTitle'), items, { class: 'scanner' });
  }

  function lineState(l) {
    if (l.substitute_product_id && l.open_qty === 0 && l.short_qty === 0) return { cls: 'done', text: t('line.subDone', { name: l.substitute_name || l.substitute_product_id }) };
    if (l.short_qty > 0 && l.open_qty === 0) return { cls: 'short', text: t('line.short', { n: l.short_qty }) };
    if (l.open_qty === 0) return { cls: 'done', text: t('line.done') };
    if (l.short_qty > 0) return { cls: 'short', text: t('line.shortOpen', { n: l.short_qty, open: l.open_qty }) };
    if (l.substitute_product_id) return { cls: 'open', text: t('line.subOpen', { name: l.substitute_name || l.substitute_product_id, open: l.open_qty }) };
    return { cls: 'open', text: t('line.open', { n: l.open_qty }) };
  }

  function linesTable(d) {
    const cap = nextId('cap');
    return h('table', { class: 'lines', 'aria-describedby': cap },
      h('caption', { id: cap }, t('pick.linesCaption', { id: ref(d.id) })),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('pick.colItem')),
        h('th', { scope: 'col' }, t('pick.colPicked')),
        h('th', { scope: 'col' }, t('pick.colState')))),
      h('tbody', null, d.lines.map((l) => {
        const s = lineState(l);
        return h('tr', { class: 'line-' + s.cls },
          h('th', { scope: 'row' }, l.product_name),
          h('td', null, t('pick.pickedOf', { done: l.picked_qty, qty: l.qty })),
          h('td', null, h('span', { class: 'state-word ' + s.cls }, s.text)));
      })));
  }

  function renderLines() {
    const p = state.pick;
    return section(t('pick.linesTitle'), p.orderIds.map((id) => p.details[id]).filter(Boolean).map(linesTable), { class: 'lines-panel' });
  }

  async function bindScanner(id, body, btn, where) {
    await act(btn, async () => {
      await api('POST', '/devices/' + encodeURIComponent(id) + '/bind', body);
      if (where === 'pick') state.pick.boundScanner = id;
      else state.goods.boundScanner = id;
      showNotice(body.receiving ? t('goods.scannerBound', { id: id }) : t('pick.scannerBound', { id: id, order: ref(body.order_id) }));
      await reloadNow();
    });
  }
  async function unbindScanner(id, btn, where) {
    await act(btn, async () => {
      await api('DELETE', '/devices/' + encodeURIComponent(id) + '/bind');
      if (where === 'pick') state.pick.boundScanner = null;
      else if (where === 'goods') state.goods.boundScanner = null;
      showNotice(t('pick.unbound', { id: id }));
      await reloadNow();
    });
  }

  /** Which order a typed or wedge-scanned code is for: the stop whose product has that GTIN. */
  function orderForCode(code) {
    const p = state.pick;
    const stops = p.stops || [];
    const digits = code.replace(/^\][A-Za-z]\d/, '').replace(/\D/g, '');
    if (digits && state.products && p.orderIds.length > 1) {
      for (const s of stops) {
        const line = lineOf(s);
        const pid = line && line.substitute_product_id ? line.substitute_product_id : s.product_id;
        const prod = state.products.find((x) => x.id === pid);
        if (prod && (prod.gtins || []).some((g) => g.replace(/^0+/, '') === digits.replace(/^0+/, ''))) return s.order_id;
      }
    }
    return stops.length ? stops[0].order_id : p.orderIds[0];
  }

  async function pickScan(code, btn) {
    const order = orderForCode(code);
    if (!order) return false;
    if (btn) btn.disabled = true;
    try {
      const r = await api('POST', '/orders/' + encodeURIComponent(order) + '/scan', { code: code });
      clearAlert();
      beep(true);
      showNotice(scanText(r));
      await reloadNow();
      return true;
    } catch (err) {
      fail(err, { prefix: 'scan.refused', beep: true });
      return false;
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  async function doShort(stop, line, btn) {
    const u = state.pick.ui;
    const raw = String(u.shortQty || '').trim();
    const body = {};
    if (raw) {
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 1 || n > line.open_qty) { showAlert(t('pick.shortBad', { n: line.open_qty })); return; }
      body.qty = n;
    }
    await act(btn, async () => {
      const r = await api('POST', '/orders/' + encodeURIComponent(stop.order_id) + '/lines/' + stop.line_no + '/short', body);
      clearAlert();
      const l = r.line || {};
      showNotice(t('pick.shorted', { n: body.qty || line.open_qty, name: l.product_name || stop.product_name }));
      state.pick.ui = {};
      await reloadNow();
    });
  }

  async function doSubstitute(stop, btn) {
    const u = state.pick.ui;
    if (!u.subProduct) { showAlert(t('pick.subMissing')); return; }
    await act(btn, async () => {
      await api('POST', '/orders/' + encodeURIComponent(stop.order_id) + '/lines/' + stop.line_no + '/substitute', { product_id: u.subProduct });
      clearAlert();
      showNotice(t('pick.substituted', { name: productName(u.subProduct) }));
      state.pick.ui = {};
      await reloadNow();
    });
  }

  // ---------------------------------------------------------------------------------
  // Pack

  function packScale() {
    const d = state.devices;
    return d && d.pack_scale ? d.pack_scale : null;
  }

  function expectedWeight(detail) {
    if (!detail) return null;
    if (detail.expected_weight_g !== null && detail.expected_weight_g !== undefined) return detail.expected_weight_g;
    return detail.lines.reduce((sum, l) => sum + (l.picked_weight_g || 0), 0);
  }
  function tolerance(expected) {
    if (state.pack.tolerance !== null && state.pack.tolerance !== undefined) return state.pack.tolerance;
    return Math.max(30, Math.round(expected * 0.05));
  }

  screens.pack = {
    async load() {
      const pk = state.pack;
      const id = pk.orderId;
      const [queues, detail, devices] = await Promise.all([
        id ? Promise.resolve(state.queues) : api('GET', '/queues'),
        id ? api('GET', '/orders/' + encodeURIComponent(id)) : Promise.resolve(null),
        api('GET', '/devices').catch(() => null),
      ]);
      if (!id && queues) { state.queues = queues; setSkew(queues.now); }
      if (id !== pk.orderId) return;
      pk.detail = detail;
      state.devices = devices;
      const scale = packScale();
      const dev = scale && devices ? devices.devices.find((d) => d.id === scale) : null;
      if (dev && dev.weight) state.weight = { device: scale, grams: dev.weight.grams, stable: dev.weight.stable };
    },
    onOrder(ev) {
      if (!state.pack.orderId || ev.order_id === state.pack.orderId) scheduleReload();
    },
    render() {
      const pk = state.pack;
      if (!pk.orderId) return renderPackChooser();
      const d = pk.detail;
      if (!d) return h('div', { class: 'screen pack' }, h('h1', { tabindex: '-1', key: 'title' }, t('screen.pack')));
      const open = d.lines.reduce((s, l) => s + l.open_qty, 0);
      const parts = [];
      parts.push(h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.pack')),
        h('p', { class: 'lead' }, t('pack.orderFor', { id: ref(d.id), name: d.customer_first_name || '' })),
        button(t('pack.close'), () => { state.pack.orderId = null; go('pack', { focus: true }); }, { key: 'pack-close' })));
      parts.push(h('p', { class: 'status-line', 'aria-live': 'polite' }, packStatusText(d, open)));
      if (d.cancel_requested_at) {
        parts.push(h('p', { class: 'warn-banner' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '!'), ' ', t('order.cancelled', { id: ref(d.id) })));
      }
      const left = [];
      const right = [];
      left.push(section(t('pack.itemsTitle'), h('ul', { class: 'items' }, d.lines.map((l) => {
        const s = lineState(l);
        return h('li', null, t('pack.item', { n: l.picked_qty, name: l.substitute_name || l.product_name }),
          ' ', h('span', { class: 'state-word ' + s.cls }, s.text));
      }))));
      right.push(renderScalePanel(d));
      if (d.status === 'PICKING' && open > 0) {
        left.push(button(t('pack.goPick'), () => openPick([d.id]), { kind: 'primary', big: true }));
      } else if (d.status === 'PICKING' || d.status === 'ACCEPTED') {
        left.push(renderPackForm(d));
      } else if (d.status === 'PACKED') {
        left.push(section(t('pack.readyTitle'), [
          h('p', null, t('pack.readyHint')),
          button(t('pack.markReady'), (e) => markReady(d.id, e.currentTarget), { kind: 'primary', big: true, key: 'mark-ready' }),
        ]));
      }
      if (d.status === 'READY' || d.status === 'ASSIGNED' || pk.labels[d.id]) right.push(renderLabels(d));
      else right.push(renderPrinter());
      parts.push(h('div', { class: 'pack-grid' }, h('div', null, left), h('div', null, right)));
      return h('div', { class: 'screen pack' }, parts);
    },
  };

  function packStatusText(d, open) {
    switch (d.status) {
      case 'ACCEPTED':
      case 'PICKING':
        return open > 0 ? t('pack.stillPicking', { n: open }) : t('pack.toPack');
      case 'PACKED': return t('pack.packed', { n: d.bags, bags: d.bags, label: d.label_id || '—' });
      case 'READY': return t('pack.ready', { label: d.label_id || '—' });
      case 'ASSIGNED': return t('pack.assigned', { label: d.label_id || '—' });
      default: return t('pack.other', { status: statusWord(d.status) });
    }
  }

  function renderPackChooser() {
    const q = state.queues || {};
    const toPack = (q.picking || []).filter((e) => e.open_qty === 0);
    const packed = q.packed || [];
    const ready = q.ready || [];
    const cards = [];
    toPack.forEach((e) => cards.push(orderCard(e, entryActions(e, 'picking'))));
    packed.forEach((e) => cards.push(orderCard(e, entryActions(e, 'packed'))));
    ready.forEach((e) => cards.push(orderCard(e, [button(t('pack.show'), () => openPack(e.order_id), { label: t('pack.showLabel', { id: ref(e.order_id) }) })])));
    return h('div', { class: 'screen pack' },
      h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.pack')),
        h('p', { class: 'lead' }, t('pack.choose'))),
      cards.length ? h('ul', { class: 'cards wide' }, cards) : h('p', { class: 'empty' }, t('pack.nothing')));
  }

  function scaleChildren(d) {
    const scale = packScale();
    if (!scale) return [h('p', null, t('pack.noScale'))];
    const exp = expectedWeight(d);
    const tol = tolerance(exp);
    const w = state.weight && state.weight.device === scale ? state.weight : null;
    const out = [];
    if (w && typeof w.grams === 'number') {
      out.push(h('p', { class: 'weight-now' }, t('pack.onScale', { g: w.grams })));
      out.push(h('p', { class: 'meta' }, w.stable ? t('pack.stable') : t('pack.settling')));
    } else {
      out.push(h('p', { class: 'weight-now' }, t('pack.noReading')));
    }
    if (d.status === 'PICKING' || d.status === 'ACCEPTED' || d.expected_weight_g !== null) {
      out.push(h('p', null, t('pack.expected', { g: exp, tol: tol })));
      if (w && typeof w.grams === 'number' && (d.status === 'PICKING' || d.status === 'ACCEPTED')) {
        const diff = w.grams - exp;
        let v;
        if (Math.abs(diff) <= tol) v = h('p', { class: 'verdict ok' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '✓'), ' ', t('pack.inRange'));
        else if (diff > 0) v = h('p', { class: 'verdict bad' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '!'), ' ', t('pack.tooHeavy', { g: diff }));
        else v = h('p', { class: 'verdict bad' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '!'), ' ', t('pack.tooLight', { g: -diff }));
        out.push(v);
      }
    }
    if (d.bag_weight_g !== null && d.bag_weight_g !== undefined && d.status !== 'PICKING') out.push(h('p', { class: 'meta' }, t('pack.weighed', { g: d.bag_weight_g })));
    return out;
  }

  function renderScalePanel(d) {
    const scale = packScale();
    const el = section(scale ? t('pack.scaleTitle', { id: scale }) : t('pack.scaleTitleNone'), h('div', { class: 'scale-body' }, scaleChildren(d)), { class: 'scale' });
    el.dataset.scale = '1';
    return el;
  }

  /** A weight event: redraw the scale panel only, not the whole screen. */
  function updateScale() {
    const d = state.pack.detail;
    const body = document.querySelector('#main [data-scale] .scale-body');
    if (!d || !body) return;
    body.replaceChildren.apply(body, scaleChildren(d));
  }

  function renderPackForm(d) {
    const pk = state.pack;
    const ui = pk.ui;
    const bagsNow = () => Math.max(1, Math.min(20, parseInt(ui.bags, 10) || 1));
    const children = [
      h('div', { class: 'stepper' },
        button('−', () => { ui.bags = String(Math.max(1, bagsNow() - 1)); render(); }, { label: t('pack.bagsLess'), key: 'bags-less' }),
        field({ key: 'bags', label: t('pack.bags'), type: 'number', inputmode: 'numeric', min: 1, max: 20, obj: ui, prop: 'bags' }),
        button('+', () => { ui.bags = String(Math.min(20, bagsNow() + 1)); render(); }, { label: t('pack.bagsMore'), key: 'bags-more' })),
      h('p', { class: 'hint' }, packScale() ? t('pack.packHint') : t('pack.packHintNoScale')),
      button(t('pack.pack'), null, { submit: true, kind: 'primary', big: true, key: 'pack' }),
    ];
    const packForm = form('pack-form', (e) => doPack(d.id, false, e.submitter), children);
    const out = [section(t('pack.packTitle'), packForm)];
    if (pk.needOverride) {
      if (roleAtLeast('lead')) {
        out.push(section(t('pack.overrideTitle'), form('override-form', (e) => doPack(d.id, true, e.submitter), [
          h('p', null, t('pack.overrideHint')),
          field({ key: 'override-reason', label: t('pack.overrideReason'), type: 'textarea', obj: ui, prop: 'reason', required: true, wide: true }),
          button(t('pack.overrideSubmit'), null, { submit: true, kind: 'danger' }),
        ]), { class: 'override' }));
      } else {
        out.push(h('p', { class: 'warn-line' }, t('pack.askLead')));
      }
    }
    return out;
  }

  async function doPack(id, override, btn) {
    const pk = state.pack;
    const bags = parseInt(pk.ui.bags, 10);
    if (!Number.isInteger(bags) || bags < 1 || bags > 20) { showAlert(t('pack.bagsBad')); return; }
    const body = { bags: bags };
    if (override) {
      const reason = (pk.ui.reason || '').trim();
      if (!reason) { showAlert(t('pack.reasonMissing')); return; }
      body.override = true;
      body.override_reason = reason;
    }
    if (btn) btn.disabled = true;
    try {
      const r = await api('POST', '/orders/' + encodeURIComponent(id) + '/pack', body);
      clearAlert();
      pk.needOverride = false;
      pk.tolerance = r.tolerance_g;
      pk.ui.reason = '';
      showNotice(r.weight_override ? t('pack.packedOverride', { label: r.label_id })
        : t('pack.packedOk', { n: r.bags, bags: r.bags, label: r.label_id }));
      await reloadNow();
    } catch (err) {
      if (err.status === 409 && /weigh/i.test(err.message)) {
        pk.needOverride = true;
        const m = /should weigh (\d+) g \(± (\d+) g\)/.exec(err.message);
        if (m) pk.tolerance = Number(m[2]);
        showAlert(t('pack.refused', { message: err.message }), { beep: true });
        render();
      } else {
        fail(err, { beep: true });
      }
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  async function markReady(id, btn) {
    await act(btn, async () => {
      const r = await api('POST', '/orders/' + encodeURIComponent(id) + '/ready');
      state.pack.labels[id] = r;
      clearAlert();
      showNotice(t('pack.readyDone', { id: ref(id) }));
      await reloadNow();
    });
  }

  async function reprint(id, btn) {
    await act(btn, async () => {
      const r = await api('POST', '/orders/' + encodeURIComponent(id) + '/labels/reprint');
      state.pack.labels[id] = r;
      showNotice(t('pack.reprinted'));
      await reloadNow();
    });
  }

  const OUTCOMES = ['printed', 'not_sent', 'failed', 'uncertain', 'queued', 'duplicate'];
  function labelLine(l) {
    const outcome = l.outcome || (l.ok === true ? 'printed' : l.ok === false ? 'failed' : '');
    const word = OUTCOMES.includes(outcome) ? t('label.' + outcome) : (outcome || t('label.unknown'));
    const cls = outcome === 'printed' || outcome === 'duplicate' ? 'ok' : 'bad';
    const bag = l.bag && l.bags ? t('label.bag', { bag: l.bag, bags: l.bags }) : (l.label_id || l.job_id || '');
    const why = l.reason || l.message || (Array.isArray(l.faults_after) && l.faults_after.length ? l.faults_after.join(', ') : '');
    return h('li', { class: 'label-line ' + cls },
      h('span', { class: 'icon', 'aria-hidden': 'true' }, cls === 'ok' ? '✓' : '!'), ' ',
      h('strong', null, t('label.line', { bag: bag, outcome: word })),
      why ? ' — ' + why : '',
      l.job_id ? h('span', { class: 'meta block' }, t('label.job', { job: l.job_id })) : null);
  }

  function printerState() {
    const devs = (state.devices && state.devices.devices) || [];
    const id = state.devices && state.devices.label_printer;
    const p = devs.find((d) => d.id === id) || devs.find((d) => d.kind === 'printer');
    if (!p) return null;
    const health = p.health && p.health.state;
    const faults = p.faults || [];
    return {
      ready: health === 'connected' && !faults.length,
      message: faults.length ? t('printer.faults', { id: p.id, faults: faults.join(', ') })
        : t('printer.state', { id: p.id, state: t('health.' + (health || 'connecting')) }),
    };
  }

  function renderPrinter() {
    const ps = printerState();
    if (!ps) return section(t('pack.printerTitle'), h('p', null, t('pack.noPrinter')));
    return section(t('pack.printerTitle'), h('p', { class: ps.ready ? 'ok-line' : 'warn-line' },
      h('span', { class: 'icon', 'aria-hidden': 'true' }, ps.ready ? '✓' : '!'), ' ', ps.message));
  }

  function renderLabels(d) {
    const r = state.pack.labels[d.id];
    const items = [];
    if (d.label_id) items.push(h('p', { class: 'label-id' }, t('pack.labelId', { label: d.label_id })));
    if (r) {
      const labels = Array.isArray(r.labels) ? r.labels : [];
      if (labels.length) items.push(h('ul', { class: 'labels' }, labels.map(labelLine)));
      else items.push(h('p', null, t('label.none')));
      const msg = r.label_message || r.message;
      if (msg) items.push(h('p', { class: 'meta' }, msg));
      if (r.printer) {
        items.push(h('p', { class: r.printer.ready ? 'ok-line' : 'warn-line' },
          h('span', { class: 'icon', 'aria-hidden': 'true' }, r.printer.ready ? '✓' : '!'), ' ',
          t('pack.printerNow', { message: r.printer.message || r.printer.id })));
      }
    } else {
      const ps = printerState();
      if (ps) items.push(h('p', { class: ps.ready ? 'ok-line' : 'warn-line' }, ps.message));
    }
    if (roleAtLeast('lead') && (d.status === 'READY' || d.status === 'ASSIGNED')) {
      items.push(button(t('pack.reprint'), (e) => reprint(d.id, e.currentTarget), { key: 'reprint' }));
    }
    if (d.status === 'READY' || d.status === 'ASSIGNED') {
      items.push(button(t('pack.toHandoff'), () => openHandoff({ order_id: d.id, label_id: d.label_id }), { kind: 'secondary', key: 'to-handoff' }));
    }
    return section(t('pack.labelsTitle'), items, { class: 'labels-panel' });
  }

  // ---------------------------------------------------------------------------------
  // Handoff

  screens.handoff = {
    async load() {
      state.queues = await api('GET', '/queues');
      setSkew(state.queues.now);
      const e = state.handoff.entry;
      if (e) state.handoff.entry = (state.queues.ready || []).find((x) => x.order_id === e.order_id) || null;
    },
    onOrder() { scheduleReload(); },
    render() {
      const ho = state.handoff;
      const q = state.queues || {};
      const ready = (q.ready || []);
      const parts = [h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.handoff')),
        h('p', { class: 'lead' }, t('handoff.intro')))];
      parts.push(section(t('handoff.findTitle'), form('find-form', (e) => findBag(ho.label, e.submitter), [
        field({ key: 'ho-label', label: t('handoff.label'), obj: ho, prop: 'label', placeholder: 'FK-', hint: t('handoff.labelHint'), autocapitalize: 'characters' }),
        button(t('handoff.find'), null, { submit: true, kind: 'primary' }),
      ])));
      const e = ho.entry;
      if (e) {
        const rider = e.rider_id ? (e.rider_name ? t('handoff.riderNamed', { name: e.rider_name, id: e.rider_id }) : e.rider_id) : null;
        parts.push(section(t('handoff.confirmTitle', { id: ref(e.order_id) }), form('handoff-form', (ev) => doHandoff(ev.submitter), [
          h('p', { class: 'big-line' }, t('handoff.bagFor', { id: ref(e.order_id), name: e.customer_first_name || '' })),
          h('p', null, t('handoff.labelIs', { label: e.label_id })),
          rider ? h('p', { class: 'big-line' }, t('handoff.assigned', { rider: rider })) : h('p', null, t('handoff.noRider')),
          rider ? h('p', { class: 'hint' }, t('handoff.checkRider')) : field({ key: 'ho-rider', label: t('handoff.riderId'), obj: ho, prop: 'riderId', autocapitalize: 'none' }),
          h('div', { class: 'actions' },
            button(rider ? t('handoff.confirmTo', { name: e.rider_name || e.rider_id }) : t('handoff.confirm'), null, { submit: true, kind: 'primary', big: true }),
            button(t('common.cancel'), () => { ho.entry = null; ho.label = ''; render(); })),
        ]), { class: 'confirm' }));
      }
      parts.push(section(t('handoff.shelfTitle'), ready.length ? h('ul', { class: 'cards wide' }, ready.map((x) => orderCard(x, [
        button(t('handoff.choose'), () => { ho.entry = x; ho.label = x.label_id || ''; ho.riderId = ''; render(); }, { label: t('handoff.chooseLabel', { id: ref(x.order_id) }) }),
      ], h('p', { class: 'meta' }, t('handoff.shelfLine', {
        label: x.label_id || '—', rider: x.rider_name || x.rider_id || t('handoff.noRiderShort'),
      }))))) : h('p', { class: 'empty' }, t('handoff.shelfEmpty'))));
      const done = q.handed_off || [];
      parts.push(section(t('handoff.whoTitle'), done.length ? h('table', { class: 'who-took' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, t('handoff.colTime')), h('th', { scope: 'col' }, t('handoff.colOrder')),
          h('th', { scope: 'col' }, t('handoff.colLabel')), h('th', { scope: 'col' }, t('handoff.colRider')),
          h('th', { scope: 'col' }, t('handoff.colStaff')))),
        h('tbody', null, done.map((x) => h('tr', null,
          h('td', null, fmtTime(x.at)), h('th', { scope: 'row' }, ref(x.order_id)), h('td', null, x.label_id || ''),
          h('td', null, x.rider_name ? t('handoff.riderNamed', { name: x.rider_name, id: x.rider_id }) : x.rider_id),
          h('td', null, x.staff_id || ''))))) : h('p', { class: 'empty' }, t('handoff.whoEmpty')), { class: 'who-panel' }));
      return h('div', { class: 'screen handoff' }, parts);
    },
  };

  async function findBag(label, btn) {
    const ho = state.handoff;
    const code = String(label || '').trim();
    if (!code) { showAlert(t('handoff.labelMissing')); return; }
    await act(btn, async () => {
      state.queues = await api('GET', '/queues');
      setSkew(state.queues.now);
      const entry = (state.queues.ready || []).find((e) => e.label_id && e.label_id.toUpperCase() === code.toUpperCase());
      if (!entry) {
        ho.entry = null;
        const gone = (state.queues.handed_off || []).find((e) => e.label_id && e.label_id.toUpperCase() === code.toUpperCase());
        showAlert(gone ? t('handoff.already', { label: code, id: ref(gone.order_id), rider: gone.rider_name || gone.rider_id })
          : t('handoff.notFound', { label: code }), { beep: true });
      } else {
        clearAlert();
        ho.entry = entry;
        ho.label = entry.label_id;
        ho.riderId = '';
        beep(true);
      }
      state.loaded = true;
      render();
      if (entry && !entry.rider_id) {
        const input = document.getElementById('f-ho-rider');
        if (input) input.focus();
      }
    });
  }

  async function doHandoff(btn) {
    const ho = state.handoff;
    const e = ho.entry;
    if (!e) return;
    const rider = e.rider_id || (ho.riderId || '').trim();
    if (!rider) { showAlert(t('handoff.riderMissing')); return; }
    await act(btn, async () => {
      await api('POST', '/orders/' + encodeURIComponent(e.order_id) + '/handoff', { rider_id: rider, label_id: e.label_id });
      clearAlert();
      beep(true);
      showNotice(t('handoff.done', { id: ref(e.order_id), rider: e.rider_name || rider }));
      state.handoff = { label: '', entry: null, riderId: '' };
      await reloadNow();
    });
  }

  // ---------------------------------------------------------------------------------
  // Goods in

  function productOptions(first) {
    return [{ value: '', label: first }].concat((state.products || []).map((p) => ({
      value: p.id, label: t('goods.productOption', { name: p.name, bin: p.bin_id || '—', n: p.on_hand === undefined ? '?' : p.on_hand }),
    })));
  }
  function binOptions(first) {
    return [{ value: '', label: first }].concat((state.bins || []).map((b) => ({ value: b.id, label: b.id })));
  }

  screens.goods = {
    async load() {
      const lead = roleAtLeast('lead');
      const [products, bins, devices] = await Promise.all([
        api('GET', '/products'),
        lead ? api('GET', '/bins').catch(() => null) : Promise.resolve(null),
        api('GET', '/devices').catch(() => null),
      ]);
      state.products = products;
      if (bins) state.bins = bins;
      state.devices = devices;
      const me = state.me.staff_id;
      const bound = ((devices && devices.devices) || []).find((d) => d.kind === 'scanner' && d.bound && d.bound.receiving && d.bound.staff_id === me);
      state.goods.boundScanner = bound ? bound.id : null;
    },
    onOrder() {},
    render() {
      const g = state.goods;
      const ui = g.ui;
      ui.adj = ui.adj || { reason: 'damage' };
      ui.count = ui.count || {};
      const parts = [h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.goods')),
        h('p', { class: 'lead' }, t('goods.intro')))];
      const left = [];
      const right = [];
      left.push(section(t('goods.scanTitle'), form('case-form', (e) => receiveScan(ui.scan, e.submitter), [
        field({ key: 'case', label: t('goods.caseLabel'), obj: ui, prop: 'scan', hint: t('goods.caseHint'), autocapitalize: 'none', wide: true }),
        button(t('goods.receiveCase'), null, { submit: true, kind: 'primary' }),
      ])));
      left.push(section(t('goods.countTitle'), form('count-in-form', (e) => receiveCounted(e.submitter), [
        field({ key: 'rc-product', label: t('goods.product'), options: productOptions(t('goods.chooseProduct')), obj: ui, prop: 'product', wide: true }),
        field({ key: 'rc-qty', label: t('goods.pieces'), type: 'number', inputmode: 'numeric', min: 1, obj: ui, prop: 'qty' }),
        field({ key: 'rc-lot', label: t('goods.lot'), obj: ui, prop: 'lot', autocapitalize: 'characters' }),
        field({ key: 'rc-expiry', label: t('goods.expiry'), type: 'date', obj: ui, prop: 'expiry' }),
        button(t('goods.receive'), null, { submit: true, kind: 'primary' }),
      ])));
      right.push(section(t('goods.receivedTitle'), g.received.length
        ? h('ul', { class: 'received' }, g.received.map((r) => h('li', null,
          h('span', { class: 'icon', 'aria-hidden': 'true' }, '✓'), ' ', r)))
        : h('p', { class: 'empty' }, t('goods.receivedEmpty')), { class: 'received-panel' }));
      right.push(renderReceivingScanner());
      if (roleAtLeast('lead')) {
        const a = ui.adj;
        const c = ui.count;
        right.push(section(t('goods.adjustTitle'), form('adjust-form', (e) => doAdjust(e.submitter), [
          field({ key: 'adj-product', label: t('goods.product'), options: productOptions(t('goods.chooseProduct')), obj: a, prop: 'product', wide: true,
            onInput: (v) => { const p = (state.products || []).find((x) => x.id === v); if (p && p.bin_id) { a.bin = p.bin_id; render(); } } }),
          field({ key: 'adj-bin', label: t('goods.bin'), options: binOptions(t('goods.chooseBin')), obj: a, prop: 'bin' }),
          field({ key: 'adj-qty', label: t('goods.adjQty'), type: 'number', inputmode: 'numeric', obj: a, prop: 'qty', hint: t('goods.adjQtyHint') }),
          field({
            key: 'adj-reason', label: t('goods.reason'), obj: a, prop: 'reason',
            options: ['damage', 'expiry', 'found', 'correction'].map((r) => ({ value: r, label: t('reason.' + r) })),
          }),
          field({ key: 'adj-note', label: t('goods.note'), obj: a, prop: 'note', wide: true }),
          button(t('goods.adjust'), null, { submit: true, kind: 'primary' }),
        ]), { class: 'lead-only' }));
        right.push(section(t('goods.cycleTitle'), form('cycle-form', (e) => doCount(e.submitter), [
          field({ key: 'cc-product', label: t('goods.product'), options: productOptions(t('goods.chooseProduct')), obj: c, prop: 'product', wide: true,
            onInput: (v) => { const p = (state.products || []).find((x) => x.id === v); if (p && p.bin_id) { c.bin = p.bin_id; render(); } } }),
          field({ key: 'cc-bin', label: t('goods.bin'), options: binOptions(t('goods.chooseBin')), obj: c, prop: 'bin' }),
          field({ key: 'cc-counted', label: t('goods.counted'), type: 'number', inputmode: 'numeric', min: 0, obj: c, prop: 'counted' }),
          button(t('goods.saveCount'), null, { submit: true, kind: 'primary' }),
        ]), { class: 'lead-only' }));
      }
      parts.push(h('div', { class: 'goods-grid' }, h('div', null, left), h('div', null, right)));
      return h('div', { class: 'screen goods' }, parts);
    },
  };

  function renderReceivingScanner() {
    const devs = ((state.devices && state.devices.devices) || []).filter((d) => d.kind === 'scanner');
    if (!devs.length) return null;
    const items = [];
    for (const d of devs) {
      const b = d.bound;
      if (b && b.receiving && b.staff_id === state.me.staff_id) {
        items.push(h('p', { class: 'ok-line' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '✓'), ' ', t('goods.scannerBound', { id: d.id })));
        items.push(button(t('pick.unbind', { id: d.id }), (e) => unbindScanner(d.id, e.currentTarget, 'goods'), { key: 'gunbind-' + d.id }));
      } else {
        items.push(button(t('goods.bind', { id: d.id }), (e) => bindScanner(d.id, { receiving: true }, e.currentTarget, 'goods'), { key: 'gbind-' + d.id }));
      }
    }
    return section(t('goods.scannerTitle'), items);
  }

  /** Records a receive in the list on screen and says it. */
  function received(r) {
    const name = productName(r.product_id);
    const c = r.case_label || {};
    const extra = [];
    if (c.lot || r.lot) extra.push(t('goods.lotIs', { lot: c.lot || r.lot }));
    if (c.expiry || r.expiry) extra.push(t('goods.expiryIs', { date: c.expiry || r.expiry }));
    const text = t('goods.received', {
      qty: r.qty, name: name, extra: extra.length ? ' (' + extra.join(', ') + ')' : '',
      onHand: r.level && r.level.on_hand !== undefined ? r.level.on_hand : '?',
    });
    state.goods.received.unshift(text);
    state.goods.received.length = Math.min(state.goods.received.length, 10);
    showNotice(text);
    if (state.screen === 'goods') render();
  }

  async function receiveScan(scan, btn) {
    const code = String(scan || '').trim();
    if (!code) { showAlert(t('goods.scanMissing')); return; }
    if (btn) btn.disabled = true;
    try {
      await loadProducts().catch(() => null);
      const r = await api('POST', '/stock/receive', { scan: code });
      clearAlert();
      beep(true);
      state.goods.ui.scan = '';
      received(r);
    } catch (err) {
      fail(err, { prefix: 'goods.refused', beep: true });
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  async function receiveCounted(btn) {
    const ui = state.goods.ui;
    const qty = Number(ui.qty);
    if (!ui.product) { showAlert(t('goods.productMissing')); return; }
    if (!Number.isInteger(qty) || qty < 1) { showAlert(t('goods.qtyBad')); return; }
    const body = { product_id: ui.product, qty: qty };
    if (ui.lot && ui.lot.trim()) body.lot = ui.lot.trim();
    if (ui.expiry) body.expiry = ui.expiry;
    await act(btn, async () => {
      const r = await api('POST', '/stock/receive', body);
      clearAlert();
      ui.qty = '';
      ui.lot = '';
      ui.expiry = '';
      received(Object.assign({ lot: body.lot, expiry: body.expiry }, r));
    });
  }

  async function doAdjust(btn) {
    const a = state.goods.ui.adj;
    const qty = Number(a.qty);
    if (!a.product) { showAlert(t('goods.productMissing')); return; }
    if (!a.bin) { showAlert(t('goods.binMissing')); return; }
    if (!Number.isInteger(qty) || qty === 0) { showAlert(t('goods.adjQtyBad')); return; }
    const body = { product_id: a.product, bin_id: a.bin, qty: qty, reason: a.reason || 'correction' };
    if (a.note && a.note.trim()) body.note = a.note.trim();
    await act(btn, async () => {
      const r = await api('POST', '/stock/adjust', body);
      clearAlert();
      const text = t('goods.adjusted', { name: productName(a.product), qty: r.qty > 0 ? '+' + r.qty : r.qty, onHand: r.level ? r.level.on_hand : '?' });
      state.goods.received.unshift(text);
      showNotice(text);
      state.goods.ui.adj = { reason: a.reason };
      await reloadNow();
    });
  }

  async function doCount(btn) {
    const c = state.goods.ui.count;
    const counted = Number(c.counted);
    if (!c.product) { showAlert(t('goods.productMissing')); return; }
    if (!c.bin) { showAlert(t('goods.binMissing')); return; }
    if (c.counted === '' || c.counted === undefined || !Number.isInteger(counted) || counted < 0) { showAlert(t('goods.countedBad')); return; }
    await act(btn, async () => {
      const r = await api('POST', '/stock/count', { product_id: c.product, bin_id: c.bin, counted: counted });
      clearAlert();
      const text = r.qty === 0 ? t('goods.countSame', { name: productName(c.product), n: counted })
        : t('goods.countChanged', { name: productName(c.product), n: counted, qty: r.qty > 0 ? '+' + r.qty : r.qty });
      state.goods.received.unshift(text);
      showNotice(text);
      state.goods.ui.count = {};
      await reloadNow();
    });
  }

  // ---------------------------------------------------------------------------------
  // Devices

  screens.devices = {
    async load() {
      const version = syncVersion;
      const [devices, sync] = await Promise.all([api('GET', '/devices'), api('GET', '/sync/status')]);
      state.devices = devices;
      setSyncStatus(sync, version);
    },
    onOrder() {},
    render() {
      const d = state.devices || {};
      const s = state.sync || {};
      const parts = [h('div', { class: 'screen-head' }, h('h1', { tabindex: '-1', key: 'title' }, t('screen.devices')))];
      const syncItems = [];
      if (!s.configured) {
        syncItems.push(h('p', null, t('sync.notConfigured')));
        if (s.message) syncItems.push(h('p', { class: 'meta' }, s.message));
      } else {
        syncItems.push(h('p', { class: s.online ? 'ok-line' : 'warn-line' },
          h('span', { class: 'icon', 'aria-hidden': 'true' }, s.online ? '✓' : '!'), ' ', s.online ? t('sync.online') : t('sync.offline')));
        if (s.last_success_unix_ms) syncItems.push(h('p', null, t('sync.lastSuccess', { time: fmtTime(new Date(s.last_success_unix_ms).toISOString()) })));
        else syncItems.push(h('p', null, t('sync.never')));
        if (s.lag_changes !== undefined && s.lag_changes !== null) syncItems.push(h('p', null, t('sync.lag', { n: s.lag_changes })));
        if (s.last_error && !s.online) syncItems.push(h('p', { class: 'meta' }, t('sync.lastError', { error: s.last_error })));
      }
      parts.push(section(t('sync.title'), syncItems));
      const devs = d.devices || [];
      const devItems = [];
      if (!d.configured) devItems.push(h('p', null, d.message || t('devices.none')));
      if (d.pack_scale || d.label_printer) {
        devItems.push(h('p', { class: 'meta' }, t('devices.roles', { scale: d.pack_scale || '—', printer: d.label_printer || '—' })));
      }
      if (devs.length) {
        devItems.push(h('ul', { class: 'cards devices' }, devs.map((x) => {
          const health = (x.health && x.health.state) || 'connecting';
          const ok = health === 'connected' && !(x.faults || []).length;
          const word = health === 'connected' && !ok ? t('health.faulted') : t('health.' + health);
          const hid = nextId('dev');
          const lines = [];
          if (x.health && x.health.reason) lines.push(h('p', { class: 'meta' }, t('devices.reason', { reason: x.health.reason })));
          if ((x.faults || []).length) lines.push(h('p', { class: 'warn-line' }, t('devices.faults', { faults: x.faults.join(', ') })));
          if (x.bound) {
            lines.push(h('p', null, x.bound.receiving ? t('devices.boundReceiving', { name: x.bound.name || x.bound.staff_id })
              : t('devices.boundTo', { name: x.bound.name || x.bound.staff_id, order: ref(x.bound.order_id) })));
            if (roleAtLeast('lead') || x.bound.staff_id === state.me.staff_id) {
              lines.push(button(t('devices.release', { id: x.id }), (e) => unbindScanner(x.id, e.currentTarget, 'devices'), { key: 'release-' + x.id }));
            }
          } else if (x.kind === 'scanner') {
            lines.push(h('p', { class: 'meta' }, t('devices.free')));
          }
          if (x.weight) lines.push(h('p', null, t('devices.weight', { g: x.weight.grams, state: x.weight.stable ? t('pack.stable') : t('pack.settling') })));
          return h('li', { class: 'card device ' + (ok ? 'ok' : 'bad'), 'aria-labelledby': hid },
            h('h3', { id: hid }, x.id),
            h('p', { class: 'meta' }, t('kind.' + x.kind) + (x.location ? ' · ' + locationText(x.location) : '')),
            h('p', { class: ok ? 'ok-line' : 'warn-line' },
              h('span', { class: 'icon', 'aria-hidden': 'true' }, ok ? '✓' : '!'), ' ',
              h('strong', null, word)),
            lines);
        })));
      }
      parts.push(section(t('devices.title'), devItems));
      return h('div', { class: 'screen devices' }, parts);
    },
  };

  // ---------------------------------------------------------------------------------
  // Staff (manager)

  screens.staff = {
    async load() {
      state.staff.list = await api('GET', '/staff');
    },
    onOrder() {},
    render() {
      const st = state.staff;
      const ui = st.ui;
      const list = st.list || [];
      const parts = [h('div', { class: 'screen-head' },
        h('h1', { tabindex: '-1', key: 'title' }, t('screen.staff')),
        h('p', { class: 'lead' }, t('staff.intro')))];
      parts.push(section(t('staff.addTitle'), form('add-staff', (e) => addStaff(e.submitter), [
        field({ key: 'new-id', label: t('staff.id'), obj: ui, prop: 'id', autocapitalize: 'none', hint: t('staff.idHint') }),
        field({ key: 'new-name', label: t('staff.name'), obj: ui, prop: 'name' }),
        field({ key: 'new-role', label: t('staff.role'), obj: ui, prop: 'role', options: ['picker', 'lead', 'manager'].map((r) => ({ value: r, label: t('role.' + r) })) }),
        field({ key: 'new-pin', label: t('staff.pin'), type: 'password', inputmode: 'numeric', obj: ui, prop: 'pin', hint: t('staff.pinHint'), autocomplete: 'new-password' }),
        button(t('staff.add'), null, { submit: true, kind: 'primary' }),
      ]), { class: 'add-staff' }));
      const rows = list.map((s) => {
        const name = s.name || s.id;
        const resetting = st.resetFor === s.id;
        const row = h('tr', { class: s.active === false ? 'inactive' : '' },
          h('th', { scope: 'row' }, name),
          h('td', null, s.id),
          h('td', null, t('role.' + s.role)),
          h('td', null, s.active === false ? t('staff.inactive') : t('staff.active')),
          h('td', { class: 'row-actions' },
            button(t('staff.resetPin'), () => { st.resetFor = resetting ? null : s.id; st.newPin = ''; render(); if (!resetting) { const i = document.getElementById('f-reset-pin'); if (i) i.focus(); } },
              { label: t('staff.resetPinFor', { name: name }), key: 'reset-' + s.id, kind: resetting ? 'pressed' : 'secondary' }),
            button(t('staff.unlock'), (e) => unlockStaff(s, e.currentTarget), { label: t('staff.unlockFor', { name: name }), key: 'unlock-' + s.id })));
        if (!resetting) return row;
        const formRow = h('tr', { class: 'reset-row' }, h('td', { colspan: '5' }, form('reset-form', (e) => resetPin(s, e.submitter), [
          field({ key: 'reset-pin', label: t('staff.newPinFor', { name: name }), type: 'password', inputmode: 'numeric', obj: st, prop: 'newPin', hint: t('staff.pinHint'), autocomplete: 'new-password' }),
          h('div', { class: 'actions' },
            button(t('staff.savePin'), null, { submit: true, kind: 'primary' }),
            button(t('common.cancel'), () => { st.resetFor = null; render(); })),
        ])));
        return [row, formRow];
      });
      parts.push(section(t('staff.listTitle'), list.length ? h('table', { class: 'staff-table' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, t('staff.colName')), h('th', { scope: 'col' }, t('staff.colId')),
          h('th', { scope: 'col' }, t('staff.colRole')), h('th', { scope: 'col' }, t('staff.colActive')),
          h('th', { scope: 'col' }, t('staff.colActions')))),
        h('tbody', null, rows)) : h('p', { class: 'empty' }, t('staff.empty'))));
      return h('div', { class: 'screen staff' }, parts);
    },
  };

  async function addStaff(btn) {
    const ui = state.staff.ui;
    const body = { id: (ui.id || '').trim(), name: (ui.name || '').trim(), role: ui.role || 'picker', pin: (ui.pin || '').trim() };
    if (!body.id || !body.name || !body.pin) { showAlert(t('staff.missing')); return; }
    await act(btn, async () => {
      await api('POST', '/staff', body);
      clearAlert();
      showNotice(t('staff.added', { name: body.name, id: body.id }));
      state.staff.ui = { role: 'picker' };
      await reloadNow();
    });
  }

  async function resetPin(s, btn) {
    const st = state.staff;
    const pin = (st.newPin || '').trim();
    if (!pin) { showAlert(t('staff.pinMissing')); return; }
    await act(btn, async () => {
      await api('POST', '/staff/' + encodeURIComponent(s.id) + '/pin', { pin: pin });
      clearAlert();
      st.resetFor = null;
      st.newPin = '';
      showNotice(t('staff.pinReset', { name: s.name || s.id }));
      await reloadNow();
    });
  }

  async function unlockStaff(s, btn) {
    await act(btn, async () => {
      const r = await api('POST', '/staff/' + encodeURIComponent(s.id) + '/unlock');
      clearAlert();
      showNotice(r && r.was_locked === false ? t('staff.notLocked', { name: s.name || s.id }) : t('staff.unlocked', { name: s.name || s.id }));
    });
  }

  // ---------------------------------------------------------------------------------

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
}());
