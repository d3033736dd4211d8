// Sign-in in a real browser (headless Debian Chromium via playwright-core):
//   1. OpenID Connect: /login → "Sign in with Test IdP" → npm's oidc-provider login and
//      consent forms → back on /console as the provider's user;
//   2. device flow: a CLI-style client asks for a code, the signed-in browser opens the
//      verification_uri_complete, sees the client, approves; the client's poll then gets
//      tokens that work on /api/v1/me;
//   3. with JavaScript disabled, the password form signs the demo admin in.
// Screenshots go to end2end/artifacts/. Exits non-zero on failure.

import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import {
  ARTIFACTS, E2E_DIR, assert, freePort, launchChromium, sleep, startServer, stopServer,
} from './lib/harness.mjs';

const log = (...a) => console.log('[signin]', ...a);

function startProvider(port, redirectUri) {
  return new Promise((resolve, reject) => {
    const proc = spawn('node', ['oidc/provider.mjs', String(port), redirectUri], {
      cwd: E2E_DIR,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const rl = readline.createInterface({ input: proc.stdout });
    const timer = setTimeout(() => reject(new Error('oidc-provider did not start')), 30_000);
    rl.on('line', (line) => {
      if (line.startsWith('READY')) {
        clearTimeout(timer);
        resolve(proc);
      }
    });
    proc.on('exit', (code) => reject(new Error(`oidc-provider exited with ${code}`)));
  });
}

const form = (params) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(params).toString(),
});

async function oidcLogin(page, url) {
  await page.goto(`${url}/login`);
  await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
  await page.locator('input[name="login"]').fill('dora');
  await page.locator('input[name="password"]').fill('any-password');
  await page.screenshot({ path: path.join(ARTIFACTS, 'signin-provider-login.png') });
  await page.locator('button[type="submit"]').first().click();
  // Consent, then back to tokengate.
  await page.locator('button[type="submit"]').first().click();
  await page.waitForURL(`${url}/console`, { timeout: 20_000 });
  const email = await page.locator('#console-email').innerText();
  assert(email === 'dora@example.com', `console shows ${email}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'signin-console.png'), fullPage: true });
  log('OIDC sign-in reached /console as dora@example.com');
}

async function deviceApproval(page, url) {
  const disc = await (await fetch(`${url}/api/v1/auth/discovery`)).json();
  const code = await (
    await fetch(disc.device_authorization_endpoint, form({ client_id: disc.client_id, scope: 'account keys', resource: disc.resource }))
  ).json();
  assert(/^[A-Z]{4}-[A-Z]{4}$/.test(code.user_code), `user code ${code.user_code}`);
  await page.goto(code.verification_uri_complete);
  const who = await page.locator('#device-client').innerText();
  assert(who.includes('tokengate-cli') && who.includes(code.user_code), `device page says: ${who}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'signin-device.png'), fullPage: true });
  await page.getByRole('button', { name: 'Approve' }).click();
  const result = await page.locator('#device-result').innerText();
  assert(result.includes('approved'), `result: ${result}`);
  await sleep(code.interval * 1000);
  const tok = await (
    await fetch(disc.token_endpoint, form({
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: code.device_code,
      client_id: disc.client_id, resource: disc.resource,
    }))
  ).json();
  assert(tok.access_token && tok.refresh_token, `token response ${JSON.stringify(tok)}`);
  const me = await (await fetch(`${url}/api/v1/me`, { headers: { authorization: `Bearer ${tok.access_token}` } })).json();
  assert(me.email === 'dora@example.com', `me: ${JSON.stringify(me)}`);
  log('device approved in the browser; the client got working tokens');
}

async function noJsPasswordLogin(browser, server) {
  const out = server.stdout();
  const email = out.match(/Admin email:\s+(\S+)/)[1];
  const password = out.match(/Admin password:\s+(\S+)/)[1];
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${server.url}/login`);
  await page.locator('#email').fill(email);
  await page.locator('#password').fill('wrong-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = await page.locator('.alert').innerText();
  assert(alert.includes('do not match'), `alert: ${alert}`);
  await page.locator('#email').fill(email);
  await page.locator('#password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${server.url}/console`);
  assert((await page.locator('#console-email').innerText()) === email, 'console email (no JS)');
  await page.screenshot({ path: path.join(ARTIFACTS, 'signin-nojs-console.png'), fullPage: true });
  await context.close();
  log('password sign-in works with JavaScript disabled');
}

async function main() {
  let server;
  let provider;
  let browser;
  try {
    const providerPort = await freePort();
    const configText = `
[[oidc]]
id = "test"
name = "Test IdP"
issuer = "http://127.0.0.1:${providerPort}"
client_id = "tokengate-test"
client_secret = "tokengate-test-secret"
`;
    server = await startServer({ configText });
    provider = await startProvider(providerPort, `${server.url}/auth/oidc/test/callback`);
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await oidcLogin(page, server.url);
    await deviceApproval(page, server.url);
    await context.close();
    await noJsPasswordLogin(browser, server);
    log('PASS');
    return 0;
  } catch (e) {
    console.error('[signin] FAIL:', e && e.stack ? e.stack : e);
    return 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (provider) provider.kill('SIGTERM');
    await stopServer(server);
  }
}

process.exitCode = await main();
