// The page shell: hash routes to views, the login dialog, the theme switch and the status line.
import { api, setUnauthorizedHandler } from './api.js';
import { store } from './store.js';
import { clear, add, h, toast, fmtProgress } from './ui.js';
import * as fleet from './views/fleet.js';
import * as training from './views/training.js';
import * as progress from './views/progress.js';
import * as results from './views/results.js';
import * as predictions from './views/predictions.js';
import * as queue from './views/queue.js';
import * as system from './views/system.js';
import * as upload from './views/upload.js';

const VIEWS = { fleet, train: training, add: upload, progress, results, predict: predictions, queue, system };
const TITLES = { fleet: 'Fleet', train: 'Model Training', add: 'Add machine', progress: 'Progress', results: 'Results', predict: 'Predictions', queue: 'Queue & history', system: 'System' };

const main = document.getElementById('main');
let unmount = null;

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const name = VIEWS[parts[0]] ? parts[0] : 'fleet';
  return { name, args: VIEWS[parts[0]] ? parts.slice(1) : [] };
}

async function route() {
  const { name, args } = parseRoute();
  if (unmount) { try { unmount(); } catch { /* a view failing to clean up must not block the next */ } }
  unmount = null;
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[name]} · millwright`;
  clear(main);
  window.scrollTo(0, 0);
  main.dataset.view = name;
  try {
    unmount = await VIEWS[name].mount(main, args) ?? null;
  } catch (e) {
    add(main, h('div', { class: 'alert bad', role: 'alert' }, h('strong', {}, 'This view failed to load:'), ` ${e.message}`));
  }
  document.body.dataset.loaded = '1';
}

// --- auth ---------------------------------------------------------------------------------------------------

export async function refreshAuth() {
  try { store.set({ auth: await api.authStatus() }); } catch { /* keep the last known state */ }
}

const dialog = document.getElementById('login-dialog');
const form = document.getElementById('login-form');
const tokenInput = document.getElementById('login-token');
const loginError = document.getElementById('login-error');
let pendingLogin = null;

export function requestLogin() {
  if (pendingLogin) return pendingLogin.promise;
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  pendingLogin = { promise, resolve };
  loginError.textContent = '';
  tokenInput.value = '';
  dialog.showModal();
  tokenInput.focus();
  return promise;
}

function finishLogin(ok) {
  if (dialog.open) dialog.close();
  if (pendingLogin) { pendingLogin.resolve(ok); pendingLogin = null; }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  loginError.textContent = '';
  try {
    await api.login(tokenInput.value);
    await refreshAuth();
    toast('ok', 'Logged in.');
    finishLogin(true);
  } catch (e) {
    loginError.textContent = e.message;
    tokenInput.select();
  }
});
document.getElementById('login-cancel').addEventListener('click', () => finishLogin(false));
dialog.addEventListener('cancel', () => finishLogin(false));
setUnauthorizedHandler(async () => { await refreshAuth(); return requestLogin(); });

const authButton = document.getElementById('auth-button');
authButton.addEventListener('click', async () => {
  const { auth } = store.get();
  if (auth.logged_in) {
    try { await api.logout(); toast('ok', 'Logged out.'); } catch (e) { toast('bad', e.message); }
    await refreshAuth();
  } else {
    await requestLogin();
  }
});
store.subscribe(({ auth }) => {
  authButton.hidden = !auth.auth_required;
  authButton.textContent = auth.logged_in ? 'Log out' : 'Log in';
  authButton.dataset.state = auth.logged_in ? 'in' : 'out';
});

// --- theme --------------------------------------------------------------------------------------------------

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme; else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem('millwright-theme'));
document.getElementById('theme-toggle').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme ? document.documentElement.dataset.theme === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  const next = dark ? 'light' : 'dark';
  localStorage.setItem('millwright-theme', next);
  applyTheme(next);
});

// --- status line --------------------------------------------------------------------------------------------

const topStatus = document.getElementById('top-status');
// Polls and the views' mw:health events overlap: only the answer to the latest question is drawn, so a slow
// older answer cannot put back a job that has ended.
let healthAsked = 0;
let healthDrawn = 0;

export async function refreshHealth(event) {
  const ask = ++healthAsked;
  const ended = event?.detail?.ended;
  try {
    const health = await api.health();
    if (ask < healthDrawn) return;
    healthDrawn = ask;
    // A view saw this job end before the queue let go of it: ask again shortly rather than show it running.
    if (ended && health.running?.task_id === ended && (event.detail.tries ?? 0) < 10) {
      setTimeout(() => refreshHealth({ detail: { ended, tries: (event.detail.tries ?? 0) + 1 } }), 200);
    }
    store.set({ health });
    const r = health.running;
    const q = health.queue ?? {};
    topStatus.textContent = r
      ? `Training ${r.machine_id}: ${fmtProgress(r.progress_percent)} (${r.stage || 'starting'}) · ${q.pending ?? 0} waiting`
      : `Idle · ${q.pending ?? 0} waiting · v${health.version}`;
    document.body.classList.remove('offline');
  } catch (e) {
    if (ask < healthDrawn) return;
    healthDrawn = ask;
    // Say so everywhere: a view's last "running … left" and its Cancel button are no longer true.
    topStatus.textContent = `Connection lost: ${e.message}`;
    document.body.classList.add('offline');
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('mw:health', refreshHealth);
await refreshAuth();
refreshHealth();
setInterval(() => refreshHealth(), 5000);
route();
