// Small DOM helpers, formatters and the words the page uses for model types and metrics.
// Elements are built with properties, never innerHTML, so server text cannot inject markup and the strict
// Content-Security-Policy (no inline styles or scripts) holds.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function applyProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'width%') el.style.width = `${v}%`;
    else if (k in el && !k.startsWith('aria') && k !== 'role' && k !== 'for' && k !== 'list') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

/** Hands a file made in the page to the browser's downloads. */
export function saveFile(blob, name) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** Appends children (nested arrays flattened, null/false skipped) — unlike the DOM's append, which prints them. */
export function add(el, ...children) { append(el, children); return el; }

/** Replaces an element's children. */
export function fill(el, ...children) { return add(clear(el), ...children); }

export function bar(percent, { big = false, kind = '', label = 'progress' } = {}) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  const inner = h('span');
  inner.style.width = `${p}%`;
  return h('div', { class: ['bar', big && 'big', kind], role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
    'aria-valuenow': Math.round(p), 'aria-label': label }, inner);
}

export function setBar(el, percent) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  el.setAttribute('aria-valuenow', String(Math.round(p)));
  el.firstChild.style.width = `${p}%`;
}

export function badge(text, kind = '', title) { return h('span', { class: ['badge', kind], title }, text); }

export function alertBox(kind, title, ...body) {
  return h('div', { class: ['alert', kind], role: kind === 'bad' ? 'alert' : 'status' }, title ? h('strong', {}, title) : null, ...body);
}

export function toast(kind, text, ms = 5000) {
  const box = document.getElementById('toasts');
  if (!box) return;
  const el = alertBox(kind, null, text);
  box.append(el);
  setTimeout(() => el.remove(), ms);
}

// --- formatting -------------------------------------------------------------------------------------------

export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return '–';
  const x = Number(v);
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞';
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
  if (Number.isInteger(x)) return x.toLocaleString('en');
  return x.toLocaleString('en', { maximumSignificantDigits: digits + (a >= 100 ? 1 : 0), minimumSignificantDigits: 1 });
}

export function fmtPct(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '–';
  return `${(Number(v) * 100).toFixed(digits)} %`;
}

