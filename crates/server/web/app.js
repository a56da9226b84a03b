// Thunderhead dashboard: the shell around the pages.
//
// It signs in with an API token (kept in sessionStorage), shows who is signed in, routes by the
// URL's hash (#/nodes, #/templates, #/jobs, #/jobs/ID, #/packages, #/cost) and keeps the one
// live event stream open while someone is signed in. A page is a module whose `mount(root,
// ctx)` builds it once and answers `{onChange(topics), refresh()}`; leaving the page aborts
// `ctx.signal`, which stops its fetches, and drops its elements with their listeners.

import { api, token, session, onUnauthorized, messageOf } from './api.js';
import { startLive, stopLive } from './live.js';
import * as nodes from './nodes.js';
import * as templates from './templates.js';
import * as jobs from './jobs.js';
import * as job from './job.js';
import * as packages from './packages.js';
import * as cost from './cost.js';

const PAGES = { nodes, templates, jobs, packages, cost };

const $ = (id) => document.getElementById(id);

/** The page on show: its name, its abort controller and what its mount answered. */
let current = null;
let signedIn = false;

function routeOf(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'jobs' && parts[1] !== undefined) return { nav: 'jobs', module: job, params: { id: parts[1] } };
  const name = PAGES[parts[0]] ? parts[0] : null;
  return name ? { nav: name, module: PAGES[name], params: {} } : null;
}

function leavePage() {
  if (!current) return;
  current.controller.abort();
  current = null;
  $('page').replaceChildren();
}

function showPage() {
  if (!signedIn) return;
  const route = routeOf(location.hash);
  if (!route) {
    location.replace('#/nodes');
    return;
  }
  leavePage();
  for (const a of document.querySelectorAll('a[data-nav]')) {
    if (a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const controller = new AbortController();
  const root = $('page');
  const handle = route.module.mount(root, { signal: controller.signal, params: route.params });
  current = { controller, handle };
  root.focus({ preventScroll: true });
}

function setLive(text) {
  const el = $('live');
  el.textContent = text;
  el.dataset.status = text;
}

function startStream() {
  startLive({
    onStatus: setLive,
    onChange: (topics) => current?.handle.onChange(topics),
    onReconnect: () => current?.handle.refresh(),
  });
}

async function enter() {
  const me = await api('/api/v1/whoami');
  signedIn = true;
  Object.assign(session, { name: me.name, role: me.role });
  document.body.dataset.role = me.role;
  $('whoami').replaceChildren(
    document.createTextNode(me.name),
    document.createTextNode(' '),
    Object.assign(document.createElement('span'), { className: 'role', textContent: me.role }),
  );
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  setLive('connecting');
  startStream();
  showPage();
}

/**
 * Back to the login form, with `message` if there is one to say why. `keepToken` keeps the
 * token (filled in) when the head node could not be asked, so signing in again retries.
 */
function logout(message, keepToken = false) {
  const kept = keepToken ? token.get() : null;
  stopLive();
  leavePage();
  signedIn = false;
  token.clear();
  Object.assign(session, { name: null, role: null });
  delete document.body.dataset.role;
  $('whoami').replaceChildren();
  setLive('offline');
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message ?? '';
  $('login-token').value = kept ?? '';
  $('login-token').focus();
}

async function login(event) {
  event.preventDefault();
  const value = $('login-token').value.trim();
  if (!value) {
    $('login-error').textContent = 'paste your API token (th1_…): the head node printed it at first start, in access.json';
    return;
  }
  const button = $('login-button');
  button.disabled = true;
  token.set(value);
  try {
    await enter();
    $('login-error').textContent = '';
  } catch (e) {
    if (!signedIn) logout(messageOf(e));
  } finally {
    button.disabled = false;
  }
}

function start() {
  onUnauthorized((message) => {
    if (token.get() !== null) logout(message);
  });
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', () => logout());
  window.addEventListener('hashchange', showPage);
  if (token.get()) {
    enter().catch((e) => logout(messageOf(e), e.status !== 401));
  } else {
    logout();
  }
}

start();
