// Sign-in: paste a token (read scope at least). It is checked against the server before it
// is kept, in sessionStorage: for this tab only, gone when the tab closes.

import { getJson, setToken, ApiError } from '../api.js';
import { h } from '../dom.js';

export function mount(main, { query }) {
  document.title = 'Sign in · stagelog';
  const reason = query.get('reason');
  const next = query.get('next');
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'off',
    spellcheck: 'false', placeholder: 'slg_…', 'aria-describedby': 'token-help',
  });
  const message = h('p', { class: 'form-error', id: 'sign-in-error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in');
  if (reason) message.textContent = reason;

  const form = h('form', {
    class: 'card sign-in', 'aria-labelledby': 'sign-in-title',
    async onsubmit(e) {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      submit.disabled = true;
      message.textContent = '';
      try {
        // Any read route checks the token; the workers list is small.
        const response = await fetch('/api/v1/workers',
          { headers: { Authorization: `Bearer ${value}` } });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          throw new ApiError(response.status, body.error || `${response.status} ${response.statusText}`);
        }
        setToken(value);
        location.hash = next && !next.startsWith('/sign-in') ? `#${next}` : '#/executions';
      } catch (error) {
        message.textContent = error.status === 401 || error.status === 403
          ? `This token was refused: ${error.message}.`
          : `Cannot sign in: ${error.message}`;
        input.focus();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', { id: 'sign-in-title' }, 'Sign in'),
  h('label', { for: 'token' }, 'Access token'),
  input,
  h('p', { class: 'hint', id: 'token-help' },
    'A token with the read scope, as printed by ', h('code', {}, 'stagelog serve'), ' or ',
    h('code', {}, 'stagelog token create'), '. It is kept for this tab only.'),
  message,
  submit);
  main.appendChild(h('div', { class: 'center' }, form));
  input.focus();
}
