// Results of one model of one machine: metrics beside their baselines, plots, versions, download.
import { api } from '../api.js';
import { h, add, clear, badge, alertBox, toast, fmtNum, fmtPct, fmtBytes, fmtDuration, fmtTime, fmtAge, metricLabel, HIGHER_IS_BETTER, compare, TYPES, TYPE_INFO, oversizeBadge, featureWords } from '../ui.js';
import { lineChart, histogram, hbars, legend } from '../charts.js';

const RATIO = new Set(['f1', 'precision', 'recall', 'roc_auc', 'pr_auc', 'accuracy', 'coverage80', 'coverage95', 'alarm_rate']);
const fmtMetric = (k, v) => (RATIO.has(k) ? fmtNum(v, 3) : fmtNum(v, 4));

const CADENCE = { 60: 'every minute', 600: 'every 10 minutes', 900: 'every 15 minutes', 1800: 'every 30 minutes', 3600: 'hourly', 86400: 'daily' };
/** "24 steps of 3600 s" → "hourly". */
const targetWords = (t) => t.replace(/\((\d+) steps of (\d+) s\)/, (all, n, sec) => `(${CADENCE[sec] ?? `every ${sec} s`})`);

/** One metric card: the value and, on the same rows, the baseline; better/worse only within that metric. */
function card(key, value, base, baseName, { headline = false, higher, actionable = true } = {}) {
  const hib = higher ?? HIGHER_IS_BETTER[key];
  let cmp = compare(Number(value), Number(base), hib);
  // "(better)" only for a model good enough to act on; a weak model's win over its baseline is not praise.
  if (cmp === 'better than' && !actionable) cmp = 'above baseline, not enough to act on than';
  return h('div', { class: ['metric-card', headline && 'headline'], dataset: { metric: key } },
    h('div', { class: 'name' }, metricLabel(key), headline ? ' · headline' : ''),
    h('div', { class: 'value' }, fmtMetric(key, value)),
    base !== undefined && base !== null ? h('div', { class: 'base' }, `${baseName}: ${fmtMetric(key, base)} `,
      cmp ? h('span', { class: cmp === 'better than' ? 'better' : cmp === 'worse than' ? 'worse' : '' }, `(${cmp.replace(' than', '')})`) : '') : null);
}

function metricCards(type, r) {
  const m = r.metrics ?? {}; const b = r.baseline ?? {}; const hl = r.headline ?? {};
  const actionable = r.quality ? r.quality.show_better === true : true;
  const cards = [card(hl.metric, hl.value, hl.baseline, hl.baseline_name, { headline: true, higher: hl.higher_is_better, actionable })];
  // The headline already shows its metric (RUL's headline `rmse_hours` is the report's `rmse`).
  const isHeadline = (k) => k === hl.metric || (hl.metric === 'rmse_hours' && k === 'rmse');
  const add = (k, base, name) => { if (!isHeadline(k) && m[k] !== undefined) cards.push(card(k, m[k], base, name, { actionable })); };
  if (type === 'classification') {
    const prior = b.prior ?? {};
    for (const k of ['f1', 'precision', 'recall', 'roc_auc', 'pr_auc', 'accuracy']) add(k, k === 'f1' ? b.always_positive_f1 : prior[k], k === 'f1' ? 'always predict failure' : 'always predict healthy');
  } else if (type === 'regression') {
    const bm = b.metrics ?? {};
    add('rmse', bm.rmse, b.name);
    for (const k of ['mae', 'r2', 'mae_critical', 'bias']) add(k, bm[k], b.name);
  } else if (type === 'anomaly') {
    for (const k of ['pr_auc', 'roc_auc', 'precision', 'recall', 'f1']) add(k, b[k], b.name ?? 'random detector');
  } else if (type === 'timeseries') {
    for (const k of ['mase', 'mape', 'smape', 'mae', 'coverage80', 'coverage95']) add(k, b[k], b.name ?? 'seasonal naive');
  }
  return h('div', { class: 'grid four', id: 'metric-cards' }, cards);
}

