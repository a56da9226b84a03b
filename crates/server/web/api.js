// The head node's REST API, as the dashboard calls it.
//
// The API token lives in sessionStorage (it goes when the tab closes) and every request carries
// it as `Authorization: Bearer TOKEN`. An error answer is `{"error": {"kind", "message"}}`; it
// becomes an `ApiError` whose message is the server's, verbatim. A 401 anywhere means the token
// is no good: the handler set with `onUnauthorized` takes the user back to the login form.

const TOKEN_KEY = 'thunderhead.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.kind = kind;
  }
}

/**
 * Who is signed in, from `GET /api/v1/whoami`: the pages show only the controls this role may
 * use. This is a convenience for the eye; the head node checks every call all the same.
 */
export const session = { name: null, role: null };

/** Whether the signed-in user may act on a job `owner` submitted (the head node's rule). */
export function mayManageJob(owner) {
  return session.role === 'Administrator' || session.role === 'JobAdministrator' || session.name === owner;
}

/** Whether the signed-in user may change nodes, templates and packages. */
export function mayAdminister() {
  return session.role === 'Administrator';
}

let unauthorized = () => {};

/** Sets what happens when the head node refuses the token (401). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** The headers every request carries. */
export function authHeaders() {
  return { Authorization: `Bearer ${token.get() ?? ''}` };
}

/** Turns a failed response into an ApiError (and reports a 401). */
export async function failure(res) {
  const text = await res.text().catch(() => '');
  let kind = 'http';
  let message = text.trim() || `${res.status} ${res.statusText}`;
  try {
    const body = JSON.parse(text);
    if (body && body.error && typeof body.error.message === 'string') {
      kind = body.error.kind;
      message = body.error.message;
    }
  } catch {
    // not JSON: a proxy's page or plain text, shown as it came
  }
  const err = new ApiError(res.status, kind, message);
  if (res.status === 401) unauthorized(err.message);
  return err;
}

/**
 * Calls the API: `api('/api/v1/nodes')`, `api(path, {method: 'POST', body})`. `body` is sent as
 * JSON; `raw` (a Blob or File) as it is. Answers the parsed JSON; throws an ApiError, or the
 * AbortError of `signal`.
 */
export async function api(path, { method = 'GET', body, raw, signal } = {}) {
  const headers = authHeaders();
  let payload;
  if (raw !== undefined) {
    payload = raw;
    headers['Content-Type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `cannot reach the head node (${e.message})`);
  }
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** `?a=1&b=x` from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** The message of an error for people: the API's own message, verbatim. */
export function messageOf(err) {
  return err && err.message ? err.message : String(err);
}

/** A path segment, escaped. */
export const seg = encodeURIComponent;
