// The fleet view against a real daemon with a mixed fleet: node fleet.mjs <url> <token> <outdir>
// The daemon serves five machines: `fresh` (trained, fresh data), `stale` (trained, data 3 days old), `bare`
// (no models), and `risk` and `healthy` (trained; their data ends just before a failure / early in a life);
// their ids come as FLEET_FRESH, FLEET_STALE, FLEET_BARE, FLEET_RISK and FLEET_HEALTHY in the environment.
import { launch, steps, check, until, main } from './lib.mjs';

const [url, token, outdir] = process.argv.slice(2);
const { FLEET_FRESH: fresh, FLEET_STALE: stale, FLEET_BARE: bare, FLEET_RISK: risk, FLEET_HEALTHY: healthy } = process.env;
const SIZES = [['1024', { width: 1024, height: 600 }], ['1920', { width: 1920, height: 1080 }], ['phone', { width: 390, height: 844 }]];

/** What a size breaks, read in the page: the page wider than the screen, text drawn below 12 px (chart
 *  text measured as drawn, after the SVG's scaling), navigation links off screen, and a value squeezed to
 *  a few characters per line. */
function layoutProblems() {
  const out = [];
  const sw = document.documentElement.scrollWidth;
  if (sw > innerWidth + 1) out.push(`the page is ${sw} px wide on a ${innerWidth} px screen`);
  for (const e of document.querySelectorAll('body *')) {
    if (e.childElementCount || !e.textContent.trim()) continue;
    const cs = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    if (cs.visibility === 'hidden' || r.width <= 1 || r.height <= 1) continue;
    if (e.closest('dialog:not([open]), details:not([open]) > :not(summary), [hidden]')) continue;
    const scale = e instanceof SVGElement && e.getScreenCTM ? Math.abs(e.getScreenCTM()?.a ?? 1) : 1;
    const px = parseFloat(cs.fontSize) * scale;
    if (px < 11.9) out.push(`${px.toFixed(1)} px text: "${e.textContent.trim().slice(0, 24)}"`);
  }
  for (const a of document.querySelectorAll('.nav a')) {
    const r = a.getBoundingClientRect();
    if (r.right > innerWidth + 1 || r.width === 0) out.push(`navigation link off screen: ${a.textContent}`);
  }
  for (const v of document.querySelectorAll('dl.kv dd, .metric-card .value')) {
    const r = v.getBoundingClientRect();
    const text = v.textContent.trim();
    const lineHeight = parseFloat(getComputedStyle(v).lineHeight) || 18;
    if (text.length > 6 && r.width > 0 && r.height > 4 * lineHeight && r.width < 60) out.push(`value squeezed to ${Math.round(r.width)} px: "${text.slice(0, 24)}"`);
  }
  return out;
}

