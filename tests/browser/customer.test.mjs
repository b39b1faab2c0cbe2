// The customer app (cloud/customer-ui, served by the cloud at /) in a real browser at a phone's
// size (375x812) against a real cloud and a real store, worked by the staff and rider
// simulators.
//
// Run by tests/tests/customer_ui.rs, with the environment described in tests/browser/README.md.
// Elements are found by role, label or visible text, as a customer finds them; everything is
// waited for, never slept for. The tests run in file order and the first customer's browser
// stays open between them: the journey's order is the one the later tests look back at.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { serveFromTree, watch } from './pages.mjs';

const require = createRequire(process.env.TOOLS_DIR + '/');
const { chromium } = require('playwright-core');

const CLOUD = process.env.CLOUD_URL;
// The harness's hands: GET /mail?to&subject waits for that e-mail and answers its link.
const CONTROL = process.env.CONTROL_URL;
const FIX = JSON.parse(process.env.FIXTURE || '{}');
const SHOTS = process.env.SCREENSHOTS;
const FAILURE_SHOTS = process.env.FAILURE_SHOTS || SHOTS;
// For working on the app: UI_DIR=cloud/customer-ui serves the app's files from the working
// tree instead of the copy embedded in the cloud (same headers), so a change needs no rebuild.
const UI_DIR = process.env.UI_DIR;
const PHONE = { width: 375, height: 812 };
const PASSWORD = 'a-long-password-2718';

let browser;
// The journey's customer (their browser stays open) and their order.
const ada = { email: `ada.${Date.now()}@example.com` };

before(async () => {
  assert.ok(CLOUD && CONTROL && SHOTS && FIX.door, 'CLOUD_URL, CONTROL_URL, SCREENSHOTS and FIXTURE must be set');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (ada.phone) await ada.phone.context.close();
  if (browser) await browser.close();
});

/** A phone: a fresh browser context (no cookie) at 375x812 that may tell its position. */
async function phone(position) {
  const context = await browser.newContext({
    viewport: PHONE, baseURL: CLOUD, isMobile: true, hasTouch: true,
    geolocation: { latitude: position.lat, longitude: position.lon }, permissions: ['geolocation'],
  });
  if (UI_DIR) await serveFromTree(context, UI_DIR, '/');
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  return { context, page, problems: watch(page) };
}

/** A test on `get()`'s phone; its screen is kept in FAILURE_SHOTS if it fails. */
let count = 0;
function scenario(title, get, fn) {
  const n = ++count;
  test(title, async () => {
    const s = await get();
    try {
      await fn(s.page, s);
      assert.deepEqual(s.problems, [], 'the page logged errors');
    } catch (err) {
      await s.page.screenshot({ path: path.join(FAILURE_SHOTS, `failed-customer-${n}.png`), fullPage: true }).catch(() => {});
      throw err;
    } finally {
      if (s !== ada.phone) await s.context.close();
    }
  });
}

/** The phone's screen, from the top (as a customer first sees the page). */
async function shot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, name) });
}

const heading = (page, name) => page.getByRole('heading', { name, level: 1 }).waitFor();
const nav = (page, name) => page.getByRole('navigation').getByRole('link', { name });

