// Nodes page: every node as a list or as a heat map, one selection shared by both, node actions
// on the selection, and a details pane (fields, provisioning log, recent tasks) for one node.
//
// The heat map has a tile per node, grouped by template (on-premises nodes, whose template is
// null, form the group "on-premises"). A tile's fill rises with the chosen metric, and its text
// says the node's name, state, health and the metric's value, so it reads without colour.
// Rows and tiles are kept per node name and updated in place on each refresh.

import { api, seg, messageOf, mayAdminister } from './api.js';
import { Resource } from './live.js';
import { h, reconcile, setText, badge, setBadge, say, hush, fmtTime, fields, table, labelled, showResults } from './dom.js';

const ACTIONS = [
  ['online', 'Bring online'],
  ['offline', 'Take offline'],
  ['start', 'Start'],
  ['stop', 'Stop'],
];

const METRICS = [
  ['cpu', 'CPU use'],
  ['cores', 'Cores in use'],
  ['memory', 'Memory use'],
];

const ON_PREMISES = 'on-premises';
const METRIC_KEY = 'thunderhead.nodes.metric';

/** A metric of a node in percent, or null when the node does not report it. */
export function metricOf(node, metric) {
  if (metric === 'cpu') return node.cpu_percent ?? null;
  if (metric === 'cores') return node.cores > 0 ? (100 * node.cores_in_use) / node.cores : null;
  if (metric === 'memory') {
    return node.memory_total_mb ? (100 * (node.memory_used_mb ?? 0)) / node.memory_total_mb : null;
  }
  return null;
}

/** The metric's value as people read it. */
function metricText(node, metric) {
  const pct = metricOf(node, metric);
  return pct === null ? 'n/a' : `${Math.round(pct)}%`;
}

/** The metric in detail, for a tooltip. */
function metricDetail(node, metric) {
  if (metric === 'cores') return `${node.cores_in_use} of ${node.cores} cores in use`;
  if (metric === 'memory' && node.memory_total_mb) return `${node.memory_used_mb} of ${node.memory_total_mb} MiB memory used`;
  if (metric === 'cpu' && node.cpu_percent !== null && node.cpu_percent !== undefined) return `CPU ${node.cpu_percent}% busy`;
  return 'not reported by the node';
}

/** The fill colour for a percentage: cool blue when idle to warm red when full. */
function heatColour(pct) {
  const hue = 210 - (200 * Math.min(100, Math.max(0, pct))) / 100;
  return `hsl(${hue.toFixed(0)} 70% 52%)`;
}

/** The tasks a node runs, short: `7.1, 7.2, 7.3 +4 more`. */
function tasksText(node) {
  const list = node.tasks ?? [];
  if (list.length === 0) return node.running_tasks > 0 ? String(node.running_tasks) : '—';
  const shown = list.slice(0, 3).join(', ');
  return list.length > 3 ? `${shown} +${list.length - 3} more` : shown;
}

