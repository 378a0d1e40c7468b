// How durations, times and statuses read everywhere in the UI. Durations follow the server's
// readable_duration() (src/server/execution.cpp) so the page and seed 004's API agree:
// "814ms", "13.2s", "2m 30s", "1h 2m 5s".

import { h } from './dom.js';

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const sign = ms < 0 ? '-' : '';
  const v = Math.abs(Math.round(ms));
  if (v < 1000) return `${sign}${v}ms`;
  const tenths = Math.round(v / 100);
  if (tenths < 600) return `${sign}${Math.floor(tenths / 10)}.${tenths % 10}s`;
  const secs = Math.round(v / 1000);
  if (secs < 3600) return `${sign}${Math.floor(secs / 60)}m ${secs % 60}s`;
  return `${sign}${Math.floor(secs / 3600)}h ${Math.floor(secs / 60) % 60}m ${secs % 60}s`;
}

// "+2m 30s": a step's offset from the execution's start, as seed 004 writes it.
export function offset(ms) {
  return ms < 0 ? duration(ms) : `+${duration(ms)}`;
}

export function parseTime(text) {
  if (!text) return null;
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : t;
}

// "2026-11-30 19:04:13 UTC": absolute, unambiguous, in UTC like the stored data.
export function absolute(ms) {
  if (ms === null) return '—';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function relative(ms, now = Date.now()) {
  if (ms === null) return '—';
  const d = now - ms;
  const a = Math.abs(d);
  let text;
  if (a < 5000) return 'just now';
  if (a < 60000) text = `${Math.round(a / 1000)}s`;
  else if (a < 3600000) text = `${Math.round(a / 60000)} min`;
  else if (a < 86400000) text = `${Math.round(a / 3600000)} h`;
  else text = `${Math.round(a / 86400000)} d`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

// A <time> showing the relative time, with the absolute one as its tooltip and machine value.
export function timeEl(text, { now } = {}) {
  const ms = parseTime(text);
  if (ms === null) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: text, title: absolute(ms) }, relative(ms, now));
}

// Step and execution statuses: the seed's names, one CSS suffix each.
const STATUS_LABELS = {
  completed: 'Completed',
  failed: 'Failed',
  in_progress: 'In progress',
  skipped: 'Skipped',
  unknown: 'Unknown',
};

export function statusKey(status) {
  return STATUS_LABELS[status] ? status.replace('_', '-') : 'unknown';
}

export function statusLabel(status) {
  return STATUS_LABELS[status] || status || 'Unknown';
}

export function badge(status) {
  return h('span', { class: `badge status-${statusKey(status)}` }, statusLabel(status));
}

// The metadata of an execution document: every key that is not one of the document's own.
const DOCUMENT_KEYS = new Set(['tracking_id', 'execution_id', 'started_at', 'completed_at',
  'duration_ms', 'duration_readable', 'total_steps', 'final_status', 'steps', 'success']);

export function metadataOf(doc) {
  return Object.entries(doc).filter(([key]) => !DOCUMENT_KEYS.has(key));
}

export function valueText(value) {
  if (value === null || value === undefined) return '—';
  return typeof value === 'string' ? value : JSON.stringify(value);
}
