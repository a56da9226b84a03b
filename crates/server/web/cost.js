// Cost page: what each set (template) and each job cost over a chosen period, as tables (GET
// /api/v1/cost?since=MS) and as a chart of cumulative cost over time (GET
// /api/v1/cost/series?since=MS&until=MS&points=N). The chart shows one currency, the one most
// of the cost is in, every set, and the jobs that cost the most.

import { api, query, messageOf } from './api.js';
import { Resource } from './live.js';
import { h, s, say, hush, setText, fmtTime, fmtMoney, fmtNumber, table, labelled } from './dom.js';
import { drawLineChart, swatch } from './chart.js';

const PERIODS = [
  ['1h', 'Last hour', 3600_000, 60],
  ['24h', 'Last 24 hours', 24 * 3600_000, 96],
  ['7d', 'Last 7 days', 7 * 24 * 3600_000, 168],
];
const MOST_JOBS = 6;
const PERIOD_KEY = 'thunderhead.cost.period';

export function mount(root, { signal }) {
  const saved = localStorage.getItem(PERIOD_KEY);
  const state = { period: PERIODS.some(([k]) => k === saved) ? saved : '24h', series: null };
  const ui = skeleton(state);
  root.append(ui.page);

  const period = () => {
    const [, , span, points] = PERIODS.find(([k]) => k === state.period);
    const until = Date.now();
    return { since: until - span, until, points };
  };
  const report = new Resource(
    signal,
    (sig) => api(`/api/v1/cost${query({ since: period().since })}`, { signal: sig }),
    (r) => {
      hush(ui.reportError);
      renderReport(ui, r);
    },
    (e) => say(ui.reportError, 'error', messageOf(e)),
    { minGapMs: 2000 },
  );
  const series = new Resource(
    signal,
    (sig) => api(`/api/v1/cost/series${query(period())}`, { signal: sig }),
    (data) => {
      hush(ui.chartError);
      state.series = data;
      renderChart(ui, data);
    },
    (e) => say(ui.chartError, 'error', messageOf(e)),
    { minGapMs: 2000 },
  );

  ui.period.addEventListener('change', () => {
    state.period = ui.period.value;
    localStorage.setItem(PERIOD_KEY, state.period);
    report.refresh();
    series.refresh();
  });
  let frame = 0;
  globalThis.addEventListener(
    'resize',
    () => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => state.series && renderChart(ui, state.series));
    },
    { signal },
  );

  report.refresh();
  series.refresh();
  return {
    refresh() {
      report.refresh();
      series.refresh();
    },
    onChange(topics) {
      if (topics.has('cost') || topics.has('jobs')) {
        report.refresh();
        series.refresh();
      }
    },
  };
}

function skeleton(state) {
  const period = h('select', { id: 'cost-period' }, PERIODS.map(([value, text]) => h('option', { value, selected: value === state.period }, text)));
  const total = h('p', { id: 'cost-total', class: 'total' });
  const svg = s('svg', { id: 'cost-chart', class: 'chart', role: 'img', 'aria-label': 'cumulative cost over time per set and per job' });
  const legend = h('ul', { class: 'legend', 'aria-label': 'chart legend' });
  const note = h('p', { class: 'muted small' });
  const chartError = h('div', { class: 'messages' });
  const reportError = h('div', { class: 'messages' });
  const sets = table('cost-sets', ['Set', { text: 'Node-hours', num: true }, { text: 'Proxy-hours', num: true }, { text: 'Cost', num: true }], 'cost per set');
  const jobs = table('cost-jobs', [{ text: 'Job', num: true }, 'Name', { text: 'Core-hours', num: true }, { text: 'Cost', num: true }], 'cost per job');
  const page = h(
    'section',
    { class: 'page page-cost' },
    h('div', { class: 'page-head' }, h('h1', { text: 'Cost' }), labelled('Period', period)),
    reportError,
    total,
    h('section', { class: 'panel' }, h('h2', { text: 'Cost over time' }), chartError, svg, legend, note),
    h('div', { class: 'columns' }, h('section', { class: 'panel' }, h('h2', { text: 'Sets' }), sets.wrap), h('section', { class: 'panel' }, h('h2', { text: 'Jobs' }), jobs.wrap)),
  );
  return { page, period, total, svg, legend, note, chartError, reportError, sets: sets.tbody, jobs: jobs.tbody };
}

function renderReport(ui, r) {
  setText(ui.total, `Total from ${fmtTime(r.since)} to ${fmtTime(r.until)}: ${fmtMoney(r.total)}`);
  ui.sets.replaceChildren(
    ...(r.sets.length
      ? r.sets.map((x) =>
          h('tr', { 'data-template': x.template }, h('td', { text: x.template }), h('td', { class: 'num', text: fmtNumber(x.node_hours) }), h('td', { class: 'num', text: fmtNumber(x.proxy_hours) }), h('td', { class: 'num', text: fmtMoney(x.cost) })),
        )
      : [h('tr', { class: 'empty' }, h('td', { colspan: '4', text: 'no set ran in this period' }))]),
  );
  ui.jobs.replaceChildren(
    ...(r.jobs.length
      ? [...r.jobs].sort((a, b) => b.id - a.id).map((j) =>
          h(
            'tr',
            { 'data-job': String(j.id) },
            h('td', { class: 'num' }, h('a', { href: `#/jobs/${j.id}`, text: String(j.id) })),
            h('td', { text: j.name }),
            h('td', { class: 'num', text: fmtNumber(j.core_hours, 3) }),
            h('td', { class: 'num', text: fmtMoney(j.cost) }),
          ),
        )
      : [h('tr', { class: 'empty' }, h('td', { colspan: '4', text: 'no job ran in this period' }))]),
  );
}

/** An amount of money, with more decimals when it is small. */
function amount(v) {
  return v !== 0 && Math.abs(v) < 0.1 ? v.toFixed(4) : v.toFixed(2);
}

/** The currency most of the series' final cost is in. */
function mainCurrency(all) {
  const sums = new Map();
  for (const x of all) sums.set(x.currency, (sums.get(x.currency) ?? 0) + (x.values.at(-1) ?? 0));
  return [...sums].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'USD';
}

function renderChart(ui, data) {
  const sets = data.sets ?? [];
  const jobs = data.jobs ?? [];
  const currency = mainCurrency([...sets, ...jobs]);
  const mine = (x) => x.currency === currency;
  const shownJobs = jobs.filter(mine).filter((j) => (j.values.at(-1) ?? 0) > 0).sort((a, b) => b.values.at(-1) - a.values.at(-1)).slice(0, MOST_JOBS);
  const series = [
    ...sets.filter(mine).map((x) => ({ label: `set ${x.template}`, values: x.values })),
    ...shownJobs.map((j) => ({ label: `job ${j.id} ${j.name}`, values: j.values })),
  ];
  drawLineChart(ui.svg, { times: data.times ?? [], series, unit: currency, empty: 'nothing cost anything in this period' });
  ui.legend.replaceChildren(
    ...series.map((se, i) => h('li', {}, swatch(i), h('span', { text: `${se.label}: ${amount(se.values.at(-1) ?? 0)} ${currency}` }))),
  );
  const notes = [];
  const otherJobs = jobs.filter(mine).length - shownJobs.length;
  if (otherJobs > 0) notes.push(`${otherJobs} other job(s) not drawn (the ${MOST_JOBS} most costly are; see the table)`);
  const others = [...sets, ...jobs].filter((x) => !mine(x)).length;
  if (others > 0) notes.push(`${others} series in other currencies not drawn`);
  setText(ui.note, notes.join('; '));
}
