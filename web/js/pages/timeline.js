// Timeline: a Gantt of stages per worker, for one execution (#/timeline?run=ID&attempt=N) or
// for a whole run of the pipeline — every execution that started in a time range
// (#/timeline?range=1h), the newest MAX_EXECUTIONS of them, each document fetched on its own.

import { getJson } from '../api.js';
import { h, replace, loading, empty, failure } from '../dom.js';
import { duration, absolute, parseTime } from '../format.js';
import { spansOf, endOf } from '../spans.js';
import { createGantt } from '../gantt.js';

const MAX_EXECUTIONS = 60;
const PARALLEL = 4;  // Documents fetched at once: the server's threads are shared.
const SHOWN_PATH = 40;  // Stages of the critical path listed under the chart.
const RANGES = [['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'],
  ['24h', 'Last 24 hours'], ['7d', 'Last 7 days']];

async function fetchAll(items, fetchOne) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fetchOne(items[i]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
  return out;
}

export function mount(main, { query }) {
  const run = query.get('run') || '';
  const attempt = query.get('attempt') || '';
  const range = query.get('range') || '1h';
  document.title = `${run ? `${run} · ` : ''}Timeline · stagelog`;
  let stopped = false;
  let refresh = null;

  const runInput = h('input', { id: 't-run', name: 'run', value: run, placeholder: 'item-13' });
  const rangeSelect = h('select', { id: 't-range', name: 'range' },
    RANGES.map(([v, text]) => h('option', { value: v, selected: v === range }, text)));
  const form = h('form', { class: 'filters filters-inline', 'aria-label': 'What to show',
    onsubmit(e) {
      e.preventDefault();
      const id = runInput.value.trim();
      location.hash = id ? `#/timeline?run=${encodeURIComponent(id)}`
        : `#/timeline?range=${encodeURIComponent(rangeSelect.value)}`;
    } },
  h('div', { class: 'field' }, h('label', { for: 't-run' }, 'One execution (tracking id)'), runInput),
  h('p', { class: 'or', 'aria-hidden': 'true' }, 'or'),
  h('div', { class: 'field' }, h('label', { for: 't-range' }, 'Every execution started in'), rangeSelect),
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Show')));

  const gantt = createGantt({
    onOpen: run ? null : (sp) => { location.hash = `#/executions/${encodeURIComponent(sp.run)}`; },
  });
  const status = h('div', { class: 'timeline-status' });
  const summary = h('div', { class: 'timeline-summary' });
  const chartSection = h('section', { class: 'card chart-card', 'aria-labelledby': 'chart-title', hidden: true },
    h('h2', { id: 'chart-title', class: 'visually-hidden' }, 'Stages per worker'), gantt.el);

  main.append(
    h('div', { class: 'page-head' },
      run ? h('p', { class: 'crumbs' }, h('a', { href: `#/executions/${encodeURIComponent(run)}${attempt ? `?attempt=${attempt}` : ''}` }, '← Process log')) : null,
      h('h1', {}, 'Timeline', run ? h('span', { class: 'mono' }, ` ${run}`) : null),
      h('p', { class: 'lead' }, run ? 'Each stage of this execution on the worker that ran it.'
        : 'Each stage of every execution in the range, on the worker that ran it. Select a bar to open its process log.')),
    form, status, chartSection, summary);

  function showSummary(spans, executions) {
    const t = Date.now();
    const path = gantt.critical();
    const workers = new Set(spans.map((sp) => sp.worker));
    const lo = Math.min(...spans.map((sp) => sp.start));
    const hi = Math.max(...spans.map((sp) => endOf(sp, t)));
    const busy = path.reduce((sum, sp) => sum + (endOf(sp, t) - sp.start), 0);
    replace(summary,
      h('p', { class: 'summary' },
        `${executions} execution${executions === 1 ? '' : 's'}, ${workers.size} worker${workers.size === 1 ? '' : 's'}, `
        + `${spans.length} stage${spans.length === 1 ? '' : 's'} over ${duration(hi - lo)}, from ${absolute(lo)}.`),
      h('section', { class: 'card', 'aria-labelledby': 'critical-title' },
        h('h2', { id: 'critical-title' }, 'Critical path'),
        h('p', { class: 'hint' }, 'From the stage that ended last, back through the stage that ended latest before each one began, on any worker: the chain that decided when the work was done. ',
          `Its stages ran ${duration(busy)} of the ${duration(hi - lo)}; the rest is waiting between them.`),
        h('ol', { class: 'critical-list' }, path.slice(0, SHOWN_PATH).map((sp) => h('li', {},
          h('span', { class: 'mono' }, sp.stage), ` on ${sp.worker} · ${sp.running ? 'running for ' : ''}${duration(endOf(sp, t) - sp.start)}`,
          run ? null : h('span', { class: 'muted' }, ` · ${sp.run}`)))),
        path.length > SHOWN_PATH ? h('p', { class: 'hint' }, `… and ${path.length - SHOWN_PATH} more stages.`) : null));
  }

  async function load(first) {
    if (first) replace(status, loading('the timeline'));
    try {
      let docs;
      let note = null;
      if (run) {
        docs = [await getJson(`/api/v1/executions/${encodeURIComponent(run)}`, attempt ? { attempt } : {})];
      } else {
        const page = await getJson('/api/v1/executions', { since: range, limit: MAX_EXECUTIONS });
        if (page.next_cursor) note = `Showing the newest ${MAX_EXECUTIONS} executions of the range; choose a shorter range to see all.`;
        docs = await fetchAll(page.executions, (e) =>
          getJson(`/api/v1/executions/${encodeURIComponent(e.tracking_id)}`, { attempt: e.attempt }));
      }
      if (stopped) return;
      const spans = docs.flatMap(spansOf);
      if (spans.length === 0) {
        chartSection.hidden = true;
        replace(summary);
        replace(status, empty(run ? 'This execution has no stages to draw yet.' : 'No stages in this range.',
          run ? 'Stages appear once their start or end events arrive.' : 'Choose a longer range, or open one execution.'));
      } else {
        chartSection.hidden = false;
        replace(status, note ? h('p', { class: 'hint' }, note) : null);
        const started = run ? parseTime(docs[0].started_at) : null;
        gantt.update(spans, { axisOrigin: started ?? undefined });
        showSummary(spans, docs.length);
      }
      // While stages run, fetch again for new ones; they grow in between by themselves.
      if (spans.some((sp) => sp.running)) refresh = setTimeout(() => load(false), run ? 5000 : 10000);
    } catch (error) {
      if (stopped) return;
      chartSection.hidden = true;
      replace(status, failure(error, () => load(true)));
    }
  }

  load(true);
  return () => {
    stopped = true;
    clearTimeout(refresh);
    gantt.destroy();
  };
}
