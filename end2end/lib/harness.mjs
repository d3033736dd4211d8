// Shared harness of the browser checks: start and stop a tokengate-server (demo mode,
// temp data dir, random port, optional config file), launch Debian's Chromium through
// playwright-core with the flags this sandbox needs, small assertion helpers.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(HERE, '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..');
export const ARTIFACTS = path.join(E2E_DIR, 'artifacts');
export const BIN =
  process.env.TOKENGATE_BIN ||
  path.join(
    process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'tokengate-target'),
    'debug',
    'tokengate-server',
  );
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url, isExited, stderrPath) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (isExited()) {
      throw new Error(`process exited early:\n${fs.readFileSync(stderrPath, 'utf8').slice(-4000)}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`not healthy:\n${fs.readFileSync(stderrPath, 'utf8').slice(-4000)}`);
}

/** Starts tokengate-server; `configText` is written to a TOML file passed with --config. */
export async function startServer({ configText, env = {}, port } = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`tokengate-server binary not found at ${BIN}`);
  port = port || (await freePort());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokengate-e2e-'));
  const stdoutPath = path.join(dataDir, 'stdout.log');
  const stderrPath = path.join(dataDir, 'stderr.log');
  const args = [];
  if (configText) {
    const cfg = path.join(dataDir, 'tokengate.toml');
    fs.writeFileSync(cfg, configText);
    args.push('--config', cfg);
  }
  const out = fs.openSync(stdoutPath, 'w');
  const err = fs.openSync(stderrPath, 'w');
  const fullEnv = {
    ...process.env,
    TOKENGATE_LISTEN: `127.0.0.1:${port}`,
    TOKENGATE_DATA_DIR: dataDir,
    TOKENGATE_DEMO: '1',
    TOKENGATE_LOG: 'info',
    ...env,
  };
  delete fullEnv.TOKENGATE_DATABASE_URL;
  const proc = spawn(BIN, args, { cwd: REPO_ROOT, env: fullEnv, stdio: ['ignore', out, err] });
  fs.closeSync(out);
  fs.closeSync(err);
  let exited = null;
  proc.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(url, () => exited, stderrPath);
  } catch (e) {
    proc.kill('SIGTERM');
    throw e;
  }
  const stdout = () => fs.readFileSync(stdoutPath, 'utf8');
  return { proc, url, port, dataDir, stderrPath, stdout, isExited: () => exited };
}

export async function stopServer(server) {
  if (!server || server.isExited()) return;
  server.proc.kill('SIGTERM');
  const deadline = Date.now() + 15_000;
  while (!server.isExited() && Date.now() < deadline) await sleep(50);
  if (!server.isExited()) server.proc.kill('SIGKILL');
}

/** Headless Debian Chromium with the flags this machine's closed network needs. */
export async function launchChromium() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
