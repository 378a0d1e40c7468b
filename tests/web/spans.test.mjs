// web/js/spans.js: stage spans out of execution documents, the critical path, and rows within
// a lane. Run: node --test tests/web/ (web/ has no package.json: node loads its .js files as ES
// modules by their syntax, the default since node 20.19 and 22.7; tests/CMakeLists.txt checks
// the version).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { spansOf, endOf, criticalPath, packRows, NO_WORKER } from '../../web/js/spans.js';

const T0 = Date.UTC(2026, 0, 4, 19, 30, 15, 234);
const at = (s) => T0 + s * 1000;                       // Epoch ms, s seconds in.
const ts = (s) => new Date(at(s)).toISOString();      // The same, as documents carry it.

function doc(steps, { started = 0, completed = null } = {}) {
  return {
    tracking_id: 'item-13',
    started_at: started === null ? null : ts(started),
    completed_at: completed === null ? null : ts(completed),
    steps,
  };
}
const step = (name, status, s, worker = 'gpu-1', extra = {}) =>
  ({ step: name, status, timestamp: ts(s), worker, ...extra });

// Each span's [worker, stage, status, start s, end s or null].
const brief = (spans) => spans.map((sp) => [sp.worker, sp.stage, sp.status,
  (sp.start - T0) / 1000, sp.end === null ? null : (sp.end - T0) / 1000]);

test('spansOf: no steps, no spans', () => {
  assert.deepEqual(spansOf(doc([])), []);
  assert.deepEqual(spansOf(doc([], { started: null })), []);
});

test('spansOf: a stage from its start step to its end step, on its worker', () => {
  const spans = spansOf(doc([
    step('AGENT', 'in_progress', 1, 'gpu-1', { message: 'Running agent' }),
    step('AGENT', 'completed', 11, 'gpu-1'),
  ], { completed: 12 }));
  assert.deepEqual(spans, [{
    run: 'item-13', worker: 'gpu-1', stage: 'AGENT', status: 'completed', start: at(1),
    end: at(11), message: 'Running agent', error: null,
  }]);
});

test('spansOf: the end step\'s message wins; failed and skipped end spans too', () => {
  const spans = spansOf(doc([
    step('AGENT', 'in_progress', 0, 'gpu-1', { message: 'start' }),
    step('AGENT', 'failed', 5, 'gpu-1', { message: 'boom', error_details: 'KeyError: model' }),
    step('JUDGE', 'in_progress', 0, 'gpu-2'),
    step('JUDGE', 'skipped', 6, 'gpu-2'),
  ], { completed: 7 }));
  assert.deepEqual(spans.map((s) => [s.stage, s.status, s.message, s.error]), [
    ['AGENT', 'failed', 'boom', 'KeyError: model'],
    ['JUDGE', 'skipped', '', null],
  ]);
});

test('spansOf: a stage still open runs while the execution runs', () => {
  const [span] = spansOf(doc([step('AGENT', 'in_progress', 3, 'gpu-1', { message: 'go' })]));
  assert.deepEqual(span, {
    run: 'item-13', worker: 'gpu-1', stage: 'AGENT', status: 'in_progress', start: at(3),
    end: null, running: true, message: 'go', error: null,
  });
});

test('spansOf: a stage left open by an execution that ended ends with it', () => {
  const [span] = spansOf(doc([step('AGENT', 'in_progress', 3)], { completed: 20 }));
  assert.equal(span.status, 'in_progress');
  assert.equal(span.end, at(20));
  assert.equal(span.running, false);
});

test('spansOf: an end without a start begins duration_ms before it', () => {
  const spans = spansOf(doc([
    step('AGENT', 'in_progress', 0),
    step('LOAD', 'completed', 20, 'gpu-2', { duration_ms: 3000 }),
  ]));
  assert.deepEqual(brief(spans), [
    ['gpu-1', 'AGENT', 'in_progress', 0, null],
    ['gpu-2', 'LOAD', 'completed', 17, 20],
  ]);
});

