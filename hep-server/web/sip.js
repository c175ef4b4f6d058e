// Reading a captured message for the page: the SIP start line, headers and body, and
// what the ladder writes on its arrow. Pure functions over the API's JSON records (no
// DOM), so node checks them without a browser (xtask/browser/unit.test.mjs).

/** HEP protocol type of SIP (DESIGN.md; `proto_type` of a record). */
export const SIP = 1;

/**
 * Splits a SIP message into its start line, headers and body.
 * Tolerates bare LF line ends and folded header lines; never throws.
 * @param {string} text
 * @returns {{start: string, headers: Array<[string, string]>, body: string}}
 */
export function parseSip(text) {
  const src = typeof text === "string" ? text : "";
  const end = src.search(/\r?\n\r?\n/);
  const head = end < 0 ? src : src.slice(0, end);
  const body = end < 0 ? "" : src.slice(end).replace(/^\r?\n\r?\n/, "");
  const lines = head.split(/\r?\n/);
  const start = lines.shift() ?? "";
  const headers = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && headers.length > 0) {
      headers[headers.length - 1][1] += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return { start, headers, body };
}

/** Compact header forms (RFC 3261 7.3.3) and their full names, lower case. */
const COMPACT = { i: "call-id", f: "from", t: "to", c: "content-type", l: "content-length", v: "via", m: "contact" };

/**
 * The first value of header `name` (any case, compact forms too), or null.
 * @param {Array<[string, string]>} headers
 * @param {string} name
 */
export function header(headers, name) {
  const want = name.toLowerCase();
  for (const [n, v] of headers) {
    const lower = n.toLowerCase();
    if (lower === want || COMPACT[lower] === want) return v;
  }
  return null;
}

/**
 * What a start line is: a request (`method`) or a response (`code`, `reason`), or null.
 * @param {string} start
 */
export function startLine(start) {
  let m = /^SIP\/2\.0\s+(\d{3})(?:\s+(.*))?$/.exec(start);
  if (m) return { code: Number(m[1]), reason: (m[2] ?? "").trim() };
  m = /^([A-Za-z]+)\s+\S+\s+SIP\/2\.0$/.exec(start);
  if (m) return { method: m[1].toUpperCase() };
  return null;
}

/** Whether a body is SDP: by its Content-Type, or by its first line `v=0`. */
export function isSdp(headers, body) {
  const type = header(headers, "content-type");
  if (type) return /^application\/sdp\b/i.test(type);
  return /^v=0\r?$/m.test(body.split("\n", 1)[0] ?? "");
}

/**
 * The class of a message, for its colour: `request`, `1xx`, `2xx`, `3xx`, `error`
 * (4xx to 6xx), or `other` (not SIP).
 */
export function classOf(line) {
  if (!line) return "other";
  if (line.method) return "request";
  if (line.code < 200) return "1xx";
  if (line.code < 300) return "2xx";
  if (line.code < 400) return "3xx";
  return "error";
}

/** `ip:port`, `[ip]:port` for IPv6, `-` when unknown: the terminal ladder's form. */
export function endpoint(ip, port) {
  if (ip == null) return "-";
  const host = ip.includes(":") ? `[${ip}]` : ip;
  return port == null ? host : `${host}:${port}`;
}

/** Capture time of a record in microseconds since the epoch (0 without one, as HEPv1). */
export function micros(rec) {
  return (Number(rec.ts_sec) || 0) * 1e6 + (Number(rec.ts_usec) || 0);
}

/**
 * Everything the ladder and the message panel need about one record.
 * @param {object} rec a record of `GET /api/v1/calls/{call_id}` (with its `id`)
 */
export function describe(rec) {
  const sipLike = rec.proto_type == null || rec.proto_type === SIP;
  const text = typeof rec.payload === "string" ? rec.payload : "";
  const parsed = sipLike ? parseSip(text) : { start: "", headers: [], body: "" };
  const line = sipLike ? startLine(parsed.start) : null;
  const sip = line !== null;
  let label;
  if (line?.method) label = line.method;
  else if (line) label = line.reason ? `${line.code} ${line.reason}` : String(line.code);
  else label = rec.proto_name ?? (rec.proto_type == null ? "-" : String(rec.proto_type));
  const sdp = sip && parsed.body.length > 0 && isSdp(parsed.headers, parsed.body);
  const callId = (sip ? header(parsed.headers, "call-id") : null) ?? rec.correlation_id ?? "";
  return {
    id: rec.id,
    ts: micros(rec),
    src: endpoint(rec.src_ip, rec.src_port),
    dst: endpoint(rec.dst_ip, rec.dst_port),
    label,
    sdp,
    sip,
    klass: sip ? classOf(line) : "other",
    callId,
    headers: parsed.headers,
    body: sip ? parsed.body : "",
    start: parsed.start,
    record: rec,
  };
}