function confusion(c, type) {
  const pos = type === 'anomaly' ? 'anomalous' : 'failure';
  const neg = type === 'anomaly' ? 'normal' : 'healthy';
  return h('div', { class: 'table-wrap' }, h('table', { class: 'confusion', id: 'confusion-matrix' },
    h('caption', { class: 'muted' }, 'Test rows: actual (rows) against predicted (columns)'),
    h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', { scope: 'col' }, `Predicted ${pos}`), h('th', { scope: 'col' }, `Predicted ${neg}`))),
    h('tbody', {},
      h('tr', {}, h('th', { scope: 'row' }, `Actual ${pos}`), h('td', { class: 'hit', title: 'true positives' }, fmtNum(c.tp)), h('td', { class: 'miss', title: 'false negatives (missed)' }, fmtNum(c.fn))),
      h('tr', {}, h('th', { scope: 'row' }, `Actual ${neg}`), h('td', { class: 'miss', title: 'false positives (false alarms)' }, fmtNum(c.fp)), h('td', { class: 'hit', title: 'true negatives' }, fmtNum(c.tn))))));
}

function leaderboardTables(rows) {
  const groups = new Map();
  for (const r of rows ?? []) { if (!groups.has(r.metric)) groups.set(r.metric, []); groups.get(r.metric).push(r); }
  if (!groups.size) return h('p', { class: 'muted' }, 'No candidates recorded.');
  const total = (rows ?? []).length;
  const tables = h('div', { class: 'table-wrap' }, [...groups].map(([metric, list]) => h('table', {},
    h('caption', { class: 'muted' }, metric),
    h('thead', {}, h('tr', {}, h('th', {}, 'Candidate'), h('th', { class: 'num' }, metric), h('th', { class: 'num' }, 'Fit'), h('th', {}, 'Detail'), h('th', {}, ''))),
    h('tbody', {}, list.map((r) => h('tr', { class: r.chosen ? 'chosen' : '' }, h('td', {}, r.model), h('td', { class: 'num' }, fmtNum(r.validation_score, 4)),
      h('td', { class: 'num' }, fmtDuration(r.fit_seconds)), h('td', {}, r.detail ?? ''), h('td', {}, r.chosen ? badge('chosen', 'ok') : '')))))));
  // A forecaster compares several methods per sensor: a long list stays folded until asked for.
  return total > 12 ? h('details', {}, h('summary', {}, `${total} candidates`), tables) : tables;
}

