// Live workers: the board GET /api/v1/workers starts from, kept current by the live stream —
// `worker` entries (the server's watchdog: state, stage, task), `event` entries (last event,
// heartbeats, workers seen for the first time), `warning` and `alert` entries (listed as they
// come, announced to screen readers). Stuck is red, silent amber, crashed grey.

import { getJson, openStream } from '../api.js';
import { h, replace, loading, empty, failure } from '../dom.js';
import { duration, relative, absolute, parseTime } from '../format.js';

const STATES = ['running', 'idle', 'stuck', 'silent', 'crashed', 'done'];
const STATE_HINTS = {
  stuck: 'a stage or task open past its threshold',
  silent: 'no heartbeat within the timeout',
  crashed: 'the process ended without shutting down',
};
const MAX_NOTICES = 50;
// A warning's colour by its rule, as the board colours the worker it is about.
const RULE_LOOKS = { stuck_stage: 'stuck', stuck_task: 'stuck', crashed: 'crashed', recovered: 'ok' };

function card(name) {
  const refs = {
    state: h('span', { class: 'badge' }),
    stage: h('dd', { class: 'mono' }),
    inStage: h('dd', {}),
    task: h('dd', { class: 'mono' }),
    heartbeat: h('dd', {}),
    lastEvent: h('dd', {}),
    counts: h('dd', {}),
    message: h('p', { class: 'worker-message' }),
    where: h('p', { class: 'muted small' }),
  };
  const el = h('article', { class: 'worker-card', 'aria-labelledby': `w-${CSS.escape(name)}`, dataset: { worker: name } },
    h('header', { class: 'worker-head' }, h('h3', { id: `w-${CSS.escape(name)}`, class: 'mono' }, name), refs.state),
    h('dl', { class: 'worker-facts' },
      h('div', {}, h('dt', {}, 'Stage'), refs.stage),
      h('div', {}, h('dt', {}, 'In stage'), refs.inStage),
      h('div', {}, h('dt', {}, 'Task'), refs.task),
      h('div', {}, h('dt', {}, 'Last heartbeat'), refs.heartbeat),
      h('div', {}, h('dt', {}, 'Last event'), refs.lastEvent),
      h('div', {}, h('dt', {}, 'Stages done / failed'), refs.counts)),
    refs.message, refs.where);
  return { el, refs, data: null, stageSince: null };
}

function timeText(el, text, now) {
  const ms = parseTime(text);
  el.textContent = ms === null ? '—' : relative(ms, now);
  el.title = ms === null ? '' : absolute(ms);
}

function paint(c, now) {
  const w = c.data;
  c.el.dataset.state = w.state;
  c.refs.state.className = `badge state-${w.state}`;
  c.refs.state.textContent = w.state;
  c.refs.state.title = STATE_HINTS[w.state] || '';
  c.refs.stage.textContent = w.stage || '—';
  c.refs.inStage.textContent = c.stageSince === null ? '—' : duration(now - c.stageSince);
  c.refs.task.textContent = w.task || '—';
  timeText(c.refs.heartbeat, w.last_heartbeat_at, now);
  timeText(c.refs.lastEvent, w.last_event_at, now);
  c.refs.counts.textContent = `${w.stages_done ?? 0} / ${w.stages_failed ?? 0}`;
  c.refs.message.textContent = w.last_message || '';
  c.refs.message.hidden = !w.last_message;
  c.refs.where.textContent = w.host || w.pid ? `${w.host || ''}${w.pid ? ` · pid ${w.pid}` : ''}` : '';
}

