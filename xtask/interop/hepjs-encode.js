#!/usr/bin/env node
// Encode one HEPv3 packet with hep-js (npm hep-js@1.0.22) from JSON.
//
// usage: node hepjs-encode.js [FILE.json] > packet.hep      (JSON from FILE or stdin)
//
// Input JSON: {"rcinfo": {...}, "payload": "<string>"}  -- the same shape that
// hep-js decapsulate() returns, so decode -> encode round-trips.
// rcinfo keys actually read by hep-js 1.0.22 encapsulate() (the README example
// uses different, stale names):
//   protocolFamily (2|10, but only IPv4 address chunks are ever written),
//   protocol (IP proto, 17=udp), srcIp, dstIp (dotted IPv4), srcPort, dstPort,
//   timeSeconds, timeUseconds, payloadType (HEP chunk 0x0b), captureId,
//   hepNodeName (chunk 0x13; defaults to String(captureId) -> always present),
//   capturePass (chunk 0x0e, optional), correlation_id (chunk 0x11, optional),
//   mos (chunk 0x20, only with proto_type 32/35), transaction_type (0x24).
// Output: raw HEPv3 bytes on stdout. Used by `cargo xtask interop` (hep-js rows).
const fs = require('fs');
const HEPjs = require('hep-js');
const text = fs.readFileSync(process.argv[2] || 0, 'utf8');
const j = JSON.parse(text);
const rcinfo = j.rcinfo || j;
const payload = j.payload !== undefined ? j.payload : '';
const buf = HEPjs.encapsulate(payload, rcinfo);
process.stdout.write(buf);