const hourFmt = (ms) => new Date(ms).toLocaleString('en-GB', { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit', timeZone: 'UTC' });

export function forecastChart(f, { width = 440, height = 210 } = {}) {
  const hist = f.history ?? { values: [] };
  const fc = f.forecast ?? {};
  const step = (fc.step_s ?? 3600) * 1000;
  const fStart = Date.parse(fc.start);
  const hStart = Date.parse(hist.start);
  const at = (start, i) => start + i * step;
  const pts = (arr, start) => (arr ?? []).map((v, i) => [at(start, i), v ?? NaN]);
  const chart = lineChart({
    title: `${f.sensor} forecast`, desc: `History, ${fc.mean?.length ?? 0}-step forecast with 80 % and 95 % intervals, and the held-out truth`,
    width, height, xFormat: hourFmt, xTime: true, yLabel: f.unit || '',
    bands: [{ lo: pts(fc.lo95, fStart), hi: pts(fc.hi95, fStart), cls: 'band95', name: 'interval95' }, { lo: pts(fc.lo80, fStart), hi: pts(fc.hi80, fStart), cls: 'band80', name: 'interval80' }],
    series: [{ points: pts(hist.values, hStart), cls: 's4', name: 'history' }, { points: pts(fc.mean, fStart), cls: 's1', name: 'forecast' },
      ...(f.truth ? [{ points: pts(f.truth, fStart), cls: 's2', name: 'truth', dash: true }] : [])],
    markers: [{ x: fStart, label: 'forecast from' }],
  });
  return h('figure', { class: 'forecast-chart', dataset: { sensor: f.sensor } }, h('figcaption', {}, h('strong', { class: 'mono' }, f.sensor), f.model ? h('span', { class: 'muted' }, ` · ${f.model}`) : ''), chart);
}

function samplesSection(type, r) {
  const smp = r.samples ?? {};
  const out = [];
  if (smp.score_histogram) {
    const sh = smp.score_histogram;
    out.push(h('h3', {}, 'Score distribution on test rows'),
      histogram({ title: 'Score distribution', desc: 'Share of test rows per score bin, for each actual class', a: sh.negative, b: sh.positive,
        aName: type === 'anomaly' ? 'normal rows' : 'healthy rows', bName: type === 'anomaly' ? 'rows before failure / anomalous' : 'rows before failure',
        threshold: sh.threshold ?? r.metrics?.threshold }));
  }
  if (smp.predicted_vs_actual) {
    const cols = smp.predicted_vs_actual.columns ?? ['hours', 'actual', 'predicted'];
    const [ix, ia, ip] = ['hours', 'actual', 'predicted'].map((c) => Math.max(0, cols.indexOf(c)));
    out.push(h('h3', {}, 'Predicted against actual remaining life (test lives)'),
      legend([['l2', 'actual RUL'], ['l1', 'predicted RUL']]),
      h('div', { class: 'grid wide', id: 'rul-plots' }, (smp.predicted_vs_actual.lives ?? []).slice(0, 4).map((life) => h('figure', { class: 'rul-chart' },
        h('figcaption', {}, `Life ${life.life}`),
        lineChart({ title: `Remaining useful life, life ${life.life}`, desc: 'Actual and predicted RUL in hours against hours into the life', width: 440, height: 200,
          xLabel: 'hours into the life', yLabel: 'RUL (h)', yMin: 0,
          series: [{ points: life.points.map((p) => [p[ix], p[ia]]), cls: 's2', name: 'actual' }],
          dots: [{ points: life.points.map((p) => [p[ix], p[ip]]), cls: 'dot1', name: 'predicted' }] })))));
  }
  if (smp.forecast_vs_truth) {
    out.push(h('h3', {}, 'Forecast against the held-out truth'),
      legend([['l4', 'history'], ['l1', 'forecast'], ['lb', '80 % / 95 % interval'], ['l2', 'actual (held out)']]),
      h('div', { class: 'grid wide', id: 'forecast-plots' }, smp.forecast_vs_truth.map((f) => forecastChart(f))));
  }
  return out;
}

function perSensorTable(m) {
  if (!Array.isArray(m.per_sensor)) return null;
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', { class: 'muted' }, 'Per sensor: the chosen method against the best simple rule (naive, daily or weekly seasonal naive) on the same held-out origins; lower MASE is better'),
    h('thead', {}, h('tr', {}, ['Sensor', 'Method', 'MASE', 'best simple rule MASE', 'MAE', 'sMAPE %', '80 % coverage'].map((c, i) => h('th', { class: i > 1 ? 'num' : '' }, c)))),
    h('tbody', {}, m.per_sensor.map((p) => h('tr', {}, h('td', { class: 'mono' }, p.sensor, p.unit ? ` (${p.unit})` : ''), h('td', {}, p.model),
      h('td', { class: 'num' }, fmtNum(p.test?.mase)),
      h('td', { class: 'num', title: p.best_baseline ?? '', 'data-col': 'best-rule' }, fmtNum(p.baselines?.[p.best_baseline]?.mase)), h('td', { class: 'num' }, fmtNum(p.test?.mae)),
      h('td', { class: 'num' }, fmtNum(p.test?.smape)), h('td', { class: 'num' }, fmtPct(p.test?.coverage80, 0)))))));
}

