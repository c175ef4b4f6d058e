// The page in a real browser (Debian's chromium, driven by playwright-core) against a
// running hep-server fed with the Kamailio vectors and a crafted hostile message.
// `cargo xtask browser` starts the server, feeds it and runs this with:
//
//   HEP_URL        the page, http://127.0.0.1:PORT
//   HEP_SINCE, HEP_UNTIL   an absolute window (RFC 3339) holding the vectors' capture times
//   HEP_CALL_UDP, HEP_CALL_IPV6, HEP_CALL_HLOG   the Call-IDs of the three vector calls
//                  (v3-udp-*, v3-udp-ipv6-*, v3-udp-hlog-authkey-*)
//   HEP_CALL_XSS   the Call-ID of the crafted message (sent now, From user `mallory`)
//   HEP_CALL_LEGS  the first leg of a B2BUA call whose second leg names it in X-CID
//   HEP_CALL_LONG  a call of 200 messages
//   HEP_CALL_QOS   an INVITE and its 200, and two RTCP reports (type 5 JSON, rtpengine's)
//                  naming it as correlation id: clean, then 23/256 lost and jitter 80
//   HEP_SHOTS      where screenshots go (target/browser)
//   HEP_TOKEN_URL, HEP_TOKEN   a second server that wants a token; this one reads capture
//                  id 2001 (the IPv4 call) and not capture id 1 (the crafted message)
//   HEP_UDP, HEP_TOKEN_UDP   the two servers' HEP UDP listeners (127.0.0.1:PORT): the
//                  live view's test sends new calls there itself
//   HEP_CLUSTER_URL, HEP_DEAD_PEER   a node with no calls of its own whose [cluster]
//                  peers are the first server (named node-open) and a URL where nothing
//                  listens (a node that is down)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//
//     node --test xtask/browser/browser.test.mjs

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through \`cargo xtask browser\``);
  return v;
}

const URL_ = env("HEP_URL");
const SINCE = env("HEP_SINCE");
const UNTIL = env("HEP_UNTIL");
const CALL = {
  udp: env("HEP_CALL_UDP"),
  ipv6: env("HEP_CALL_IPV6"),
  hlog: env("HEP_CALL_HLOG"),
  xss: env("HEP_CALL_XSS"),
  legs: env("HEP_CALL_LEGS"),
  long: env("HEP_CALL_LONG"),
  qos: env("HEP_CALL_QOS"),
};
const SHOTS = env("HEP_SHOTS");
const TOKEN_URL = env("HEP_TOKEN_URL");
const TOKEN = env("HEP_TOKEN");
const UDP = env("HEP_UDP");
const TOKEN_UDP = env("HEP_TOKEN_UDP");
const CLUSTER_URL = env("HEP_CLUSTER_URL");
const DEAD_PEER = env("HEP_DEAD_PEER");

/** The flags rust.md ("Known to work") starts chromium with on this kind of machine. */
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let context;
let profile;
const errors = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), "hep-browser-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ARGS,
    viewport: { width: 1440, height: 900 },
    acceptDownloads: true,
    timeout: 30_000,
    // Not UTC, so that "local" differs from UTC: +01:00 in November.
    timezoneId: "Europe/Paris",
  });
  context.setDefaultTimeout(10_000);
  context.on("weberror", (e) => errors.push(String(e.error())));
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function open(path) {
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  await page.goto(URL_ + path);
  return page;
}

const windowQuery = () => `range=custom&since=${encodeURIComponent(SINCE)}&until=${encodeURIComponent(UNTIL)}`;

async function resultIds(page) {
  await page.waitForFunction(() => {
    const s = document.querySelector("#status")?.textContent ?? "";
    return s !== "" && !s.startsWith("Searching");
  });
  return page.$$eval("#results tbody tr", (trs) => trs.map((tr) => tr.getAttribute("data-call-id")));
}

/** The ladder as `from -> to label` lines, and its column names. */
async function ladder(page) {
  await page.waitForSelector("#ladder g.msg");
  return page.$eval("#ladder svg", (svg) => {
    const cols = [...svg.querySelectorAll("text.column")].map((t) => t.textContent);
    const rows = [...svg.querySelectorAll("g.msg")].map((g) => {
      const line = g.querySelector("line, path");
      return {
        text: `${cols[g.getAttribute("data-from")]} -> ${cols[g.getAttribute("data-to")]} ${g.getAttribute("data-label")}`,
        dotted: line.hasAttribute("stroke-dasharray"),
        colour: line.getAttribute("stroke"),
      };
    });
    return { cols, rows };
  });
}

