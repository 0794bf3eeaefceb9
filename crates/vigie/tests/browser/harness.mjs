// Shared helpers of the browser tests: Debian's Chromium driven by
// playwright-core, the `vigie demo` binary as a child process, the API with
// the demo's bearer token, and map polling through `window.vigie`.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The console's Content-Security-Policy (the static smoke test serves it too). */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
  "worker-src 'self' blob:; connect-src 'self'";

/** Where the vendored browser libraries live in the repository. */
export const VENDOR_DIR = path.resolve(here, '../../../server/assets/vendor');

/** Debian's Chromium (apt-get install chromium; scripts/test does it). */
export const CHROMIUM = process.env.VIGIE_CHROMIUM || '/usr/bin/chromium';

/**
 * Flags for WebGL in headless Chromium without a GPU: ANGLE on SwiftShader
 * (software Vulkan, shipped in Debian's package). Since Chromium 137
 * SwiftShader is no fallback any more unless asked for with
 * --enable-unsafe-swiftshader (playwright-core passes it too, and uses the
 * new headless mode: `--headless`).
 */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader',
  '--ignore-gpu-blocklist',
  '--disable-dev-shm-usage',
];

/** Where screenshots go, created on first use. */
export function artifactsDir() {
  const dir = path.resolve(here, process.env.VIGIE_ARTIFACTS || '../../../../target/browser-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A file-name-safe form of a test's name. */
export function slug(name) {
  return name
    .normalize('NFKD')
    .replace(/[^\w.-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .toLowerCase();
}

/** Screenshot of the page, named after the test; returns its path. */
export async function screenshot(page, name) {
  const file = path.join(artifactsDir(), `${slug(name)}.png`);
  try {
    await page.screenshot({ path: file, fullPage: false });
    console.log(`screenshot: ${file}`);
  } catch (e) {
    console.log(`screenshot ${file} failed: ${e.message}`);
  }
  return file;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A fresh browser context and page that log the page's errors, console
 * errors and CSP violations to the test output (and keep them in `errors`).
 */
export async function newPage(browser, { lang = 'fr-FR' } = {}) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: lang,
    deviceScaleFactor: 1,
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => {
    errors.push(`pageerror: ${e.message}`);
    console.log(`[page error] ${e.message}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && new URL(r.url()).pathname !== '/favicon.ico') {
      errors.push(`HTTP ${r.status()} ${r.url()}`);
      console.log(`[HTTP ${r.status()}] ${r.request().method()} ${r.url()}`);
    }
  });
  page.on('console', (m) => {
    // A failed resource is reported above, with its URL (favicon.ico aside).
    if (m.text().startsWith('Failed to load resource')) return;
    if (m.type() === 'error' || m.type() === 'warning') {
      errors.push(`console.${m.type()}: ${m.text()}`);
      console.log(`[console.${m.type()}] ${m.text()}`);
    }
  });
  // CSP violations are reported to the page as events: keep them.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`);
    });
  });
  return { context, page, errors };
}

export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations || []);
}

/** Polls `fn` (async allowed) until it returns a truthy value; returns it. */
export async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** A strong random password (20 characters, letters, digits and symbols). */
export function strongPassword() {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!%';
  const bytes = randomBytes(20);
  let out = '';
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

// A test process stopped by a signal still runs its 'exit' handlers (which
// stop Vigie).
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  if (process.listenerCount(signal) === 0) process.once(signal, () => process.exit(code));
}

/**
 * Starts `$VIGIE_BIN demo` on free ports with a fresh data directory and
 * waits (60 s at most) for its banner: base URL, admin password, token.
 * `stop()` ends it (SIGTERM, SIGKILL after 5 s) and removes the directory.
 */
