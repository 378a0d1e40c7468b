// Process log: one attempt of a tracked job, step by step, in seed 004's design: a header
// with the ids, metadata and final status, then each step with its status colour on the left,
// its monospace name, its offset from the start ("+2m 30s") and any error in a red block.

import { getJson } from '../api.js';
import { h, replace, loading, failure } from '../dom.js';
import {
  badge, duration, offset, absolute, parseTime, timeEl, statusKey, statusLabel, metadataOf,
  valueText,
} from '../format.js';

// Keys a step carries besides its custom fields; worker and duration_ms are shown on their own.
const STEP_KEYS = new Set(['step', 'timestamp', 'status', 'message', 'error_details', 'worker',
  'duration_ms']);

// The final status as seed 004 defines it: the last step's status.
export function finalStatus(doc) {
  return doc.steps.length ? doc.steps[doc.steps.length - 1].status : 'unknown';
}

function metaItem(label, value, { mono = false } = {}) {
  return h('div', { class: 'meta-item' }, h('dt', {}, label),
    h('dd', { class: mono ? 'mono' : null }, value));
}

function stepItem(step, startedMs, index) {
  const at = parseTime(step.timestamp);
  const custom = Object.entries(step).filter(([key]) => !STEP_KEYS.has(key));
  const key = statusKey(step.status);
  return h('li', { class: `step step-${key}`, dataset: { status: step.status } },
    h('div', { class: 'step-head' },
      h('span', { class: 'step-index', 'aria-hidden': 'true' }, String(index + 1)),
      h('span', { class: 'step-name' }, step.step),
      h('span', { class: 'visually-hidden' }, `, ${statusLabel(step.status)}, `),
      h('span', { class: 'step-offset', title: at === null ? null : absolute(at) },
        at === null ? '' : offset(at - startedMs)),
      h('span', { class: `step-status text-${key}`, 'aria-hidden': 'true' }, statusLabel(step.status))),
    step.message ? h('p', { class: 'step-message' }, step.message) : null,
    step.worker || step.duration_ms !== undefined || custom.length ? h('p', { class: 'step-facts' },
      step.worker ? h('span', {}, 'worker ', h('span', { class: 'mono' }, step.worker)) : null,
      step.duration_ms !== undefined ? h('span', {}, `took ${duration(step.duration_ms)}`) : null,
      custom.map(([k, v]) => h('span', {}, `${k} `, h('span', { class: 'mono' }, valueText(v))))) : null,
    step.error_details ? h('pre', { class: 'error-details', 'aria-label': 'Error details' },
      step.error_details) : null);
}

export function mount(main, { path, query }) {
  const id = path[1];
  const attempt = query.get('attempt');
  document.title = `${id} · Process log · stagelog`;
  let stopped = false;
  const idPath = `/api/v1/executions/${encodeURIComponent(id)}`;

  let refresh = null;
  let shown = null;

  // An execution still in progress is fetched again every few seconds; the page is redrawn
  // only when something changed, so focus and reading position stay put otherwise.
  async function load(first = true) {
    if (first) replace(main, loading('the process log'));
    try {
      const [doc, attempts] = await Promise.all([
        getJson(idPath, attempt ? { attempt } : {}),
        getJson(`${idPath}/attempts`),
      ]);
      if (stopped) return;
      const seen = JSON.stringify([doc, attempts.attempts]);
      if (seen !== shown) {
        shown = seen;
        show(doc, attempts.attempts);
      }
      if (doc.completed_at === undefined) refresh = setTimeout(() => load(false), 5000);
    } catch (error) {
      if (stopped) return;
      replace(main, h('div', { class: 'page-head' },
        h('p', { class: 'crumbs' }, h('a', { href: '#/executions' }, '← Executions')),
        h('h1', {}, h('span', { class: 'mono' }, id))), failure(error, () => load()));
    }
  }

  function show(doc, attempts) {
    const started = parseTime(doc.started_at);
    const status = finalStatus(doc);
    const current = attempt ? Number(attempt) : attempts[attempts.length - 1].attempt;
    const completed = parseTime(doc.completed_at);
    const readable = doc.duration_ms !== undefined ? duration(doc.duration_ms)
      : `running for ${duration(Date.now() - started)}`;
    const href = (n) => `#/executions/${encodeURIComponent(id)}?attempt=${n}`;

    const switcher = attempts.length > 1 ? h('nav', { class: 'attempts', 'aria-label': 'Attempts' },
      h('span', { class: 'attempts-label' }, 'Attempts'),
      h('ul', {}, attempts.map((a) => h('li', {},
        h('a', { href: href(a.attempt), class: ['attempt', `attempt-${statusKey(a.final_status)}`],
          'aria-current': a.attempt === current ? 'page' : null,
          title: `${statusLabel(a.final_status)}, started ${absolute(parseTime(a.started_at))}` },
        `#${a.attempt}`, h('span', { class: 'visually-hidden' }, `, ${statusLabel(a.final_status)}`)))))) : null;

    replace(main,
      h('div', { class: 'page-head' },
        h('p', { class: 'crumbs' }, h('a', { href: '#/executions' }, '← Executions')),
        h('div', { class: 'log-title' },
          h('h1', { class: 'log-header' }, 'Process log ', h('span', { class: 'mono' }, id)),
          badge(status)),
        h('p', { class: 'page-links' },
          h('a', { href: `#/timeline?run=${encodeURIComponent(id)}&attempt=${current}` },
            'Timeline of this attempt'))),
      switcher,
      h('section', { class: 'card', 'aria-label': 'Execution details' },
        h('dl', { class: 'log-metadata' },
          metaItem('Tracking ID', id, { mono: true }),
          metaItem('Execution ID', doc.execution_id, { mono: true }),
          metaItem('Attempt', `${current} of ${attempts.length}`),
          metaItem('Final status', statusLabel(status)),
          metaItem('Started', h('span', {}, absolute(started), ' · ', timeEl(doc.started_at))),
          metaItem('Completed', completed === null ? 'not yet' : absolute(completed)),
          metaItem('Duration', readable),
          metaItem('Steps', String(doc.steps.length)),
          metadataOf(doc).map(([k, v]) => metaItem(k, valueText(v))))),
      h('section', { 'aria-labelledby': 'steps-title' },
        h('h2', { id: 'steps-title' }, 'Steps'),
        doc.steps.length === 0 ? h('p', { class: 'state state-empty' }, 'No steps recorded yet.')
          : h('ol', { class: 'log-steps' }, doc.steps.map((step, i) => stepItem(step, started, i)))));
  }

  load();
  return () => {
    stopped = true;
    clearTimeout(refresh);
  };
}
