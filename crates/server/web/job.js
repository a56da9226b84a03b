// Job details page (#/jobs/ID): the job's fields and progress, cancel and requeue, its tasks a
// page at a time (GET /api/v1/jobs/ID/tasks?limit=200&after=INDEX), and the output of the task
// clicked. The task list holds the tasks that have started; a sweep's queued indices appear as
// they start.

import { api, seg, query, messageOf, mayManageJob } from './api.js';
import { Resource } from './live.js';
import { h, reconcile, setText, setBadge, badge, say, hush, fmtTime, fmtSpan, fmtMoney, fmtNumber, fields, table, labelled } from './dom.js';
import { progressBar, updateProgress, joinCommand } from './jobs.js';

const PAGE_SIZE = 200;
const TASK_STATES = ['Queued', 'Running', 'Finished', 'Failed', 'Canceled'];
const ENDED = new Set(['Finished', 'Failed', 'Canceled']);

/** What a job runs, as one line. */
function specText(spec) {
  if (spec?.sweep) {
    const r = spec.sweep.range;
    const step = r.step && r.step !== 1 ? `:${r.step}` : '';
    return `sweep ${r.start}-${r.end}${step}: ${joinCommand(spec.sweep.command)}`;
  }
  if (spec?.tasks) return `${spec.tasks.count} listed task(s)`;
  return JSON.stringify(spec);
}

export function mount(root, { signal, params }) {
  const id = params.id;
  const state = { job: null, after: null, history: [], filter: '', task: null, taskState: null };
  const ui = skeleton(id);
  root.append(ui.page);
  const rows = new Map();

  const job = new Resource(
    signal,
    (sig) => api(`/api/v1/jobs/${seg(id)}`, { signal: sig }),
    (j) => {
      state.job = j;
      hush(ui.loadError);
      renderJob(ui, j);
    },
    (e) => say(ui.loadError, 'error', messageOf(e)),
  );
  const tasks = new Resource(
    signal,
    async (sig) => {
      const path = `/api/v1/jobs/${seg(id)}/tasks${query({ limit: PAGE_SIZE, after: state.after, state: state.filter })}`;
      return { asked: [state.after, state.filter], list: await api(path, { signal: sig }) };
    },
    ({ asked, list }) => {
      // a late answer for a page no longer shown is dropped: the fetch that follows brings it
      if (asked[0] === state.after && asked[1] === state.filter) renderTasks(ui, state, list, rows);
    },
    (e) => say(ui.taskError, 'error', messageOf(e)),
  );
  const output = new Resource(
    signal,
    async (sig) => {
      const index = state.task;
      return { index, answer: await api(`/api/v1/jobs/${seg(id)}/tasks/${seg(index)}`, { signal: sig }) };
    },
    ({ index, answer }) => {
      if (index !== state.task) return; // a late answer about a task no longer shown
      state.taskState = answer.task?.state ?? answer.output?.state ?? null;
      renderOutput(ui, answer);
    },
    (e) => say(ui.outputError, 'error', messageOf(e)),
  );

  async function jobAction(action, button) {
    button.disabled = true;
    try {
      // Both answer with the job as it now is.
      state.job = await api(`/api/v1/jobs/${seg(id)}/${action}`, { method: 'POST', body: {}, signal });
      say(ui.messages, 'ok', action === 'cancel' ? `job ${id} canceled` : `job ${id} requeued`);
    } catch (e) {
      if (e.name !== 'AbortError') say(ui.messages, 'error', messageOf(e));
      job.refresh();
    } finally {
      if (state.job) renderJob(ui, state.job);
      else button.disabled = false;
    }
    tasks.refresh();
  }

  function showTask(index) {
    state.task = index;
    state.taskState = null;
    for (const [key, tr] of rows) tr.classList.toggle('selected', String(key) === String(index));
    ui.outputPanel.hidden = false;
    setText(ui.outputTitle, `Task ${id}.${index}`);
    hush(ui.outputError);
    output.refresh();
  }

  function page(after, history) {
    state.after = after;
    state.history = history;
    tasks.refresh();
  }

  ui.page.addEventListener('click', (event) => {
    const t = event.target;
    if (t.closest('#job-cancel')) return void jobAction('cancel', ui.cancel);
    if (t.closest('#job-requeue')) return void jobAction('requeue', ui.requeue);
    if (t.closest('#task-next')) return void page(state.last, [...state.history, state.after]);
    if (t.closest('#task-prev')) return void page(state.history.at(-1) ?? null, state.history.slice(0, -1));
    if (t.closest('#task-first')) return void page(null, []);
    const row = t.closest('tr[data-task]');
    if (row && !t.closest('a')) showTask(row.dataset.task);
  });
  ui.filter.addEventListener('change', () => {
    state.filter = ui.filter.value;
    page(null, []);
  });

  job.refresh();
  tasks.refresh();
  return {
    refresh() {
      job.refresh();
      tasks.refresh();
      if (state.task !== null) output.refresh();
    },
    onChange(topics) {
      if (!topics.has('jobs')) return;
      job.refresh();
      tasks.refresh();
      if (state.task !== null && !ENDED.has(state.taskState)) output.refresh();
    },
  };
}