/** A job's progress (0–100) in whole percents: "57 %", never "5.76 %". */
export function fmtProgress(percent) {
  return `${Math.floor(Number.isFinite(percent) ? percent : 0)} %`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0; let x = Number(n);
  while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
  return `${x >= 100 || i === 0 ? Math.round(x) : x.toFixed(1)} ${u[i]}`;
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(Number(sec))) return '–';
  const s = Math.max(0, Math.round(Number(sec)));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60 ? `${s % 60} s` : ''}`.trim();
  const hr = Math.floor(m / 60);
  return `${hr} h ${m % 60} min`;
}

export function parseTime(t) { const x = Date.parse(t); return Number.isNaN(x) ? null : x; }

export function fmtAge(t) {
  const x = parseTime(t);
  if (x === null) return '';
  const s = (Date.now() - x) / 1000;
  if (s < 90) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400 * 2) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function fmtTime(t) {
  const x = parseTime(t);
  return x === null ? '–' : new Date(x).toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' });
}

// --- words ----------------------------------------------------------------------------------------------

export const TYPES = ['classification', 'regression', 'anomaly', 'timeseries'];

export const TYPE_INFO = {
  classification: { name: 'Classification', short: 'Failure', question: 'Will this machine fail soon?',
    purpose: 'Flags machines likely to fail within the horizon, so maintenance can be planned.',
    description: 'Gradient-boosted trees on rolling sensor features; threshold tuned for F1 on validation data.' },
  regression: { name: 'Regression (RUL)', short: 'RUL', question: 'How much time until failure?',
    purpose: 'Estimates remaining useful life in hours, to schedule parts and downtime.',
    description: 'Gradient-boosted trees predicting capped remaining useful life, validated on unseen lives.' },
  anomaly: { name: 'Anomaly detection', short: 'Anomaly', question: 'Is current behaviour abnormal?',
    purpose: 'Catches unusual behaviour even for failures never seen before, and names the sensors driving it.',
    description: 'Isolation forest, robust z-scores and Mahalanobis distance, fitted on healthy data only.' },
  timeseries: { name: 'Time-series forecast', short: 'Forecast', question: 'What will the sensors read tomorrow?',
    purpose: 'Forecasts every sensor 24 h ahead with 80 % and 95 % intervals.',
    description: 'Per sensor the best of naive, seasonal, drift, Holt–Winters and STL+ETS by rolling backtest.' },
};

export const METRIC_LABEL = {
  f1: 'F1', precision: 'Precision', recall: 'Recall', roc_auc: 'ROC AUC', pr_auc: 'PR AUC', accuracy: 'Accuracy',
  rmse: 'RMSE (h)', rmse_hours: 'RMSE (h)', mae: 'MAE', r2: 'R²', bias: 'Bias (h)', mae_critical: 'MAE in the critical range (h)',
  nasa_score: 'NASA score', mase: 'MASE', mape: 'MAPE (%)', smape: 'sMAPE (%)', coverage80: '80 % interval coverage',
  coverage95: '95 % interval coverage', alarm_rate: 'Alarm rate', healthy_alarm_rate: 'Alarm rate on healthy rows',
};
export const metricLabel = (k) => METRIC_LABEL[k] ?? k.replaceAll('_', ' ');

// Direction per metric, so a card can say "better" or "worse" than its baseline; never used across metrics.
export const HIGHER_IS_BETTER = { f1: true, precision: true, recall: true, roc_auc: true, pr_auc: true, accuracy: true, r2: true,
  rmse: false, rmse_hours: false, mae: false, mae_critical: false, nasa_score: false, mase: false, mape: false, smape: false };

export function headlineText(hl) {
  if (!hl || hl.value === undefined) return '';
  return `${metricLabel(hl.metric)} ${fmtNum(hl.value)} (baseline ${fmtNum(hl.baseline)})`;
}

export function compare(value, base, higherIsBetter) {
  if (!Number.isFinite(value) || !Number.isFinite(base) || higherIsBetter === undefined) return null;
  if (value === base) return 'same as';
  return (higherIsBetter ? value > base : value < base) ? 'better than' : 'worse than';
}

export function statusBadge(status) {
  const kind = { SUCCESS: 'ok', FAILURE: 'bad', REVOKED: 'warn', PROGRESS: 'info', STARTED: 'info', PENDING: '', SKIPPED: '' }[status] ?? '';
  const text = { PROGRESS: 'running', STARTED: 'starting', REVOKED: 'cancelled', SUCCESS: 'done', FAILURE: 'failed', PENDING: 'waiting', 'NOT RUN': 'not run' }[status] ?? String(status).toLowerCase();
  return badge(text, kind);
}

export function oversizeBadge(info) {
  if (!info || !info.oversize) return null;
  return badge(`⚠ large model: ${fmtBytes(info.size_bytes)}`, 'warn', info.warning || 'over the configured size limit (default 500 MB)');
}

// Sensor and feature names in plant words, as the daemon's verdicts say them (src/verdict/words.rs):
// `overall_rms_mm_s__max_72` → "max of vibration RMS over 72 h".
const UNIT_SUFFIXES = ['mm_s', 'm3_h', 'c', 'degc', 'kw', 'a', 'v', 'bar', 'rpm', 'hz', 'pct', 'kpa', 'psi', 'nm', 'l_min', 'g'];
const WORDS = { rms: 'RMS', temp: 'temperature', dp: 'differential pressure', pf: 'power factor', vib: 'vibration', de: 'drive-end', nde: 'non-drive-end' };
const STATS = { std: 'spread', slope: 'trend', last: 'latest', value: 'latest' };

export function sensorWords(name) {
  let stem = String(name).toLowerCase();
  let unit = '';
  for (const u of UNIT_SUFFIXES) if (stem.endsWith(`_${u}`)) { stem = stem.slice(0, -u.length - 1); unit = u; break; }
  let words = stem.split('_').filter(Boolean).map((w) => WORDS[w] ?? w);
  if (unit === 'mm_s' && !words.some((w) => w.includes('vibration'))) words = ['vibration', ...words.filter((w) => w !== 'overall' && w !== 'velocity')];
  return words.length ? words.join(' ') : String(name);
}

export function featureWords(name, intervalS = 3600) {
  const i = String(name).indexOf('__');
  if (i < 0) return sensorWords(name);
  const sensor = sensorWords(name.slice(0, i));
  const m = /^(.*)_(\d+)$/.exec(name.slice(i + 2));
  const stat = (m ? m[1] : name.slice(i + 2));
  const said = STATS[stat] ?? stat;
  if (!m) return `${said} of ${sensor}`;
  const h = (Number(m[2]) * intervalS) / 3600;
  const span = h < 1 ? `${Math.max(1, Math.round(h * 60))} min` : h < 96 ? `${Math.round(h)} h` : `${Math.round(h / 24)} days`;
  return `${said} of ${sensor} over ${span}`;
}
