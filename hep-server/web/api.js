// The HTTP API of DESIGN.md ("Interfaces of the next capabilities"), same origin.

/** An error answered by the API: `{"error": {"code", "message"}}`, or a network failure. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const TOKEN_KEY = "hep-server-token";

/** The API token of this tab (a server bound beyond loopback needs one), or null. */
export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Keeps `value` as this tab's token (until the tab closes); "" forgets it. */
export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lasts until the next page load.
  }
}

function headers(accept) {
  const h = { Accept: accept };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** `path` as a Blob (the exports, when a token must be sent with them). */
export async function getBlob(path) {
  const res = await fetch(path, { headers: headers("*/*") });
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new ApiError(body?.error?.code ?? `http_${res.status}`, body?.error?.message ?? `${res.status} ${res.statusText}`, res.status);
  }
  return res.blob();
}

async function get(path) {
  let res;
  try {
    res = await fetch(path, { headers: headers("application/json") });
  } catch (e) {
    throw new ApiError("unreachable", `the server did not answer (${e.message})`, 0);
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON: reported below.
  }
  if (!res.ok) {
    const err = body?.error;
    throw new ApiError(err?.code ?? `http_${res.status}`, err?.message ?? `${res.status} ${res.statusText}`, res.status);
  }
  if (body === null) throw new ApiError("bad_response", `${path} did not answer JSON`, res.status);
  return body;
}

/** The API's search parameters, in the order the docs give them. */
export const SEARCH_KEYS = ["call_id", "user", "method", "since", "until", "capture_id", "node", "q", "limit", "cursor"];

/** `GET /api/v1/calls?...`: `{calls: [...], next, text_scan}`. Empty values are left out. */
export function searchCalls(params) {
  const q = new URLSearchParams();
  for (const k of SEARCH_KEYS) {
    const v = params[k];
    if (v != null && String(v).trim() !== "") q.set(k, String(v).trim());
  }
  return get(`/api/v1/calls?${q}`);
}

/** The path of a call's resource (`suffix`: "", "/pcap", "/text"). */
export function callPath(callId, suffix = "") {
  return `/api/v1/calls/${encodeURIComponent(callId)}${suffix}`;
}

/** `GET /api/v1/calls/{call_id}`: `{call_id, messages: [record + id], aliases}`. */
export function getCall(callId) {
  return get(callPath(callId));
}

/**
 * The live feed (`GET /api/v1/live`, Server-Sent Events) as an EventSource. It cannot
 * send headers: this tab's token goes in the query string, which this endpoint (only)
 * accepts.
 */
export function openLive() {
  const t = token();
  return new EventSource(t ? `/api/v1/live?token=${encodeURIComponent(t)}` : "/api/v1/live");
}
