// Everything that talks to stagelog serve: the token, JSON requests, the CSV download and the
// live stream. Every /api call carries "Authorization: Bearer <token>"; a 401 anywhere ends
// the session and brings the user back to sign-in with the server's reason.

const TOKEN_KEY = 'stagelog.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  const back = location.hash.startsWith('#/sign-in') ? '' : location.hash.slice(1);
  const query = new URLSearchParams();
  if (reason) query.set('reason', reason);
  if (back) query.set('next', back);
  const qs = query.toString();
  location.hash = `#/sign-in${qs ? `?${qs}` : ''}`;
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// "/api/v1/executions" + {status: 'failed', q: ''} → "/api/v1/executions?status=failed".
// Empty values are left out: the server refuses an empty q, worker or stage.
export function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== '') query.set(key, value);
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

function headers(extra) {
  return { Authorization: `Bearer ${token() || ''}`, ...extra };
}

// The error a failed response stands for, from its JSON body when it has one.
async function errorOf(response) {
  let body = null;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    body = await response.json();
    if (body && body.error) message = body.error;
    if (body && body.details) message += ` (${body.details})`;
  } catch {
    // Not JSON (a proxy's page, a cut connection): the status line says enough.
  }
  if (response.status === 401) signOut(`Signed out: ${message}`);
  return new ApiError(response.status, message, body);
}

async function send(path, params, init = {}) {
  let response;
  try {
    response = await fetch(url(path, params), { ...init, headers: headers(init.headers) });
  } catch (cause) {
    if (cause.name === 'AbortError') throw cause;
    throw new ApiError(0, `cannot reach the server (${cause.message})`, null);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function getJson(path, params, init) {
  const response = await send(path, params, init);
  return response.json();
}

// Saves what a GET answers as a file. A plain link cannot carry the token header, so the
// body is fetched and handed to the browser as an object URL.
export async function download(path, params, filename) {
  const response = await send(path, params);
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
  return blob.size;
}

// The live stream (GET /api/v1/stream). EventSource cannot send the Authorization header, so
// the body is read with fetch and parsed here; after a drop it reconnects with Last-Event-ID
// (doubling waits, 1 s to 30 s) so that nothing is seen twice or missed.
//   onMessage({type, id, data}) for each entry (data parsed from JSON),
//   onState({state: 'connecting' | 'open' | 'waiting', retryInMs, error}) for the status line.
// Returns stop().
export function openStream(params, { onMessage, onState }) {
  const controller = new AbortController();
  let lastId = null;
  let delay = 1000;
  let stopped = false;

  async function connectOnce() {
    onState({ state: 'connecting' });
    const extra = { Accept: 'text/event-stream' };
    if (lastId) extra['Last-Event-ID'] = lastId;
    const response = await fetch(url('/api/v1/stream', params),
      { headers: headers(extra), signal: controller.signal, cache: 'no-store' });
    if (!response.ok) {
      const error = await errorOf(response);
      // A 400 about the id: the server no longer knows it; start afresh from now.
      if (response.status === 400 && lastId) lastId = null;
      throw error;
    }
    onState({ state: 'open' });
    delay = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let entry = { type: 'message', data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();  // A line not yet ended.
      for (const line of lines) {
        if (line === '') {
          if (entry.id !== null) lastId = entry.id;
          if (entry.data.length > 0) dispatch(entry);
          entry = { type: 'message', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue;  // A comment: the keep-alive.
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') entry.type = text;
        else if (field === 'data') entry.data.push(text);
        else if (field === 'id') entry.id = text;
      }
    }
  }

  function dispatch(entry) {
    let data;
    const text = entry.data.join('\n');
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
    onMessage({ type: entry.type, id: entry.id, data });
  }

  (async () => {
    while (!stopped) {
      let error = null;
      try {
        await connectOnce();
      } catch (e) {
        if (stopped || e.name === 'AbortError') return;
        error = e;
        if (e instanceof ApiError && e.status === 401) return;  // signOut() has run.
      }
      if (stopped) return;
      onState({ state: 'waiting', retryInMs: delay, error });
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  })();

  return () => {
    stopped = true;
    controller.abort();
  };
}
