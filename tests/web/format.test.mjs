// web/js/format.js: how durations, times, statuses and values read in the UI. Run: node --test
// tests/web/ (web/ has no package.json: node loads its .js files as ES modules by their syntax,
// the default since node 20.19 and 22.7; tests/CMakeLists.txt checks the version).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  duration, offset, parseTime, absolute, relative, timeEl, statusKey, statusLabel, badge,
  metadataOf, valueText,
} from '../../web/js/format.js';

// Just enough DOM for dom.js's h(), which badge() and timeEl() build with: elements with
// attributes and children, text nodes. dom.js reads `document` and `Node` when called.
class FakeNode {
  constructor() { this.childNodes = []; }
  appendChild(child) { this.childNodes.push(child); return child; }
  get textContent() { return this.childNodes.map((c) => c.textContent).join(''); }
}
class FakeText extends FakeNode {
  constructor(data) { super(); this.data = data; }
  get textContent() { return this.data; }
}
class FakeElement extends FakeNode {
  constructor(tag) { super(); this.tagName = tag; this.attributes = new Map(); }
  setAttribute(name, value) { this.attributes.set(name, value); }
  getAttribute(name) { return this.attributes.has(name) ? this.attributes.get(name) : null; }
}
globalThis.Node = FakeNode;
globalThis.document = {
  createElement: (tag) => new FakeElement(tag),
  createTextNode: (data) => new FakeText(data),
};

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// 2026-01-04T19:30:15.234Z, the first line of seed 000.
const T0 = Date.UTC(2026, 0, 4, 19, 30, 15, 234);

test('duration: nothing to show is a dash', () => {
  assert.equal(duration(null), '—');
  assert.equal(duration(undefined), '—');
  assert.equal(duration(NaN), '—');
});

test('duration: milliseconds below a second, rounded', () => {
  assert.equal(duration(0), '0ms');
  assert.equal(duration(1), '1ms');
  assert.equal(duration(814), '814ms');
  assert.equal(duration(999), '999ms');
  assert.equal(duration(999.4), '999ms');
  assert.equal(duration(999.5), '1.0s');  // Rounds up into seconds.
});

test('duration: tenths of a second below a minute', () => {
  assert.equal(duration(1000), '1.0s');
  assert.equal(duration(1049), '1.0s');
  assert.equal(duration(1050), '1.1s');
  assert.equal(duration(13249), '13.2s');
  assert.equal(duration(59949), '59.9s');
  assert.equal(duration(59950), '1m 0s');  // 60.0s would be a minute.
});

test('duration: minutes and seconds below an hour', () => {
  assert.equal(duration(MINUTE), '1m 0s');
  assert.equal(duration(2 * MINUTE + 30 * SECOND), '2m 30s');
  assert.equal(duration(2 * MINUTE + 30 * SECOND + 499), '2m 30s');
  assert.equal(duration(2 * MINUTE + 30 * SECOND + 500), '2m 31s');
  assert.equal(duration(HOUR - 501), '59m 59s');
  assert.equal(duration(HOUR - 500), '1h 0m 0s');
});

test('duration: hours, minutes and seconds from an hour on', () => {
  assert.equal(duration(HOUR), '1h 0m 0s');
  assert.equal(duration(HOUR + 2 * MINUTE + 5 * SECOND), '1h 2m 5s');
  assert.equal(duration(25 * HOUR), '25h 0m 0s');  // No days.
});

test('duration: negative durations carry a sign', () => {
  assert.equal(duration(-814), '-814ms');
  assert.equal(duration(-1500), '-1.5s');
  assert.equal(duration(-(2 * MINUTE + 30 * SECOND)), '-2m 30s');
  assert.equal(duration(-HOUR), '-1h 0m 0s');
});

test('offset: a plus before a non-negative offset', () => {
  assert.equal(offset(0), '+0ms');
  assert.equal(offset(150 * SECOND), '+2m 30s');
  assert.equal(offset(-1500), '-1.5s');
});

test('parseTime: ISO text to epoch milliseconds, null for anything else', () => {
  assert.equal(parseTime('2026-01-04T19:30:15.234Z'), T0);
  assert.equal(parseTime('2026-01-04T20:30:15.234+01:00'), T0);
  assert.equal(parseTime('2026-01-04'), Date.UTC(2026, 0, 4));  // A date alone is UTC.
  assert.equal(parseTime('1970-01-01T00:00:00Z'), 0);
  assert.equal(parseTime(''), null);
  assert.equal(parseTime(null), null);
  assert.equal(parseTime(undefined), null);
  assert.equal(parseTime('yesterday'), null);
  assert.equal(parseTime('2026-13-45T99:00:00Z'), null);
});

test('absolute: UTC to the second', () => {
  assert.equal(absolute(T0), '2026-01-04 19:30:15 UTC');
  assert.equal(absolute(0), '1970-01-01 00:00:00 UTC');
  assert.equal(absolute(T0 + 765), '2026-01-04 19:30:15 UTC');  // Truncated, not rounded.
  assert.equal(absolute(null), '—');
});

