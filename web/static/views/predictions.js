// Predictions: the four live answers for a machine's latest data, and a what-if from pasted or uploaded CSV.
import { api } from '../api.js';
import { store } from '../store.js';
import { h, fill, add, clear, badge, alertBox, bar, fmtNum, fmtPct, fmtTime, fmtAge, toast, saveFile, TYPES, TYPE_INFO } from '../ui.js';
import { lineChart, hbars, legend } from '../charts.js';

const HEALTH_KIND = { healthy: 'ok', degrading: 'info', warning: 'warn', critical: 'bad' };
const URGENCY_KIND = { low: 'ok', medium: 'info', high: 'warn', critical: 'bad' };

/** CSV with a header row (`timestamp` plus sensor columns) → prediction rows. Throws with the line number. */
export function parseCsv(text) {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (lines.length < 2) throw new Error('paste a header line (timestamp, sensor names) and at least one line of readings');
  const delim = [',', ';', '\t'].map((d) => [d, lines[0].split(d).length]).sort((a, b) => b[1] - a[1])[0][0];
  const header = lines[0].split(delim).map((x) => x.trim().replace(/^"|"$/g, ''));
  const tsCol = header.findIndex((c) => c.toLowerCase() === 'timestamp');
  if (tsCol < 0) throw new Error('line 1: the header needs a “timestamp” column');
  if (header.length < 2) throw new Error('line 1: the header names no sensor column');
  return lines.slice(1).map((line, i) => {
    const cells = line.split(delim).map((x) => x.trim().replace(/^"|"$/g, ''));
    if (cells.length !== header.length) throw new Error(`line ${i + 2}: ${cells.length} values, the header has ${header.length}`);
    const row = {};
    header.forEach((name, j) => {
      const v = cells[j];
      if (j === tsCol) { row.timestamp = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v; return; }
      if (v === '' || /^(nan|na|null)$/i.test(v)) { row[name] = null; return; }
      const x = Number(v);
      if (!Number.isFinite(x)) throw new Error(`line ${i + 2}, column ${name}: “${v}” is not a number`);
      row[name] = x;
    });
    return row;
  });
}

function versionLine(p) {
  return h('div', { class: 'muted' }, `answered by v${p.version}, trained ${fmtTime(p.trained_at)} (${fmtAge(p.trained_at)})`);
}