/** The public API as another client calls it, with a bearer token. */
async function call(method, route, token, body) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = 'Bearer ' + token;
  if (body) headers['content-type'] = 'application/json';
  const res = await fetch(CLOUD + route, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** The link into the app of the e-mail to `to` with `subject` (waited for by the harness). */
async function mailLink(to, subject) {
  const res = await fetch(CONTROL + '/mail?' + new URLSearchParams({ to, subject }));
  const text = await res.text();
  assert.ok(res.ok, `the e-mail "${subject}" to ${to}: ${res.status} ${text}`);
  return JSON.parse(text).link;
}

scenario('a new customer signs up and places the door where the phone is', async () => {
  ada.phone = await phone(FIX.door);
  return ada.phone;
}, async (page) => {
  await page.goto('/');
  await heading(page, 'Shop');
  await page.getByText('Tell us where to deliver').waitFor();
  await nav(page, 'Account').click();
  await page.getByRole('link', { name: 'Create an account' }).click();
  await heading(page, 'Create account');
  await page.getByLabel('First name').fill('Ada');
  await page.getByLabel('E-mail').fill(ada.email);
  await page.getByLabel('Password').fill(PASSWORD);
  await shot(page, 'customer-sign-up.png');
  await page.getByRole('button', { name: 'Create account' }).click();

  // A new account has no address: the app asks for one.
  await heading(page, 'New address');
  await page.getByRole('img', { name: 'Delivery areas: tap where the door is' }).waitFor();
  await page.getByRole('button', { name: 'Use my location' }).click();
  await page.getByText(`We deliver here from ${FIX.store}.`).waitFor();
  await page.getByRole('img', { name: 'Your door' }).waitFor();
  await page.getByLabel('Name it (Home, Work…)').fill('Home');
  await page.getByLabel('Street, number, floor, notes for the rider').fill('Invalidenstraße 10, 3rd floor, ring twice');
  await shot(page, 'customer-address.png');
  await page.getByRole('button', { name: 'Save address' }).click();
  await heading(page, 'Shop');
  await page.getByText(`Delivered from ${FIX.store}`).waitFor();
  await page.getByText(/^Delivery fee .+, about \d+ min$/).waitFor();
  await page.getByRole('button', { name: 'Deliver to Home' }).waitFor();
});

scenario('a search with a typo finds the product, and a sold-out one is not offered', () => ada.phone, async (page) => {
  const search = page.getByRole('searchbox', { name: 'Search products' });
  await search.fill(FIX.product.typo);
  await search.press('Enter');
  const add = page.getByRole('button', { name: `Add ${FIX.product.name}` });
  await add.click();
  await page.getByRole('button', { name: `One more ${FIX.product.name}` }).click();
  await page.getByLabel('2 in cart').waitFor();
  await nav(page, 'Cart (2)').waitFor();
  await shot(page, 'customer-shop.png');

  // The catalog has it, the store has none: not offered, by search or in the list.
  await search.fill(FIX.sold_out);
  await search.press('Enter');
  await page.getByText(`No product matches “${FIX.sold_out}”.`).waitFor();
  await search.fill('');
  await search.press('Enter');
  await page.getByRole('button', { name: `Add ${FIX.also}` }).waitFor();
  assert.equal(await page.getByText(FIX.sold_out).count(), 0, 'a sold-out product is listed');
  const listed = await call('GET', `/api/v1/storefront?lat=${FIX.door.lat}&lon=${FIX.door.lon}&limit=100`);
  assert.ok(listed.body.products.every((p) => p.name !== FIX.sold_out && p.available > 0), JSON.stringify(listed.body));
});

scenario('the cart shows the fee and the ETA, and checking out opens the live order', () => ada.phone, async (page) => {
  await nav(page, 'Cart (2)').click();
  await heading(page, 'Cart');
  await page.getByText('Delivery fee', { exact: true }).waitFor();
  await page.getByText(/^Arrives in about \d+ min$/).waitFor();
  await page.getByRole('radio', { name: 'Cash to the rider at the door' }).waitFor();
  // Card is the default where the cloud takes cards; the card goes to the provider only.
  assert.ok(await page.getByRole('radio', { name: 'Card' }).isChecked());
  // A card the bank refuses: the customer is told, nothing is ordered, the cart stays.
  await page.getByLabel('Card number').fill('4000 0000 0000 0002');
  await page.getByLabel('Expiry (MM/YY)').fill('12/40');
  await page.getByLabel('Security code').fill('123');
  await page.getByRole('button', { name: 'Place order' }).click();
  await page.getByRole('alert').filter({ hasText: /declined/i }).waitFor();
  assert.match(new URL(page.url()).hash, /^#\/cart$/);
  const before = await page.evaluate(async () => (await fetch('/api/v1/orders')).json());
  assert.equal(before.length, 0, JSON.stringify(before));
  await page.getByLabel('Card number').fill('4242 4242 4242 4242');
  // Correcting the card clears the refusal.
  assert.equal(await page.getByRole('alert').filter({ hasText: /declined/i }).count(), 0);
  await shot(page, 'customer-cart.png');
  await page.getByRole('button', { name: 'Place order' }).click();
  await heading(page, 'Your order');
  ada.order = decodeURIComponent(new URL(page.url()).hash.replace('#/orders/', ''));
  assert.match(ada.order, /^[0-9a-f-]{20,}$/);
  await nav(page, 'Cart (0)').waitFor();
  // Paid by card: authorised now, captured for what is delivered.
  const placed = await page.evaluate(async (id) => (await (await fetch('/api/v1/orders/' + id)).json()).payment, ada.order);
  assert.equal(placed.method, 'card', JSON.stringify(placed));
  assert.match(placed.intent_id || '', /^pi_/, JSON.stringify(placed));
});

scenario('the order moves to DELIVERED with the rider’s dot moving on the map, and the PIN shown', () => ada.phone, async (page) => {
  // The PIN to tell the rider, as the order's own API answers it.
  const pin = await page.evaluate(async (id) =>
    (await (await fetch('/api/v1/orders/' + id)).json()).delivery_pin, ada.order);
  assert.match(pin, /^\d{4}$/);
  await page.getByText(pin, { exact: true }).waitFor();
  await page.getByText('Tell the rider this PIN at the door.').waitFor();
  await page.getByText('Status: On its way').waitFor({ timeout: 90_000 });
  const dot = page.getByRole('img', { name: 'Rider' }).locator('circle');
  await dot.waitFor({ timeout: 30_000 });
  const first = { cx: await dot.getAttribute('cx'), cy: await dot.getAttribute('cy') };
  await page.waitForFunction((was) => {
    const c = document.querySelector('[aria-label="Rider"] circle');
    return c && (c.getAttribute('cx') !== was.cx || c.getAttribute('cy') !== was.cy);
  }, first, { timeout: 30_000 });
  await page.getByText(/^Arrives in about \d+ min$/).waitFor();
  await shot(page, 'customer-tracking.png');
  await page.getByText('Status: Delivered').waitFor({ timeout: 90_000 });
  await page.getByRole('list', { name: 'Progress' }).getByText(/On its way/).waitFor();
  assert.equal(await page.getByText(pin, { exact: true }).count(), 0, 'the PIN is still shown');
});

scenario('the customer rates the delivered order', () => ada.phone, async (page) => {
  await page.getByRole('heading', { name: 'Rate this order' }).waitFor();
  await page.getByRole('group', { name: 'The delivery' }).getByLabel('5 stars').check();
  await page.getByRole('group', { name: 'The order' }).getByLabel('4 stars').check();
  await page.getByLabel('Comment (optional)').fill('Fast, and the bananas were perfect.');
  await shot(page, 'customer-rate.png');
  await page.getByRole('button', { name: 'Send rating' }).click();
  await page.getByText('Thank you for rating: delivery 5/5, order 4/5.').waitFor();
  await page.reload();
  await page.getByText('Thank you for rating: delivery 5/5, order 4/5.').waitFor();
});

scenario('another customer cannot read, follow or rate the order', () => ada.phone, async () => {
  const other = await call('POST', '/api/v1/account/sign-up', null,
    { email: `eve.${Date.now()}@example.com`, password: PASSWORD, first_name: 'Eve' });
  assert.equal(other.status, 201, JSON.stringify(other.body));
  const token = other.body.token;
  for (const [method, route, body] of [
    ['GET', `/api/v1/orders/${ada.order}`],
    ['GET', `/api/v1/orders/${ada.order}/events`],
    ['GET', `/api/v1/orders/${ada.order}/rating`],
    ['POST', `/api/v1/orders/${ada.order}/rating`, { delivery_stars: 1, order_stars: 1 }],
  ]) {
    const answer = await call(method, route, token, body);
    assert.equal(answer.status, 404, `${method} ${route}: ${JSON.stringify(answer.body)}`);
  }
  const history = await call('GET', '/api/v1/orders', token);
  assert.deepEqual(history.body, []);
});

scenario('the confirmation e-mail links to the order’s page', () => ada.phone, async (page) => {
  const link = await mailLink(ada.email, `Order ${ada.order} confirmed`);
  assert.equal(link, `${CLOUD}/#/orders/${ada.order}`);
  await page.goto('/');
  await heading(page, 'Shop');
  await page.goto(link);
  await heading(page, 'Your order');
  await page.getByText('Status: Delivered').waitFor();
});

scenario('the history lists the order, and ordering again fills the cart', () => ada.phone, async (page) => {
  await nav(page, 'Orders').click();
  await heading(page, 'Your orders');
  const entry = page.getByRole('link', { name: /^Order of .+ Delivered$/ });
  await entry.waitFor();
  await shot(page, 'customer-orders.png');
  await entry.click();
  await heading(page, 'Your order');
  await page.getByText(`2 × ${FIX.product.name}`).waitFor();
  await page.getByRole('button', { name: 'Order again' }).click();
  await heading(page, 'Cart');
  await page.getByText(FIX.product.name).waitFor();
  await nav(page, 'Cart (2)').waitFor();
});

scenario('an address outside every area is told so before checkout', () => ada.phone, async (page, s) => {
  await s.context.setGeolocation({ latitude: FIX.outside.lat, longitude: FIX.outside.lon });
  await nav(page, 'Account').click();
  await heading(page, 'Your account');
  await page.getByRole('link', { name: 'Add an address' }).click();
  await heading(page, 'New address');
  await page.getByRole('button', { name: 'Use my location' }).click();
  const outside = 'We do not deliver to this address yet: it is outside every delivery area.';
  await page.getByText(outside).waitFor();
  await page.getByLabel('Name it (Home, Work…)').fill('Weekend');
  await page.getByLabel('Street, number, floor, notes for the rider').fill('Am Neuen Garten 1');
  await page.getByRole('button', { name: 'Save address' }).click();
  await heading(page, 'Shop');
  await page.getByText(outside).waitFor();
  await nav(page, 'Cart (2)').click();
  await page.getByText(outside).waitFor();
  assert.ok(await page.getByRole('button', { name: 'Place order' }).isDisabled());
  // Back home, the order can be placed again.
  await nav(page, 'Account').click();
  await page.getByRole('button', { name: 'Deliver to Home' }).click();
  await nav(page, 'Cart (2)').click();
  await page.getByText(/^Arrives in about \d+ min$/).waitFor();
  assert.ok(await page.getByRole('button', { name: 'Place order' }).isEnabled());
});

scenario('without location, the door is placed by tapping the map', () => phone(FIX.outside), async (page) => {
  await page.goto('/#/address');
  const map = page.getByRole('img', { name: 'Delivery areas: tap where the door is' });
  const box = await map.boundingBox();
  // The middle of the map is the middle of the store's area; its corner is outside it.
  await map.click({ position: { x: box.width / 2, y: box.height / 2 } });
  await page.getByText(`We deliver here from ${FIX.store}.`).waitFor();
  await map.click({ position: { x: 4, y: 4 } });
  await page.getByText('We do not deliver to this address yet: it is outside every delivery area.').waitFor();
});

scenario('a forgotten password is reset from the e-mailed link', () => phone(FIX.door), async (page) => {
  await page.goto('/#/sign-in');
  await heading(page, 'Sign in');
  await page.getByRole('link', { name: 'Forgot your password?' }).click();
  await heading(page, 'Reset your password');
  await page.getByLabel('E-mail').fill(ada.email);
  await page.getByRole('button', { name: 'Send the link' }).click();
  await page.getByText(`If there is an account for ${ada.email}, a link to reset its password is on its way.`).waitFor();
  await shot(page, 'customer-reset.png');
  // A link whose token is not one is refused with the server's reason.
  await page.goto('/#/reset/not-a-real-token');
  await heading(page, 'Choose a new password');
  await page.getByLabel('New password').fill('another-long-password');
  await page.getByRole('button', { name: 'Set the new password' }).click();
  await page.getByRole('alert').filter({ hasText: /\S/ }).waitFor();
  assert.equal(await page.getByText('Your password is changed. Sign in with it.').count(), 0);

  // The e-mailed link sets the new password, which then signs in.
  const link = await mailLink(ada.email, 'Reset your FlashKart password');
  assert.ok(link.startsWith(`${CLOUD}/#/reset/`), link);
  await page.goto(link);
  await heading(page, 'Choose a new password');
  await page.getByLabel('New password').fill('a-new-long-password-31');
  await page.getByRole('button', { name: 'Set the new password' }).click();
  await page.getByText('Your password is changed. Sign in with it.').waitFor();
  await page.getByRole('link', { name: 'Sign in', exact: true }).click();
  await heading(page, 'Sign in');
  await page.getByLabel('E-mail').fill(ada.email);
  await page.getByLabel('Password').fill('a-new-long-password-31');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await heading(page, 'Shop');
  await page.getByRole('button', { name: 'Deliver to Home' }).waitFor();
});
