// Report: the page a team lead reads in a minute (GET /api/v1/report): executions and their
// failure rate against the period before, executions per hour or day, the slowest stages and
// how their p95 moved, the top failure patterns with an example each, the workers that
// crashed, went silent or were stuck, and the alerts fired. The same report downloads as
// self-contained HTML (for mail) or Markdown (for chat).

import { getJson, download } from '../api.js';
import { h, s, replace, loading, empty, failure } from '../dom.js';
import { duration, absolute, parseTime } from '../format.js';

const RANGES = [['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];

function percent(rate) {
  return `${(rate * 100).toFixed(1)}%`;
}

// "+25%", "-10%", "new", "±0%": the change from `before` to `now`.
function change(now, before) {
  if (before === null || before === undefined) return 'new';
  if (before <= 0) return now <= 0 ? '±0%' : 'new';
  const r = Math.round(((now - before) / before) * 100);
  return r === 0 ? '±0%' : `${r > 0 ? '+' : ''}${r}%`;
}

function trend(text, upIsBad) {
  const cls = text.startsWith('+') ? (upIsBad ? 'text-failed' : '') : text.startsWith('-') ? (upIsBad ? '' : 'text-failed') : 'muted';
  return h('span', { class: cls }, text);
}

// Executions per hour or day as bars, the failed part of each in red; the label says it all.
function executionsChart(series, interval) {
  const W = 640;
  const H = 120;
  const most = Math.max(1, ...series.map((b) => b.executions));
  const slot = W / Math.max(1, series.length);
  const total = series.reduce((n, b) => n + b.executions, 0);
  const failed = series.reduce((n, b) => n + b.failed, 0);
  const bars = [];
  series.forEach((b, i) => {
    const height = (b.executions / most) * (H - 4);
    const failedHeight = (b.failed / most) * (H - 4);
    if (b.executions > 0) {
      bars.push(s('rect', { class: 'report-bar', x: (i * slot + slot * 0.1).toFixed(1), y: (H - height).toFixed(1), width: (slot * 0.8).toFixed(1), height: height.toFixed(1) },
        s('title', {}, `${absolute(parseTime(b.start))}: ${b.executions} executions, ${b.failed} failed`)));
    }
    if (b.failed > 0) {
      bars.push(s('rect', { class: 'report-bar-failed', x: (i * slot + slot * 0.1).toFixed(1), y: (H - failedHeight).toFixed(1), width: (slot * 0.8).toFixed(1), height: failedHeight.toFixed(1) }));
    }
  });
  return s('svg', { class: 'report-chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': `Executions per ${interval}: ${total} in all, ${failed} failed, at most ${most} in one ${interval}` }, bars);
}

export function mount(main, { query }) {
  const range = RANGES.some(([v]) => v === query.get('range')) ? query.get('range') : '24h';
  document.title = 'Report · stagelog';
  let stopped = false;

  const rangeSelect = h('select', { id: 'r-range', name: 'range', onchange: () => { location.hash = `#/report?range=${rangeSelect.value}`; } },
    RANGES.map(([v, text]) => h('option', { value: v, selected: v === range }, text)));
  const note = h('p', { class: 'small muted', role: 'status' });
  const save = (format, ext) => async () => {
    note.textContent = '';
    try {
      await download('/api/v1/report', { since: range, format }, `stagelog-report-${range}.${ext}`);
    } catch (error) {
      note.textContent = `Download failed: ${error.message}`;
    }
  };
  const box = h('div', {});
  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Report'),
      h('p', { class: 'lead' }, 'A period at a glance, against the period before of the same length.')),
    h('div', { class: 'filters filters-inline' },
      h('div', { class: 'field' }, h('label', { for: 'r-range' }, 'Period'), rangeSelect),
      h('button', { type: 'button', class: 'btn', onclick: save('html', 'html') }, 'Download HTML'),
      h('button', { type: 'button', class: 'btn', onclick: save('md', 'md') }, 'Download Markdown')),
    note, box);

  async function load() {
    replace(box, loading('the report'));
    try {
      const r = await getJson('/api/v1/report', { since: range, format: 'json' });
      if (stopped) return;
      const cur = r.current;
      const prev = r.previous;
      const summary = h('section', { class: 'card', 'aria-labelledby': 'r-summary' },
        h('h2', { id: 'r-summary' }, `${absolute(parseTime(r.since))} to ${absolute(parseTime(r.until))}`),
        h('dl', { class: 'report-kpis' },
          h('div', {}, h('dt', {}, 'Executions'), h('dd', { 'data-kpi': 'executions' }, String(cur.executions)),
            h('dd', { class: 'small' }, `before: ${prev.executions} `, trend(change(cur.executions, prev.executions || null), false))),
          h('div', {}, h('dt', {}, 'Failure rate'), h('dd', { 'data-kpi': 'failure-rate' }, percent(cur.failure_rate)),
            h('dd', { class: 'small' }, `${cur.failed} failed; before: ${percent(prev.failure_rate)}`)),
          h('div', {}, h('dt', {}, 'Still running'), h('dd', {}, String(cur.in_progress)))),
        executionsChart(r.series, r.interval));

      const stages = h('section', { class: 'card', 'aria-labelledby': 'r-stages' }, h('h2', { id: 'r-stages' }, 'Slowest stages'),
        r.slowest_stages.length === 0 ? empty('No stage ended in this period.')
          : h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Slowest stages' }, h('table', { class: 'table' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Stage'), h('th', { scope: 'col', class: 'num' }, 'Runs'),
              h('th', { scope: 'col', class: 'num' }, 'Failed'), h('th', { scope: 'col', class: 'num' }, 'p50'),
              h('th', { scope: 'col', class: 'num' }, 'p95'), h('th', { scope: 'col', class: 'num' }, 'p95 change'))),
            h('tbody', {}, r.slowest_stages.map((st) => h('tr', {},
              h('th', { scope: 'row' }, h('a', { class: 'mono', href: `#/executions?stage=${encodeURIComponent(st.stage)}` }, st.stage)),
              h('td', { class: 'num' }, String(st.count)), h('td', { class: 'num' }, String(st.failures)),
              h('td', { class: 'num' }, duration(st.p50_ms)), h('td', { class: 'num' }, duration(st.p95_ms)),
              h('td', { class: 'num' }, trend(st.p95_change, true))))))));

      const failures = h('section', { class: 'card', 'aria-labelledby': 'r-failures' }, h('h2', { id: 'r-failures' }, 'Top failure patterns'),
        r.failure_patterns.length === 0 ? empty('No step failed in this period.')
          : h('ol', { class: 'patterns' }, r.failure_patterns.map((p) => h('li', { class: 'pattern' },
            h('div', { class: 'pattern-head' }, h('span', { class: 'badge status-failed' }, `${p.count}×`), h('code', { class: 'pattern-text' }, p.pattern)),
            h('p', { class: 'small' }, `in ${p.stages.join(', ')} · example `,
              h('a', { class: 'mono', href: `#/executions/${encodeURIComponent(p.example_tracking_id)}` }, p.example_tracking_id))))));

      const list = (id, title, items, none, text) => h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title),
        items === null ? h('p', { class: 'muted' }, 'Only a running server knows.')
          : items.length === 0 ? h('p', {}, none)
            : h('ul', {}, items.map((item) => h('li', {}, text(item)))));
      const workers = list('r-workers', 'Workers crashed, silent or stuck', r.workers, 'None.',
        (w) => [absolute(parseTime(w.at)), ' ', h('b', {}, w.kind), ` ${w.worker}${w.stage ? ` in ${w.stage}` : ''}: ${w.message}`]);
      const alerts = list('r-alerts', 'Alerts fired', r.alerts, 'None.',
        (a) => [absolute(parseTime(a.at)), ' ', h('b', {}, a.rule), ` (${a.type}): ${a.summary}`]);
      replace(box, summary, stages, failures, workers, alerts);
    } catch (error) {
      if (!stopped) replace(box, failure(error, load));
    }
  }

  load();
  return () => { stopped = true; };
}
