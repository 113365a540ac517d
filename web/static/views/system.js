// System: what /api/health says (version, queue, and whatever the guard and MQTT add), warnings first.
import { api } from '../api.js';
import { h, fill, add, clear, alertBox, fmtDuration, fmtNum, fmtProgress } from '../ui.js';

const BAD_STATES = new Set(['paused', 'refusing', 'degraded', 'error', 'disconnected', 'throttled', 'critical', 'warning', 'failed']);

/** Every warning-like fact anywhere in the health document, with its path. */
export function collectWarnings(obj, path = []) {
  const out = [];
  if (!obj || typeof obj !== 'object') return out;
  for (const [k, v] of Object.entries(obj)) {
    const p = [...path, k];
    if (/^warnings?$/i.test(k)) {
      for (const w of [].concat(v ?? [])) if (w) out.push(typeof w === 'string' ? w : JSON.stringify(w));
    } else if (/throttl|under_?voltage/i.test(k) && v === true) {
      out.push(`${p.join(' › ')}: yes`);
    } else if (/^(state|status)$/i.test(k) && typeof v === 'string' && BAD_STATES.has(v.toLowerCase())) {
      out.push(`${p.join(' › ')}: ${v}`);
    } else if (k === 'connected' && v === false) {
      out.push(`${path.join(' › ') || 'connection'}: not connected`);
    } else if (typeof v === 'object') {
      out.push(...collectWarnings(v, p));
    }
  }
  return out;
}

function value(k, v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') {
    if (/_mb$/.test(k)) return `${fmtNum(v, 4)} MB`;
    if (/_c$/.test(k)) return `${fmtNum(v, 3)} °C`;
    if (/_s$|seconds/.test(k)) return fmtDuration(v);
    if (/bytes/.test(k)) return `${fmtNum(v / 1048576, 3)} MB`;
    return fmtNum(v, 4);
  }
  if (Array.isArray(v)) {
    if (!v.length) return 'none';
    // A list of records (e.g. one per disk) reads best as a table.
    if (v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      const cols = [...new Set(v.flatMap((x) => Object.keys(x)))];
      return h('table', {}, h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c.replaceAll('_', ' '))))),
        h('tbody', {}, v.map((x) => h('tr', {}, cols.map((c) => h('td', {}, value(c, x[c])))))));
    }
    return v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ');
  }
  return String(v);
}

const TITLES = { guard: 'Resource guard', mqtt: 'MQTT', systemd: 'Service' };

/** The few numbers an operator looks for first, wherever the health document carries them. */
function vitals(health) {
  const g = health.guard ?? {};
  const m = health.mqtt ?? null;
  const disks = Array.isArray(g.disk) ? g.disk.filter((d) => Number.isFinite(d.free_mb)) : [];
  const items = [
    ['Temperature', Number.isFinite(g.temperature_c) ? `${fmtNum(g.temperature_c, 3)} °C` : (g.temperature ?? null)],
    ['Throttling', g.throttled === undefined ? null : value('throttled', g.throttled)],
    ['Memory available', Number.isFinite(g.memory?.available_mb) ? `${fmtNum(g.memory.available_mb, 4)} MB` : null],
    ['Disk free', disks.length ? `${fmtNum(Math.min(...disks.map((d) => d.free_mb)), 4)} MB` : null],
    ['Guard', g.state ? `${g.state}${g.reason ? `: ${g.reason}` : ''}` : null],
    ['MQTT', m ? (m.connected === undefined ? value('state', m.state ?? m.status) : m.connected ? `connected${m.protocol ? ` (MQTT ${m.protocol})` : ''}` : 'not connected') : null],
    ['Version', health.version],
  ].filter(([, v]) => v !== null && v !== undefined);
  return h('div', { class: 'grid four', id: 'vitals' }, items.map(([k, v]) => h('div', { class: 'metric-card' }, h('div', { class: 'name' }, k), h('div', { class: 'value small-value' }, v))));
}

function section(title, obj) {
  const dl = h('dl', { class: 'kv' });
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      add(dl, h('dt', {}, k.replaceAll('_', ' ')), h('dd', {}, section(null, v)));
    } else {
      add(dl, h('dt', {}, k.replaceAll('_', ' ')), h('dd', { dataset: { key: k } }, value(k, v)));
    }
  }
  return title ? h('section', { class: 'panel', dataset: { section: title } }, h('h2', {}, title), dl) : dl;
}

export async function mount(root) {
  add(root, h('h1', {}, 'System'));
  const body = h('div', { id: 'system-body', 'aria-live': 'polite' });
  add(root, body);
  async function refresh() {
    let health;
    try { health = await api.health(); } catch (e) { fill(body, alertBox('bad', 'The device does not answer:', e.message)); return; }
    const { status, version, uptime_s, queue, running, auth_required, ...rest } = health;
    const warnings = collectWarnings(rest);
    const overview = { status, version, uptime_s, auth_required, queue_waiting: queue?.pending, queue_capacity: queue?.capacity,
      running: running ? `${running.machine_id} ${fmtProgress(running.progress_percent)} (${running.stage || 'starting'})` : 'nothing' };
    fill(body, 
      warnings.length ? alertBox('warn', 'Attention:', h('ul', {}, warnings.map((w) => h('li', {}, w)))) : alertBox('ok', 'No warnings.', ''),
      vitals(health),
      section('Overview', overview),
      Object.entries(rest).map(([k, v]) => section(TITLES[k] ?? k.replaceAll('_', ' '), v && typeof v === 'object' && !Array.isArray(v) ? v : { [k]: v })));
  }
  await refresh();
  const timer = setInterval(refresh, 3000);
  return () => clearInterval(timer);
}
