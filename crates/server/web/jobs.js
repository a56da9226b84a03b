// Jobs page: the queue with each job's progress, and a form to submit a sweep.
//
// A job's progress counts its ended tasks (Finished, Failed, Canceled) over its total, shown as
// a bar with a segment per state and as text, e.g. `37/100`. The command is typed as one line
// and split on whitespace; double or single quotes keep spaces inside one argument.

import { api, messageOf } from './api.js';
import { Resource } from './live.js';
import { h, reconcile, setText, setBadge, badge, say, hush, fmtTime, fmtMoney, table, labelled } from './dom.js';

const PRIORITIES = ['Lowest', 'BelowNormal', 'Normal', 'AboveNormal', 'Highest'];
const SEGMENTS = ['Finished', 'Failed', 'Canceled', 'Running'];

/** Splits a command line into arguments: whitespace separates, quotes group. */
export function splitCommand(line) {
  const args = [];
  let arg = '';
  let started = false;
  let quote = null;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = null;
      else arg += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      started = true;
    } else if (/\s/.test(ch)) {
      if (started) args.push(arg);
      arg = '';
      started = false;
    } else {
      arg += ch;
      started = true;
    }
  }
  if (quote) throw new Error(`the command has an unclosed ${quote === '"' ? 'double' : 'single'} quote`);
  if (started) args.push(arg);
  return args;
}

