// The page: a search form and its results at `/`, a call's ladder and messages at
// `/call/{call_id}`. The URL holds the whole state (query string), so any view can be
// shared as a link; the browser's back and forward buttons move between views.
//
// Everything from the server or the URL reaches the page through textContent or
// setAttribute (dom.js, ladder.js): never as markup.

import { ApiError, callPath, getBlob, getCall, openLive, searchCalls, setToken, token } from "./api.js";
import { download, fill, h } from "./dom.js";
import { layout, legColour, markSelected, noAliases, palette, render, serialise, toPng } from "./ladder.js";
import { renderKpis, renderQos } from "./quality.js";

const $ = (sel) => document.querySelector(sel);

// ===== state in the URL =====

/** Time presets: the `range` parameter and the API's relative `since`. */
export const PRESETS = { "15m": "-15m", "1h": "-1h", "24h": "-24h", "7d": "-7d" };
const DEFAULT_RANGE = "1h";
const DEFAULT_LIMIT = 50;
const FIELDS = ["call_id", "user", "method", "capture_id", "node", "q"];

/** Results columns: key in the API's rows, heading, how to compare. */
const COLUMNS = [
  { key: "first_ts", title: "Start", type: "time" },
  { key: "call_id", title: "Call-ID", type: "text" },
  { key: "from_user", title: "From", type: "text" },
  { key: "to_user", title: "To", type: "text" },
  { key: "methods", title: "Methods", type: "text" },
  { key: "final_status", title: "Status", type: "number" },
  { key: "duration", title: "Duration", type: "number" },
  { key: "messages", title: "Msgs", type: "number" },
  { key: "legs", title: "Legs", type: "number" },
  // The node that holds the call ([cluster]: this one or a peer).
  { key: "node", title: "Node", type: "text" },
];

/** The view the URL names. */
function readState() {
  const q = new URLSearchParams(location.search);
  const tz = q.get("tz") === "local" ? "local" : "utc";
  const m = /^\/call\/(.+)$/.exec(location.pathname);
  if (m) {
    let callId;
    try {
      callId = decodeURIComponent(m[1]);
    } catch {
      callId = m[1];
    }
    return { view: "call", callId, tz, msg: q.get("msg") };
  }
  let range = q.get("range") ?? (q.get("since") ? "custom" : DEFAULT_RANGE);
  if (range !== "custom" && !Object.hasOwn(PRESETS, range)) range = DEFAULT_RANGE;
  const s = { view: "search", tz, range, sort: q.get("sort") ?? "first_ts", dir: q.get("dir") === "asc" ? "asc" : "desc" };
  for (const k of [...FIELDS, "since", "until", "cursor", "limit"]) s[k] = q.get(k) ?? "";
  return s;
}

/** The query string of a search state: only what differs from the defaults. */
function searchQuery(s) {
  const q = new URLSearchParams();
  if (s.range !== DEFAULT_RANGE) q.set("range", s.range);
  if (s.range === "custom") {
    if (s.since) q.set("since", s.since);
    if (s.until) q.set("until", s.until);
  }
  for (const k of FIELDS) if (s[k]) q.set(k, s[k]);
  if (s.tz !== "utc") q.set("tz", s.tz);
  if (s.sort !== "first_ts") q.set("sort", s.sort);
  if (s.dir !== "desc") q.set("dir", s.dir);
  if (s.limit) q.set("limit", s.limit);
  if (s.cursor) q.set("cursor", s.cursor);
  const text = q.toString();
  return text ? `?${text}` : "";
}

function callUrl(callId, tz, msg) {
  const q = new URLSearchParams();
  if (tz !== "utc") q.set("tz", tz);
  if (msg != null) q.set("msg", msg);
  const text = q.toString();
  return `/call/${encodeURIComponent(callId)}${text ? "?" + text : ""}`;
}

function go(url, replace = false) {
  if (replace) history.replaceState(history.state, "", url);
  else history.pushState({ from: location.pathname + location.search }, "", url);
  show();
}

