// web/js/route.js: how the hash router reads location.hash. Run: node --test tests/web/
// (web/ has no package.json: node loads its .js files as ES modules by their syntax, the
// default since node 20.19 and 22.7; tests/CMakeLists.txt checks the version).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseHash } from '../../web/js/route.js';

function parsed(hash) {
  const { path, query } = parseHash(hash);
  return { path, query: [...query] };
}

test('an empty hash is the empty path', () => {
  assert.deepEqual(parsed(''), { path: [], query: [] });
  assert.deepEqual(parsed('#'), { path: [], query: [] });
  assert.deepEqual(parsed('#/'), { path: [], query: [] });
});

test('path segments split on slashes', () => {
  assert.deepEqual(parsed('#/executions'), { path: ['executions'], query: [] });
  assert.deepEqual(parsed('#/executions/item-13'), { path: ['executions', 'item-13'], query: [] });
});

test('the leading "#", "/" and empty segments are dropped', () => {
  assert.deepEqual(parsed('executions'), { path: ['executions'], query: [] });
  assert.deepEqual(parsed('#executions'), { path: ['executions'], query: [] });
  assert.deepEqual(parsed('#//executions//item-13/'), { path: ['executions', 'item-13'], query: [] });
});

test('segments are URL-decoded, one by one', () => {
  assert.deepEqual(parseHash('#/executions/item%2013').path, ['executions', 'item 13']);
  // An encoded slash stays inside its segment.
  assert.deepEqual(parseHash('#/executions/a%2Fb').path, ['executions', 'a/b']);
  assert.deepEqual(parseHash('#/executions/%C3%A9t%C3%A9').path, ['executions', 'été']);
  // A '+' is a plus in a path, not a space.
  assert.deepEqual(parseHash('#/stages/a+b').path, ['stages', 'a+b']);
});

test('a segment that is not valid percent-encoding is kept as it is', () => {
  assert.deepEqual(parseHash('#/executions/%E0%A4%A').path, ['executions', '%E0%A4%A']);
  assert.deepEqual(parseHash('#/executions/100%/x%41').path, ['executions', '100%', 'xA']);
});

test('the query follows the first "?"', () => {
  const { path, query } = parseHash('#/executions/item%2013?attempt=2');
  assert.deepEqual(path, ['executions', 'item 13']);
  assert.ok(query instanceof URLSearchParams);
  assert.equal(query.get('attempt'), '2');
  assert.equal(query.get('missing'), null);
  assert.deepEqual(parsed('#/timeline?from=1&to=2&from=3'),
    { path: ['timeline'], query: [['from', '1'], ['to', '2'], ['from', '3']] });
  assert.equal(parseHash('#/x?a=1?b').query.get('a'), '1?b');
});

test('query values are form-decoded', () => {
  assert.equal(parseHash('#/executions?q=a+b%20c%26d').query.get('q'), 'a b c&d');
});

test('a query without a path, and an empty query', () => {
  assert.deepEqual(parsed('#?attempt=2'), { path: [], query: [['attempt', '2']] });
  assert.deepEqual(parsed('#/executions?'), { path: ['executions'], query: [] });
});

test('a "?" encoded in a segment is not the query', () => {
  assert.deepEqual(parsed('#/executions/what%3F'), { path: ['executions', 'what?'], query: [] });
});

test('only strings: location.hash always is one', () => {
  assert.throws(() => parseHash(undefined), TypeError);
  assert.throws(() => parseHash(null), TypeError);
});