const A = "127.0.0.1:5061";
const P = "127.0.0.1:5060";
const B = "127.0.0.1:5070";
const UDP_FLOW = [
  `${A} -> ${P} INVITE (SDP)`, `${P} -> ${B} INVITE (SDP)`,
  `${B} -> ${P} 180 Ringing`, `${P} -> ${A} 180 Ringing`,
  `${B} -> ${P} 200 OK (SDP)`, `${P} -> ${A} 200 OK (SDP)`,
  `${A} -> ${P} ACK`, `${P} -> ${B} ACK`,
  `${A} -> ${P} BYE`, `${P} -> ${B} BYE`,
  `${B} -> ${P} 200 OK`, `${P} -> ${A} 200 OK`,
];

test("search by Call-ID through the form finds the call, and the URL holds the search", async () => {
  const page = await open("/");
  await page.check('input[name="range"][value="custom"]', { force: true });
  // Chromium keeps datetime-local values without seconds when they are 0.
  await page.fill('input[name="since"]', SINCE.slice(0, 16));
  await page.fill('input[name="until"]', UNTIL.slice(0, 16));
  await page.fill('input[name="call_id"]', CALL.udp);
  await page.click('button[type="submit"]');
  assert.deepEqual(await resultIds(page), [CALL.udp]);
  const q = new URL(page.url()).searchParams;
  assert.equal(q.get("call_id"), CALL.udp);
  assert.equal(q.get("range"), "custom");
  assert.equal(new Date(q.get("since")).getTime(), new Date(SINCE).getTime());
  // The shared link shows the same in a new page.
  const again = await open(new URL(page.url()).pathname + new URL(page.url()).search);
  assert.deepEqual(await resultIds(again), [CALL.udp]);
  const cells = await again.$$eval("#results tbody tr:first-child td", (tds) => tds.map((td) => td.textContent));
  assert.ok(cells.includes("sipp") && cells.includes("service"), `from and to users: ${cells}`);
  assert.ok(cells.includes("12"), `12 messages: ${cells}`);
  await page.close();
  await again.close();
});

test("search by user finds every call of that user; arrow keys move and Enter opens", async () => {
  const page = await open(`/?${windowQuery()}&user=sipp`);
  const ids = await resultIds(page);
  assert.deepEqual([...ids].sort(), [CALL.udp, CALL.ipv6, CALL.hlog].sort());
  await page.screenshot({ path: join(SHOTS, "search.png"), fullPage: true });
  await page.focus("#results tbody tr:first-child");
  await page.keyboard.press("ArrowDown");
  const selected = await page.$eval('#results tbody tr[aria-selected="true"]', (tr) => tr.getAttribute("data-call-id"));
  assert.equal(selected, ids[1]);
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute("data-call-id")), ids[1]);
  await page.keyboard.press("Enter");
  await page.waitForURL((u) => u.pathname.startsWith("/call/"));
  assert.equal(decodeURIComponent(new URL(page.url()).pathname.slice(6)), ids[1]);
  await page.waitForSelector("#ladder g.msg");
  // Back returns to the results.
  await page.goBack();
  assert.deepEqual(await resultIds(page), ids);
  await page.close();
});

test("sorting by a column reorders the rows and is kept in the URL", async () => {
  const page = await open(`/?${windowQuery()}&user=sipp`);
  await resultIds(page);
  await page.click('th button[data-sort="call_id"]');
  const down = await resultIds(page);
  assert.deepEqual(down, [...down].sort().reverse());
  await page.click('th button[data-sort="call_id"]');
  const up = await resultIds(page);
  assert.deepEqual(up, [...up].sort());
  assert.equal(new URL(page.url()).searchParams.get("sort"), "call_id");
  assert.equal(new URL(page.url()).searchParams.get("dir"), "asc");
  await page.close();
});