test('spansOf: an end without a start or a duration is an instant', () => {
  const spans = spansOf(doc([
    step('AGENT', 'in_progress', 0),
    step('AGENT', 'completed', 4),
    step('CLEANUP', 'failed', 9, 'gpu-1', { error_details: 'disk full' }),
  ], { completed: 10 }));
  assert.deepEqual(brief(spans), [
    ['gpu-1', 'AGENT', 'completed', 0, 4],
    ['gpu-1', 'CLEANUP', 'failed', 9, 9],
  ]);
});

test('spansOf: with no start steps at all (seed 004), a stage begins at the previous step', () => {
  const spans = spansOf(doc([
    step('WORKTREE', 'completed', 2),
    step('AGENT', 'completed', 10),
    step('item-13', 'completed', 11),  // Named like the job: no span, but a previous step.
    step('NOTE', 'unknown', 12),       // Not an end: no span, but a previous step.
    step('JUDGE', 'completed', 15),
  ], { started: 0, completed: 16 }));
  assert.deepEqual(brief(spans), [
    ['gpu-1', 'WORKTREE', 'completed', 0, 2],
    ['gpu-1', 'AGENT', 'completed', 2, 10],
    ['gpu-1', 'JUDGE', 'completed', 12, 15],
  ]);
});

test('spansOf: steps named like the job are never spans', () => {
  const spans = spansOf(doc([
    step('item-13', 'in_progress', 0),
    step('AGENT', 'in_progress', 1),
    step('AGENT', 'completed', 2),
    step('item-13', 'completed', 3),
  ], { completed: 3 }));
  assert.deepEqual(brief(spans), [['gpu-1', 'AGENT', 'completed', 1, 2]]);
});

test('spansOf: steps without a readable time are left out', () => {
  const spans = spansOf(doc([
    step('A', 'completed', 2),
    { step: 'B', status: 'completed', timestamp: 'garbage', worker: 'gpu-1' },
    { step: 'C', status: 'completed', worker: 'gpu-1' },
    step('D', 'completed', 5),
  ], { completed: 6 }));
  assert.deepEqual(brief(spans), [
    ['gpu-1', 'A', 'completed', 0, 2],
    ['gpu-1', 'D', 'completed', 2, 5],
  ]);
});

test('spansOf: a step without a worker is on the no-worker lane', () => {
  assert.equal(NO_WORKER, '(no worker)');
  const spans = spansOf(doc([
    { step: 'AGENT', status: 'in_progress', timestamp: ts(0) },
    { step: 'AGENT', status: 'completed', timestamp: ts(1), worker: '' },
    { step: 'JUDGE', status: 'in_progress', timestamp: ts(2) },
  ]));
  assert.deepEqual(brief(spans), [
    [NO_WORKER, 'AGENT', 'completed', 0, 1],
    [NO_WORKER, 'JUDGE', 'in_progress', 2, null],
  ]);
});

test('spansOf: a stage nested in itself pairs each end with the latest start', () => {
  const spans = spansOf(doc([
    step('RETRY', 'in_progress', 0, 'gpu-1', { message: 'outer' }),
    step('RETRY', 'in_progress', 5, 'gpu-1', { message: 'inner' }),
    step('RETRY', 'completed', 8),
    step('RETRY', 'failed', 10),
  ], { completed: 10 }));
  assert.deepEqual(brief(spans), [
    ['gpu-1', 'RETRY', 'failed', 0, 10],
    ['gpu-1', 'RETRY', 'completed', 5, 8],
  ]);
  assert.deepEqual(spans.map((s) => s.message), ['outer', 'inner']);
});

test('spansOf: a start on one worker does not pair with an end on another', () => {
  const spans = spansOf(doc([
    step('AGENT', 'in_progress', 0, 'gpu-1'),
    step('AGENT', 'completed', 5, 'gpu-2'),
  ]));
  assert.deepEqual(brief(spans), [
    ['gpu-1', 'AGENT', 'in_progress', 0, null],
    ['gpu-2', 'AGENT', 'completed', 5, 5],
  ]);
});