export function mount(main) {
  document.title = 'Live workers · stagelog';
  const cards = new Map();
  let stopStream = null;
  let stopped = false;

  const connection = h('p', { class: 'connection', role: 'status' }, 'Connecting…');
  const counts = h('ul', { class: 'state-counts', 'aria-label': 'Workers by state' });
  const board = h('div', { class: 'board' });
  const boardState = h('div', {});
  const notices = h('ol', { class: 'notices', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const noticesEmpty = h('p', { class: 'hint' }, 'No warnings since this page opened.');
  const alertsList = h('ol', { class: 'notices' });

  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Live workers'),
      h('p', { class: 'lead' }, 'Each worker as the server\'s watchdog sees it, live.'), connection),
    counts, boardState, board,
    h('div', { class: 'two-col' },
      h('section', { class: 'card', 'aria-labelledby': 'warnings-title' },
        h('h2', { id: 'warnings-title' }, 'Warnings'), noticesEmpty, notices),
      h('section', { class: 'card', 'aria-labelledby': 'alerts-title' },
        h('h2', { id: 'alerts-title' }, 'Recent alerts'), alertsList)));

  function sortBoard() {
    const names = [...cards.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const order = names.map((n) => cards.get(n).el);
    if (order.some((el, i) => board.children[i] !== el)) board.replaceChildren(...order);
  }

  function paintCounts() {
    const n = Object.fromEntries(STATES.map((st) => [st, 0]));
    for (const c of cards.values()) n[c.data.state] = (n[c.data.state] || 0) + 1;
    replace(counts, STATES.map((st) => h('li', { class: `count count-${st}` },
      h('span', { class: 'count-n' }, String(n[st])), ` ${st}`)));
    replace(boardState, cards.size === 0 ? empty('No workers yet.',
      'Workers appear here as soon as the server receives their first event.') : null);
  }

  function setWorker(w, receivedAt = Date.now()) {
    let c = cards.get(w.worker);
    if (!c) {
      c = card(w.worker);
      cards.set(w.worker, c);
    }
    const previousStage = c.data ? c.data.stage : null;
    c.data = { ...(c.data || {}), ...w };
    if (w.time_in_stage_ms !== undefined) {
      c.stageSince = w.time_in_stage_ms === null ? null : receivedAt - w.time_in_stage_ms;
    } else if (w.stage !== previousStage) {
      c.stageSince = w.stage ? receivedAt : null;
    }
    paint(c, Date.now());
    return c;
  }

  // Cards that changed in this batch: they flash once when it is drawn.
  const changed = new Set();
  function flash(c) {
    changed.add(c);
  }

  function notice(list, cls, title, text, at) {
    if (list === notices) noticesEmpty.hidden = true;
    else document.getElementById('no-alerts')?.remove();
    const item = h('li', { class: `notice ${cls}` },
      h('p', { class: 'notice-title' }, title),
      text ? h('p', { class: 'notice-text' }, text) : null,
      at ? h('p', { class: 'muted small' }, absolute(at)) : null);
    list.prepend(item);
    while (list.children.length > MAX_NOTICES) list.lastElementChild.remove();
  }

  function onEvent(e) {
    if (!e.worker) return;
    const known = cards.get(e.worker);
    const at = e.ts || new Date().toISOString();
    const update = { worker: e.worker, last_event_at: at };
    if (e.kind === 'heartbeat') update.last_heartbeat_at = at;
    if (!known) Object.assign(update, { state: 'idle', stage: '', task: '' });
    if (e.kind === 'stage' && (e.status === 'starting' || e.status === 'in_progress')) {
      // The watchdog's worker entry follows within a tick; showing the stage now is the same.
      Object.assign(update, { stage: e.stage, state: 'running' });
    }
    if (e.message) update.last_message = e.message;
    const c = setWorker(update);
    flash(c);
  }

  function onMessage({ type, data }) {
    if (type === 'worker') {
      flash(setWorker(data));
    } else if (type === 'event') {
      onEvent(data);
    } else if (type === 'warning') {
      const rule = data.rule || 'warning';
      notice(notices, `notice-${RULE_LOOKS[rule] || 'warn'}`,
        `${rule.replace(/_/g, ' ')}${data.worker ? ` · ${data.worker}` : ''}${data.stage ? ` · ${data.stage}` : ''}`,
        data.message, parseTime(data.ts));
    } else if (type === 'alert') {
      notice(alertsList, 'notice-alert', `${data.rule || 'alert'}: ${data.type || ''}`, data.summary, parseTime(data.at));
    } else if (type === 'reset') {
      notice(notices, 'notice-warn', 'stream reset', data.message || 'Some entries were missed; the board was reloaded.', Date.now());
      loadBoard();
      return;
    }
  }

  // A busy stream brings thousands of entries a second: they are applied as they come but
  // the board is laid out and its cards flashed once per batch, at most ten times a second.
  // (A timer, not requestAnimationFrame, which stops in a background tab while entries pile up.)
  const queue = [];
  let flushing = null;
  function enqueue(message) {
    queue.push(message);
    if (flushing === null) flushing = setTimeout(flush, 100);
  }
  function flush() {
    flushing = null;
    for (const message of queue.splice(0)) onMessage(message);
    for (const c of changed) {
      c.el.classList.remove('flash');
      void c.el.offsetWidth;  // Restart the animation.
      c.el.classList.add('flash');
    }
    changed.clear();
    sortBoard();
    paintCounts();
  }

  async function loadBoard() {
    try {
      const body = await getJson('/api/v1/workers');
      if (stopped) return;
      const t = Date.now();
      for (const w of body.workers) setWorker(w, t);
      sortBoard();
      paintCounts();
      return true;
    } catch (error) {
      if (stopped) return false;
      replace(boardState, failure(error, start));
      return false;
    }
  }

  async function loadAlerts() {
    try {
      const body = await getJson('/api/v1/alerts');
      if (stopped) return;
      if (body.alerts.length === 0) alertsList.before(h('p', { class: 'hint', id: 'no-alerts' }, 'No alert has fired.'));
      for (const a of [...body.alerts].reverse()) notice(alertsList, 'notice-alert', `${a.rule}: ${a.type}`, a.summary, parseTime(a.at));
    } catch (error) {
      if (!stopped) alertsList.before(failure(error));
    }
  }

  async function start() {
    replace(boardState, loading('workers'));
    if (!(await loadBoard()) || stopped) return;
    // From now on (not from the oldest entry): the board above is the state up to now.
    stopStream = openStream({ types: 'event,warning,worker,alert' }, {
      onMessage: enqueue,
      onState({ state, retryInMs, error }) {
        connection.className = `connection connection-${state}`;
        connection.textContent = state === 'open' ? 'Live'
          : state === 'connecting' ? 'Connecting…'
            : `Disconnected${error ? ` (${error.message})` : ''}; retrying in ${Math.round(retryInMs / 1000)}s`;
      },
    });
  }

  // Times in stage and "ago"s move with the clock.
  const timer = setInterval(() => {
    const t = Date.now();
    for (const c of cards.values()) paint(c, t);
  }, 1000);

  start();
  loadAlerts();
  return () => {
    stopped = true;
    clearInterval(timer);
    if (stopStream) stopStream();
    clearTimeout(flushing);
  };
}