test("the ladder has one arrow per message, with the right labels and columns", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.udp)}`);
  const { cols, rows } = await ladder(page);
  assert.deepEqual(cols, [A, P, B]);
  assert.deepEqual(rows.map((r) => r.text), UDP_FLOW);
  assert.ok(rows.every((r) => !r.dotted), "SIP is drawn solid");
  const v6 = await ladder(await open(`/call/${encodeURIComponent(CALL.ipv6)}`));
  assert.deepEqual(v6.cols, ["[::1]:5061", "[::1]:5060", "[::1]:5070"]);
  assert.equal(v6.rows.length, 12);
  await page.close();
});

test("HEP log messages are drawn dotted in the call they correlate to", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.hlog)}`);
  const { rows } = await ladder(page);
  assert.equal(rows.length, 15);
  const logs = rows.filter((r) => r.text.endsWith(" log"));
  assert.equal(logs.length, 3);
  assert.ok(logs.every((r) => r.dotted) && rows.filter((r) => r.dotted).length === 3);
  assert.ok(logs.every((r) => r.text.startsWith(`${P} -> 127.0.0.1:9060`)), logs.map((r) => r.text).join("; "));
  await page.close();
});

test("correlated legs are coloured apart, with a legend", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.legs)}`);
  const { rows } = await ladder(page);
  assert.equal(rows.length, 2);
  assert.notEqual(rows[0].colour, rows[1].colour, "each leg its own colour");
  const legend = await page.$$eval("#legs li", (lis) => lis.map((li) => li.textContent));
  assert.equal(legend.length, 2);
  assert.ok(legend[0].includes(CALL.legs), legend.join("; "));
  await page.screenshot({ path: join(SHOTS, "call-legs.png") });
  await page.close();
});

test("[aliases] name the ladder's columns, with the address under the name", async () => {
  // The server's [aliases]: "192.0.2.2" = "b2bua", "192.0.2.3:5060" = "carrier".
  const page = await open(`/call/${encodeURIComponent(CALL.legs)}`);
  const { cols, rows } = await ladder(page);
  assert.deepEqual(cols, ["192.0.2.1:5060", "b2bua", "b2bua", "carrier"]);
  assert.deepEqual(rows.map((r) => r.text), ["192.0.2.1:5060 -> b2bua INVITE", "b2bua -> carrier INVITE"]);
  const addrs = await page.$$eval("#ladder svg text.column", (ts) => ts.map((t) => t.getAttribute("data-addr")));
  assert.deepEqual(addrs, ["192.0.2.1:5060", "192.0.2.2:5060", "192.0.2.2:5062", "192.0.2.3:5060"]);
  // Each aliased column shows its address under the name, in the drawing itself.
  const texts = await page.$$eval("#ladder svg > text", (ts) => ts.map((t) => t.textContent));
  for (const a of addrs.slice(1)) assert.ok(texts.includes(a), `${a} under its alias: ${texts}`);
  await page.close();
});

test("node and text fields search and are kept in the URL", async () => {
  const page = await open(`/?${windowQuery()}`);
  await resultIds(page);
  // A Via branch of the IPv4 call, in another case: a header value no other field holds.
  await page.fill('input[name="q"]', "Z9HG4BK-13274-1-0");
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.searchParams.get("q") === "Z9HG4BK-13274-1-0");
  assert.deepEqual(await resultIds(page), [CALL.udp]);
  assert.equal(await page.$(".scan-truncated"), null, "the text search read every candidate");
  await page.fill('input[name="node"]', "no-such-node");
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.searchParams.get("node") === "no-such-node");
  assert.deepEqual(await resultIds(page), []);
  // The link holds both.
  const again = await open(new URL(page.url()).pathname + new URL(page.url()).search);
  await resultIds(again);
  assert.equal(await again.inputValue('input[name="q"]'), "Z9HG4BK-13274-1-0");
  assert.equal(await again.inputValue('input[name="node"]'), "no-such-node");
  await page.close();
  await again.close();
});

test("a 200-message call is drawn within 300 ms of the API's answer", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.long)}`);
  await page.waitForFunction(() => document.querySelectorAll("#ladder g.msg").length === 200);
  const ms = await page.evaluate(() => performance.getEntriesByName("hep:call-drawn")[0]?.duration);
  console.log(`# 200-message call drawn in ${ms?.toFixed(1)} ms`);
  assert.ok(ms !== undefined && ms <= 300, `drawn in ${ms} ms`);
  await page.close();
});

