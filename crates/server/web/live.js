// Live updates: the one server-sent-events stream of the app, and the resources it refreshes.
//
// GET /api/v1/events needs the Authorization header, which EventSource cannot send, so the
// stream is read with fetch() and a TextDecoder and its frames parsed here. Each `change`
// event names topics (nodes, jobs, templates, packages, cost); the page on show refetches what
// depends on them. There is exactly one stream: `startLive` stops any earlier one, `stopLive`
// aborts it and its reconnect timer. A lost stream is reopened after 2 s; `#live` says which.
//
// A `Resource` is one thing a page fetches. It never has two fetches in flight: a refresh asked
// for during a fetch runs once more when that fetch ends, however many were asked for.

import { authHeaders, failure } from './api.js';

const RETRY_MS = 2000;

let controller = null;
let retryTimer = null;
let handlers = null;

/**
 * Opens the stream. `onChange(topics)` gets each change event's topics; `onReconnect()` is
 * called when the stream comes back after a loss (events may have been missed);
 * `onStatus(text)` gets `live` or `reconnecting`.
 */
export function startLive(h) {
  stopLive();
  handlers = h;
  connect(false);
}

/** Closes the stream and forgets its reconnect timer. */
export function stopLive() {
  if (controller) controller.abort();
  controller = null;
  clearTimeout(retryTimer);
  retryTimer = null;
  handlers = null;
}

async function connect(again) {
  const ctrl = new AbortController();
  controller = ctrl;
  retryTimer = null;
  try {
    const res = await fetch('/api/v1/events', {
      headers: { ...authHeaders(), Accept: 'text/event-stream' },
      signal: ctrl.signal,
      cache: 'no-store',
    });
    if (!res.ok) throw await failure(res);
    if (!res.body) throw new Error('the event stream has no body');
    handlers.onStatus('live');
    if (again) handlers.onReconnect();
    await read(res.body, ctrl.signal, (event, data) => dispatch(event, data));
    throw new Error('the event stream ended');
  } catch (e) {
    if (ctrl.signal.aborted || controller !== ctrl) return;
    ctrl.abort(); // let go of what is left of the failed stream
    if (e.status === 401) return; // the app is logging out
    handlers.onStatus('reconnecting');
    retryTimer = setTimeout(() => connect(true), RETRY_MS);
  }
}

function dispatch(event, data) {
  if (event !== 'change' || !handlers) return;
  let topics = [];
  try {
    topics = JSON.parse(data).topics ?? [];
  } catch {
    return;
  }
  handlers.onChange(new Set(topics));
}

/** The head node sends a keep-alive every 15 s: a stream silent this long is dead. */
const SILENCE_MS = 45_000;

/**
 * Reads `body` to its end, calling `onEvent(event, data)` per SSE frame. A connection that a
 * proxy or NAT dropped without closing it goes silent: after `SILENCE_MS` the read gives up.
 */
async function read(body, signal, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parse = sseParser(onEvent);
  let watchdog = null;
  const silence = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => reader.cancel(new Error('the event stream went silent')), SILENCE_MS);
  };
  try {
    silence();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || signal.aborted) break;
      silence();
      parse(decoder.decode(value, { stream: true }));
    }
  } finally {
    clearTimeout(watchdog);
    reader.releaseLock();
  }
}

/**
 * A parser of the text/event-stream format, fed chunks as they come: lines `field: value`, a
 * blank line ends an event, lines starting with `:` are comments (keep-alives). Only the
 * unfinished last line is kept between chunks.
 */
export function sseParser(onEvent) {
  let rest = '';
  let event = '';
  let data = [];
  return (chunk) => {
    rest += chunk;
    const lines = rest.split(/\r\n|\n|\r(?!$)/);
    rest = lines.pop();
    for (const line of lines) {
      if (line === '') {
        if (data.length > 0) onEvent(event || 'message', data.join('\n'));
        event = '';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
    }
  };
}

/** Waits `ms` (if more than 0), or until `signal` is aborted. */
function pause(ms, signal) {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/**
 * One thing a page fetches and shows. `load(signal)` fetches it, `render(value)` shows it,
 * `fail(error)` shows why it could not be fetched. Everything stops when `signal` (the page's)
 * is aborted. With `minGapMs`, a refetch asked for during a fetch waits until that long after
 * the fetch began (for costly answers that change often).
 */
export class Resource {
  constructor(signal, load, render, fail, { minGapMs = 0 } = {}) {
    this.signal = signal;
    this.load = load;
    this.render = render;
    this.fail = fail;
    this.minGapMs = minGapMs;
    this.busy = false;
    this.again = false;
  }

  /** Fetches now, or once more after the fetch in flight. */
  refresh() {
    if (this.signal.aborted) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.run();
  }

  async run() {
    try {
      do {
        this.again = false;
        const started = Date.now();
        await this.once();
        if (this.again) await pause(this.minGapMs - (Date.now() - started), this.signal);
      } while (this.again && !this.signal.aborted);
    } finally {
      this.busy = false;
    }
  }

  async once() {
    try {
      const value = await this.load(this.signal);
      if (!this.signal.aborted) this.render(value);
    } catch (e) {
      if (!this.signal.aborted && e.name !== 'AbortError') this.fail(e);
    }
  }
}
