// A small DOM builder. Every piece of data goes in as a text node or an attribute value, never
// as markup, so nothing a worker logs can become HTML. No inline styles either: the server's
// Content-Security-Policy forbids them (style-src 'self'); dynamic sizes go through the CSSOM.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) {
      append(parent, child);
    } else if (child instanceof Node) {
      parent.appendChild(child);
    } else {
      parent.appendChild(document.createTextNode(String(child)));
    }
  }
}

function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'style') {
      throw new Error('dom: no style attributes (CSP); set el.style.<property> instead');
    } else if (name === 'value' && 'value' in el) {
      el.value = value;
    } else if (name === 'checked' || name === 'selected' || name === 'disabled') {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

// h('a', {href: '#/x', class: 'link'}, 'text', child, [more]) → an HTML element.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

// The same for SVG elements.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

// Replaces everything inside el.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// The shared states every page shows while it works: loading, empty, failed.
export function loading(what) {
  return h('p', { class: 'state state-loading', role: 'status' }, `Loading ${what}…`);
}

export function empty(title, hint) {
  return h('div', { class: 'state state-empty' }, h('p', { class: 'state-title' }, title),
    hint ? h('p', { class: 'state-hint' }, hint) : null);
}

export function failure(error, retry) {
  return h('div', { class: 'state state-error', role: 'alert' },
    h('p', { class: 'state-title' }, 'Could not load this'),
    h('p', { class: 'state-hint' }, error && error.message ? error.message : String(error)),
    retry ? h('button', { type: 'button', class: 'btn', onclick: retry }, 'Try again') : null);
}