test("clicking an arrow opens the message: raw text, headers, SDP and HEP details", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.udp)}`);
  await ladder(page);
  await page.click("#ladder g.msg >> nth=0");
  await page.waitForSelector("#message:not([hidden])");
  assert.match(await page.textContent("#message-title"), /INVITE \(SDP\)/);
  assert.match(await page.textContent("#raw"), /^INVITE sip:service@127\.0\.0\.1:5060 SIP\/2\.0\r?\n/);
  const headers = await page.$$eval("#headers tbody tr", (trs) => trs.map((tr) => tr.firstChild.textContent));
  assert.ok(headers.includes("Call-ID") && headers.includes("CSeq"), headers.join(","));
  assert.match(await page.textContent("#sdp"), /^v=0/);
  const details = await page.textContent("#hep-details");
  for (const want of ["2001", "udp", "127.0.0.1:5061", "2026-11-26 05:21:49"]) assert.ok(details.includes(want), `${want} in ${details}`);
  assert.ok(new URL(page.url()).searchParams.get("msg"), "the open message is in the URL");
  // Keyboard: the next arrow by ArrowDown, opened with Enter.
  await page.focus("#ladder g.msg >> nth=0");
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#message-title").textContent.startsWith("2."));
  await page.screenshot({ path: join(SHOTS, "call.png"), fullPage: true });
  // The same link opens the same message.
  const again = await open(new URL(page.url()).pathname + new URL(page.url()).search);
  await again.waitForSelector("#message:not([hidden])");
  assert.match(await again.textContent("#message-title"), /^2\. INVITE/);
  await page.close();
  await again.close();
});

test("times are UTC by default and local time on demand", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.udp)}?msg=0`);
  await page.waitForSelector("#message:not([hidden])");
  assert.match(await page.textContent("#hep-details"), /2026-11-26 05:21:49\.909050 UTC/);
  await page.selectOption("#call-tz", "local");
  await page.waitForFunction(() => document.querySelector("#hep-details")?.textContent.includes("06:21:49"));
  assert.match(await page.textContent("#hep-details"), /2026-11-26 06:21:49\.909050 UTC\+01:00 \(local\)/);
  assert.equal(new URL(page.url()).searchParams.get("tz"), "local");
  // The search form reads its range in the chosen zone too.
  const search = await open(`/?${windowQuery()}&tz=local&call_id=${encodeURIComponent(CALL.udp)}`);
  assert.deepEqual(await resultIds(search), [CALL.udp]);
  assert.equal(await search.inputValue('input[name="since"]'), isoLocalParis(SINCE));
  await page.close();
  await search.close();
});

/** An RFC 3339 UTC time as a datetime-local value in Paris in winter (UTC+1). */
function isoLocalParis(iso) {
  return new Date(new Date(iso).getTime() + 3600e3).toISOString().slice(0, 19).replace(/:00$/, "");
}