// ===== time =====

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** `2026-11-26 05:21:49.909` in UTC or local time, with the zone named. */
export function formatTime(date, tz, micros) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "—";
  const utc = tz !== "local";
  const [Y, M, D, hh, mm, ss] = utc
    ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()]
    : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds()];
  const frac = micros == null ? pad(date.getUTCMilliseconds(), 3) : pad(micros % 1e6, 6);
  return `${Y}-${pad(M)}-${pad(D)} ${pad(hh)}:${pad(mm)}:${pad(ss)}.${frac}`;
}

/** The zone's name as shown beside times: `UTC`, or `UTC+01:00` for local time. */
function zoneName(tz, date = new Date()) {
  if (tz !== "local") return "UTC";
  const off = -date.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  return `UTC${sign}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)} (local)`;
}

/** A `datetime-local` value read in zone `tz`, as RFC 3339 UTC (`...Z`), or "". */
function inputToIso(value, tz) {
  if (!value) return "";
  const d = new Date(tz === "local" ? value : `${value}Z`);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace(".000Z", "Z");
}

/** RFC 3339 as a `datetime-local` value in zone `tz`, or "". */
function isoToInput(iso, tz) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  return formatTime(d, tz).slice(0, 19).replace(" ", "T");
}

function formatDuration(v) {
  if (v == null || v === "") return "";
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (n < 60) return `${n.toFixed(n < 10 ? 2 : 1)} s`;
  const m = Math.floor(n / 60);
  return `${m} min ${pad(Math.round(n % 60))} s`;
}

// ===== the search view =====

let lastRows = [];
let lastNext = null;
let selectedRow = 0;

function fillForm(s) {
  const form = $("#search-form");
  for (const k of FIELDS) form.elements[k].value = s[k];
  form.elements.tz.value = s.tz;
  for (const r of form.elements.range) r.checked = r.value === s.range;
  form.elements.since.value = isoToInput(s.since, s.tz);
  form.elements.until.value = isoToInput(s.until, s.tz);
  $("#custom-range").hidden = s.range !== "custom";
  $("#tz-note").textContent = zoneName(s.tz);
}

function formState() {
  const form = $("#search-form");
  const tz = form.elements.tz.value === "local" ? "local" : "utc";
  const range = form.elements.range.value || DEFAULT_RANGE;
  const now = readState();
  const s = { view: "search", tz, range, sort: now.sort ?? "first_ts", dir: now.dir ?? "desc", cursor: "", limit: now.limit ?? "" };
  for (const k of FIELDS) s[k] = form.elements[k].value.trim();
  s.since = range === "custom" ? inputToIso(form.elements.since.value, tz) : "";
  s.until = range === "custom" ? inputToIso(form.elements.until.value, tz) : "";
  return s;
}

function apiParams(s) {
  const p = { limit: s.limit || DEFAULT_LIMIT, cursor: s.cursor };
  for (const k of FIELDS) p[k] = s[k];
  if (s.range === "custom") {
    p.since = s.since;
    p.until = s.until;
  } else if (!s.call_id) {
    // A Call-ID is looked up at any time (the API's index): a preset would only hide a
    // call older than it. A custom range still applies.
    p.since = PRESETS[s.range];
  }
  return p;
}

function windowText(s) {
  if (s.range !== "custom" && s.call_id) return "at any time";
  if (s.range !== "custom") return `in the last ${s.range.replace("m", " min").replace("h", " h").replace("d", " days")}`;
  const z = zoneName(s.tz);
  const since = s.since ? formatTime(new Date(s.since), s.tz).slice(0, 19) : "the beginning";
  const until = s.until ? formatTime(new Date(s.until), s.tz).slice(0, 19) : "now";
  return `from ${since} to ${until} ${z}`;
}

