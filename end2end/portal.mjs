// The portal and admin console in a real browser (headless Debian Chromium via
// playwright-core), against one tokengate-server in demo mode with an in-process fake
// OpenAI-compatible upstream and a fake Stripe (end2end/lib/fakes.mjs):
//   1. customer journey: sign up, credit from the admin API, create a key in the dialog
//      (secret shown once, copy button copies it), use it on /v1, see the call in usage,
//      request logs (with its cost) and the statement, revoke it (confirmation dialog) →
//      401, the secret is in no page afterwards (browser DOM and raw SSR HTML);
//   2. admin journey: a provider pointing at the fake upstream, a model with prices and an
//      alias, all through the admin forms → a customer request through the alias is served
//      by it; the health page shows the target; "Test connection" says ok;
//   3. a non-admin gets 403 on every admin URL; the create-key form works without JS;
//   4. the top-up form (with and without JS) redirects to the checkout URL; the landing
//      states; a paid top-up gets a receipt;
//   5. screenshots of every page at 1280×800 and 390×844 (end2end/artifacts/screenshots/),
//      no page scrolls sideways at phone width, and no request leaves the server's origin;
//   6. times: <time> has a UTC tooltip and shows the browser's local time once hydrated.
// Also: the dashboard (balance, low-balance prompt, snippet tabs), key rename/disable/
// enable/rotate and every create option, keyboard-usable dialogs, error messages (with and
// without JS), sign-in's `next` and filter values without JS, request-log pages, key
// groups, provider enable/disable, alias edit, user search/credit/suspend, settings and
// sign-out everywhere, labels on every input, a title per page, no page/console errors.
// Runs in about a minute. Exits non-zero when any check fails; every failing check is
// named at the end (with a screenshot, end2end/artifacts/portal-fail-*.png, and the
// server's log, end2end/artifacts/portal-server.log).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Stripe from 'stripe';
import { startFakeStripe, startFakeUpstream, UPSTREAM_CONTENT } from './lib/fakes.mjs';
import { ARTIFACTS, BIN, assert, launchChromium, sleep, startServer, stopServer } from './lib/harness.mjs';

const SHOTS = path.join(ARTIFACTS, 'screenshots');
const UPSTREAM_KEY = 'sk-upstream-portal-test';
const STRIPE_KEY = 'sk_test_portal';
const STRIPE_WHSEC = 'whsec_portal_test';
const CUSTOMER = { name: 'Dana Customer', email: 'dana@example.com', password: 'dana-password-123' };
const TIMEZONE = 'America/New_York'; // not UTC, so local times differ from the SSR text
const ADMIN_PAGES = [
  '/admin', '/admin/providers', '/admin/models', '/admin/aliases', '/admin/key-groups',
  '/admin/users', '/admin/health', '/admin/failed-requests',
];

const t0 = Date.now();
const log = (...a) => console.log(`[portal ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

// ----- bookkeeping ----------------------------------------------------------------------

const failures = [];
const state = {}; // values shared between steps
let currentPage = null; // for a screenshot when a step fails

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    log(`ok: ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures.push(name);
    console.error(`[portal] FAIL (${name}): ${e && e.message ? e.message : e}`);
    if (currentPage && !currentPage.isClosed()) {
      const file = path.join(ARTIFACTS, `portal-fail-${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
      await currentPage.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`[portal]   page: ${currentPage.url()} (screenshot ${path.relative(process.cwd(), file)})`);
    }
  }
}

// Every request any browser context makes, to check none leaves the server's origin.
const requests = [];
// Checkout URLs the top-up step follows on purpose (the fake Stripe's stub checkout page).
const allowedForeign = new Set();
// Uncaught page errors and console errors of hydrated pages.
const pageErrors = [];

/** Marks `window.__tgWasmReady` once the portal's wasm module is instantiated. */
const WASM_HOOK = `(() => {
  for (const fn of ['instantiateStreaming', 'instantiate']) {
    const orig = WebAssembly[fn];
    if (!orig) continue;
    WebAssembly[fn] = function (...args) {
      const p = orig.apply(this, args);
      p.then(() => { window.__tgWasmReady = true; }, () => {});
      return p;
    };
  }
})();`;

async function newContext(browser, label, { js = true, viewport = { width: 1280, height: 800 }, clipboard = false, url } = {}) {
  const context = await browser.newContext({
    javaScriptEnabled: js,
    viewport,
    timezoneId: TIMEZONE,
    locale: 'en-US',
  });
  if (clipboard) await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
  await context.addInitScript(WASM_HOOK);
  context.on('request', (r) => requests.push({ ctx: label, url: r.url() }));
  context.on('page', (p) => watchErrors(p, label));
  return context;
}

function watchErrors(page, label) {
  page.on('pageerror', (e) => pageErrors.push(`${label} ${page.url()}: ${String(e).slice(0, 500)}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chromium reports a document answered 403/404 as a failed resource; those statuses
    // are checked where they are expected.
    if (/^Failed to load resource/.test(m.text()) && m.location().url === page.url()) return;
    pageErrors.push(`${label} ${page.url()}: console.error: ${m.text().slice(0, 500)}`);
  });
}

/** Waits until the wasm bundle is instantiated and hydration has had time to run. */
async function hydrated(page) {
  await page.waitForFunction(() => window.__tgWasmReady === true, null, { timeout: 30_000 }).catch(() => {
    throw new Error(`${page.url()}: the portal's wasm was never instantiated (no hydration)`);
  });
  await sleep(250);
}

async function open(page, url, { js = true, status = 200 } = {}) {
  currentPage = page;
  const resp = await page.goto(url, { waitUntil: 'load' });
  assert(resp, `no response for ${url}`);
  assert(resp.status() === status, `GET ${url}: document status ${resp.status()}, expected ${status}`);
  if (js) await hydrated(page);
  return resp;
}

/** Full-page screenshots at desktop and phone width; fails when the phone layout scrolls sideways. */
const phoneOverflow = [];
const unlabeled = [];
const titles = new Map(); // page title → screenshot names
async function shoot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const title = await page.title();
  titles.set(title, [...(titles.get(title) || []), name]);
  for (const field of await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => !['hidden', 'submit', 'button'].includes(el.type))
      .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      .map((el) => el.outerHTML.slice(0, 100)),
  )) {
    unlabeled.push(`${name}: ${field}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await sleep(100);
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(150);
  await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: true });
  const { scroll, inner, culprits } = await page.evaluate(() => {
    const inner = window.innerWidth;
    const culprits = [];
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right > inner + 1 && r.width > 0) {
        // Content inside a horizontally scrollable box is fine.
        let p = el.parentElement;
        let scrolls = false;
        while (p && p !== document.body) {
          const s = getComputedStyle(p).overflowX;
          if (s === 'auto' || s === 'scroll' || s === 'hidden') { scrolls = true; break; }
          p = p.parentElement;
        }
        if (!scrolls) {
          const id = el.id ? `#${el.id}` : '';
          const cls = el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : '';
          culprits.push(`${el.tagName.toLowerCase()}${id}${cls} (right edge ${Math.round(r.right)}px)`);
        }
      }
    }
    return { scroll: document.documentElement.scrollWidth, inner, culprits: culprits.slice(0, 4) };
  });
  if (scroll > inner + 1) phoneOverflow.push(`${name}: page is ${scroll}px wide at ${inner}px; widest: ${culprits.join(', ')}`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

const bearer = (key) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

async function chat(url, key, model, content = 'Hello from the portal test') {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: bearer(key),
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 50 }),
  });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body, text };
}

