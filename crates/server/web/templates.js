// Templates page: the node templates with their quota in use, proxies and state; a form to
// create or edit one with every field `thunderhead template create` takes; validating a
// template's connection information; starting, stopping and resuming a set; adding nodes.
//
// The form's body follows the API's NewTemplate / TemplateEdit: provider settings go under
// `settings`, the rest at the top level. An edit sends only the fields the user changed (a
// cleared provider setting is sent as null, which removes it). The head node checks every
// value; its message is shown as it is.

import { api, seg, messageOf, mayAdminister } from './api.js';
import { Resource } from './live.js';
import { h, reconcile, setText, setBadge, badge, say, hush, table, labelled, setOptions, showResults } from './dom.js';

/** Every field of the form: its JSON key, label, kind, help, and the providers it is for. */
const FIELDS = [
  { key: 'name', label: 'Name', kind: 'text', group: 'Template', createOnly: true, help: '1-63 letters, digits, - or _' },
  { key: 'provider', label: 'Provider', kind: 'select', group: 'Template', createOnly: true, options: ['sim', 'local', 'azure'] },
  { key: 'description', label: 'Description', kind: 'text', group: 'Template' },
  { key: 'quota_cores', label: 'Quota (cores)', kind: 'int', group: 'Capacity', help: 'cores the provider account may run at once, proxies included (default 20)' },
  { key: 'proxies', label: 'Proxies', kind: 'int', group: 'Capacity', help: 'Small proxy instances a started set deploys (default 2)' },
  { key: 'series_prefix', label: 'Name prefix', kind: 'text', group: 'Capacity', help: 'of new nodes, e.g. Burst- (default: the provider\'s, e.g. SimCN-)' },
  { key: 'deploy_rate', label: 'Deploy rate', kind: 'int', group: 'Capacity', help: 'deployments started per minute, at most (default 300)' },
  { key: 'deploy_retries', label: 'Deploy retries', kind: 'int', group: 'Capacity', help: 'times a failed deployment is tried again (default 2)' },
  { key: 'pause_after_failures', label: 'Pause after failures', kind: 'int', group: 'Capacity', help: 'consecutive failed deployments that pause the template (default 5)' },
  { key: 'rates', label: 'Hourly prices', kind: 'text', group: 'Prices', reset: 'list', help: 'by size, e.g. Small=0.10,Medium=0.20 (default: the 2011 list prices; a size left out goes back to it)' },
  { key: 'currency', label: 'Currency', kind: 'text', group: 'Prices', help: 'e.g. USD (default USD)' },
  { key: 'availability', label: 'Availability', kind: 'select', group: 'Availability', options: ['', 'manual', 'schedule'], help: 'manual, or a weekly schedule' },
  { key: 'windows', label: 'Windows', kind: 'lines', group: 'Availability', help: 'one per line, e.g. Mon-Fri 08:00-18:00' },
  { key: 'timezone', label: 'Time zone', kind: 'text', group: 'Availability', help: 'e.g. Europe/Prague (default UTC)' },
  { key: 'lead_time', label: 'Lead time', kind: 'text', group: 'Availability', help: 'start this long before a window, e.g. 10m (default 10m)' },
  { key: 'drain_before_end', label: 'Drain before end', kind: 'text', group: 'Availability', help: 'e.g. 15m (default 0)' },
  { key: 'work_root', label: 'Work root', kind: 'text', group: 'Provider settings', setting: true, providers: ['local', 'sim'], help: 'absolute directory for node directories (default STATE/nodes)' },
  { key: 'deploy_time', label: 'Deploy time', kind: 'text', group: 'Provider settings', setting: true, providers: ['sim'], help: 'MIN..MAX, e.g. 2s..8s (default 1s..3s)' },
  { key: 'failure_rate', label: 'Failure rate', kind: 'float', group: 'Provider settings', setting: true, providers: ['sim'], help: 'probability a deployment fails, 0 to 1 (default 0)' },
  { key: 'capacity', label: 'Capacity', kind: 'int', group: 'Provider settings', setting: true, providers: ['sim'], help: 'most nodes the simulated cloud holds (default unlimited)' },
  { key: 'seed', label: 'Seed', kind: 'int', group: 'Provider settings', setting: true, providers: ['sim'], help: 'makes the rehearsal repeatable (default 0)' },
  { key: 'light', label: 'Light agents', kind: 'bool', group: 'Provider settings', setting: true, providers: ['sim'], help: 'run nodes inside the head node, finishing each task at once' },
  { key: 'subscription_id', label: 'Subscription id', kind: 'text', group: 'Provider settings', setting: true, providers: ['azure'], help: 'the subscription\'s GUID' },
  { key: 'service_name', label: 'Service name', kind: 'text', group: 'Provider settings', setting: true, providers: ['azure'], help: 'the cloud service' },
  { key: 'storage_account', label: 'Storage account', kind: 'text', group: 'Provider settings', setting: true, providers: ['azure'] },
  { key: 'thumbprint', label: 'Thumbprint', kind: 'text', group: 'Provider settings', setting: true, providers: ['azure'], help: 'SHA-1 of the certificate, to check it' },
  { key: 'certificate', label: 'Management certificate', kind: 'file', group: 'Provider settings', providers: ['azure'], help: 'a PKCS#12 (.pfx) file with a protected key; never shown again' },
  { key: 'certificate_password', label: 'Certificate password', kind: 'password', group: 'Provider settings', providers: ['azure'] },
  { key: 'blob_store', label: 'Package store', kind: 'text', group: 'Packages', help: 'file:///DIR, az://ACCOUNT/CONTAINER or s3://BUCKET (default: the head node\'s)' },
  { key: 'pin', label: 'Pinned packages', kind: 'lines', group: 'Packages', reset: 'latest', help: 'NAME=VERSION, one per line; a package left out installs its newest version' },
];

