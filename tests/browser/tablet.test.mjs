// The staff tablet app (edge/ui) in a real browser against a real store daemon.
//
// Run by tests/tests/tablet_ui.rs, which starts the daemon, its simulated scanner, scale and
// printer, a cloud behind a relay that can be cut, and a control server (CONTROL_URL), then
// runs `node --test tests/browser/tablet.test.mjs` with the environment described in
// tests/browser/README.md. Elements are found only by role, label or visible text, as staff
// find them; everything is waited for by polling the page, never by sleeping.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { serveFromTree, watch } from './pages.mjs';

const require = createRequire(process.env.TOOLS_DIR + '/');
const { chromium } = require('playwright-core');

const EDGE = process.env.EDGE_URL;
const CONTROL = process.env.CONTROL_URL;
const FIX = JSON.parse(process.env.FIXTURE || '{}');
const SHOTS = process.env.SCREENSHOTS;
// Screens of failed tests: kept out of docs/ (the harness points this into target/).
const FAILURE_SHOTS = process.env.FAILURE_SHOTS || SHOTS;
// For working on the app: UI_DIR=edge/ui serves the app's files from the working tree instead
// of the copy embedded in the daemon (same headers), so a change needs no rebuild.
const UI_DIR = process.env.UI_DIR;
const [O1, O2, O3] = FIX.orders || [];
const P = FIX.products || [];
const STAFF = FIX.staff || {};

/** An order's short reference, as the app shows it (order ids are long UUIDs). */
const ref = (id) => (id.length > 12 ? id.slice(-6) : id);

let browser;

