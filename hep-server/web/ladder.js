// The call flow as an SVG ladder, the way sngrep's call flow and homer-ui's flow show it:
// one column (lifeline) per address:port, one arrow per message in time order.
//
// `layout` is pure (node checks it: xtask/browser/unit.test.mjs); `render` builds the SVG
// with createElementNS and textContent only, so text from packets is never parsed as
// markup. Colours are written as attributes (not CSS classes) so that the serialised SVG
// and the PNG drawn from it look like the page.

import { describe } from "./sip.js";

/** Geometry, in CSS pixels. Text is monospace 12 px: about 7.3 px a character. */
export const GEOMETRY = Object.freeze({
  margin: 178, // left: offset and delta, at least
  minColumn: 190,
  charWidth: 7.3,
  header: 62,
  row: 38,
  bottom: 24,
  loop: 36, // width of the loop of a message an address sends to itself
});

/** Legs get these colours in order (the six repeat after the sixth leg). */
export const LEG_COUNT = 6;

/**
 * Column name of an address without an alias: the address. The page passes the server's
 * `[aliases]` (the `aliases` of `GET /api/v1/calls/{call_id}`) as `aliasOf`; a column
 * with an alias shows the address under it.
 * @type {(addr: string) => string}
 */
export const noAliases = (addr) => addr;

/** Seconds with six decimals after a prefix: `+0.000813`, `Δ0.000431`. */
export function seconds(prefix, usec) {
  const v = Math.max(0, Math.round(usec));
  const s = Math.floor(v / 1e6);
  const frac = String(v % 1e6).padStart(6, "0");
  return `${prefix}${s}.${frac}`;
}

/**
 * The ladder of a call: columns, legs and one row per message.
 * @param {object[]} records the `messages` of `GET /api/v1/calls/{call_id}`
 * @param {{aliasOf?: (addr: string) => string}} [options]
 */
export function layout(records, options = {}) {
  const aliasOf = options.aliasOf ?? noAliases;
  // Stable sort: messages with equal times keep the server's order.
  const items = records.map((rec, i) => ({ d: describe(rec), i }));
  items.sort((a, b) => a.d.ts - b.d.ts || a.i - b.i);

  const columns = [];
  const legs = [];
  const col = (addr) => {
    let i = columns.findIndex((c) => c.addr === addr);
    if (i < 0) {
      i = columns.length;
      columns.push({ addr, name: aliasOf(addr) });
    }
    return i;
  };
  const first = items.length ? items[0].d.ts : 0;
  let previous = first;
  let widest = 0;
  const rows = items.map(({ d }, n) => {
    const from = col(d.src);
    const to = col(d.dst);
    let leg = -1;
    if (d.callId) {
      leg = legs.indexOf(d.callId);
      if (leg < 0) leg = legs.push(d.callId) - 1;
    }
    const text = d.sdp ? `${d.label} (SDP)` : d.label;
    widest = Math.max(widest, text.length);
    const row = {
      n,
      message: d,
      from,
      to,
      text,
      leg,
      dotted: !d.sip,
      offset: seconds("+", d.ts - first),
      delta: n === 0 ? "" : seconds("Δ", d.ts - previous),
    };
    previous = d.ts;
    return row;
  });
  for (const c of columns) widest = Math.max(widest, c.name.length);

  const g = GEOMETRY;
  const column = Math.max(g.minColumn, Math.ceil(widest * g.charWidth) + 36);
  // The margin holds the widest offset and delta (a long call has wider ones).
  const chars = (key) => Math.max(0, ...rows.map((r) => r[key].length));
  const deltaX = 10 + Math.ceil((chars("offset") + 2) * g.charWidth);
  const margin = Math.max(g.margin, deltaX + Math.ceil((chars("delta") + 2) * g.charWidth));
  const x = (i) => margin + column / 2 + i * column;
  const y = (n) => g.header + g.row * n + g.row * 0.7;
  return {
    columns,
    legs,
    rows,
    first,
    column,
    x,
    y,
    deltaX,
    width: margin + Math.max(1, columns.length) * column + g.loop,
    height: g.header + g.row * rows.length + g.bottom,
  };
}

// ===== drawing =====

const SVG_NS = "http://www.w3.org/2000/svg";

/** The page's colours, from its CSS custom properties (so dark and light both work). */
export function palette(root = document.documentElement) {
  const css = getComputedStyle(root);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    bg: v("--surface", "#ffffff"),
    fg: v("--fg", "#1b1f24"),
    muted: v("--muted", "#5b6470"),
    line: v("--rule", "#c9ced6"),
    select: v("--select", "#e8f0fe"),
    klass: {
      request: v("--c-request", "#1f5fbf"),
      "1xx": v("--c-1xx", "#6b6f76"),
      "2xx": v("--c-2xx", "#1a7f37"),
      "3xx": v("--c-3xx", "#9a6700"),
      error: v("--c-error", "#c62828"),
      other: v("--c-other", "#6f42c1"),
    },
    legs: Array.from({ length: LEG_COUNT }, (_, i) => v(`--leg-${i}`, ["#1f5fbf", "#d9480f", "#2b8a3e", "#ae3ec9", "#0b7285", "#5c940d"][i])),
  };
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, val] of Object.entries(attrs)) node.setAttribute(k, String(val));
  if (text !== undefined) node.textContent = text;
  return node;
}

const FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace";

/** Colour of leg `i` (-1: a message without Call-ID or correlation id). */
export function legColour(colours, i) {
  return i < 0 ? colours.muted : colours.legs[i % colours.legs.length];
}