/** The sizes of burst nodes and their cores (ExtraSmall's core is shared: not for burst nodes). */
const SIZES = [
  ['Small', 1],
  ['Medium', 2],
  ['Large', 4],
  ['ExtraLarge', 8],
];

const DAY_NAMES = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/** `{days:[0,1], start:480, end:1080}` → `Mon,Tue 08:00-18:00`. */
function fmtWindow(w) {
  const hm = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return `${fmtDays(w.days)} ${hm(w.start)}-${hm(w.end)}`;
}

/** `[0,1,2,3,4,6]` → `Mon-Fri,Sun`: runs of three days or more as ranges. */
function fmtDays(days) {
  const sorted = [...days].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j += 1;
    if (j - i >= 2) parts.push(`${DAY_NAMES[sorted[i]]}-${DAY_NAMES[sorted[j]]}`);
    else for (let k = i; k <= j; k++) parts.push(DAY_NAMES[sorted[k]]);
    i = j + 1;
  }
  return parts.join(',');
}

/** Milliseconds → the duration syntax the API reads: `10m`, `90s`, `1h`. */
function fmtDuration(ms) {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** What a form field shows for template `t` when editing it. */
function initialOf(t, f) {
  const a = t.availability ?? { policy: 'manual' };
  switch (f.key) {
    case 'rates':
      return Object.entries(t.rates ?? {}).map(([size, micros]) => `${size}=${micros / 1e6}`).join(',');
    case 'availability':
      return a.policy;
    case 'windows':
      return (a.windows ?? []).map(fmtWindow).join('\n');
    case 'timezone':
      return a.timezone ?? '';
    case 'lead_time':
    case 'drain_before_end':
      return a[f.key] === undefined ? '' : fmtDuration(a[f.key]);
    case 'pin':
      return Object.entries(t.pins ?? {}).map(([name, version]) => `${name}=${version}`).join('\n');
    case 'certificate':
    case 'certificate_password':
      return '';
    default: {
      const v = f.setting ? t.settings?.[f.key] : t[f.key];
      if (f.kind === 'bool') return v === true;
      return v === null || v === undefined ? '' : String(v);
    }
  }
}

/** The raw value of a control: a string, or a boolean for a checkbox. */
function rawOf(control) {
  return control.type === 'checkbox' ? control.checked : control.value;
}

/** The JSON value of a field from its raw value, or throws a message naming the field. */
function parseField(f, raw) {
  if (f.kind === 'bool') return raw;
  const text = f.kind === 'password' ? raw : raw.trim();
  if (text === '') return null;
  if (f.kind === 'int' || f.kind === 'float') {
    const n = Number(text);
    if (!Number.isFinite(n) || (f.kind === 'int' && !Number.isInteger(n))) {
      throw new Error(`${f.label.toLowerCase()} "${text}" is not a ${f.kind === 'int' ? 'whole number' : 'number'}`);
    }
    return n;
  }
  if (f.kind === 'lines') return text.split('\n').map((l) => l.trim()).filter(Boolean);
  return text;
}

/**
 * The edit of a keyed list field (prices by size, pinned packages) whose text went from
 * `before` to `after`: the entries now given, and `KEY=reset` for each key the user took out,
 * which the API reads as "back to the default". `null` when nothing is left to send.
 */
function withResets(f, before, after) {
  const entries = (raw) => raw.split(f.kind === 'lines' ? '\n' : ',').map((e) => e.trim()).filter(Boolean);
  // Size names are read in any case; package names are exact.
  const keyOf = (entry) => {
    const key = entry.split('=')[0].trim();
    return f.key === 'rates' ? key.toLowerCase() : key;
  };
  const now = entries(after);
  const kept = new Set(now.map(keyOf));
  const removed = entries(before).filter((e) => !kept.has(keyOf(e))).map((e) => `${e.split('=')[0].trim()}=${f.reset}`);
  // The resets go first, so that what the user typed wins whatever the head node makes of it.
  const all = [...removed, ...now];
  if (all.length === 0) return null;
  return f.kind === 'lines' ? all : all.join(',');
}

/**
 * What a template sets apart from the defaults, a line each: the prices it changes (other sizes
 * cost the list price) and its pinned packages.
 */
function overridesOf(t) {
  const prices = Object.entries(t.rates ?? {}).map(([size, micros]) => `${size} ${(micros / 1e6).toFixed(2)}`);
  const pins = Object.entries(t.pins ?? {}).map(([name, version]) => `${name}=${version}`);
  return [
    prices.length ? `prices: ${prices.join(', ')} ${t.currency}/h` : '',
    pins.length ? `pinned: ${pins.join(', ')}` : '',
  ].filter(Boolean);
}

/** A file's bytes as hex, the way the API takes a certificate. */
async function hexOf(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Puts `value` of field `f` into the request body. */
function put(body, f, value) {
  if (f.setting) body.settings[f.key] = value;
  else body[f.key] = value;
}

export function mount(root, { signal }) {
  const state = { templates: [], form: null };
  const ui = skeleton();
  root.append(ui.page);
  const rows = new Map();

  const templates = new Resource(
    signal,
    (sig) => api('/api/v1/templates', { signal: sig }),
    (list) => {
      state.templates = list;
      hush(ui.loadError);
      renderTable(ui, list, rows);
      renderTemplateChoice(ui, list);
      renderQuota(ui, state);
    },
    (e) => say(ui.loadError, 'error', messageOf(e)),
  );

  function openForm(template) {
    state.form = { name: template?.name ?? null, initial: new Map() };
    ui.formTitle.textContent = template ? `Edit template ${template.name}` : 'New template';
    ui.submit.textContent = template ? 'Save changes' : 'Create template';
    for (const f of FIELDS) {
      const control = ui.controls.get(f.key);
      if (control.type === 'file') control.value = '';
      else if (control.type === 'checkbox') control.checked = template ? initialOf(template, f) : false;
      else control.value = template ? initialOf(template, f) : f.key === 'provider' ? 'sim' : '';
      if (f.createOnly) control.disabled = Boolean(template);
      state.form.initial.set(f.key, rawOf(control));
    }
    showProviderFields(ui);
    hush(ui.formError);
    ui.form.hidden = false;
    ui.controls.get(template ? 'description' : 'name').focus();
  }

  function closeForm() {
    state.form = null;
    ui.form.hidden = true;
    hush(ui.formError);
  }

  async function bodyOf() {
    const editing = state.form.name !== null;
    const provider = ui.controls.get('provider').value;
    const body = { settings: {} };
    for (const f of FIELDS) {
      if (editing && f.createOnly) continue;
      if (f.providers && !f.providers.includes(provider)) continue;
      const control = ui.controls.get(f.key);
      if (f.kind === 'file') {
        if (control.files.length > 0) body[f.key] = await hexOf(control.files[0]);
        continue;
      }
      const raw = rawOf(control);
      if (editing && raw === state.form.initial.get(f.key)) continue;
      const value = editing && f.reset ? withResets(f, state.form.initial.get(f.key), raw) : parseField(f, raw);
      if (value === null || value === false) {
        if (!editing) continue;
        if (f.setting) put(body, f, null);
        else if (f.kind === 'text') put(body, f, '');
        continue;
      }
      put(body, f, value);
    }
    return body;
  }

  async function submitForm(event) {
    event.preventDefault();
    const editing = state.form?.name ?? null;
    ui.submit.disabled = true;
    try {
      const body = await bodyOf();
      const t = editing
        ? await api(`/api/v1/templates/${seg(editing)}`, { method: 'PATCH', body, signal })
        : await api('/api/v1/templates', { method: 'POST', body, signal });
      closeForm();
      say(ui.messages, 'ok', editing ? `saved template ${t.name}` : `created template ${t.name}`);
      templates.refresh();
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.formError, 'error', messageOf(e));
    } finally {
      ui.submit.disabled = false;
    }
  }

  async function run(button, label, call, show) {
    button.disabled = true;
    try {
      show(await call());
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.messages, 'error', `${label}: ${messageOf(e)}`);
    } finally {
      button.disabled = false;
    }
    templates.refresh();
  }

  function validate(name, button) {
    run(button, `validate ${name}`, () => api(`/api/v1/templates/${seg(name)}/validate`, { method: 'POST', body: {}, signal }), (checks) => {
      const failed = checks.filter((c) => !c.ok).length;
      say(ui.messages, failed ? 'error' : 'ok', [
        `validate ${name}: ${failed ? `${failed} of ${checks.length} checks failed` : `all ${checks.length} checks passed`}`,
        ...checks.map((c) => `${c.ok ? 'ok' : 'FAILED'} — ${c.name}: ${c.detail}`),
      ]);
    });
  }

  function setAction(action, name, button) {
    run(button, `${action} ${name}`, () => api('/api/v1/nodes/actions', { method: 'POST', body: { action, template: name }, signal }), (results) => {
      if (results.length === 0) say(ui.messages, 'info', `${action} ${name}: the set has no nodes to ${action}`);
      else showResults(ui.messages, `${action} set ${name}`, results);
    });
  }

  function resume(name, button) {
    run(button, `resume ${name}`, () => api(`/api/v1/templates/${seg(name)}/resume`, { method: 'POST', body: {}, signal }), () =>
      say(ui.messages, 'ok', `template ${name} deploys again`),
    );
  }

  async function addNodes(event) {
    event.preventDefault();
    const data = new FormData(ui.addForm);
    const count = Number(data.get('count'));
    const body = { template: data.get('template'), count, size: data.get('size') };
    if (!body.template) return say(ui.addMessages, 'error', 'create a template first: nodes are added from one');
    if (!Number.isInteger(count)) return say(ui.addMessages, 'error', `count "${data.get('count')}" is not a whole number`);
    const button = ui.addForm.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const added = await api('/api/v1/nodes', { method: 'POST', body, signal });
      say(ui.addMessages, 'ok', `added ${added.length} node(s) to ${body.template}: ${added.map((n) => n.name).join(', ')} (NotDeployed until the set is started)`);
      templates.refresh();
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.addMessages, 'error', messageOf(e));
    } finally {
      button.disabled = false;
    }
  }

  ui.page.addEventListener('click', (event) => {
    const t = event.target;
    const find = (sel) => t.closest(sel);
    let b;
    if (find('#new-template')) openForm(null);
    else if (find('#cancel-template')) closeForm();
    else if ((b = find('button[data-edit-template]'))) {
      const template = state.templates.find((x) => x.name === b.dataset.editTemplate);
      if (template) openForm(template);
    } else if ((b = find('button[data-validate-template]'))) validate(b.dataset.validateTemplate, b);
    else if ((b = find('button[data-set-action]'))) setAction(b.dataset.setAction, b.dataset.template, b);
    else if ((b = find('button[data-resume-template]'))) resume(b.dataset.resumeTemplate, b);
  });
  ui.form.addEventListener('submit', submitForm);
  ui.controls.get('provider').addEventListener('change', () => showProviderFields(ui));
  ui.addForm.addEventListener('submit', addNodes);
  ui.addForm.addEventListener('input', () => renderQuota(ui, state));
  ui.addForm.addEventListener('change', () => renderQuota(ui, state));

  templates.refresh();
  return {
    refresh: () => templates.refresh(),
    onChange(topics) {
      // Adding or removing nodes and proxies is announced as `templates` too; `nodes` alone
      // (measurements, tasks) changes nothing this page shows.
      if (topics.has('templates')) templates.refresh();
    },
  };
}