function skeleton(id) {
  const title = h('h1', { text: `Job ${id}` });
  const jobState = h('span', { id: 'job-state', class: 'badge' }, '…');
  // Shown once the job is known and the user may act on it (renderJob).
  const cancel = h('button', { type: 'button', id: 'job-cancel', hidden: true }, 'Cancel job');
  const requeue = h('button', { type: 'button', id: 'job-requeue', hidden: true }, 'Requeue');
  const messages = h('div', { id: 'job-messages', class: 'messages', 'aria-live': 'polite' });
  const loadError = h('div', { class: 'messages' });
  const progress = progressBar();
  const info = h('div');
  const details = h(
    'section',
    { id: 'job-details', class: 'panel' },
    h('div', { class: 'job-head' }, h('span', { class: 'muted', text: 'State ' }), jobState, progress, h('span', { class: 'spacer' }), cancel, requeue),
    messages,
    loadError,
    info,
  );
  const filter = h('select', { id: 'task-state' }, h('option', { value: '' }, 'any state'), TASK_STATES.map((s) => h('option', { value: s }, s)));
  const pageInfo = h('span', { id: 'task-page', class: 'muted' });
  const list = table('task-table', [{ text: 'Task', num: true }, 'State', { text: 'Attempt', num: true }, 'Node', { text: 'Exit code', num: true }, 'Started', 'Ended', { text: 'Took', num: true }, 'Message'], 'tasks of the job');
  const taskError = h('div', { class: 'messages' });
  const tasksPanel = h(
    'section',
    { class: 'panel' },
    h('h2', { text: 'Tasks' }),
    h(
      'div',
      { class: 'toolbar' },
      labelled('State', filter),
      h('button', { type: 'button', id: 'task-first' }, 'First page'),
      h('button', { type: 'button', id: 'task-prev' }, 'Previous'),
      h('button', { type: 'button', id: 'task-next' }, 'Next'),
      pageInfo,
    ),
    taskError,
    list.wrap,
    h('p', { class: 'muted small', text: 'Tasks are listed once they start; click a task to see its output.' }),
  );
  const outputTitle = h('h2');
  const outputInfo = h('p', { class: 'muted' });
  const outputError = h('div', { class: 'messages' });
  const stdout = h('pre', { id: 'task-output', class: 'output' });
  const stderr = h('pre', { id: 'task-stderr', class: 'output' });
  const outputPanel = h(
    'section',
    { class: 'panel', id: 'task-output-panel', hidden: true },
    outputTitle,
    outputInfo,
    outputError,
    h('h3', { text: 'Standard output' }),
    stdout,
    h('h3', { text: 'Standard error' }),
    stderr,
  );
  const page = h(
    'section',
    { class: 'page page-job' },
    h('div', { class: 'page-head' }, h('a', { href: '#/jobs', class: 'back' }, '← Jobs'), title),
    details,
    h('div', { class: 'split split-output' }, tasksPanel, outputPanel),
  );
  return {
    page, title, jobState, cancel, requeue, messages, loadError, progress, info, filter, pageInfo, tbody: list.tbody, taskError,
    prev: tasksPanel.querySelector('#task-prev'), next: tasksPanel.querySelector('#task-next'), first: tasksPanel.querySelector('#task-first'),
    outputPanel, outputTitle, outputInfo, outputError, stdout, stderr,
  };
}

