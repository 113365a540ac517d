// Model Training: pick a machine, the models (all four by default), the settings, and start a batch.
import { api } from '../api.js';
import { store } from '../store.js';
import { h, fill, add, clear, badge, alertBox, fmtDuration, fmtAge, fmtNum, fmtProgress, TYPES, TYPE_INFO, oversizeBadge } from '../ui.js';

// Seconds per data row per model on a Raspberry Pi 4 at quality "fast", used only until this device has
// finished a job of its own; measured jobs replace it.
const SIZE_ESTIMATE_S_PER_ROW = { classification: 5e-4, regression: 5e-4, anomaly: 4e-5, timeseries: 5e-4 };
const QUALITY_FACTOR = { fast: 1, standard: 2, best: 4 };
const FIXED_S = 1;

/** Per type: median seconds per row over this device's finished models (preferring the same quality). */
export function measuredRates(tasks, machines, quality) {
  const rows = new Map(machines.filter((m) => m.rows).map((m) => [m.machine_id, m.rows]));
  const out = {};
  for (const t of TYPES) {
    const all = []; const same = [];
    for (const task of tasks) {
      const mp = task.progress?.models?.[t];
      const n = rows.get(task.machine_id);
      if (!mp || mp.status !== 'SUCCESS' || !(mp.seconds > 0) || !n) continue;
      const rate = mp.seconds / n;
      all.push(rate);
      if (quality && task.params?.quality === quality) same.push(rate);
    }
    const pick = same.length ? same : all;
    if (pick.length) {
      pick.sort((a, b) => a - b);
      out[t] = { rate: pick[Math.floor(pick.length / 2)], n: pick.length };
    }
  }
  return out;
}

export function estimateSeconds(type, machine, rates, quality, timeLimit) {
  const m = rates[type];
  const raw = m ? m.rate * machine.rows : FIXED_S + SIZE_ESTIMATE_S_PER_ROW[type] * machine.rows * (QUALITY_FACTOR[quality] ?? 2);
  return { seconds: Math.min(raw, timeLimit), measured: Boolean(m), samples: m?.n ?? 0 };
}

function modelBadges(machine) {
  return h('div', { class: 'badges' }, TYPES.map((t) => {
    const live = machine.models?.[t];
    return live
      ? badge(`${TYPE_INFO[t].short} v${live.version} · ${fmtAge(live.trained_at)}`, live.oversize ? 'warn' : 'ok', live.oversize ? live.warning : `trained ${live.trained_at}`)
      : badge(`${TYPE_INFO[t].short}: none`, '');
  }));
}

function noMachines(data) {
  const broken = (data.machines ?? []).filter((m) => m.error);
  const dir = data.data_dir ?? 'DATA_DIR';
  return h('div', { class: 'panel', id: 'no-machines' },
    h('h2', {}, 'No machines with trainable data'),
    h('p', {}, 'millwright looks for one folder per machine in ', h('code', {}, `${dir}/machines/`), '.'),
    h('ul', {},
      h('li', {}, 'Add your own: create ', h('code', {}, `${dir}/machines/<machine_id>/`), ' with ', h('code', {}, 'train/val/test'),
        ' Parquet or CSV files (a ', h('code', {}, 'timestamp'), ' column, numeric sensor columns, optionally ', h('code', {}, 'rul'),
        '), or any CSV/Parquet table plus a ', h('code', {}, 'machine.toml'), ' naming its columns. The README section “Machine data” has the details.'),
      h('li', {}, 'Or try the demo fleet of 10 simulated machines: run ', h('code', {}, `millwright simulate --out ${dir}`),
        ' on the device (the daemon also creates it by itself when the machines folder is empty), then reload this page.')),
    broken.length ? h('div', {},
      h('h3', {}, 'Folders that could not be read'),
      h('ul', {}, broken.map((m) => h('li', {}, h('code', {}, m.machine_id), `: ${m.error}`)))) : null,
    h('button', { type: 'button', class: 'btn', onclick: () => window.dispatchEvent(new HashChangeEvent('hashchange')) }, 'Check again'));
}