/** A command as one line, quoting arguments that need it. */
export function joinCommand(argv) {
  return (argv ?? []).map((a) => (a === '' || /[\s"']/.test(a) ? `"${a.replace(/"/g, '\\"')}"` : a)).join(' ');
}

/** Ended tasks and the total of a job. */
export function progressOf(job) {
  const t = job.tasks ?? {};
  const sum = (t.Queued ?? 0) + (t.Running ?? 0) + (t.Finished ?? 0) + (t.Failed ?? 0) + (t.Canceled ?? 0);
  const total = Math.max(job.total_tasks ?? 0, sum);
  return { done: (t.Finished ?? 0) + (t.Failed ?? 0) + (t.Canceled ?? 0), total, counts: t };
}

/** A progress bar with a segment per task state and the text `done/total`. */
export function progressBar() {
  return h(
    'div',
    { class: 'progress-cell' },
    h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0' }, SEGMENTS.map((s) => h('span', { class: `seg seg-${s.toLowerCase()}` }))),
    h('span', { class: 'progress-text' }),
    h('span', { class: 'progress-detail muted small' }),
  );
}

/** Brings a bar made by `progressBar` to `job`. */
export function updateProgress(el, job) {
  const { done, total, counts } = progressOf(job);
  const bar = el.querySelector('.progress');
  bar.setAttribute('aria-valuemax', String(total));
  bar.setAttribute('aria-valuenow', String(done));
  bar.setAttribute('aria-label', `${done} of ${total} tasks ended`);
  SEGMENTS.forEach((s, i) => {
    bar.children[i].style.width = total ? `${(100 * (counts[s] ?? 0)) / total}%` : '0%';
  });
  setText(el.querySelector('.progress-text'), `${done}/${total}`);
  const detail = SEGMENTS.filter((s) => counts[s]).map((s) => `${counts[s]} ${s.toLowerCase()}`);
  if (counts.Queued) detail.push(`${counts.Queued} queued`);
  setText(el.querySelector('.progress-detail'), detail.join(' · '));
  el.title = ['Queued', ...SEGMENTS].map((s) => `${s}: ${counts[s] ?? 0}`).join(', ');
}

export function mount(root, { signal }) {
  const ui = skeleton();
  root.append(ui.page);
  const rows = new Map();

  const jobs = new Resource(
    signal,
    (sig) => api('/api/v1/jobs', { signal: sig }),
    (list) => {
      hush(ui.loadError);
      renderJobs(ui, [...list].sort((a, b) => b.id - a.id), rows);
    },
    (e) => say(ui.loadError, 'error', messageOf(e)),
  );

  async function submit(event) {
    event.preventDefault();
    const data = new FormData(ui.form);
    const button = ui.form.querySelector('button[type=submit]');
    hush(ui.submitError);
    hush(ui.submitResult);
    let body;
    try {
      body = submission(data);
    } catch (e) {
      say(ui.submitError, 'error', e.message);
      return;
    }
    button.disabled = true;
    try {
      const reply = await api('/api/v1/jobs', { method: 'POST', body, signal });
      say(ui.submitResult, 'ok', h('span', {}, 'submitted job ', h('a', { href: `#/jobs/${reply.id}`, text: String(reply.id) })));
      jobs.refresh();
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.submitError, 'error', messageOf(e));
    } finally {
      button.disabled = false;
    }
  }

  ui.form.addEventListener('submit', submit);
  jobs.refresh();
  return {
    refresh: () => jobs.refresh(),
    onChange(topics) {
      if (topics.has('jobs')) jobs.refresh();
    },
  };
}

/** The body of POST /api/v1/jobs from the form; throws a message for a bad value. */
function submission(data) {
  const line = String(data.get('command') ?? '');
  const command = splitCommand(line);
  if (command.length === 0) throw new Error('no command to run (type the program and its arguments, e.g. echo "index *")');
  const body = { command };
  const text = (k) => String(data.get(k) ?? '').trim();
  if (text('name')) body.name = text('name');
  if (text('sweep')) body.sweep = text('sweep');
  if (text('priority')) body.priority = text('priority');
  for (const [key, label] of [['cores_per_task', 'cores per task'], ['retries', 'retries']]) {
    if (!text(key)) continue;
    const n = Number(text(key));
    if (!Number.isInteger(n) || n < 0) throw new Error(`${label} "${text(key)}" is not a whole number`);
    body[key] = n;
  }
  return body;
}

function wide(el) {
  el.classList.add('wide');
  return el;
}

function skeleton() {
  const submitError = h('div', { id: 'submit-error', class: 'messages', role: 'alert' });
  const submitResult = h('div', { id: 'submit-result', class: 'messages', 'aria-live': 'polite' });
  const form = h(
    'form',
    { id: 'submit-form', class: 'panel form', novalidate: true },
    h('h2', { text: 'Submit a job' }),
    h(
      'div',
      { class: 'form-grid' },
      wide(labelled('Command', h('input', { name: 'command', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'echo "index *"' }), 'the program and its arguments; * is replaced by the sweep index; quotes group words')),
      labelled('Sweep', h('input', { name: 'sweep', type: 'text', autocomplete: 'off', placeholder: '1-100' }), 'START-END[:STEP]; empty for one task'),
      labelled('Name', h('input', { name: 'name', type: 'text', autocomplete: 'off' }), 'default: the program\'s name'),
      labelled('Cores per task', h('input', { name: 'cores_per_task', type: 'text', inputmode: 'numeric', placeholder: '1' })),
      labelled('Priority', h('select', { name: 'priority' }, h('option', { value: '' }, 'Normal (default)'), PRIORITIES.map((p) => h('option', { value: p }, p)))),
      labelled('Retries', h('input', { name: 'retries', type: 'text', inputmode: 'numeric', placeholder: '3' }), 'times a task is run again when its node is lost'),
    ),
    submitError,
    submitResult,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Submit')),
  );
  const list = table('job-table', [{ text: 'Job', num: true }, 'Name', 'Owner', 'State', 'Priority', 'Progress', 'Submitted', { text: 'Cost', num: true }], 'jobs');
  const loadError = h('div', { class: 'messages' });
  const page = h('section', { class: 'page page-jobs' }, h('div', { class: 'page-head' }, h('h1', { text: 'Jobs' })), form, loadError, list.wrap);
  return { page, form, submitError, submitResult, loadError, tbody: list.tbody };
}

function renderJobs(ui, list, rows) {
  ui.tbody.querySelector(':scope > tr.empty')?.remove();
  reconcile(ui.tbody, list, (j) => j.id, createRow, updateRow, rows);
  if (list.length === 0) ui.tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '8', text: 'no jobs yet: submit one below' })));
}

function createRow(j) {
  const id = String(j.id);
  return h(
    'tr',
    { 'data-job': id },
    h('td', { class: 'num' }, h('a', { href: `#/jobs/${id}`, 'data-job-link': id, text: id })),
    h('td', { class: 'name' }),
    h('td', { class: 'owner' }),
    h('td', { class: 'state' }, badge(j.state)),
    h('td', { class: 'priority' }),
    h('td', { class: 'progress-col' }, progressBar()),
    h('td', { class: 'submitted' }),
    h('td', { class: 'cost num' }),
  );
}

function updateRow(tr, j) {
  const c = tr.children;
  setText(c[1], j.name);
  setText(c[2], j.owner);
  setBadge(c[3].firstChild, j.state);
  setText(c[4], j.priority);
  updateProgress(c[5].firstChild, j);
  setText(c[6], fmtTime(j.submitted_at));
  setText(c[7], fmtMoney(j.cost));
}
