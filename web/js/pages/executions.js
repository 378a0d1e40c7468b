// Executions: every attempt of every job, newest first, with full-text search and filters.
// The filters live in the URL (#/executions?status=failed&q=timeout) so a view can be shared
// and survives a reload; pages continue with the server's next_cursor as the list scrolls.

import { getJson, download } from '../api.js';
import { h, replace, loading, empty, failure } from '../dom.js';
import { badge, duration, timeEl, valueText, absolute, parseTime } from '../format.js';

const PAGE = 50;
const RANGES = [
  ['', 'Any time'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days'], ['custom', 'Between…'],
];
const STATUSES = [
  ['', 'Any status'], ['completed', 'Completed'], ['failed', 'Failed'],
  ['in_progress', 'In progress'], ['skipped', 'Skipped'], ['unknown', 'Unknown'],
];

// The filters of the URL as the API's parameters.
export function apiFilters(query) {
  const params = {};
  for (const key of ['q', 'status', 'worker', 'stage']) {
    if (query.get(key)) params[key] = query.get(key);
  }
  const range = query.get('range') || '';
  if (range === 'custom') {
    if (query.get('since')) params.since = new Date(query.get('since')).toISOString();
    if (query.get('until')) params.until = new Date(query.get('until')).toISOString();
  } else if (range) {
    params.since = range;
  }
  // "tier=comprehensive, company=Acme Corp" → metadata.tier=…, metadata.company=…
  for (const pair of (query.get('meta') || '').split(',')) {
    const eq = pair.indexOf('=');
    if (eq > 0) params[`metadata.${pair.slice(0, eq).trim()}`] = pair.slice(eq + 1).trim();
  }
  return params;
}

function field(id, label, control) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control);
}