before(async () => {
  assert.ok(EDGE && CONTROL && SHOTS && O1, 'EDGE_URL, CONTROL_URL, SCREENSHOTS and FIXTURE must be set');
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
 * A test with a fresh browser context and page at 1280x800. On failure the screen is saved as
 * failed-<n>.png in FAILURE_SHOTS; errors the page logged fail the test.
 */
let scenarios = 0;
function scenario(title, fn) {
  const n = ++scenarios;
  test(title, async () => {
    const s = await open();
    try {
      await fn(s);
    } catch (err) {
      await s.page.screenshot({ path: path.join(FAILURE_SHOTS, `failed-${n}.png`), fullPage: true }).catch(() => {});
      await s.context.close();
      throw err;
    }
    await s.done();
  });
}

async function open(viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, baseURL: EDGE });
  if (UI_DIR) await serveFromTree(context, UI_DIR, '/');
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

async function edge(method, route, token, body) {
  const headers = { authorization: 'Bearer ' + token };
  if (body) headers['content-type'] = 'application/json';
  const res = await fetch(EDGE + route, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const tokenOf = (page) => page.evaluate(() => sessionStorage.getItem('fk.token'));

/** Waits until fn() is truthy (bounded), for state outside the page. */
async function eventually(fn, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    assert.ok(Date.now() < deadline, 'timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Signs in through the form; with keypad, the PIN is tapped on the number pad. */
async function signIn(page, who, { keypad = false } = {}) {
  await page.goto('/');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await page.getByLabel('Staff id', { exact: true }).fill(who.id);
  if (keypad) {
    await page.getByLabel('PIN', { exact: true }).click();
    const pad = page.getByRole('group', { name: 'Number pad' });
    for (const digit of who.pin) await pad.getByRole('button', { name: digit, exact: true }).click();
  } else {
    await page.getByLabel('PIN', { exact: true }).fill(who.pin);
  }
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Queues', level: 1 }).waitFor();
  await page.getByText(`${who.name} (${who.role})`).waitFor();
}

const nav = (page, name) => page.getByRole('navigation').getByRole('button', { name, exact: true });

/** Every visible button and field is at least 48 x 48 CSS pixels. */
async function assertTouchTargets(page) {
  for (const role of ['button', 'textbox', 'combobox', 'spinbutton']) {
    for (const el of await page.getByRole(role).all()) {
      if (!(await el.isVisible())) continue;
      const box = await el.boundingBox();
      const name = (await el.getAttribute('aria-label')) || (await el.textContent()) || role;
      assert.ok(box.height >= 48 && box.width >= 48, `${role} "${name.trim()}" is ${box.width}x${box.height}`);
    }
  }
}

scenario('a wrong PIN is refused with an alert and nothing else', async ({ page }) => {
  await page.goto('/');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await shot(page, 'tablet-signin.png');
  await assertTouchTargets(page);
  await page.getByLabel('Staff id', { exact: true }).fill(STAFF.picker.id);
  await page.getByLabel('PIN', { exact: true }).fill('000000' === STAFF.picker.pin ? '999999' : '000000');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: /PIN/i }).waitFor();
  assert.equal(await page.getByRole('navigation').count(), 0, 'no navigation before signing in');
  assert.ok(await page.getByRole('heading', { name: 'Sign in', level: 1 }).isVisible());
  assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fk.token')), null);
});

scenario('a picker picks by serial and wedge scans, packs, marks ready and hands off', async ({ page }) => {
  const [milk, bread] = P;
  const wrong = P.find((p) => p.scan === FIX.wrong_scan);
  await signIn(page, STAFF.picker, { keypad: true });

  // Queues: the order with its age against the SLA, in words.
  const r1 = ref(O1);
  const card = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: `Order ${r1}` }) });
  await card.getByText(/Due in \d+ min|Due now|Late \d+ min/).waitFor();
  await card.getByText(/waiting \d+ min|just arrived/).waitFor();
  await shot(page, 'tablet-queues.png');

  // Pick: bind the serial scanner, then scan with it.
  await page.getByRole('button', { name: `Pick order ${r1}` }).click();
  await page.getByRole('heading', { name: 'Pick', level: 1 }).waitFor();
  await page.getByText(`Scan item 1 of 3: ${milk.name}, bin ${milk.bin_id}`).waitFor();
  await page.getByRole('button', { name: 'Use scanner scanner-1' }).click();
  const scanner = page.getByRole('region', { name: 'Scanner', exact: true });
  await scanner.getByText(`Scanner scanner-1 is set to order ${r1}`).waitFor();

  await control('POST', '/scan', { code: milk.scan });
  await page.getByText(`Scan item 2 of 3: ${milk.name}`).waitFor();
  await page.getByText('Done 1 of 2').waitFor();
  await shot(page, 'tablet-pick.png');
  await control('POST', '/scan', { code: milk.scan });
  await page.getByText(`Scan item 3 of 3: ${bread.name}, bin ${bread.bin_id}`).waitFor();

  // A wrong item by the serial scanner is refused on screen, naming it.
  await control('POST', '/scan', { code: FIX.wrong_scan });
  const refused = page.getByRole('alert').filter({ hasText: /wrong item/i });
  await refused.waitFor();
  if (wrong) assert.match(await refused.textContent(), new RegExp(wrong.name));

  // A keyboard-wedge scanner: a burst of keys and Enter, focus in no text field.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.keyboard.type(bread.gtin, { delay: 5 });
  await page.keyboard.press('Enter');
  await page.getByText('All items are picked').waitFor();
  await refused.waitFor({ state: 'hidden' });
  const lines = page.getByRole('table', { name: `Items in order ${r1}` });
  await lines.getByRole('row', { name: new RegExp(milk.name) }).getByText('Done').waitFor();
  await lines.getByRole('row', { name: new RegExp(bread.name) }).getByText('Done').waitFor();

  // Pack: the live weight from the scale against the expected weight.
  await page.getByRole('button', { name: `Pack order ${r1}` }).click();
  await page.getByRole('heading', { name: 'Pack', level: 1 }).waitFor();
  const expected = 2 * milk.unit_weight_g + bread.unit_weight_g;
  await page.getByText(`Expected: ${expected} g`).waitFor();
  await control('POST', '/scale', { grams: expected, stable: true });
  await page.getByText(`On the scale: ${expected} g`).waitFor();
  await page.getByText('The weight is right.').waitFor();
  await shot(page, 'tablet-pack.png');
  await page.getByRole('main').getByRole('button', { name: 'Pack', exact: true }).click();
  await page.getByText(/Packed in 1 bag\. Label FK-/).first().waitFor();

  // Mark ready: the label prints; its outcome and the printer are shown.
  const before = await control('GET', '/printer');
  await page.getByRole('button', { name: 'Mark ready and print labels' }).click();
  const labels = page.getByRole('region', { name: 'Labels', exact: true });
  await labels.getByText('Bag 1 of 1: printed').waitFor();
  await labels.getByText(/Printer now: printer printer-1/).waitFor();
  const printer = await eventually(async () => {
    const p = await control('GET', '/printer');
    return p.labels === before.labels + 1 ? p : null;
  }, 'the printer to receive the bag label');
  assert.ok(printer.last && printer.last.includes('^XA'), 'a ZPL label was printed');

  // Handoff: the bag label, no rider assigned, so the rider's id is asked for.
  const order = await edge('GET', `/api/v1/orders/${O1}`, await tokenOf(page));
  const labelId = order.body.label_id;
  assert.match(labelId, /^FK-/);
  await nav(page, 'Handoff').click();
  await page.getByRole('heading', { name: 'Handoff', level: 1 }).waitFor();
  await page.getByLabel('Bag label').fill(labelId);
  await page.getByRole('button', { name: 'Find bag' }).click();
  await page.getByText('No rider is assigned to this order yet').waitFor();
  await page.getByLabel('Rider id').fill('r-1');
  await page.getByRole('button', { name: 'Hand over', exact: true }).click();
  const who = page.getByRole('region', { name: 'Who took what' });
  const row = who.getByRole('row').filter({ hasText: r1 });
  await row.getByText('r-1').waitFor();
  await row.getByText(labelId).waitFor();
  await shot(page, 'tablet-handoff.png');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
});

