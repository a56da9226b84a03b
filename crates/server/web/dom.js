// DOM helpers shared by every page.
//
// Every text the head node sends goes into the page through `textContent` or an attribute,
// never through `innerHTML`, so nothing it says can become markup. `reconcile` updates a list
// of elements in place, keyed, so a refresh keeps focus, selection and scroll position.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Sets the properties and attributes of `el` from `props` (see `h`). */
function assign(el, props) {
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'text') el.textContent = value;
    else if (key === 'value' || key === 'checked' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

/** Appends children: elements, strings (as text), arrays of them; skips null and false. */
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/**
 * Makes an HTML element: `h('button', {type: 'button', 'data-x': 'y'}, 'text')`.
 * `class`, `text`, `value`, `checked` and `selected` are special; `true` makes an empty
 * attribute; `false`, `null` and `undefined` leave it out.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  assign(el, props);
  append(el, children);
  return el;
}

/** Makes an SVG element, like `h`. */
export function s(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  assign(el, props);
  append(el, children);
  return el;
}

/**
 * Makes `parent`'s children the elements of `items`, in order, reusing the element kept in
 * `cache` (a Map the caller owns) for each key: `create(item)` makes a new one, `update(el,
 * item)` brings one up to date. Elements of keys no longer present are removed from the page and
 * from the cache, so the cache never outgrows the list.
 */
export function reconcile(parent, items, keyOf, create, update, cache) {
  const seen = new Set();
  items.forEach((item, i) => {
    const key = keyOf(item);
    seen.add(key);
    let el = cache.get(key);
    if (!el) {
      el = create(item);
      cache.set(key, el);
    }
    update(el, item);
    const at = parent.children[i];
    if (at !== el) parent.insertBefore(el, at ?? null);
  });
  for (const [key, el] of cache) {
    if (!seen.has(key)) {
      el.remove();
      cache.delete(key);
    }
  }
}

/** Sets text only when it changed (keeps text selection and avoids needless layout). */
export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

/** A small state badge: the state's word, coloured by a class derived from it. */
export function badge(word, extra = '') {
  const el = h('span', { class: 'badge' });
  setBadge(el, word, extra);
  return el;
}

/** Brings a badge made by `badge` to another word. */
export function setBadge(el, word, extra = '') {
  const w = word ?? 'none';
  el.className = `badge s-${String(w).toLowerCase().replace(/[^a-z0-9]+/g, '-')} ${extra}`.trim();
  setText(el, w);
}

/**
 * Shows a message in `area`, replacing what it showed: `kind` is `error`, `ok` or `info`.
 * `lines` may be a string or a list of strings or elements.
 */
export function say(area, kind, lines) {
  const list = Array.isArray(lines) ? lines : [lines];
  area.replaceChildren(...list.map((line) => h('div', { class: `msg msg-${kind}` }, line)));
}

/**
 * Shows the answer of a node action (`[{node, ok, message}]`): how many nodes it was done on,
 * then each refused node with the reason.
 */
export function showResults(area, action, results) {
  const refused = results.filter((r) => !r.ok);
  const done = results.length - refused.length;
  const ok = results.filter((r) => r.ok).map((r) => `${r.node} (${r.message})`);
  const lines = [
    h('div', { class: refused.length ? 'msg msg-info' : 'msg msg-ok' }, `${action}: ${done} of ${results.length} node(s) done`, ok.length ? `: ${ok.join(', ')}` : ''),
  ];
  for (const r of refused) lines.push(h('div', { class: 'msg msg-error' }, h('strong', { text: `${r.node} refused: ` }), r.message));
  area.replaceChildren(...lines);
}

/** Empties a message area. */
export function hush(area) {
  area.replaceChildren();
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

/** A point in time (milliseconds since the epoch) in the reader's zone, the date left out when
 * it is today; `—` for none. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? timeOnly.format(d) : dateTime.format(d);
}

/** A span of milliseconds, short: `850 ms`, `12 s`, `4 min 3 s`, `2 h 5 min`. */
export function fmtSpan(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min} min ${sec % 60} s`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours} h ${min % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Bytes, short: `512 B`, `1.5 KiB`, `20.0 MiB`. */
export function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Money per currency, `{"USD": 1.5}` → `1.50 USD`; `0.00` for none. */
export function fmtMoney(cost) {
  const entries = Object.entries(cost ?? {});
  if (entries.length === 0) return '0.00';
  return entries.map(([cur, v]) => `${v.toFixed(2)} ${cur}`).join(', ');
}

/** A number with at most `digits` decimals. */
export function fmtNumber(v, digits = 2) {
  return Number(v ?? 0).toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** A definition list of `[label, value]` pairs; values may be strings or elements. */
export function fields(pairs) {
  return h('dl', { class: 'fields' }, pairs.map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v ?? '—')]));
}

/**
 * A column heading: an element, a string, or `{text or node, num, class}` (`num` for a
 * right-aligned number column).
 */
function heading(x) {
  if (x instanceof Node) return h('th', { scope: 'col' }, x);
  if (typeof x === 'string') return h('th', { scope: 'col', text: x });
  const classes = [x.num ? 'num' : null, x.class ?? null].filter(Boolean).join(' ');
  return h('th', { scope: 'col', class: classes || null, text: x.text }, x.node ?? null);
}

/** A table with a header row, inside a container that scrolls sideways on narrow screens. */
export function table(id, headings, label) {
  const tbody = h('tbody');
  const el = h('table', { id, class: 'grid', 'aria-label': label }, h('thead', {}, h('tr', {}, headings.map(heading))), tbody);
  return { wrap: h('div', { class: 'table-wrap' }, el), table: el, tbody };
}

/**
 * Makes `select`'s options the `[value, text]` pairs of `options`, keeping the chosen value if
 * it is still offered. Options that did not change are left alone, so a refresh does not close
 * a list the user has open.
 */
export function setOptions(select, options) {
  const chosen = select.value;
  const now = [...select.options].map((o) => `${o.value}\t${o.text}`);
  if (options.map(([v, t]) => `${v}\t${t}`).join('\n') !== now.join('\n')) {
    select.replaceChildren(...options.map(([value, text]) => h('option', { value }, text)));
  }
  if (options.some(([v]) => v === chosen)) select.value = chosen;
}

/** A labelled form control: `<label><span>Label</span>control<small>help</small></label>`. */
export function labelled(text, control, help) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label', text }), control, help ? h('small', { class: 'help', text: help }) : null);
}
