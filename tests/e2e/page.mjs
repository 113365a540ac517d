// The page against a real daemon: node page.mjs <url> <token> <outdir>
// The daemon serves a small demo fleet (3000 rows per machine, seconds to train), one big machine
// `big_motor_001` (slow enough to cancel), and flags every model as oversize (warn_size_mb = 0.001).
import { readFileSync } from 'node:fs';
import { launch, steps, check, until, main } from './lib.mjs';

const [url, token, outdir] = process.argv.slice(2);
if (!url || !token || !outdir) {
  console.log('usage: node page.mjs <url> <token> <outdir>');
  process.exit(2);
}
const TYPES = ['classification', 'regression', 'anomaly', 'timeseries'];

main(async () => {
  const { ctx, page, guards } = await launch({ url, outdir });
  const { step, shot, total } = steps(page, outdir);
  // Cancelling asks for confirmation; the test confirms (and records that it was asked).
  let confirmations = 0;
  page.on('dialog', (d) => { confirmations++; d.accept(); });
  const api = async (path, init) => page.evaluate(async ([p, i]) => {
    const r = await fetch(p, i);
    return { status: r.status, body: await r.json().catch(() => null) };
  }, [path, init ?? {}]);
  const machines = (await (await page.request.get(`${url}api/ml/train/machines/available`)).json()).machines;
  const small = machines.find((m) => !m.error && m.rows <= 5000 && m.family === 'motor') ?? machines.find((m) => !m.error && m.rows <= 5000);
  const big = machines.find((m) => m.machine_id === 'big_motor_001');
  check(small && big, `the fleet lacks a small machine or big_motor_001: ${JSON.stringify(machines.map((m) => m.machine_id))}`);
  const checked = () => page.$$eval('input[name=model]', (els) => els.filter((e) => e.checked).map((e) => e.value));
  const startText = () => page.textContent('#start-training');

  await step('the fleet is the default view; training has all four models selected', async () => {
    await page.goto(url);
    await page.waitForSelector('body[data-loaded="1"]');
    check(await page.getAttribute('a[data-view=fleet]', 'aria-current') === 'page', 'the fleet view is not the default');
    await page.click('a[data-view=train]');
    await page.waitForSelector('#start-training');
    check(await page.getAttribute('a[data-view=train]', 'aria-current') === 'page', 'the training view is not current');
    check((await checked()).length === 4, `selected by default: ${await checked()}`);
    check(await startText() === 'Train all 4 models', `button says ${await startText()}`);
    check(await page.isHidden('#incomplete-warning'), 'the incomplete warning shows with all four selected');
    check(await page.isVisible('text=Select all 4 (recommended)'), 'no "Select all 4 (recommended)" button');
    check(await page.$$eval('.estimate', (els) => els.every((e) => /Estimated time: ≈ \d/.test(e.textContent))), 'a model card lacks its estimated time');
    await shot('01-training');
  });

  await step('deselecting warns about an incomplete system; select all restores', async () => {
    await page.uncheck('input[name=model][value=regression]');
    await page.waitForSelector('#incomplete-warning:visible');
    check((await page.textContent('#incomplete-warning')).includes('Incomplete ML system: 1 model(s) not selected'), await page.textContent('#incomplete-warning'));
    check(await startText() === 'Train 3 models', `button says ${await startText()}`);
    // Keyboard: Space on a focused card toggles it like any checkbox.
    await page.focus('input[name=model][value=anomaly]');
    await page.keyboard.press('Space');
    check((await page.textContent('#incomplete-warning')).includes('2 model(s) not selected'), 'keyboard deselect did not update the warning');
    check(await startText() === 'Train 2 models', `button says ${await startText()}`);
    await shot('02-training-incomplete', false);
    await page.click('#select-all');
    check((await checked()).length === 4 && await page.isHidden('#incomplete-warning') && await startText() === 'Train all 4 models', 'select all did not restore the full selection');
  });

  let taskId;
  await step(`start all four on ${small.machine_id}: login dialog, advanced settings reach the job`, async () => {
    await page.check(`input[name=machine][value="${small.machine_id}"]`);
    await page.click('#advanced summary');
    await page.fill('#horizon-hours', '36');
    await page.fill('#contamination', '0.03');
    await page.fill('#alarm-k', '2');
    await page.fill('#alarm-n', '3');
    if (small.family === 'motor') await page.fill('#exclude-sensors', 'speed_rpm');
    // Out of range is refused on the page, before anything is sent.
    await page.fill('#max-train-rows', '10');
    await page.click('#start-training');
    await until(async () => (await page.textContent('#start-error')).includes('between 1,000 and 100,000,000'), 5000, 'the row cap message');
    await page.fill('#max-train-rows', '5000');
    await page.click('#start-training');
    await page.waitForSelector('#login-dialog[open]');
    await shot('03-login-dialog', false);
    await page.fill('#login-token', 'wrong-token');
    await page.click('#login-submit');
    await until(async () => (await page.textContent('#login-error')).includes('wrong token'), 5000, 'the wrong-token message');
    await page.fill('#login-token', token);
    await page.click('#login-submit');
    await page.waitForURL(/#\/progress\/[0-9a-f-]{36}$/);
    taskId = page.url().split('/').pop();
    const t = (await api(`/api/ml/tasks/${taskId}`)).body;
    check(t.params.horizon_hours === 36 && t.params.contamination === 0.03 && t.params.alarm_k_of_n.join('/') === '2/3' &&
      t.params.max_train_rows === 5000,
      `advanced settings not sent: ${JSON.stringify(t.params)}`);
    if (small.family === 'motor') check(t.params.exclude_sensors.includes('speed_rpm'), `exclude not sent: ${JSON.stringify(t.params)}`);
    check(t.model_types.length === 4 && t.complete_system, 'the job does not train all four');
    check(await page.textContent('#auth-button') === 'Log out', 'the menu offers no logout after logging in');
  });

  await step('progress: bars never go backwards, every model finishes with its headline metric', async () => {
    const seen = [];
    await until(async () => {
      const s = await page.evaluate(() => ({
        overall: Number(document.querySelector('#overall-bar')?.getAttribute('aria-valuenow') ?? -1),
        models: Object.fromEntries([...document.querySelectorAll('.model-row')].map((r) => [r.dataset.type, [r.dataset.status, Number(r.querySelector('[role=progressbar]').getAttribute('aria-valuenow'))]])),
        done: Boolean(document.querySelector('#job-alerts .alert')),
      }));
      seen.push(s);
      return s.done;
    }, 90000, 'the job to finish');
    for (let i = 1; i < seen.length; i++) {
      check(seen[i].overall >= seen[i - 1].overall, `overall went backwards: ${seen[i - 1].overall} → ${seen[i].overall}`);
      for (const [t, [, p]] of Object.entries(seen[i].models)) check(p >= (seen[i - 1].models[t]?.[1] ?? 0), `${t} went backwards`);
    }
    check((await page.textContent('#job-alerts')).includes('All 4 models trained.'), `no success alert: ${await page.textContent('#job-alerts')}`);
    // The header follows the panel at once, not at its next 5 s poll.
    await until(async () => !(await page.textContent('#top-status')).startsWith('Training'), 1500, 'the header to stop saying "Training"');
    const rows = await page.$$eval('.model-row', (els) => els.map((e) => [e.dataset.type, e.dataset.status, e.querySelector('.detail').textContent]));
    check(rows.length === 4 && rows.every(([, s, d]) => s === 'SUCCESS' && /baseline/.test(d)), `model rows: ${JSON.stringify(rows)}`);
    check(await page.isVisible('.model-row .badge.warn:has-text("large model")'), 'no oversize badge on the progress rows');
    check((await page.textContent('#job-log')).includes('timeseries done'), 'the log panel lacks the last model');
    check(await page.$$eval('#leaderboard table', (t) => t.length) >= 2, 'the leaderboard does not group candidates by metric');
    console.log(`     ${seen.length} snapshots, overall values ${[...new Set(seen.map((s) => s.overall))].join(' ')}`);
    await shot('04-progress-success');
  });

  await step('results: metric cards beside baselines, confusion matrix, oversize badge, download', async () => {
    await page.click('text=See the results');
    await page.waitForSelector('#metric-cards');
    check(page.url().includes(`#/results/${small.machine_id}/classification`), page.url());
    const cards = await page.$$eval('#metric-cards .metric-card', (els) => els.map((e) => [e.dataset.metric, e.querySelector('.base')?.textContent ?? '']));
    for (const m of ['f1', 'precision', 'recall', 'roc_auc', 'pr_auc']) check(cards.some(([k, b]) => k === m && b.length), `no ${m} card with a baseline: ${JSON.stringify(cards)}`);
    const cm = await page.$$eval('#confusion-matrix td', (els) => els.map((e) => Number(e.textContent.replace(/,/g, ''))));
    const detail = (await api(`/api/ml/models/${small.machine_id}/classification`)).body;
    check(cm.length === 4 && cm.reduce((a, b) => a + b, 0) === detail.report.metrics.n, `confusion matrix ${cm} does not add up to ${detail.report.metrics.n} test rows`);
    check(await page.isVisible('#model-size .badge.warn'), 'no oversize badge beside the size');
    check(await page.$$eval('.hbar', (e) => e.length) > 0, 'no feature importance bars');
    // Features in plant words ("max of vibration RMS over 72 h"), never the column names.
    const features = await page.$$eval('#feature-importance .hbar', (els) => els.map((e) => e.textContent));
    check(features.every((f) => !f.includes('__')) && features.some((f) => / over \d+ (h|min|days?)/.test(f)), `feature names: ${features.slice(0, 4).join(' | ')}`);
    check(await page.$$eval('#versions tbody tr', (e) => e.length) === 1, 'version history missing');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-model')]);
    check(download.suggestedFilename().endsWith('.mwm'), `download named ${download.suggestedFilename()}`);
    // The model's results as CSV and JSON: the same figures the cards show.
    const saved = async (selector) => {
      const [d] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
      return { name: d.suggestedFilename(), bytes: readFileSync(await d.path()) };
    };
    const rcsv = await saved('#results-csv');
    check(rcsv.name === `${small.machine_id}-classification-v1-results.csv`, rcsv.name);
    check(rcsv.bytes.toString().includes(`"metrics","f1","${detail.report.metrics.f1}"`), rcsv.bytes.toString().slice(0, 300));
    const rjson = await saved('#results-json');
    check(JSON.parse(rjson.bytes.toString()).report.metrics.f1 === detail.report.metrics.f1, 'results JSON');
    await shot('05-results-classification');
  });

  await step('results: RUL predicted-vs-actual and forecast with intervals against the truth', async () => {
    await page.click('#tab-regression');
    await page.waitForSelector('#results-panel[aria-labelledby=tab-regression] #rul-plots svg');
    check(await page.$$eval('#rul-plots g[data-series=predicted] circle', (e) => e.length) > 10, 'no predicted RUL points');
    check((await page.textContent('#metric-cards')).includes('critical range'), 'no error-in-the-critical-range card');
    await shot('06-results-regression');
    await page.click('#tab-anomaly');
    // The tab renders after its report arrives: wait for its own chart, not for an element the previous tab had.
    const histogram = await page.waitForSelector('#results-panel[aria-labelledby=tab-anomaly] #plots svg rect', { timeout: 10000 }).then(() => true, () => false);
    check(histogram, 'no anomaly score distribution');
    // Every chart saves itself: SVG with its colours resolved (the page's CSS does not travel), PNG at 2×.
    const chart = '#results-panel[aria-labelledby=tab-anomaly] #plots .chart-box';
    const [svgDl] = await Promise.all([page.waitForEvent('download'), page.click(`${chart} .chart-export-btn[data-kind=svg]`)]);
    const svgText = readFileSync(await svgDl.path(), 'utf8');
    check(svgDl.suggestedFilename() === 'score-distribution.svg', svgDl.suggestedFilename());
    check(svgText.startsWith('<svg') && svgText.includes('xmlns="http://www.w3.org/2000/svg"') && /<rect[^>]* fill="rgb/.test(svgText) && !svgText.includes('class='), svgText.slice(0, 400));
    const [pngDl] = await Promise.all([page.waitForEvent('download'), page.click(`${chart} .chart-export-btn[data-kind=png]`)]);
    const png = readFileSync(await pngDl.path());
    check(pngDl.suggestedFilename() === 'score-distribution.png' && png.subarray(1, 4).toString() === 'PNG', pngDl.suggestedFilename());
    const viewBox = await page.$eval(`${chart} svg`, (el) => el.getAttribute('viewBox').split(' ').map(Number));
    check(png.readUInt32BE(16) === viewBox[2] * 2 && png.readUInt32BE(20) === viewBox[3] * 2, `PNG ${png.readUInt32BE(16)}×${png.readUInt32BE(20)} for a ${viewBox} chart`);
    await shot('07-results-anomaly');
    await page.click('#tab-timeseries');
    await page.waitForSelector('#forecast-plots figure');
    const charts = await page.$$eval('#forecast-plots figure', (figs) => figs.map((f) => ['forecast', 'truth', 'history', 'interval80', 'interval95'].every((s) => f.querySelector(`[data-series=${s}]`))));
    check(charts.length >= 1 && charts.every(Boolean), `forecast charts lack a series: ${JSON.stringify(charts)}`);
    check((await page.textContent('#metric-cards')).includes('seasonal naive'), 'forecast metrics are not beside seasonal naive');
    const ruleCells = await page.$$eval('td[data-col=best-rule]', (tds) => tds.map((td) => [td.textContent, td.title]));
    check(ruleCells.length >= 1 && ruleCells.every(([v, rule]) => Number.isFinite(Number.parseFloat(v)) && rule.length > 0), `the per-sensor table lacks the best simple rule: ${JSON.stringify(ruleCells)}`);
    const question = await page.textContent('#results-panel[aria-labelledby=tab-timeseries] .question');
    check(question.includes('hourly') && !question.includes('steps of'), `the forecast target in words: ${question}`);
    await shot('08-results-forecast');
  });

  await step('predictions: four live answers, then a what-if from pasted CSV', async () => {
    await page.click('#test-predictions');
    await page.waitForSelector('#latest-answers .answer[data-type=timeseries] svg');
    const panels = await page.$$eval('#latest-answers .answer', (els) => els.map((e) => [e.dataset.type, e.textContent]));
    check(panels.length === 4 && panels.every(([, t]) => /answered by v1/.test(t)), `answers: ${JSON.stringify(panels.map(([k, t]) => [k, t.slice(0, 80)]))}`);
    check(/probability of/.test(panels[0][1]) && /Urgency/.test(panels[1][1]) && /Sensors driving the score/.test(panels[2][1]), 'an answer lacks its parts');
    await shot('09-predictions');
    const [predDl] = await Promise.all([page.waitForEvent('download'), page.click('#predict-csv')]);
    const predCsv = readFileSync(await predDl.path(), 'utf8').trim().split('\n');
    check(predDl.suggestedFilename() === `${small.machine_id}-prediction.csv`, predDl.suggestedFilename());
    check(predCsv[0] === 'model_type,version,sensor,timestamp,quantity,value' && predCsv.some((l) => l.startsWith('"timeseries","1"')), predCsv.slice(0, 5).join('\n'));
    const pred = (await api(`/api/ml/predict/${small.machine_id}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).body;
    const sensors = pred.predictions.timeseries.answer.sensors;
    const start = Date.parse('2024-05-01T00:00:00Z');
    const lines = [['timestamp', ...sensors.map((s) => s.sensor)].join(',')];
    for (let i = 0; i < 120; i++) lines.push([new Date(start + i * 3600e3).toISOString(), ...sensors.map((s, j) => (s.mean[0] * (1 + 0.01 * Math.sin(i / 5 + j))).toFixed(4))].join(','));
    await page.fill('#whatif-csv', 'timestamp,a\n2024-01-01T00:00:00Z,abc');
    await page.click('#whatif-run');
    await until(async () => (await page.textContent('#whatif-answers')).includes('is not a number'), 5000, 'the CSV error');
    await page.fill('#whatif-csv', lines.join('\n'));
    await page.click('#whatif-run');
    await until(async () => (await page.textContent('#whatif-answers')).includes('From 120 pasted rows.'), 20000, 'the what-if answers');
    check(await page.$$eval('#whatif-answers .answer .big-number', (e) => e.length) >= 1, 'the what-if gave no answer');
    await page.locator('#whatif-form').screenshot({ path: `${outdir}/10-predictions-whatif.png` });
  });

  await step('results: a second RUL model is compared with the first; roll back to v1, then unpin', async () => {
    const json = { method: 'POST', headers: { 'Content-Type': 'application/json' } };
    const queued = await api('/api/ml/train/regression', { ...json, body: JSON.stringify({ machine_id: small.machine_id, quality: 'fast' }) });
    check(queued.status === 202, `training a second RUL model: ${JSON.stringify(queued)}`);
    await until(async () => (await api(`/api/ml/tasks/${queued.body.task_id}`)).body.status === 'SUCCESS', 60000, 'the second RUL model');
    await page.goto(`${url}#/results/${small.machine_id}/regression`);
    await page.waitForSelector('#versions tbody tr[data-version="2"]');
    const liveRow = () => page.$$eval('#versions tbody tr', (rows) => rows.filter((r) => r.querySelector('.badge.ok')).map((r) => r.dataset.version));
    check(JSON.stringify(await liveRow()) === '["2"]', `live before: ${await liveRow()}`);
    const champion = await page.textContent('#champion');
    check(/held-out rows/.test(champion) && /for v1, the model live when it was trained/.test(champion), `comparison: ${champion}`);
    await page.click('#versions button[data-pin="1"]');
    await until(async () => JSON.stringify(await liveRow()) === '["1"]', 10000, 'v1 to be live');
    check((await page.textContent('#versions tr[data-version="1"]')).includes('pinned'), 'no pinned badge on v1');
    const answer = (await api(`/api/ml/predict/${small.machine_id}`, { ...json, body: '{}' })).body;
    check(answer.predictions.regression.version === 1, `answered by v${answer.predictions.regression.version} while v1 is pinned`);
    await shot('10b-results-pinned');
    await page.click('#unpin');
    await until(async () => JSON.stringify(await liveRow()) === '["2"]', 10000, 'v2 to be live again');
  });

  await step('a job that fails shows the error text', async () => {
    const pred = (await api(`/api/ml/predict/${small.machine_id}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).body;
    const all = [...pred.predictions.timeseries.answer.sensors.map((s) => s.sensor), 'speed_rpm'];
    await page.goto(`${url}#/train/${small.machine_id}`);
    await page.waitForSelector('#start-training');
    for (const t of ['regression', 'anomaly', 'timeseries']) await page.uncheck(`input[name=model][value=${t}]`);
    check(await startText() === 'Train 1 model', `button says ${await startText()}`);
    await page.click('#advanced summary');
    await page.fill('#exclude-sensors', all.join(', '));
    await page.click('#start-training');
    await page.waitForURL(/#\/progress\/[0-9a-f-]{36}$/);
    await until(async () => (await page.textContent('#job-alerts')).includes('Training failed:'), 20000, 'the failure alert');
    check((await page.textContent('#job-alerts')).includes('nothing to learn from'), `the alert lacks the error: ${await page.textContent('#job-alerts')}`);
    check((await page.textContent('.model-row[data-type=classification] .detail')).includes('nothing to learn from'), 'the model row lacks its error');
    // The bar shows what was done (nothing), not half; the settings that made it fail are open beside it.
    const overall = Number(await page.getAttribute('#overall-bar', 'aria-valuenow'));
    check(overall < 50, `a job that failed at the start shows ${overall} %`);
    check(/^\d+ %$/.test(await page.textContent('#overall-percent')), `not a whole percent: ${await page.textContent('#overall-percent')}`);
    check(await page.evaluate(() => document.querySelector('#job-settings').open), 'the failed job hides its settings');
    const excluded = await page.textContent('#job-settings dd[data-key=exclude_sensors]');
    check(all.every((sn) => excluded.includes(sn)), `the settings lack the excluded sensors: ${excluded}`);
    await shot('11-progress-failed', false);
  });

  let bigId;
  await step(`start ${big.machine_id} (quality best); per-model progress advances`, async () => {
    await page.goto(`${url}#/train/${big.machine_id}`);
    await page.waitForSelector('#start-training');
    check(await page.isChecked(`input[name=machine][value=${big.machine_id}]`), 'the machine in the URL is not selected');
    check((await checked()).length === 4, 'a new visit does not start with all four selected');
    await page.click('#advanced summary');
    await page.selectOption('#quality', 'best');
    await page.click('#start-training');
    await page.waitForURL(/#\/progress\/[0-9a-f-]{36}$/);
    bigId = page.url().split('/').pop();
    const first = await until(() => page.evaluate(() => {
      const r = document.querySelector('.model-row[data-status=PROGRESS]');
      return r && Number(r.querySelector('[role=progressbar]').getAttribute('aria-valuenow')) > 0 ? [r.dataset.type, Number(r.querySelector('[role=progressbar]').getAttribute('aria-valuenow'))] : null;
    }), 30000, 'a model to start');
    const later = await until(() => page.evaluate(([t, p]) => {
      const v = Number(document.querySelector(`.model-row[data-type=${t}] [role=progressbar]`).getAttribute('aria-valuenow'));
      return v > p ? v : null;
    }, first), 20000, `${first[0]} to advance past ${first[1]} %`);
    console.log(`     ${first[0]}: ${first[1]} % → ${later} %`);
    check((await page.textContent('#stage')).length > 0 && /Elapsed/.test(await page.textContent('#timing')), 'no stage or elapsed time while running');
  });

  await step('reload during the job finds it again; the bar does not go backwards', async () => {
    const before = Number(await page.getAttribute('#overall-bar', 'aria-valuenow'));
    await page.goto(`${url}#/progress`);
    await page.reload();
    await page.waitForURL(new RegExp(`#/progress/${bigId}$`));
    await page.waitForSelector('#overall-bar');
    const after = Number(await page.getAttribute('#overall-bar', 'aria-valuenow'));
    check(after >= before, `overall went from ${before} to ${after} across the reload`);
    check(await page.isVisible('#cancel-job'), 'no cancel button on a running job');
    await shot('12-progress-running');
  });

  await step('cancel really stops the running job', async () => {
    const t0 = Date.now();
    await page.click('#cancel-job');
    await until(async () => (await page.textContent('#job-alerts')).includes('Training cancelled.'), 15000, 'the cancelled alert');
    check(confirmations === 1, `cancel asked for confirmation ${confirmations} times`);
    const t = (await api(`/api/ml/tasks/${bigId}`)).body;
    check(t.status === 'REVOKED', `the job is ${t.status}`);
    console.log(`     cancelled in ${Date.now() - t0} ms`);
    await shot('13-progress-cancelled');
  });

  await step('queue & history: jobs with states, filters and durations', async () => {
    await page.click('a[data-view=queue]');
    await page.waitForSelector(`#jobs tr[data-task="${bigId}"]`);
    check(await page.textContent(`#jobs tr[data-task="${bigId}"]`).then((t) => t.includes('cancelled')), 'the cancelled job is not shown as cancelled');
    await page.selectOption('#filter-status', 'SUCCESS');
    await until(async () => (await page.$(`#jobs tr[data-task="${bigId}"]`)) === null && (await page.$(`#jobs tr[data-task="${taskId}"]`)) !== null, 5000, 'the status filter');
    await page.selectOption('#filter-status', '');
    await shot('14-queue');
  });

  await step('system view shows the device facts', async () => {
    await page.click('a[data-view=system]');
    await page.waitForSelector('[data-section=Overview]');
    check((await page.textContent('[data-section=Overview]')).includes('version'), 'no version');
    check((await page.textContent('#vitals')).includes('Memory available'), 'the vitals lack the guard\'s memory reading');
    await shot('15-system');
  });

  await step('logout, then predictions ask for the token; login from the menu', async () => {
    await page.click('#auth-button');
    await until(async () => (await page.textContent('#auth-button')) === 'Log in', 5000, 'the menu to offer login');
    check((await api('/api/auth/status')).body.logged_in === false, 'still logged in after logout');
    await page.goto(`${url}#/predict/${small.machine_id}`);
    await page.reload();
    await page.waitForSelector('text=Log in to ask the models.');
    await page.click('#auth-button');
    await page.waitForSelector('#login-dialog[open]');
    await page.fill('#login-token', token);
    await page.keyboard.press('Enter');
    await until(async () => (await page.textContent('#auth-button')) === 'Log out', 5000, 'login from the menu');
    check((await api('/api/auth/status')).body.logged_in === true, 'not logged in');
  });

  await step('add a machine from a CSV file: a file that is no table, the preview, roles changed, a refused mapping, then the machine trains', async () => {
    const before = (await api('/api/ml/train/machines/available')).body.total;
    await page.goto(`${url}#/add`);
    await page.setInputFiles('#upload-file', { name: 'photo.csv', mimeType: 'text/csv', buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 1]) });
    await page.click('#upload-read');
    await page.waitForSelector('#upload-error .alert.bad');
    check(/not a text file/.test(await page.textContent('#upload-error')), `the refusal: ${await page.textContent('#upload-error')}`);
    // Two lives of a pump, hourly, semicolon-separated as a European Excel writes it.
    const lines = ['time;pump;Pressure bar;flow;note;failed'];
    for (let i = 0; i < 400; i++) {
      const t = new Date(Date.UTC(2026, 0, 1) + i * 3600e3).toISOString();
      const wear = (i % 200) / 200;
      lines.push(`${t};${i < 200 ? 1 : 2};${(5 + Math.sin(i / 5) + wear).toFixed(3)};${(30 + (i % 17) - 5 * wear).toFixed(1)};ok;${i % 200 >= 180 ? 1 : 0}`);
    }
    await page.setInputFiles('#upload-file', { name: 'Pump 3.csv', mimeType: 'text/csv', buffer: Buffer.from(lines.join('\n') + '\n') });
    await page.click('#upload-read');
    await page.waitForSelector('#upload-columns');
    const role = (c) => page.$eval(`select[data-column="${c}"]`, (e) => e.value);
    const roles = { time: await role('time'), failed: await role('failed'), flow: await role('flow'), note: await role('note'), pump: await role('pump') };
    check(roles.time === 'timestamp' && roles.failed === 'label' && roles.flow === 'sensor' && roles.note === 'ignore' && roles.pump === 'sensor',
      `guessed roles: ${JSON.stringify(roles)}`);
    check(/400 rows, 6 columns/.test(await page.textContent('#upload-preview h2')), `summary: ${await page.textContent('#upload-preview h2')}`);
    check(await page.inputValue('#upload-id') === 'pump-3', `machine id offered: ${await page.inputValue('#upload-id')}`);
    await page.selectOption('select[data-column="pump"]', 'unit');
    await page.fill('input[data-unit-for="Pressure bar"]', 'bar');
    await page.fill('#upload-name', 'Cooling pump 3');
    await page.selectOption('select[data-column="note"]', 'sensor');
    await page.click('#upload-create');
    await page.waitForSelector('#upload-outcome .alert.bad');
    check(/"note" holds text values, not numbers/.test(await page.textContent('#upload-outcome')), `the refused mapping: ${await page.textContent('#upload-outcome')}`);
    check((await api('/api/ml/train/machines/available')).body.total === before, 'a refused mapping made a machine');
    await page.selectOption('select[data-column="note"]', 'ignore');
    await shot('15b-add-machine-preview');
    await page.click('#upload-create');
    await page.waitForSelector('#upload-outcome .alert.ok');
    const done = await page.textContent('#upload-outcome');
    check(/pump-3 is ready:\s*400 rows, 2 sensors, 2 lives/.test(done), `outcome: ${done}`);
    const listed = (await api('/api/ml/train/machines/available')).body.machines.find((m) => m.machine_id === 'pump-3');
    check(listed && listed.rows === 400 && listed.display_name === 'Cooling pump 3', `the new machine as listed: ${JSON.stringify(listed)}`);
    await page.click('#upload-train');
    await page.waitForSelector('input[name=machine][value="pump-3"]');
    const json = { method: 'POST', headers: { 'Content-Type': 'application/json' } };
    const queued = await api('/api/ml/train/anomaly', { ...json, body: JSON.stringify({ machine_id: 'pump-3', quality: 'fast' }) });
    check(queued.status === 202, `training the new machine: ${JSON.stringify(queued)}`);
    await until(async () => (await api(`/api/ml/tasks/${queued.body.task_id}`)).body.status === 'SUCCESS', 60000, 'the new machine\'s anomaly model');
  });

  await step('phone size in dark mode: nothing overflows sideways', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: 'dark' });
    for (const [view, name] of [['#/train', '16-phone-dark-training'], [`#/results/${small.machine_id}/timeseries`, '17-phone-dark-results'], ['#/add', '18-phone-dark-add-machine']]) {
      await page.goto(`${url}${view}`);
      await page.reload();
      await page.waitForSelector('body[data-loaded="1"]');
      await page.waitForTimeout(300);
      const [sw, w] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(sw <= w + 1, `${view} is ${sw} px wide on a ${w} px screen`);
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      check(bg === 'rgb(17, 20, 24)', `dark mode not applied (${bg})`);
      await shot(name);
    }
  });

  await step('no request left localhost and the page logged no errors', async () => {
    const n = guards();
    console.log(`     ${n} requests, all to ${new URL(url).host}; browser part took ${(total() / 1000).toFixed(1)} s`);
  });
  await ctx.close();
});
