// Add machine: upload a CSV/Parquet history, see what each column holds, give each its role, and make the
// machine. Nothing is written to the data folder until the daemon's own loader has read the file as mapped.
import { api } from '../api.js';
import { h, fill, add, alertBox, fmtBytes, fmtNum, fmtTime, toast } from '../ui.js';

const ROLES = [
  ['ignore', 'ignore'],
  ['timestamp', 'timestamp'],
  ['sensor', 'sensor'],
  ['unit', 'life / run'],
  ['label', 'failure label (0/1)'],
  ['rul', 'remaining life (h)'],
];

function guessedRole(guess, name) {
  if (guess.timestamp === name) return 'timestamp';
  if (guess.unit === name) return 'unit';
  if (guess.label === name) return 'label';
  if (guess.rul === name) return 'rul';
  if ((guess.sensors ?? []).includes(name)) return 'sensor';
  return 'ignore';
}

function range(c) {
  if (c.kind === 'number') return `${fmtNum(c.min)} … ${fmtNum(c.max)}${c.binary ? ' (0/1)' : ''}`;
  if (c.kind === 'text') return `text: ${c.texts.join(', ')}${c.texts.length >= 6 ? ', …' : ''}`;
  return c.kind;
}

/** A machine id from a file name: what the daemon accepts (letters, digits, - and _). */
function idFrom(filename) {
  return filename.replace(/\.[^.]+$/, '').toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64) || 'machine';
}

export async function mount(root) {
  add(root, h('h1', {}, 'Add a machine'),
    h('p', { class: 'muted' }, 'Upload a CSV or Parquet file of a machine\'s history. Its columns are shown with what each holds; ',
      'give each its role and the machine is made, ready to train. Nothing is written until the file reads as mapped.'));
  const file = h('input', { type: 'file', id: 'upload-file', accept: '.csv,.txt,.parquet' });
  const read = h('button', { type: 'button', class: 'btn primary', id: 'upload-read' }, 'Read file');
  const status = h('p', { class: 'muted', id: 'upload-status', 'aria-live': 'polite' });
  const error = h('div', { id: 'upload-error', role: 'alert' });
  const preview = h('div', { id: 'upload-preview' });
  add(root, h('div', { class: 'panel row' }, h('label', { for: 'upload-file' }, 'History file'), file, read), status, error, preview);

  read.addEventListener('click', async () => {
    fill(error); fill(preview);
    const f = file.files?.[0];
    if (!f) { fill(error, alertBox('bad', 'No file:', ' choose a CSV or Parquet file first.')); return; }
    read.disabled = true;
    status.textContent = `Uploading ${f.name} (${fmtBytes(f.size)}) and reading it…`;
    try {
      const up = await api.upload(f);
      status.textContent = '';
      showPreview(up);
    } catch (e) {
      status.textContent = '';
      fill(error, alertBox('bad', `${f.name} cannot be used:`, ` ${e.message}`));
    } finally {
      read.disabled = false;
    }
  });

  function showPreview(up) {
    const p = up.preview;
    const selects = new Map();
    const units = new Map();
    const rows = p.columns.map((c, i) => {
      const sel = h('select', { dataset: { column: c.name }, 'aria-label': `role of ${c.name}` },
        ROLES.map(([v, label]) => h('option', { value: v }, label)));
      sel.value = guessedRole(p.guess, c.name);
      selects.set(c.name, sel);
      const unit = h('input', { type: 'text', size: 6, placeholder: 'unit', dataset: { unitFor: c.name }, 'aria-label': `unit of ${c.name}` });
      units.set(c.name, unit);
      const sync = () => { unit.hidden = sel.value !== 'sensor'; };
      sel.addEventListener('change', sync); sync();
      return h('tr', { dataset: { column: c.name } },
        h('td', { class: 'mono' }, c.name), h('td', {}, sel, ' ', unit), h('td', {}, range(c)),
        h('td', {}, c.missing ? `${c.missing} missing` : ''),
        h('td', { class: 'mono muted' }, p.sample.slice(0, 3).map((r) => r[i]).join(' · ')));
    });
    const id = h('input', { type: 'text', id: 'upload-id', value: idFrom(up.filename), required: true, pattern: '[A-Za-z0-9_\\-]+' });
    const name = h('input', { type: 'text', id: 'upload-name', placeholder: 'display name (optional)' });
    const fromEnd = h('input', { type: 'checkbox', id: 'upload-rul-from-end' });
    const step = h('input', { type: 'number', id: 'upload-step', min: 0, step: 'any', placeholder: 'only for a cycle/row number' });
    const create = h('button', { type: 'button', class: 'btn primary', id: 'upload-create' }, 'Make machine');
    const outcome = h('div', { id: 'upload-outcome', role: 'status' });
    fill(preview,
      h('div', { class: 'panel' },
        h('h2', {}, `${up.filename}: ${p.rows.toLocaleString()} rows, ${p.columns.length} columns`),
        h('p', { class: 'muted' }, `${p.format.toUpperCase()}${p.delimiter ? `, separated by ${p.delimiter}` : ''}, ${fmtBytes(up.bytes)}. `,
          'The roles below are guesses from the names and contents; check them.'),
        h('div', { class: 'table-wrap' }, h('table', { id: 'upload-columns' },
          h('thead', {}, h('tr', {}, ['Column', 'Role', 'Values', '', 'First rows'].map((c) => h('th', {}, c)))),
          h('tbody', {}, rows))),
        h('div', { class: 'row' }, h('label', { for: 'upload-id' }, 'Machine id'), id, h('label', { for: 'upload-name' }, 'Name'), name),
        h('div', { class: 'row' }, h('label', {}, fromEnd, ' Every life ran to its failure: count the remaining life from each life\'s last row')),
        h('div', { class: 'row' }, h('label', { for: 'upload-step' }, 'Seconds per step'), step),
        h('div', { class: 'row' }, create), outcome));

    create.addEventListener('click', async () => {
      fill(outcome);
      const mapping = { sensors: [], units: {}, rul_from_end: fromEnd.checked };
      const doubled = [];
      for (const [col, sel] of selects) {
        const role = sel.value;
        if (role === 'sensor') {
          mapping.sensors.push(col);
          const u = units.get(col).value.trim();
          if (u) mapping.units[col] = u;
        } else if (role !== 'ignore') {
          if (mapping[role]) doubled.push(`${mapping[role]} and ${col} are both “${ROLES.find(([v]) => v === role)[1]}”`);
          mapping[role] = col;
        }
      }
      if (doubled.length) { fill(outcome, alertBox('bad', 'One column per role:', ` ${doubled.join('; ')}`)); return; }
      if (name.value.trim()) mapping.name = name.value.trim();
      if (step.value) mapping.step_seconds = Number(step.value);
      create.disabled = true;
      try {
        const m = await api.makeMachine(up.upload_id, { machine_id: id.value.trim(), mapping });
        fill(outcome, alertBox('ok', `Machine ${m.machine_id} is ready:`,
          ` ${m.rows.toLocaleString()} rows, ${m.sensors.length} sensors, ${m.lives} ${m.lives === 1 ? 'life' : 'lives'}`,
          m.first_time ? `, ${fmtTime(new Date(m.first_time * 1000).toISOString())} … ${fmtTime(new Date(m.last_time * 1000).toISOString())}` : '',
          '. ', h('a', { href: '#/train', id: 'upload-train' }, 'Train its models')));
        toast('ok', `Machine ${m.machine_id} added.`);
      } catch (e) {
        fill(outcome, alertBox('bad', 'The machine was not made:', ` ${e.message}`));
        create.disabled = false;
      }
    });
  }
}