async function showSearch(s) {
  document.title = "Calls — hep-server";
  $("#search-view").hidden = false;
  $("#call-view").hidden = true;
  fillForm(s);
  const status = $("#status");
  status.textContent = "Searching…";
  status.className = "status";
  const body = $("#results tbody");
  let answer;
  try {
    answer = await searchCalls(apiParams(s));
  } catch (e) {
    if (live) return;
    fill(body);
    lastRows = [];
    showError(status, e);
    renderPager(s, null);
    return;
  }
  if (readState().view !== "search" || live) return; // the user moved on meanwhile
  lastRows = Array.isArray(answer.calls) ? answer.calls : [];
  const n = lastRows.length;
  status.textContent = n === 0
    ? `No calls ${windowText(s)} match. Widen the time range or clear a field.`
    : `${n} call${n === 1 ? "" : "s"} ${windowText(s)}${answer.next ? " (more on the next page)" : ""}.`;
  // The text search reads messages one by one, up to a bound: say when it stopped there.
  const scan = answer.text_scan;
  if (scan && scan.truncated) {
    status.append(" ", h("strong", { class: "scan-truncated" }, `The text search stopped after reading ${scan.scanned.toLocaleString("en")} messages (its bound):`), " older calls may hold the text too. Narrow the time range or fill another field.");
  }
  // [cluster] peers that did not answer: their calls are missing, and the page says so.
  const unanswered = Array.isArray(answer.unanswered) ? answer.unanswered : [];
  if (unanswered.length) {
    status.classList.add("partial");
    status.append(
      " ",
      h("strong", { class: "unanswered" }, `${unanswered.length} node${unanswered.length === 1 ? "" : "s"} did not answer:`),
      " ",
      unanswered.map((u) => `${u.peer} (${u.error})`).join("; "),
      ". Their calls are missing from this list.",
    );
  }
  lastNext = answer.next ?? null;
  renderTable(s);
  renderPager(s, lastNext);
}

function showError(node, e) {
  node.className = "status error";
  const code = e instanceof ApiError ? e.code : "error";
  fill(node, h("strong", {}, code), ": ", e.message);
  if (e instanceof ApiError && e.status === 401) node.append(tokenForm());
}

/** Asks for the API token a server beyond loopback wants; kept for this tab only. */
function tokenForm() {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", "aria-label": "API token", placeholder: "token" });
  return h(
    "form",
    {
      class: "token",
      onsubmit: (e) => {
        e.preventDefault();
        setToken(input.value.trim());
        current = null;
        show();
      },
    },
    input,
    h("button", { type: "submit" }, "Use token"),
  );
}

function cellText(row, col, tz) {
  const v = row[col.key];
  if (v == null) return "";
  if (col.type === "time") return formatTime(new Date(v), tz).slice(0, 23);
  if (col.key === "duration") return formatDuration(v);
  // A chain cut at the server's bound may have more legs than listed.
  if (Array.isArray(v)) return col.key === "legs" ? `${v.length}${row.legs_cut ? "+" : ""}` : v.join(" ");
  return String(v);
}

function sortValue(row, col) {
  const v = row[col.key];
  if (v == null) return col.type === "text" ? "" : -Infinity;
  if (col.type === "time") return new Date(v).getTime();
  if (Array.isArray(v)) return col.key === "legs" ? v.length : v.join(" ");
  if (col.type === "number") return Number(v);
  return String(v).toLowerCase();
}

function sortedRows(s) {
  if (s.sort === LIVE_ORDER) return lastRows;
  const col = COLUMNS.find((c) => c.key === s.sort) ?? COLUMNS[0];
  const sign = s.dir === "asc" ? 1 : -1;
  return lastRows
    .map((row, i) => ({ row, i }))
    .sort((a, b) => {
      const x = sortValue(a.row, col);
      const y = sortValue(b.row, col);
      return (x < y ? -1 : x > y ? 1 : 0) * sign || a.i - b.i;
    })
    .map((e) => e.row);
}