function facts(r) {
  const sp = r.split ?? {}; const d = r.data ?? {};
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  return h('dl', { class: 'kv' },
    row('Predicts', r.target ?? '–'),
    row('Split', `${sp.method ?? '–'}: ${fmtNum(sp.train_rows)} train / ${fmtNum(sp.val_rows)} validation / ${fmtNum(sp.test_rows)} test rows` +
      (sp.test_lives ? ` (${sp.train_lives}/${sp.val_lives}/${sp.test_lives} lives)` : '')),
    (sp.notes ?? []).length ? row('Notes', sp.notes.join('; ')) : null,
    row('Data', `${fmtNum(d.rows)} rows, ${d.sensors} sensors, every ${fmtDuration(d.interval_s)}${d.features ? `, ${d.features} features` : ''}`),
    d.grid ? row('Training grid', `${fmtNum(d.grid.raw_rows)} readings every ${fmtDuration(d.grid.raw_interval_s)} aggregated onto ` +
      `${fmtNum(d.grid.rows)} steps of ${fmtDuration(d.grid.grid.step_s)} (${d.grid.grid.stats.join(', ')} per sensor; ` +
      `${fmtNum(d.grid.empty_steps)} empty steps left as gaps)`) : null,
    (d.sensors_dropped ?? []).length ? row('Sensors dropped', d.sensors_dropped.join(', ')) : null,
    row('Training time', `${fmtDuration(r.train_seconds)} (${(r.timings ?? []).map(([k, v]) => `${k} ${fmtNum(v, 2)} s`).join(', ')})`),
    r.metrics?.truth ? row('Scored against', r.metrics.truth) : null,
    r.params ? row('Settings', `quality ${r.params.quality}, time limit ${fmtDuration(r.params.time_limit_s)}, horizon ${r.params.horizon_hours} h, contamination ${r.params.contamination}` +
      ((r.params.alarm_k_of_n ?? [1, 1])[1] > 1 ? `, alarm on ${r.params.alarm_k_of_n[0]} of ${r.params.alarm_k_of_n[1]} readings` : '') + `, forecast ${r.params.forecast_hours} h` +
      ((r.params.exclude_sensors ?? []).length ? `, excluded: ${r.params.exclude_sensors.join(', ')}` : '')) : null,
    row('millwright', r.millwright_version ?? '–'));
}

// Pinning changes which version answers: the view is drawn again from the registry's answer.
async function pinAction(btn, call, done) {
  btn.disabled = true;
  try { await call(); toast('ok', done); window.dispatchEvent(new HashChangeEvent('hashchange')); } catch (e) { toast('bad', e.message); btn.disabled = false; }
}

function pinCell(machine, type, v, pin) {
  if (!v.live) {
    const b = h('button', { type: 'button', class: 'btn small', dataset: { pin: String(v.version) } }, 'Make live');
    b.addEventListener('click', () => pinAction(b, () => api.pin(machine, type, v.version, 'made live from the page'), `v${v.version} answers now, until it is unpinned.`));
    return b;
  }
  if (pin && pin.version === v.version) {
    const b = h('button', { type: 'button', class: 'btn small', id: 'unpin' }, 'Unpin');
    b.addEventListener('click', () => pinAction(b, () => api.unpin(machine, type), 'Unpinned: the newest version answers.'));
    return b;
  }
  return '';
}

function versionsTable(machine, type, versions, shown, pin) {
  const metric = versions.find((v) => v.headline?.metric)?.headline?.metric;
  return h('div', { class: 'table-wrap' }, h('table', { id: 'versions' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Version'), h('th', {}, 'Trained'), h('th', { class: 'num' }, metric ? metricLabel(metric) : 'Headline'),
      h('th', { class: 'num' }, 'Baseline'), h('th', { class: 'num' }, 'Size'), h('th', {}, ''), h('th', {}, ''), h('th', {}, ''))),
    h('tbody', {}, [...versions].sort((a, b) => b.version - a.version).map((v) => h('tr', { class: v.version === shown ? 'chosen' : '', dataset: { version: String(v.version) } },
      h('td', {}, `v${v.version} `, v.live ? badge('live', 'ok') : '', pin && pin.version === v.version ? h('span', { title: pin.reason }, ' ', badge(pin.by === 'person' ? 'pinned' : 'kept: newer was worse', 'warn')) : ''),
      h('td', {}, fmtTime(v.trained_at), h('div', { class: 'muted' }, fmtAge(v.trained_at))),
      h('td', { class: 'num' }, fmtNum(v.headline?.value, 4)), h('td', { class: 'num' }, fmtNum(v.headline?.baseline, 4)),
      h('td', { class: 'num' }, fmtBytes(v.size_bytes), ' ', oversizeBadge(v)),
      h('td', {}, v.version === shown ? h('span', { class: 'muted' }, 'shown') : h('a', { href: `#/results/${encodeURIComponent(machine)}/${type}/${v.version}` }, 'view')),
      h('td', {}, h('a', { href: api.downloadUrl(machine, type, v.version), download: '' }, 'download')),
      h('td', {}, pinCell(machine, type, v, pin)))))));
}

