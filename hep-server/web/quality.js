// A call's KPI summary and its QoS tab: what `GET /api/v1/calls/{id}` gives as `kpis` and
// `qos` (docs/KPI.md), drawn with createElement(NS) and textContent only: a stream name
// or an error text from a report is never parsed as markup. Charts are inline SVG, no
// library, nothing fetched.

import { h } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const num = (v) => typeof v === "number" && Number.isFinite(v);
const fixed = (v, digits) => (num(v) ? v.toFixed(digits) : "–");

/** The KPI figures of one Call-ID, as `[label, value]` pairs (only those known). */
export function kpiItems(k) {
  if (!k || typeof k !== "object") return [];
  const items = [];
  const ms = (v) => `${fixed(v, 1)} ms`;
  if (num(k.final_status)) items.push(["Result", `${k.final_status}${typeof k.status_class === "string" ? ` (${k.status_class})` : ""}`]);
  else if (typeof k.timed_out === "string") items.push(["Result", `none (timed out in ${k.timed_out === "setup" ? "setup" : "call"})`]);
  if (num(k.srd_ms)) items.push(["SRD", ms(k.srd_ms)]);
  if (num(k.pdd_ms)) items.push(["PDD", ms(k.pdd_ms)]);
  if (num(k.answer_ms)) items.push(["Answer", ms(k.answer_ms)]);
  if (num(k.duration_s)) items.push(["Duration", `${fixed(k.duration_s, 3)} s`]);
  if (typeof k.hangup === "string") items.push(["Hung up by", k.hangup]);
  if (num(k.q850_cause)) items.push(["Q.850 cause", String(k.q850_cause)]);
  if (num(k.reinvites) && k.reinvites > 0) items.push(["Re-INVITEs", String(k.reinvites)]);
  if (num(k.retransmissions)) items.push(["Retransmissions", String(k.retransmissions)]);
  if (num(k.register_status)) items.push(["Registration", `${k.register_status}, RRD ${ms(k.rrd_ms)}`]);
  return items;
}

/** The KPI summary under the call's title: the call's figures, its legs'. */
export function renderKpis(kpis) {
  if (!kpis || typeof kpis !== "object") return null;
  const legs = num(kpis.legs) ? kpis.legs : 1;
  const dl = (k) => h("dl", { class: "kpi-list" }, kpiItems(k).map(([t, d]) => h("div", {}, h("dt", {}, t), h("dd", {}, d))));
  const others = Array.isArray(kpis.other_legs) ? kpis.other_legs : [];
  return h(
    "section",
    { class: "kpis", "aria-label": "Call KPIs" },
    h("h2", {}, `KPIs · ${legs} leg${legs === 1 ? "" : "s"}`),
    dl(kpis),
    others.map((leg) => h("div", { class: "kpi-leg" }, h("h3", {}, "Leg ", h("code", {}, String(leg.call_id ?? ""))), dl(leg))),
  );
}

const SOURCES = { rtcp: "RTCP", rtcp_xr: "RTCP-XR", x_rtp_stat: "X-RTP-Stat" };

