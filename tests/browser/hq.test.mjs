// The HQ dashboard (cloud/hq-ui) in a real browser against a real cloud and two real stores.
//
// Run by tests/tests/hq_ui.rs, which starts the cloud, two store daemons synced to it (with
// overlapping service areas in one city, both stocked), HQ users of every role, and a control
// server (CONTROL_URL) that places orders as a customer and works them at their store, then
// runs `node --test tests/browser/hq.test.mjs` with the environment described in
// tests/browser/README.md. Elements are found only by role, label or visible text, as operators
// find them; everything is waited for by polling the page, never by sleeping.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { serveFromTree, watch } from './pages.mjs';

const require = createRequire(process.env.TOOLS_DIR + '/');
const { chromium } = require('playwright-core');

const CLOUD = process.env.CLOUD_URL;
const CONTROL = process.env.CONTROL_URL;
const FIX = JSON.parse(process.env.FIXTURE || '{}');
const SHOTS = process.env.SCREENSHOTS;
// Screens of failed tests: kept out of docs/ (the harness points this into target/).
const FAILURE_SHOTS = process.env.FAILURE_SHOTS || SHOTS;
// For working on the app: UI_DIR=cloud/hq-ui serves the app's files from the working tree
// instead of the copy embedded in the cloud (same headers), so a change needs no rebuild.
const UI_DIR = process.env.UI_DIR;
const USERS = FIX.users || {};
const [A, B] = FIX.stores || [];
const ADDRESS = FIX.address || {};
const LINES = FIX.lines || [];
// What the tests hand on to the next (they run in file order, --test-concurrency=1).
const shared = {};

/** An order's short reference, as the app shows it (order ids are long UUIDs). */
const ref = (id) => (id.length > 12 ? id.slice(-6) : id);
const esc = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let browser;

before(async () => {
  assert.ok(CLOUD && CONTROL && SHOTS && A && B, 'CLOUD_URL, CONTROL_URL, SCREENSHOTS and FIXTURE must be set');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close();
});

/**
 * A test with a fresh browser context (no session cookie) and page at 1440x900. On failure the
 * screen is saved as failed-hq-<n>.png in FAILURE_SHOTS; errors the page logged fail the test.
 */
let scenarios = 0;
function scenario(title, fn) {
  const n = ++scenarios;
  test(title, async () => {
    const s = await open();
    try {
      await fn(s);
    } catch (err) {
      await s.page.screenshot({ path: path.join(FAILURE_SHOTS, `failed-hq-${n}.png`), fullPage: true }).catch(() => {});
      await s.context.close();
      throw err;
    }
    await s.done();
  });
}

async function open(viewport = { width: 1440, height: 900 }) {
  const context = await browser.newContext({ viewport, baseURL: CLOUD });
  if (UI_DIR) await serveFromTree(context, UI_DIR, '/hq/');
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = watch(page);
  const done = async () => {
    await context.close();
    assert.deepEqual(problems, [], 'the page logged errors');
  };
  return { context, page, done };
}

