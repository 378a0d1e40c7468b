// Stage spans out of execution documents, and the critical path through them: the model the
// Gantt chart draws. Pure functions, no DOM.

import { parseTime } from './format.js';

const ENDS = new Set(['completed', 'failed', 'skipped']);
export const NO_WORKER = '(no worker)';

// The spans of one execution document: each stage from its start step to its end step, on
// the worker that ran it. A stage still open is running (end null) while the execution is;
// a stage ended without a start seen begins duration_ms before its end, or — in a document
// written as seed 004's, which has no start steps — where the previous step was. Steps named
// like the job itself (a workflow node spanning the whole run) are left out, as the server's
// stage statistics leave them out: they would cover every lane and be the whole critical path.
export function spansOf(doc) {
  const spans = [];
  const open = new Map();  // worker \0 stage → [start steps]
  const runStart = parseTime(doc.started_at);
  const runEnd = parseTime(doc.completed_at);
  const seedStyle = !doc.steps.some((s) => s.status === 'in_progress');
  let previous = runStart;
  for (const step of doc.steps) {
    const at = parseTime(step.timestamp);
    if (at === null) continue;
    const worker = step.worker || NO_WORKER;
    const key = `${worker}\u0000${step.step}`;
    if (step.step === doc.tracking_id) {
      previous = at;
      continue;
    }
    if (step.status === 'in_progress') {
      if (!open.has(key)) open.set(key, []);
      open.get(key).push(step);
    } else if (ENDS.has(step.status)) {
      const starts = open.get(key);
      const first = starts && starts.length ? starts.pop() : null;
      let start;
      if (first) start = parseTime(first.timestamp);
      else if (typeof step.duration_ms === 'number') start = at - step.duration_ms;
      else if (seedStyle) start = previous;
      else start = at;  // An error logged on its own: an instant.
      spans.push({
        run: doc.tracking_id, worker, stage: step.step, status: step.status, start, end: at,
        message: step.message || (first && first.message) || '', error: step.error_details || null,
      });
    }
    previous = at;
  }
  for (const starts of open.values()) {
    for (const first of starts) {
      spans.push({
        run: doc.tracking_id, worker: first.worker || NO_WORKER, stage: first.step,
        status: 'in_progress', start: parseTime(first.timestamp),
        // Open while the execution runs: drawn up to now, growing. An execution that ended
        // without closing it ends it there.
        end: runEnd, running: runEnd === null, message: first.message || '', error: null,
      });
    }
  }
  spans.sort((a, b) => a.start - b.start || a.worker.localeCompare(b.worker));
  return spans;
}

export function endOf(span, now) {
  return span.end === null ? Math.max(now, span.start) : span.end;
}

// The critical path, for spans without declared dependencies: start from the span that ends
// last, then repeatedly step back to the span (on any worker) that ended latest at or before
// the current one began — the work the current one most plausibly waited for. The chain is
// what decided when everything was done; a gap between two of its spans is time nobody on the
// path worked. `slack` absorbs clock jitter between workers. Returns the spans in time order.
export function criticalPath(spans, now, slack = 5) {
  if (spans.length === 0) return [];
  let current = spans.reduce((a, b) => (endOf(b, now) > endOf(a, now) ? b : a));
  const path = [current];
  const used = new Set(path);
  for (;;) {
    let best = null;
    for (const s of spans) {
      if (used.has(s) || endOf(s, now) > current.start + slack) continue;
      if (s.start >= current.start && s !== current) continue;  // Not before it.
      if (best === null || endOf(s, now) > endOf(best, now)
        || (endOf(s, now) === endOf(best, now) && s.start < best.start)) best = s;
    }
    if (best === null) break;
    path.push(best);
    used.add(best);
    current = best;
  }
  return path.reverse();
}

// Rows within a lane, so overlapping (nested) stages of one worker do not hide each other:
// each span takes the first row free at its start. Sets span.row, returns the row count.
export function packRows(spans, now) {
  const rowEnds = [];
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    let row = rowEnds.findIndex((end) => end <= s.start);
    if (row < 0) {
      row = rowEnds.length;
      rowEnds.push(0);
    }
    rowEnds[row] = endOf(s, now);
    s.row = row;
  }
  return Math.max(1, rowEnds.length);
}