test('relative: just now within five seconds either way', () => {
  assert.equal(relative(T0, T0), 'just now');
  assert.equal(relative(T0 - 4999, T0), 'just now');
  assert.equal(relative(T0 + 4999, T0), 'just now');
  assert.equal(relative(T0 - 5000, T0), '5s ago');
});

test('relative: seconds, minutes, hours, days, rounded', () => {
  assert.equal(relative(T0 - 42 * SECOND, T0), '42s ago');
  assert.equal(relative(T0 - 59499, T0), '59s ago');
  assert.equal(relative(T0 - MINUTE, T0), '1 min ago');
  assert.equal(relative(T0 - 90 * SECOND, T0), '2 min ago');
  assert.equal(relative(T0 - HOUR, T0), '1 h ago');
  assert.equal(relative(T0 - 23 * HOUR, T0), '23 h ago');
  assert.equal(relative(T0 - DAY, T0), '1 d ago');
  assert.equal(relative(T0 - 400 * DAY, T0), '400 d ago');
});

test('relative: the future reads "in"', () => {
  assert.equal(relative(T0 + 2 * MINUTE, T0), 'in 2 min');
  assert.equal(relative(T0 + 3 * DAY, T0), 'in 3 d');
});

test('relative: now defaults to the clock; null is a dash', () => {
  assert.equal(relative(Date.now()), 'just now');
  assert.equal(relative(Date.now() - 2 * HOUR), '2 h ago');
  assert.equal(relative(null, T0), '—');
});

test('timeEl: a <time> with the relative text, the absolute one as its title', () => {
  const el = timeEl('2026-01-04T19:30:15.234Z', { now: T0 + 3 * MINUTE });
  assert.equal(el.tagName, 'time');
  assert.equal(el.getAttribute('datetime'), '2026-01-04T19:30:15.234Z');
  assert.equal(el.getAttribute('title'), '2026-01-04 19:30:15 UTC');
  assert.equal(el.textContent, '3 min ago');
});

test('timeEl: no time or a bad one is a muted dash', () => {
  for (const text of [null, undefined, '', 'soon']) {
    const el = timeEl(text);
    assert.equal(el.tagName, 'span');
    assert.equal(el.getAttribute('class'), 'muted');
    assert.equal(el.textContent, '—');
  }
});

test('statusKey: the CSS suffix of a known status, else unknown', () => {
  assert.equal(statusKey('completed'), 'completed');
  assert.equal(statusKey('failed'), 'failed');
  assert.equal(statusKey('in_progress'), 'in-progress');
  assert.equal(statusKey('skipped'), 'skipped');
  assert.equal(statusKey('unknown'), 'unknown');
  assert.equal(statusKey('running'), 'unknown');
  assert.equal(statusKey('Completed'), 'unknown');
  assert.equal(statusKey(''), 'unknown');
  assert.equal(statusKey(null), 'unknown');
  assert.equal(statusKey(undefined), 'unknown');
});

test('statusLabel: a known status named for people, any other as it is', () => {
  assert.equal(statusLabel('completed'), 'Completed');
  assert.equal(statusLabel('in_progress'), 'In progress');
  assert.equal(statusLabel('skipped'), 'Skipped');
  assert.equal(statusLabel('running'), 'running');
  assert.equal(statusLabel(''), 'Unknown');
  assert.equal(statusLabel(null), 'Unknown');
  assert.equal(statusLabel(undefined), 'Unknown');
});

test('badge: a span classed by status, labelled for people', () => {
  const el = badge('in_progress');
  assert.equal(el.tagName, 'span');
  assert.equal(el.getAttribute('class'), 'badge status-in-progress');
  assert.equal(el.textContent, 'In progress');
  const other = badge('running');
  assert.equal(other.getAttribute('class'), 'badge status-unknown');
  assert.equal(other.textContent, 'running');
});

test('metadataOf: every key that is not the document\'s own, in order', () => {
  const doc = {
    tracking_id: 'item-13', execution_id: 'e1', started_at: 'a', completed_at: 'b',
    duration_ms: 1, duration_readable: '1ms', total_steps: 2, final_status: 'completed',
    steps: [], success: true, model: 'qwen2.5:7b', gpu: 1, tags: ['x'],
  };
  assert.deepEqual(metadataOf(doc), [['model', 'qwen2.5:7b'], ['gpu', 1], ['tags', ['x']]]);
  assert.deepEqual(metadataOf({ tracking_id: 'item-13', steps: [] }), []);
  assert.deepEqual(metadataOf({}), []);
});

test('valueText: strings as they are, anything else as JSON, nothing as a dash', () => {
  assert.equal(valueText('qwen2.5:7b'), 'qwen2.5:7b');
  assert.equal(valueText(''), '');
  assert.equal(valueText('"quoted"'), '"quoted"');
  assert.equal(valueText(42), '42');
  assert.equal(valueText(0), '0');
  assert.equal(valueText(false), 'false');
  assert.equal(valueText([1, 'a']), '[1,"a"]');
  assert.equal(valueText({ gpu: 1, tags: ['x'] }), '{"gpu":1,"tags":["x"]}');
  assert.equal(valueText(null), '—');
  assert.equal(valueText(undefined), '—');
});