async function shot(page, name) {
  // From the top: a full-page screenshot of a scrolled page shows the sticky bar mid-page.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

async function control(method, route, body) {
  const res = await fetch(CONTROL + route, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Places an order at the address both stores serve; {order_id, store_id}. */
const placeOrder = () => control('POST', '/orders', { lat: ADDRESS.lat, lon: ADDRESS.lon, lines: LINES });

/** Signs in through the form and waits for the overview. */
async function signIn(page, who) {
  await page.goto('/hq/');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await page.getByLabel('Username', { exact: true }).fill(who.username);
  await page.getByLabel('Password', { exact: true }).fill(who.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await page.getByText(`${who.name} (${who.role})`).waitFor();
  // The live feed is up once the first snapshot arrived.
  await page.getByText(/^Live: updated \d/).waitFor({ timeout: 20_000 });
}

const nav = (page, name) => page.getByRole('navigation').getByRole('button', { name, exact: true });

async function show(page, screen) {
  await nav(page, screen).click();
  await page.getByRole('heading', { name: screen, level: 1 }).waitFor();
}

const map = (page) => page.getByRole('group', { name: /^City map: / });
const openOrders = (page) => page.getByRole('region', { name: 'Open orders', exact: true });
/** The open-orders list item of an order. */
const orderItem = (page, id) => openOrders(page).getByRole('listitem')
  .filter({ has: page.getByRole('button', { name: `Open order ${ref(id)}`, exact: true }) });
/** The answer a control shows: its confirmation, or the API's refusal. */
const answer = (scope, ok) => scope.getByRole('status').filter({ hasText: ok })
  .or(scope.getByRole('alert').filter({ hasText: /^Refused \(\d+\): / }));

/** Fails with the refusal's text if the control's answer is a refusal. */
async function expectOk(scope, ok) {
  const shown = answer(scope, ok).first();
  await shown.waitFor({ timeout: 20_000 });
  const text = (await shown.textContent()) || '';
  assert.ok(!/^Refused/.test(text), 'the API refused: ' + text);
  return text;
}

scenario('a wrong password is refused; the operator signs in', async ({ page }) => {
  await page.goto('/hq');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  assert.match(page.url(), /\/hq\/$/);
  await shot(page, 'hq-signin.png');
  await page.getByLabel('Username', { exact: true }).fill(USERS.operator.username);
  await page.getByLabel('Password', { exact: true }).fill(USERS.operator.password + '-wrong');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  const refused = page.getByRole('alert').filter({ hasText: /\S/ });
  await refused.waitFor();
  if (process.env.UI_DEBUG) console.log('wrong password:', await refused.textContent());
  assert.equal(await page.getByRole('navigation').count(), 0, 'no navigation before signing in');
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);
  assert.ok(await page.getByRole('heading', { name: 'Sign in', level: 1 }).isVisible());

  await page.getByLabel('Password', { exact: true }).fill(USERS.operator.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  // A reload keeps the session (the cookie) and gets the CSRF token back from /hq/api/me.
  await page.reload();
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await page.getByText(`${USERS.operator.name} (operator)`).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await page.reload();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
});

scenario('the map shows both stores and a placed order appears live', async ({ page }) => {
  await signIn(page, USERS.operator);
  const city = map(page);
  for (const st of [A, B]) {
    // The marker names the store and its health in words, on the map and to assistive technology.
    await city.getByRole('img', { name: new RegExp(`^${esc(st.name)}: (OK|Device down|Late|Offline|Paused), `) }).waitFor();
    await city.getByText(new RegExp(`^${esc(st.name)} — (OK|Device down|Late|Offline|Paused)$`)).waitFor();
  }
  await page.evaluate(() => { window.notReloaded = true; });
  const placed = await placeOrder();
  shared.first = placed;
  const r = ref(placed.order_id);
  // The pin (its status on hover and focus) and the list item, without reloading the page.
  const pin = city.getByRole('button', { name: new RegExp(`^Order ${r}: `) });
  await pin.waitFor({ timeout: 20_000 });
  await orderItem(page, placed.order_id).waitFor();
  const storeName = placed.store_id === A.id ? A.name : B.name;
  await orderItem(page, placed.order_id).getByText(storeName, { exact: true }).waitFor();
  await pin.focus();
  assert.match(await pin.getAttribute('aria-label'), new RegExp(`^Order ${r}: \\w+`));
  assert.ok(await page.evaluate(() => window.notReloaded === true), 'the page was not reloaded');
  await shot(page, 'hq-overview.png');

  // The keyboard opens the pin's order (Enter) and closes its panel (Escape), focus back on the pin.
  await pin.press('Enter');
  const panel = page.getByRole('complementary', { name: `Order ${r}` });
  await panel.getByRole('region', { name: 'Timeline' }).waitFor();
  // (Checked in the page in one go: the panel redraws as the order's detail arrives.)
  const focused = (role, name) => page.waitForFunction(([role, name]) => {
    const el = document.activeElement;
    const elRole = el && (el.getAttribute('role') || (/^H\d$/.test(el.tagName) ? 'heading' : ''));
    return elRole === role && (el.getAttribute('aria-label') || el.textContent).startsWith(name);
  }, [role, name], { timeout: 5_000 });
  await focused('heading', `Order ${r}`);

  // Usable at 1280x800: nothing runs off the side, with the panel open or not.
  await page.setViewportSize({ width: 1280, height: 800 });
  for (const open of [true, false]) {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than 1280 (panel ${open ? 'open' : 'closed'})`);
    if (open) {
      await page.keyboard.press('Escape');
      await panel.waitFor({ state: 'hidden' });
      await focused('button', `Order ${r}: `);
    }
  }
});

scenario('the order moves through its states on screen as the store works it', async ({ page }) => {
  const order = shared.first;
  assert.ok(order, 'the order of the previous test');
  await signIn(page, USERS.operator);
  await page.evaluate(() => { window.notReloaded = true; });
  const item = orderItem(page, order.order_id);
  await item.getByText('Accepted', { exact: true }).waitFor({ timeout: 20_000 });
  for (const [step, word] of [['pick', 'Picking'], ['pack', 'Packed'], ['ready', 'Ready']]) {
    await control('POST', '/work', { order_id: order.order_id, step });
    await item.getByText(word, { exact: true }).waitFor({ timeout: 20_000 });
  }
  assert.ok(await page.evaluate(() => window.notReloaded === true), 'the page was not reloaded');

  // Orders: by state per store, and the order's panel with its timeline.
  await show(page, 'Orders');
  const byState = page.getByRole('table', { name: /^Open orders per store and state/ });
  await byState.getByRole('columnheader', { name: 'At risk' }).waitFor();
  await byState.getByRole('columnheader', { name: 'Late' }).waitFor();
  await page.getByRole('table', { name: /^Open orders, latest placed first/ })
    .getByRole('button', { name: `Open order ${ref(order.order_id)}` }).click();
  const panel = page.getByRole('complementary', { name: `Order ${ref(order.order_id)}` });
  await panel.waitFor();
  const timeline = panel.getByRole('region', { name: 'Timeline' });
  for (const word of ['Accepted', 'Picking', 'Packed', 'Ready']) {
    await timeline.getByText(new RegExp(`\\d{2}:\\d{2}:\\d{2} ${word}$`)).first().waitFor({ timeout: 20_000 });
  }
  await panel.getByRole('region', { name: 'Lines' }).waitFor();
  await panel.getByRole('region', { name: 'Payment' }).waitFor();
  await shot(page, 'hq-orders.png');
  // A reroute of an order that is already packed: the API's answer is shown, whatever it is.
  const other = order.store_id === A.id ? B : A;
  await panel.getByLabel('New store').selectOption({ label: other.name });
  await panel.getByLabel('Reason for rerouting').fill('store is short of bags');
  await panel.getByRole('button', { name: 'Reroute order', exact: true }).click();
  const rerouted = answer(panel, /rerouted\./).first();
  await rerouted.waitFor();
  shared.rerouteAnswer = await rerouted.textContent();
  if (process.env.UI_DEBUG) console.log('reroute of a READY order:', shared.rerouteAnswer);
  await page.keyboard.press('Escape');
  await panel.waitFor({ state: 'hidden' });
});

scenario('an operator pauses a store and the next order goes to the other store', async ({ page }) => {
  // Without the pause, an order at this address goes to A (the nearer store).
  assert.equal(shared.first && shared.first.store_id, A.id, 'the first order went to the nearer store');
  await signIn(page, USERS.operator);
  await show(page, 'Stores');
  const cardA = page.getByRole('article', { name: A.name, exact: true });
  const reason = 'freezer repair, back at 3 pm';
  await cardA.getByLabel(`Reason for pausing ${A.name}`).fill(reason);
  await cardA.getByRole('button', { name: `Pause ${A.name}` }).click();
  await expectOk(cardA, `${A.name} is paused`);
  // The snapshot says so: the health word, and the control turns into Resume.
  await cardA.getByText('Paused', { exact: true }).waitFor({ timeout: 20_000 });
  await cardA.getByText(`Reason: ${reason}`).waitFor();
  await cardA.getByRole('button', { name: `Resume ${A.name}` }).waitFor();
  for (const label of ['Delivered in the last hour', 'On time (last hour)', 'Pick to ready (last hour)', 'Stock-outs', 'Low stock']) {
    await cardA.getByText(label, { exact: true }).waitFor();
  }

  // The profile: the capacity of store B, saved through PUT /admin/v1/stores/{id}/profile.
  await page.getByLabel('Store to edit').selectOption({ label: B.name });
  await page.getByLabel('Capacity (open orders)').fill('80');
  await page.getByRole('button', { name: 'Save profile' }).click();
  await expectOk(page.getByRole('region', { name: 'Store profile' }), `Profile of ${B.name} saved.`);
  await page.getByRole('article', { name: B.name, exact: true }).getByText('80 open orders').waitFor({ timeout: 20_000 });
  await shot(page, 'hq-stores.png');

  // An order at an address both stores serve goes to B, on the screen as in the reply.
  const placed = await placeOrder();
  assert.equal(placed.store_id, B.id, `the order went to ${placed.store_id} while ${A.id} is paused`);
  shared.second = placed;
  await show(page, 'Overview');
  await map(page).getByText(`${A.name} — Paused`).waitFor();
  const item = orderItem(page, placed.order_id);
  await item.getByText(B.name, { exact: true }).waitFor({ timeout: 20_000 });

  // Cancel it from its panel, with a reason.
  await item.getByRole('button', { name: `Open order ${ref(placed.order_id)}` }).click();
  const panel = page.getByRole('complementary', { name: `Order ${ref(placed.order_id)}` });
  await panel.getByLabel('Reason for cancelling').fill('customer called: wrong address');
  await panel.getByRole('button', { name: 'Cancel order', exact: true }).click();
  await expectOk(panel, `Cancellation of order ${ref(placed.order_id)} requested.`);
  await panel.getByRole('button', { name: 'Close the order panel' }).click();

  // Resume A.
  await show(page, 'Stores');
  await cardA.getByLabel(`Reason for resuming ${A.name}`).fill('freezer fixed');
  await cardA.getByRole('button', { name: `Resume ${A.name}` }).click();
  await expectOk(cardA, `${A.name} takes orders again.`);
  await cardA.getByRole('button', { name: `Pause ${A.name}` }).waitFor({ timeout: 20_000 });
});

scenario('a store reports its label printer out of paper and HQ sees it, then sees it fixed', async ({ page }) => {
  await signIn(page, USERS.viewer);
  await show(page, 'Stores');
  const cardB = page.getByRole('article', { name: B.name, exact: true });
  const devices = cardB.getByRole('list', { name: `Devices of ${B.name}` });
  const printer = devices.getByRole('listitem').filter({ hasText: 'printer-1' });
  await printer.getByText('Connected', { exact: true }).waitFor({ timeout: 20_000 });
  await cardB.getByText('OK', { exact: true }).waitFor({ timeout: 20_000 });
  // How late the store's facts reach HQ, and when that was measured.
  await cardB.getByText(/^\d+(\.\d)? s \(measured /).waitFor();

  // The paper runs out: the store's device feed writes it, sync carries it, HQ shows it.
  await control('POST', '/printer', { paper_out: true });
  await cardB.getByText('Device down', { exact: true }).waitFor({ timeout: 20_000 });
  // The simulated Zebra stays silent to a status query while it is out of paper, as some do.
  await printer.getByText('Fault', { exact: true }).waitFor();
  await printer.getByText(/did not answer the status query/).waitFor();
  await shot(page, 'hq-stores-device-down.png');
  await show(page, 'Overview');
  await map(page).getByText(`${B.name} — Device down`).waitFor({ timeout: 20_000 });

  // Paper loaded: healthy again.
  await control('POST', '/printer', { paper_out: false });
  await show(page, 'Stores');
  await cardB.getByText('OK', { exact: true }).waitFor({ timeout: 20_000 });
  await printer.getByText('Connected', { exact: true }).waitFor({ timeout: 20_000 });
  await printer.getByText(/did not answer the status query/).waitFor({ state: 'detached' });
});

scenario('a viewer sees no controls, and a write with their session is refused', async ({ page }) => {
  await signIn(page, USERS.viewer);
  await page.getByText('You are signed in as a viewer: you can see everything, and change nothing.').waitFor();
  const controls = /^(Pause|Resume|Save|Add|Deactivate|Reactivate|Edit|Cancel order|Reroute order|Issue)/;
  for (const screen of ['Overview', 'Orders', 'Stores', 'Riders', 'Catalog', 'Charts']) {
    await show(page, screen);
    assert.equal(await page.getByRole('main').getByRole('button', { name: controls }).count(), 0, `controls on ${screen}`);
    assert.equal(await page.getByRole('main').getByRole('textbox').count(), 0, `fields on ${screen}`);
  }
  assert.equal(await nav(page, 'HQ users').count(), 0, 'a viewer does not see HQ users');
  assert.equal(await nav(page, 'Audit log').count(), 0, 'a viewer does not see the audit log');
  if (shared.first) {
    await show(page, 'Overview');
    await openOrders(page).getByRole('button', { name: `Open order ${ref(shared.first.order_id)}` }).click();
    const panel = page.getByRole('complementary', { name: `Order ${ref(shared.first.order_id)}` });
    await panel.getByRole('region', { name: 'Timeline' }).waitFor();
    assert.equal(await panel.getByRole('button', { name: controls }).count(), 0, 'controls in the order panel');
  }
  // The API refuses a viewer's write even with a valid session and CSRF token.
  const status = await page.evaluate(async (storeId) => {
    const me = await (await fetch('/hq/api/me')).json();
    const res = await fetch(`/admin/v1/stores/${encodeURIComponent(storeId)}/pause`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf_token },
      body: JSON.stringify({ paused: true, reason: 'a viewer tries' }),
    });
    return res.status;
  }, A.id);
  assert.equal(status, 403);
});

scenario('an operator adds a rider and issues an enrolment code whose QR code scans', async ({ page }) => {
  await signIn(page, USERS.operator);
  await show(page, 'Riders');
  await page.getByRole('table', { name: /^Riders on the roster/ }).getByRole('row', { name: new RegExp(esc(FIX.rider.name)) }).waitFor();

  await page.getByLabel('Rider id').fill('r-nora');
  await page.getByLabel('Name', { exact: true }).fill('Nora');
  await page.getByLabel('Home store').selectOption({ label: B.name });
  await page.getByRole('button', { name: 'Add rider' }).click();
  await expectOk(page.getByRole('region', { name: 'Add a rider' }), 'Rider Nora added.');
  const roster = page.getByRole('table', { name: /^Riders on the roster/ });
  await roster.getByRole('row', { name: /Nora/ }).waitFor();
  await page.getByRole('button', { name: 'Deactivate Nora' }).click();
  await expectOk(page.getByRole('region', { name: 'Roster' }), 'Nora is deactivated.');
  await roster.getByRole('row', { name: /Nora/ }).getByText('deactivated').waitFor();

  await page.getByRole('button', { name: `Issue an enrolment code for ${FIX.rider.name}` }).click();
  const code = page.getByRole('region', { name: `Enrolment code for ${FIX.rider.name}` });
  await code.waitFor({ timeout: 20_000 });
  const payload = (await code.getByText(/^flashkart-enrol:v1\?/).textContent()).trim();
  assert.match(payload, new RegExp(`rider=${esc(FIX.rider.id)}&code=[A-Z2-7]{5}-[A-Z2-7]{5}&`));
  const qr = code.getByRole('img', { name: `QR code of the enrolment payload for ${FIX.rider.name}` });
  const file = path.join(os.tmpdir(), `hq-qr-${process.pid}.png`);
  await qr.screenshot({ path: file });
  let decoded;
  try {
    decoded = execFileSync('zbarimg', ['--raw', '-q', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    fs.copyFileSync(file, path.join(FAILURE_SHOTS, 'failed-hq-qr.png'));
    throw new Error(`zbarimg read no QR code (exit ${err.status}); the image is failed-hq-qr.png`);
  } finally {
    fs.rmSync(file, { force: true });
  }
  assert.equal(decoded, payload, 'the QR code scans as the payload shown');
  await shot(page, 'hq-riders.png');
});

scenario('an operator changes a price and a coupon', async ({ page }) => {
  await signIn(page, USERS.operator);
  await show(page, 'Catalog');
  const product = FIX.product;
  await page.getByRole('button', { name: `Edit ${product.name}` }).click();
  assert.equal(await page.getByLabel('Product name').inputValue(), product.name);
  await page.getByLabel('Price (e.g. 1.99)').fill('2.49');
  await page.getByRole('button', { name: 'Save product' }).click();
  await expectOk(page.getByRole('region', { name: 'Edit a product' }), `Product ${product.name} saved.`);
  await page.getByRole('table', { name: /^Products with their price/ }).getByRole('row', { name: new RegExp(esc(product.name)) })
    .getByText('€2.49').waitFor();

  await page.getByLabel('Coupon code').fill('HQTEST5');
  await page.getByLabel('Percent off (0–100)').fill('5');
  await page.getByLabel('Minimum basket (e.g. 15.00)').fill('10.00');
  await page.getByRole('button', { name: 'Save coupon' }).click();
  await expectOk(page.getByRole('region', { name: 'Add or change a coupon' }), 'Coupon HQTEST5 saved.');
  await page.getByRole('table', { name: /^Coupons and their terms/ }).getByRole('row', { name: /HQTEST5/ }).waitFor();
  await shot(page, 'hq-catalog.png');
});

scenario('the charts of the last 24 hours show their numbers', async ({ page }) => {
  await signIn(page, USERS.viewer);
  await show(page, 'Charts');
  const orders = page.getByRole('table', { name: /^The numbers: Orders placed per hour/ });
  await orders.waitFor();
  await page.getByRole('img', { name: 'Orders placed per hour (last 24 hours)' }).waitFor();
  await page.getByRole('table', { name: /^The numbers: Delivered on time/ }).waitFor();
  await page.getByRole('table', { name: /^The numbers: Pick time/ }).waitFor();
  // The orders placed by the earlier tests are counted (a figure in words, not only a bar).
  const placed = await orders.getByRole('row', { name: /^Orders placed/ }).getByRole('cell').allTextContents();
  assert.equal(placed.length, 24, 'one figure per hour');
  const total = placed.reduce((sum, text) => sum + (Number(text) || 0), 0);
  assert.ok(total >= 2, `the orders placed in the last 24 hours: ${placed.join(' ')}`);
  await shot(page, 'hq-charts.png');
});

scenario('an admin adds and deactivates an HQ user and reads the audit log', async ({ page }) => {
  await signIn(page, USERS.admin);
  await show(page, 'HQ users');
  await page.getByLabel('New username').fill('quinn');
  await page.getByLabel('Full name').fill('Quinn Ops');
  await page.getByLabel('Role', { exact: true }).selectOption('operator');
  await page.getByLabel('Password for the new user').fill('quinn-pass-12345');
  await page.getByRole('button', { name: 'Add user' }).click();
  await expectOk(page.getByRole('region', { name: 'Add a user' }), 'User Quinn Ops added.');
  const users = page.getByRole('table', { name: /^Who can sign in to HQ/ });
  await users.getByRole('row', { name: /quinn/ }).waitFor();
  await page.getByRole('button', { name: 'Deactivate Quinn Ops' }).click();
  await expectOk(page.getByRole('region', { name: 'HQ users', exact: true }), 'Quinn Ops can no longer sign in.');
  await users.getByRole('row', { name: /quinn/ }).getByText('deactivated').waitFor();

  await show(page, 'Audit log');
  const log = page.getByRole('table', { name: /^Who did what/ });
  const pause = log.getByRole('row').filter({ hasText: USERS.operator.username }).filter({ hasText: 'freezer repair, back at 3 pm' });
  await pause.first().waitFor();
  await shot(page, 'hq-audit.png');
});