/** Polls `fn` until it returns a truthy value or `ms` pass; returns the last value. */
async function eventually(fn, ms = 6_000, every = 250) {
  const deadline = Date.now() + ms;
  let v;
  for (;;) {
    v = await fn();
    if (v || Date.now() > deadline) return v;
    await sleep(every);
  }
}

/** The raw HTML the server sends for `urlPath` with this context's cookies (no browser). */
async function rawHtml(context, url, urlPath) {
  // Accept: text/html as a browser sends it (the SSR answers a signed-out visitor with a
  // 302 only then).
  const res = await context.request.get(`${url}${urlPath}`, { maxRedirects: 0, headers: { accept: 'text/html' } });
  return { status: res.status(), html: await res.text(), headers: res.headers() };
}

// ----- the checks -----------------------------------------------------------------------

async function signUp(page, url) {
  await open(page, `${url}/signup`);
  await page.locator('#display_name').fill(CUSTOMER.name);
  await page.locator('#email').fill(CUSTOMER.email);
  await page.locator('#password').fill(CUSTOMER.password);
  await Promise.all([page.waitForURL(`${url}/console`), page.getByRole('button', { name: 'Create account' }).click()]);
  await hydrated(page);
  assert((await page.locator('#console-email').innerText()) === CUSTOMER.email, 'console shows the new account');
}

async function signIn(page, url, email, password, { js = true } = {}) {
  await open(page, `${url}/login`, { js });
  await page.locator('#email').fill(email);
  await page.locator('#password').fill(password);
  await Promise.all([page.waitForURL(`${url}/console`), page.getByRole('button', { name: 'Sign in' }).click()]);
  if (js) await hydrated(page);
}

function adminToken(server) {
  return execFileSync(BIN, ['admin', 'token', '--email', state.adminEmail, '--ttl', '600'], {
    env: {
      ...process.env,
      TOKENGATE_LISTEN: `127.0.0.1:${server.port}`,
      TOKENGATE_DATA_DIR: server.dataDir,
      TOKENGATE_DEMO: '1',
      TOKENGATE_LOG: 'warn',
    },
    encoding: 'utf8',
  }).trim();
}

