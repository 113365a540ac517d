// Progress monitor: one job, live over server-sent events (polling when the stream breaks).
import { api, watchTask, isFinished } from '../api.js';
import { h, fill, add, clear, bar, setBar, badge, alertBox, statusBadge, fmtDuration, fmtNum, fmtProgress, fmtBytes, fmtTime, parseTime, headlineText, TYPE_INFO, oversizeBadge, toast } from '../ui.js';

// Highest percentages shown per job and model: the bars never move backwards, even across a reload.
function loadHigh(id) {
  try { return JSON.parse(sessionStorage.getItem(`mw-high-${id}`)) ?? {}; } catch { return {}; }
}
function saveHigh(id, high) {
  try { sessionStorage.setItem(`mw-high-${id}`, JSON.stringify(high)); } catch { /* storage full or off: bars still hold in memory */ }
}

/** The job to show when the URL names none: the running one, else the next waiting, else the newest. */
async function findJob() {
  const health = await api.health().catch(() => null);
  if (health?.running?.task_id) return health.running.task_id;
  const list = await api.tasks({ limit: 50 });
  const tasks = list.tasks ?? [];
  const live = tasks.filter((t) => !isFinished(t.status));
  if (live.length) return live[live.length - 1].task_id;
  return tasks[0]?.task_id ?? null;
}

