// Fleet: the home view. One tile per machine, worst first — traffic light, the verdict in one sentence,
// RUL in days, the sensors driving it, the age of the data and of the models — and the active alerts with
// acknowledge. Grey is for "no verdict" (stale data, no models); colour only where something needs someone.
import { api } from '../api.js';
import { h, fill, add, alertBox, toast, fmtTime } from '../ui.js';

const LIGHT_WORD = { red: 'act now', orange: 'plan maintenance', yellow: 'watch', green: 'ok', grey: 'no verdict' };

function age(hours) {
  if (hours === null || hours === undefined) return '–';
  if (hours < 1.5) return `${Math.max(1, Math.round(hours * 60))} min`;
  if (hours < 48) return `${Math.round(hours)} h`;
  return `${Math.round(hours / 24)} days`;
}

// The drift of the latest readings from the training data, in a few words: the level and the sensor that moved most.
function driftText(d) {
  if (!d) return '–';
  if (!d.level) return 'not judged yet';
  const top = d.sensors?.[0];
  return d.level === 'stable' || !top ? d.level : `${d.level}: ${top.sensor} (${Math.round(top.outside * 100)} % outside the trained range)`;
}

function tile(t) {
  const models = t.models_state === 'no_models' ? 'no models yet'
    : t.models_state === 'models_stale' ? `models stale (${age(t.models_age_h)} old): retrain` : `models ${age(t.models_age_h)} old`;
  return h('li', { class: ['tile', `light-${t.light}`], dataset: { machine: t.machine_id, light: t.light, state: t.state } },
    h('a', { href: `#/fleet/${encodeURIComponent(t.machine_id)}`, class: 'tile-link' },
      h('span', { class: 'light', role: 'img', 'aria-label': LIGHT_WORD[t.light] ?? t.light }),
      h('span', { class: 'tile-name' }, t.display_name || t.machine_id),
      h('span', { class: 'tile-label' }, t.label)),
    h('p', { class: 'tile-sentence' }, t.sentence),
    h('dl', { class: 'tile-facts' },
      // A stale machine's RUL describes the past: not shown as if it were current.
      h('dt', {}, 'RUL'), h('dd', {}, t.state !== 'fresh' || t.rul_days === null || t.rul_days === undefined ? '–' : `${t.rul_days} days`),
      h('dt', {}, 'Driven by'), h('dd', {}, (t.drivers ?? []).join(', ') || '–'),
      h('dt', {}, 'Data'), h('dd', {}, t.data_age_h === null || t.data_age_h === undefined ? '–' : `${age(t.data_age_h)} old`),
      h('dt', {}, 'Models'), h('dd', { title: t.stale_reason ?? '' }, models),
      h('dt', {}, 'Drift'), h('dd', { class: 'tile-drift', dataset: { level: t.drift?.level ?? '' } }, driftText(t.drift))),
    t.alerts_active ? h('p', { class: 'tile-alerts' }, `${t.alerts_active} active alert${t.alerts_active > 1 ? 's' : ''}`) : '');
}

function alertRow(a, onAck) {
  const btn = h('button', { type: 'button', class: 'btn small' }, 'Acknowledge');
  btn.addEventListener('click', () => onAck(a, btn));
  const acked = a.acked_by ? `acknowledged by ${a.acked_by}, ${fmtTime(a.acked_at)}` : '';
  return h('li', { class: ['alert-row', a.severity === 'act' ? 'bad' : 'warn'], dataset: { alert: a.id, kind: a.kind, status: a.status } },
    h('strong', {}, a.machine_id), ' ', h('span', {}, a.message),
    h('div', { class: 'muted' }, `raised ${fmtTime(a.raised_at)}`, acked ? ` · ${acked}` : '', a.status === 'cleared' ? ` · cleared ${fmtTime(a.cleared_at)}` : ''),
    a.status === 'active' && !a.acked_by ? btn : '');
}

const num = (x, digits) => (typeof x === 'number' ? x.toFixed(digits) : '–');

// Each sensor's drift: how far its latest readings moved from the data the models were trained on.
function driftTable(d) {
  if (!d) return '';
  const head = h('p', { class: 'muted' }, d.level
    ? `Drift of the latest ${d.rows} rows (${fmtTime(d.from)} – ${fmtTime(d.to)}) from the training data: ${d.level}. `
      + "Large when a quarter of a sensor's readings lie outside the range the models were trained on (a regime they never saw); "
      + 'PSI says how much its distribution changed at all (above 0.25: much, as when a machine wears).'
    : (d.note ?? 'Drift not judged.'));
  if (!d.sensors?.length) return h('div', { id: 'drift' }, head);
  return h('div', { id: 'drift' }, head, h('div', { class: 'table-wrap' }, h('table', { class: 'drift-table' },
    h('thead', {}, h('tr', {}, ['Sensor', 'Outside the trained range', 'PSI', 'Drift', 'Median now', 'Median in training'].map((c) => h('th', {}, c)))),
    h('tbody', {}, d.sensors.map((s) => h('tr', { dataset: { sensor: s.sensor, level: s.level } },
      h('td', {}, s.sensor), h('td', {}, `${Math.round(s.outside * 100)} %`), h('td', {}, num(s.psi, 2)), h('td', {}, s.level), h('td', {}, num(s.recent_median, 2)), h('td', {}, num(s.training_median, 2))))))));
}

