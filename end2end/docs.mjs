// The API explorer and the docs pages in headless Chromium.
//
// Starts tokengate-server (demo mode, temp data dir, random port) and checks that:
//   1. /api/docs (Swagger UI, vendored into the binary) renders with every request going
//      to the server itself: all other hosts are blocked, and the test fails if any
//      request to another host was even attempted;
//   2. "Authorize" with the demo API key, then "Try it out" → "Execute" on GET /v1/models
//      shows a 200 with the demo catalog in the explorer;
//   3. a docs page (/docs/quickstart) renders as HTML with the portal's top bar and links,
//      also without any request to another host.
// Screenshots go to end2end/artifacts/. Exits non-zero on failure.

import fs from 'node:fs';
import path from 'node:path';
import { ARTIFACTS, assert, launchChromium, sleep, startServer, stopServer } from './lib/harness.mjs';

function log(...args) {
  console.log('[docs]', ...args);
}

/** A context that lets only `origin` through and records every other request. */
async function lockedContext(browser, origin) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const foreign = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`) || url === origin) return route.continue();
    foreign.push(url);
    return route.abort('blockedbyclient');
  });
  // Requests that bypass routing (e.g. service workers, websockets) are seen here.
  context.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(`${origin}/`) && !url.startsWith('data:') && !url.startsWith('blob:') && !foreign.includes(url)) {
      foreign.push(url);
    }
  });
  return { context, foreign };
}

async function checkExplorer(browser, url, apiKey) {
  const { context, foreign } = await lockedContext(browser, url);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The explorer runs under the server's Content-Security-Policy; a violation is a failure.
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(`CSP: ${m.text()}`);
  });
  const failed = [];
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().includes('/v1/')) failed.push(`${r.status()} ${r.url()}`);
  });

  const resp = await page.goto(`${url}/api/docs`, { waitUntil: 'load' });
  assert(resp && resp.status() === 200, `GET /api/docs: ${resp && resp.status()}`);
  await page.locator('.swagger-ui .info .title').first().waitFor({ state: 'visible', timeout: 20_000 });
  const title = await page.locator('.swagger-ui .info .title').first().innerText();
  assert(title.includes('tokengate'), `explorer title: ${title}`);
  const op = page.locator('#operations-Gateway-list_models');
  await op.waitFor({ state: 'visible', timeout: 10_000 });
  log('explorer rendered the document');

  // Authorize with the API key (scheme `api_key`, HTTP bearer).
  await page.locator('.auth-wrapper button.authorize').first().click();
  const scheme = page
    .locator('.auth-container')
    .filter({ has: page.locator('h4 code', { hasText: /^api_key$/ }) });
  await scheme.waitFor({ state: 'visible', timeout: 10_000 });
  await scheme.locator('input').first().fill(apiKey);
  await scheme.getByRole('button', { name: 'Apply credentials' }).click();
  await scheme.locator('button', { hasText: 'Logout' }).waitFor({ state: 'visible', timeout: 5_000 });
  await page.locator('.modal-ux button.close-modal').first().click();
  log('authorized with the demo API key');

  // Try it out: GET /v1/models.
  await op.locator('.opblock-summary').first().click();
  // The explorer opens operations with "Try it out" already on (tryItOutEnabled).
  const execute = op.locator('button.execute');
  if (!(await execute.isVisible().catch(() => false))) {
    await sleep(500);
    if (!(await execute.isVisible())) await op.locator('button.try-out__btn').click();
  }
  await execute.click();
  const status = op.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ state: 'visible', timeout: 20_000 });
  const code = (await status.innerText()).trim();
  const body = await op.locator('.live-responses-table tbody .response-col_description').first().innerText();
  await page.screenshot({ path: path.join(ARTIFACTS, 'docs-explorer-models.png'), fullPage: false });
  assert(code.startsWith('200'), `try-it-out status: ${code}\n${body.slice(0, 500)}`);
  assert(body.includes('tokengate-fast'), `try-it-out body lacks the demo alias:\n${body.slice(0, 500)}`);
  const curl = await op.locator('.curl-command, .request-snippets').first().innerText().catch(() => '');
  assert(!curl || curl.includes('Bearer sk-tg-'), `the request did not carry the key:\n${curl.slice(0, 300)}`);
  log(`try it out: GET /v1/models → ${code}`);

  await sleep(500);
  assert(foreign.length === 0, `requests to other hosts were attempted:\n  ${foreign.join('\n  ')}`);
  assert(failed.length === 0, `failed requests: ${failed.join(', ')}`);
  assert(errors.length === 0, `page errors: ${errors.join('\n')}`);
  log('no request left the server');
  await context.close();
}

async function checkDocsPage(browser, url) {
  const { context, foreign } = await lockedContext(browser, url);
  const page = await context.newPage();
  const cspErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
  });
  const resp = await page.goto(`${url}/docs/quickstart`, { waitUntil: 'load' });
  assert(resp && resp.status() === 200, `GET /docs/quickstart: ${resp && resp.status()}`);
  await page.locator('main h1').waitFor({ state: 'visible', timeout: 10_000 });
  assert((await page.locator('main h1').innerText()) === 'Quickstart', 'page title');
  for (const [name, href] of [
    ['Docs', '/docs'],
    ['Console', '/console'],
    ['API explorer', '/api/docs'],
  ]) {
    const link = page.locator('header.topbar nav a', { hasText: name });
    assert((await link.getAttribute('href')) === href, `top bar link ${name}`);
  }
  const code = await page.locator('main pre code', { hasText: 'export OPENAI_BASE_URL' }).first().innerText();
  assert(code.includes(url), `code blocks carry this server's URL: ${code.slice(0, 200)}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'docs-quickstart.png'), fullPage: false });
  // Following a link to another page stays in the HTML docs.
  await page.locator('main a[href="/docs/keys#access-tokens"]').first().click();
  await page.waitForURL(`${url}/docs/keys#access-tokens`);
  await page.locator('#access-tokens').waitFor({ state: 'visible', timeout: 5_000 });
  assert(foreign.length === 0, `requests to other hosts were attempted:\n  ${foreign.join('\n  ')}`);
  assert(cspErrors.length === 0, `Content-Security-Policy violations:\n  ${cspErrors.join('\n  ')}`);
  log('docs page renders with the portal top bar; links between pages work');
  await context.close();
}

async function main() {
  let server;
  let browser;
  try {
    server = await startServer();
    log(`server up at ${server.url}`);
    const m = server.stdout().match(/API key:\s+(sk-tg-\S+)/);
    assert(m, 'the demo API key was not printed');
    browser = await launchChromium();
    const failures = [];
    for (const [name, check] of [
      ['explorer', (b, u) => checkExplorer(b, u, m[1])],
      ['docs page', checkDocsPage],
    ]) {
      try {
        await check(browser, server.url);
        log(`ok: ${name}`);
      } catch (e) {
        failures.push(name);
        console.error(`[docs] FAIL (${name}):`, e && e.message ? e.message : e);
      }
    }
    if (failures.length) {
      console.error(`[docs] ${failures.length} check(s) failed: ${failures.join(', ')}`);
      return 1;
    }
    log('PASS');
    return 0;
  } catch (e) {
    console.error('[docs] FAIL:', e && e.stack ? e.stack : e);
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