function answerPanel(machine, type, p) {
  const info = TYPE_INFO[type];
  const box = h('section', { class: ['panel', 'answer', type === 'timeseries' && 'wide'], dataset: { type } }, h('h3', {}, info.name, h('span', { class: 'muted' }, ` — ${info.question}`)));
  if (!p || p.available === false) {
    add(box, h('p', {}, p?.damaged ? p.error : 'No model yet for this machine.'), h('a', { class: 'btn', href: `#/train/${encodeURIComponent(machine)}` }, 'Train it'));
    return box;
  }
  if (p.error) { add(box, alertBox('bad', 'Could not answer:', p.error), versionLine(p)); return box; }
  const a = p.answer ?? {};
  if (type === 'classification') {
    add(box, h('div', { class: 'big-number' }, fmtPct(a.failure_probability)), h('div', {}, 'probability of ', a.target ?? 'failure'),
      h('div', { class: 'row' }, badge(a.health ?? '?', HEALTH_KIND[a.health] ?? ''), a.will_fail ? badge('above the alarm threshold', 'bad') : badge('below the alarm threshold', 'ok'),
        h('span', { class: 'muted' }, `threshold ${fmtPct(a.threshold)}`)));
  } else if (type === 'regression') {
    add(box, h('div', { class: 'big-number' }, `${a.at_cap ? '≥ ' : ''}${fmtNum(a.rul_hours, 3)} h`),
      h('div', {}, `about ${fmtNum(a.rul_days, 2)} days of useful life left`, a.at_cap ? ` (the model's cap is ${fmtNum(a.cap_hours)} h: at least this long)` : ''),
      h('div', { class: 'row' }, h('span', {}, 'Urgency'), badge(a.urgency ?? '?', URGENCY_KIND[a.urgency] ?? '')));
  } else if (type === 'anomaly') {
    add(box, h('div', { class: 'big-number' }, fmtNum(a.anomaly_score, 3)), bar((a.anomaly_score ?? 0) * 100, { kind: a.is_anomaly ? 'bad' : '', label: 'anomaly score' }),
      h('div', { class: 'row' }, a.is_anomaly ? badge('abnormal', 'bad') : badge('normal', 'ok'), h('span', { class: 'muted' }, `threshold ${fmtNum(a.threshold, 3)}`)),
      (a.top_sensors ?? []).length ? [h('h4', {}, 'Sensors driving the score'), hbars(a.top_sensors, { label: 'sensors driving the anomaly score' })] : null);
  } else if (type === 'timeseries') {
    const step = (a.interval_s ?? 3600) * 1000;
    const start = Date.parse(a.start);
    const fmt = (ms) => new Date(ms).toLocaleString('en-GB', { hour: '2-digit', minute: '2-digit', timeZone: 'UTC' });
    add(box, h('div', {}, `Next ${fmtNum(a.horizon_hours)} h from ${fmtTime(a.start)}`),
      legend([['l1', 'forecast'], ['lb', '80 % / 95 % interval']]),
      h('div', { class: 'grid', id: 'forecast-answers' }, (a.sensors ?? []).map((sn) => {
        const t = (i) => (sn.timestamps?.[i] ? Date.parse(sn.timestamps[i]) : start + i * step);
        const pts = (arr) => (arr ?? []).map((v, i) => [t(i), v ?? NaN]);
        return h('figure', { class: 'forecast-chart' }, h('figcaption', { class: 'mono' }, sn.sensor),
          lineChart({ title: `${sn.sensor} forecast`, width: 320, height: 150, xFormat: fmt, xTime: true, yLabel: sn.unit || '',
            bands: [{ lo: pts(sn.lo95), hi: pts(sn.hi95), cls: 'band95' }, { lo: pts(sn.lo80), hi: pts(sn.hi80), cls: 'band80' }],
            series: [{ points: pts(sn.mean), cls: 's1', name: 'forecast' }] }));
      })));
  }
  add(box, versionLine(p));
  return box;
}

/** The one verdict over the answers below it: what to do, and how conflicting answers were weighed. */
function verdictBox(v) {
  if (!v || !v.severity) return null;
  const light = { act: 'red', plan: 'orange', watch: 'yellow', ok: 'green' }[v.severity] ?? 'grey';
  return h('section', { class: ['panel', 'verdict', `light-${light}`], id: 'prediction-verdict' },
    h('h2', {}, `Verdict: ${v.label}`), h('p', { class: 'verdict-sentence' }, v.sentence),
    v.explanation?.length ? h('details', { open: v.contradiction }, h('summary', {}, 'How the models were weighed'),
      h('ul', { class: 'verdict-why' }, v.explanation.map((l) => h('li', {}, l)))) : null);
}

function answers(machine, res) {
  return h('div', { class: 'grid wide prediction-answers' },
    verdictBox(res.verdict),
    !res.complete_system ? alertBox('warn', 'Incomplete ML system:', `no ${res.missing_models.join(', ')} model for this machine.`) : null,
    TYPES.map((t) => answerPanel(machine, t, res.predictions?.[t])));
}

