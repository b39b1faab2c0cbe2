// FlashKart's customer app: plain DOM and SVG, no framework, no build step. Served by the
// cloud at / (this file at /ui/app.js) under a strict CSP: no inline scripts, styles or
// handlers, and no requests but to the cloud's own public API. All text comes from strings.js.
//
// The session is the HttpOnly cookie sign-up and sign-in set; the page keeps only its CSRF
// token (from their answer, or GET /api/v1/account after a reload) and sends it with every
// change. Pages are hash routes so an e-mail's link (#/orders/<id>, #/reset/<token>) opens the
// right one. The cart and the chosen address live in localStorage: a phone keeps them between
// visits, and nothing about them is secret (the server prices and checks everything again).
(function () {
  'use strict';

  const SVG_NS = 'http://www.w3.org/2000/svg';
  // Mirrors of the cloud's rules, only to decide which buttons to show: the server decides.
  const CANCELLABLE = ['PENDING', 'CONFIRMED', 'ROUTED', 'ACCEPTED'];
  const RATEABLE = ['DELIVERED', 'CLOSED'];
  const CART_KEY = 'flashkart.cart';
  const PLACE_KEY = 'flashkart.place';
  const MAP_W = 340;
  const MAP_H = 240;

  const app = {
    me: null,
    csrf: null,
    addresses: [],
    place: loadJson(PLACE_KEY),
    cart: loadJson(CART_KEY) || {},
    areas: null,
    stream: null,
    // The Idempotency-Key of the checkout being attempted: kept across retries of the same
    // cart (a lost answer must not place it twice), new once the cart changes.
    checkoutKey: null,
    // The card registered for that checkout ({key, id}), so a retry does not register it again.
    cardMethod: null,
    // GET /api/v1/payments/config, once.
    payments: null,
    // The order this page just placed (see orderScreen).
    placed: null,
    query: '',
    category: '',
    // Which render is current: an answer for a page the customer has left is dropped.
    page: 0,
    after: null,
  };

  // ---------------------------------------------------------------------------------------
  // Text, elements, storage

  const missing = new Set();
  function t(key, params) {
    let text = window.STRINGS[key];
    if (text === undefined) {
      if (!missing.has(key)) { missing.add(key); console.warn('missing string', key); }
      return key;
    }
    if (typeof text === 'object') text = params && params.n === 1 ? text.one : text.other;
    return text.replace(/\{(\w+)\}/g, (whole, name) =>
      (params && params[name] !== undefined ? String(params[name]) : whole));
  }

  function build(ns, tag, attrs, kids) {
    const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === 'function') node.addEventListener(key.replace(/^on/, ''), value);
      else if (key === 'text') node.textContent = value;
      else if (key === 'value' || key === 'checked' || key === 'disabled') node[key] = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid !== null && kid !== undefined && kid !== false) node.append(kid);
    }
    return node;
  }
  /** An HTML element: el('button', {class, text, onclick}, ...children). */
  const el = (tag, attrs, ...kids) => build(null, tag, attrs, kids);
  /** An SVG element, the same way. */
  const svg = (tag, attrs, ...kids) => build(SVG_NS, tag, attrs, kids);

  /** Replaces `node`'s children with `kids` (nested arrays flattened, empty ones left out). */
  function fill(node, ...kids) {
    node.replaceChildren(...kids.flat(Infinity).filter((kid) => kid !== null && kid !== undefined && kid !== false));
  }

  function loadJson(key) {
    try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch (e) { return null; }
  }
  function saveJson(key, value) {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  }

  let fieldCount = 0;
  /** A labelled input: field('auth.email', {type: 'email', name, autocomplete, required}). */
  function field(labelKey, attrs, hintKey) {
    fieldCount += 1;
    const id = 'field-' + fieldCount;
    const hintId = hintKey ? id + '-hint' : null;
    const tag = attrs.type === 'textarea' ? 'textarea' : 'input';
    const input = el(tag, Object.assign({ id: id, 'aria-describedby': hintId }, attrs,
      tag === 'textarea' ? { type: null } : {}));
    return el('div', null, el('label', { for: id, text: t(labelKey) }), input,
      hintKey ? el('p', { class: 'muted', id: hintId, text: t(hintKey) }) : null);
  }

  /** A status in words; one the app does not know yet is shown as the server names it. */
  function statusText(status) {
    const key = 'orders.status.' + status;
    return window.STRINGS[key] === undefined ? status : t(key);
  }

  function money(minor, currency) {
    return new Intl.NumberFormat(window.STRINGS._locale, { style: 'currency', currency: currency || 'EUR' })
      .format(minor / 100);
  }
  function when(iso) {
    return new Date(iso).toLocaleString(window.STRINGS._locale, { dateStyle: 'medium', timeStyle: 'short' });
  }
  function clock(iso) {
    return new Date(iso).toLocaleTimeString(window.STRINGS._locale, { hour: '2-digit', minute: '2-digit' });
  }

  /** A random key (crypto.randomUUID needs a secure context, which a phone on the LAN is not). */
  function randomKey() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // ---------------------------------------------------------------------------------------
  // The API

  class ApiFailure extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  async function api(method, path, body, headers) {
    const sent = Object.assign({ accept: 'application/json' }, headers);
    if (body !== undefined) sent['content-type'] = 'application/json';
    if (method !== 'GET' && app.csrf) sent['x-csrf-token'] = app.csrf;
    let response;
    try {
      response = await fetch(path, {
        method: method, headers: sent, credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiFailure(0, t('error.network'));
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const message = (data && (data.message || data.error)) || response.statusText;
      throw new ApiFailure(response.status, message, data);
    }
    return data;
  }

  function storefrontPath(place, extra) {
    const params = new URLSearchParams({ lat: place.lat, lon: place.lon });
    for (const [key, value] of Object.entries(extra || {})) if (value) params.set(key, value);
    return '/api/v1/storefront?' + params;
  }

  async function areas() {
    if (!app.areas) app.areas = (await api('GET', '/api/v1/areas')).stores;
    return app.areas;
  }

  // ---------------------------------------------------------------------------------------
  // Messages, the frame around each page

  function alertText(text) { document.getElementById('alert').textContent = text || ''; }
  function notice(text) { document.getElementById('notice').textContent = text || ''; }
  function failed(error) {
    alertText(error instanceof ApiFailure && error.status === 0
      ? error.message : t('error.generic', { message: error.message }));
  }

  /** Replaces the page with `nodes` if `page` is still the current one. */
  function show(page, nodes) {
    if (page !== app.page) return false;
    const main = document.getElementById('main');
    fill(main, nodes);
    return true;
  }

  function cartCount() {
    return Object.values(app.cart).reduce((n, line) => n + line.qty, 0);
  }

  function frame(route) {
    const count = cartCount();
    document.getElementById('nav-cart').textContent = t('nav.cart', { n: count });
    for (const link of document.querySelectorAll('#nav a')) {
      if (link.dataset.route === route) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.getElementById('where').textContent = app.place
      ? t('where.at', { label: app.place.label }) : t('where.none');
  }

  function setCart(cart) {
    app.cart = cart;
    app.checkoutKey = null;
    saveJson(CART_KEY, cart);
    frame(currentRoute());
  }

  function setPlace(place) {
    app.place = place;
    saveJson(PLACE_KEY, place);
    frame(currentRoute());
  }

  function needSignIn(page, back) {
    app.after = back;
    show(page, [
      el('h1', { text: t('auth.signIn') }),
      el('p', { text: t('error.signInFirst') }),
      el('div', { class: 'links' },
        el('a', { class: 'btn', href: '#/sign-in', text: t('auth.signIn') }),
        el('a', { class: 'btn secondary', href: '#/sign-up', text: t('auth.needAccount') })),
    ]);
  }

  // ---------------------------------------------------------------------------------------
  // Shop

  function quantityControl(product, onChange) {
    const line = app.cart[product.id];
    if (!line) {
      return el('button', {
        type: 'button', class: 'btn', text: t('shop.addShort'),
        'aria-label': t('shop.add', { name: product.name }),
        disabled: product.available < 1,
        onclick: () => { changeQty(product, 1); onChange(); },
      });
    }
    return el('div', { class: 'row' },
      el('button', {
        type: 'button', class: 'btn secondary step', text: '−',
        'aria-label': t('cart.less', { name: product.name }),
        onclick: () => { changeQty(product, -1); onChange(); },
      }),
      el('span', { class: 'qty', 'aria-label': t('shop.inCart', { n: line.qty }), text: String(line.qty) }),
      el('button', {
        type: 'button', class: 'btn secondary step', text: '+',
        'aria-label': t('cart.more', { name: product.name }),
        disabled: line.qty >= product.available,
        onclick: () => { changeQty(product, 1); onChange(); },
      }));
  }

  function changeQty(product, delta) {
    const cart = Object.assign({}, app.cart);
    const line = cart[product.id] || {
      product_id: product.id, name: product.name, unit_price_minor: product.unit_price_minor,
      currency: product.currency, qty: 0,
    };
    line.available = product.available;
    line.qty = Math.max(0, Math.min(line.qty + delta, product.available));
    if (line.qty === 0) delete cart[product.id];
    else cart[product.id] = line;
    setCart(cart);
  }

  function deliveryBanner(front) {
    if (front.deliverable) {
      return el('div', { class: 'banner ok' },
        el('div', { text: t('shop.from', { store: front.store.name }) }),
        el('div', { class: 'muted', text: t('shop.feeEta', {
          fee: money(front.delivery_fee_minor), eta: front.eta_minutes,
        }) }));
    }
    const text = front.reason === 'outside_areas'
      ? t('shop.outside') : t('shop.unavailable', { message: front.message });
    return el('div', { class: 'banner warn', role: 'status', text: text });
  }

  async function shopScreen(page) {
    if (!app.place) {
      show(page, [
        el('h1', { text: t('shop.heading') }),
        el('p', { text: t('shop.noAddress') }),
        el('a', { class: 'btn', href: '#/address', text: t('shop.chooseAddress') }),
      ]);
      return;
    }
    const banner = el('div');
    const chips = el('div', { class: 'chips', role: 'group', 'aria-label': t('shop.categories') });
    const list = el('ul', { class: 'products', 'aria-label': t('shop.products') });
    const input = el('input', {
      type: 'search', id: 'search', value: app.query, autocomplete: 'off', enterkeyhint: 'search',
    });
    let typing = null;
    const search = el('form', {
      role: 'search',
      onsubmit: (e) => { e.preventDefault(); clearTimeout(typing); app.query = input.value.trim(); load(); },
    },
    el('label', { for: 'search', text: t('shop.search') }),
    el('div', { class: 'search' }, input, el('button', { class: 'btn', type: 'submit', text: t('shop.searchButton') })));
    // Results follow typing after a pause, so a phone keyboard needs no extra tap.
    input.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => { app.query = input.value.trim(); load(); }, 300);
    });
    show(page, [el('h1', { text: t('shop.heading') }), banner, search, chips, list]);

    let asked = 0;
    async function load() {
      asked += 1;
      const mine = asked;
      let front;
      try {
        front = await api('GET', storefrontPath(app.place, { q: app.query, category: app.category, limit: 40 }));
      } catch (error) { failed(error); return; }
      if (mine !== asked || page !== app.page) return;
      alertText('');
      fill(banner, deliveryBanner(front));
      drawChips(front.categories);
      drawProducts(front.products);
    }
    function drawChips(categories) {
      const chip = (id, name) => el('button', {
        type: 'button', class: 'chip', text: name, 'aria-pressed': String(app.category === id),
        onclick: () => { app.category = id; load(); },
      });
      fill(chips, chip('', t('shop.allCategories')),
        ...categories.filter((c) => c.id).map((c) => chip(c.id, c.name)));
    }
    function drawProducts(products) {
      if (!products.length) {
        fill(list, el('li', { class: 'muted', text: app.query
          ? t('shop.noMatch', { q: app.query }) : t('shop.noProducts') }));
        return;
      }
      const redraw = () => drawProducts(products);
      fill(list, ...products.map((p) => el('li', { class: 'product' },
        el('div', { class: 'grow' },
          el('div', { class: 'name', text: p.name }),
          el('div', { class: 'muted', text: [p.unit, t('shop.inStock', { n: p.available })].filter(Boolean).join(' · ') })),
        el('span', { class: 'price', text: money(p.unit_price_minor, p.currency) }),
        quantityControl(p, redraw))));
    }
    load();
  }

  // ---------------------------------------------------------------------------------------
  // Cart and checkout

  async function cartScreen(page) {
    const lines = Object.values(app.cart);
    if (!lines.length) {
      show(page, [el('h1', { text: t('cart.heading') }), el('p', { text: t('cart.empty') }),
        el('a', { class: 'btn', href: '#/', text: t('nav.shop') })]);
      return;
    }
    let front = null;
    if (app.place) {
      try { front = await api('GET', storefrontPath(app.place, { limit: 1 })); } catch (error) { failed(error); }
    }
    const currency = lines[0].currency;
    const items = lines.reduce((sum, l) => sum + l.qty * l.unit_price_minor, 0);
    const redraw = () => cartScreen(page);
    const list = el('ul', { class: 'lines' }, lines.map((line) => el('li', null,
      el('div', { class: 'grow' },
        el('div', { text: line.name }),
        el('div', { class: 'muted', text: t('cart.qty', { qty: line.qty, price: money(line.unit_price_minor, line.currency) }) })),
      quantityControl({
        id: line.product_id, name: line.name, unit_price_minor: line.unit_price_minor,
        currency: line.currency, available: line.available,
      }, redraw))));
    const deliverable = front && front.deliverable;
    const fee = deliverable ? front.delivery_fee_minor : null;
    const sum = el('div', { class: 'sum' },
      el('span', { text: t('cart.items') }), el('span', { text: money(items, currency) }),
      deliverable ? [el('span', { text: t('cart.fee') }), el('span', { text: money(fee, currency) }),
        el('span', { class: 'total', text: t('cart.total') }), el('span', { class: 'total', text: money(items + fee, currency) })] : null);
    const where = app.place
      ? el('p', { class: 'muted', text: t('cart.to', { label: app.place.label, text: app.place.text }) })
      : el('a', { class: 'btn secondary', href: '#/address', text: t('shop.chooseAddress') });
    const options = await paymentOptions();
    const cards = options.methods.includes('card');
    // A new choice or card is a new order: the next attempt gets a new Idempotency-Key.
    const changed = () => { app.checkoutKey = null; app.cardMethod = null; alertText(''); };
    const cardFields = el('div', { class: 'card-fields', hidden: !cards },
      field('cart.cardNumber', { name: 'card-number', inputmode: 'numeric', autocomplete: 'cc-number', maxlength: 23, oninput: changed }),
      el('div', { class: 'row' },
        field('cart.cardExpiry', { name: 'card-expiry', inputmode: 'numeric', autocomplete: 'cc-exp', placeholder: 'MM/YY', maxlength: 7, oninput: changed }),
        field('cart.cardCvc', { name: 'card-cvc', inputmode: 'numeric', autocomplete: 'cc-csc', maxlength: 4, oninput: changed })),
      el('p', { class: 'muted', text: t('cart.cardHint') }));
    const choose = (e) => { cardFields.hidden = e.currentTarget.value !== 'card'; changed(); };
    const payment = el('fieldset', null, el('legend', { text: t('cart.payment') }),
      cards ? el('label', { class: 'row' },
        el('input', { type: 'radio', name: 'payment', value: 'card', checked: true, onchange: choose }),
        el('span', { text: t('cart.card') })) : null,
      el('label', { class: 'row' },
        el('input', { type: 'radio', name: 'payment', value: 'cash', checked: !cards, onchange: choose }),
        el('span', { text: t('cart.cash') })),
      cardFields);
    const choice = () => {
      const picked = payment.querySelector('input[name=payment]:checked');
      if (!picked || picked.value !== 'card') return { method: 'cash' };
      const value = (name) => payment.querySelector('input[name=' + name + ']').value;
      return { method: 'card', number: value('card-number'), expiry: value('card-expiry'), cvc: value('card-cvc') };
    };
    let action;
    if (!app.me) {
      action = el('a', { class: 'btn wide', href: '#/sign-in', text: t('cart.signIn'),
        onclick: () => { app.after = '#/cart'; } });
    } else {
      action = el('button', {
        type: 'button', class: 'btn wide', text: t('cart.checkout'), disabled: !deliverable,
        onclick: (e) => checkout(e.currentTarget, lines, choice()),
      });
    }
    show(page, [el('h1', { text: t('cart.heading') }), list,
      front ? deliveryBanner(front) : null,
      deliverable ? el('p', { text: t('cart.eta', { eta: front.eta_minutes }) }) : null,
      sum, where, payment, action]);
  }

  /** How this cloud takes payment: cash always, a card when a provider is configured. */
  async function paymentOptions() {
    if (!app.payments) {
      try { app.payments = await api('GET', '/api/v1/payments/config'); } catch (error) {
        return { methods: ['cash'], card: null };
      }
    }
    return app.payments;
  }

  /**
   * Registers the card at the payment provider and returns its reference (`pm_...`): the
   * cloud starts a setup, and this page confirms it at the provider with the card and the
   * publishable key, so the card number goes to the provider only, never to FlashKart.
   */
  async function cardPaymentMethod(card) {
    const number = card.number.replace(/[\s-]+/g, '');
    const expiry = /^(\d{1,2})\s*\/\s*(\d{2}|\d{4})$/.exec(card.expiry.trim());
    const cvc = card.cvc.trim();
    if (!/^\d{12,19}$/.test(number) || !expiry || !/^\d{3,4}$/.test(cvc)) {
      throw new ApiFailure(422, t('cart.cardInvalid'), { card: true });
    }
    const setup = await api('POST', '/api/v1/payments/card-setup');
    const body = new URLSearchParams({
      key: setup.publishable_key,
      client_secret: setup.client_secret,
      'payment_method_data[type]': 'card',
      'payment_method_data[card][number]': number,
      'payment_method_data[card][exp_month]': expiry[1],
      'payment_method_data[card][exp_year]': expiry[2],
      'payment_method_data[card][cvc]': cvc,
    });
    let response;
    try {
      response = await fetch(setup.api_base + '/v1/setup_intents/' + encodeURIComponent(setup.setup_id) + '/confirm',
        { method: 'POST', body: body, credentials: 'omit', referrerPolicy: 'no-referrer' });
    } catch (e) {
      throw new ApiFailure(0, t('error.network'));
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok || !data || data.status !== 'succeeded' || typeof data.payment_method !== 'string') {
      const message = (data && data.error && data.error.message) || response.statusText;
      throw new ApiFailure(402, message);
    }
    return data.payment_method;
  }

  async function checkout(button, lines, choice) {
    button.disabled = true;
    if (!app.checkoutKey) app.checkoutKey = randomKey();
    const place = app.place;
    try {
      let payment = { method: 'cash' };
      if (choice.method === 'card') {
        // One card registration per attempt: a retry after a lost answer repeats the same order.
        if (!app.cardMethod || app.cardMethod.key !== app.checkoutKey) {
          notice(t('cart.registering'));
          app.cardMethod = { key: app.checkoutKey, id: await cardPaymentMethod(choice) };
        }
        payment = { method: 'card', payment_method: app.cardMethod.id };
      }
      notice(t('cart.placing'));
      const placed = await api('POST', '/api/v1/orders', {
        address: { text: place.label + ': ' + place.text, lat: place.lat, lon: place.lon },
        lines: lines.map((l) => ({ product_id: l.product_id, qty: l.qty })),
        payment: payment,
      }, { 'idempotency-key': app.checkoutKey });
      setCart({});
      notice('');
      app.placed = placed.order_id;
      location.hash = '#/orders/' + encodeURIComponent(placed.order_id);
    } catch (error) {
      notice('');
      // A declined or mistyped card: the next attempt is a new order, with another card.
      if (error instanceof ApiFailure && (error.status === 402 || error.status === 422)) {
        app.checkoutKey = null;
        app.cardMethod = null;
      }
      if (error instanceof ApiFailure && error.status === 402) alertText(t('error.card', { message: error.message }));
      else if (error instanceof ApiFailure && error.body && error.body.card) alertText(error.message);
      else failed(error);
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Maps: the delivery areas (choosing the door) and an order's way (tracking)

  /**
   * A flat projection of a small part of the Earth onto a `MAP_W` by `MAP_H` picture: the box
   * around `points`, grown by `margin` on each side and then to the picture's shape, so a
   * store and a door due north of it still make a readable map.
   */
  function projection(points, margin) {
    let [south, north, west, east] = [90, -90, 180, -180];
    for (const [lat, lon] of points) {
      south = Math.min(south, lat); north = Math.max(north, lat);
      west = Math.min(west, lon); east = Math.max(east, lon);
    }
    const squeeze = Math.cos(((south + north) / 2) * Math.PI / 180);
    // In degrees of latitude (a degree of longitude is `squeeze` of one).
    let high = Math.max((north - south) * (1 + 2 * margin), 0.004);
    let wide = Math.max((east - west) * squeeze * (1 + 2 * margin), 0.004);
    if (high / wide > MAP_H / MAP_W) wide = high * MAP_W / MAP_H;
    else high = wide * MAP_H / MAP_W;
    const top = (south + north) / 2 + high / 2;
    const left = (west + east) / 2 - wide / 2 / squeeze;
    const scale = MAP_W / wide;
    return {
      width: MAP_W,
      height: MAP_H,
      xy: (lat, lon) => [(lon - left) * squeeze * scale, (top - lat) * scale],
      latLon: (x, y) => [top - y / scale, left + x / (squeeze * scale)],
    };
  }

  /** GeoJSON rings ([lon, lat] positions) of a Polygon or MultiPolygon. */
  function rings(area) {
    if (!area) return [];
    if (area.type === 'Polygon') return area.coordinates;
    if (area.type === 'MultiPolygon') return area.coordinates.flat();
    return [];
  }

  function areaShapes(view, stores) {
    return stores.map((store) => svg('g', null,
      rings(store.service_area).map((ring) => svg('polygon', {
        class: 'area', points: ring.map(([lon, lat]) => view.xy(lat, lon).map((n) => n.toFixed(1)).join(',')).join(' '),
      })),
      marker(view, [store.lat, store.lon], 'store', 6, store.name)));
  }

  function marker(view, [lat, lon], kind, r, name) {
    const [x, y] = view.xy(lat, lon);
    return svg('g', { role: 'img', 'aria-label': name, 'data-lat': lat, 'data-lon': lon },
      svg('circle', { class: kind, cx: x.toFixed(1), cy: y.toFixed(1), r: r }),
      // Named on the map too: a dot's colour alone does not say whose it is.
      svg('text', { x: (x + r + 3).toFixed(1), y: (y + 4).toFixed(1), text: name }));
  }

  // ---------------------------------------------------------------------------------------
  // Address: the door on the map, or where the phone is

  async function addressScreen(page) {
    let stores;
    try { stores = await areas(); } catch (error) { failed(error); return; }
    const chosen = { lat: null, lon: null };
    const status = el('p', { class: 'muted', role: 'status', text: t('address.notPlaced') });
    const verdict = el('div', { 'aria-live': 'polite' });
    const mapBox = el('div');
    let view = null;

    function draw() {
      const points = [];
      for (const store of stores) {
        points.push([store.lat, store.lon]);
        for (const ring of rings(store.service_area)) for (const [lon, lat] of ring) points.push([lat, lon]);
      }
      if (chosen.lat !== null) points.push([chosen.lat, chosen.lon]);
      if (!points.length) { fill(mapBox, el('p', { text: t('address.noAreas') })); return; }
      view = projection(points, 0.15);
      const picture = svg('svg', {
        class: 'map', viewBox: '0 0 ' + view.width + ' ' + view.height, role: 'img',
        'aria-label': t('address.map'),
        onclick: (e) => {
          const box = picture.getBoundingClientRect();
          const x = (e.clientX - box.left) / box.width * view.width;
          const y = (e.clientY - box.top) / box.height * view.height;
          place(...view.latLon(x, y));
        },
      },
      areaShapes(view, stores),
      chosen.lat !== null ? marker(view, [chosen.lat, chosen.lon], 'door', 8, t('address.door')) : null);
      fill(mapBox, picture);
    }

    async function place(lat, lon) {
      chosen.lat = lat; chosen.lon = lon;
      draw();
      status.textContent = t('address.placed', { lat: lat.toFixed(5), lon: lon.toFixed(5) });
      try {
        const front = await api('GET', storefrontPath({ lat: lat, lon: lon }, { limit: 1 }));
        if (chosen.lat !== lat || chosen.lon !== lon) return;
        fill(verdict, front.deliverable
          ? el('div', { class: 'banner ok', text: t('address.inside', { store: front.store.name }) })
          : deliveryBanner(front));
      } catch (error) { failed(error); }
    }

    const locate = el('button', {
      type: 'button', class: 'btn secondary wide', text: t('address.locate'),
      onclick: () => {
        if (!navigator.geolocation) { status.textContent = t('address.noLocation'); return; }
        status.textContent = t('address.locating');
        navigator.geolocation.getCurrentPosition(
          (position) => place(position.coords.latitude, position.coords.longitude),
          () => { status.textContent = t('address.noLocation'); },
          { enableHighAccuracy: true, timeout: 15000 });
      },
    });
    const form = el('form', {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        if (chosen.lat === null) { alertText(t('address.notPlaced')); return; }
        const data = new FormData(form);
        const address = { label: data.get('label').trim(), text: data.get('text').trim(), lat: chosen.lat, lon: chosen.lon };
        const button = form.querySelector('button[type=submit]');
        button.disabled = true;
        try {
          const saved = app.me ? await api('POST', '/api/v1/account/addresses', address) : address;
          if (app.me) app.addresses.push(saved);
          setPlace(saved);
          location.hash = '#/';
        } catch (error) { failed(error); button.disabled = false; }
      },
    },
    field('address.label', { name: 'label', required: true, maxlength: 60, autocomplete: 'off' }),
    field('address.text', { type: 'textarea', name: 'text', required: true, maxlength: 500, autocomplete: 'street-address' }),
    el('button', { type: 'submit', class: 'btn wide', text: t('address.save') }));
    show(page, [el('h1', { text: t('address.heading') }), locate,
      el('p', { class: 'muted', text: t('address.mapHint') }), mapBox, status, verdict, form]);
    draw();
  }

  // ---------------------------------------------------------------------------------------
  // Accounts

  function authScreen(page, signUp) {
    const form = el('form', {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        const data = Object.fromEntries(new FormData(form));
        const button = form.querySelector('button[type=submit]');
        button.disabled = true;
        try {
          const session = await api('POST', signUp ? '/api/v1/account/sign-up' : '/api/v1/account/sign-in', data);
          await signedIn(session);
          // A customer with nowhere to deliver to is asked for that first.
          const next = app.place ? app.after || '#/' : '#/address';
          app.after = null;
          location.hash = next;
        } catch (error) {
          button.disabled = false;
          if (error.status === 401) alertText(t('auth.refused'));
          else if (error.status === 409) alertText(t('auth.taken'));
          else failed(error);
        }
      },
    },
    signUp ? field('auth.firstName', { name: 'first_name', required: true, autocomplete: 'given-name', maxlength: 60 }) : null,
    field('auth.email', { name: 'email', type: 'email', required: true, autocomplete: 'email' }),
    field('auth.password', {
      name: 'password', type: 'password', required: true, minlength: signUp ? 10 : null,
      autocomplete: signUp ? 'new-password' : 'current-password',
    }, signUp ? 'auth.passwordHint' : null),
    el('button', { type: 'submit', class: 'btn wide', text: t(signUp ? 'auth.signUp' : 'auth.signIn') }));
    show(page, [el('h1', { text: t(signUp ? 'auth.signUp' : 'auth.signIn') }), form,
      el('div', { class: 'links' },
        signUp ? el('a', { href: '#/sign-in', text: t('auth.haveAccount') })
          : el('a', { href: '#/sign-up', text: t('auth.needAccount') }),
        el('a', { href: '#/reset', text: t('auth.forgot') }))]);
  }

  async function signedIn(session) {
    app.me = session;
    app.csrf = session.csrf_token;
    app.addresses = await api('GET', '/api/v1/account/addresses');
    if (!app.place && app.addresses.length) setPlace(app.addresses[0]);
  }

  async function accountScreen(page) {
    if (!app.me) { needSignIn(page, '#/account'); return; }
    const list = el('ul', { class: 'lines' });
    function draw() {
      if (!app.addresses.length) { fill(list, el('li', { class: 'muted', text: t('account.noAddresses') })); return; }
      fill(list, ...app.addresses.map((address) => {
        const current = app.place && app.place.id === address.id;
        return el('li', null,
          el('div', { class: 'grow' }, el('div', { text: address.label }), el('div', { class: 'muted', text: address.text })),
          el('button', {
            type: 'button', class: 'btn secondary', 'aria-pressed': String(!!current),
            text: current ? t('account.using') : t('account.use', { label: address.label }),
            onclick: () => { setPlace(address); draw(); },
          }),
          el('button', {
            type: 'button', class: 'btn danger', text: '×', 'aria-label': t('account.delete', { label: address.label }),
            onclick: async () => {
              try {
                await api('DELETE', '/api/v1/account/addresses/' + encodeURIComponent(address.id));
                app.addresses = app.addresses.filter((a) => a.id !== address.id);
                if (current) setPlace(null);
                draw();
              } catch (error) { failed(error); }
            },
          }));
      }));
    }
    draw();
    show(page, [el('h1', { text: t('account.heading') }),
      el('p', { text: t('auth.hello', { name: app.me.first_name }) }),
      el('p', { class: 'muted', text: app.me.email }),
      el('h2', { text: t('account.addresses') }), list,
      el('a', { class: 'btn secondary', href: '#/address', text: t('account.add') }),
      el('div', { class: 'links' }, el('button', {
        type: 'button', class: 'btn danger', text: t('auth.signOut'),
        onclick: async () => {
          try { await api('POST', '/api/v1/account/sign-out', {}); } catch (error) { failed(error); return; }
          app.me = null; app.csrf = null; app.addresses = [];
          setPlace(null); setCart({});
          location.hash = '#/';
        },
      }))]);
  }

  function resetRequestScreen(page) {
    const form = el('form', {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        const email = new FormData(form).get('email').trim();
        try {
          await api('POST', '/api/v1/account/password-reset', { email: email });
          alertText('');
          notice(t('reset.sent', { email: email }));
        } catch (error) {
          notice('');
          if (error.status === 429) alertText(t('reset.throttled'));
          else failed(error);
        }
      },
    },
    field('auth.email', { name: 'email', type: 'email', required: true, autocomplete: 'email' }),
    el('button', { type: 'submit', class: 'btn wide', text: t('reset.send') }));
    show(page, [el('h1', { text: t('reset.heading') }), el('p', { text: t('reset.intro') }), form]);
  }

  function resetConfirmScreen(page, token) {
    const form = el('form', {
      class: 'stack',
      onsubmit: async (e) => {
        e.preventDefault();
        const password = new FormData(form).get('password');
        try {
          await api('POST', '/api/v1/account/password-reset/confirm', { token: token, password: password });
          alertText('');
          fill(form, el('p', { class: 'banner ok', text: t('reset.done') }),
            el('a', { class: 'btn wide', href: '#/sign-in', text: t('auth.signIn') }));
        } catch (error) { failed(error); }
      },
    },
    field('reset.newPassword', { name: 'password', type: 'password', required: true, minlength: 10, autocomplete: 'new-password' },
      'auth.passwordHint'),
    el('button', { type: 'submit', class: 'btn wide', text: t('reset.set') }));
    show(page, [el('h1', { text: t('reset.newHeading') }), form]);
  }

  // ---------------------------------------------------------------------------------------
  // Orders

  async function ordersScreen(page) {
    if (!app.me) { needSignIn(page, '#/orders'); return; }
    let orders;
    try { orders = await api('GET', '/api/v1/orders'); } catch (error) { failed(error); return; }
    show(page, [el('h1', { text: t('orders.heading') }),
      orders.length ? el('ul', { class: 'orders' }, orders.map((o) => el('li', null,
        el('a', { href: '#/orders/' + encodeURIComponent(o.id) },
          el('div', { class: 'row' },
            el('strong', { class: 'grow', text: t('orders.open', { when: when(o.placed_at), total: money(o.total_minor) }) })),
          el('div', { class: 'muted', text: statusText(o.status) })))))
        : el('p', { text: t('orders.none') })]);
  }

  async function orderScreen(page, id) {
    if (!app.me) { needSignIn(page, '#/orders/' + encodeURIComponent(id)); return; }
    let detail;
    let stores;
    // An order just placed reaches the read model a moment after intake answered: until then
    // it is 404, so that one is asked for again a few times.
    for (let tries = id === app.placed ? 20 : 1; ; tries -= 1) {
      try {
        [detail, stores] = await Promise.all([api('GET', '/api/v1/orders/' + encodeURIComponent(id)), areas()]);
        break;
      } catch (error) {
        if (error.status === 404 && tries > 1 && page === app.page) {
          await new Promise((resolve) => setTimeout(resolve, 250));
          continue;
        }
        if (error.status === 404) show(page, [el('h1', { text: t('order.heading') }), el('p', { text: t('order.notFound') })]);
        else failed(error);
        return;
      }
    }
    const order = detail.order;
    const currency = detail.payment ? detail.payment.currency : undefined;
    const store = stores.find((s) => s.id === order.store_id);
    const live = el('section', { 'aria-label': t('order.heading') });
    const mapBox = el('div');
    const timeline = el('ol', { class: 'timeline', 'aria-label': t('order.timeline') });
    const actions = el('div', { class: 'links' });
    const rating = el('section');
    const items = el('ul', { class: 'lines' }, detail.lines.map((line) => el('li', null,
      el('div', { class: 'grow' },
        el('div', { text: line.qty + ' × ' + (line.name || line.product_id) }),
        line.picked_qty > 0 && line.picked_qty < line.qty ? el('div', { class: 'muted', text: t('order.picked', { picked: line.picked_qty, qty: line.qty }) }) : null,
        line.short_qty > 0 ? el('div', { class: 'muted', text: t('order.short', { n: line.short_qty }) }) : null,
        line.substitute_name ? el('div', { class: 'muted', text: t('order.substituted', { name: line.substitute_name }) }) : null),
      el('span', { class: 'price', text: money(line.line_minor, currency) }))));

    let shown = null;
    function update(view) {
      shown = view;
      const eta = view.eta_minutes;
      fill(live,
        el('p', { class: 'status', text: t('order.status', { status: statusText(view.status) }) }),
        eta !== null && eta !== undefined ? el('p', { text: t('order.eta', { eta: eta }) }) : null,
        view.delivery_pin ? el('div', { class: 'card' },
          el('div', { id: 'pin-label', text: t('order.pin') }),
          el('div', { class: 'pin', 'aria-labelledby': 'pin-label', text: view.delivery_pin }),
          el('div', { class: 'muted', text: t('order.pinHint') })) : null,
        app.stream ? el('p', { class: 'live', text: t('order.live') }) : null);
      fill(timeline, ...view.timeline.map((entry) =>
        el('li', null, el('span', { text: clock(entry.at) + ' ' + statusText(entry.status) }))));
      drawMap(view);
      drawActions(view.status);
      drawRating(view.status);
    }
    function drawMap(view) {
      if (!view.destination) return;
      const door = [view.destination.lat, view.destination.lon];
      const points = [door];
      if (store) points.push([store.lat, store.lon]);
      if (view.rider) points.push([view.rider.lat, view.rider.lon]);
      const map = projection(points, 0.25);
      fill(mapBox, svg('svg', {
        class: 'map', viewBox: '0 0 ' + map.width + ' ' + map.height, role: 'img', 'aria-label': t('order.map'),
      },
      store ? [svg('line', Object.assign({ class: 'path' }, line(map, [store.lat, store.lon], door))),
        marker(map, [store.lat, store.lon], 'store', 6, store.name)] : null,
      marker(map, door, 'door', 8, t('address.door')),
      view.rider ? marker(map, [view.rider.lat, view.rider.lon], 'rider', 9, t('order.rider')) : null));
      if (!view.rider && !view.finished) mapBox.append(el('p', { class: 'muted', text: t('order.riderNotYet') }));
    }
    function line(map, from, to) {
      const [x1, y1] = map.xy(...from);
      const [x2, y2] = map.xy(...to);
      return { x1: x1.toFixed(1), y1: y1.toFixed(1), x2: x2.toFixed(1), y2: y2.toFixed(1) };
    }
    function drawActions(status) {
      const reorder = el('button', {
        type: 'button', class: 'btn secondary', text: t('order.reorder'),
        onclick: () => {
          const cart = {};
          for (const l of detail.lines) {
            cart[l.product_id] = {
              product_id: l.product_id, name: l.name || l.product_id, unit_price_minor: l.unit_price_minor,
              currency: currency, qty: l.qty, available: l.qty,
            };
          }
          setCart(cart);
          location.hash = '#/cart';
        },
      });
      const cancel = CANCELLABLE.includes(status) ? el('button', {
        type: 'button', class: 'btn danger', text: t('order.cancel'),
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          try {
            await api('POST', '/api/v1/orders/' + encodeURIComponent(id) + '/cancel', {});
            notice(t('order.cancelAsked'));
          } catch (error) { failed(error); }
        },
      }) : null;
      fill(actions, cancel, reorder);
    }
    function drawRating(status) {
      if (!RATEABLE.includes(status)) { fill(rating); return; }
      if (detail.rating) {
        fill(rating, el('p', { class: 'banner ok', text: t('rate.thanks', {
          delivery: detail.rating.delivery_stars, order: detail.rating.order_stars,
        }) }));
        return;
      }
      if (rating.querySelector('form')) return;
      const stars = (name, legend) => el('fieldset', null, el('legend', { text: t(legend) }),
        el('div', { class: 'stars' }, [1, 2, 3, 4, 5].map((n) => el('label', null,
          el('input', { type: 'radio', name: name, value: n, required: true, 'aria-label': t('rate.stars', { n: n }) }),
          el('span', { 'aria-hidden': 'true', text: n + '★' })))));
      const form = el('form', {
        class: 'stack',
        onsubmit: async (e) => {
          e.preventDefault();
          const data = new FormData(form);
          if (!data.get('delivery') || !data.get('order')) { alertText(t('rate.pick')); return; }
          const comment = (data.get('comment') || '').trim();
          try {
            detail.rating = await api('POST', '/api/v1/orders/' + encodeURIComponent(id) + '/rating', {
              delivery_stars: Number(data.get('delivery')), order_stars: Number(data.get('order')),
              comment: comment || undefined,
            });
            alertText('');
            drawRating(shown.status);
          } catch (error) { failed(error); }
        },
      },
      stars('delivery', 'rate.delivery'), stars('order', 'rate.order'),
      field('rate.comment', { type: 'textarea', name: 'comment', maxlength: 500 }),
      el('button', { type: 'submit', class: 'btn wide', text: t('rate.send') }));
      fill(rating, el('h2', { text: t('rate.heading') }), form);
    }

    if (!show(page, [el('h1', { text: t('order.heading') }), live, mapBox, rating,
      el('h2', { text: t('order.items') }), items,
      el('p', { class: 'total', text: t('order.total', { total: money(order.total_minor, currency) }) }),
      actions, el('h2', { text: t('order.timeline') }), timeline])) return;
    update({
      status: order.status, timeline: order.timeline, delivery_pin: detail.delivery_pin,
      eta_minutes: detail.eta_minutes, destination: null, rider: null, finished: false,
    });
    // The order's progress, pushed: each event is the whole tracking view. The stream ends
    // once the order is finished; closing it then keeps EventSource from reconnecting.
    const stream = new EventSource('/api/v1/orders/' + encodeURIComponent(id) + '/events');
    app.stream = stream;
    stream.addEventListener('order', (e) => {
      const view = JSON.parse(e.data);
      if (view.finished) { stream.close(); app.stream = null; }
      update(view);
    });
    stream.addEventListener('error', () => {
      if (app.stream === stream && stream.readyState !== EventSource.OPEN && shown) {
        live.querySelector('.live')?.replaceChildren(t('order.reconnecting'));
      }
    });
  }

  // ---------------------------------------------------------------------------------------
  // Routing

  function currentRoute() {
    return location.hash.replace(/^#\/?/, '').split('/')[0] || 'shop';
  }

  function route() {
    if (app.stream) { app.stream.close(); app.stream = null; }
    app.page += 1;
    const page = app.page;
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    alertText('');
    frame(parts[0] || 'shop');
    window.scrollTo(0, 0);
    switch (parts[0]) {
      case 'cart': return cartScreen(page);
      case 'orders': return parts[1] ? orderScreen(page, parts[1]) : ordersScreen(page);
      case 'account': return accountScreen(page);
      case 'address': return addressScreen(page);
      case 'sign-in': return authScreen(page, false);
      case 'sign-up': return authScreen(page, true);
      case 'reset': return parts[1] ? resetConfirmScreen(page, parts[1]) : resetRequestScreen(page);
      default: return shopScreen(page);
    }
  }

  async function start() {
    for (const node of document.querySelectorAll('[data-t]')) node.textContent = t(node.dataset.t);
    for (const node of document.querySelectorAll('[data-t-label]')) node.setAttribute('aria-label', t(node.dataset.tLabel));
    document.getElementById('where').addEventListener('click', () => {
      location.hash = app.me && app.addresses.length ? '#/account' : '#/address';
    });
    // A message belongs to the page it was said on.
    window.addEventListener('hashchange', () => { notice(''); route(); });
    try {
      const session = await api('GET', '/api/v1/account');
      await signedIn(session);
    } catch (error) {
      if (error.status !== 401) failed(error);
    }
    route();
  }

  start();
}());