export function mount(root, { signal }) {
  const state = {
    nodes: [],
    byName: new Map(),
    selected: new Set(),
    view: 'list',
    metric: METRICS.some(([m]) => m === localStorage.getItem(METRIC_KEY)) ? localStorage.getItem(METRIC_KEY) : 'cpu',
    details: null,
  };
  const ui = skeleton(state);
  root.append(ui.page);

  const rows = new Map();
  const groups = new Map();

  const nodes = new Resource(
    signal,
    (sig) => api('/api/v1/nodes', { signal: sig }),
    (list) => {
      state.nodes = list;
      state.byName = new Map(list.map((n) => [n.name, n]));
      for (const name of state.selected) if (!state.byName.has(name)) state.selected.delete(name);
      hush(ui.loadError);
      render();
    },
    (e) => say(ui.loadError, 'error', messageOf(e)),
  );
  // The details pane's fetches answer for the node they asked about; a late answer about a node
  // no longer shown is dropped.
  const ofNode = (path) => async (sig) => {
    const name = state.details;
    // The pane was closed while this fetch waited its turn.
    if (name === null || name === undefined) return { name, value: [] };
    return { name, value: await api(`/api/v1/nodes/${seg(name)}/${path}`, { signal: sig }) };
  };
  const log = new Resource(
    signal,
    ofNode('log'),
    ({ name, value }) => name === state.details && renderLog(ui, value),
    (e) => say(ui.log, 'error', messageOf(e)),
  );
  const tasks = new Resource(
    signal,
    ofNode('tasks'),
    ({ name, value }) => name === state.details && renderTasks(ui, value),
    (e) => say(ui.tasks, 'error', messageOf(e)),
  );

  function render() {
    setText(ui.count, `${state.nodes.length} node${state.nodes.length === 1 ? '' : 's'}`);
    ui.listWrap.hidden = state.view !== 'list';
    ui.heatmap.hidden = state.view !== 'heatmap';
    for (const b of ui.viewButtons) b.setAttribute('aria-pressed', String(b.dataset.view === state.view));
    // Only the view on show has elements, so each node's hooks ([data-details], …) are unique.
    if (state.view === 'list') {
      dropView(ui.heatmap, groups);
      renderList(ui, state, rows);
    } else {
      dropView(ui.tbody, rows);
      renderHeatmap(ui, state, groups);
    }
    renderSelection(ui, state);
    if (state.details) renderDetailsFields(ui, state);
  }

  function toggle(name, on) {
    if (!mayAdminister()) return; // nothing to do with a selection
    if (on) state.selected.add(name);
    else state.selected.delete(name);
    render();
  }

  function openDetails(name) {
    state.details = name;
    ui.details.hidden = false;
    setText(ui.detailsTitle, name);
    ui.log.replaceChildren(h('p', { class: 'muted', text: 'loading…' }));
    ui.tasks.replaceChildren(h('p', { class: 'muted', text: 'loading…' }));
    render();
    log.refresh();
    tasks.refresh();
    ui.details.focus({ preventScroll: false });
  }

  function closeDetails() {
    state.details = null;
    ui.details.hidden = true;
    render();
  }

  async function act(action, button) {
    const names = [...state.selected];
    if (names.length === 0) {
      say(ui.messages, 'error', 'select one or more nodes first (tick them in the list, or click their tiles)');
      return;
    }
    const body = { action, names };
    if (action === 'offline' && ui.force.checked) body.force = true;
    button.disabled = true;
    try {
      const results = await api('/api/v1/nodes/actions', { method: 'POST', body, signal });
      showResults(ui.messages, action, results);
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.messages, 'error', messageOf(e));
    } finally {
      button.disabled = false;
    }
    nodes.refresh();
  }

  ui.page.addEventListener('click', (event) => {
    const t = event.target;
    const view = t.closest('button[data-view]');
    if (view) {
      state.view = view.dataset.view;
      render();
      return;
    }
    const action = t.closest('button[data-node-action]');
    if (action) return void act(action.dataset.nodeAction, action);
    const details = t.closest('[data-details]');
    if (details) return void openDetails(details.dataset.details);
    if (t.closest('#clear-selection')) {
      state.selected.clear();
      return void render();
    }
    if (t.closest('#close-details')) return void closeDetails();
    const tile = t.closest('.tile');
    if (tile && !t.matches('input')) toggle(tile.dataset.node, !state.selected.has(tile.dataset.node));
  });
  ui.page.addEventListener('change', (event) => {
    const t = event.target;
    if (t.matches('input[data-select]')) toggle(t.dataset.select, t.checked);
    else if (t.matches('input[data-tile-select]')) toggle(t.dataset.tileSelect, t.checked);
    else if (t.matches('#select-all')) {
      state.selected = new Set(t.checked ? state.nodes.map((n) => n.name) : []);
      render();
    } else if (t.matches('#heat-metric')) {
      state.metric = t.value;
      localStorage.setItem(METRIC_KEY, state.metric);
      render();
    }
  });
  ui.heatmap.addEventListener('keydown', (event) => {
    const tile = event.target.closest('.tile');
    if (!tile || event.target !== tile || (event.key !== ' ' && event.key !== 'Enter')) return;
    event.preventDefault();
    toggle(tile.dataset.node, !state.selected.has(tile.dataset.node));
  });

  render();
  nodes.refresh();
  return {
    refresh() {
      nodes.refresh();
      if (state.details) {
        log.refresh();
        tasks.refresh();
      }
    },
    onChange(topics) {
      if (topics.has('nodes')) nodes.refresh();
      if (state.details && topics.has('nodes')) log.refresh();
      if (state.details && (topics.has('jobs') || topics.has('nodes'))) tasks.refresh();
    },
  };
}

