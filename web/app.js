// The UI's entry point: a hash router (the server only knows real file paths, so every view
// lives after the '#'), the top navigation, and the sign-in guard. Each page is one module
// exporting mount(main, route) → an optional cleanup run when the user leaves it.

import { token, signOut } from './js/api.js';
import { failure, replace } from './js/dom.js';
import { parseHash } from './js/route.js';
import * as signIn from './js/pages/sign-in.js';
import * as executions from './js/pages/executions.js';
import * as execution from './js/pages/execution.js';
import * as timeline from './js/pages/timeline.js';
import * as workers from './js/pages/workers.js';
import * as stages from './js/pages/stages.js';
import * as report from './js/pages/report.js';

// [first path segment, segment count or null for any, page, nav section]
const ROUTES = [
  ['sign-in', 1, signIn, null],
  ['executions', 1, executions, 'executions'],
  ['executions', 2, execution, 'executions'],
  ['timeline', 1, timeline, 'timeline'],
  ['workers', 1, workers, 'workers'],
  ['stages', 1, stages, 'stages'],
  ['report', 1, report, 'report'],
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let cleanup = null;
let firstView = true;

function render() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const route = parseHash(location.hash);
  if (route.path.length === 0) {
    location.replace('#/executions');
    return;
  }
  const signedIn = Boolean(token());
  if (!signedIn && route.path[0] !== 'sign-in') {
    signOut('');
    return;
  }
  nav.hidden = !signedIn;
  const match = ROUTES.find(([first, count]) => first === route.path[0] && count === route.path.length);
  for (const link of nav.querySelectorAll('a[data-section]')) {
    if (match && link.dataset.section === match[3]) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  replace(main);
  if (!match) {
    document.title = 'Not found · stagelog';
    main.appendChild(failure(new Error(`There is no page at #/${route.path.join('/')}.`)));
    return;
  }
  try {
    cleanup = match[2].mount(main, route) || null;
  } catch (error) {
    main.appendChild(failure(error));
    throw error;
  }
  // After a navigation, tell screen readers where they are: focus the new page's heading.
  if (!firstView) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: false });
    }
  }
  firstView = false;
}

document.getElementById('sign-out').addEventListener('click', () => {
  signOut('You signed out.');
});
window.addEventListener('hashchange', render);
render();