scenario('a lead shorts a line and it shows as short', async ({ page }) => {
  const [milk, , yogurt] = P;
  await signIn(page, STAFF.lead);
  const r2 = ref(O2);
  await page.getByRole('button', { name: `Pick order ${r2}` }).click();
  await page.getByText(`Scan item 1 of 2: ${milk.name}`).waitFor();
  await page.getByRole('button', { name: 'Item missing (short)' }).click();
  await page.getByLabel('Pieces missing').waitFor();
  await page.getByRole('button', { name: 'Mark as short' }).click();
  const lines = page.getByRole('table', { name: `Items in order ${r2}` });
  await lines.getByRole('row', { name: new RegExp(milk.name) }).getByText('Short 1').waitFor();
  await page.getByText(`Scan item 1 of 1: ${yogurt.name}`).waitFor();
  await page.getByRole('status').filter({ hasText: `Marked 1 × ${milk.name} as short` }).waitFor();
});

scenario('the offline banner shows while the cloud is unreachable and clears when it is back', async ({ page }) => {
  await signIn(page, STAFF.lead);
  const banner = page.getByRole('status').filter({ hasText: 'Offline — the cloud is unreachable' });
  assert.equal(await banner.count(), 0, 'online at first');
  try {
    await control('POST', '/cloud', { up: false });
    await banner.waitFor({ timeout: 45_000 }).catch(async (err) => {
      const status = await edge('GET', '/api/v1/sync/status', await tokenOf(page));
      throw new Error(`no offline banner; /sync/status says ${JSON.stringify(status.body)}: ${err.message}`);
    });
    await shot(page, 'tablet-offline.png');
  } finally {
    await control('POST', '/cloud', { up: true });
  }
  await banner.waitFor({ state: 'hidden', timeout: 45_000 });
});

scenario('an ended session sends the tablet back to sign-in', async ({ page }) => {
  await signIn(page, STAFF.picker);
  const token = await tokenOf(page);
  const out = await edge('POST', '/api/v1/auth/sign-out', token);
  assert.ok(out.status === 204 || out.status === 200, `sign-out answered ${out.status}`);
  // The next thing the screen asks the server for is refused: back to sign-in.
  const devices = nav(page, 'Devices');
  if (await devices.isVisible()) await devices.click().catch(() => {});
  await page.getByRole('alert').filter({ hasText: 'Your session has ended; sign in again' }).waitFor();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  assert.equal(await tokenOf(page), null);
  // A reload with the old token does the same.
  await page.evaluate((t) => sessionStorage.setItem('fk.token', t), token);
  await page.reload();
  await page.getByRole('alert').filter({ hasText: 'Your session has ended; sign in again' }).waitFor();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
});

scenario('after a lost connection the tablet reconnects and shows what changed meanwhile', async ({ context, page }) => {
  await signIn(page, STAFF.lead);
  const reconnecting = page.getByRole('status').filter({ hasText: 'Reconnecting…' });
  await page.getByRole('heading', { name: `Order ${ref(O3)}` }).waitFor();

  await context.setOffline(true);
  await reconnecting.waitFor();
  const juice = P[P.length - 1];
  const placed = await control('POST', '/orders', { lines: [{ product_id: juice.id, qty: 1 }] });
  const fresh = ref(placed.order_id);
  assert.equal(await page.getByRole('heading', { name: `Order ${fresh}` }).count(), 0, 'not shown while offline');
  await context.setOffline(false);
  await reconnecting.waitFor({ state: 'hidden', timeout: 20_000 });
  await page.getByRole('heading', { name: `Order ${fresh}` }).waitFor();

  // Batch picking: both new orders in one walk, each in its tote.
  await page.getByLabel(`Add order ${ref(O3)} to a batch`).check();
  await page.getByLabel(`Add order ${fresh} to a batch`).check();
  await page.getByRole('button', { name: 'Pick together (2)' }).click();
  await page.getByRole('heading', { name: 'Pick', level: 1 }).waitFor();
  await page.getByRole('main').getByText('Picking 2 orders together').waitFor();
  await page.getByText(/Put it in tote T\d+/).waitFor();
  await page.getByText(/Scan item 1 of 2: /).waitFor();
});