function select(id, options, value) {
  return h('select', { id, name: id },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

// A datetime-local input's value from a stored ISO text.
function localValue(text) {
  if (!text) return '';
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

export function mount(main, { query }) {
  document.title = 'Executions · stagelog';
  let stopped = false;
  let cursor = null;
  let busy = false;
  let shown = 0;

  const q = h('input', { id: 'f-q', name: 'q', type: 'search', value: query.get('q') || '',
    placeholder: 'Words in messages and errors (time* for a prefix)' });
  const status = select('f-status', STATUSES, query.get('status') || '');
  const range = select('f-range', RANGES, query.get('range') || '');
  const since = h('input', { id: 'f-since', name: 'since', type: 'datetime-local',
    value: localValue(query.get('since')) });
  const until = h('input', { id: 'f-until', name: 'until', type: 'datetime-local',
    value: localValue(query.get('until')) });
  const worker = h('input', { id: 'f-worker', name: 'worker', value: query.get('worker') || '',
    placeholder: 'T0_02' });
  const stage = h('input', { id: 'f-stage', name: 'stage', value: query.get('stage') || '',
    placeholder: 'JUDGE' });
  const meta = h('input', { id: 'f-meta', name: 'meta', value: query.get('meta') || '',
    placeholder: 'tier=comprehensive' });
  const custom = h('div', { class: 'field-group', hidden: range.value !== 'custom' },
    field('f-since', 'From (local time)', since), field('f-until', 'To (local time)', until));
  range.addEventListener('change', () => { custom.hidden = range.value !== 'custom'; });

  const exportStatus = h('span', { class: 'hint', role: 'status' });
  const exportButton = h('button', { type: 'button', class: 'btn', id: 'export-csv',
    async onclick() {
      exportButton.disabled = true;
      exportStatus.textContent = 'Preparing CSV…';
      try {
        const bytes = await download('/api/v1/executions.csv', apiFilters(currentQuery()),
          'executions.csv');
        exportStatus.textContent = `CSV saved (${(bytes / 1024).toFixed(1)} KiB).`;
      } catch (error) {
        exportStatus.textContent = `Export failed: ${error.message}`;
      } finally {
        exportButton.disabled = false;
      }
    } }, 'Export CSV');

  function currentQuery() {
    const out = new URLSearchParams();
    const put = (key, value) => { if (value) out.set(key, value); };
    put('q', q.value.trim());
    put('status', status.value);
    put('range', range.value);
    if (range.value === 'custom') {
      if (since.value) put('since', new Date(since.value).toISOString());
      if (until.value) put('until', new Date(until.value).toISOString());
    }
    put('worker', worker.value.trim());
    put('stage', stage.value.trim());
    put('meta', meta.value.trim());
    return out;
  }

  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter executions',
    onsubmit(e) {
      e.preventDefault();
      const qs = currentQuery().toString();
      // replaceState: no hashchange, so the page keeps its focus and form while it reloads.
      history.replaceState(null, '', `#/executions${qs ? `?${qs}` : ''}`);
      reload();
    } },
  field('f-q', 'Search', q),
  h('div', { class: 'field-row' },
    field('f-status', 'Status', status),
    field('f-range', 'Started', range),
    field('f-worker', 'Worker', worker),
    field('f-stage', 'Stage', stage),
    field('f-meta', 'Metadata (key=value, …)', meta)),
  custom,
  h('div', { class: 'actions' },
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply filters'),
    h('button', { type: 'button', class: 'btn btn-quiet', onclick() {
      for (const input of [q, worker, stage, meta, since, until]) input.value = '';
      status.value = '';
      range.value = '';
      custom.hidden = true;
      form.requestSubmit();
    } }, 'Clear'),
    exportButton, exportStatus));
  // Choosing from a list applies at once; typing applies on Enter.
  status.addEventListener('change', () => form.requestSubmit());
  range.addEventListener('change', () => { if (range.value !== 'custom') form.requestSubmit(); });

  const summary = h('p', { class: 'summary', role: 'status', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table', { class: 'table executions' },
    h('caption', { class: 'visually-hidden' }, 'Executions, newest first'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Tracking id'),
      h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Started'),
      h('th', { scope: 'col', class: 'num' }, 'Duration'),
      h('th', { scope: 'col', class: 'num' }, 'Steps'),
      h('th', { scope: 'col' }, 'Metadata'))),
    tbody);
  const list = h('div', { class: 'list' });
  const more = h('div', { class: 'more' });

  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Executions'),
      h('p', { class: 'lead' }, 'Every attempt of every tracked job, newest first.')),
    form, summary, list, more);

  function row(e) {
    const href = `#/executions/${encodeURIComponent(e.tracking_id)}?attempt=${e.attempt}`;
    const metadata = Object.entries(e.metadata || {});
    return h('tr', { dataset: { status: e.final_status } },
      h('th', { scope: 'row' },
        h('a', { href, class: 'mono' }, e.tracking_id),
        e.attempt > 1 ? h('span', { class: 'muted small' }, ` attempt ${e.attempt}`) : null),
      h('td', {}, badge(e.final_status)),
      h('td', {}, timeEl(e.started_at),
        h('span', { class: 'muted small block' }, absolute(parseTime(e.started_at)))),
      h('td', { class: 'num' }, e.duration_ms === null ? h('span', { class: 'muted' }, 'running')
        : duration(e.duration_ms)),
      h('td', { class: 'num' }, String(e.total_steps)),
      h('td', { class: 'meta-cell' }, metadata.length === 0 ? h('span', { class: 'muted' }, '—')
        : metadata.slice(0, 4).map(([k, v]) => h('span', { class: 'chip' },
          h('span', { class: 'chip-key' }, k), ' ', valueText(v)))));
  }

  async function loadPage() {
    if (busy || stopped) return;
    busy = true;
    replace(more, loading(shown ? 'more executions' : 'executions'));
    const params = { ...apiFilters(currentQuery()), limit: PAGE };
    if (cursor) params.cursor = cursor;
    try {
      const page = await getJson('/api/v1/executions', params);
      if (stopped) return;
      if (shown === 0) {
        if (page.executions.length === 0) {
          const filtered = currentQuery().toString() !== '';
          replace(list, empty(filtered ? 'No execution matches these filters.' : 'No executions yet.',
            filtered ? 'Widen the time range or clear a filter.'
              : 'Send events or execution logs to this server and they appear here.'));
        } else {
          // Focusable: on a narrow screen the table scrolls sideways, by keyboard too.
          replace(list, h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Executions' }, table));
        }
      }
      for (const e of page.executions) tbody.appendChild(row(e));
      shown += page.executions.length;
      cursor = page.next_cursor;
      summary.textContent = shown === 0 ? ''
        : `${shown} execution${shown === 1 ? '' : 's'} shown${cursor ? ', more below' : ''}.`;
      replace(more, cursor ? h('button', { type: 'button', class: 'btn', onclick: loadPage },
        'Load more') : null);
    } catch (error) {
      if (stopped) return;
      replace(more, failure(error, loadPage));
    } finally {
      busy = false;
    }
  }

  function reload() {
    cursor = null;
    shown = 0;
    tbody.replaceChildren();
    replace(list);
    summary.textContent = '';
    loadPage();
  }

  // Infinite scroll: the next page loads when the end of the list comes into view. The
  // "Load more" button stays for keyboards and for browsers that scroll differently.
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor && !busy) loadPage();
  }, { rootMargin: '400px' });
  observer.observe(more);

  reload();
  return () => {
    stopped = true;
    observer.disconnect();
  };
}
