// The one API client: every request of the page goes through here, to this daemon only.
// Errors come back as ApiError with the server's message (`{"error": {"code", "message"}}`).

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// Set by the app: called on 401 to ask for the token; resolves true when the user logged in.
let onUnauthorized = async () => false;
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function raw(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body instanceof Blob) {
    // A file goes as it is, streamed by the browser.
    init.headers['Content-Type'] = 'application/octet-stream';
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the device (${e.message})`);
  }
  const text = await resp.text();
  // Exports come back as CSV text, errors always as JSON.
  if (resp.ok && (resp.headers.get('content-type') ?? '').startsWith('text/csv')) return text;
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const err = data && data.error;
    throw new ApiError(resp.status, err?.code ?? 'http', err?.message ?? `${resp.status} ${resp.statusText}`, err?.details);
  }
  return data;
}

// Mutating calls: on 401 ask for the token once, then try again.
async function authed(method, path, body) {
  try {
    return await raw(method, path, body);
  } catch (e) {
    if (e.status === 401 && await onUnauthorized()) return raw(method, path, body);
    throw e;
  }
}

const enc = encodeURIComponent;

export const api = {
  health: () => raw('GET', '/api/health'),
  authStatus: () => raw('GET', '/api/auth/status'),
  login: (token) => raw('POST', '/api/auth/login', { token }),
  logout: () => raw('POST', '/api/auth/logout'),
  machines: () => raw('GET', '/api/ml/train/machines/available'),
  trainBatch: (body) => authed('POST', '/api/ml/train/batch', body),
  task: (id) => raw('GET', `/api/ml/tasks/${enc(id)}`),
  tasks: (filter = {}) => {
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== undefined && v !== ''));
    return raw('GET', `/api/ml/tasks${q.toString() ? '?' + q : ''}`);
  },
  cancel: (id) => authed('POST', `/api/ml/tasks/${enc(id)}/cancel`),
  models: () => raw('GET', '/api/ml/models'),
  machineModels: (m) => raw('GET', `/api/ml/models/${enc(m)}`),
  model: (m, t, version) => raw('GET', `/api/ml/models/${enc(m)}/${enc(t)}${version ? `?version=${enc(version)}` : ''}`),
  downloadUrl: (m, t, version) => `/api/ml/models/${enc(m)}/${enc(t)}/download${version ? `?version=${enc(version)}` : ''}`,
  pin: (m, t, version, reason) => authed('POST', `/api/ml/models/${enc(m)}/${enc(t)}/pin`, { version, reason }),
  unpin: (m, t) => authed('DELETE', `/api/ml/models/${enc(m)}/${enc(t)}/pin`),
  deleteModel: (m, t, version) => authed('DELETE', `/api/ml/models/${enc(m)}/${enc(t)}${version ? `?version=${enc(version)}` : ''}`),
  predict: (m, body = {}) => authed('POST', `/api/ml/predict/${enc(m)}`, body),
  predictCsv: (m, body = {}) => authed('POST', `/api/ml/predict/${enc(m)}?format=csv`, body),
  resultsUrl: (m, t, version, format) => `/api/ml/models/${enc(m)}/${enc(t)}/results.${format}${version ? `?version=${enc(version)}` : ''}`,
  eventsUrl: (id) => `/api/ml/tasks/${enc(id)}/events`,
  fleet: () => raw('GET', '/api/fleet'),
  verdict: (m) => raw('GET', `/api/machines/${enc(m)}/verdict`),
  scores: (m, limit = 48) => raw('GET', `/api/machines/${enc(m)}/scores?limit=${limit}`),
  alerts: (all = false) => raw('GET', `/api/alerts${all ? '?all=true' : ''}`),
  ackAlert: (id, by) => authed('POST', `/api/alerts/${enc(id)}/ack`, { by }),
  upload: (file) => authed('POST', `/api/uploads?filename=${enc(file.name)}`, file),
  makeMachine: (uploadId, body) => authed('POST', `/api/uploads/${enc(uploadId)}/machine`, body),
};

const FINISHED = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);
export const isFinished = (status) => FINISHED.has(status);

// Follows one task: server-sent events first; if the stream fails, polls every second until the task ends.
// Returns a function that stops watching.
export function watchTask(id, onUpdate, { pollMs = 1000 } = {}) {
  let stopped = false;
  let source = null;
  let timer = null;
  const deliver = (t) => {
    if (stopped) return;
    onUpdate(t);
    if (isFinished(t.status)) stop();
  };
  const poll = async () => {
    if (stopped) return;
    try { deliver(await api.task(id)); } catch (e) { if (e.status === 404) { stop(); onUpdate(null, e); return; } }
    if (!stopped) timer = setTimeout(poll, pollMs);
  };
  const startPolling = () => { if (!timer && !stopped) poll(); };
  if (typeof EventSource === 'function') {
    source = new EventSource(api.eventsUrl(id));
    source.addEventListener('progress', (ev) => {
      try { deliver(JSON.parse(ev.data)); } catch { /* a malformed event is skipped; the next one carries all */ }
    });
    // The stream ends after the final snapshot; an error before that means the connection broke.
    source.onerror = () => {
      if (source) source.close();
      source = null;
      startPolling();
    };
  } else {
    startPolling();
  }
  function stop() {
    stopped = true;
    if (source) source.close();
    source = null;
    if (timer) clearTimeout(timer);
  }
  return stop;
}