function renderTable(s) {
  const headRow = $("#results thead tr");
  fill(
    headRow,
    COLUMNS.map((col) => {
      const active = s.sort === col.key;
      const arrow = active ? (s.dir === "asc" ? " ▲" : " ▼") : "";
      return h(
        "th",
        { scope: "col", "aria-sort": active ? (s.dir === "asc" ? "ascending" : "descending") : null, class: col.type === "number" ? "num" : null },
        h("button", {
          type: "button",
          "data-sort": col.key,
          onclick: () => {
            // The rows are here already: sort them, and keep the order in the URL.
            const next = { ...s, sort: col.key, dir: active && s.dir === "desc" ? "asc" : "desc" };
            history.replaceState(history.state, "", searchQuery(next) || "/");
            renderTable(next);
            renderPager(next, lastNext);
            document.querySelector(`th button[data-sort="${col.key}"]`)?.focus();
          },
        }, col.title, arrow),
      );
    }),
  );
  const rows = sortedRows(s);
  selectedRow = Math.min(selectedRow, Math.max(0, rows.length - 1));
  fill(
    $("#results tbody"),
    rows.map((row, i) =>
      h(
        "tr",
        { tabindex: i === selectedRow ? 0 : -1, "aria-selected": i === selectedRow ? "true" : "false", "data-call-id": row.call_id, onclick: () => selectRow(i, false) },
        COLUMNS.map((col) =>
          col.key === "call_id"
            ? h("td", { class: "call-id" }, h("a", { href: callUrl(row.call_id, s.tz), tabindex: -1, onclick: (e) => openCall(e, row.call_id) }, cellText(row, col, s.tz)))
            : h("td", { class: col.type === "number" ? "num" : col.key === "final_status" ? statusClass(row.final_status) : null, title: col.key === "legs" && Array.isArray(row.legs) ? row.legs.join("\n") : null }, cellText(row, col, s.tz)),
        ),
      ),
    ),
  );
  $("#results").hidden = rows.length === 0;
}

function statusClass(code) {
  const n = Number(code);
  if (!n) return null;
  return n < 200 ? "k-1xx" : n < 300 ? "k-2xx" : n < 400 ? "k-3xx" : "k-error";
}

function selectRow(i, focus = true) {
  const trs = [...document.querySelectorAll("#results tbody tr")];
  if (!trs.length) return;
  selectedRow = Math.max(0, Math.min(i, trs.length - 1));
  trs.forEach((tr, n) => {
    tr.tabIndex = n === selectedRow ? 0 : -1;
    tr.setAttribute("aria-selected", n === selectedRow ? "true" : "false");
  });
  if (focus) trs[selectedRow].focus();
}

function openCall(e, callId) {
  if (e && (e.ctrlKey || e.metaKey || e.shiftKey || e.button === 1)) return; // a new tab
  e?.preventDefault();
  go(callUrl(callId, readState().tz));
}

function onTableKey(e) {
  const trs = [...document.querySelectorAll("#results tbody tr")];
  const at = trs.indexOf(document.activeElement);
  if (at < 0) return;
  const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: trs.length - 1, PageDown: at + 10, PageUp: at - 10 };
  if (e.key in moves) {
    e.preventDefault();
    selectRow(moves[e.key]);
  } else if (e.key === "Enter") {
    e.preventDefault();
    go(callUrl(trs[at].getAttribute("data-call-id"), readState().tz));
  }
}

function renderPager(s, next) {
  const first = $("#first-page");
  const more = $("#next-page");
  first.hidden = !s.cursor;
  more.hidden = !next;
  first.onclick = () => go(searchQuery({ ...s, cursor: "" }) || "/");
  more.onclick = () => go(searchQuery({ ...s, cursor: next }));
}

// ===== the call view =====

let current = null; // {callId, lay, svg, tz}

