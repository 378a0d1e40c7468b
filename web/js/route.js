// The hash router's reading of location.hash, apart from app.js (which runs the UI on import)
// so that it is a pure module: tests/web/route.test.mjs runs it under node.

// "#/executions/item%2013?attempt=2" → {path: ['executions', 'item 13'], query}.
export function parseHash(hash) {
  const text = hash.replace(/^#\/?/, '');
  const q = text.indexOf('?');
  const pathText = q < 0 ? text : text.slice(0, q);
  const path = pathText.split('/').filter((p) => p !== '').map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { path, query: new URLSearchParams(q < 0 ? '' : text.slice(q + 1)) };
}
