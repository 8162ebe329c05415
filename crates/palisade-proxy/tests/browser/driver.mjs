// Headless Chromium for palisade-proxy's black-box browser tests (tests/support/browser.rs).
//
// Launches the browser named by PALISADE_CHROMIUM (default /usr/bin/chromium) through
// playwright-core with one page, then reads JSON commands from stdin, one per line, and
// writes exactly one JSON reply line per command to stdout: {"ok":true,...} or
// {"ok":false,"error":"..."}. A bad command gets an error reply; it never ends the driver.
// Exits 0 on {"cmd":"quit"} or when stdin closes. Its own diagnostics go to stderr.
//
// From the moment the page exists it records what a page should never do: console
// messages of type error, uncaught page errors, and failed requests. Not counted: a request
// aborted (net::ERR_ABORTED), which is what a navigation does to the page's open
// EventSource and fetches, and the browser's own fetch of /favicon.ico, which no page asks
// for.
//
// Commands (every timeout_ms is optional):
//   {"cmd":"goto","url":U}                      -> {"ok":true,"status":200}   (waits for load)
//   {"cmd":"reload"}                            -> {"ok":true,"status":200}
//   {"cmd":"wait","selector":S,"attr":A,"value":V,"timeout_ms":N}
//                                               -> {"ok":true,"elapsed_ms":12}
//                                                  {"ok":false,"error":"timeout","last":<A's last value or null>}
//   {"cmd":"attr","selector":S,"attr":A}        -> {"ok":true,"value":"x"}    (null if missing)
//   {"cmd":"text","selector":S}                 -> {"ok":true,"value":"innerText"}
//   {"cmd":"count","selector":S}                -> {"ok":true,"value":3}
//   {"cmd":"click","selector":S}                -> {"ok":true}
//   {"cmd":"select","selector":S,"value":V}     -> {"ok":true,"value":["V"]}
//   {"cmd":"eval","js":"1 + 1"}                 -> {"ok":true,"value":2}
//   {"cmd":"screenshot","path":P}               -> {"ok":true,"path":P}       (full page PNG)
//   {"cmd":"errors"}                            -> {"ok":true,"errors":["console.error: ..."]}
//   {"cmd":"quit"}                              -> {"ok":true}, then exit 0

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

// How often `wait` looks, in milliseconds.
const POLL_MS = 25;
// A command's own limit when it names none, in milliseconds.
const DEFAULT_TIMEOUT_MS = 10_000;
// A navigation's limit when it names none, in milliseconds.
const NAVIGATION_TIMEOUT_MS = 30_000;

const executablePath = process.env.PALISADE_CHROMIUM || '/usr/bin/chromium';

let browser;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start. The machines' networks
    // are closed: Chromium's own background connections (updates, sync, QUIC probes)
    // would only fail, many at a time, so they are off.
    args: [
      '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync',
    ],
  });
} catch (e) {
  process.stderr.write(`driver.mjs: cannot launch ${executablePath}: ${e.message}\n`);
  process.exit(1);
}
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });

/** Everything the page did wrong so far, as lines of text. */
const errors = [];
const isFavicon = (url) => /\/favicon\.ico(\?|$)/.test(url ?? '');
page.on('console', (msg) => {
  if (msg.type() !== 'error') return;
  const { url, lineNumber } = msg.location();
  if (isFavicon(url)) return;
  errors.push(`console.error: ${msg.text()}${url ? ` (${url}:${lineNumber})` : ''}`);
});
page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
page.on('requestfailed', (req) => {
  const reason = req.failure()?.errorText ?? 'unknown';
  if (reason === 'net::ERR_ABORTED' || isFavicon(req.url())) return;
  errors.push(`requestfailed: ${req.method()} ${req.url()} (${req.resourceType()}): ${reason}`);
});
page.on('crash', () => errors.push('crash: the page crashed'));
browser.on('disconnected', () => errors.push('disconnected: the browser went away'));

/** A command's field that must be a non-empty string. */
function need(cmd, field) {
  const v = cmd[field];
  if (typeof v !== 'string' || v === '') throw new Error(`"${field}" must be a non-empty string`);
  return v;
}

function timeoutOf(cmd, fallback = DEFAULT_TIMEOUT_MS) {
  const t = cmd.timeout_ms;
  if (t === undefined || t === null) return fallback;
  if (typeof t !== 'number' || !(t >= 0)) throw new Error('"timeout_ms" must be a number ≥ 0');
  return t;
}

