// Shared by the browser scripts: Debian's chromium through playwright-core (never a downloaded browser),
// a fresh profile, named steps with a screenshot on failure, and two guards that fail the run:
// no request may leave localhost, and the page may log no errors (CSP violations included).
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = process.env.CHROME ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export async function launch({ url, outdir, viewport = { width: 1024, height: 600 } }) {
  mkdirSync(outdir, { recursive: true });
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'mw-e2e-')), {
    executablePath: CHROMIUM, headless: true, viewport, args: FLAGS, acceptDownloads: true,
  });
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.setDefaultTimeout(15000);
  const origin = new URL(url);
  const offsite = [];
  const consoleErrors = [];
  let requests = 0;
  ctx.on('request', (r) => {
    requests++;
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || u.port !== origin.port) offsite.push(r.url());
  });
  page.on('console', (m) => {
    // A refused request (401 before logging in, 409 on a finished job, 422 for a file or mapping the page's
    // upload shows as refused) is logged by Chrome itself; it is expected.
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (401|404|409|422)/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  return {
    ctx, page,
    guards() {
      if (requests === 0) throw new Error('no request was seen: the request guard is not working');
      if (offsite.length) throw new Error(`requests left localhost: ${offsite.join(', ')}`);
      if (consoleErrors.length) throw new Error(`the page logged errors:\n  ${consoleErrors.join('\n  ')}`);
      return requests;
    },
  };
}

export function steps(page, outdir) {
  let n = 0;
  const t0 = Date.now();
  return {
    async step(name, fn) {
      const t = Date.now();
      n++;
      try {
        await fn();
        console.log(`ok   ${String(n).padStart(2)} ${name} (${Date.now() - t} ms)`);
      } catch (e) {
        console.log(`FAIL ${String(n).padStart(2)} ${name}: ${e.stack ?? e.message}`);
        try { await page.screenshot({ path: join(outdir, `FAILED-${n}.png`), fullPage: true }); } catch { /* the browser may be gone */ }
        throw e;
      }
    },
    async shot(name, full = true) {
      await page.screenshot({ path: join(outdir, `${name}.png`), fullPage: full });
    },
    total: () => Date.now() - t0,
  };
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export async function main(fn) {
  const guard = setTimeout(() => { console.log('FAIL the browser run took longer than 170 s'); process.exit(3); }, 170000);
  try {
    await fn();
    clearTimeout(guard);
    process.exit(0);
  } catch (e) {
    console.log(`browser test failed: ${e.message}`);
    process.exit(1);
  }
}