async function showCall(s) {
  $("#search-view").hidden = true;
  $("#call-view").hidden = false;
  document.title = `${s.callId} — hep-server`;
  $("#call-title").textContent = s.callId;
  $("#call-tz").value = s.tz;
  $("#export-pcap").setAttribute("href", callPath(s.callId, "/pcap"));
  $("#export-text").setAttribute("href", callPath(s.callId, "/text"));
  const status = $("#call-status");
  if (current?.callId === s.callId && current.tz === s.tz) {
    selectMessage(s.msg, false);
    return;
  }
  status.className = "status";
  status.textContent = "Loading the call…";
  fill($("#ladder"));
  fill($("#legs"));
  fill($("#call-kpis"));
  fill($("#qos-panel"));
  showTab("ladder");
  $("#message").hidden = true;
  let call;
  try {
    call = await getCall(s.callId);
  } catch (e) {
    current = null;
    showError(status, e);
    return;
  }
  performance.mark("hep:call-response");
  const messages = Array.isArray(call.messages) ? call.messages : [];
  // `[aliases]`: the server names the call's addresses it has an alias for.
  const aliases = call.aliases && typeof call.aliases === "object" ? call.aliases : {};
  const aliasOf = (addr) => (Object.hasOwn(aliases, addr) && typeof aliases[addr] === "string" ? aliases[addr] : noAliases(addr));
  const lay = layout(messages, { aliasOf });
  current = { callId: s.callId, tz: s.tz, lay, svg: null, legsCut: call.legs_cut === true };
  // The KPIs and QoS the server computed from the same messages (docs/KPI.md).
  fill($("#call-kpis"), renderKpis(call.kpis));
  const colours = palette();
  fill($("#qos-panel"), renderQos(call.qos, { loss: colours.klass.error, jitter: colours.klass.request, mos: colours.klass["2xx"] }));
  const streams = Array.isArray(call.qos?.streams) ? call.qos.streams.length : 0;
  $("#tab-qos").textContent = streams ? `QoS (${streams} stream${streams === 1 ? "" : "s"})` : "QoS";
  if (!lay.rows.length) {
    status.textContent = "This call has no stored messages (they may be older than the store's retention).";
    return;
  }
  const first = lay.rows[0].message;
  const count = (n, one) => `${n} ${one}${n === 1 ? "" : one.endsWith("s") ? "es" : "s"}`;
  status.textContent = `${count(lay.rows.length, "message")} between ${count(lay.columns.length, "address")}, first at ${formatTime(new Date(first.ts / 1000), s.tz, first.ts)} ${zoneName(s.tz)}`;
  if (typeof call.node === "string" && call.node) status.append(`, held by ${call.node}${call.peer ? ` (${call.peer})` : ""}`);
  drawLadder();
  selectMessage(s.msg, false);
  // How long the page took from the API's answer to a drawn ladder (the browser tests
  // read it: issue 16 wants a 200-message call drawn within 300 ms).
  performance.measure("hep:call-drawn", "hep:call-response");
}

/** Shows the call view's tab `name` (`ladder` or `qos`). */
function showTab(name) {
  for (const [tab, panel] of [["ladder", "#call-body"], ["qos", "#qos-panel"]]) {
    const on = tab === name;
    const button = $(`#tab-${tab}`);
    button.setAttribute("aria-selected", on ? "true" : "false");
    button.tabIndex = on ? 0 : -1;
    $(panel).hidden = !on;
  }
}

function drawLadder() {
  if (!current) return;
  const colours = palette();
  const svg = render(current.lay, colours, (row) => {
    go(callUrl(current.callId, current.tz, row.message.id ?? row.n), true);
  });
  current.svg = svg;
  current.colours = colours;
  fill($("#ladder"), svg);
  const legs =
    current.lay.legs.length > 1
      ? current.lay.legs.map((id, i) => {
          const swatch = h("span", { class: "swatch" });
          // Through the CSSOM, not a style attribute: allowed under a strict CSP.
          swatch.style.background = legColour(colours, i);
          return h("li", {}, swatch, `Leg ${i + 1}: `, h("code", {}, id));
        })
      : [];
  if (current.legsCut) legs.push(h("li", { class: "legs-cut" }, "More legs may exist: the chain was cut at the server's bound (16 legs, 8 hops). Open one of the legs above to see its side."));
  fill($("#legs"), legs);
}

/** Opens message `key` (its id, or its row number) in the panel; null closes it. */
function selectMessage(key, focus) {
  if (!current?.svg) return;
  const row = key == null ? null : current.lay.rows.find((r) => String(r.message.id) === String(key)) ?? current.lay.rows[Number(key)];
  markSelected(current.svg, row ? row.n : -1, current.colours);
  const panel = $("#message");
  if (!row) {
    panel.hidden = true;
    return;
  }
  fillMessage(row);
  panel.hidden = false;
  if (focus) panel.focus();
}