test("exports: the pcap is a pcap, the SVG holds the ladder", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.udp)}`);
  await ladder(page);
  const pcap = await page.request.get(URL_ + (await page.getAttribute("#export-pcap", "href")));
  assert.equal(pcap.status(), 200);
  const magic = (await pcap.body()).readUInt32LE(0);
  assert.ok([0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1].includes(magic), `pcap magic ${magic.toString(16)}`);
  const text = await page.request.get(URL_ + (await page.getAttribute("#export-text", "href")));
  assert.equal(text.status(), 200);
  assert.match(await text.text(), /INVITE sip:service@127\.0\.0\.1:5060/);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-svg")]);
  const path = join(SHOTS, "call.svg");
  await download.saveAs(path);
  const svg = (await import("node:fs")).readFileSync(path, "utf8");
  assert.ok(svg.startsWith("<?xml"), svg.slice(0, 40));
  assert.equal(svg.match(/class="msg"/g)?.length, 12);
  const [png] = await Promise.all([page.waitForEvent("download"), page.click("#export-png")]);
  await png.saveAs(join(SHOTS, "call-export.png"));
  await page.close();
});

test("a message carrying <script> shows as text, and nothing from it runs", async () => {
  const page = await open("/?user=mallory");
  assert.deepEqual(await resultIds(page), [CALL.xss]);
  const cell = await page.textContent("#results tbody td.call-id");
  assert.equal(cell, CALL.xss);
  assert.equal(await page.$$eval("#results tbody i", (n) => n.length), 0, "no element made of the Call-ID");
  await page.focus("#results tbody tr:first-child");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#ladder g.msg");
  await page.click("#ladder g.msg >> nth=0");
  const raw = await page.textContent("#raw");
  assert.ok(raw.includes("<script>window.__xss=3</script>"), raw);
  assert.ok(raw.includes('<img src=x onerror="window.__xss=2">'), raw);
  const from = await page.$$eval("#headers tbody tr", (trs) => trs.find((tr) => tr.firstChild.textContent === "From")?.lastChild.textContent);
  assert.ok(from.includes("<script>window.__xss=1</script>"), from);
  assert.equal(await page.evaluate(() => window.__xss), undefined, "a script from the message ran");
  assert.equal(await page.evaluate(() => document.scripts.length), 1, "only the page's own script");
  assert.equal(await page.$$eval("#message img, #message script, #ladder i", (n) => n.length), 0);
  assert.equal(await page.textContent("#call-title"), CALL.xss);
  await page.screenshot({ path: join(SHOTS, "call-xss.png"), fullPage: true });
  await page.close();
});

test("on a phone the ladder scrolls sideways and the message stacks under it; dark mode follows the system", async () => {
  const page = await context.newPage();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(`${URL_}/call/${encodeURIComponent(CALL.udp)}`);
  await ladder(page);
  await page.click("#ladder g.msg >> nth=0");
  const box = await page.$eval("#ladder", (d) => ({ scroll: d.scrollWidth, client: d.clientWidth, bottom: d.getBoundingClientRect().bottom }));
  assert.ok(box.scroll > box.client, `the ladder scrolls (${box.scroll} > ${box.client})`);
  const panelTop = await page.$eval("#message", (m) => m.getBoundingClientRect().top);
  assert.ok(panelTop >= box.bottom, "the panel is under the ladder");
  const bg = await page.$eval("body", (b) => getComputedStyle(b).backgroundColor);
  assert.notEqual(bg, "rgb(244, 245, 247)", "dark background");
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), true, "the page itself does not scroll sideways");
  await page.screenshot({ path: join(SHOTS, "call-phone-dark.png"), fullPage: true });
  await page.close();
});

test("a server that wants a token: the page asks for it, and the token sees its capture ids only", async () => {
  const page = await context.newPage();
  await page.goto(`${TOKEN_URL}/?${windowQuery()}&user=sipp`);
  await page.waitForSelector("#status form.token");
  assert.match(await page.textContent("#status"), /unauthorized/);
  await page.fill('#status input[name="token"]', TOKEN);
  await page.click('#status form.token button');
  assert.deepEqual(await resultIds(page), [CALL.udp]);
  // The crafted message is capture id 1: not this token's.
  await page.goto(`${TOKEN_URL}/?user=mallory`);
  assert.deepEqual(await resultIds(page), []);
  await page.goto(`${TOKEN_URL}/call/${encodeURIComponent(CALL.xss)}`);
  await page.waitForFunction(() => document.querySelector("#call-status").textContent.includes("not_found") || document.querySelectorAll("#ladder g.msg").length > 0);
  assert.equal(await page.$$eval("#ladder g.msg", (g) => g.length), 0);
  // The exports send the token too.
  await page.goto(`${TOKEN_URL}/call/${encodeURIComponent(CALL.udp)}`);
  await ladder(page);
  const [pcap] = await Promise.all([page.waitForEvent("download"), page.click("#export-pcap")]);
  const path = join(SHOTS, "token.pcap");
  await pcap.saveAs(path);
  const bytes = (await import("node:fs")).readFileSync(path);
  assert.ok(bytes.length > 24 && [0xa1b2c3d4, 0xd4c3b2a1].includes(bytes.readUInt32LE(0)), `a pcap of ${bytes.length} bytes`);
  await page.close();
});

// ===== the live view =====

/** A HEPv3 message (IPv4/UDP, SIP) of `captureId` carrying `sip`, captured now. */
function hep3(captureId, sip) {
  const chunk = (type, data) => {
    const head = Buffer.alloc(6);
    head.writeUInt16BE(0, 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt16BE(6 + data.length, 4);
    return Buffer.concat([head, data]);
  };
  const u8 = (v) => Buffer.from([v]);
  const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
  const now = Date.now();
  const chunks = Buffer.concat([
    chunk(1, u8(2)), // IPv4
    chunk(2, u8(17)), // UDP
    chunk(3, Buffer.from([192, 0, 2, 1])),
    chunk(4, Buffer.from([192, 0, 2, 2])),
    chunk(7, u16(5060)),
    chunk(8, u16(5060)),
    chunk(9, u32(Math.floor(now / 1000))),
    chunk(10, u32((now % 1000) * 1000)),
    chunk(11, u8(1)), // SIP
    chunk(12, u32(captureId)),
    chunk(15, Buffer.from(sip)),
  ]);
  const head = Buffer.alloc(6);
  head.write("HEP3", 0, "ascii");
  head.writeUInt16BE(6 + chunks.length, 4);
  return Buffer.concat([head, chunks]);
}

function invite(callId, from) {
  return `INVITE sip:bob@example.com SIP/2.0\r\nFrom: <sip:${from}@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: ${callId}\r\nCSeq: 1 INVITE\r\n\r\n`;
}

async function sendHep(to, message) {
  const [host, port] = to.split(":");
  const socket = createSocket("udp4");
  await new Promise((ok, fail) => socket.send(message, Number(port), host, (e) => (e ? fail(e) : ok())));
  socket.close();
}

/** Switches Live on and waits until the stream is open. */
async function liveOn(page) {
  await page.click("#live");
  assert.equal(await page.getAttribute("#live", "aria-pressed"), "true");
  // The stream is open (the page marks it when its EventSource says so).
  await page.waitForSelector('#live[data-state="open"]');
  assert.match(await page.textContent("#status"), /^Live: waiting/);
}

test("the live view shows a new call within 1 s, newest first, and clicking it opens the call", async () => {
  const page = await open(`/?${windowQuery()}`);
  await resultIds(page);
  await liveOn(page);
  const first = `live-1-${Date.now()}@192.0.2.1`;
  let sent = Date.now();
  await sendHep(UDP, hep3(2001, invite(first, "live-alice")));
  await page.waitForSelector(`#results tbody tr[data-call-id="${first}"]`, { timeout: 1_000 });
  const took = Date.now() - sent;
  assert.ok(took <= 1_000, `the row came after ${took} ms`);
  const second = `live-2-${Date.now()}@192.0.2.1`;
  sent = Date.now();
  await sendHep(UDP, hep3(2001, invite(second, "live-bob")));
  await page.waitForSelector(`#results tbody tr[data-call-id="${second}"]`, { timeout: 1_000 });
  assert.deepEqual(await page.$$eval("#results tbody tr", (trs) => trs.map((tr) => tr.getAttribute("data-call-id"))), [second, first]);
  assert.match(await page.textContent(`#results tbody tr[data-call-id="${second}"]`), /live-bob/);
  await page.screenshot({ path: join(SHOTS, "live.png") });
  // Clicking a live call opens it (the live view ends).
  await page.click(`#results tbody tr[data-call-id="${second}"] a`);
  await page.waitForURL(/\/call\//);
  await ladder(page);
  assert.equal(await page.getAttribute("#live", "aria-pressed"), "false");
  await page.close();
});