export async function mount(root, args) {
  add(root, h('h1', {}, 'Training progress'));
  let id = args[0];
  if (!id) {
    id = await findJob();
    if (!id) {
      add(root, h('div', { class: 'panel' }, h('p', {}, 'No training job yet.'), h('a', { class: 'btn primary', href: '#/train' }, 'Start one in Model Training')));
      return null;
    }
    // Keep the job in the URL so a reload comes back to it, without re-running the router.
    history.replaceState(null, '', `#/progress/${encodeURIComponent(id)}`);
  }

  const high = loadHigh(id);
  const head = h('div', { class: 'row' });
  const alerts = h('div', { id: 'job-alerts' });
  // Drawn at the job's last known progress, not 0: after a reload the bar would drop until the first answer.
  const overallBar = bar(high.overall ?? 0, { big: true, label: 'Overall progress' });
  overallBar.id = 'overall-bar';
  const percentText = h('strong', { id: 'overall-percent' }, fmtProgress(high.overall ?? 0));
  const stage = h('div', { id: 'stage' });
  const guard = h('div', { id: 'guard' });
  const timing = h('div', { class: 'muted', id: 'timing' });
  const cancel = h('button', { type: 'button', class: 'btn danger', id: 'cancel-job' }, 'Cancel training');
  const actions = h('div', { class: 'row' }, cancel);
  // What the job was asked to do; open by itself when it failed, since the settings are often why.
  const settings = h('details', { id: 'job-settings' }, h('summary', {}, 'Settings of this job'));
  const models = h('div', { id: 'model-rows' });
  const leaderboard = h('div', { class: 'table-wrap', id: 'leaderboard' });
  const log = h('pre', { class: 'log', id: 'job-log', tabindex: '0', 'aria-label': 'Training log' });
  add(root, head, alerts,
    h('section', { class: 'panel', 'aria-labelledby': 'overall-h' },
      h('div', { class: 'row' }, h('h2', { id: 'overall-h' }, 'Overall'), h('span', { class: 'spacer' }), percentText),
      overallBar, stage, guard, timing, actions, settings),
    h('section', { class: 'panel', 'aria-labelledby': 'models-h' }, h('h2', { id: 'models-h' }, 'Models'), models),
    h('section', { class: 'panel', 'aria-labelledby': 'lb-h' }, h('h2', { id: 'lb-h' }, 'Candidate models (leaderboard)'),
      h('p', { class: 'muted' }, 'Scores are on validation data; each model type has its own metric, so compare within a group only.'), leaderboard),
    h('section', { class: 'panel', 'aria-labelledby': 'log-h' }, h('h2', { id: 'log-h' }, 'Log'), log));

  let task = null;
  let rows = {};
  let logCount = 0;
  let finishedShown = false;

  cancel.addEventListener('click', async () => {
    if (!confirm('Cancel this training job? Models it has not finished are not kept.')) return;
    cancel.disabled = true;
    try {
      const r = await api.cancel(id);
      toast('warn', r.message ?? 'Cancelling…');
    } catch (e) {
      toast('bad', `Cancel failed: ${e.message}`);
      cancel.disabled = false;
    }
  });

  function modelRow(t) {
    const el = {
      name: h('strong', {}, TYPE_INFO[t]?.name ?? t),
      bar: bar(0, { label: `${TYPE_INFO[t]?.name ?? t} progress` }),
      state: h('span', { class: 'model-state' }),
      detail: h('div', { class: 'detail' }),
    };
    el.root = h('div', { class: 'model-row', dataset: { type: t } }, el.name, el.bar, el.state, el.detail);
    add(models, el.root);
    return el;
  }

  function renderTiming(t) {
    const started = parseTime(t.started_at);
    const ended = parseTime(t.completed_at);
    const parts = [];
    if (started) parts.push(`Elapsed ${fmtDuration(((ended ?? Date.now()) - started) / 1000)}`);
    if (!isFinished(t.status) && t.progress?.eta_seconds > 0) parts.push(`about ${fmtDuration(t.progress.eta_seconds)} left`);
    else if (t.status === 'PROGRESS') parts.push('estimating the time left');
    if (t.status === 'PENDING') parts.push(t.queue_position ? `position ${t.queue_position} in the queue` : 'waiting to start');
    timing.textContent = parts.join(' · ');
  }

  function update(t) {
    if (!t) return;
    // SSE snapshots carry no queue position: keep the last one polling gave.
    if (task && t.queue_position == null && t.status === 'PENDING') t.queue_position = task.queue_position;
    task = t;
    const p = t.progress ?? {};
    fill(head, h('span', {}, 'Machine ', h('a', { href: `#/results/${encodeURIComponent(t.machine_id)}` }, h('strong', {}, t.machine_id))),
      statusBadge(t.status), h('span', { class: 'muted mono' }, `job ${t.task_id.slice(0, 8)}`),
      h('span', { class: 'muted' }, `queued ${fmtTime(t.created_at)}`), t.complete_system ? badge('all 4 models', 'info') : badge(`${t.model_types.length} of 4 models`, 'warn'));
    const pct = t.status === 'SUCCESS' ? 100 : Math.max(high.overall ?? 0, p.progress_percent ?? 0);
    high.overall = pct;
    setBar(overallBar, pct);
    overallBar.className = ['bar', 'big', t.status === 'SUCCESS' && 'ok', t.status === 'FAILURE' && 'bad', t.status === 'REVOKED' && 'warn'].filter(Boolean).join(' ');
    percentText.textContent = fmtProgress(pct);
    if (settings.childElementCount === 1 && t.params) add(settings, settingsList(t.params));
    if (t.status === 'FAILURE') settings.open = true;
    const current = p.model_type ? `${TYPE_INFO[p.model_type]?.name ?? p.model_type} (${p.batch_index + 1} of ${p.batch_total})` : '';
    fill(stage, isFinished(t.status) ? '' : [h('strong', {}, p.stage || (t.status === 'PENDING' ? 'waiting' : 'starting')), current ? ` · ${current}` : '', p.message ? ` — ${p.message}` : '']);
    clear(guard);
    if (!isFinished(t.status) && (p.stage ?? '').startsWith('paused')) {
      add(guard, alertBox('warn', `Training ${p.stage}.`, 'The device protects itself; training resumes on its own when the condition clears.'));
    }
    if (t.status === 'PENDING' && t.waiting_reason) add(guard, alertBox('warn', 'Waiting:', t.waiting_reason));
    renderTiming(t);
    cancel.hidden = isFinished(t.status);

    // Rows in the order the job trains them (the snapshot's map is alphabetical).
    const order = [...(t.model_types ?? []), ...Object.keys(p.models ?? {})].filter((x, i, a) => a.indexOf(x) === i && p.models?.[x]);
    for (const [mt, mp] of order.map((x) => [x, p.models[x]])) {
      const r = rows[mt] ?? (rows[mt] = modelRow(mt));
      const key = `m-${mt}`;
      const mpct = mp.status === 'SUCCESS' ? 100 : Math.max(high[key] ?? 0, mp.progress_percent ?? 0);
      high[key] = mpct;
      setBar(r.bar, mpct);
      r.bar.className = ['bar', mp.status === 'SUCCESS' && 'ok', mp.status === 'FAILURE' && 'bad'].filter(Boolean).join(' ');
      r.root.dataset.status = mp.status;
      // A model the job never reached stays PENDING in the record; once the job is over it will not run.
      const shown = isFinished(t.status) && mp.status === 'PENDING' ? 'NOT RUN' : mp.status;
      fill(r.state, statusBadge(shown), ` ${Math.round(mpct)} %`);
      const hl = mp.metrics?.headline;
      fill(r.detail, 
        hl ? h('span', { class: 'headline' }, headlineText(hl), ' ') : '',
        mp.seconds ? `· ${fmtDuration(mp.seconds)} ` : '',
        mp.size_bytes ? `· ${fmtBytes(mp.size_bytes)} ` : '',
        mp.version ? h('a', { href: `#/results/${encodeURIComponent(t.machine_id)}/${mt}/${mp.version}` }, `v${mp.version} results`) : '',
        ' ', oversizeBadge(mp),
        mp.warning && !mp.oversize ? h('div', { class: 'muted' }, `⚠ ${mp.warning}`) : '',
        mp.error ? h('div', { class: 'error' }, mp.error) : '');
    }
    saveHigh(id, high);

    clear(leaderboard);
    const groups = new Map();
    for (const row of t.leaderboard ?? []) {
      if (!groups.has(row.metric)) groups.set(row.metric, []);
      groups.get(row.metric).push(row);
    }
    if (!groups.size) add(leaderboard, h('p', { class: 'muted' }, 'Candidates appear here as they finish.'));
    for (const [metric, list] of groups) {
      add(leaderboard, h('table', {},
        h('caption', { class: 'muted' }, metric),
        h('thead', {}, h('tr', {}, h('th', {}, 'Candidate'), h('th', { class: 'num' }, metric), h('th', { class: 'num' }, 'Fit'), h('th', {}, 'Detail'), h('th', {}, ''))),
        h('tbody', {}, list.map((r) => h('tr', { class: r.chosen ? 'chosen' : '' }, h('td', {}, r.model), h('td', { class: 'num' }, fmtNum(r.validation_score, 4)),
          h('td', { class: 'num' }, fmtDuration(r.fit_seconds)), h('td', {}, r.detail ?? ''), h('td', {}, r.chosen ? badge('chosen', 'ok') : ''))))));
    }

    const lines = Array.isArray(t.logs) ? t.logs : [];
    if (lines.length < logCount) { log.textContent = ''; logCount = 0; }
    if (lines.length > logCount) {
      // Follow the log unless the reader scrolled up to read something.
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 24;
      add(log, lines.slice(logCount).join('\n') + '\n');
      logCount = lines.length;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    if (isFinished(t.status) && !finishedShown) {
      finishedShown = true;
      clear(alerts);
      const done = (t.model_types ?? []).filter((mt) => p.models?.[mt]?.status === 'SUCCESS');
      const first = done[0] ?? t.model_types?.[0];
      const links = [done.length ? [h('a', { class: 'btn', href: `#/results/${encodeURIComponent(t.machine_id)}/${first ?? ''}` }, 'See the results'), ' ',
        h('a', { class: 'btn', href: `#/predict/${encodeURIComponent(t.machine_id)}` }, 'Test predictions'), ' '] : null,
        h('a', { class: 'btn', href: `#/train/${encodeURIComponent(t.machine_id)}` }, 'Train again')];
      // The status line in the header should not wait for its next poll to stop saying "Training".
      window.dispatchEvent(new CustomEvent('mw:health', { detail: { ended: t.task_id ?? id } }));
      if (t.status === 'SUCCESS') {
        add(alerts, alertBox('ok', done.length === 4 ? 'All 4 models trained.' : `${done.length} model${done.length === 1 ? '' : 's'} trained.`,
          `Finished in ${fmtDuration((parseTime(t.completed_at) - parseTime(t.started_at)) / 1000)}. `, h('div', { class: 'row' }, links)));
      } else if (t.status === 'FAILURE') {
        add(alerts, alertBox('bad', 'Training failed:', t.error ?? 'no reason given', h('div', { class: 'row' }, links)));
      } else {
        add(alerts, alertBox('warn', 'Training cancelled.', done.length ? `Models finished before the cancel are kept (${done.join(', ')}). ` : 'No model of this job was kept. ', h('div', { class: 'row' }, links)));
      }
    }
  }

  try {
    update(await api.task(id));
  } catch (e) {
    add(root, alertBox('bad', 'Cannot load this job:', e.message, ' ', h('a', { href: '#/queue' }, 'See all jobs')));
    return null;
  }
  const stop = isFinished(task.status) ? () => {} : watchTask(id, (t, err) => { if (err) toast('bad', err.message); else update(t); });
  // The clock and the queue position move between events too.
  const ticker = setInterval(async () => {
    if (!task || isFinished(task.status)) return;
    renderTiming(task);
    if (task.status === 'PENDING') {
      try { const fresh = await api.task(id); task.queue_position = fresh.queue_position; task.waiting_reason = fresh.waiting_reason; } catch { /* next tick */ }
    }
  }, 1000);
  return () => { stop(); clearInterval(ticker); };
}

const SETTING_NAMES = {
  quality: 'Quality', time_limit_s: 'Time limit', horizon_hours: 'Failure horizon', rul_cap_hours: 'RUL cap',
  contamination: 'Expected anomaly share', forecast_hours: 'Forecast length', exclude_sensors: 'Excluded sensors',
  max_train_rows: 'Most training rows', threads: 'Threads', seed: 'Seed',
};

/** A job's parameters in words, in a fixed order; unset ones say so. */
function settingsList(params) {
  const shown = (k, v) => {
    if (v === null || v === undefined) return 'not set';
    if (Array.isArray(v)) return v.length ? v.join(', ') : 'none';
    if (k === 'time_limit_s') return fmtDuration(v);
    if (k.endsWith('_hours')) return `${fmtNum(v, 4)} h`;
    if (k === 'contamination') return `${fmtNum(v * 100, 3)} %`;
    if (k === 'threads' && v === 0) return 'all cores';
    return String(v);
  };
  const dl = h('dl', { class: 'kv' });
  for (const [k, name] of Object.entries(SETTING_NAMES)) if (k in params) add(dl, h('dt', {}, name), h('dd', { dataset: { key: k } }, shown(k, params[k])));
  return dl;
}