test('spansOf: spans in start order, then by worker', () => {
  const spans = spansOf(doc([
    step('A', 'in_progress', 3, 'w-b'),
    step('A', 'in_progress', 3, 'w-a'),
    step('B', 'in_progress', 1, 'w-c'),
    step('A', 'completed', 4, 'w-b'),
    step('A', 'completed', 4, 'w-a'),
    step('B', 'completed', 9, 'w-c'),
  ], { completed: 9 }));
  assert.deepEqual(spans.map((s) => s.worker), ['w-c', 'w-a', 'w-b']);
});

test('endOf: the end, or now for a span still running (never before its start)', () => {
  assert.equal(endOf({ start: 5, end: 10 }, 100), 10);
  assert.equal(endOf({ start: 5, end: null }, 20), 20);
  assert.equal(endOf({ start: 5, end: null }, 3), 5);
});

const span = (name, start, end) => ({ name, start, end });
const names = (spans) => spans.map((s) => s.name);

test('criticalPath: none for no spans; one span is its own path', () => {
  assert.deepEqual(criticalPath([], 0), []);
  assert.deepEqual(names(criticalPath([span('a', 0, 10)], 0)), ['a']);
});

test('criticalPath: back from the last end through what ended latest before each start', () => {
  const spans = [span('a', 0, 10), span('b', 12, 20), span('c', 5, 11), span('d', 21, 30),
    span('e', 1, 4)];
  assert.deepEqual(names(criticalPath(spans, 0)), ['a', 'c', 'b', 'd']);
});

test('criticalPath: slack lets a predecessor end a little after the next start', () => {
  const spans = [span('x', 0, 10), span('y', 8, 20)];
  assert.deepEqual(names(criticalPath(spans, 0)), ['x', 'y']);  // Default slack 5.
  assert.deepEqual(names(criticalPath(spans, 0, 2)), ['x', 'y']);
  assert.deepEqual(names(criticalPath(spans, 0, 1)), ['y']);
  assert.deepEqual(names(criticalPath([span('x', 0, 14), span('y', 8, 20)], 0)), ['y']);
});

test('criticalPath: a span starting with or after the current one is not before it', () => {
  const spans = [span('a', 5, 6), span('b', 5, 20)];
  assert.deepEqual(names(criticalPath(spans, 0)), ['b']);
});

test('criticalPath: of equal ends, the earlier start', () => {
  const spans = [span('late', 4, 10), span('early', 2, 10), span('z', 12, 20)];
  assert.deepEqual(names(criticalPath(spans, 0)), ['early', 'z']);
});

test('criticalPath: a running span ends now', () => {
  const spans = [span('done', 0, 42), span('running', 40, null)];
  assert.deepEqual(names(criticalPath(spans, 30)), ['done']);  // Running ends at its start.
  assert.deepEqual(names(criticalPath(spans, 100)), ['done', 'running']);
  // Ended after the running one began, past the slack: not what it waited for.
  assert.deepEqual(names(criticalPath([span('done', 0, 50), span('running', 40, null)], 100)),
    ['running']);
});

test('packRows: one row for spans one after another, even touching', () => {
  const spans = [span('a', 0, 5), span('b', 5, 9), span('c', 20, 30)];
  assert.equal(packRows(spans, 0), 1);
  assert.deepEqual(spans.map((s) => s.row), [0, 0, 0]);
});

test('packRows: overlapping spans take the first row free at their start', () => {
  const spans = [span('c', 6, 12), span('a', 0, 10), span('b', 2, 4), span('e', 3, 8),
    span('d', 11, 15)];
  assert.equal(packRows(spans, 0), 3);
  assert.deepEqual(spans.map((s) => [s.name, s.row]),
    [['c', 1], ['a', 0], ['b', 1], ['e', 2], ['d', 0]]);
  assert.deepEqual(names(spans), ['c', 'a', 'b', 'e', 'd']);  // In place, not reordered.
});

test('packRows: no spans is still one row; a running span ends now', () => {
  assert.equal(packRows([], 0), 1);
  const spans = [span('run', 0, null), span('next', 10, 12)];
  assert.equal(packRows(spans, 5), 1);
  assert.equal(packRows(spans, 50), 2);
  assert.deepEqual(spans.map((s) => s.row), [0, 1]);
});