/** Whether an element matches, and the named attribute's value (null if it has none). */
function look(selector, attr) {
  return page.evaluate(
    ([s, a]) => {
      const el = document.querySelector(s);
      if (!el) return { found: false, value: null };
      return { found: true, value: a ? el.getAttribute(a) : null };
    },
    [selector, attr ?? null],
  );
}

/** Polls until `selector` matches and, with `attr`, its value is `value` (or present). */
async function wait(cmd) {
  const selector = need(cmd, 'selector');
  const attr = cmd.attr ?? null;
  const want = cmd.value === undefined || cmd.value === null ? null : String(cmd.value);
  const limit = timeoutOf(cmd);
  const start = performance.now();
  let last = null;
  for (;;) {
    try {
      const seen = await look(selector, attr);
      last = seen.value;
      const done = seen.found && (attr === null || (want === null ? last !== null : last === want));
      if (done) return { ok: true, elapsed_ms: Math.round(performance.now() - start) };
    } catch (e) {
      // A bad selector will never match; a page being replaced is looked at again.
      if (/not a valid selector/.test(e.message)) throw e;
    }
    if (performance.now() - start >= limit) return { ok: false, error: 'timeout', last };
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function run(cmd) {
  if (cmd === null || typeof cmd !== 'object' || Array.isArray(cmd)) {
    throw new Error('a command is a JSON object');
  }
  switch (cmd.cmd) {
    case 'goto': {
      const res = await page.goto(need(cmd, 'url'), {
        waitUntil: 'load',
        timeout: timeoutOf(cmd, NAVIGATION_TIMEOUT_MS),
      });
      return { ok: true, status: res ? res.status() : null };
    }
    case 'reload': {
      const res = await page.reload({
        waitUntil: 'load',
        timeout: timeoutOf(cmd, NAVIGATION_TIMEOUT_MS),
      });
      return { ok: true, status: res ? res.status() : null };
    }
    case 'wait':
      return wait(cmd);
    case 'attr': {
      const seen = await look(need(cmd, 'selector'), need(cmd, 'attr'));
      return { ok: true, value: seen.value };
    }
    case 'text': {
      const selector = need(cmd, 'selector');
      const value = await page.evaluate((s) => document.querySelector(s)?.innerText ?? null, selector);
      if (value === null) throw new Error(`no element matches ${selector}`);
      return { ok: true, value };
    }
    case 'count': {
      const selector = need(cmd, 'selector');
      const value = await page.evaluate((s) => document.querySelectorAll(s).length, selector);
      return { ok: true, value };
    }
    case 'click':
      await page.click(need(cmd, 'selector'), { timeout: timeoutOf(cmd) });
      return { ok: true };
    case 'select': {
      if (cmd.value === undefined || cmd.value === null) throw new Error('"value" is missing');
      const value = await page.selectOption(need(cmd, 'selector'), String(cmd.value), {
        timeout: timeoutOf(cmd),
      });
      return { ok: true, value };
    }
    case 'eval': {
      const value = await page.evaluate(need(cmd, 'js'));
      return { ok: true, value: value === undefined ? null : value };
    }
    case 'screenshot': {
      const path = need(cmd, 'path');
      mkdirSync(dirname(path), { recursive: true });
      await page.screenshot({ path, fullPage: true, timeout: timeoutOf(cmd) });
      return { ok: true, path };
    }
    case 'errors':
      return { ok: true, errors: [...errors] };
    case 'quit':
      return { ok: true, quit: true };
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
  }
}

/** One reply line; a value JSON cannot hold is answered as an error. */
function reply(obj) {
  let line;
  try {
    line = JSON.stringify(obj);
  } catch (e) {
    line = JSON.stringify({ ok: false, error: `the reply is not JSON: ${e.message}` });
  }
  process.stdout.write(line + '\n');
}

async function shutdown(code) {
  try {
    await browser.close();
  } catch (e) {
    process.stderr.write(`driver.mjs: closing the browser: ${e.message}\n`);
  }
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0));
// An event handler's failure is reported, not fatal: the next command is answered.
process.on('unhandledRejection', (e) => process.stderr.write(`driver.mjs: ${e?.stack ?? e}\n`));

// The reader is made only now that the browser is up: lines sent meanwhile wait in the pipe.
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === '') continue;
  let answer;
  try {
    answer = await run(JSON.parse(line));
  } catch (e) {
    answer = { ok: false, error: String(e?.message ?? e) };
  }
  const quit = answer.quit === true;
  delete answer.quit;
  reply(answer);
  if (quit) break;
}
await shutdown(0);
