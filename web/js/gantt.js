// The Gantt chart: one lane per worker, one bar per stage, coloured by status; hover or focus
// shows a bar's name, duration and message; zoom and pan by buttons, keys, ctrl+wheel and
// dragging; running stages grow with the clock; the critical path is outlined.
// SVG built with createElementNS (the CSP allows no inline styles or scripts).

import { h, s, replace } from './dom.js';
import { duration, offset, absolute, statusKey, statusLabel } from './format.js';
import { endOf, packRows, criticalPath } from './spans.js';

const ROW = 22;        // Height of a bar row.
const LANE_PAD = 8;    // Space above and below a lane's rows.
const AXIS = 26;       // Height of the time axis.
const NICE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4,
  12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5];

export function createGantt({ onOpen } = {}) {
  let spans = [];
  let critical = new Set();
  let showCritical = true;
  let view = null;       // [from, to] in ms since the epoch.
  let full = null;       // The whole extent.
  let following = true;  // The view's end follows the clock while stages run.
  let origin = 0;        // Time 0 of the axis labels.
  let activeKey = null;  // The bar that holds the one Tab stop of all bars, across redraws.

  const svg = s('svg', { class: 'gantt-svg', role: 'group', 'aria-label': 'Stages per worker' });
  const tip = h('div', { class: 'gantt-tip', role: 'tooltip', id: 'gantt-tip', hidden: true });
  const plot = h('div', { class: 'gantt-plot', tabindex: '0',
    'aria-label': 'Timeline chart. Plus and minus zoom, left and right arrows pan, 0 resets; Tab goes to the bars, where the arrows move between them and Enter opens one.' },
  svg);
  const zoomIn = h('button', { type: 'button', class: 'btn btn-small', onclick: () => zoom(0.5) },
    h('span', { 'aria-hidden': 'true' }, '+'), h('span', { class: 'visually-hidden' }, 'Zoom in'));
  const zoomOut = h('button', { type: 'button', class: 'btn btn-small', onclick: () => zoom(2) },
    h('span', { 'aria-hidden': 'true' }, '−'), h('span', { class: 'visually-hidden' }, 'Zoom out'));
  const reset = h('button', { type: 'button', class: 'btn btn-small', onclick: () => resetView() },
    'Fit');
  const criticalToggle = h('input', { type: 'checkbox', id: 'critical-toggle', checked: true,
    onchange() { showCritical = criticalToggle.checked; draw(); } });
  const toolbar = h('div', { class: 'gantt-toolbar' },
    h('div', { class: 'btn-group', role: 'group', 'aria-label': 'Zoom' }, zoomOut, reset, zoomIn),
    h('label', { class: 'check', for: 'critical-toggle' }, criticalToggle,
      h('span', { class: 'swatch swatch-critical', 'aria-hidden': 'true' }), 'Critical path'),
    h('ul', { class: 'legend', 'aria-label': 'Colours' },
      ['completed', 'failed', 'in_progress', 'skipped'].map((st) => h('li', {},
        h('span', { class: `swatch bar-${statusKey(st)}`, 'aria-hidden': 'true' }), statusLabel(st)))));
  // The tooltip sits outside the scrolling plot so that the plot's edges do not cut it off.
  const el = h('div', { class: 'gantt' }, toolbar, plot, tip);

  function now() { return Date.now(); }

  function extent() {
    const t = now();
    let lo = Infinity;
    let hi = -Infinity;
    for (const sp of spans) {
      lo = Math.min(lo, sp.start);
      hi = Math.max(hi, endOf(sp, t));
    }
    if (!Number.isFinite(lo)) return [t - 60000, t];
    const pad = Math.max((hi - lo) * 0.02, 50);
    return [lo - pad, hi + pad];
  }

  function resetView() {
    full = extent();
    view = [...full];
    following = true;
    draw();
  }

  function zoom(factor, centre) {
    const [a, b] = view;
    const c = centre ?? (a + b) / 2;
    const width = Math.max((b - a) * factor, 10);  // Down to 10 ms across.
    view = [c - (c - a) * (width / (b - a)), c + (b - c) * (width / (b - a))];
    following = false;
    draw();
  }

  function pan(fraction) {
    const d = (view[1] - view[0]) * fraction;
    view = [view[0] + d, view[1] + d];
    following = false;
    draw();
  }

  function niceStep(span, px) {
    const wanted = span / Math.max(2, Math.floor(px / 90));
    return NICE_STEPS.find((st) => st >= wanted) || NICE_STEPS[NICE_STEPS.length - 1];
  }

  function describe(sp, t) {
    const took = endOf(sp, t) - sp.start;
    const parts = [`${sp.stage} on ${sp.worker}`, statusLabel(sp.status),
      sp.running ? `running for ${duration(took)}` : duration(took),
      `starts ${offset(sp.start - origin)}`];
    if (critical.has(sp) && showCritical) parts.push('on the critical path');
    if (sp.message) parts.push(sp.message);
    return parts.join(', ');
  }

  function showTip(sp, bar) {
    const t = now();
    replace(tip,
      h('p', { class: 'tip-title' }, h('span', { class: 'mono' }, sp.stage), ` · ${sp.worker}`),
      h('p', {}, `${statusLabel(sp.status)} · ${sp.running ? 'running for ' : ''}${duration(endOf(sp, t) - sp.start)}`),
      h('p', { class: 'muted' }, `${offset(sp.start - origin)} · ${absolute(sp.start)}`),
      sp.run ? h('p', { class: 'muted' }, `execution ${sp.run}`) : null,
      sp.message ? h('p', { class: 'tip-message' }, sp.message) : null,
      sp.error ? h('pre', { class: 'error-details' }, sp.error) : null);
    tip.hidden = false;
    const box = el.getBoundingClientRect();
    const r = bar.getBoundingClientRect();
    const left = Math.min(Math.max(0, r.left - box.left), Math.max(0, box.width - 280));
    tip.style.left = `${left}px`;
    tip.style.top = `${r.bottom - box.top + 4}px`;
  }

  function hideTip() { tip.hidden = true; }

  function draw() {
    if (!view) return;
    const t = now();
    if (following) {
      full = extent();
      view = [view[0], Math.max(view[1], full[1])];
    }
    const width = Math.max(plot.clientWidth || 600, 320);
    const label = width < 520 ? 72 : 130;
    const right = width - 10;
    const [a, b] = view;
    const x = (ms) => label + ((ms - a) / (b - a)) * (right - label);

    // Lanes: workers in name order, each as tall as its nested stages need.
    const byWorker = new Map();
    for (const sp of spans) {
      if (!byWorker.has(sp.worker)) byWorker.set(sp.worker, []);
      byWorker.get(sp.worker).push(sp);
    }
    const workers = [...byWorker.keys()].sort((p, q) => p.localeCompare(q, undefined, { numeric: true }));
    let y = AXIS;
    const lanes = [];
    for (const w of workers) {
      const rows = packRows(byWorker.get(w), t);
      const height = rows * ROW + LANE_PAD * 2;
      lanes.push({ worker: w, y, height, spans: byWorker.get(w) });
      y += height;
    }
    const total = Math.max(y, AXIS + 40);
    svg.setAttribute('viewBox', `0 0 ${width} ${total}`);
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(total));

    const step = niceStep(b - a, right - label);
    const ticks = [];
    // Labels stop short of the right edge, where they would be cut off.
    for (let tick = Math.ceil((a - origin) / step) * step + origin; x(tick) <= right - 48; tick += step) {
      ticks.push(s('g', { class: 'tick' },
        s('line', { x1: x(tick), x2: x(tick), y1: AXIS - 6, y2: total }),
        s('text', { x: x(tick) + 3, y: AXIS - 10 }, offset(tick - origin))));
    }
    const nowLine = t >= a && t <= b && spans.some((sp) => sp.running)
      ? s('line', { class: 'now-line', x1: x(t), x2: x(t), y1: AXIS - 6, y2: total }) : null;

    const laneEls = lanes.map((lane, i) => s('g', { class: 'lane', dataset: { worker: lane.worker },
      role: 'list', 'aria-label': `Worker ${lane.worker}, ${lane.spans.length} stage${lane.spans.length === 1 ? '' : 's'}` },
    s('rect', { class: i % 2 ? 'lane-bg lane-odd' : 'lane-bg', 'aria-hidden': 'true', x: 0, y: lane.y, width, height: lane.height }),
    s('text', { class: 'lane-label', 'aria-hidden': 'true', x: 8, y: lane.y + LANE_PAD + ROW / 2 + 4 },
      lane.worker.length > (label < 100 ? 8 : 16) ? `${lane.worker.slice(0, label < 100 ? 7 : 15)}…` : lane.worker),
    s('g', { 'clip-path': 'url(#gantt-clip)' }, lane.spans.map((sp) => {
      const x0 = x(sp.start);
      const x1 = x(endOf(sp, t));
      const crit = showCritical && critical.has(sp);
      const bar = s('rect', {
        class: ['bar', `bar-${statusKey(sp.status)}`, sp.running && 'bar-running', crit && 'bar-critical'],
        x: Math.max(x0, label - 2), y: lane.y + LANE_PAD + sp.row * ROW + 2,
        width: Math.max(2, Math.min(x1, right + 2) - Math.max(x0, label - 2)), height: ROW - 4, rx: 3,
        tabindex: '-1', role: 'listitem', 'aria-label': describe(sp, t), 'aria-describedby': 'gantt-tip',
        dataset: { stage: sp.stage, status: sp.status, worker: sp.worker },
      });
      bar.addEventListener('mouseenter', () => showTip(sp, bar));
      bar.addEventListener('mouseleave', hideTip);
      bar.addEventListener('focus', () => {
        showTip(sp, bar);
        rove(bar);
      });
      bar.addEventListener('blur', hideTip);
      bar.addEventListener('keydown', (e) => moveFrom(bar, e));
      if (onOpen) {
        bar.addEventListener('click', () => onOpen(sp));
        bar.addEventListener('keydown', (e) => { if (e.key === 'Enter') onOpen(sp); });
      }
      return bar;
    }))));

    // Keep keyboard focus on the same bar across redraws (running bars redraw every second).
    const focused = svg.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused && focused.dataset && focused.classList.contains('bar') ? barKey(focused) : null;
    replace(svg,
      s('defs', {}, s('clipPath', { id: 'gantt-clip' },
        s('rect', { x: label - 2, y: 0, width: right - label + 4, height: total }))),
      s('g', { class: 'axis', 'aria-hidden': 'true' }, ticks), ...laneEls, nowLine);
    if (focusKey) {
      for (const bar of svg.querySelectorAll('.bar')) {
        if (barKey(bar) === focusKey) {
          bar.focus({ preventScroll: true });
          break;
        }
      }
    }
    const bars = [...svg.querySelectorAll('.bar')];
    rove(bars.find((bar) => barKey(bar) === activeKey) || bars[0]);
  }

  function barKey(bar) {
    return `${bar.dataset.worker}\u0000${bar.dataset.stage}\u0000${bar.getAttribute('y')}`;
  }

  // One Tab stop for all the bars (a big run has hundreds): the bar last focused, or the first.
  // The arrows move between bars: left and right along a lane, up and down to the bar of the
  // next lane that starts nearest; Home and End go to the first and last bar.
  function rove(target) {
    if (!target) return;
    for (const bar of svg.querySelectorAll('.bar[tabindex="0"]')) {
      if (bar !== target) bar.setAttribute('tabindex', '-1');
    }
    target.setAttribute('tabindex', '0');
    activeKey = barKey(target);
  }

  function moveFrom(bar, e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const lanesEls = [...svg.querySelectorAll('g.lane')].filter((g) => g.querySelector('.bar'));
    const lane = bar.closest('g.lane');
    const inLane = [...lane.querySelectorAll('.bar')];
    const all = [...svg.querySelectorAll('.bar')];
    const xOf = (el) => Number(el.getAttribute('x'));
    let next = null;
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      const sorted = inLane.sort((p, q) => xOf(p) - xOf(q));
      next = sorted[sorted.indexOf(bar) + (e.key === 'ArrowRight' ? 1 : -1)];
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      const other = lanesEls[lanesEls.indexOf(lane) + (e.key === 'ArrowDown' ? 1 : -1)];
      if (other) {
        const x0 = xOf(bar);
        next = [...other.querySelectorAll('.bar')]
          .reduce((best, el) => (!best || Math.abs(xOf(el) - x0) < Math.abs(xOf(best) - x0) ? el : best), null);
      }
    } else if (e.key === 'Home') {
      next = all[0];
    } else if (e.key === 'End') {
      next = all[all.length - 1];
    } else {
      return;
    }
    // The plot's own keys (pan) do not apply while a bar has the focus.
    e.preventDefault();
    e.stopPropagation();
    if (next) next.focus();
  }

  // Zoom with ctrl (or ⌘) + wheel around the pointer; plain wheel scrolls the page as usual.
  plot.addEventListener('wheel', (e) => {
    if (!view) return;
    if (e.ctrlKey || e.metaKey) {
      e.preventDefault();
      const box = svg.getBoundingClientRect();
      const width = box.width;
      const label = width < 520 ? 72 : 130;
      const frac = Math.min(1, Math.max(0, (e.clientX - box.left - label) / (width - 10 - label)));
      zoom(e.deltaY < 0 ? 0.8 : 1.25, view[0] + frac * (view[1] - view[0]));
    } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      e.preventDefault();
      pan((e.deltaX || e.deltaY) / 1000);
    }
  }, { passive: false });

  let drag = null;
  plot.addEventListener('pointerdown', (e) => {
    if (!view || e.button !== 0) return;
    drag = { x: e.clientX, view: [...view], id: e.pointerId, moved: false };
  });
  plot.addEventListener('pointermove', (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    const dx = e.clientX - drag.x;
    if (!drag.moved && Math.abs(dx) < 4) return;
    if (!drag.moved) plot.setPointerCapture(e.pointerId);
    drag.moved = true;
    const width = svg.getBoundingClientRect().width;
    const label = width < 520 ? 72 : 130;
    const perPx = (drag.view[1] - drag.view[0]) / (width - 10 - label);
    view = [drag.view[0] - dx * perPx, drag.view[1] - dx * perPx];
    following = false;
    hideTip();
    draw();
  });
  const endDrag = () => { drag = null; };
  plot.addEventListener('pointerup', endDrag);
  plot.addEventListener('pointercancel', endDrag);

  plot.addEventListener('keydown', (e) => {
    if (!view) return;
    const keys = { '+': () => zoom(0.5), '=': () => zoom(0.5), '-': () => zoom(2), '0': resetView,
      ArrowLeft: () => pan(-0.2), ArrowRight: () => pan(0.2) };
    if (keys[e.key] && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      keys[e.key]();
    }
  });

  const resize = new ResizeObserver(() => draw());
  resize.observe(plot);
  // Running stages grow: redraw each second while one is open.
  const timer = setInterval(() => {
    if (spans.some((sp) => sp.running)) {
      critical = new Set(criticalPath(spans, now()));
      draw();
    }
  }, 1000);

  return {
    el,
    // New spans; the view is kept unless it has never been set (or followed the clock).
    update(next, { axisOrigin } = {}) {
      spans = next;
      origin = axisOrigin ?? (spans.length ? Math.min(...spans.map((sp) => sp.start)) : now());
      critical = new Set(criticalPath(spans, now()));
      if (!view) resetView();
      else draw();
    },
    critical: () => criticalPath(spans, now()),
    destroy() {
      clearInterval(timer);
      resize.disconnect();
    },
  };
}