function renderJob(ui, j) {
  setText(ui.title, `Job ${j.id}: ${j.name}`);
  setBadge(ui.jobState, j.state);
  updateProgress(ui.progress, j);
  // A User sees the buttons only on their own jobs; the head node refuses the rest anyway.
  ui.cancel.hidden = ui.requeue.hidden = !mayManageJob(j.owner);
  ui.cancel.disabled = !(j.state === 'Queued' || j.state === 'Running');
  ui.requeue.disabled = !(j.state === 'Failed' || j.state === 'Canceled');
  ui.cancel.title = ui.cancel.disabled ? `a ${j.state} job has nothing to cancel` : '';
  ui.requeue.title = ui.requeue.disabled ? 'only Failed or Canceled jobs are requeued' : '';
  ui.info.replaceChildren(
    fields([
      ['Owner', j.owner],
      ['Priority', j.priority],
      ['Runs', specText(j.spec)],
      ['Cores per task', String(j.cores_per_task)],
      ['Retries', String(j.retries)],
      ['Tasks', String(j.total_tasks)],
      ['Submitted', fmtTime(j.submitted_at)],
      ['Started', fmtTime(j.started_at)],
      ['Ended', fmtTime(j.ended_at)],
      ['Core-hours', fmtNumber(j.core_hours, 3)],
      ['Cost', fmtMoney(j.cost)],
    ]),
  );
  ui.info.firstChild.classList.add('fields-wide');
}

function renderTasks(ui, state, list, rows) {
  hush(ui.taskError);
  state.last = list.length ? list[list.length - 1].index : state.after;
  ui.tbody.querySelector(':scope > tr.empty')?.remove();
  reconcile(ui.tbody, list, (t) => t.index, createTaskRow, (tr, t) => updateTaskRow(tr, t, state), rows);
  if (list.length === 0) ui.tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: '9', text: state.after === null ? 'no task has started yet' : 'no more tasks' })));
  const pageNo = state.history.length + 1;
  setText(ui.pageInfo, list.length ? `page ${pageNo}: tasks ${list[0].index} to ${list[list.length - 1].index}` : `page ${pageNo}`);
  ui.prev.disabled = state.after === null;
  ui.first.disabled = state.after === null;
  ui.next.disabled = list.length < PAGE_SIZE;
}

function createTaskRow(t) {
  return h(
    'tr',
    { 'data-task': String(t.index), class: 'clickable' },
    h('td', { class: 'num' }, h('button', { type: 'button', class: 'link', text: String(t.index), 'aria-label': `output of task ${t.index}` })),
    h('td', { class: 'state' }, badge(t.state)),
    h('td', { class: 'num' }),
    h('td', { class: 'node' }),
    h('td', { class: 'num' }),
    h('td', {}),
    h('td', {}),
    h('td', { class: 'num' }),
    h('td', { class: 'message' }),
  );
}

function updateTaskRow(tr, t, state) {
  const c = tr.children;
  tr.classList.toggle('selected', String(state.task) === String(t.index));
  setBadge(c[1].firstChild, t.state);
  setText(c[2], String(t.attempt));
  setText(c[3], t.node ?? '—');
  setText(c[4], t.exit_code ?? '—');
  setText(c[5], fmtTime(t.started_at));
  setText(c[6], fmtTime(t.ended_at));
  setText(c[7], t.started_at && t.ended_at ? fmtSpan(t.ended_at - t.started_at) : '—');
  setText(c[8], t.message ?? '');
}

function renderOutput(ui, answer) {
  const t = answer.task ?? {};
  const o = answer.output ?? {};
  hush(ui.outputError);
  setText(
    ui.outputInfo,
    `${o.state ?? t.state}, exit code ${o.exit_code ?? t.exit_code ?? '—'}, attempt ${t.attempt ?? '—'}, node ${t.node ?? '—'}` +
      (o.stdout || o.stderr ? '' : ' — no output captured'),
  );
  setText(ui.stdout, o.stdout ?? '');
  setText(ui.stderr, o.stderr ?? '');
  ui.stdout.classList.toggle('empty-output', !o.stdout);
  ui.stderr.classList.toggle('empty-output', !o.stderr);
}