// The new model beside the one that was live when it was trained, on the same held-out rows.
function championBox(c) {
  if (!c) return null;
  const text = c.challenger === null || c.challenger === undefined
    ? `Not compared with live v${c.champion_version}: ${c.note ?? 'no comparison'}.`
    : `On the same ${c.rows.toLocaleString()} held-out rows: ${metricLabel(c.metric)} ${fmtMetric(c.metric, c.challenger)} for this model, ${fmtMetric(c.metric, c.champion)} for v${c.champion_version}, the model live when it was trained — ${c.not_worse ? 'not worse' : 'worse'}.`;
  return h('section', { class: 'panel', id: 'champion' }, h('h3', {}, 'Compared with the live model'), h('p', {}, text));
}

// A version folder that cannot be read: when it is newer than the live one, an older model is answering.
function damagedNotice(damaged, info) {
  if (!damaged.length) return null;
  const newer = damaged.filter((d) => d.newer_than_live);
  const title = newer.length ? `Version ${newer.map((d) => d.version).join(', ')} cannot be read; v${info.version} answers instead.` : 'Some older versions cannot be read.';
  return h('div', { id: 'damaged-versions' }, alertBox('bad', title, h('ul', {}, damaged.map((d) => h('li', {}, `v${d.version}: ${d.reason}`))),
    'Retrain this model, or delete the damaged version.'));
}

