// The page's pure modules checked in node, without a browser or a server: the ladder's
// layout of a call (hep-server/web/fixtures/call.json: the Kamailio vectors of
// hep-testkit/testdata/kamailio/v3-udp-hlog-authkey-*.hep, with the side towards the UAS
// given its own Call-ID, as a B2BUA's second leg would have) and reading SIP.
//
//     node --test xtask/browser/unit.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { layout, seconds } from "../../hep-server/web/ladder.js";
import { describe, parseSip, header, startLine, classOf, endpoint } from "../../hep-server/web/sip.js";

const call = JSON.parse(readFileSync(new URL("../../hep-server/web/fixtures/call.json", import.meta.url)));

test("one row per message, in time order, labelled with method or status and (SDP)", () => {
  const lay = layout(call.messages);
  assert.equal(lay.rows.length, call.messages.length);
  assert.deepEqual(lay.rows.map((r) => r.text), [
    "INVITE (SDP)", "log", "INVITE (SDP)", "180 Ringing", "180 Ringing", "200 OK (SDP)", "200 OK (SDP)",
    "ACK", "log", "ACK", "BYE", "log", "BYE", "200 OK", "200 OK",
  ]);
  const ts = lay.rows.map((r) => r.message.ts);
  assert.deepEqual(ts, [...ts].sort((a, b) => a - b));
});

test("one column per address:port in order of first appearance", () => {
  const lay = layout(call.messages);
  assert.deepEqual(lay.columns.map((c) => c.addr), ["127.0.0.1:5061", "127.0.0.1:5060", "127.0.0.1:9060", "127.0.0.1:5070"]);
  const invite = lay.rows[0];
  assert.equal(lay.columns[invite.from].addr, "127.0.0.1:5061");
  assert.equal(lay.columns[invite.to].addr, "127.0.0.1:5060");
  // Columns are wide enough for every label, and apart.
  assert.ok(lay.x(1) - lay.x(0) >= Math.max(...lay.rows.map((r) => r.text.length)) * 7);
});

test("legs: the Call-ID of SIP, the correlation id of a log line", () => {
  const lay = layout(call.messages);
  assert.deepEqual(lay.legs, [call.call_id, `B-${call.call_id}`]);
  const legOf = (text, n = 0) => lay.rows.filter((r) => r.text === text)[n].leg;
  assert.equal(legOf("INVITE (SDP)", 0), 0);
  assert.equal(legOf("INVITE (SDP)", 1), 1);
  assert.equal(legOf("log", 0), 0);
});

test("non-SIP messages are dotted and classed apart; SIP classes follow the status", () => {
  const lay = layout(call.messages);
  for (const r of lay.rows) assert.equal(r.dotted, r.text === "log", r.text);
  const klass = Object.fromEntries(lay.rows.map((r) => [r.text, r.message.klass]));
  assert.equal(klass["INVITE (SDP)"], "request");
  assert.equal(klass["180 Ringing"], "1xx");
  assert.equal(klass["200 OK"], "2xx");
  assert.equal(klass.log, "other");
  assert.equal(classOf(startLine("SIP/2.0 302 Moved")), "3xx");
  assert.equal(classOf(startLine("SIP/2.0 486 Busy Here")), "error");
  assert.equal(classOf(startLine("SIP/2.0 603")), "error");
});

test("offsets from the first message and deltas from the previous, in seconds", () => {
  const lay = layout(call.messages);
  assert.equal(lay.rows[0].offset, "+0.000000");
  assert.equal(lay.rows[0].delta, "");
  const d = lay.rows[1].message.ts - lay.rows[0].message.ts;
  assert.equal(lay.rows[1].delta, seconds("Δ", d));
  assert.equal(seconds("+", 2_500_000), "+2.500000");
  assert.equal(seconds("+", 813), "+0.000813");
});

test("equal times keep the server's order; a message to itself is one column", () => {
  const rec = (ts_usec, src_port, dst_port, payload) => ({ src_ip: "10.0.0.1", src_port, dst_ip: "10.0.0.1", dst_port, ts_sec: 1, ts_usec, proto_type: 1, payload });
  const lay = layout([
    rec(5, 1, 2, "ACK sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"),
    rec(1, 1, 2, "INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"),
    rec(1, 2, 1, "SIP/2.0 100 Trying\r\nCall-ID: x\r\n\r\n"),
    rec(3, 2, 2, "OPTIONS sip:a@b SIP/2.0\r\ni: x\r\n\r\n"),
  ]);
  assert.deepEqual(lay.rows.map((r) => r.text), ["INVITE", "100 Trying", "OPTIONS", "ACK"]);
  assert.equal(lay.rows[2].from, lay.rows[2].to);
  assert.deepEqual(lay.legs, ["x"]);
});

test("reading SIP: folded headers, compact forms, bare LF, no body, garbage", () => {
  const p = parseSip("SIP/2.0 200 OK\nVia: a\n  b\ni: id@h\nc: application/sdp\n\nv=0\no=- 1 1 IN IP4 h\n");
  assert.equal(p.start, "SIP/2.0 200 OK");
  assert.deepEqual(p.headers[0], ["Via", "a b"]);
  assert.equal(header(p.headers, "Call-ID"), "id@h");
  assert.equal(header(p.headers, "content-type"), "application/sdp");
  assert.ok(p.body.startsWith("v=0"));
  assert.deepEqual(parseSip(undefined), { start: "", headers: [], body: "" });
  assert.equal(startLine("<script>alert(1)</script>"), null);
  const d = describe({ proto_type: 1, proto_name: "sip", payload: "<script>alert(1)</script>" });
  assert.equal(d.label, "sip");
  assert.equal(d.sip, false);
});

test("addresses print as the terminal ladder prints them", () => {
  assert.equal(endpoint("::1", 5060), "[::1]:5060");
  assert.equal(endpoint("10.0.0.1", 5060), "10.0.0.1:5060");
  assert.equal(endpoint(null, null), "-");
});