export async function mount(root, args) {
  add(root, h('h1', {}, 'Predictions'));
  const data = await api.machines();
  const machines = (data.machines ?? []).filter((m) => !m.error);
  if (!machines.length) {
    add(root, h('div', { class: 'panel' }, h('p', {}, 'No machines yet.'), h('a', { href: '#/train' }, 'See Model Training for how to add data.')));
    return null;
  }
  const machine = machines.find((m) => m.machine_id === args[0]) ?? machines.find((m) => m.models_trained) ?? machines[0];
  const select = h('select', { id: 'predict-machine' }, machines.map((m) => h('option', { value: m.machine_id, selected: m === machine }, `${m.machine_id} (${m.models_trained}/4 models)`)));
  select.addEventListener('change', () => { location.hash = `#/predict/${encodeURIComponent(select.value)}`; });
  const run = h('button', { type: 'button', class: 'btn primary', id: 'predict-latest' }, 'Predict from the latest data');
  const out = h('div', { id: 'latest-answers', 'aria-live': 'polite' });
  add(root, h('div', { class: 'row' }, h('label', { for: 'predict-machine' }, 'Machine'), select, run), out);

  async function latest() {
    fill(out, h('p', { class: 'muted' }, 'Asking the models…'));
    try {
      const res = await api.predict(machine.machine_id, {});
      const exportCsv = h('button', { type: 'button', class: 'btn small', id: 'predict-csv', title: 'The answers as one value per row, for a spreadsheet' }, 'Export CSV');
      exportCsv.addEventListener('click', async () => {
        try {
          const text = await api.predictCsv(machine.machine_id, {});
          saveFile(new Blob([text], { type: 'text/csv' }), `${machine.machine_id}-prediction.csv`);
        } catch (e) { toast('bad', `Export failed: ${e.message}`); }
      });
      fill(out, h('div', { class: 'row' }, h('p', { class: 'muted' }, `From ${res.source}.`), h('span', { class: 'spacer' }), exportCsv), answers(machine.machine_id, res));
    } catch (e) {
      fill(out, alertBox('bad', 'No prediction:', e.message));
    }
  }
  run.addEventListener('click', latest);

  // What-if: readings pasted or read from a CSV file, never uploaded anywhere but this device.
  const csv = h('textarea', { id: 'whatif-csv', spellcheck: false, placeholder: 'timestamp,bearing_de_temp_C,current_A,...\n2024-05-01T00:00:00Z,41.2,15.8,...' });
  const file = h('input', { type: 'file', id: 'whatif-file', accept: '.csv,text/csv,text/plain' });
  file.addEventListener('change', async () => { if (file.files?.[0]) csv.value = await file.files[0].text(); });
  const til = h('input', { type: 'number', id: 'whatif-til', min: '0', step: 'any', placeholder: 'optional' });
  const whatifOut = h('div', { id: 'whatif-answers', 'aria-live': 'polite' });
  const go = h('button', { type: 'submit', class: 'btn primary', id: 'whatif-run' }, 'Predict from these readings');
  const form = h('form', { class: 'panel', id: 'whatif-form' },
    h('h2', {}, 'What if? Predict from your own readings'),
    h('p', { class: 'muted' }, 'Paste CSV (a header with ', h('code', {}, 'timestamp'), ' and the sensor names, oldest row first; enough rows to cover the model’s windows, e.g. 72+ hourly rows) or choose a file.'),
    h('label', { for: 'whatif-csv' }, 'Readings (CSV)'), csv,
    h('div', { class: 'row' }, h('div', { class: 'field' }, h('label', { for: 'whatif-file' }, 'or upload a CSV file'), file),
      h('div', { class: 'field' }, h('label', { for: 'whatif-til' }, 'Hours since the current life began'), til)),
    h('div', { class: 'row' }, go), whatifOut);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(whatifOut);
    let rows;
    try { rows = parseCsv(csv.value); } catch (e) { add(whatifOut, alertBox('bad', 'Cannot read the CSV:', e.message)); return; }
    const body = { rows };
    if (til.value !== '') body.time_in_life_h = Number(til.value);
    go.disabled = true;
    try {
      const res = await api.predict(machine.machine_id, body);
      add(whatifOut, h('p', { class: 'muted' }, `From ${rows.length} pasted rows.`), answers(machine.machine_id, res));
    } catch (e) {
      add(whatifOut, alertBox('bad', 'No prediction:', e.message));
    } finally { go.disabled = false; }
  });
  add(root, form);

  const { auth } = store.get();
  if (!auth.auth_required || auth.logged_in) latest();
  else add(out, alertBox('info', 'Log in to ask the models.', 'Predictions need the device’s access token: press “Predict from the latest data” and enter it.'));
  return null;
}