/** Builds the page's stable elements once; refreshes only fill them. */
function skeleton(state) {
  const viewButtons = [
    h('button', { type: 'button', 'data-view': 'list', 'aria-pressed': 'false' }, 'List'),
    h('button', { type: 'button', 'data-view': 'heatmap', 'aria-pressed': 'false' }, 'Heat map'),
  ];
  const metric = h(
    'select',
    { id: 'heat-metric' },
    METRICS.map(([value, text]) => h('option', { value, selected: value === state.metric }, text)),
  );
  const force = h('input', { type: 'checkbox', id: 'offline-force' });
  const count = h('span', { class: 'muted' });
  const selection = h('span', { id: 'node-selection', class: 'selection-count', 'aria-live': 'polite' });
  const messages = h('div', { id: 'node-messages', class: 'messages', 'aria-live': 'polite' });
  const loadError = h('div', { class: 'messages' });
  const list = table('node-table', [
    { node: h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'select every node' }), class: 'admin-only' },
    'Name', 'Template', 'Size', 'State', 'Health', { text: 'Cores in use', num: true }, { text: 'CPU', num: true }, { text: 'Memory', num: true }, 'Tasks', 'Since',
  ], 'nodes');
  const heatmap = h('div', { id: 'heatmap', class: 'heatmap', hidden: true });
  const detailsTitle = h('h2');
  const detailsFields = h('div');
  const log = h('ol', { id: 'node-log', class: 'log' });
  const tasks = h('div', { id: 'node-tasks' });
  const details = h(
    'aside',
    { id: 'node-details', class: 'panel details', hidden: true, tabindex: '-1', 'aria-label': 'node details' },
    h('div', { class: 'panel-head' }, detailsTitle, h('button', { type: 'button', id: 'close-details', class: 'quiet' }, 'Close')),
    detailsFields,
    h('h3', { text: 'Provisioning log' }),
    log,
    h('h3', { text: 'Recent tasks' }),
    tasks,
  );
  const page = h(
    'section',
    { class: 'page page-nodes' },
    h('div', { class: 'page-head' }, h('h1', { text: 'Nodes' }), count),
    h('p', { class: 'viewer-note muted' }, 'Starting, stopping and bringing nodes online or offline needs the Administrator role.'),
    h(
      'div',
      { class: 'toolbar' },
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'view' }, viewButtons),
      labelled('Heat map metric', metric),
      h(
        'div',
        { class: 'toolbar-group admin-only', role: 'group', 'aria-label': 'act on the selected nodes' },
        selection,
        ACTIONS.map(([action, text]) => h('button', { type: 'button', 'data-node-action': action }, text)),
        h('label', { class: 'check' }, force, ' force offline (requeue running tasks)'),
        h('button', { type: 'button', id: 'clear-selection', class: 'quiet' }, 'Clear selection'),
      ),
    ),
    messages,
    loadError,
    h('div', { class: 'split' }, h('div', { class: 'split-main' }, list.wrap, heatmap), details),
  );
  return {
    page, viewButtons, metric, force, count, selection, messages, loadError, heatmap, details, detailsTitle,
    detailsFields, log, tasks, listWrap: list.wrap, tbody: list.tbody, selectAll: list.table.querySelector('#select-all'),
  };
}

function renderSelection(ui, state) {
  const n = state.selected.size;
  setText(ui.selection, n === 0 ? 'no node selected' : `${n} selected`);
  ui.selectAll.checked = n > 0 && n === state.nodes.length;
  ui.selectAll.indeterminate = n > 0 && n < state.nodes.length;
}

/** Empties a view's container and forgets its elements. */
function dropView(container, cache) {
  if (cache.size === 0 && container.childElementCount === 0) return;
  container.replaceChildren();
  cache.clear();
}

// ---- list ----

function renderList(ui, state, rows) {
  ui.tbody.querySelector(':scope > tr.empty')?.remove();
  reconcile(ui.tbody, state.nodes, (n) => n.name, createRow, (tr, n) => updateRow(tr, n, state), rows);
  if (state.nodes.length === 0) {
    ui.tbody.replaceChildren(emptyRow(11, noNodes()));
    rows.clear();
  }
}