// The latest scores, newest first: how the verdict and the answers moved as readings came in.
function scoreTable(list) {
  if (!list.length) return h('p', { class: 'muted', id: 'scores' }, 'No scores kept yet: they are written as new data is scored.');
  const rows = [...list].reverse().map((s) => h('tr', {},
    h('td', {}, fmtTime(s.scored_at)), h('td', {}, s.label ?? s.state ?? '–'),
    h('td', {}, num(s.answers?.classification?.failure_probability, 2)), h('td', {}, num(s.answers?.regression?.rul_hours, 0)),
    h('td', {}, num(s.answers?.anomaly?.anomaly_score, 2)), h('td', {}, s.drift?.level ?? '–')));
  return h('div', { class: 'table-wrap', id: 'scores' }, h('table', { class: 'score-table' },
    h('thead', {}, h('tr', {}, ['Scored', 'Verdict', 'Failure probability', 'RUL (h)', 'Anomaly score', 'Drift'].map((c) => h('th', {}, c)))),
    h('tbody', {}, rows)));
}

function detail(root, v, scores) {
  const verdict = v.verdict;
  add(root, h('section', { class: ['panel', 'verdict', `light-${v.tile.light}`], id: 'verdict' },
    h('h2', {}, v.tile.display_name || v.machine_id, ': ', verdict.label),
    h('p', { class: 'verdict-sentence' }, verdict.sentence),
    verdict.explanation?.length ? h('ul', { class: 'verdict-why' }, verdict.explanation.map((l) => h('li', {}, l))) : '',
    v.tile.stale_reason ? h('p', { class: 'warn', id: 'stale-reason' }, `Models stale: ${v.tile.stale_reason}. Retrain them.`) : '',
    driftTable(v.tile.drift),
    h('h3', {}, 'Score history'), scoreTable(scores?.scores ?? []),
    h('p', {}, h('a', { href: `#/predict/${encodeURIComponent(v.machine_id)}` }, 'Predictions'), ' · ',
      h('a', { href: `#/results/${encodeURIComponent(v.machine_id)}` }, 'Model results'), ' · ',
      h('a', { href: `#/train/${encodeURIComponent(v.machine_id)}` }, 'Train'))));
}

export async function mount(root, args) {
  add(root, h('h1', {}, 'Fleet'));
  const focus = h('div', { id: 'fleet-detail' });
  const summary = h('p', { class: 'muted', id: 'fleet-summary' });
  const search = h('input', { type: 'search', id: 'fleet-search', placeholder: 'Find a machine', 'aria-label': 'Find a machine' });
  const tiles = h('ul', { class: 'tiles', id: 'fleet-tiles' });
  const alerts = h('ul', { class: 'alert-list', id: 'alerts' });
  add(root, focus, h('div', { class: 'row' }, search, h('span', { class: 'spacer' }), summary,
    h('a', { class: 'btn small', href: '/api/fleet.csv', download: 'fleet.csv', id: 'fleet-csv' }, 'Export CSV')),
  tiles, h('h2', {}, 'Alerts'), alerts);
  let last = [];

  async function ack(a, btn) {
    const by = prompt('Acknowledge as (your name):', localStorage.getItem('millwright-name') ?? '');
    if (by === null) return;
    localStorage.setItem('millwright-name', by);
    btn.disabled = true;
    try { await api.ackAlert(a.id, by); toast('ok', 'Alert acknowledged.'); } catch (e) { toast('bad', e.message); btn.disabled = false; }
    refresh();
  }

  function draw() {
    const q = search.value.trim().toLowerCase();
    const shown = last.filter((t) => !q || `${t.machine_id} ${t.display_name}`.toLowerCase().includes(q));
    fill(tiles, shown.map(tile));
  }

  async function refresh() {
    let fleet, list;
    try { [fleet, list] = await Promise.all([api.fleet(), api.alerts()]); } catch (e) {
      fill(tiles, alertBox('bad', 'Cannot load the fleet:', e.message)); return;
    }
    const s = fleet.summary;
    summary.textContent = `${fleet.total} machines · ${s.act_now} act now · ${s.plan} plan · ${s.watch} watch · ${s.ok} ok · ${s.unknown} without a verdict`;
    last = fleet.machines ?? [];
    draw();
    fill(alerts, list.alerts?.length ? list.alerts.map((a) => alertRow(a, ack)) : h('li', { class: 'muted' }, 'No active alerts.'));
  }
  search.addEventListener('input', draw);
  if (args[0]) {
    try {
      const [v, scores] = await Promise.all([api.verdict(args[0]), api.scores(args[0]).catch(() => null)]);
      detail(focus, v, scores);
    } catch (e) { add(focus, alertBox('bad', `No verdict for ${args[0]}:`, e.message)); }
  }
  await refresh();
  const timer = setInterval(refresh, 15000);
  return () => clearInterval(timer);
}