scenario('a manager books a case in, adds staff, resets a PIN; the new member signs in', async ({ page }) => {
  const milk = P[0];
  await signIn(page, STAFF.manager);

  // Goods in: the GS1-128 case label typed in (a case of six).
  await nav(page, 'Goods in').click();
  await page.getByRole('heading', { name: 'Goods in', level: 1 }).waitFor();
  await page.getByLabel('Case label', { exact: true }).fill(FIX.case_label);
  await page.getByRole('button', { name: 'Receive case' }).click();
  const booked = page.getByRole('region', { name: 'Booked in just now' });
  await booked.getByText(new RegExp(`Received \\d+ × ${milk.name}`)).waitFor();
  await shot(page, 'tablet-goods-in.png');

  await nav(page, 'Devices').click();
  await page.getByRole('heading', { name: 'Devices', level: 1 }).waitFor();
  for (const id of ['scanner-1', 'scale-1', 'printer-1']) {
    await page.getByRole('heading', { name: new RegExp(`^${id}`) }).waitFor();
  }
  await page.getByRole('region', { name: 'Cloud sync' }).getByText(/Online|Offline/).waitFor();
  await shot(page, 'tablet-devices.png');

  // Staff: add a picker, then reset the PIN they were given.
  await nav(page, 'Staff').click();
  await page.getByRole('heading', { name: 'Staff', level: 1 }).waitFor();
  const nina = { id: 'nina', name: 'Nina', role: 'picker', pin: '445566' };
  await page.getByLabel('Staff id').fill(nina.id);
  await page.getByLabel('Name', { exact: true }).fill(nina.name);
  await page.getByLabel('Role').selectOption('picker');
  await page.getByLabel('PIN', { exact: true }).fill('112233');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  await page.getByRole('row', { name: /Nina/ }).waitFor();
  await page.getByRole('button', { name: 'Reset PIN for Nina' }).click();
  await page.getByLabel('New PIN for Nina').fill(nina.pin);
  await page.getByRole('button', { name: 'Save PIN' }).click();
  await page.getByRole('status').filter({ hasText: 'New PIN saved for Nina' }).waitFor();
  await shot(page, 'tablet-staff.png');
  await assertTouchTargets(page);

  // Portrait: nothing runs off the side.
  await page.setViewportSize({ width: 800, height: 1280 });
  await nav(page, 'Queues').click();
  await page.getByRole('heading', { name: 'Queues', level: 1 }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a portrait tablet`);
  await page.setViewportSize({ width: 1280, height: 800 });

  await page.getByRole('button', { name: 'Sign out' }).click();
  // Signed out before the next page load: a navigation right after the click could cancel the
  // sign-out request, and the old session would still be there.
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await signIn(page, nina);
  assert.equal(await nav(page, 'Staff').count(), 0, 'a picker does not see Staff');
});

scenario('a lead picks by typed code, overrides the weight check with a reason, and reprints', async ({ page }) => {
  const oat = P.find((p) => p.id === 'p-oat') || P[3];
  await signIn(page, STAFF.lead);
  const r3 = ref(O3);
  await page.getByRole('button', { name: `Continue picking order ${r3}` }).click();
  await page.getByText(`Scan item 1 of 1: ${oat.name}, bin ${oat.bin_id}`).waitFor();
  await page.getByText(/Put it in tote T\d+/).waitFor();

  // The scanner is broken: the code is typed.
  await page.getByLabel('Type a barcode').fill(oat.gtin);
  await page.getByLabel('Type a barcode').press('Enter');
  await page.getByText('All items are picked').waitFor();

  // Too heavy: refused, then packed anyway by the lead with a reason.
  await page.getByRole('button', { name: `Pack order ${r3}` }).click();
  await page.getByText(`Expected: ${oat.unit_weight_g} g`).waitFor();
  await control('POST', '/scale', { grams: oat.unit_weight_g + 500, stable: true });
  await page.getByText('Too heavy by 500 g').waitFor();
  await page.getByRole('main').getByRole('button', { name: 'Pack', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: /Not packed: the bags weigh/ }).waitFor();
  await page.getByRole('button', { name: 'Pack anyway' }).click();
  await page.getByRole('alert').filter({ hasText: 'Write why the weight is different' }).waitFor();
  await page.getByLabel('Why is the weight different? (required)').fill('a bottle of oil was added by the customer service desk');
  await page.getByRole('button', { name: 'Pack anyway' }).click();
  await page.getByRole('status').filter({ hasText: 'Packed with the weight check overridden' }).waitFor();

  // Ready, then a reprint (lead and up).
  await page.getByRole('button', { name: 'Mark ready and print labels' }).click();
  const labels = page.getByRole('region', { name: 'Labels', exact: true });
  await labels.getByText('Bag 1 of 1: printed').waitFor();
  const before = await control('GET', '/printer');
  await labels.getByRole('button', { name: 'Reprint labels' }).click();
  await page.getByRole('status').filter({ hasText: 'Labels sent to the printer again' }).waitFor();
  await eventually(async () => (await control('GET', '/printer')).labels === before.labels + 1, 'the reprinted label');
});