function fillMessage(row) {
  const m = row.message;
  const r = m.record;
  const tz = current.tz;
  $("#message-title").textContent = `${row.n + 1}. ${row.text}`;
  const when = m.ts ? `${formatTime(new Date(m.ts / 1000), tz, m.ts)} ${zoneName(tz)}` : "no capture time (HEPv1)";
  const details = [
    ["Time", when],
    ["Offset", `${row.offset} s${row.delta ? ` (${row.delta} s after the previous)` : ""}`],
    ["From", m.src],
    ["To", m.dst],
    ["Call-ID", m.callId || "—"],
    ["Capture id", r.capture_id ?? "—"],
    ["Node", r.node_name ?? "—"],
    ["Protocol", `${r.proto_name ?? "type"} (${r.proto_type ?? "—"})`],
    ["Transport", r.recv ? `${r.recv.transport}, from ${r.recv.peer} on ${r.recv.listener}` : "—"],
    ["IP", `${r.family ?? "—"}, protocol ${r.ip_proto ?? "—"}`],
    ["VLAN", r.vlan ?? "—"],
    ["HEP", `version ${r.version ?? "—"}${r.compressed ? ", compressed" : ""}`],
    ["Correlation id", r.correlation_id ?? "—"],
    ["Message id", r.id ?? "—"],
  ];
  fill($("#hep-details"), details.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  $("#headers-section").hidden = m.headers.length === 0;
  fill($("#headers tbody"), m.headers.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))));
  $("#sdp-section").hidden = !m.sdp;
  $("#sdp").textContent = m.sdp ? m.body : "";
  const raw = typeof r.payload === "string" ? r.payload : r.payload_b64 != null ? `(not UTF-8; base64)\n${r.payload_b64}` : "";
  $("#raw").textContent = raw;
}

// ===== wiring =====

// ===== the live view =====

/** The order of the live view's rows: as they came, newest first. */
const LIVE_ORDER = "arrival";
/** Rows the live view keeps. */
export const LIVE_MAX_ROWS = 500;
let live = null; // the EventSource while the live view is on
let liveSkipped = 0;

/** A live event's call as a row of the results table. */
function liveRow(c) {
  return {
    call_id: c.call_id,
    from_user: c.from_user,
    to_user: c.to_user,
    first_ts: c.first_ts,
    methods: c.method ? [c.method] : [],
    final_status: c.status,
    duration: null,
    messages: null,
    legs: null,
  };
}

function liveStatus() {
  const n = lastRows.length;
  const skipped = liveSkipped ? ` ${liveSkipped} messages skipped (this page fell behind).` : "";
  $("#status").className = "status";
  $("#status").textContent = `Live: ${n === 0 ? "waiting for new calls…" : `${n} new call${n === 1 ? "" : "s"}, newest first.`}${skipped}`;
}

function startLive() {
  if (live) return;
  lastRows = [];
  lastNext = null;
  liveSkipped = 0;
  selectedRow = 0;
  $("#live").setAttribute("aria-pressed", "true");
  renderTable({ ...readState(), sort: LIVE_ORDER });
  renderPager(readState(), null);
  liveStatus();
  live = openLive();
  live.addEventListener("call", (e) => {
    let c;
    try {
      c = JSON.parse(e.data);
    } catch {
      return;
    }
    if (!c || typeof c.call_id !== "string") return;
    lastRows = [liveRow(c), ...lastRows.filter((r) => r.call_id !== c.call_id)].slice(0, LIVE_MAX_ROWS);
    renderTable({ ...readState(), sort: LIVE_ORDER });
    liveStatus();
  });
  live.addEventListener("lagged", (e) => {
    try {
      liveSkipped += Number(JSON.parse(e.data).skipped) || 0;
    } catch {
      // ignored: the next event says it again
    }
    liveStatus();
  });
  live.addEventListener("open", () => {
    $("#live").dataset.state = "open";
    liveStatus();
  });
  live.addEventListener("error", () => {
    if (!live) return;
    const status = $("#status");
    status.className = "status error";
    if (live.readyState === EventSource.CLOSED) {
      // Refused (a token is missing or wrong, or too many live pages): not retried.
      fill(status, h("strong", {}, "live"), ": the server refused the live feed (a token? too many live pages?)");
      if (!token()) status.append(tokenForm());
      stopLive(false);
    } else {
      delete $("#live").dataset.state;
      status.textContent = "Live: connection lost, reconnecting…";
    }
  });
}

/** Ends the live view; `research` shows the search of the URL again. */
function stopLive(research = true) {
  live?.close();
  live = null;
  $("#live").setAttribute("aria-pressed", "false");
  delete $("#live").dataset.state;
  if (research) show();
}