function skeleton() {
  const controls = new Map();
  const groups = new Map();
  for (const f of FIELDS) {
    const control = controlFor(f);
    controls.set(f.key, control);
    const row = labelled(f.label, control, f.help);
    if (f.kind === 'bool') row.classList.add('field-check');
    if (f.providers) row.dataset.providers = f.providers.join(' ');
    if (!groups.has(f.group)) groups.set(f.group, []);
    groups.get(f.group).push(row);
  }
  const formTitle = h('h2');
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create template');
  const formError = h('div', { id: 'template-error', class: 'messages', role: 'alert' });
  const form = h(
    'form',
    { id: 'template-form', class: 'panel form', hidden: true, novalidate: true },
    formTitle,
    [...groups].map(([legend, rows]) => h('fieldset', {}, h('legend', { text: legend }), h('div', { class: 'form-grid' }, rows))),
    formError,
    h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', id: 'cancel-template', class: 'quiet' }, 'Cancel')),
  );
  const list = table('template-table', ['Name', 'Provider', { text: 'Nodes', num: true }, 'Quota in use', 'Proxies', 'Availability', 'Status', { text: 'Actions', class: 'admin-only' }], 'node templates');
  const messages = h('div', { id: 'template-messages', class: 'messages', 'aria-live': 'polite' });
  const loadError = h('div', { class: 'messages' });
  const add = addNodesForm();
  const page = h(
    'section',
    { class: 'page page-templates' },
    h('div', { class: 'page-head' }, h('h1', { text: 'Templates' }), h('button', { type: 'button', id: 'new-template', class: 'primary admin-only' }, 'New template')),
    h('p', { class: 'viewer-note muted' }, 'Creating and changing templates, starting and stopping sets and adding nodes needs the Administrator role.'),
    messages,
    loadError,
    form,
    list.wrap,
    add.panel,
  );
  return { page, controls, form, formTitle, formError, submit, messages, loadError, tbody: list.tbody, ...add };
}