function noNodes() {
  return mayAdminister() ? 'no nodes yet: add burst nodes on the Templates page' : 'no nodes yet';
}

function emptyRow(span, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: String(span), text }));
}

function createRow(n) {
  return h(
    'tr',
    { 'data-node': n.name },
    h('td', { class: 'admin-only' }, h('input', { type: 'checkbox', 'data-select': n.name, 'aria-label': `select ${n.name}` })),
    h('td', {}, h('button', { type: 'button', class: 'link', 'data-details': n.name, title: 'show details' }, n.name)),
    h('td', { class: 'template' }),
    h('td', { class: 'size' }),
    h('td', { class: 'state' }, badge(n.state)),
    h('td', { class: 'health' }, badge(n.health)),
    h('td', { class: 'cores num' }),
    h('td', { class: 'cpu num' }),
    h('td', { class: 'memory num' }),
    h('td', { class: 'tasks' }),
    h('td', { class: 'since' }),
  );
}

function updateRow(tr, n, state) {
  const c = tr.children;
  const selected = state.selected.has(n.name);
  c[0].firstChild.checked = selected;
  tr.classList.toggle('selected', selected);
  tr.classList.toggle('details-open', state.details === n.name);
  setText(c[2], n.template ?? ON_PREMISES);
  setText(c[3], n.size ?? '—');
  setBadge(c[4].firstChild, n.state);
  c[4].title = n.cause ?? '';
  setBadge(c[5].firstChild, n.health);
  setText(c[6], `${n.cores_in_use} / ${n.cores}`);
  setText(c[7], metricText(n, 'cpu'));
  setText(c[8], metricText(n, 'memory'));
  setText(c[9], tasksText(n));
  c[9].title = (n.tasks ?? []).join(', ');
  setText(c[10], fmtTime(n.since));
}

// ---- heat map ----

function groupsOf(nodes) {
  const byTemplate = new Map();
  for (const n of nodes) {
    const key = n.template ?? ON_PREMISES;
    if (!byTemplate.has(key)) byTemplate.set(key, []);
    byTemplate.get(key).push(n);
  }
  return [...byTemplate.entries()]
    .sort(([a], [b]) => (a === ON_PREMISES) - (b === ON_PREMISES) || a.localeCompare(b))
    .map(([template, list]) => ({ template, list }));
}

function renderHeatmap(ui, state, groups) {
  if (state.nodes.length === 0) {
    ui.heatmap.replaceChildren(h('p', { class: 'muted', text: noNodes() }));
    groups.clear();
    return;
  }
  if (ui.heatmap.querySelector(':scope > p')) ui.heatmap.replaceChildren();
  reconcile(ui.heatmap, groupsOf(state.nodes), (g) => g.template, createGroup, (el, g) => updateGroup(el, g, state), groups);
}

function createGroup(g) {
  const tiles = h('div', { class: 'tiles' });
  const el = h(
    'section',
    { class: 'tile-group', 'data-template': g.template },
    h('h2', { class: 'tile-group-head' }, h('span', { class: 'tile-group-name', text: g.template }), h('span', { class: 'muted tile-group-sum' })),
    tiles,
  );
  el.tileCache = new Map();
  return el;
}

function updateGroup(el, g, state) {
  const online = g.list.filter((n) => n.state === 'Online').length;
  const values = g.list.map((n) => metricOf(n, state.metric)).filter((v) => v !== null);
  const mean = values.length ? Math.round(values.reduce((a, b) => a + b, 0) / values.length) : null;
  setText(
    el.querySelector('.tile-group-sum'),
    `${g.list.length} nodes, ${online} online${mean === null ? '' : `, mean ${mean}%`}`,
  );
  reconcile(el.querySelector('.tiles'), g.list, (n) => n.name, createTile, (t, n) => updateTile(t, n, state), el.tileCache);
}