function show() {
  const s = readState();
  // Any navigation (a search, a call opened, back) ends the live view.
  if (live) stopLive(false);
  $("#error").hidden = true;
  if (s.view === "call") showCall(s);
  else {
    current = null;
    showSearch(s);
  }
}

function wire() {
  const form = $("#search-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    selectedRow = 0;
    go(searchQuery(formState()) || "/");
  });
  form.addEventListener("change", (e) => {
    if (e.target.name === "range") {
      $("#custom-range").hidden = form.elements.range.value !== "custom";
      if (form.elements.range.value === "custom" && !form.elements.since.value) {
        const tz = form.elements.tz.value;
        form.elements.since.value = isoToInput(new Date(Date.now() - 3600e3).toISOString(), tz);
        form.elements.until.value = isoToInput(new Date().toISOString(), tz);
      }
    }
    if (e.target.name === "tz") {
      // Keep the same instants, shown in the new zone.
      const old = e.target.value === "local" ? "utc" : "local";
      for (const k of ["since", "until"]) form.elements[k].value = isoToInput(inputToIso(form.elements[k].value, old), e.target.value);
      $("#tz-note").textContent = zoneName(e.target.value);
    }
  });
  $("#results tbody").addEventListener("keydown", onTableKey);
  $("#tab-ladder").addEventListener("click", () => showTab("ladder"));
  $("#tab-qos").addEventListener("click", () => showTab("qos"));
  // Arrow keys move between the two tabs (the WAI-ARIA tabs pattern).
  $(".tabs").addEventListener("keydown", (e) => {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const next = $("#tab-ladder").getAttribute("aria-selected") === "true" ? "qos" : "ladder";
    showTab(next);
    $(`#tab-${next}`).focus();
    e.preventDefault();
  });
  $("#live").addEventListener("click", () => (live ? stopLive() : startLive()));
  $("#call-tz").addEventListener("change", (e) => {
    const q = new URLSearchParams(location.search);
    if (e.target.value === "local") q.set("tz", "local");
    else q.delete("tz");
    current = null;
    const text = q.toString();
    go(`${location.pathname}${text ? "?" + text : ""}`, true);
  });
  $("#back").addEventListener("click", (e) => {
    if (history.state?.from && !history.state.from.startsWith("/call/")) {
      e.preventDefault();
      history.back();
    }
  });
  $("#close-message").addEventListener("click", () => {
    const q = new URLSearchParams(location.search);
    q.delete("msg");
    const text = q.toString();
    go(`${location.pathname}${text ? "?" + text : ""}`, true);
    current?.svg?.querySelector("g.msg[aria-pressed]")?.focus();
  });
  // With a token the exports must send it: fetch them, then save what came.
  for (const [id, ext] of [["#export-pcap", "pcap"], ["#export-text", "txt"]]) {
    $(id).addEventListener("click", async (e) => {
      if (!token() || !current) return;
      e.preventDefault();
      try {
        download(await getBlob(e.currentTarget.getAttribute("href")), `${fileName(current.callId)}.${ext}`);
      } catch (err) {
        showError($("#call-status"), err);
      }
    });
  }
  $("#export-svg").addEventListener("click", () => {
    if (current?.svg) download(new Blob([serialise(current.svg)], { type: "image/svg+xml" }), `${fileName(current.callId)}.svg`);
  });
  $("#export-png").addEventListener("click", async () => {
    if (!current?.svg) return;
    try {
      download(await toPng(current.svg), `${fileName(current.callId)}.png`);
    } catch (e) {
      showError($("#call-status"), e);
    }
  });
  // Arrow keys move between the ladder's messages.
  $("#ladder").addEventListener("keydown", (e) => {
    const g = e.target.closest?.("g.msg");
    if (!g || !["ArrowDown", "ArrowUp", "Home", "End"].includes(e.key)) return;
    const all = [...current.svg.querySelectorAll("g.msg")];
    const at = all.indexOf(g);
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[e.key];
    if (all[to]) {
      e.preventDefault();
      all[to].focus();
    }
  });
  window.addEventListener("popstate", show);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    drawLadder();
    selectMessage(readState().msg, false);
  });
}

/** A file name from a Call-ID: safe characters only. */
function fileName(callId) {
  return `call-${callId.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80)}`;
}

wire();
show();
