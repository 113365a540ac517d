// Queue & history: waiting, running and finished jobs, with filters, durations and cancel.
import { api, isFinished } from '../api.js';
import { h, fill, add, clear, statusBadge, alertBox, fmtDuration, fmtTime, fmtProgress, parseTime, TYPE_INFO, toast } from '../ui.js';

const STATES = ['', 'PENDING', 'PROGRESS', 'SUCCESS', 'FAILURE', 'REVOKED'];
const STATE_NAME = { '': 'all', PENDING: 'waiting', PROGRESS: 'running', SUCCESS: 'done', FAILURE: 'failed', REVOKED: 'cancelled' };

function duration(t) {
  const s = parseTime(t.started_at);
  if (!s) return t.status === 'PENDING' ? `waiting ${fmtDuration((Date.now() - parseTime(t.created_at)) / 1000)}` : '–';
  return fmtDuration(((parseTime(t.completed_at) ?? Date.now()) - s) / 1000);
}

export async function mount(root) {
  add(root, h('h1', {}, 'Queue & history'));
  const status = h('select', { id: 'filter-status' }, STATES.map((s) => h('option', { value: s }, STATE_NAME[s])));
  const machine = h('select', { id: 'filter-machine' }, h('option', { value: '' }, 'all machines'));
  const summary = h('span', { class: 'muted', id: 'queue-summary' });
  const table = h('div', { class: 'table-wrap', id: 'jobs' });
  add(root, h('div', { class: 'row panel' }, h('label', { for: 'filter-status' }, 'Status'), status, h('label', { for: 'filter-machine' }, 'Machine'), machine,
    h('span', { class: 'spacer' }), summary), table);
  const machines = await api.machines().catch(() => ({ machines: [] }));
  for (const m of machines.machines ?? []) if (!m.error) add(machine, h('option', { value: m.machine_id }, m.machine_id));

  async function cancel(id, btn) {
    if (!confirm('Cancel this training job? Models it has not finished are not kept.')) return;
    btn.disabled = true;
    try { const r = await api.cancel(id); toast('warn', r.message); } catch (e) { toast('bad', e.message); btn.disabled = false; }
    refresh();
  }

  async function refresh() {
    let list;
    try { list = await api.tasks({ status: status.value, machine_id: machine.value, limit: 200 }); } catch (e) {
      fill(table, alertBox('bad', 'Cannot load jobs:', e.message)); return;
    }
    summary.textContent = `${list.pending} waiting (capacity ${list.capacity}) · ${list.total} shown`;
    const tasks = list.tasks ?? [];
    fill(table, tasks.length ? h('table', {},
      h('thead', {}, h('tr', {}, ['Status', 'Machine', 'Models', 'Queued', 'Duration', 'Progress', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, tasks.map((t) => {
        const btn = h('button', { type: 'button', class: 'btn small danger' }, t.status === 'PENDING' ? 'Remove' : 'Cancel');
        btn.addEventListener('click', () => cancel(t.task_id, btn));
        return h('tr', { dataset: { task: t.task_id, status: t.status } },
          h('td', {}, statusBadge(t.status), t.queue_position ? h('div', { class: 'muted' }, `#${t.queue_position} in queue`) : '', t.waiting_reason ? h('div', { class: 'muted' }, t.waiting_reason) : ''),
          h('td', { class: 'mono' }, t.machine_id),
          h('td', {}, t.model_types.length === 4 ? 'all 4' : t.model_types.map((x) => TYPE_INFO[x]?.short ?? x).join(', '),
            t.origin?.by === 'schedule' ? h('div', { class: 'muted scheduled', title: t.origin.reason }, `scheduled: ${t.origin.reason}`) : ''),
          h('td', {}, fmtTime(t.created_at)),
          h('td', {}, duration(t)),
          h('td', {}, fmtProgress(t.progress?.progress_percent), t.error ? h('div', { class: 'error' }, t.error) : ''),
          h('td', {}, h('a', { href: `#/progress/${t.task_id}` }, 'open'), ' ', isFinished(t.status) ? '' : btn));
      }))) : h('p', { class: 'muted' }, 'No jobs match.'));
  }
  status.addEventListener('change', refresh);
  machine.addEventListener('change', refresh);
  await refresh();
  const timer = setInterval(refresh, 2000);
  return () => clearInterval(timer);
}