export async function mount(root, args) {
  add(root, h('h1', {}, 'Model Training'),
    h('p', { class: 'muted' }, 'Train the four models of a predictive-maintenance system for one machine. Everything runs on this device.'));
  const running = h('div');
  add(root, running);
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading machines…'));
  add(root, body);

  const [data, taskList, health] = await Promise.all([
    api.machines(),
    api.tasks({ status: 'SUCCESS', limit: 200 }).catch(() => ({ tasks: [] })),
    api.health().catch(() => null),
  ]);
  store.set({ machines: data.machines });
  if (health?.running) {
    add(running, alertBox('info', 'A job is running:', `${health.running.machine_id}, ${fmtProgress(health.running.progress_percent)}. `,
      h('a', { href: `#/progress/${health.running.task_id}` }, 'Watch its progress')));
  }
  clear(body);
  const usable = (data.machines ?? []).filter((m) => !m.error);
  if (!usable.length) {
    add(body, noMachines(data));
    return null;
  }

  const state = {
    machine: usable.find((m) => m.machine_id === args[0]) ?? usable[0],
    // All four on every visit: a subset is a deliberate choice each time.
    selected: new Set(TYPES),
    timeLimit: 900,
    quality: '',
  };

  // --- machine selector ---
  const machineSet = h('fieldset', { class: 'panel' }, h('legend', {}, 'Machine'));
  const machineGrid = h('div', { class: 'machine-list', role: 'radiogroup', 'aria-label': 'Machine' });
  for (const m of data.machines) {
    const input = h('input', { type: 'radio', name: 'machine', value: m.machine_id, checked: m.machine_id === state.machine.machine_id, disabled: Boolean(m.error) });
    input.addEventListener('change', () => { state.machine = m; update(); });
    add(machineGrid, h('label', { class: 'choice', dataset: { machine: m.machine_id } }, input,
      h('div', {}, h('span', { class: 'title' }, m.display_name || m.machine_id), ' ', h('span', { class: 'meta mono' }, m.machine_id)),
      m.error
        ? h('div', { class: 'error' }, m.error)
        : h('div', { class: 'line2' }, h('span', { class: 'meta' }, `${m.family || 'machine'} · ${m.sensors} sensors · ${fmtNum(m.rows)} rows · ${m.lives} lives`), modelBadges(m))));
  }
  // A plant has dozens of machines: a search over names, ids and families, the list as tall as the screen allows.
  const search = h('input', { type: 'search', id: 'machine-search', placeholder: `Search ${data.machines.length} machines by name, id or family`, 'aria-label': 'Search machines' });
  search.addEventListener('input', () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const label of machineGrid.children) {
      const m = data.machines.find((x) => x.machine_id === label.dataset.machine);
      const text = `${m?.display_name ?? ''} ${m?.machine_id ?? ''} ${m?.family ?? ''}`.toLowerCase();
      label.hidden = !words.every((w) => text.includes(w));
    }
  });
  if (data.machines.length > 3) add(machineSet, search);
  add(machineSet, machineGrid);

  // --- model cards ---
  const modelSet = h('fieldset', { class: 'panel' }, h('legend', {}, 'Models to train'));
  const selectAll = h('button', { type: 'button', class: 'btn', id: 'select-all' }, 'Select all 4 (recommended)');
  selectAll.addEventListener('click', () => { state.selected = new Set(TYPES); for (const c of cards) c.input.checked = true; update(); });
  const warning = h('div', { class: 'alert warn', id: 'incomplete-warning', role: 'status' });
  const cards = TYPES.map((t) => {
    const info = TYPE_INFO[t];
    const input = h('input', { type: 'checkbox', name: 'model', value: t, checked: state.selected.has(t) });
    input.addEventListener('change', () => { if (input.checked) state.selected.add(t); else state.selected.delete(t); update(); });
    const estimate = h('div', { class: 'meta estimate' });
    const live = h('div', { class: 'badges' });
    const label = h('label', { class: 'choice', dataset: { type: t } }, input,
      h('div', { class: 'title' }, info.name), h('div', { class: 'question' }, `“${info.question}”`),
      h('div', { class: 'meta' }, info.purpose), h('div', { class: 'meta' }, info.description), estimate, live);
    return { t, input, estimate, live, label };
  });
  add(modelSet, h('div', { class: 'row' }, h('span', { class: 'muted' }, 'A complete system has all four: each answers a different question.'), h('span', { class: 'spacer' }), selectAll),
    h('div', { class: 'grid four' }, cards.map((c) => c.label)), warning);

  // --- settings ---
  const settings = h('fieldset', { class: 'panel' }, h('legend', {}, 'Settings'));
  const limits = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Time limit per model' },
    [15, 30, 60].map((min) => {
      const input = h('input', { type: 'radio', name: 'time-limit', value: String(min * 60), checked: min * 60 === state.timeLimit });
      input.addEventListener('change', () => { state.timeLimit = min * 60; update(); });
      return h('label', {}, input, `${min} min`);
    }));
  const num = (id, label, value, attrs, hint) => h('div', { class: 'field' }, h('label', { for: id }, label),
    h('input', { id, type: 'number', value: String(value), ...attrs }), hint ? h('span', { class: 'hint' }, hint) : null);
  const quality = h('select', { id: 'quality' },
    h('option', { value: '' }, 'device default'), h('option', { value: 'fast' }, 'fast'), h('option', { value: 'standard' }, 'standard'), h('option', { value: 'best' }, 'best (slower)'));
  quality.addEventListener('change', () => { state.quality = quality.value; update(); });
  const exclude = h('input', { id: 'exclude-sensors', type: 'text', placeholder: 'e.g. speed_rpm, voltage_V', autocomplete: 'off' });
  const advanced = h('details', { id: 'advanced' }, h('summary', {}, 'Advanced'),
    h('div', { class: 'fields' },
      num('horizon-hours', 'Failure horizon (hours)', 48, { min: '1', max: '10000', step: '1' }, 'Classification: “fails within this many hours”.'),
      num('contamination', 'Anomaly contamination', 0.02, { min: '0.001', max: '0.5', step: '0.001' }, 'Share of healthy readings allowed to alarm.'),
      num('alarm-k', 'Anomaly alarm needs … readings', 1, { min: '1', max: '60', step: '1' }, 'k: how many recent readings must be over the threshold.'),
      num('alarm-n', '… of the last … readings', 1, { min: '1', max: '60', step: '1' }, 'n: 3 of 5 ignores lone spikes; 1 of 1 alarms on every reading.'),
      num('forecast-hours', 'Forecast horizon (hours)', 24, { min: '1', max: '720', step: '1' }, 'How far ahead the forecaster predicts.'),
      num('max-train-rows', 'Most training rows', '', { min: '1000', max: '100000000', step: '1000', placeholder: '250000' },
        'Past this many, training and validation rows are thinned evenly across lives (test rows never are). Empty: the default, 250,000.'),
      h('div', { class: 'field' }, h('label', { for: 'quality' }, 'Quality preset'), quality, h('span', { class: 'hint' }, 'More candidates and trees: slower, sometimes better.')),
      h('div', { class: 'field' }, h('label', { for: 'exclude-sensors' }, 'Sensors to exclude'), exclude, h('span', { class: 'hint' }, 'Comma-separated sensor names (e.g. a broken sensor).'))));
  add(settings, h('div', { class: 'row' }, h('span', { id: 'time-limit-label' }, 'Time limit per model:'), limits), advanced);

  // --- start ---
  const start = h('button', { type: 'submit', class: 'btn primary big', id: 'start-training' });
  const summary = h('div', { class: 'muted', id: 'start-summary', 'aria-live': 'polite' });
  const error = h('div', { id: 'start-error' });
  const form = h('form', { id: 'train-form', novalidate: true }, machineSet, modelSet, settings,
    h('div', { class: 'sticky-actions' }, h('div', { class: 'row' }, start, summary), error));
  add(body, form);

  const rates = () => measuredRates(taskList.tasks ?? [], usable, state.quality || health?.training_quality);

  function update() {
    const n = state.selected.size;
    start.textContent = n === 4 ? 'Train all 4 models' : n === 1 ? 'Train 1 model' : `Train ${n} models`;
    start.disabled = n === 0;
    selectAll.disabled = n === 4;
    const missing = TYPES.filter((t) => !state.selected.has(t));
    warning.hidden = n === 4;
    fill(warning, h('strong', {}, `Incomplete ML system: ${missing.length} model(s) not selected`),
      ` (${missing.map((t) => TYPE_INFO[t].name).join(', ')}). The machine will lack ${missing.length === 1 ? 'that answer' : 'those answers'}; training a subset is still allowed.`);
    const r = rates();
    let total = 0; let measured = true;
    for (const c of cards) {
      const e = estimateSeconds(c.t, state.machine, r, state.quality || 'fast', state.timeLimit);
      c.estimate.textContent = `Estimated time: ≈ ${fmtDuration(Math.max(1, e.seconds))} ${e.measured ? `(measured on this device, ${e.samples} past job${e.samples === 1 ? '' : 's'})` : '(rough estimate from the data size)'}`;
      if (state.selected.has(c.t)) { total += e.seconds; measured &&= e.measured; }
      const live = state.machine.models?.[c.t];
      fill(c.live, live
        ? [badge(`exists: v${live.version}, ${fmtAge(live.trained_at)}`, 'ok'), oversizeBadge(live)]
        : badge('not trained yet', ''));
    }
    const pending = store.get().health?.queue?.pending ?? health?.queue?.pending ?? 0;
    const busy = Boolean(store.get().health?.running ?? health?.running);
    const ahead = pending + (busy ? 1 : 0);
    summary.textContent = n ? `${state.machine.machine_id} · estimated total ≈ ${fmtDuration(Math.max(1, total))}${measured ? '' : ' (rough)'}` +
      (ahead ? ` · ${ahead} job${ahead === 1 ? '' : 's'} ahead in the queue` : ' · starts at once') : 'Select at least one model.';
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(error);
    const val = (id) => Number(form.querySelector(`#${id}`).value);
    const body = {
      machine_id: state.machine.machine_id,
      model_types: TYPES.filter((t) => state.selected.has(t)),
      time_limit_per_model: state.timeLimit,
      horizon_hours: val('horizon-hours'),
      contamination: val('contamination'),
      forecast_hours: val('forecast-hours'),
    };
    if (state.quality) body.quality = state.quality;
    const [k, n] = [val('alarm-k'), val('alarm-n')];
    if (!(Number.isInteger(k) && Number.isInteger(n) && k >= 1 && k <= n && n <= 60)) {
      add(error, alertBox('bad', 'Check the settings:', 'an alarm needs k of the last n readings with 1 ≤ k ≤ n ≤ 60.'));
      return;
    }
    if (n > 1) body.alarm_k_of_n = [k, n];
    const cap = form.querySelector('#max-train-rows').value.trim();
    if (cap) {
      const rows = Number(cap);
      if (!(Number.isInteger(rows) && rows >= 1000 && rows <= 100000000)) {
        add(error, alertBox('bad', 'Check the settings:', 'most training rows must be a whole number between 1,000 and 100,000,000 (or empty for the default).'));
        return;
      }
      body.max_train_rows = rows;
    }
    const ex = exclude.value.split(/[,\s]+/).map((x) => x.trim()).filter(Boolean);
    if (ex.length) body.exclude_sensors = ex;
    for (const k of ['horizon_hours', 'contamination', 'forecast_hours']) {
      if (!Number.isFinite(body[k]) || body[k] <= 0) { add(error, alertBox('bad', 'Check the settings:', `${k.replace('_', ' ')} must be a positive number.`)); return; }
    }
    start.disabled = true;
    try {
      const r = await api.trainBatch(body);
      location.hash = `#/progress/${r.task_id}`;
    } catch (e) {
      add(error, alertBox('bad', e.status === 401 ? 'Not logged in:' : 'Could not start training:', e.message));
      start.disabled = false;
    }
  });

  update();
  // The queue depth shown beside the button follows the status line's health poll.
  const timer = setInterval(update, 5000);
  return () => clearInterval(timer);
}
