// Packages page: the latest version of every package, grouped by the template that installs it
// (a package of no template goes to every template's nodes), and an upload form that sends a
// file as the package's next version (PUT /api/v1/packages/NAME?file=FILE&template=T, the raw
// file as the body, as `thunderhead package upload` does).

import { api, seg, query, messageOf } from './api.js';
import { Resource } from './live.js';
import { h, say, hush, fmtTime, fmtBytes, table, labelled, setOptions } from './dom.js';

const ALL = 'All templates';

export function mount(root, { signal }) {
  const ui = skeleton();
  root.append(ui.page);

  const packages = new Resource(
    signal,
    (sig) => api('/api/v1/packages', { signal: sig }),
    (list) => {
      hush(ui.loadError);
      renderPackages(ui, list);
    },
    (e) => say(ui.loadError, 'error', messageOf(e)),
  );
  const templates = new Resource(
    signal,
    (sig) => api('/api/v1/templates', { signal: sig }),
    (list) => renderTemplateChoice(ui, list),
    () => {},
  );

  async function upload(event) {
    event.preventDefault();
    const name = ui.name.value.trim();
    const file = ui.file.files[0];
    if (!file) return say(ui.uploadMessages, 'error', 'choose a file to upload (a .tar.gz, .zip or a single program)');
    const button = ui.form.querySelector('button[type=submit]');
    button.disabled = true;
    say(ui.uploadMessages, 'info', `uploading ${file.name}…`);
    try {
      const path = `/api/v1/packages/${seg(name || file.name.replace(/\..*$/, ''))}${query({ file: file.name, template: ui.template.value })}`;
      const p = await api(path, { method: 'PUT', raw: file, signal });
      say(ui.uploadMessages, 'ok', `uploaded ${p.name} version ${p.version} (${fmtBytes(p.size)})`);
      packages.refresh();
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.uploadMessages, 'error', messageOf(e));
    } finally {
      button.disabled = false;
    }
  }

  ui.form.addEventListener('submit', upload);
  packages.refresh();
  templates.refresh();
  return {
    refresh() {
      packages.refresh();
      templates.refresh();
    },
    onChange(topics) {
      if (topics.has('packages')) packages.refresh();
      if (topics.has('templates')) templates.refresh();
    },
  };
}

function skeleton() {
  const list = table('package-table', ['Package', { text: 'Version', num: true }, 'File', { text: 'Size', num: true }, 'SHA-256', 'Uploaded'], 'packages');
  const name = h('input', { name: 'name', type: 'text', autocomplete: 'off', placeholder: 'default: the file\'s name' });
  const template = h('select', { name: 'template' }, h('option', { value: '' }, ALL));
  const file = h('input', { name: 'file', type: 'file' });
  const uploadMessages = h('div', { id: 'upload-messages', class: 'messages', 'aria-live': 'polite' });
  const form = h(
    'form',
    { id: 'upload-form', class: 'inline-form', novalidate: true },
    labelled('Name', name),
    labelled('For', template),
    labelled('File', file),
    h('button', { type: 'submit', class: 'primary' }, 'Upload'),
  );
  const loadError = h('div', { class: 'messages' });
  const page = h(
    'section',
    { class: 'page page-packages' },
    h('div', { class: 'page-head' }, h('h1', { text: 'Packages' })),
    h('p', { class: 'viewer-note muted' }, 'Uploading packages needs the Administrator role.'),
    loadError,
    list.wrap,
    h('section', { class: 'panel admin-only' }, h('h2', { text: 'Upload a package' }), form, uploadMessages),
  );
  return { page, tbody: list.tbody, form, name, template, file, uploadMessages, loadError };
}

function renderPackages(ui, list) {
  if (list.length === 0) {
    ui.tbody.replaceChildren(h('tr', { class: 'empty' }, h('td', { colspan: '6', text: 'no packages yet' })));
    return;
  }
  const groups = new Map();
  for (const p of list) {
    const key = p.template ?? '';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  const keys = [...groups.keys()].sort((a, b) => (a !== '') - (b !== '') || a.localeCompare(b));
  const rows = [];
  for (const key of keys) {
    rows.push(h('tr', { class: 'group-row', 'data-group': key || 'all' }, h('th', { colspan: '6', scope: 'colgroup', text: key ? `Template ${key}` : `${ALL} (installed on every node)` })));
    for (const p of groups.get(key).sort((a, b) => a.name.localeCompare(b.name))) rows.push(packageRow(p));
  }
  ui.tbody.replaceChildren(...rows);
}

function packageRow(p) {
  return h(
    'tr',
    { 'data-package': p.name, 'data-template': p.template ?? '' },
    h('td', {}, h('strong', { text: p.name })),
    h('td', { class: 'num', text: `${p.version} (of ${p.versions})` }),
    h('td', { text: p.file_name }),
    h('td', { class: 'num', text: fmtBytes(p.size) }),
    h('td', { class: 'mono', title: p.sha256, text: p.sha256.slice(0, 12) }),
    h('td', { text: fmtTime(p.uploaded_at) }),
  );
}

function renderTemplateChoice(ui, list) {
  setOptions(ui.template, [['', ALL], ...list.map((t) => [t.name, `Template ${t.name}`])]);
}