/**
 * Draws a layout as an `<svg>` element. Each message is a `<g class="msg">` that can be
 * focused (Tab) and carries `data-index` (its row), `data-from`/`data-to` (column indices)
 * and `data-label`; `onSelect(row)` is called on a click, Enter or Space.
 */
export function render(lay, colours, onSelect) {
  const g = GEOMETRY;
  const svg = el("svg", {
    xmlns: SVG_NS,
    width: lay.width,
    height: lay.height,
    viewBox: `0 0 ${lay.width} ${lay.height}`,
    role: "group",
    "aria-label": `Call flow: ${lay.rows.length} messages between ${lay.columns.length} addresses`,
    "font-family": FONT,
    "font-size": 12,
    class: "ladder",
  });
  svg.append(el("rect", { x: 0, y: 0, width: lay.width, height: lay.height, fill: colours.bg }));

  const defs = el("defs");
  const heads = new Map();
  const head = (colour) => {
    if (!heads.has(colour)) {
      const id = `head-${heads.size}`;
      const marker = el("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: colour }));
      defs.append(marker);
      heads.set(colour, id);
    }
    return heads.get(colour);
  };
  svg.append(defs);

  // Column headers and lifelines.
  lay.columns.forEach((c, i) => {
    const x = lay.x(i);
    const name = el("text", { x, y: 24, "text-anchor": "middle", fill: colours.fg, "font-weight": 600, class: "column" }, c.name);
    name.setAttribute("data-addr", c.addr);
    if (c.name !== c.addr) {
      svg.append(el("text", { x, y: 40, "text-anchor": "middle", fill: colours.muted, "font-size": 11 }, c.addr));
    }
    svg.append(name);
    svg.append(el("line", { x1: x, y1: g.header - 12, x2: x, y2: lay.height - 8, stroke: colours.line, "stroke-width": 1, "stroke-dasharray": "3 3" }));
  });

  for (const row of lay.rows) {
    const y = lay.y(row.n);
    const colour = legColour(colours, row.leg);
    const group = el("g", {
      class: "msg",
      tabindex: 0,
      role: "button",
      "data-index": row.n,
      "data-from": row.from,
      "data-to": row.to,
      "data-label": row.text,
      "aria-label": `${row.n + 1}: ${row.text} from ${lay.columns[row.from].name} to ${lay.columns[row.to].name}, ${row.offset} s`,
    });
    group.append(el("rect", { class: "hit", x: 0, y: y - g.row * 0.7, width: lay.width, height: g.row, fill: "transparent" }));
    group.append(el("text", { x: 10, y: y - 2, fill: colours.muted }, row.offset));
    if (row.delta) group.append(el("text", { x: lay.deltaX, y: y - 2, fill: colours.muted }, row.delta));

    const x1 = lay.x(row.from);
    const x2 = lay.x(row.to);
    const stroke = { stroke: colour, "stroke-width": 1.6, fill: "none", "marker-end": `url(#${head(colour)})` };
    if (row.dotted) stroke["stroke-dasharray"] = "2 4";
    let labelX;
    if (row.from === row.to) {
      const w = g.loop;
      group.append(el("path", { d: `M${x1},${y - 6} h${w} v14 h${-w + 2}`, ...stroke }));
      labelX = x1 + w + 6;
      group.append(el("text", { x: labelX, y: y + 2, fill: colours.klass[row.message.klass], "font-weight": 600, class: "label" }, row.text));
    } else {
      const dir = x2 > x1 ? 1 : -1;
      group.append(el("line", { x1: x1 + dir * 2, y1: y, x2: x2 - dir * 2, y2: y, ...stroke }));
      labelX = (x1 + x2) / 2;
      group.append(el("text", { x: labelX, y: y - 6, "text-anchor": "middle", fill: colours.klass[row.message.klass], "font-weight": 600, class: "label" }, row.text));
    }
    group.append(el("title", {}, `${row.text}\n${row.message.src} → ${row.message.dst}${row.message.callId ? "\nCall-ID " + row.message.callId : ""}`));
    const choose = () => onSelect?.(row);
    group.addEventListener("click", choose);
    group.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        choose();
      }
    });
    svg.append(group);
  }
  return svg;
}

/** Marks row `n` as selected (a band behind it), clearing any other. */
export function markSelected(svg, n, colours) {
  for (const hit of svg.querySelectorAll("g.msg > rect.hit")) {
    const on = hit.parentNode.getAttribute("data-index") === String(n);
    hit.setAttribute("fill", on ? colours.select : "transparent");
    hit.parentNode.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

/** The SVG as a standalone document (for the SVG export). */
export function serialise(svg) {
  const copy = svg.cloneNode(true);
  copy.removeAttribute("class");
  for (const g of copy.querySelectorAll("[tabindex]")) g.removeAttribute("tabindex");
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(copy);
}

/** The SVG drawn on a canvas at `scale`, as a PNG blob (for the PNG export). */
export function toPng(svg, scale = 2) {
  const text = serialise(svg);
  const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = Number(svg.getAttribute("width")) * scale;
      canvas.height = Number(svg.getAttribute("height")) * scale;
      const ctx = canvas.getContext("2d");
      ctx.scale(scale, scale);
      ctx.drawImage(img, 0, 0);
      URL.revokeObjectURL(url);
      canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the browser could not make a PNG"))), "image/png");
    };
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("the browser could not draw the SVG"));
    };
    img.src = url;
  });
}