function controlFor(f) {
  const props = { name: f.key, id: `tf-${f.key}` };
  if (f.kind === 'select') return h('select', props, f.options.map((o) => h('option', { value: o }, o || '(unchanged / default)')));
  if (f.kind === 'lines') return h('textarea', { ...props, rows: '2' });
  if (f.kind === 'bool') return h('input', { ...props, type: 'checkbox' });
  if (f.kind === 'file') return h('input', { ...props, type: 'file', accept: '.pfx,.p12' });
  if (f.kind === 'password') return h('input', { ...props, type: 'password', autocomplete: 'new-password' });
  if (f.kind === 'int' || f.kind === 'float') return h('input', { ...props, type: 'text', inputmode: f.kind === 'int' ? 'numeric' : 'decimal' });
  return h('input', { ...props, type: 'text', autocomplete: 'off' });
}

function showProviderFields(ui) {
  const provider = ui.controls.get('provider').value;
  for (const row of ui.form.querySelectorAll('[data-providers]')) {
    row.hidden = !row.dataset.providers.split(' ').includes(provider);
  }
  for (const fs of ui.form.querySelectorAll('fieldset')) {
    fs.hidden = [...fs.querySelectorAll('.field')].every((r) => r.hidden);
  }
}

function addNodesForm() {
  const template = h('select', { name: 'template', id: 'add-template' });
  const count = h('input', { name: 'count', id: 'add-count', type: 'number', min: '1', max: '10000', value: '1' });
  const size = h('select', { name: 'size', id: 'add-size' }, SIZES.map(([s, c]) => h('option', { value: s, selected: s === 'Small' }, `${s} (${c} core${c > 1 ? 's' : ''})`)));
  const quota = h('p', { id: 'quota-info', class: 'quota-info', 'aria-live': 'polite' });
  const addMessages = h('div', { id: 'add-nodes-messages', class: 'messages', 'aria-live': 'polite' });
  const addForm = h(
    'form',
    { id: 'add-nodes-form', class: 'inline-form', novalidate: true },
    labelled('Template', template),
    labelled('Count', count),
    labelled('Size', size),
    h('button', { type: 'submit', class: 'primary' }, 'Add nodes'),
  );
  const panel = h('section', { class: 'panel admin-only' }, h('h2', { text: 'Add burst nodes' }), addForm, quota, addMessages);
  return { panel, addForm, addTemplate: template, addCount: count, addSize: size, quota, addMessages };
}