async function adminApi(url, method, p, body) {
  const res = await fetch(`${url}/api/v1/admin${p}`, {
    method,
    headers: bearer(state.adminToken),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  assert(res.ok, `${method} /api/v1/admin${p}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function main() {
  let server;
  let browser;
  let upstream;
  let stripe;
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) {
    if (f.startsWith('portal-fail-') || f === 'portal-server.log') fs.rmSync(path.join(ARTIFACTS, f));
  }
  try {
    upstream = await startFakeUpstream(UPSTREAM_KEY);
    stripe = await startFakeStripe(STRIPE_KEY);
    server = await startServer({
      env: {
        TOKENGATE_STRIPE_SECRET_KEY: STRIPE_KEY,
        TOKENGATE_STRIPE_WEBHOOK_SECRET: STRIPE_WHSEC,
        TOKENGATE_STRIPE_API_BASE: stripe.apiBase,
        TOKENGATE_FLUSH_INTERVAL_MS: '100',
      },
    });
    const { url } = server;
    const out = server.stdout();
    state.adminEmail = out.match(/Admin email:\s+(\S+)/)[1];
    state.adminPassword = out.match(/Admin password:\s+(\S+)/)[1];
    state.adminToken = adminToken(server);
    log(`server up at ${url}; fake upstream :${upstream.port}; fake Stripe :${stripe.port}`);
    browser = await launchChromium();

    // Signed-out visitor: public pages, and admin URLs send to sign-in.
    const anon = await newContext(browser, 'anon', { url });
    const anonPage = await anon.newPage();
    await step('public pages render (screenshots)', async () => {
      for (const [p, name] of [['/', 'home'], ['/login', 'login'], ['/signup', 'signup']]) {
        await open(anonPage, `${url}${p}`);
        await shoot(anonPage, name);
      }
      await open(anonPage, `${url}/no-such-page`, { status: 404 });
      await shoot(anonPage, 'not-found');
    });
    await step('signed out: /me and /admin pages send to sign-in', async () => {
      for (const p of ['/me/keys', '/admin/providers']) {
        currentPage = anonPage;
        await anonPage.goto(`${url}${p}`);
        await anonPage.waitForURL(/\/login/, { timeout: 5_000 }).catch(() => {});
        assert(new URL(anonPage.url()).pathname === '/login', `${p} signed out ended at ${anonPage.url()}`);
      }
    });
    await anon.close();

    // ----- 1. customer journey ------------------------------------------------------------
    const cust = await newContext(browser, 'customer', { clipboard: true, url });
    const page = await cust.newPage();
    await step('customer signs up and gets credit from the admin API', async () => {
      await signUp(page, url);
      assert((await page.locator('#stat-balance').innerText()).trim() === '$0.00', 'a new account starts at $0.00');
      assert(await page.locator('#low-balance').isVisible(), 'no top-up prompt (#low-balance) at $0.00');
      const users = await adminApi(url, 'GET', `/users?q=${encodeURIComponent(CUSTOMER.email)}`);
      const me = users.find((u) => u.email === CUSTOMER.email);
      assert(me, `admin API /users does not list ${CUSTOMER.email}`);
      state.customerId = me.id;
      await adminApi(url, 'POST', `/users/${me.id}/credit`, { amount_usd: '5.00', kind: 'promo', reason: 'portal test credit' });
      await open(page, `${url}/console`);
      const bal = await page.locator('#stat-balance').innerText();
      assert(bal.trim() === '$5.00', `#stat-balance shows ${JSON.stringify(bal)}, expected $5.00`);
      assert((await page.locator('#low-balance').count()) === 0, 'top-up prompt still shown at $5.00');
      const base = await page.locator('#base-url').innerText();
      assert(base.trim() === `${url}/v1`, `#base-url shows ${base}`);
      // The snippet tabs switch languages once hydrated.
      await page.getByRole('tab', { name: 'python' }).click();
      await eventually(async () => (await page.locator('#snippet').innerText()).includes('from openai import OpenAI'), 3_000);
      assert((await page.locator('#snippet').innerText()).includes('from openai import OpenAI'), 'python tab shows the Python snippet');
      await page.getByRole('tab', { name: 'javascript' }).click();
      await eventually(async () => (await page.locator('#snippet').innerText()).includes('new OpenAI'), 3_000);
      assert((await page.locator('#snippet').innerText()).includes('new OpenAI'), 'javascript tab shows the JS snippet');
      await page.getByRole('tab', { name: 'curl' }).click();
    });

    await step('create a key in the dialog: secret shown once, copy button copies it', async () => {
      await open(page, `${url}/me/keys`);
      await page.locator('details.create summary').click();
      await page.locator('#key-name').fill('journey key');
      await page.locator('#create-key-submit').click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor({ state: 'visible', timeout: 10_000 }).catch(() => {
        throw new Error(`no dialog after submitting the create form (URL now ${page.url()})`);
      });
      assert(new URL(page.url()).pathname === '/me/keys', `hydrated create form navigated to ${page.url()}`);
      const secret = (await page.locator('#new-key-secret').innerText()).trim();
      assert(/^sk-tg-\S{20,}$/.test(secret), `#new-key-secret shows ${JSON.stringify(secret)}`);
      state.secret = secret;
      const env = await page.locator('#new-key-env').innerText();
      assert(env.includes(`OPENAI_API_KEY=${secret}`), `#new-key-env lacks OPENAI_API_KEY: ${env}`);
      assert(env.includes(`OPENAI_BASE_URL=${url}/v1`), `#new-key-env lacks OPENAI_BASE_URL=${url}/v1: ${env}`);
      assert(/only time it is shown/i.test(await dialog.innerText()), 'the dialog warns the secret is shown once');
      await shoot(page, 'keys-secret-dialog');
      await page.locator('#copy-secret').click();
      const clip = await eventually(async () => {
        const c = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `<${e}>`);
        return c === secret ? c : null;
      }, 3_000);
      const got = clip || (await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `<${e}>`));
      assert(got === secret, `clipboard holds ${JSON.stringify(got)} after #copy-secret, expected the secret`);
      await page.locator('#close-secret').click();
      await dialog.waitFor({ state: 'detached', timeout: 5_000 });
      assert(!(await page.content()).includes(secret), 'the secret is still in the page after closing the dialog');
      await page.locator('#keys-table tr[data-key-id]').filter({ hasText: 'journey key' }).waitFor({ timeout: 5_000 });
    });

    await step('the new key works on /v1', async () => {
      assert(state.secret, 'no secret from the dialog');
      const r = await chat(url, state.secret, 'mock/fast-1');
      assert(r.status === 200, `/v1/chat/completions with the new key: ${r.status} ${r.text.slice(0, 300)}`);
      state.requestId = r.headers.get('x-request-id');
      assert(state.requestId, 'no x-request-id');
      const logs = await eventually(async () => {
        const res = await cust.request.get(`${url}/api/v1/me/request-logs?limit=5`);
        const v = await res.json();
        return v.data?.find((x) => x.request_id === state.requestId);
      });
      assert(logs, 'the request never appeared in /api/v1/me/request-logs');
      state.cost = logs.cost_usd;
      assert(Number(state.cost) > 0, `logged cost ${state.cost}`);
      log(`request ${state.requestId} cost $${state.cost}`);
    });

    await step('usage page shows the call', async () => {
      const ok = await eventually(async () => {
        await open(page, `${url}/me/usage?days=1`);
        return (await page.locator('#usage-requests').innerText()).trim() === '1';
      }, 6_000, 500);
      assert(ok, `#usage-requests shows ${await page.locator('#usage-requests').innerText()}, expected 1`);
      const cost = (await page.locator('#usage-cost').innerText()).trim();
      assert(cost === `$${state.cost}`, `#usage-cost shows ${cost}, expected $${state.cost}`);
      const api = await (await cust.request.get(`${url}/api/v1/me/usage?days=1`)).json();
      assert(api.total_requests === 1 && `$${api.total_cost_usd}` === cost, `account API usage ${JSON.stringify(api)} vs page ${cost}`);
      assert((await page.locator('svg[role="img"]').count()) >= 3, 'usage charts (SVG) missing');
      const byModel = await page.locator('table').first().innerText();
      assert(byModel.includes('mock/fast-1'), `by-model table lacks mock/fast-1: ${byModel}`);
      const byKey = await page.locator('table').nth(1).innerText();
      assert(byKey.includes('journey key'), `by-key table lacks the key name: ${byKey}`);
      assert(new RegExp(`Last 1 day`).test(await page.locator('#days option:checked').innerText()), 'range select shows the chosen range');
      await shoot(page, 'usage');
    });

    await step('request logs show the call with its cost; detail view; CSV export', async () => {
      await open(page, `${url}/me/request-logs`);
      const row = page.locator('#logs-table tbody tr').filter({ hasText: 'mock/fast-1' }).first();
      await row.waitFor({ timeout: 5_000 });
      const cost = (await row.locator('td.cost').innerText()).trim();
      assert(cost === state.cost, `logs row cost ${cost}, expected ${state.cost}`);
      assert((await row.innerText()).includes('journey key'), 'logs row names the key');
      await shoot(page, 'request-logs');
      await Promise.all([page.waitForURL(/id=/), row.getByRole('link', { name: 'Details' }).click()]);
      await hydrated(page);
      const detail = await page.locator('#log-detail').innerText();
      assert(detail.includes(state.requestId), `#log-detail lacks the request id: ${detail.slice(0, 300)}`);
      assert(detail.includes(`$${state.cost}`), `#log-detail lacks the cost $${state.cost}`);
      await shoot(page, 'request-log-detail');
      const href = await page.locator('#export-csv').getAttribute('href');
      const csv = await cust.request.get(new URL(href, url).toString());
      assert(csv.status() === 200, `CSV export ${href}: ${csv.status()}`);
      const csvText = await csv.text();
      assert(csvText.includes(state.requestId), `CSV export lacks the request id (${href})`);
      // The filter form narrows the list (a plain GET form).
      await open(page, `${url}/me/request-logs?status=error`);
      assert((await page.locator('#logs-table').count()) === 0, 'status=error filter still lists the successful call');
    });

    await step('statement shows the call', async () => {
      const month = new Date().toISOString().slice(0, 7);
      await open(page, `${url}/me/billing/statement?month=${month}`);
      const usage = await page.locator('#statement-usage').innerText();
      assert(usage.includes(`$${state.cost}`) && usage.includes('1 request'), `#statement-usage shows ${usage}`);
      const summary = await page.locator('#statement-summary').innerText();
      assert(summary.includes('5.00') || summary.includes('5'), `#statement-summary: ${summary}`);
      for (const id of ['#statement-csv', '#statement-pdf']) {
        const href = await page.locator(id).getAttribute('href');
        const res = await cust.request.get(new URL(href, url).toString());
        assert(res.status() === 200, `${id} ${href}: ${res.status()}`);
        if (id === '#statement-pdf') assert((res.headers()['content-type'] || '').includes('pdf'), `${id} content-type ${res.headers()['content-type']}`);
        else assert((await res.text()).includes('mock/fast-1'), `${id} lacks the model row`);
      }
      await shoot(page, 'statement');
    });

    await step('times: <time> has a UTC tooltip and shows local time once hydrated', async () => {
      const { html } = await rawHtml(cust, url, '/me/keys');
      const m = html.match(/<time[^>]*datetime="([^"]+)"[^>]*>([^<]*)<\/time>/);
      assert(m, 'the SSR HTML of /me/keys has no <time datetime=…>');
      assert(/\d{4}-\d\d-\d\d \d\d:\d\d UTC/.test(m[2]), `SSR time text ${JSON.stringify(m[2])} is not UTC`);
      await open(page, `${url}/me/keys`);
      const time = page.locator('#keys-table time').first();
      const title = await time.getAttribute('title');
      assert(title && title.includes('UTC'), `<time> title ${JSON.stringify(title)} lacks UTC`);
      const iso = await time.getAttribute('datetime');
      const expected = await page.evaluate((d) => new Date(d).toLocaleString(), iso);
      const shown = await eventually(async () => {
        const t = (await time.innerText()).trim();
        return t === expected ? t : null;
      }, 4_000);
      assert(shown, `hydrated <time> shows ${JSON.stringify(await time.innerText())}, expected local ${JSON.stringify(expected)} (${TIMEZONE})`);
    });

    await step('revoke in the UI (confirmation) → the key gets 401', async () => {
      await open(page, `${url}/me/keys`);
      const row = page.locator('#keys-table tr[data-key-id]').filter({ hasText: 'journey key' });
      await row.locator('button.revoke').click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor({ state: 'visible', timeout: 5_000 });
      assert(/revoke/i.test(await dialog.innerText()), 'confirm dialog text');
      await shoot(page, 'keys-revoke-confirm');
      await page.locator('#confirm-action').click();
      await dialog.waitFor({ state: 'detached', timeout: 5_000 });
      const revoked = await eventually(async () => /revoked/.test(await row.innerText()), 5_000);
      assert(revoked, `key row does not say revoked: ${await row.innerText()}`);
      const r = await chat(url, state.secret, 'mock/fast-1');
      assert(r.status === 401, `revoked key on /v1: ${r.status}, expected 401`);
    });

    await step('after reload the secret is nowhere: DOM, SSR HTML, API', async () => {
      assert(state.secret, 'no secret');
      await open(page, `${url}/me/keys`);
      assert(!(await page.content()).includes(state.secret), 'the secret is in the reloaded /me/keys DOM');
      const { status, html } = await rawHtml(cust, url, '/me/keys');
      assert(status === 200, `GET /me/keys with the session: ${status}`);
      assert(html.includes('journey key'), 'the SSR HTML of /me/keys lacks the key list (wrong page?)');
      assert(!html.includes(state.secret), 'the secret is in the SSR HTML of /me/keys');
      const api = await (await cust.request.get(`${url}/api/v1/me/keys`)).text();
      assert(!api.includes(state.secret), 'the secret is in GET /api/v1/me/keys');
      const prefix = state.secret.slice(0, 12);
      assert(!html.includes(state.secret.slice(0, 24)), `more than the prefix (${prefix}…) of the secret is in the HTML`);
      await shoot(page, 'keys');
    });

    await step('key management in the UI: rename, disable/enable, rotate (new secret once)', async () => {
      await open(page, `${url}/me/keys`);
      await page.locator('details.create summary').click();
      await page.locator('#key-name').fill('mgmt key');
      await page.locator('#create-key-submit').click();
      await page.getByRole('dialog').waitFor({ timeout: 10_000 });
      const secret = (await page.locator('#new-key-secret').innerText()).trim();
      await page.locator('#close-secret').click();
      await page.getByRole('dialog').waitFor({ state: 'detached' });
      const row = page.locator('#keys-table tr[data-key-id]').filter({ hasText: 'mgmt key' });
      await row.waitFor();
      const id = await row.getAttribute('data-key-id');
      const keyRow = page.locator(`#keys-table tr[data-key-id="${id}"]`);
      // Rename.
      await keyRow.getByRole('button', { name: 'Rename' }).click();
      await page.locator(`#rename-${id}`).fill('renamed key');
      await keyRow.getByRole('button', { name: 'Save' }).click();
      const renamed = await eventually(async () => (await (await cust.request.get(`${url}/api/v1/me/keys/${id}`)).json()).name === 'renamed key', 4_000);
      assert(renamed, 'rename did not reach the API');
      assert(await eventually(async () => (await keyRow.innerText()).includes('renamed key'), 4_000), `row after rename: ${await keyRow.innerText()}`);
      // Disable → 401, enable → 200.
      await keyRow.getByRole('button', { name: 'Disable' }).click();
      assert(await eventually(async () => /disabled/.test(await keyRow.innerText()), 4_000), `row after disable: ${await keyRow.innerText()}`);
      let r = await chat(url, secret, 'mock/fast-1');
      assert(r.status === 401, `disabled key on /v1: ${r.status}`);
      await keyRow.getByRole('button', { name: 'Enable' }).click();
      assert(await eventually(async () => /active/.test(await keyRow.innerText()), 4_000), `row after enable: ${await keyRow.innerText()}`);
      r = await chat(url, secret, 'mock/fast-1');
      assert(r.status === 200, `re-enabled key on /v1: ${r.status}`);
      // Rotate: confirmation, then the new secret once; the old one fails at once.
      await keyRow.getByRole('button', { name: 'Rotate' }).click();
      await page.getByRole('dialog').waitFor();
      await page.locator('#confirm-action').click();
      const dialog = page.getByRole('dialog', { name: /rotated/i });
      await dialog.waitFor({ timeout: 5_000 });
      const rotated = (await page.locator('#new-key-secret').innerText()).trim();
      assert(/^sk-tg-/.test(rotated) && rotated !== secret, `rotated secret ${rotated}`);
      await page.locator('#close-secret').click();
      r = await chat(url, secret, 'mock/fast-1');
      assert(r.status === 401, `old secret after rotate: ${r.status}`);
      r = await chat(url, rotated, 'mock/fast-1');
      assert(r.status === 200, `rotated secret on /v1: ${r.status}`);
      const { html } = await rawHtml(cust, url, '/me/keys');
      assert(!html.includes(rotated) && !html.includes(secret), 'a mgmt key secret is in the SSR HTML');
      state.mgmtKeyId = id;
      state.rotated = rotated;
    });

    await step('request logs page through older requests', async () => {
      assert(state.rotated, 'no active key from the key management step');
      await Promise.all(Array.from({ length: 55 }, (_, i) => chat(url, state.rotated, 'mock/fast-1', `page ${i}`)));
      const total = await eventually(async () => {
        const v = await (await cust.request.get(`${url}/api/v1/me/usage?days=1`)).json();
        return v.total_requests >= 58 ? v.total_requests : null;
      }, 5_000);
      assert(total, 'the 55 requests were not logged');
      await open(page, `${url}/me/request-logs`);
      const first = await page.locator('#logs-table tbody tr').count();
      assert(first === 50, `first page has ${first} rows, expected 50`);
      const firstIds = await page.locator('#logs-table tbody tr a').evaluateAll((as) => as.map((a) => a.href));
      await Promise.all([page.waitForURL(/before=/), page.locator('#next-page').click()]);
      await hydrated(page);
      const secondIds = await page.locator('#logs-table tbody tr a').evaluateAll((as) => as.map((a) => a.href));
      assert(secondIds.length >= 1, 'the older page is empty');
      assert(!secondIds.some((h) => firstIds.includes(h)), 'the older page repeats rows of the first');
    });

    await step('create a key with every option (expiry, limit, models, group, RPM/TPM)', async () => {
      await adminApi(url, 'PUT', '/key-groups/internal', { allowed_providers: ['mock'], allowed_models: null });
      await open(page, `${url}/me/keys?create=1`);
      assert(await page.locator('#key-name').isVisible(), '/me/keys?create=1 does not open the create form');
      await page.locator('#key-name').fill('limited key');
      await page.locator('#key-expiry').fill('30');
      await page.locator('#key-limit').fill('2.50');
      await page.locator('#key-models').fill('mock/fast-1, mock/smart-1');
      await page.locator('#key-group').fill('internal');
      await page.locator('#key-rpm').fill('60');
      await page.locator('#key-tpm').fill('10000');
      await page.locator('#create-key-submit').click();
      await page.getByRole('dialog').waitFor({ timeout: 10_000 }).catch(async () => {
        throw new Error(`no dialog: ${await page.locator('.alert').first().innerText().catch(() => '(no message)')}`);
      });
      const secret = (await page.locator('#new-key-secret').innerText()).trim();
      await page.locator('#close-secret').click();
      const keys = await (await cust.request.get(`${url}/api/v1/me/keys`)).json();
      const k = keys.find((x) => x.name === 'limited key');
      assert(k, 'limited key not in the API');
      const days = (Date.parse(k.expires_at) - Date.now()) / 86_400_000;
      assert(days > 29.9 && days < 30.1, `expires_at ${k.expires_at} is not 30 days out`);
      assert(Number(k.spend_limit_usd) === 2.5, `spend_limit_usd ${k.spend_limit_usd}`);
      assert(JSON.stringify(k.models) === JSON.stringify(['mock/fast-1', 'mock/smart-1']), `models ${JSON.stringify(k.models)}`);
      assert(k.group_id, `group_id ${k.group_id}`);
      assert(k.rpm === 60 && k.tpm === 10000, `rpm/tpm ${k.rpm}/${k.tpm}`);
      const row = page.locator(`#keys-table tr[data-key-id="${k.id}"]`);
      const text = await row.innerText();
      assert(text.includes('2.50') || text.includes('2.5'), `row lacks the spend limit: ${text}`);
      assert((await chat(url, secret, 'mock/fast-1')).status === 200, 'limited key on an allowed model');
      const denied = await chat(url, secret, 'mock/coder-1');
      assert(denied.status === 403, `limited key on a model it may not use: ${denied.status}`);
    });

    await step('dialogs are keyboard-usable: focus moves into them and Escape closes them', async () => {
      await open(page, `${url}/me/keys`);
      const row = page.locator(`#keys-table tr[data-key-id="${state.mgmtKeyId}"]`);
      await row.locator('button.revoke').click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      const inside = await page.evaluate(() => !!document.activeElement?.closest('[role="dialog"]'));
      const focused = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
      await page.keyboard.press('Escape');
      const closed = await dialog.waitFor({ state: 'detached', timeout: 1_500 }).then(() => true, () => false);
      if (!closed) await page.getByRole('button', { name: 'Cancel' }).click();
      assert(inside && closed, `confirm dialog: focus ${inside ? 'inside' : `outside (on ${focused})`}, Escape ${closed ? 'closed it' : 'did not close it'}`);
    });

    await step('server errors are shown as messages (create key with a bad spend limit)', async () => {
      await open(page, `${url}/me/keys`);
      await page.locator('details.create summary').click();
      await page.locator('#key-name').fill('bad limit');
      await page.locator('#key-limit').fill('lots');
      await page.locator('#create-key-submit').click();
      const alert = page.locator('.alert');
      await alert.first().waitFor({ timeout: 5_000 });
      assert((await page.getByRole('dialog').count()) === 0, 'a dialog opened for a failed create');
      const text = await alert.first().innerText();
      assert(text.trim().length > 5, `error message: ${JSON.stringify(text)}`);
      await shoot(page, 'keys-error');
    });

    // ----- 3. non-admin 403, no-JS create key ----------------------------------------------
    await step('a non-admin gets 403 on every admin URL (page and API)', async () => {
      const bad = [];
      for (const p of ADMIN_PAGES) {
        currentPage = page;
        const resp = await page.goto(`${url}${p}`, { waitUntil: 'load' });
        if (resp.status() !== 403) bad.push(`${p}: ${resp.status()}`);
        else if (!(await page.content()).includes('Administrators only')) bad.push(`${p}: 403 without the explanation`);
      }
      await hydrated(page);
      await shoot(page, 'admin-forbidden');
      for (const p of ['/providers', '/users', '/health']) {
        const res = await cust.request.get(`${url}/api/v1/admin${p}`);
        if (res.status() !== 403) bad.push(`API /api/v1/admin${p}: ${res.status()}`);
      }
      assert(bad.length === 0, `not 403: ${bad.join('; ')}`);
    });

    await step('other customer pages render (screenshots)', async () => {
      await open(page, `${url}/console`);
      await shoot(page, 'console');
      await open(page, `${url}/me/settings`);
      assert((await page.locator('#logout-everywhere').count()) === 1, '#logout-everywhere missing');
      const sessions = await page.locator('section.card').nth(1).innerText();
      assert(/1 active portal session/.test(sessions), `settings sessions: ${sessions.slice(0, 200)}`);
      await shoot(page, 'settings');
      await open(page, `${url}/me/usage?days=30`);
      await shoot(page, 'usage-30-days');
      await open(page, `${url}/device`);
      await shoot(page, 'device');
    });

    const nojs = await newContext(browser, 'customer-nojs', { js: false, url });
    const np = await nojs.newPage();
    await step('JS disabled: the create-key form shows the secret and the key works', async () => {
      await signIn(np, url, CUSTOMER.email, CUSTOMER.password, { js: false });
      await open(np, `${url}/me/keys`, { js: false });
      await np.locator('details.create summary').click();
      await np.locator('#key-name').fill('no-js key');
      const [resp] = await Promise.all([
        np.waitForResponse((r) => r.url() === `${url}/me/keys/new` && r.request().method() === 'POST'),
        np.locator('#create-key-submit').click(),
      ]);
      await np.waitForLoadState('load');
      assert(resp.status() === 200, `POST /me/keys/new: ${resp.status()}`);
      assert(/no-store/.test(resp.headers()['cache-control'] || ''), `Cache-Control of the secret page: ${resp.headers()['cache-control']}`);
      const secret = (await np.locator('#new-key-secret').innerText()).trim();
      assert(/^sk-tg-\S{20,}$/.test(secret), `no-JS secret page shows ${JSON.stringify(secret)}`);
      assert((await np.locator('#new-key-env').innerText()).includes(`OPENAI_API_KEY=${secret}`), 'no-JS env lines');
      await shoot(np, 'keys-nojs-secret');
      state.noJsSecret = secret;
      const r = await chat(url, secret, 'mock/fast-1');
      assert(r.status === 200, `no-JS key on /v1: ${r.status} ${r.text.slice(0, 200)}`);
      await open(np, `${url}/me/keys`, { js: false });
      assert(!(await np.content()).includes(secret), 'the no-JS secret is in /me/keys afterwards');
      assert((await np.locator('#keys-table').innerText()).includes('no-js key'), 'the no-JS key is listed');
      await shoot(np, 'keys-nojs');
    });

    await step('JS disabled: errors come back to the form as messages (key, top-up)', async () => {
      await open(np, `${url}/me/keys`, { js: false });
      await np.locator('details.create summary').click();
      await np.locator('#key-name').fill('bad limit');
      await np.locator('#key-limit').fill('lots');
      await Promise.all([np.waitForURL(/\/me\/keys\?error=/), np.locator('#create-key-submit').click()]);
      assert((await np.locator('.alert').first().innerText()).trim().length > 5, 'no error message after a failed no-JS create');
      await open(np, `${url}/me/billing`, { js: false });
      await np.locator('#topup-form input[name="amount_usd"]').fill('20000');
      await Promise.all([np.waitForURL(/\/me\/billing\?error=/), np.locator('#topup-form button[type="submit"]').click()]);
      const msg = await np.locator('.alert').first().innerText();
      assert(msg.trim().length > 5, 'no error message after a too-large top-up');
      await shoot(np, 'billing-nojs-error');
    });

    await step('JS disabled: sign-in returns to the page that asked for it (next)', async () => {
      const ctx = await newContext(browser, 'nojs-signin', { js: false, url });
      const p = await ctx.newPage();
      try {
        currentPage = p;
        await p.goto(`${url}/me/billing`);
        assert(new URL(p.url()).pathname === '/login', `signed-out /me/billing went to ${p.url()}`);
        assert(new URL(p.url()).searchParams.get('next') === '/me/billing', `login URL ${p.url()}`);
        const hidden = await p.locator('input[name="next"]').getAttribute('value');
        await p.locator('#email').fill(CUSTOMER.email);
        await p.locator('#password').fill(CUSTOMER.password);
        await Promise.all([p.waitForNavigation(), p.getByRole('button', { name: 'Sign in' }).click()]);
        assert(new URL(p.url()).pathname === '/me/billing',
          `signed in without JS from /login?next=/me/billing, landed on ${p.url()} (hidden input next has value ${JSON.stringify(hidden)})`);
      } finally {
        await ctx.close();
      }
    });

    await step('JS disabled: filter forms show the filters of the URL', async () => {
      const bad = [];
      for (const [p, sel, want] of [
        ['/me/request-logs?model=mock%2Ffast-1&from=2026-01-01', 'input[name="model"]', 'mock/fast-1'],
        ['/me/request-logs?model=mock%2Ffast-1&from=2026-01-01', 'input[name="from"]', '2026-01-01'],
        [`/me/billing/statement?month=2026-01`, '#month', '2026-01'],
      ]) {
        await open(np, `${url}${p}`, { js: false });
        const v = await np.locator(sel).inputValue();
        if (v !== want) bad.push(`${p}: ${sel} is ${JSON.stringify(v)}, expected ${JSON.stringify(want)}`);
      }
      assert(bad.length === 0, bad.join('; '));
    });

    // ----- 4. top-up -----------------------------------------------------------------------
    for (const [label, p, js, amount] of [['JS enabled', page, true, '12.34'], ['JS disabled', np, false, '7.00']]) {
      await step(`top-up form (${label}) redirects to the Stripe checkout URL`, async () => {
        const before = stripe.sessions.length;
        await open(p, `${url}/me/billing`, { js });
        await p.locator('#topup-form input[name="amount_usd"]').fill(amount);
        await Promise.all([
          p.waitForURL((u) => u.href.startsWith(stripe.checkoutPrefix), { timeout: 10_000 }),
          p.locator('#topup-form button[type="submit"]').click(),
        ]).catch(async (e) => {
          const alert = await p.locator('.alert').first().innerText().catch(() => '');
          throw new Error(`no navigation to checkout (now at ${p.url()}${alert ? `, alert: ${alert}` : ''}): ${e.message.split('\n')[0]}`);
        });
        await p.locator('#fake-checkout').waitFor();
        allowedForeign.add(p.url());
        assert(stripe.sessions.length === before + 1, `fake Stripe got ${stripe.sessions.length - before} session requests`);
        const s = stripe.sessions[stripe.sessions.length - 1];
        assert(p.url() === s.session.url, `browser at ${p.url()}, session url ${s.session.url}`);
        const cents = Math.round(Number(amount) * 100);
        assert(Number(s.form['line_items[0][price_data][unit_amount]']) === cents, `unit_amount ${s.form['line_items[0][price_data][unit_amount]']}, expected ${cents}`);
        assert((s.form.success_url || '').startsWith(`${url}/me/billing`), `success_url ${s.form.success_url}`);
        assert((s.form.cancel_url || '').startsWith(`${url}/me/billing`), `cancel_url ${s.form.cancel_url}`);
        state.lastSession = s.session;
      });
    }

    await step('checkout landing states; a paid top-up credits and has a receipt', async () => {
      const s = stripe.sessions[0]?.session;
      assert(s, 'no checkout session to complete');
      // Stripe tells tokengate the payment succeeded.
      const event = {
        id: `evt_portal_${Date.now()}`, object: 'event', api_version: '2025-09-30.clover',
        created: Math.floor(Date.now() / 1000), livemode: false, pending_webhooks: 1,
        request: { id: null, idempotency_key: null }, type: 'checkout.session.completed',
        data: { object: { ...s, status: 'complete', payment_status: 'paid', payment_intent: 'pi_portal_test', url: null } },
      };
      const payload = JSON.stringify(event);
      const sig = new Stripe('sk_test_unused').webhooks.generateTestHeaderString({ payload, secret: STRIPE_WHSEC });
      const wh = await fetch(`${url}/webhooks/payments/stripe`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': sig }, body: payload,
      });
      assert(wh.status === 200, `webhook: ${wh.status} ${await wh.text()}`);
      await open(page, `${url}/me/billing?checkout=success`);
      assert(await page.locator('#checkout-success').isVisible(), '#checkout-success missing');
      const bal = (await page.locator('#billing-balance').innerText()).trim();
      const api = await (await cust.request.get(`${url}/api/v1/balance`)).json();
      assert(bal === `$${api.balance_usd}`, `#billing-balance ${bal} vs API ${api.balance_usd}`);
      assert(Number(api.balance_usd) > 15, `balance after a $12.34 top-up: ${api.balance_usd}`);
      const rows = page.locator('#payments-table tbody tr');
      assert((await rows.count()) === 2, `payments table has ${await rows.count()} rows, expected 2`);
      const receipt = page.locator('#payments-table a', { hasText: 'Receipt' });
      assert((await receipt.count()) === 1, 'no receipt link for the paid top-up');
      const res = await cust.request.get(new URL(await receipt.getAttribute('href'), url).toString());
      assert(res.status() === 200 && (res.headers()['content-type'] || '').includes('pdf'), `receipt: ${res.status()} ${res.headers()['content-type']}`);
      await shoot(page, 'billing-success');
      await open(page, `${url}/me/billing?checkout=cancel`);
      assert(await page.locator('#checkout-cancel').isVisible(), '#checkout-cancel missing');
      await shoot(page, 'billing-cancel');
      await open(page, `${url}/me/billing`);
      await shoot(page, 'billing');
    });

    // ----- 2. admin journey ----------------------------------------------------------------
    const adm = await newContext(browser, 'admin', { url });
    const ap = await adm.newPage();
    await step('admin signs in', async () => {
      await signIn(ap, url, state.adminEmail, state.adminPassword);
      await open(ap, `${url}/admin`);
      await shoot(ap, 'admin');
    });

    await step('admin adds a provider pointing at the fake upstream', async () => {
      await open(ap, `${url}/admin/providers`);
      await ap.locator('#p-name').fill('fakeup');
      await ap.locator('#p-kind').selectOption('openai');
      await ap.locator('#p-base').fill(upstream.baseUrl);
      await ap.locator('#p-key').fill(UPSTREAM_KEY);
      await ap.locator('#provider-form button[type="submit"]').click();
      const row = ap.locator('#providers-table tbody tr').filter({ hasText: 'fakeup' });
      await row.waitFor({ timeout: 5_000 }).catch(async () => {
        const msg = await ap.locator('.alert').first().innerText().catch(() => '');
        throw new Error(`fakeup not listed after saving${msg ? `: ${msg}` : ''}`);
      });
      const text = await row.innerText();
      assert(text.includes(upstream.baseUrl), `row lacks the base URL: ${text}`);
      assert(/\bset\b/.test(text) && !text.includes(UPSTREAM_KEY), `row should show the key as "set", never the key: ${text}`);
      assert(!(await ap.content()).includes(UPSTREAM_KEY), 'the provider key is in the page');
      const p = await adminApi(url, 'GET', '/providers/fakeup');
      assert(p.kind === 'openai' && p.base_url === upstream.baseUrl && p.api_key === 'set' && p.enabled === true, `API: ${JSON.stringify(p)}`);
    });

    await step('admin adds a model with prices', async () => {
      await open(ap, `${url}/admin/models`);
      const values = { name: 'fakeup/echo-1', provider: 'fakeup', upstream_model: 'echo-1', input_usd_per_m: '2', output_usd_per_m: '8', max_output_tokens: '1000' };
      for (const [f, v] of Object.entries(values)) await ap.locator(`#m-${f}`).fill(v);
      await ap.locator('#model-form button[type="submit"]').click();
      const row = ap.locator('#models-table tbody tr').filter({ hasText: 'fakeup/echo-1' });
      await row.waitFor({ timeout: 5_000 }).catch(async () => {
        const msg = await ap.locator('.alert').first().innerText().catch(() => '');
        throw new Error(`fakeup/echo-1 not listed after saving${msg ? `: ${msg}` : ''}`);
      });
      const m = await adminApi(url, 'GET', '/models/fakeup/echo-1');
      assert(m.provider === 'fakeup' && m.upstream_model === 'echo-1' && Number(m.input_usd_per_m) === 2 && Number(m.output_usd_per_m) === 8 && m.max_output_tokens === 1000, `API: ${JSON.stringify(m)}`);
    });

    await step('admin adds an alias targeting it; dry run names the target', async () => {
      await open(ap, `${url}/admin/aliases`);
      await ap.locator('#a-name').fill('portal-alias');
      await ap.locator('#a-targets').fill('fakeup/echo-1 0 1');
      await ap.locator('#alias-form button[type="submit"]').click();
      const row = ap.locator('#aliases-table tbody tr').filter({ hasText: 'portal-alias' });
      await row.waitFor({ timeout: 5_000 }).catch(async () => {
        const msg = await ap.locator('.alert').first().innerText().catch(() => '');
        throw new Error(`portal-alias not listed after saving${msg ? `: ${msg}` : ''}`);
      });
      await row.getByRole('button', { name: 'Dry run' }).click();
      const result = ap.locator('#dry-run');
      await result.waitFor({ timeout: 5_000 });
      const text = await result.innerText();
      assert(text.includes('fakeup/echo-1'), `dry run result lacks the target: ${text.slice(0, 400)}`);
      assert(/served by tier 0/.test(text) && /usable/.test(text), `dry run does not say which tier serves and why: ${text.slice(0, 400)}`);
      await shoot(ap, 'admin-aliases');
    });

    await step('a customer request through the alias is served by the fake upstream', async () => {
      assert(state.noJsSecret, 'no active customer key (the no-JS key step failed)');
      const before = upstream.requests.length;
      const r = await chat(url, state.noJsSecret, 'portal-alias');
      assert(r.status === 200, `alias request: ${r.status} ${r.text.slice(0, 300)}`);
      assert(r.headers.get('x-tokengate-provider') === 'fakeup', `x-tokengate-provider: ${r.headers.get('x-tokengate-provider')}`);
      assert(r.body?.choices?.[0]?.message?.content === UPSTREAM_CONTENT, `content: ${JSON.stringify(r.body?.choices?.[0]?.message)}`);
      const got = upstream.requests.slice(before).find((x) => x.path === '/v1/chat/completions');
      assert(got, 'the fake upstream saw no chat request');
      assert(got.headers.authorization === `Bearer ${UPSTREAM_KEY}`, 'upstream got the wrong key');
      assert(got.body?.model === 'echo-1', `upstream model ${got.body?.model}`);
    });

    await step('health page shows the target; "Test connection" says ok', async () => {
      await open(ap, `${url}/admin/health`);
      const row = ap.locator('#health-table tbody tr').filter({ hasText: 'fakeup/echo-1' });
      assert((await row.count()) === 1, `#health-table has no fakeup/echo-1 row: ${await ap.locator('main').innerText()}`);
      const t = await row.innerText();
      assert(/closed/.test(t), `health row: ${t}`);
      await shoot(ap, 'admin-health');
      await open(ap, `${url}/admin/providers`);
      const prow = ap.locator('#providers-table tbody tr').filter({ hasText: 'fakeup' });
      await prow.getByRole('button', { name: 'Test connection' }).click();
      const result = ap.locator('#connection-test');
      await result.waitFor({ timeout: 10_000 });
      const out = await result.innerText();
      const cls = await result.getAttribute('class');
      assert(cls === 'notice' && out.includes('fakeup') && out.includes('Connected'), `test connection: ${cls} ${out}`);
      assert(upstream.requests.some((x) => x.path === '/v1/models'), 'the probe never reached the fake upstream');
      await shoot(ap, 'admin-providers');
    });

    await step('admin: disabling and re-enabling a provider keeps its key; alias Edit fills the form', async () => {
      await open(ap, `${url}/admin/providers`);
      const row = ap.locator('#providers-table tbody tr').filter({ hasText: 'fakeup' });
      await row.getByRole('button', { name: 'Disable' }).click();
      assert(await eventually(async () => (await adminApi(url, 'GET', '/providers/fakeup')).enabled === false, 4_000), 'Disable did not disable');
      await row.getByRole('button', { name: 'Enable' }).waitFor({ timeout: 4_000 });
      await row.getByRole('button', { name: 'Enable' }).click();
      assert(await eventually(async () => (await adminApi(url, 'GET', '/providers/fakeup')).enabled === true, 4_000), 'Enable did not enable');
      const p = await adminApi(url, 'GET', '/providers/fakeup');
      assert(p.api_key === 'set', `after Disable/Enable the provider key is ${JSON.stringify(p.api_key)}`);
      const r = await chat(url, state.noJsSecret, 'portal-alias');
      assert(r.status === 200, `alias after Disable/Enable: ${r.status} ${r.text.slice(0, 200)}`);
      await open(ap, `${url}/admin/aliases`);
      const arow = ap.locator('#aliases-table tbody tr').filter({ hasText: 'portal-alias' });
      await arow.getByRole('button', { name: 'Edit' }).click();
      assert((await ap.locator('#a-name').inputValue()) === 'portal-alias', 'Edit did not fill the alias name');
      assert((await ap.locator('#a-targets').inputValue()).trim() === 'fakeup/echo-1 0 1', `Edit filled targets ${await ap.locator('#a-targets').inputValue()}`);
    });

    await step('admin adds a key group through its form', async () => {
      await open(ap, `${url}/admin/key-groups`);
      await ap.locator('#g-name').fill('ops');
      await ap.locator('#g-providers').fill('fakeup');
      await ap.locator('#g-models').fill('fakeup/*, portal-alias');
      await ap.getByRole('button', { name: 'Save group' }).click();
      await ap.locator('table tbody tr').filter({ hasText: 'ops' }).waitFor({ timeout: 5_000 }).catch(async () => {
        throw new Error(`ops not listed: ${await ap.locator('.alert').first().innerText().catch(() => '(no message)')}`);
      });
      const g = await adminApi(url, 'GET', '/key-groups/ops');
      assert(JSON.stringify(g.allowed_providers) === '["fakeup"]', `allowed_providers ${JSON.stringify(g.allowed_providers)}`);
      assert(JSON.stringify(g.allowed_models) === '["fakeup/*","portal-alias"]', `allowed_models ${JSON.stringify(g.allowed_models)}`);
    });

    await step('admin users page: search and credit with a reason', async () => {
      await open(ap, `${url}/admin/users?q=dana`);
      const row = ap.locator('#users-table tbody tr').filter({ hasText: CUSTOMER.email });
      assert((await row.count()) === 1, 'search for dana does not list the customer');
      assert((await ap.locator('#users-table tbody tr').count()) === 1, 'search for dana lists other users');
      const before = (await adminApi(url, 'GET', `/users?q=${encodeURIComponent(CUSTOMER.email)}`))[0].balance_nano;
      await row.getByRole('button', { name: 'Credit / debit' }).click();
      await ap.locator('#credit-form').waitFor({ timeout: 5_000 });
      await ap.locator('#c-amount').fill('1.50');
      await ap.locator('#c-kind').selectOption('refund');
      await ap.locator('#c-reason').fill('portal test refund');
      await shoot(ap, 'admin-users-credit');
      await ap.locator('#credit-form button[type="submit"]').click();
      const after = await eventually(async () => {
        const u = (await adminApi(url, 'GET', `/users?q=${encodeURIComponent(CUSTOMER.email)}`))[0];
        return u.balance_nano === before + 1_500_000_000 ? u : null;
      }, 5_000);
      assert(after, 'the credit form did not add $1.50');
      const ledger = await adminApi(url, 'GET', `/users/${state.customerId}/ledger?limit=5`);
      const entries = Array.isArray(ledger) ? ledger : ledger.data || ledger.entries || [];
      assert(JSON.stringify(entries).includes('portal test refund'), 'ledger lacks the reason');
      const shown = await eventually(async () => (await row.innerText()).includes(after.balance_usd), 4_000);
      assert(shown, `users table does not show the new balance ${after.balance_usd}: ${await row.innerText()}`);
      // Suspend: the customer's keys fail at once; reactivate: they work again.
      await row.getByRole('button', { name: 'Suspend' }).click();
      assert(await eventually(async () => (await row.innerText()).includes('suspended'), 4_000), `row after Suspend: ${await row.innerText()}`);
      let r = await chat(url, state.noJsSecret, 'mock/fast-1');
      assert(r.status === 401, `suspended customer's key: ${r.status}`);
      await row.getByRole('button', { name: 'Reactivate' }).click();
      assert(await eventually(async () => /\bactive\b/.test(await row.innerText()), 4_000), `row after Reactivate: ${await row.innerText()}`);
      r = await chat(url, state.noJsSecret, 'mock/fast-1');
      assert(r.status === 200, `reactivated customer's key: ${r.status}`);
    });

    await step('remaining admin pages render (screenshots)', async () => {
      // One failed request, for the failed-requests page.
      const bad = await chat(url, state.noJsSecret, 'mock/fast-1', 'fail please [mock:status:503]');
      assert(bad.status >= 500, `[mock:status:503] answered ${bad.status}`);
      await open(ap, `${url}/admin/models`);
      await shoot(ap, 'admin-models');
      await open(ap, `${url}/admin/key-groups`);
      await shoot(ap, 'admin-key-groups');
      await open(ap, `${url}/admin/users`);
      await shoot(ap, 'admin-users');
      const failed = await eventually(async () => {
        await open(ap, `${url}/admin/failed-requests`);
        return (await ap.locator('#failed-table').count()) === 1;
      }, 4_000, 500);
      assert(failed, 'the failed request is not on /admin/failed-requests');
      await shoot(ap, 'admin-failed-requests');
      // Admin's own portal pages with the admin nav entry.
      await open(ap, `${url}/console`);
      assert((await ap.locator('header nav a[href="/admin"]').count()) === 1, 'admin has no Admin link in the top bar');
      assert((await page.locator('header nav a[href="/admin"]').count()) === 0, 'customer has an Admin link');
      await shoot(ap, 'admin-console');
    });

    await step('settings: the profile name saves; sign out everywhere ends every session', async () => {
      await open(page, `${url}/me/settings`);
      await page.locator('#display-name').fill('Dana C.');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Saved.').waitFor({ timeout: 4_000 });
      const me = await (await cust.request.get(`${url}/api/v1/me`)).json();
      assert(me.display_name === 'Dana C.', `display_name ${me.display_name}`);
      await Promise.all([page.waitForURL(/\/login/), page.locator('#logout-everywhere').click()]);
      const other = await rawHtml(nojs, url, '/me/keys');
      assert([302, 303, 307].includes(other.status) && (other.headers.location || '').startsWith('/login'),
        `the other (no-JS) session still opens /me/keys: ${other.status} ${other.headers.location || ''}`);
      const api = await cust.request.get(`${url}/api/v1/me`);
      assert(api.status() === 401, `the signed-out session still reads /api/v1/me: ${api.status()}`);
    });

    // ----- 5/6 global checks ---------------------------------------------------------------
    await step('phone width: no page scrolls sideways', async () => {
      assert(phoneOverflow.length === 0, `\n  ${phoneOverflow.join('\n  ')}`);
    });
    await step('every input has a label; pages have their own titles', async () => {
      assert(unlabeled.length === 0, `inputs without a label:\n  ${[...new Set(unlabeled)].join('\n  ')}`);
      const generic = [...titles.entries()].filter(([t]) => !t || t === 'tokengate');
      assert(generic.length === 0, `pages titled only ${JSON.stringify(generic.map(([t]) => t))}: ${generic.flatMap(([, n]) => n).join(', ')}`);
    });
    await step('no request leaves the server origin', async () => {
      const foreign = requests.filter(
        ({ url: u }) => !u.startsWith(`${url}/`) && !u.startsWith('data:') && !u.startsWith('blob:') && !allowedForeign.has(u),
      );
      const uniq = [...new Set(foreign.map((r) => `${r.ctx}: ${r.url}`))];
      assert(uniq.length === 0, `requests to other origins:\n  ${uniq.slice(0, 20).join('\n  ')}`);
      log(`${requests.length} browser requests, all to ${url} (plus ${allowedForeign.size} checkout pages of the fake Stripe)`);
    });
    await step('no page errors or console errors', async () => {
      const uniq = [...new Set(pageErrors)];
      assert(uniq.length === 0, `\n  ${uniq.slice(0, 15).join('\n  ')}`);
    });

    await Promise.all([cust.close(), nojs.close(), adm.close()]);
  } catch (e) {
    failures.push('setup');
    console.error('[portal] FAIL:', e && e.stack ? e.stack : e);
    if (server) {
      try {
        console.error(fs.readFileSync(server.stderrPath, 'utf8').slice(-3000));
      } catch {}
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    await stopServer(server);
    upstream?.close();
    stripe?.close();
    if (server) {
      if (failures.length) {
        const logFile = path.join(ARTIFACTS, 'portal-server.log');
        fs.copyFileSync(server.stderrPath, logFile);
        console.error(`[portal] server log: ${path.relative(process.cwd(), logFile)}`);
      }
      fs.rmSync(server.dataDir, { recursive: true, force: true });
    }
  }
  log(`screenshots in ${path.relative(process.cwd(), SHOTS)}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (failures.length) {
    console.error(`[portal] ${failures.length} check(s) failed:\n  - ${failures.join('\n  - ')}`);
    return 1;
  }
  log('PASS');
  return 0;
}

process.exitCode = await main();