/** One small line chart of `key` over a stream's samples. */
export function chart(samples, key, label, unit, colour) {
  const W = 300;
  const H = 110;
  const pad = { l: 40, r: 10, t: 18, b: 20 };
  const points = samples.filter((s) => num(s[key]) && num(s.ts_usec));
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "qos-chart", "data-metric": key });
  svg.append(svgEl("title", {}, `${label} (${unit})`));
  svg.append(svgEl("text", { x: pad.l, y: 12, "font-size": 11, fill: "currentColor" }, `${label} (${unit})`));
  svg.append(svgEl("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, stroke: "currentColor", "stroke-opacity": 0.4 }));
  svg.append(svgEl("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, stroke: "currentColor", "stroke-opacity": 0.4 }));
  if (!points.length) {
    svg.append(svgEl("text", { x: pad.l + 8, y: H / 2, "font-size": 11, fill: "currentColor" }, "not reported"));
    return svg;
  }
  const t0 = points[0].ts_usec;
  const t1 = points[points.length - 1].ts_usec;
  const vmax = key === "mos" ? 5 : Math.max(...points.map((p) => p[key]), 0) || 1;
  const x = (t) => pad.l + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r) : (W - pad.l - pad.r) / 2);
  const y = (v) => H - pad.b - (Math.max(0, v) / vmax) * (H - pad.t - pad.b);
  svg.append(svgEl("text", { x: pad.l - 4, y: pad.t + 4, "font-size": 10, "text-anchor": "end", fill: "currentColor" }, fixed(vmax, vmax < 10 ? 2 : 0)));
  svg.append(svgEl("text", { x: pad.l - 4, y: H - pad.b, "font-size": 10, "text-anchor": "end", fill: "currentColor" }, "0"));
  svg.append(svgEl("text", { x: W - pad.r, y: H - 4, "font-size": 10, "text-anchor": "end", fill: "currentColor" }, `${fixed((t1 - t0) / 1e6, 0)} s`));
  if (points.length > 1) {
    svg.append(svgEl("polyline", { points: points.map((p) => `${x(p.ts_usec).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 1.5 }));
  }
  for (const p of points) {
    const dot = svgEl("circle", { cx: x(p.ts_usec).toFixed(1), cy: y(p[key]).toFixed(1), r: 3, fill: colour, class: "qos-point" });
    dot.append(svgEl("title", {}, `${fixed(p[key], 2)} ${unit} at ${typeof p.ts === "string" ? p.ts : ""}`));
    svg.append(dot);
  }
  return svg;
}

/** The QoS tab: a table of the streams, then each stream's charts. */
export function renderQos(qos, colours = {}) {
  const streams = qos && Array.isArray(qos.streams) ? qos.streams : [];
  const box = h("div", { class: "qos" });
  if (!streams.length) {
    box.append(h("p", { class: "muted" }, "No RTCP, RTCP-XR or X-RTP-Stat report for this call."));
  } else {
    const head = ["Source", "Stream", "Reports", "Jitter ms avg / max", "Loss % avg / max", "Lost", "RTT ms", "MOS avg / min"];
    const row = (s) => {
      const m = s.summary ?? {};
      return h(
        "tr",
        { "data-stream": String(s.stream ?? "") },
        h("td", {}, SOURCES[s.source] ?? String(s.source ?? "")),
        h("td", {}, h("code", {}, String(s.stream ?? ""))),
        h("td", { class: "num" }, String(m.samples ?? 0)),
        h("td", { class: "num" }, `${fixed(m.jitter_ms_avg, 1)} / ${fixed(m.jitter_ms_max, 1)}`),
        h("td", { class: "num" }, `${fixed(m.loss_pct_avg, 2)} / ${fixed(m.loss_pct_max, 2)}`),
        h("td", { class: "num" }, num(m.packets_lost) ? String(m.packets_lost) : "–"),
        h("td", { class: "num" }, fixed(m.rtt_ms_avg, 1)),
        h("td", { class: "num" }, `${fixed(m.mos_avg, 2)} / ${fixed(m.mos_min, 2)}`),
      );
    };
    box.append(
      h(
        "div",
        { class: "table-scroll" },
        h("table", { class: "qos-table" }, h("caption", { class: "visually-hidden" }, "Streams of the call"), h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, streams.map(row))),
      ),
    );
    for (const s of streams) {
      const samples = Array.isArray(s.samples) ? s.samples : [];
      box.append(
        h(
          "figure",
          { class: "qos-stream card" },
          h("figcaption", {}, `${SOURCES[s.source] ?? s.source} `, h("code", {}, String(s.stream ?? ""))),
          h(
            "div",
            { class: "qos-charts" },
            chart(samples, "loss_pct", "Loss", "%", colours.loss ?? "#c62828"),
            chart(samples, "jitter_ms", "Jitter", "ms", colours.jitter ?? "#1f5fbf"),
            chart(samples, "mos", "MOS", "1-5", colours.mos ?? "#1a7f37"),
          ),
        ),
      );
    }
  }
  if (qos && num(qos.unreadable) && qos.unreadable > 0) {
    box.append(h("p", { class: "status error" }, `${qos.unreadable} report(s) could not be read: ${String(qos.first_error ?? "")}`));
  }
  return box;
}