// ---- table ----

function renderTable(ui, list, rows) {
  ui.tbody.querySelector(':scope > tr.empty')?.remove();
  reconcile(ui.tbody, list, (t) => t.name, createRow, updateRow, rows);
  if (list.length === 0) {
    const text = mayAdminister() ? 'no templates yet: create one with New template' : 'no templates yet';
    ui.tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '8', text })));
  }
}

function createRow(t) {
  const name = t.name;
  return h(
    'tr',
    { 'data-template': name },
    h('td', {}, h('strong', { text: name }), h('div', { class: 'muted small description' }), h('div', { class: 'muted small overrides' })),
    h('td', { class: 'provider' }),
    h('td', { class: 'nodes num' }),
    h('td', { class: 'quota' }, h('span', { class: 'quota-text' }), h('span', { class: 'meter' }, h('span', { class: 'meter-fill' }))),
    h('td', { class: 'proxies' }),
    h('td', { class: 'availability' }),
    h('td', { class: 'status' }, badge('Ready'), h('div', { class: 'muted small paused-reason' })),
    h(
      'td',
      { class: 'actions admin-only' },
      h('button', { type: 'button', 'data-edit-template': name }, 'Edit'),
      h('button', { type: 'button', 'data-validate-template': name }, 'Validate'),
      h('button', { type: 'button', 'data-set-action': 'start', 'data-template': name }, 'Start set'),
      h('button', { type: 'button', 'data-set-action': 'stop', 'data-template': name }, 'Stop set'),
      h('button', { type: 'button', 'data-resume-template': name, hidden: true }, 'Resume'),
    ),
  );
}