test("the live view with a token shows the token's capture ids only", async () => {
  const page = await context.newPage();
  await page.goto(`${TOKEN_URL}/?${windowQuery()}&user=sipp`);
  await page.waitForSelector("#status form.token");
  await page.fill('#status input[name="token"]', TOKEN);
  await page.click("#status form.token button");
  await resultIds(page);
  await liveOn(page);
  const other = `live-other-${Date.now()}@192.0.2.1`;
  const mine = `live-mine-${Date.now()}@192.0.2.1`;
  await sendHep(TOKEN_UDP, hep3(2002, invite(other, "eve")));
  await sendHep(TOKEN_UDP, hep3(2001, invite(mine, "alice")));
  await page.waitForSelector(`#results tbody tr[data-call-id="${mine}"]`, { timeout: 1_000 });
  await page.waitForTimeout(300);
  assert.deepEqual(await page.$$eval("#results tbody tr", (trs) => trs.map((tr) => tr.getAttribute("data-call-id"))), [mine]);
  // Off: the search of the URL again.
  await page.click("#live");
  assert.deepEqual(await resultIds(page), [CALL.udp]);
  await page.close();
});

test("the call view sums up its KPIs, and its QoS tab charts each RTCP stream", async () => {
  const page = await open(`/call/${encodeURIComponent(CALL.qos)}`);
  await page.waitForSelector("#call-kpis .kpi-list");
  const kpis = await page.$eval("#call-kpis", (n) => n.textContent);
  assert.match(kpis, /· 1 leg(?!s)/);
  assert.match(kpis, /Result200 \(2xx\)/);
  assert.match(kpis, /SRD[0-9.]+ ms/);
  assert.equal(await page.$eval("#tab-qos", (n) => n.textContent), "QoS (1 stream)");
  assert.equal(await page.isVisible("#qos-panel"), false, "the ladder first");
  await page.click("#tab-qos");
  assert.equal(await page.isVisible("#qos-panel"), true);
  assert.equal(await page.isVisible("#ladder"), false);
  const row = await page.$$eval("#qos-panel tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  // fraction_lost 23/256 = 8.98 % (its mean with the clean report: 4.49); jitter 80 / 8000 Hz = 10 ms.
  assert.deepEqual(row, [["RTCP", "ssrc:0x5a1df00d", "2", "5.0 / 10.0", "4.49 / 8.98", "24", "–", "4.00 / 3.60"]]);
  const charts = await page.$$eval("#qos-panel svg.qos-chart", (svgs) => svgs.map((s) => [s.getAttribute("data-metric"), s.querySelectorAll("circle.qos-point").length]));
  assert.deepEqual(charts, [["loss_pct", 2], ["jitter_ms", 2], ["mos", 2]]);
  // The points' tooltips carry the values.
  const tips = await page.$$eval("#qos-panel svg[data-metric=loss_pct] circle title", (ts) => ts.map((t) => t.textContent.split(" at ")[0]));
  assert.deepEqual(tips, ["0.00 %", "8.98 %"]);
  await page.screenshot({ path: join(SHOTS, "call-qos.png"), fullPage: true });
  // Arrow keys go back to the ladder.
  await page.focus("#tab-qos");
  await page.keyboard.press("ArrowLeft");
  assert.equal(await page.isVisible("#ladder"), true);
  await page.close();
});

test("through a node with [cluster] peers: a peer's calls name their node, and a notice names the peer that did not answer", async () => {
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  await page.goto(`${CLUSTER_URL}/?${windowQuery()}&user=sipp`);
  const ids = await resultIds(page);
  assert.deepEqual([...ids].sort(), [CALL.udp, CALL.ipv6, CALL.hlog].sort());
  const head = await page.$$eval("#results thead th", (ths) => ths.map((th) => th.textContent));
  const column = head.findIndex((t) => t.startsWith("Node"));
  assert.ok(column >= 0, `a Node column in ${head}`);
  const nodes = await page.$$eval(`#results tbody tr td:nth-child(${column + 1})`, (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(nodes, ["node-open", "node-open", "node-open"]);
  const notice = page.locator("#status .unanswered");
  await notice.waitFor();
  assert.ok(await notice.isVisible());
  assert.equal(await notice.textContent(), "1 node did not answer:");
  const status = await page.textContent("#status");
  assert.ok(status.includes(DEAD_PEER), status);
  assert.ok(status.includes("missing from this list"), status);
  await page.screenshot({ path: join(SHOTS, "cluster.png"), fullPage: true });
  // A peer's call opens from this node, and says which node holds it.
  await page.click(`#results tbody tr[data-call-id="${CALL.udp}"] a`);
  await page.waitForSelector("#ladder g.msg");
  const callStatus = await page.textContent("#call-status");
  assert.ok(callStatus.includes("held by node-open"), callStatus);
  await page.close();
});

test("no script errors on any page", () => {
  assert.deepEqual(errors, []);
});