export async function startVigie({ streetlights = 3000, timeout = 60000 } = {}) {
  const bin = process.env.VIGIE_BIN;
  if (!bin) throw new Error('VIGIE_BIN is not set: run through `cargo test -p vigie --test console`');
  const data = mkdtempSync(path.join(tmpdir(), 'vigie-browser-'));
  const args = [
    'demo',
    '--data', data,
    '--http', '127.0.0.1:0',
    '--mqtt', '127.0.0.1:0',
    '--streetlights', String(streetlights),
  ];
  const child = spawn(bin, args, {
    env: { ...process.env, VIGIE_LOG: process.env.VIGIE_LOG || 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exited = null;
  // Last resort if the test process ends without the `after` hook (a crash):
  // never leave a Vigie behind.
  const onExit = () => {
    if (exited === null) child.kill('SIGKILL');
    rmSync(data, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => process.stderr.write(`[vigie] ${d}`));

  const vigie = {
    child,
    data,
    base: null,
    password: null,
    token: null,
    async stop() {
      if (exited === null && child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          if (exited === null) child.kill('SIGKILL');
        }, 5000);
        await exitedPromise;
        clearTimeout(timer);
      }
      rmSync(data, { recursive: true, force: true });
      process.off('exit', onExit);
    },
  };

  const banner = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`vigie demo printed no banner within ${timeout} ms; stdout so far:\n${out}`)),
      timeout,
    );
    const parse = () => {
      const login = out.match(/Log in\s+(https?:\/\/[^\s/]+)\/auth\/login\s+user admin, password (\S+) \(shown this once\)/);
      const token = out.match(/export VIGIE_TOKEN=(\S+)/);
      if (login && token) {
        clearTimeout(timer);
        resolve({ base: login[1], password: login[2], token: token[1] });
      }
    };
    child.stdout.on('data', (d) => {
      out += d;
      parse();
    });
    exitedPromise.then((e) => {
      clearTimeout(timer);
      reject(new Error(`vigie demo exited (${JSON.stringify(e)}) before its banner; stdout:\n${out}`));
    });
  });
  try {
    Object.assign(vigie, await banner);
  } catch (e) {
    await vigie.stop();
    throw e;
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout.on('data', () => {});
  return vigie;
}

/** fetch() against Vigie with the demo's bearer token (or `token`). */
export async function api(vigie, urlPath, { method = 'GET', body, token = vigie.token, headers = {} } = {}) {
  const init = {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', ...headers },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(vigie.base + urlPath, init);
}

/** GET returning JSON, failing with the body on a non-2xx answer. */
export async function apiJson(vigie, urlPath, opts) {
  const res = await api(vigie, urlPath, opts);
  const text = await res.text();
  if (!res.ok) throw new Error(`${opts?.method || 'GET'} ${urlPath}: ${res.status} ${text}`);
  return { res, json: text ? JSON.parse(text) : null };
}

/** One streetlight with its location: `{id, lon, lat}`. */
export async function someStreetlight(vigie, offset = 0) {
  const { json } = await apiJson(
    vigie,
    `/ngsi-ld/v1/entities?type=Streetlight&limit=1&offset=${offset}&options=keyValues&attrs=location`,
  );
  if (!Array.isArray(json) || json.length !== 1) throw new Error(`no streetlight in ${JSON.stringify(json)}`);
  const [lon, lat] = json[0].location.coordinates;
  return { id: json[0].id, lon, lat };
}

/**
 * Logs in through the real form: /console without a session must redirect
 * to the login page; after the form the browser must be on /console.
 */
export async function login(page, vigie, username, password) {
  await page.goto(`${vigie.base}/console`);
  await page.waitForURL((u) => u.pathname === '/auth/login', { timeout: 10000 });
  await page.fill('input[name="username"]', username);
  await page.fill('input[name="password"]', password);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/console', { timeout: 20000 }),
    page.click('form button[type="submit"], form input[type="submit"]'),
  ]);
}

/** Waits for the console's first data on the map (body[data-map-ready="1"]). */
export async function waitMapReady(page, timeout = 20000) {
  await page.waitForSelector('body[data-map-ready="1"]', { state: 'attached', timeout });
  await waitMapSettled(page);
}

/**
 * Waits until the map neither moves nor loads anything, twice in a row a
 * frame apart (no race with an `idle` event fired before we listen).
 */
export async function waitMapSettled(page, timeout = 20000) {
  await waitFor(
    () =>
      page.evaluate(
        () =>
          new Promise((resolve) => {
            const m = window.vigie && window.vigie.map;
            const calm = () => Boolean(m && !m.isMoving() && m.loaded() && m.areTilesLoaded());
            if (!calm()) return resolve(false);
            requestAnimationFrame(() => requestAnimationFrame(() => resolve(calm())));
          }),
      ),
    { timeout, interval: 100, what: 'the map to settle (not moving, loaded)' },
  );
}

/** `window.vigie.assetTotal()` once the map has settled. */
export async function assetTotal(page) {
  await waitMapSettled(page);
  return page.evaluate(() => window.vigie.assetTotal());
}
