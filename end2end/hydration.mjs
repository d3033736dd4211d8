// End-to-end hydration check for the tokengate portal.
//
// Starts tokengate-server (demo mode, temp data dir, random port), loads `/`
// in Chromium via playwright-core and verifies that:
//   1. the server-rendered HTML already contains the hero text;
//   2. after wasm hydration, clicking #quickstart-toggle reveals #quickstart;
//   3. with JavaScript disabled the same click does NOT reveal #quickstart
//      (proving step 2 really depends on hydration).
// Screenshots go to end2end/artifacts/. Exits non-zero on failure.

import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, assert, launchChromium, sleep, startServer, stopServer } from './lib/harness.mjs';

const HERO_TEXT = 'One endpoint for every model.';

function log(...args) {
  console.log('[hydration]', ...args);
}

async function checkSsrHtml(url) {
  const res = await fetch(`${url}/`);
  assert(res.status === 200, `GET / returned ${res.status}`);
  const html = await res.text();
  assert(html.includes(HERO_TEXT), `SSR HTML lacks "${HERO_TEXT}"`);
  assert(html.includes('id="quickstart-toggle"'), 'SSR HTML lacks #quickstart-toggle');
  assert(!html.includes('id="quickstart"'), 'SSR HTML should not render #quickstart before the toggle');
  log('SSR HTML contains the hero text and the toggle button');
}

async function checkHydrated(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`console.error: ${m.text()}`);
  });
  let wasmLoaded = false;
  const pkgFailures = [];
  page.on('response', (r) => {
    if (r.url().endsWith('.wasm') && r.status() === 200) wasmLoaded = true;
    if (r.url().includes('/pkg/') && r.status() >= 400) pkgFailures.push(`${r.status()} ${r.url()}`);
  });
  const diag = () =>
    (pkgFailures.length ? `\n  failed /pkg/ responses: ${pkgFailures.join(', ')}` : '') +
    (pageErrors.length ? `\n  page errors:\n    ${pageErrors.map((e) => e.slice(0, 600)).join('\n    ')}` : '');

  const resp = await page.goto(`${url}/`, { waitUntil: 'domcontentloaded' });
  assert(resp && resp.status() === 200, `page.goto status ${resp && resp.status()}`);
  const ssrBody = await resp.text();
  assert(ssrBody.includes(HERO_TEXT), 'document response lacks hero text');
  // Hydration runs under the page's Content-Security-Policy (inline scripts by nonce only);
  // a violation shows up as a console error, which fails this check below.
  const csp = resp.headers()['content-security-policy'] || '';
  assert(/script-src [^;]*'nonce-/.test(csp) && !/script-src [^;]*'unsafe-inline'/.test(csp),
    `the page lacks its nonce-based CSP: ${csp}`);
  await page.getByText(HERO_TEXT).first().waitFor({ state: 'visible', timeout: 10_000 });

  // Wait for the wasm bundle to be fetched and the network to go quiet.
  await page.waitForLoadState('networkidle', { timeout: 30_000 });
  if (!wasmLoaded) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'hydration-before-click.png'), fullPage: true });
  }
  assert(wasmLoaded, `the .wasm bundle was never loaded (hydration cannot happen)${diag()}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'hydration-before-click.png'), fullPage: true });

  const toggle = page.locator('#quickstart-toggle');
  const quickstart = page.locator('#quickstart');
  assert(!(await quickstart.isVisible()), '#quickstart visible before click');

  // Hydration finishes asynchronously after the wasm is instantiated; a click
  // that lands before it is a no-op, so retry a few times.
  let shown = false;
  for (let attempt = 1; attempt <= 10 && !shown; attempt++) {
    await toggle.click();
    try {
      await quickstart.waitFor({ state: 'visible', timeout: 1_500 });
      shown = true;
      log(`#quickstart visible after click attempt ${attempt}`);
    } catch {
      log(`click attempt ${attempt}: #quickstart not visible yet`);
    }
  }
  await page.screenshot({ path: path.join(ARTIFACTS, 'hydration-after-click.png'), fullPage: true });
  assert(shown, `#quickstart never became visible after clicking #quickstart-toggle (not hydrated?)${diag()}`);
  assert((await toggle.getAttribute('aria-expanded')) === 'true', 'aria-expanded did not become "true"');
  assert((await toggle.innerText()).includes('Hide quickstart'), 'toggle label did not change');
  assert((await quickstart.innerText()).includes('/v1/chat/completions'), 'quickstart snippet missing');

  // Clicking again hides it (reactivity works both ways).
  await toggle.click();
  await quickstart.waitFor({ state: 'detached', timeout: 5_000 });
  assert((await toggle.getAttribute('aria-expanded')) === 'false', 'aria-expanded did not return to "false"');

  const fatal = pageErrors.filter((e) => !/favicon/i.test(e));
  assert(fatal.length === 0, `page errors: ${fatal.join('\n')}`);
  log('hydrated page: toggle shows and hides #quickstart');
  await context.close();
}

async function checkNoJs(browser, url) {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const resp = await page.goto(`${url}/`, { waitUntil: 'load' });
  assert(resp && resp.status() === 200, `no-JS page.goto status ${resp && resp.status()}`);
  await page.getByText(HERO_TEXT).first().waitFor({ state: 'visible', timeout: 10_000 });
  await page.locator('#quickstart-toggle').click();
  await sleep(2_000);
  await page.screenshot({ path: path.join(ARTIFACTS, 'nojs-after-click.png'), fullPage: true });
  const visible = await page.locator('#quickstart').isVisible();
  assert(!visible, 'with JavaScript disabled, #quickstart became visible — the hydration check proves nothing');
  log('no-JS page: SSR text present, click does not reveal #quickstart (as expected)');
  await context.close();
}

async function main() {
  let server;
  let browser;
  try {
    server = await startServer();
    log(`server up at ${server.url}`);
    await checkSsrHtml(server.url);
    browser = await launchChromium();
    const failures = [];
    for (const [name, check] of [
      ['hydrated', checkHydrated],
      ['no-javascript', checkNoJs],
    ]) {
      try {
        await check(browser, server.url);
        log(`ok: ${name}`);
      } catch (e) {
        failures.push(name);
        console.error(`[hydration] FAIL (${name}):`, e && e.message ? e.message : e);
      }
    }
    if (failures.length) {
      console.error(`[hydration] ${failures.length} check(s) failed: ${failures.join(', ')}`);
      return 1;
    }
    log('PASS');
    return 0;
  } catch (e) {
    console.error('[hydration] FAIL:', e && e.stack ? e.stack : e);
    if (server) {
      try {
        console.error(fs.readFileSync(server.stderrPath, 'utf8').slice(-3000));
      } catch {}
    }
    return 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await stopServer(server);
    if (server) fs.rmSync(server.dataDir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
