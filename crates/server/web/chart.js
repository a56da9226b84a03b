// A line chart drawn by hand in SVG: time on the x axis, a value on the y axis, one line per
// series. Series differ by colour, by dash pattern and by marker shape, so they stay apart in
// grey print and for readers who do not tell the colours apart. The chart is drawn at the
// SVG's own width in pixels, so its text keeps a readable size on a phone.

import { s } from './dom.js';

const HEIGHT = 300;
const MARGIN = { left: 64, right: 20, top: 14, bottom: 46 };
const PALETTE = ['#1f6feb', '#d1495b', '#2a9d8f', '#e09f3e', '#7b4fd0', '#5c6b7a', '#c2185b', '#3f8f2f'];
const DASHES = ['', '7 4', '2 3', '10 3 2 3'];
const MARKERS = ['circle', 'square', 'triangle', 'diamond', 'cross'];

/** How series `i` is drawn: colour, dash pattern, marker. */
export function styleOf(i) {
  return { colour: PALETTE[i % PALETTE.length], dash: DASHES[i % DASHES.length], marker: MARKERS[i % MARKERS.length] };
}

/** A marker of `shape` centred on (x, y). */
function marker(shape, x, y, colour) {
  const r = 3.5;
  const common = { fill: shape === 'cross' ? 'none' : colour, stroke: colour, 'stroke-width': shape === 'cross' ? '2' : '1' };
  switch (shape) {
    case 'square':
      return s('rect', { ...common, x: x - r, y: y - r, width: 2 * r, height: 2 * r });
    case 'triangle':
      return s('path', { ...common, d: `M${x} ${y - r - 1}L${x + r + 0.5} ${y + r}L${x - r - 0.5} ${y + r}Z` });
    case 'diamond':
      return s('path', { ...common, d: `M${x} ${y - r - 1}L${x + r + 1} ${y}L${x} ${y + r + 1}L${x - r - 1} ${y}Z` });
    case 'cross':
      return s('path', { ...common, d: `M${x - r} ${y - r}L${x + r} ${y + r}M${x - r} ${y + r}L${x + r} ${y - r}` });
    default:
      return s('circle', { ...common, cx: x, cy: y, r });
  }
}

/** A small picture of series `i`'s line and marker, for a legend. */
export function swatch(i) {
  const st = styleOf(i);
  return s(
    'svg',
    { class: 'swatch', width: '34', height: '12', viewBox: '0 0 34 12', 'aria-hidden': 'true' },
    s('line', { x1: '1', y1: '6', x2: '33', y2: '6', stroke: st.colour, 'stroke-width': '2', 'stroke-dasharray': st.dash || null }),
    marker(st.marker, 17, 6, st.colour),
  );
}

/** A round upper bound for the y axis and its step: 0.37 → 0.4 by 0.1. */
function niceScale(max) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

function timeFormat(spanMs) {
  if (spanMs <= 36 * 3600_000) return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  return new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', hour: '2-digit' });
}

/**
 * Draws into `svg`, replacing what it showed: `times` (ms since the epoch), `series`
 * (`[{label, values}]`, one value per time), `unit` (the y axis's unit), `empty` (what to say
 * when there is nothing to draw).
 */
export function drawLineChart(svg, { times, series, unit, empty }) {
  const width = Math.max(300, Math.round(svg.getBoundingClientRect().width) || 760);
  svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute('height', String(HEIGHT));
  const parts = [s('title', { text: `cost over time, ${unit}` })];
  if (times.length < 2 || series.length === 0) {
    parts.push(s('text', { x: width / 2, y: HEIGHT / 2, 'text-anchor': 'middle', class: 'chart-empty', text: empty }));
    svg.replaceChildren(...parts);
    return;
  }
  const [x0, x1] = [times[0], times[times.length - 1]];
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const max = Math.max(0, ...series.flatMap((se) => se.values.filter(Number.isFinite)));
  const { top, step } = niceScale(max);
  const sx = (t) => MARGIN.left + ((t - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (v) => MARGIN.top + plotH - (v / top) * plotH;
  parts.push(...yAxis(top, step, sx, sy, x0, x1, unit), ...xAxis(x0, x1, sx, sy, width));
  series.forEach((se, i) => parts.push(line(se, i, times, sx, sy)));
  svg.replaceChildren(...parts);
}

function yAxis(top, step, sx, sy, x0, x1, unit) {
  const out = [];
  const decimals = (String(Number(step.toPrecision(6))).split('.')[1] ?? '').length;
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = sy(v);
    out.push(s('line', { class: 'grid-line', x1: sx(x0), x2: sx(x1), y1: y, y2: y }));
    out.push(s('text', { class: 'tick', x: MARGIN.left - 6, y: y + 4, 'text-anchor': 'end', text: v.toFixed(decimals) }));
  }
  const midY = MARGIN.top + (HEIGHT - MARGIN.top - MARGIN.bottom) / 2;
  out.push(s('text', { class: 'axis-label', x: 14, y: midY, transform: `rotate(-90 14 ${midY})`, 'text-anchor': 'middle', text: `cost (${unit})` }));
  return out;
}

function xAxis(x0, x1, sx, sy, width) {
  const out = [s('line', { class: 'axis', x1: sx(x0), x2: sx(x1), y1: sy(0), y2: sy(0) })];
  const fmt = timeFormat(x1 - x0);
  const ticks = width < 500 ? 2 : width < 800 ? 4 : 6;
  for (let i = 0; i <= ticks; i++) {
    const t = x0 + ((x1 - x0) * i) / ticks;
    const x = sx(t);
    const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
    out.push(s('line', { class: 'axis', x1: x, x2: x, y1: sy(0), y2: sy(0) + 4 }));
    out.push(s('text', { class: 'tick', x, y: sy(0) + 17, 'text-anchor': anchor, text: fmt.format(new Date(t)) }));
  }
  out.push(s('text', { class: 'axis-label', x: MARGIN.left + (width - MARGIN.left - MARGIN.right) / 2, y: HEIGHT - 6, 'text-anchor': 'middle', text: 'time' }));
  return out;
}

function line(se, i, times, sx, sy) {
  const st = styleOf(i);
  const points = [];
  se.values.forEach((v, k) => {
    if (Number.isFinite(v) && k < times.length) points.push([sx(times[k]), sy(v)]);
  });
  const d = points.map(([x, y], k) => `${k ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`).join('');
  const g = s('g', { class: 'series' }, s('title', { text: se.label }));
  g.append(s('path', { d, fill: 'none', stroke: st.colour, 'stroke-width': '2', 'stroke-dasharray': st.dash || null, 'stroke-linejoin': 'round' }));
  const every = Math.max(1, Math.ceil(points.length / 10));
  const offset = i % every;
  points.forEach(([x, y], k) => {
    if ((k - offset) % every === 0 || k === points.length - 1) g.append(marker(st.marker, x, y, st.colour));
  });
  return g;
}
