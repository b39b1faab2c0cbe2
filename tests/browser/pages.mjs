// What every browser test does to the pages it opens, in one place: serve an app's files from
// the working tree (UI_DIR) and collect what a page logs that fails the test.

import fs from 'node:fs';
import path from 'node:path';

/**
 * Serves the app mounted at `mount` ('/' or '/hq/', its files under `<mount>ui/`) from `uiDir`
 * instead of the copies the daemon embeds, keeping the daemon's own headers (the CSP too), so a
 * change to the app needs no rebuild.
 */
export async function serveFromTree(context, uiDir, mount) {
  const pattern = new RegExp(mount.replace(/\//g, '\\/') + '($|ui\\/[a-z.]+$)');
  await context.route(pattern, async (route) => {
    const real = await route.fetch();
    const name = new URL(route.request().url()).pathname.slice(mount.length).replace(/^ui\//, '') || 'index.html';
    await route.fulfill({ response: real, body: fs.readFileSync(path.join(uiDir, name), 'utf8') });
  });
}

/**
 * The problems `page` reports as they happen (uncaught errors, content policy violations,
 * missing strings), for the test to assert none; with UI_DEBUG set, the page's console too.
 */
export function watch(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', async (m) => {
    if (process.env.UI_DEBUG) {
      const args = await Promise.all(m.args().map((a) => a.jsonValue().catch(() => '?')));
      console.log('[page ' + m.type() + ']', m.text(), JSON.stringify(args));
    }
    const text = m.text();
    if (/Content Security Policy|missing string|Uncaught/i.test(text)) problems.push(m.type() + ': ' + text);
  });
  return problems;
}