main(async () => {
  const { ctx, page, guards } = await launch({ url, outdir });
  const { step, shot } = steps(page, outdir);
  const tileOf = (id) => `.tile[data-machine="${id}"]`;

  await step('the page opens on the fleet: one tile per machine, a verdict, stale data and no models apart', async () => {
    await page.goto(url);
    await page.waitForSelector(`${tileOf(fresh)}`);
    check(await page.getAttribute('a[data-view=fleet]', 'aria-current') === 'page', 'the fleet is not the home view');
    check((await page.$$('.tile')).length === 5, `tiles: ${(await page.$$('.tile')).length}`);
    // A mixed fleet: the machine 12 h before a failure is flagged (how strongly depends on how good its models
    // are: trained on 3,000 rows they say "watch") and ranks above it; the one early in a life is green.
    const riskLight = await page.getAttribute(tileOf(risk), 'data-light');
    check(['red', 'orange', 'yellow'].includes(riskLight), `the machine at risk is ${riskLight}: ${await page.textContent(tileOf(risk))}`);
    const healthyLight = await page.getAttribute(tileOf(healthy), 'data-light');
    check(healthyLight === 'green', `the healthy machine is ${healthyLight}: ${await page.textContent(tileOf(healthy))}`);
    console.log(`     at risk: ${riskLight}, healthy: ${healthyLight}`);
    const freshText = await page.textContent(tileOf(fresh));
    check(/act now|plan maintenance|watch|ok/.test(freshText), `no verdict on the trained machine: ${freshText}`);
    check(await page.getAttribute(tileOf(fresh), 'data-state') === 'fresh', 'the trained machine is not fresh');
    check(await page.getAttribute(tileOf(stale), 'data-light') === 'grey', 'stale data is not grey');
    check((await page.textContent(tileOf(stale))).includes('No new data for 3 days'), await page.textContent(tileOf(stale)));
    check((await page.textContent(tileOf(bare))).includes('no models yet'), await page.textContent(tileOf(bare)));
    // Worst first: the grey stale tile ranks above "no models".
    const order = await page.$$eval('.tile', (els) => els.map((e) => e.dataset.machine));
    check(order.indexOf(stale) < order.indexOf(bare), `order ${order}`);
    check(order.indexOf(risk) < order.indexOf(healthy) && order.indexOf(healthy) < order.indexOf(bare), `the machine at risk does not rank above the healthy one: ${order}`);
  });

  await step('the verdict explains how each model counted', async () => {
    await page.click(`${tileOf(fresh)} .tile-link`);
    await page.waitForSelector('#verdict');
    const text = await page.textContent('#verdict');
    check(/failure model says/.test(text) && /RUL model says/.test(text) && /anomaly model says/.test(text), `the verdict does not weigh all three: ${text}`);
    // Beside it: each sensor's drift from the training data, and the score history (empty until the first
    // evaluation on the cadence has scored new data, or a table).
    const levels = await page.$$eval('#drift tr[data-sensor]', (rows) => rows.map((r) => r.dataset.level));
    check(levels.length > 0 && levels.every((l) => ['stable', 'moderate', 'large'].includes(l)), `drift per sensor: ${levels}`);
    check(/from the training data/.test(await page.textContent('#drift')), await page.textContent('#drift'));
    await page.waitForSelector('#scores');
    const tileDrift = await page.getAttribute(`${tileOf(fresh)} .tile-drift`, 'data-level');
    check(['stable', 'moderate', 'large'].includes(tileDrift), `the tile's drift: ${tileDrift}`);
  });

  await step('search narrows the tiles; the CSV export downloads', async () => {
    await page.fill('#fleet-search', bare);
    await until(async () => (await page.$$('.tile')).length === 1, 3000, 'search to narrow the tiles');
    await page.fill('#fleet-search', '');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#fleet-csv')]);
    check(download.suggestedFilename() === 'fleet.csv', download.suggestedFilename());
    const path = await download.path();
    const { readFileSync } = await import('node:fs');
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    check(lines.length === 6 && lines[0].startsWith('machine_id,'), lines.join('\n'));
  });

  await step('the training page finds a machine by name among many', async () => {
    await page.goto(`${url}#/train`);
    await page.waitForSelector('#machine-search');
    const visible = () => page.$$eval('.machine-list .choice', (els) => els.filter((e) => !e.hidden).map((e) => e.dataset.machine));
    check((await visible()).length === 5, `machines listed: ${await visible()}`);
    await page.fill('#machine-search', 'healthy');
    await until(async () => (await visible()).length === 1, 2000, 'the search to narrow the list');
    check((await visible())[0] === healthy, `found ${await visible()}`);
    await page.fill('#machine-search', '');
    await until(async () => (await visible()).length === 5, 2000, 'the list to come back');
    await page.goto(`${url}#/fleet`);
    await page.waitForSelector(tileOf(fresh));
  });

  await step('the stale-data alert: raised, acknowledged by name (clearing: tests/hardening/fleet.rs)', async () => {
    const row = `.alert-row[data-kind="stale_data"]`;
    await page.waitForSelector(row);
    check((await page.textContent(row)).includes(stale), await page.textContent(row));
    await page.click('#auth-button').catch(() => {});
    if (await page.isVisible('#login-dialog[open]')) {
      await page.fill('#login-token', token);
      await page.keyboard.press('Enter');
      await until(async () => (await page.textContent('#auth-button')) === 'Log out', 5000, 'login');
    }
    page.once('dialog', (d) => d.accept('Ana'));
    await page.click(`${row} button`);
    await until(async () => (await page.textContent(row)).includes('acknowledged by Ana'), 5000, 'the acknowledgement to show');
    await shot('fleet-alert-acknowledged');
  });

  for (const [name, size] of SIZES) {
    await step(`fleet at ${size.width}×${size.height}: nothing overflows, text ≥ 12 px`, async () => {
      await page.setViewportSize(size);
      await page.goto(`${url}#/fleet/${fresh}`);
      await page.reload();
      await page.waitForSelector(tileOf(fresh));
      await page.waitForTimeout(200);
      const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(sw <= w + 1, `the fleet is ${sw} px wide on a ${w} px screen`);
      const small = await page.$$eval('.tile *, .alert-row *', (els) => els.filter((e) => e.childElementCount === 0 && e.textContent.trim() && parseFloat(getComputedStyle(e).fontSize) < 12).map((e) => e.textContent.trim().slice(0, 20)));
      check(small.length === 0, `text below 12 px: ${small.join(' | ')}`);
      // Every view's link is on screen, none scrolled out of the navigation.
      const hidden = await page.$$eval('.nav a', (els) => els.filter((a) => { const r = a.getBoundingClientRect(); return r.right > window.innerWidth + 1 || r.width === 0; }).map((a) => a.textContent));
      check(hidden.length === 0, `navigation links off screen: ${hidden.join(', ')}`);
      await shot(`fleet-${name}`);
    });
  }

  await step('predictions carry the verdict; results of a machine without models say so', async () => {
    await page.setViewportSize({ width: 1024, height: 600 });
    await page.goto(`${url}#/predict/${fresh}`);
    await page.reload();
    await page.click('#predict-latest');
    await page.waitForSelector('#prediction-verdict');
    check(/Verdict: (act now|plan maintenance|watch|ok)/.test(await page.textContent('#prediction-verdict')), await page.textContent('#prediction-verdict'));
    const answers = await page.textContent('#latest-answers');
    check(!answers.includes('/api/'), `API paths shown to users: ${answers}`);
    await page.goto(`${url}#/results/${bare}`);
    await page.waitForSelector('#no-results');
    check((await page.textContent('#no-results')).includes(`${bare} has no trained models yet`), await page.textContent('#no-results'));
  });

  for (const [name, size] of SIZES) {
    await step(`every view at ${size.width}×${size.height}: screenshots, nothing overflows, text ≥ 12 px`, async () => {
      await page.setViewportSize(size);
      const problems = [];
      for (const [view, file] of [['#/fleet', 'fleet'], ['#/train', 'training'], [`#/results/${fresh}/classification`, 'results'], [`#/predict/${fresh}`, 'predictions'], ['#/queue', 'queue'], ['#/system', 'system']]) {
        await page.goto(`${url}${view}`);
        await page.reload();
        await page.waitForSelector('body[data-loaded="1"]');
        await page.waitForTimeout(300);
        await shot(`view-${file}-${name}`);
        for (const p of await page.evaluate(layoutProblems)) if (!problems.includes(`${view}: ${p}`)) problems.push(`${view}: ${p}`);
      }
      check(problems.length === 0, `at ${size.width}×${size.height}:\n  ${problems.slice(0, 30).join('\n  ')}`);
    });
  }

  await step('no request left localhost and the page logged no errors', async () => {
    console.log(`     ${guards()} requests, all local`);
  });
  // Last, after the guards: a dead daemon makes Chrome log every refused request.
  await step('the daemon gone: the page says so and takes back its Cancel buttons', async () => {
    await page.setViewportSize({ width: 1024, height: 600 });
    // A job to cancel: the queue shows its Cancel button while the daemon lives.
    const status = await page.evaluate(async (m) => (await fetch('/api/ml/train/batch', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ machine_id: m }) })).status, bare);
    check(status === 202, `starting a job for the cancel button: HTTP ${status}`);
    await page.goto(`${url}#/queue`);
    await page.reload();
    await page.waitForSelector('.btn.danger');
    process.kill(Number(process.env.FLEET_DAEMON_PID), 'SIGKILL');
    await until(async () => (await page.textContent('#top-status')).startsWith('Connection lost'), 8000, 'the status line to say the connection is lost');
    check(await page.evaluate(() => document.body.classList.contains('offline')), 'the page is not marked offline');
    const active = await page.$$eval('.btn.danger, #cancel-job', (els) => els.filter((e) => getComputedStyle(e).pointerEvents !== 'none').length);
    check(active === 0, `${active} cancel buttons still active with the daemon gone`);
    await shot('connection-lost');
  });

  await ctx.close();
});