function createTile(n) {
  return h(
    'div',
    // Only a role that can act on a selection can select a tile, by click or from the keyboard.
    { class: 'tile', 'data-node': n.name, tabindex: mayAdminister() ? '0' : null, role: 'group', 'aria-label': n.name },
    h('div', { class: 'tile-fill' }),
    h(
      'div',
      { class: 'tile-body' },
      h('span', { class: 'tile-name', text: n.name }),
      h('span', { class: 'tile-state' }),
      h('span', { class: 'tile-health' }),
    ),
    h(
      'div',
      { class: 'tile-foot' },
      h('span', { class: 'tile-value' }),
      h('input', { type: 'checkbox', class: 'tile-check admin-only', 'data-tile-select': n.name, 'aria-label': `select ${n.name}` }),
      h('button', { type: 'button', class: 'tile-details', 'data-details': n.name, 'aria-label': `details of ${n.name}`, title: 'details' }, 'i'),
    ),
  );
}

function updateTile(el, n, state) {
  const pct = metricOf(n, state.metric);
  const selected = state.selected.has(n.name);
  el.dataset.state = n.state;
  el.dataset.health = n.health;
  el.className = `tile st-${n.state.toLowerCase()} hl-${n.health.toLowerCase()}${selected ? ' selected' : ''}${pct === null ? ' no-metric' : ''}`;
  const fill = el.querySelector('.tile-fill');
  fill.style.height = `${pct ?? 0}%`;
  fill.style.backgroundColor = pct === null ? '' : heatColour(pct);
  setText(el.querySelector('.tile-state'), n.state);
  setText(el.querySelector('.tile-health'), n.health);
  setText(el.querySelector('.tile-value'), metricText(n, state.metric));
  el.querySelector('.tile-check').checked = selected;
  el.title = `${n.name}: ${n.state}, health ${n.health}; ${metricDetail(n, state.metric)}; ${n.running_tasks} task(s)`;
}

// ---- details ----

function renderDetailsFields(ui, state) {
  const n = state.byName.get(state.details);
  if (!n) {
    ui.detailsFields.replaceChildren(h('p', { class: 'msg msg-error', text: `node ${state.details} is gone (deleted, or not listed any more)` }));
    return;
  }
  const memory = n.memory_total_mb ? `${n.memory_used_mb} of ${n.memory_total_mb} MiB (${metricText(n, 'memory')})` : 'n/a';
  ui.detailsFields.replaceChildren(
    fields([
      ['State', badge(n.state)],
      ['Health', badge(n.health)],
      ['Cause', n.cause],
      ['Since', fmtTime(n.since)],
      ['Template', n.template ?? ON_PREMISES],
      ['Size', n.size],
      ['Cores in use', `${n.cores_in_use} of ${n.cores}`],
      ['CPU', metricText(n, 'cpu')],
      ['Memory', memory],
      ['Agent', n.connected ? 'connected' : 'not connected'],
      ['Running tasks', (n.tasks ?? []).join(', ') || String(n.running_tasks)],
      ['Packages', (n.packages ?? []).join(', ') || 'none'],
    ]),
  );
}

function renderLog(ui, entries) {
  if (entries.length === 0) {
    ui.log.replaceChildren(h('li', { class: 'muted', text: 'nothing logged yet' }));
    return;
  }
  ui.log.replaceChildren(
    ...entries.map((e) => h('li', { class: 'log-entry' }, h('time', { text: fmtTime(e.at) }), ' ', h('span', { text: e.message }))),
  );
  ui.log.scrollTop = ui.log.scrollHeight;
}

function renderTasks(ui, list) {
  if (list.length === 0) {
    ui.tasks.replaceChildren(h('p', { class: 'muted', text: 'no tasks ran here yet' }));
    return;
  }
  const t = table(null, ['Task', 'State', { text: 'Attempt', num: true }, { text: 'Exit', num: true }, 'Started', 'Ended'], 'recent tasks of the node');
  t.tbody.append(
    ...list.map((task) =>
      h(
        'tr',
        { 'data-node-task': task.id },
        h('td', {}, h('a', { href: `#/jobs/${task.job}`, text: task.id })),
        h('td', { class: 'state' }, badge(task.state)),
        h('td', { class: 'num', text: String(task.attempt) }),
        h('td', { class: 'num', text: task.exit_code ?? '—' }),
        h('td', { text: fmtTime(task.started_at) }),
        h('td', { text: fmtTime(task.ended_at) }),
      ),
    ),
  );
  ui.tasks.replaceChildren(t.wrap);
}