function updateRow(tr, t) {
  const c = tr.children;
  setText(c[0].querySelector('.description'), t.description || '');
  c[0].querySelector('.overrides').replaceChildren(...overridesOf(t).map((line) => h('div', { text: line })));
  setText(c[1], t.provider);
  setText(c[2], String(t.nodes));
  const used = t.node_cores + t.proxies;
  setText(c[3].querySelector('.quota-text'), `${used} / ${t.quota_cores} cores`);
  c[3].title = `${t.node_cores} cores of nodes + ${t.proxies} of proxies, of a quota of ${t.quota_cores}`;
  const fill = c[3].querySelector('.meter-fill');
  fill.style.width = `${Math.min(100, (100 * used) / Math.max(1, t.quota_cores))}%`;
  fill.classList.toggle('over', used > t.quota_cores);
  c[4].replaceChildren(
    h('div', { text: `${t.proxies} per started set` }),
    ...(t.proxy_list ?? []).map((p) =>
      h('div', { class: 'proxy', title: p.url ?? p.cause ?? '' }, h('span', { class: 'small', text: `${p.name} ` }), badge(p.state), p.cause ? h('span', { class: 'small muted', text: ` ${p.cause}` }) : null),
    ),
  );
  const a = t.availability ?? { policy: 'manual' };
  setText(c[5], a.policy === 'schedule' ? `schedule: ${(a.windows ?? []).map(fmtWindow).join('; ') || 'no windows'} (${a.timezone})` : 'manual');
  setBadge(c[6].firstChild, t.paused ? 'Paused' : 'Ready');
  setText(c[6].querySelector('.paused-reason'), t.paused ?? '');
  c[7].querySelector('[data-resume-template]').hidden = !t.paused;
}

// ---- add nodes ----

function renderTemplateChoice(ui, list) {
  setOptions(ui.addTemplate, list.map((t) => [t.name, t.name]));
}

function renderQuota(ui, state) {
  const t = state.templates.find((x) => x.name === ui.addTemplate.value);
  if (!t) {
    setText(ui.quota, state.templates.length ? '' : 'no template to add nodes from yet');
    return;
  }
  const per = (SIZES.find(([s]) => s === ui.addSize.value) ?? ['', 1])[1];
  const count = Math.max(0, Math.floor(Number(ui.addCount.value) || 0));
  const used = t.node_cores + t.proxies;
  const after = used + count * per;
  const room = Math.max(0, Math.floor((t.quota_cores - used) / per));
  const over = after > t.quota_cores;
  setText(
    ui.quota,
    `Quota of ${t.name}: ${used} of ${t.quota_cores} cores counted (${t.node_cores} in ${t.nodes} node(s), ${t.proxies} for proxies). ` +
      `Adding ${count} × ${ui.addSize.value} = ${count * per} core(s) → ${after} of ${t.quota_cores}` +
      (over ? ` — over the quota (room for ${room} more of this size)` : ''),
  );
  ui.quota.classList.toggle('over', over);
}
