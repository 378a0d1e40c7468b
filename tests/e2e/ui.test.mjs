// The web UI in a real browser: `stagelog serve` (its embedded UI, on a free loopback port,
// a fresh data folder) with seeded data, driven through Debian's chromium by playwright-core.
//
//   STAGELOG_BIN=build/dev/apps/stagelog/stagelog E2E_ARTIFACTS=/tmp/e2e node --test tests/e2e/ui.test.mjs
//
// Seeded: three executions over four workers — job-ok (completed; W1 then W2), job-bad
// (failed with an error; W3), job-live (still running; W4). Every page's console errors and
// uncaught exceptions fail the test; each page is saved as a screenshot in E2E_ARTIFACTS.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.STAGELOG_BIN;
const ARTIFACTS = resolve(process.env.E2E_ARTIFACTS || join(tmpdir(), 'stagelog-e2e-artifacts'));
const PATIENCE = 10000;  // The longest any single wait may take.

// ---- The server ---------------------------------------------------------------------------

let server = null;
let dataDir = null;
let baseUrl = null;
let token = null;

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'stagelog-e2e-'));
  server = spawn(BIN, ['serve', '--data', dataDir, '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  server.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start within ${PATIENCE} ms:\n${out}\n${stderr}`)), PATIENCE);
    server.on('exit', (code) => reject(new Error(`serve exited with ${code}:\n${out}\n${stderr}`)));
    server.stdout.on('data', (d) => {
      out += d;
      const url = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      // Its stdout is no terminal: the admin token is in the file it names (0600).
      const file = out.match(/admin token, written to (\S+) \(mode 0600/);
      const admin = file && [null, readFileSync(file[1], 'utf8').trim()];
      if (url && admin) {
        clearTimeout(timer);
        baseUrl = url[1];
        token = admin[1];
        resolvePromise();
      }
    });
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function api(method, path, body, contentType = 'application/x-ndjson') {
  const response = await fetch(baseUrl + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType },
    body,
    signal: AbortSignal.timeout(PATIENCE),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

// ---- Seeded data --------------------------------------------------------------------------

const NOW = Date.now();
const T_OK = NOW - 600000;
const T_BAD = NOW - 300000;
const T_LIVE = NOW - 20000;
const ERROR_DETAILS = 'Error: AI generation timeout after 480000ms\n    at AIService.generateContent (worker.js:1234:56)';
const WORKERS = ['W1', 'W2', 'W3', 'W4'];

function ev(ms, fields) {
  return JSON.stringify({ ts: new Date(ms).toISOString(), level: 'info', component: 'e2e', ...fields });
}

function stage(worker, run, name, from, to, status = 'completed', extra = {}) {
  const lines = [ev(from, { kind: 'stage', worker, run, stage: name, status: 'starting' })];
  if (to !== null) {
    lines.push(ev(to, { kind: 'stage', worker, run, stage: name, status,
      elapsed_ns: (to - from) * 1e6, ...extra }));
  }
  return lines;
}

const SEED = [
  ev(T_OK, { kind: 'run', worker: 'W1', run: 'job-ok', stage: 'job-ok', status: 'starting', fields: { tier: 'comprehensive' } }),
  ...stage('W1', 'job-ok', 'FETCH', T_OK, T_OK + 2000),
  ...stage('W2', 'job-ok', 'TRANSFORM', T_OK + 2000, T_OK + 150000),
  ev(T_OK + 150000, { kind: 'run', worker: 'W2', run: 'job-ok', stage: 'job-ok', status: 'completed', elapsed_ns: 150000e6 }),

  ev(T_BAD, { kind: 'run', worker: 'W3', run: 'job-bad', stage: 'job-bad', status: 'starting', fields: { tier: 'basic' } }),
  ...stage('W3', 'job-bad', 'FETCH', T_BAD, T_BAD + 1000),
  ...stage('W3', 'job-bad', 'JUDGE', T_BAD + 1000, T_BAD + 90000, 'failed', {
    level: 'error', message: 'AI generation timeout after 480000ms', fields: { error_details: ERROR_DETAILS },
  }),
  ev(T_BAD + 90000, { kind: 'run', worker: 'W3', run: 'job-bad', stage: 'job-bad', status: 'failed', elapsed_ns: 90000e6 }),

  ev(T_LIVE, { kind: 'run', worker: 'W4', run: 'job-live', stage: 'job-live', status: 'starting' }),
  ...stage('W4', 'job-live', 'FETCH', T_LIVE, T_LIVE + 5000),
  ...stage('W4', 'job-live', 'TRANSFORM', T_LIVE + 5000, null),
];
// Stages drawn on the timeline: two per execution (the run's own start and end are not stages).
const STAGE_BARS = 6;

// ---- The browser --------------------------------------------------------------------------

let browser = null;
let context = null;
let page = null;
const problems = [];  // Console errors and uncaught exceptions, with the page they came from.

function watch(p, into) {
  p.on('console', (m) => { if (m.type() === 'error') into.push(`${p.url()}: console: ${m.text()}`); });
  p.on('pageerror', (e) => into.push(`${p.url()}: uncaught: ${e.message}`));
}

async function shot(name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function go(hash) {
  await page.goto(`${baseUrl}/${hash}`);
}

const rgb = (r, g, b) => `rgb(${r}, ${g}, ${b})`;

// Controls a screen reader could not name: inputs without a label, buttons and links without
// text, focusable chart bars without aria-label.
function unnamed() {
  return page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.labels.length === 0 && !el.getAttribute('aria-label')) out.push(el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
      if (!el.textContent.trim() && !el.getAttribute('aria-label')) out.push(el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll('[tabindex]')) {
      if (el.closest('svg') && !el.getAttribute('aria-label')) out.push(el.outerHTML.slice(0, 80));
    }
    return out;
  });
}

before(async () => {
  assert.ok(BIN, 'STAGELOG_BIN must name the stagelog binary');
  mkdirSync(ARTIFACTS, { recursive: true });
  await startServer();
  const answer = await api('POST', '/api/v1/events', `${SEED.join('\n')}\n`);
  assert.equal(answer.accepted, SEED.length, JSON.stringify(answer.rejected));
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true, timeout: PATIENCE * 3,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  context.setDefaultTimeout(PATIENCE);
  page = await context.newPage();
  watch(page, problems);
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    await stopServer();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('stagelog web UI', () => {
  it('asks for a token first, and signs in with one', async () => {
    await go('');
    await page.waitForURL(/#\/sign-in/);
    await shot('sign-in');
    await page.getByLabel('Access token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/#\/executions/);
    await page.waitForSelector('table.executions tbody tr');
    assert.equal(await page.locator('table.executions tbody tr').count(), 3);
    assert.deepEqual(await page.locator('table.executions tbody th a').allTextContents(),
      ['job-live', 'job-bad', 'job-ok'], 'newest first');
    // Final-status badges in seed 004's colours.
    const badges = await page.$$eval('table.executions .badge', (els) => els.map((el) => {
      const cs = getComputedStyle(el);
      return [el.textContent, cs.backgroundColor, cs.color];
    }));
    assert.deepEqual(badges, [
      ['In progress', rgb(254, 243, 199), rgb(146, 64, 14)],
      ['Failed', rgb(254, 226, 226), rgb(153, 27, 27)],
      ['Completed', rgb(220, 252, 231), rgb(22, 101, 52)],
    ]);
    await shot('executions');
  });

  it('filters the failed executions, searches, and exports the filter as CSV', async () => {
    await page.getByLabel('Status').selectOption('failed');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('table.executions tbody tr')];
      return rows.length === 1 && rows[0].dataset.status === 'failed';
    });
    assert.match(page.url(), /status=failed/, 'the filter is in the URL');
    assert.deepEqual(await page.locator('table.executions tbody th a').allTextContents(), ['job-bad']);
    await shot('executions-failed');

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split(/\r\n/);
    assert.match(csv[0], /^tracking_id,attempt,execution_id,/);
    assert.ok(csv.length > 1 && csv.slice(1).every((line) => line.startsWith('job-bad,')), csv.join('\n'));

    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search').fill('timeout');
    await page.getByLabel('Search').press('Enter');
    await page.waitForFunction(() => {
      const links = [...document.querySelectorAll('table.executions tbody th a')];
      return links.length === 1 && links[0].textContent === 'job-bad';
    });
  });

  it('shows the process log with the seed\'s step colours, offsets and error block', async () => {
    await page.locator('table.executions tbody th a', { hasText: 'job-bad' }).click();
    await page.waitForURL(/#\/executions\/job-bad/);
    await page.waitForSelector('ol.log-steps li.step');
    const steps = await page.$$eval('ol.log-steps li.step', (els) => els.map((el) => {
      const cs = getComputedStyle(el);
      return {
        status: el.dataset.status,
        name: el.querySelector('.step-name').textContent,
        nameFont: getComputedStyle(el.querySelector('.step-name')).fontFamily,
        offset: el.querySelector('.step-offset').textContent,
        border: `${cs.borderLeftWidth} ${cs.borderLeftStyle} ${cs.borderLeftColor}`,
        background: cs.backgroundColor,
      };
    }));
    const colours = {
      completed: [`4px solid ${rgb(16, 185, 129)}`, rgb(240, 253, 244)],
      failed: [`4px solid ${rgb(239, 68, 68)}`, rgb(254, 242, 242)],
      in_progress: [`4px solid ${rgb(59, 130, 246)}`, rgb(239, 246, 255)],
    };
    assert.deepEqual(steps.map((s) => [s.name, s.status, s.offset]), [
      ['FETCH', 'in_progress', '+0ms'],
      ['FETCH', 'completed', '+1.0s'],
      ['JUDGE', 'in_progress', '+1.0s'],
      ['JUDGE', 'failed', '+1m 30s'],
    ]);
    for (const s of steps) {
      assert.deepEqual([s.border, s.background], colours[s.status], `${s.name} ${s.status}`);
      assert.match(s.nameFont, /monospace/);
    }
    const error = await page.$eval('li.step-failed pre.error-details', (el) => {
      const cs = getComputedStyle(el);
      return { text: el.textContent, whiteSpace: cs.whiteSpace, color: cs.color, background: cs.backgroundColor };
    });
    assert.deepEqual(error, { text: ERROR_DETAILS, whiteSpace: 'pre-wrap', color: rgb(220, 38, 38), background: rgb(254, 242, 242) });
    const header = await page.locator('.log-metadata').textContent();
    assert.match(header, /Tracking ID\s*job-bad/);
    assert.match(header, /Execution ID\s*exec_/);
    assert.match(header, /Duration\s*1m 30s/);
    assert.match(header, /tier\s*basic/);
    assert.equal(await page.locator('.log-title .badge').textContent(), 'Failed');
    await shot('process-log');

    await go('#/executions/job-ok');
    await page.waitForSelector('ol.log-steps li.step');
    assert.deepEqual(await page.locator('.step-offset').allTextContents(), ['+0ms', '+2.0s', '+2.0s', '+2m 30s']);
  });

  it('draws the timeline: one lane per worker, one bar per stage, a running one growing', async () => {
    await go('#/timeline?range=1h');
    await page.waitForSelector('.gantt .bar');
    const lanes = await page.$$eval('.gantt g.lane', (els) => els.map((el) => el.dataset.worker));
    assert.deepEqual(lanes, WORKERS);
    assert.equal(await page.locator('.gantt .bar').count(), STAGE_BARS);
    const perLane = await page.$$eval('.gantt g.lane', (els) => els.map((el) => el.querySelectorAll('.bar').length));
    assert.deepEqual(perLane, [1, 1, 2, 2]);
    assert.ok(await page.locator('.gantt .bar.bar-critical').count() >= 1, 'the critical path is outlined');
    // Bars are focusable, named for screen readers, and show their details on focus.
    await page.focus('.gantt .bar.bar-failed');
    assert.match(await page.locator('.gantt .bar.bar-failed').getAttribute('aria-label'), /^JUDGE on W3, Failed, 1m 29s/);
    await page.waitForSelector('#gantt-tip:not([hidden])');
    assert.match(await page.locator('#gantt-tip').textContent(), /JUDGE.*W3/);
    await page.focus('.gantt .bar.bar-completed');
    await page.waitForFunction(() => /FETCH|TRANSFORM/.test(document.querySelector('#gantt-tip').textContent));
    assert.doesNotMatch(await page.locator('.gantt').textContent(), /null|undefined|NaN/);
    // All bars share one Tab stop; the arrows move between them (down a lane, along a lane).
    const active = () => page.evaluate(() => {
      const el = document.activeElement;
      return `${el.dataset.worker}/${el.dataset.stage}`;
    });
    assert.equal(await page.locator('.gantt .bar[tabindex="0"]').count(), 1);
    await page.focus('.gantt .bar[data-worker="W1"]');
    await page.keyboard.press('ArrowDown');
    assert.equal(await active(), 'W2/TRANSFORM');
    await page.keyboard.press('ArrowDown');
    assert.equal(await active(), 'W3/FETCH');
    await page.keyboard.press('ArrowRight');
    assert.equal(await active(), 'W3/JUDGE');
    await page.keyboard.press('Tab');  // Out of the chart, and back: the same bar.
    await page.keyboard.press('Shift+Tab');
    assert.equal(await active(), 'W3/JUDGE');
    assert.equal(await page.locator('.gantt .bar[tabindex="0"]').count(), 1);
    // Zoom in doubles the bars' widths; Fit brings them back.
    const failedWidth = () => page.locator('.gantt .bar.bar-failed').getAttribute('width').then(Number);
    const before = await failedWidth();
    await page.getByRole('button', { name: 'Zoom in' }).click();
    const zoomed = await failedWidth();
    assert.ok(Math.abs(zoomed / before - 2) < 0.05, `zoomed ${before} → ${zoomed}`);
    // Keys pan the chart: the bar moves left as the view moves right.
    const x = await page.locator('.gantt .bar.bar-failed').getAttribute('x').then(Number);
    await page.focus('.gantt-plot');
    await page.keyboard.press('ArrowRight');
    assert.ok(Number(await page.locator('.gantt .bar.bar-failed').getAttribute('x')) < x, 'ArrowRight pans');
    await page.getByRole('button', { name: 'Fit' }).click();
    assert.ok(Math.abs((await failedWidth()) - before) < before * 0.05);
    // The running stage grows with the clock.
    const width = Number(await page.locator('.gantt .bar.bar-running').getAttribute('width'));
    await page.waitForFunction((w) => Number(document.querySelector('.gantt .bar.bar-running').getAttribute('width')) > w, width);
    await shot('timeline-run');

    await go('#/timeline?run=job-ok');
    await page.waitForSelector('.gantt .bar');
    assert.deepEqual(await page.$$eval('.gantt g.lane', (els) => els.map((el) => el.dataset.worker)), ['W1', 'W2']);
    assert.equal(await page.locator('.gantt .bar').count(), 2);
    assert.deepEqual(await page.locator('.critical-list li .mono').allTextContents(), ['FETCH', 'TRANSFORM']);
    await shot('timeline-execution');
  });

  it('updates the live board from the stream within 2 s of a new event', async () => {
    await go('#/workers');
    await page.waitForSelector('.connection-open');
    await page.waitForFunction((n) => document.querySelectorAll('.worker-card').length === n, WORKERS.length);
    const card = page.locator('.worker-card[data-worker="W4"]');
    assert.equal(await card.locator('dd').first().textContent(), 'TRANSFORM');
    await shot('workers');
    const posted = Date.now();
    await api('POST', '/api/v1/events', `${stage('W4', 'job-live', 'PUBLISH', Date.now(), null)[0]}\n`);
    const left = Math.max(1, 2000 - (Date.now() - posted));
    await page.waitForFunction(() => document.querySelector('.worker-card[data-worker="W4"] dd').textContent === 'PUBLISH',
      null, { timeout: left });
    await shot('workers-updated');
  });

  it('colours stuck and silent workers and lists the warnings as they come', async () => {
    // W2 opened a stage 400 s ago (stuck past the watchdog's 300 s); W1's last heartbeat is
    // 90 s old (silent past its 60 s). No run: neither belongs to an execution.
    const late = [
      ev(Date.now() - 400000, { kind: 'stage', worker: 'W2', stage: 'LONG', status: 'starting' }),
      ev(Date.now() - 90000, { kind: 'heartbeat', worker: 'W1' }),
    ];
    await api('POST', '/api/v1/events', `${late.join('\n')}\n`);
    await page.waitForSelector('.worker-card[data-worker="W2"][data-state="stuck"]');
    await page.waitForSelector('.worker-card[data-worker="W1"][data-state="silent"]');
    const look = (w) => page.$eval(`.worker-card[data-worker="${w}"]`, (el) => {
      const cs = getComputedStyle(el);
      return [cs.borderLeftColor, cs.backgroundColor];
    });
    assert.deepEqual(await look('W2'), [rgb(239, 68, 68), rgb(254, 242, 242)], 'stuck is red');
    assert.deepEqual(await look('W1'), [rgb(245, 158, 11), rgb(255, 251, 235)], 'silent is amber');
    await page.waitForFunction(() => {
      const text = document.querySelector('ol.notices[aria-live]').textContent;
      return /stuck stage · W2/.test(text) && /silent · W1/.test(text);
    });
    await shot('workers-warnings');
  });

  it('greys out a worker whose process is gone without a shutdown', async () => {
    // A real process on this host that has ended: the server's watchdog asks the kernel
    // (kill(pid, 0)) and finds it gone.
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    const pid = child.pid;
    await new Promise((r) => child.once('exit', r));
    await api('POST', '/api/v1/events', `${ev(Date.now(), {
      kind: 'log', worker: 'W5', message: 'about to vanish', pid, host: hostname(),
    })}\n`);
    await page.waitForSelector('.worker-card[data-worker="W5"][data-state="crashed"]');
    const look = await page.$eval('.worker-card[data-worker="W5"]', (el) => {
      const cs = getComputedStyle(el);
      return [cs.borderLeftColor, cs.backgroundColor];
    });
    assert.deepEqual(look, [rgb(107, 114, 128), rgb(243, 244, 246)], 'crashed is grey');
    await page.waitForFunction(() => /crashed · W5/.test(
      document.querySelector('ol.notices[aria-live]').textContent));
    await shot('workers-crashed');
  });

  it('shows stage durations and failure patterns with links to examples', async () => {
    await go('#/stages?range=24h');
    await page.waitForSelector('table.stages tbody tr');
    const stages = await page.$$eval('table.stages tbody tr', (els) => els.map((el) => el.dataset.stage).sort());
    assert.deepEqual(stages, ['FETCH', 'JUDGE', 'TRANSFORM']);
    await page.waitForSelector('.patterns .pattern');
    assert.ok(await page.locator('.patterns a[href="#/executions/job-bad"]').count() >= 1);
    await shot('stages');
  });

  it('shows the report of the last 24 hours, and its HTML renders as a page of its own', async () => {
    await go('#/report?range=24h');
    await page.waitForSelector('[data-kpi="executions"]');
    assert.ok(Number(await page.locator('[data-kpi="executions"]').textContent()) >= 1);
    assert.equal(await page.locator('svg.report-chart').count(), 1);
    await shot('report');
    // The self-contained HTML report, as a mail client shows it: its own CSS and SVG, no script.
    const html = await page.evaluate(async () => {
      const r = await fetch('/api/v1/report?since=24h&format=html',
        { headers: { Authorization: `Bearer ${sessionStorage.getItem('stagelog.token')}` } });
      return r.text();
    });
    assert.ok(html.startsWith('<!DOCTYPE html>'));
    assert.ok(!html.includes('<script'));
    const mail = await page.context().newPage();
    await mail.setContent(html);
    assert.ok(await mail.locator('svg').count() >= 1);
    await mail.screenshot({ path: join(ARTIFACTS, 'report-html.png'), fullPage: true });
    await mail.close();
  });

  it('fits a phone\'s width on every page', async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    for (const [hash, ready, name] of [
      ['#/executions', 'table.executions tbody tr', 'executions'],
      ['#/executions/job-bad', 'ol.log-steps li', 'process-log'],
      ['#/timeline?range=1h', '.gantt .bar', 'timeline'],
      ['#/workers', '.worker-card', 'workers'],
      ['#/stages', 'table.stages tbody tr', 'stages'],
      ['#/report', '[data-kpi="executions"]', 'report'],
    ]) {
      await go(hash);
      await page.waitForSelector(ready);
      assert.deepEqual(await unnamed(), [], `${hash}: controls without an accessible name`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${hash} is ${overflow}px wider than the phone`);
      await shot(`phone-${name}`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('switches between the attempts of a job sent as seed 004\'s documents', async () => {
    const at = (s) => new Date(NOW - 7200000 + s * 1000).toISOString();
    const doc = (n, last) => JSON.stringify({
      tracking_id: 'job-retry', execution_id: `exec_e2e_${n}`, started_at: at(10 * n),
      completed_at: at(10 * n + 5), duration_ms: 5000, tier: 'comprehensive',
      steps: [
        { step: 'initialization', timestamp: at(10 * n), status: 'completed', message: 'Started' },
        { step: 'orchestrator_execution', timestamp: at(10 * n + 5), ...last },
      ],
    });
    await api('PUT', '/api/v1/executions/job-retry', doc(1, { status: 'failed', message: 'Processing failed', error_details: 'Error: boom' }), 'application/json');
    await api('PUT', '/api/v1/executions/job-retry', doc(2, { status: 'completed', message: 'Orchestrator completed' }), 'application/json');
    await go('#/executions/job-retry');
    await page.waitForSelector('nav.attempts a[aria-current="page"]');
    // Their names as a screen reader reads them: number and final status.
    assert.deepEqual(await page.locator('nav.attempts a').allTextContents(), ['#1, Failed', '#2, Completed']);
    assert.equal(await page.locator('nav.attempts a[aria-current="page"]').textContent(), '#2, Completed', 'the latest by default');
    assert.equal(await page.locator('.log-title .badge').textContent(), 'Completed');
    await page.locator('nav.attempts a', { hasText: '#1' }).click();
    await page.waitForSelector('li.step-failed pre.error-details');
    assert.equal(await page.locator('.log-title .badge').textContent(), 'Failed');
    assert.match(await page.locator('.log-metadata').textContent(), /exec_e2e_1/);
    assert.deepEqual(await page.locator('.step-offset').allTextContents(), ['+0ms', '+5.0s']);
    await shot('process-log-attempt-1');
  });

  it('had no console errors or uncaught exceptions on any page', () => {
    assert.deepEqual(problems, []);
  });

  it('refuses a wrong token, and a 401 brings the user back to sign-in', async () => {
    // A page of its own: the refused requests log "401" to its console, as they should.
    const own = [];
    const other = await context.newPage();
    watch(other, own);
    try {
      await other.goto(`${baseUrl}/#/sign-in`);
      await other.getByLabel('Access token').fill('slg_not_a_token');
      await other.getByRole('button', { name: 'Sign in' }).click();
      await other.waitForFunction(() => /refused/.test(document.querySelector('.form-error').textContent));
      await other.evaluate(() => sessionStorage.setItem('stagelog.token', 'slg_not_a_token'));
      await other.goto(`${baseUrl}/#/stages`);
      await other.waitForURL(/#\/sign-in/);
      await other.waitForFunction(() => /unknown token/.test(document.querySelector('.form-error').textContent));
      assert.equal(await other.evaluate(() => sessionStorage.getItem('stagelog.token')), null);
      await other.screenshot({ path: join(ARTIFACTS, 'signed-out.png') });
      assert.ok(own.every((m) => /401/.test(m)), own.join('\n'));
    } finally {
      await other.close();
    }
  });
});
