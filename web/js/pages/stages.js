// Stages: how long each stage takes (p50 / p95 / max, as bars on one scale), its trend over
// the chosen range (p50 and p95 per hour or day), and the failure patterns — failed steps
// grouped by their error with numbers and ids masked — with links to examples.

import { getJson } from '../api.js';
import { h, s, replace, loading, empty, failure } from '../dom.js';
import { duration, absolute, parseTime, timeEl } from '../format.js';

const RANGES = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];

// A small line chart of p50 and p95 per interval; its text alternative says the same in words.
function sparkline(series, interval) {
  const points = series.filter((p) => p.count > 0);
  if (points.length < 2) {
    return h('span', { class: 'muted small' }, points.length ? `one ${interval} of data` : 'no data');
  }
  const W = 160;
  const H = 36;
  const top = Math.max(...points.map((p) => p.p95_ms), 1);
  const t0 = parseTime(series[0].start);
  const t1 = parseTime(series[series.length - 1].start);
  const x = (p) => (t1 === t0 ? 0 : ((parseTime(p.start) - t0) / (t1 - t0)) * (W - 4) + 2);
  const y = (v) => H - 3 - (v / top) * (H - 6);
  const line = (key) => points.map((p) => `${x(p).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
  const first = points[0];
  const last = points[points.length - 1];
  return s('svg', { class: 'sparkline', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
    'aria-label': `p95 per ${interval}: ${duration(first.p95_ms)} at ${absolute(parseTime(first.start))}, `
      + `${duration(last.p95_ms)} at ${absolute(parseTime(last.start))}, highest ${duration(top)}` },
  s('polyline', { class: 'spark-p95', points: line('p95_ms') }),
  s('polyline', { class: 'spark-p50', points: line('p50_ms') }));
}

// p50, p95 and max of one stage as nested bars on the scale of the slowest stage's max.
function distribution(row, scale) {
  const bar = (cls, ms) => {
    const el = h('span', { class: `dist-bar ${cls}` });
    el.style.width = `${Math.max(0.5, (ms / scale) * 100).toFixed(2)}%`;
    return el;
  };
  return h('div', { class: 'dist', 'aria-hidden': 'true' },
    bar('dist-max', row.max_ms), bar('dist-p95', row.p95_ms), bar('dist-p50', row.p50_ms));
}

function searchWords(pattern) {
  return (pattern.match(/[A-Za-z][A-Za-z0-9_]{2,}/g) || []).slice(0, 5).join(' ');
}

export function mount(main, { query }) {
  const range = query.get('range') || '7d';
  const interval = query.get('interval') || '';
  document.title = 'Stages · stagelog';
  let stopped = false;

  const go = () => {
    const q = new URLSearchParams({ range: rangeSelect.value });
    if (intervalSelect.value) q.set('interval', intervalSelect.value);
    location.hash = `#/stages?${q}`;
  };
  const rangeSelect = h('select', { id: 's-range', name: 'range', onchange: go },
    RANGES.map(([v, text]) => h('option', { value: v, selected: v === range }, text)));
  // The server picks hours for up to two days and days beyond unless told.
  const intervalSelect = h('select', { id: 's-interval', name: 'interval', onchange: go },
    [['', 'Automatic'], ['hour', 'Hour'], ['day', 'Day']].map(([v, text]) =>
      h('option', { value: v, selected: v === interval }, text)));
  const statsBox = h('div', {});
  const failuresBox = h('div', {});

  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Stages'),
      h('p', { class: 'lead' }, 'How long each stage takes, how that moves, and how it fails.')),
    h('div', { class: 'filters filters-inline' },
      h('div', { class: 'field' }, h('label', { for: 's-range' }, 'Range'), rangeSelect),
      h('div', { class: 'field' }, h('label', { for: 's-interval' }, 'Trend per'), intervalSelect)),
    h('section', { class: 'card', 'aria-labelledby': 'durations-title' },
      h('h2', { id: 'durations-title' }, 'Durations'),
      h('ul', { class: 'legend' },
        h('li', {}, h('span', { class: 'swatch dist-p50', 'aria-hidden': 'true' }), 'p50'),
        h('li', {}, h('span', { class: 'swatch dist-p95', 'aria-hidden': 'true' }), 'p95'),
        h('li', {}, h('span', { class: 'swatch dist-max', 'aria-hidden': 'true' }), 'max'),
        h('li', {}, h('span', { class: 'swatch spark-swatch', 'aria-hidden': 'true' }), 'trend: p95 (dark), p50 (light)')),
      statsBox),
    h('section', { class: 'card', 'aria-labelledby': 'failures-title' },
      h('h2', { id: 'failures-title' }, 'Failure patterns'), failuresBox));

  async function loadStats() {
    replace(statsBox, loading('stage statistics'));
    try {
      const body = await getJson('/api/v1/stats/stages', { since: range, interval });
      if (stopped) return;
      if (body.stages.length === 0) {
        replace(statsBox, empty('No stage ended in this range.', 'Choose a longer range.'));
        return;
      }
      const rows = [...body.stages].sort((a, b) => b.p95_ms - a.p95_ms);
      const scale = Math.max(...rows.map((r) => r.max_ms), 1);
      const stageLink = (stage, extra = '') => `#/executions?stage=${encodeURIComponent(stage)}${extra}`;
      replace(statsBox, h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Stage durations' }, h('table', { class: 'table stages' },
        h('caption', { class: 'visually-hidden' }, `Stage durations, slowest p95 first, ${absolute(parseTime(body.since))} to ${absolute(parseTime(body.until))}`),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Stage'),
          h('th', { scope: 'col', class: 'num' }, 'Ended'),
          h('th', { scope: 'col', class: 'num' }, 'Failed'),
          h('th', { scope: 'col', class: 'num' }, 'p50'),
          h('th', { scope: 'col', class: 'num' }, 'p95'),
          h('th', { scope: 'col', class: 'num' }, 'max'),
          h('th', { scope: 'col', class: 'dist-col' }, 'Distribution'),
          h('th', { scope: 'col' }, `Trend per ${body.interval}`))),
        h('tbody', {}, rows.map((r) => h('tr', { dataset: { stage: r.stage } },
          h('th', { scope: 'row' }, h('a', { class: 'mono', href: stageLink(r.stage) }, r.stage)),
          h('td', { class: 'num' }, String(r.count)),
          h('td', { class: 'num' }, r.failures ? h('a', { href: stageLink(r.stage, '&status=failed'), class: 'text-failed' }, String(r.failures)) : '0'),
          h('td', { class: 'num' }, duration(r.p50_ms)),
          h('td', { class: 'num' }, duration(r.p95_ms)),
          h('td', { class: 'num' }, duration(r.max_ms)),
          h('td', { class: 'dist-col' }, distribution(r, scale)),
          h('td', {}, sparkline(r.series, body.interval))))))));
    } catch (error) {
      if (!stopped) replace(statsBox, failure(error, loadStats));
    }
  }

  async function loadFailures() {
    replace(failuresBox, loading('failure patterns'));
    try {
      const body = await getJson('/api/v1/stats/failures', { since: range, limit: 20 });
      if (stopped) return;
      if (body.patterns.length === 0) {
        replace(failuresBox, empty('No failures in this range.', 'Nothing failed — or nothing ran.'));
        return;
      }
      replace(failuresBox, h('ol', { class: 'patterns' }, body.patterns.map((p) => {
        const words = searchWords(p.pattern);
        return h('li', { class: 'pattern' },
          h('div', { class: 'pattern-head' },
            h('span', { class: 'badge status-failed' }, `${p.count}×`),
            h('code', { class: 'pattern-text' }, p.pattern)),
          h('p', { class: 'small' }, 'in ', p.stages.map((st, i) => [i ? ', ' : '',
            h('a', { class: 'mono', href: `#/executions?stage=${encodeURIComponent(st)}&status=failed` }, st)]),
          ' · first ', timeEl(p.first_seen), ' · last ', timeEl(p.last_seen)),
          p.example_error ? h('pre', { class: 'error-details' }, p.example_error) : null,
          h('p', { class: 'small' }, 'Examples: ', p.example_tracking_ids.map((id, i) => [i ? ', ' : '',
            h('a', { class: 'mono', href: `#/executions/${encodeURIComponent(id)}` }, id)]),
          words ? [' · ', h('a', { href: `#/executions?status=failed&q=${encodeURIComponent(words)}` }, 'all like this')] : null));
      })));
    } catch (error) {
      if (!stopped) replace(failuresBox, failure(error, loadFailures));
    }
  }

  loadStats();
  loadFailures();
  return () => { stopped = true; };
}