export async function mount(root, args) {
  add(root, h('h1', {}, 'Results'));
  const { machines = {} } = await api.models();
  const ids = Object.keys(machines).sort();
  if (!ids.length) {
    add(root, h('div', { class: 'panel' }, h('p', {}, 'No trained models yet.'), h('a', { class: 'btn primary', href: '#/train' }, 'Train the first machine')));
    return null;
  }
  // A machine named in the address but without models says so, instead of quietly showing another one.
  if (args[0] && !ids.includes(args[0])) {
    add(root, h('div', { class: 'panel', id: 'no-results' }, h('p', {}, `${args[0]} has no trained models yet.`),
      h('a', { class: 'btn primary', href: `#/train/${encodeURIComponent(args[0])}` }, `Train ${args[0]}`), ' ',
      h('a', { class: 'btn', href: `#/results/${encodeURIComponent(ids[0])}` }, `See ${ids[0]}'s results`)));
    return null;
  }
  const machine = ids.includes(args[0]) ? args[0] : ids[0];
  const live = machines[machine] ?? {};
  const type = TYPES.includes(args[1]) && live[args[1]] ? args[1] : TYPES.find((t) => live[t]) ?? TYPES[0];
  const version = args[2] ? Number(args[2]) : undefined;

  const select = h('select', { id: 'results-machine' }, ids.map((id) => h('option', { value: id, selected: id === machine }, id)));
  select.addEventListener('change', () => { location.hash = `#/results/${encodeURIComponent(select.value)}`; });
  add(root, h('div', { class: 'row' }, h('label', { for: 'results-machine' }, 'Machine'), select,
    h('span', { class: 'muted' }, `${TYPES.filter((t) => live[t]).length} of 4 models trained`)));
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Model type' }, TYPES.map((t) => {
    const b = h('button', { type: 'button', role: 'tab', 'aria-selected': String(t === type), id: `tab-${t}`, disabled: !live[t] },
      TYPE_INFO[t].name, live[t] ? '' : ' (none)');
    b.addEventListener('click', () => { location.hash = `#/results/${encodeURIComponent(machine)}/${t}`; });
    return b;
  }));
  // Arrow keys move between tabs, as in any tab list.
  tabs.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    const enabled = [...tabs.querySelectorAll('button:not(:disabled)')];
    const i = enabled.indexOf(document.activeElement);
    const next = enabled[(i + (ev.key === 'ArrowRight' ? 1 : enabled.length - 1)) % enabled.length];
    next?.focus();
  });
  add(root, tabs);
  const panel = h('div', { role: 'tabpanel', 'aria-labelledby': `tab-${type}`, id: 'results-panel' });
  add(root, panel);
  if (!live[type]) {
    add(panel, h('p', {}, `No ${TYPE_INFO[type].name} model for ${machine}. `), h('a', { class: 'btn primary', href: `#/train/${encodeURIComponent(machine)}` }, 'Train it'));
    return null;
  }
  const detail = await api.model(machine, type, version);
  const r = detail.report ?? {};
  const info = (detail.versions ?? []).find((v) => v.version === (version ?? live[type].version)) ?? live[type];

  add(panel, 
    h('div', { class: 'row' },
      h('h2', {}, `${TYPE_INFO[type].name} · v${info.version}`), info.live ? badge('live', 'ok') : badge('older version', ''),
      h('span', { class: 'muted' }, `trained ${fmtTime(info.trained_at)}`),
      h('span', { id: 'model-size' }, `Size ${fmtBytes(info.size_bytes)} `, oversizeBadge(info)),
      h('span', { class: 'spacer' }),
      h('a', { class: 'btn', id: 'download-model', href: api.downloadUrl(machine, type, info.version), download: '' }, 'Download model'),
      h('a', { class: 'btn', id: 'results-csv', href: api.resultsUrl(machine, type, info.version, 'csv'), download: '' }, 'Results CSV'),
      h('a', { class: 'btn', id: 'results-json', href: api.resultsUrl(machine, type, info.version, 'json'), download: '' }, 'Results JSON'),
      h('a', { class: 'btn primary', id: 'test-predictions', href: `#/predict/${encodeURIComponent(machine)}` }, 'Test predictions')),
    h('p', { class: 'question' }, `“${TYPE_INFO[type].question}” — ${targetWords(r.target ?? '')}`),
    damagedNotice(detail.damaged ?? [], info),
    (r.warnings ?? []).length ? alertBox('warn', 'Warnings:', h('ul', {}, r.warnings.map((w) => h('li', {}, w)))) : null,
    r.quality ? h('section', { class: ['panel', 'quality', `grade-${r.quality.grade}`], id: 'model-quality' },
      h('h3', {}, `In plain words: ${r.quality.grade.replace('_', ' ')}`),
      h('ul', {}, (r.quality.sentences ?? []).map((x) => h('li', {}, x))), h('p', { class: 'muted' }, `Why: ${r.quality.why}`)) : null,
    h('section', { class: 'panel' }, h('h3', {}, 'Test metrics, each beside its baseline on the same rows'), metricCards(type, r),
      type === 'timeseries' ? perSensorTable(r.metrics ?? {}) : null),
    r.confusion ? h('section', { class: 'panel' }, h('h3', {}, 'Confusion matrix'), confusion(r.confusion, type)) : null,
    h('section', { class: 'panel', id: 'plots' }, samplesSection(type, r)),
    (r.feature_importance ?? []).length ? h('section', { class: 'panel', id: 'feature-importance' }, h('h3', {}, 'What the model looks at (share of split gain)'),
      hbars(r.feature_importance.slice(0, 15).map(([n, v]) => [featureWords(n, r.data?.interval_s ?? 3600), v]), { label: 'feature importance' })) : null,
    h('section', { class: 'panel' }, h('h3', {}, 'Candidates compared on validation data'), leaderboardTables(r.leaderboard)),
    h('section', { class: 'panel' }, h('h3', {}, 'About this model'), facts(r)),
    championBox(r.champion),
    h('section', { class: 'panel' }, h('h3', {}, 'Version history'), versionsTable(machine, type, detail.versions ?? [], info.version, detail.pin)));
  return null;
}
