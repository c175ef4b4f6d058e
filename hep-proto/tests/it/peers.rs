//! Our decode of every Kamailio vector against what two independent implementations read
//! from the same bytes (`hep-testkit/testdata/kamailio/README.md`):
//! - Kamailio 5.6.3 `sipcapture`: the rows it stored in SQLite
//!   (`decoded-kamailio-sipcapture.tsv`, `-tcp.tsv`, `decoded-kamailio-logs_capture.tsv`);
//! - hep-js 1.0.22 `decapsulate()` of every HEPv3 packet (`decoded-hepjs.jsonl`).
//!
//! Every column or key of a reading is either compared with our decode or skipped with a
//! stated reason; an unknown one fails the test, so no field is dropped silently.

use std::collections::HashMap;
use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use hep_proto::{HepCodec, HepMessage, HepVersion, ProtoType, ip_proto};
use hep_testkit::vectors;
use serde_json::Value;
use tokio_util::codec::Decoder;

/// One TSV file: `#` comment lines, a header line, then rows; as column -> value maps.
fn tsv(name: &str) -> Vec<HashMap<String, String>> {
    let text = String::from_utf8(vectors::read(&format!("kamailio/{name}"))).unwrap();
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty());
    let header: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            assert_eq!(cells.len(), header.len(), "{name}: {line}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| ((*h).to_owned(), c.to_owned()))
                .collect()
        })
        .collect()
}

fn decode_file(file: &str) -> HepMessage {
    HepMessage::decode(vectors::read(&format!("kamailio/{file}")))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The frames of `v3-tcp-stream.bin`, decoded through the stream codec.
fn decode_stream() -> Vec<HepMessage> {
    let mut buf = BytesMut::from(&vectors::read("kamailio/v3-tcp-stream.bin")[..]);
    let mut codec = HepCodec::new();
    let mut out = vec![];
    while let Some(msg) = codec.decode(&mut buf).unwrap() {
        out.push(msg);
    }
    assert!(buf.is_empty());
    out
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).expect("UTF-8 text")
}

/// The SIP start line and Call-ID of a payload, as Kamailio's parser takes them.
struct Sip<'a> {
    /// `INVITE` for a request, the status code (`180`) for a reply: Kamailio's `method`.
    method: &'a str,
    /// Empty for a request, the reason phrase for a reply.
    reason: &'a str,
    /// `first_line.type`: 1 request, 2 reply.
    kind: u8,
    call_id: &'a str,
}

fn sip(payload: &str) -> Sip<'_> {
    let (start, headers) = payload.split_once("\r\n").expect("a SIP start line");
    let (method, reason, kind) = match start.strip_prefix("SIP/2.0 ") {
        Some(status) => {
            let (code, reason) = status.split_once(' ').unwrap_or((status, ""));
            (code, reason, 2)
        }
        None => (start.split(' ').next().unwrap(), "", 1),
    };
    let call_id = headers
        .split("\r\n")
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            (name.eq_ignore_ascii_case("Call-ID") || name == "i").then(|| value.trim())
        })
        .expect("a Call-ID header");
    Sip {
        method,
        reason,
        kind,
        call_id,
    }
}

/// Kamailio's `PROTO_*` number for the HEP IP protocol (sipcapture maps only these two).
fn kamailio_proto(msg: &HepMessage) -> String {
    match msg.ip_proto {
        Some(ip_proto::UDP) => "1".into(),
        Some(ip_proto::TCP) => "2".into(),
        other => panic!("no Kamailio PROTO_* for IP protocol {other:?}"),
    }
}

/// `micro_ts` and `node` as sipcapture derives them: from the HEP time and capture id
/// when the message has a time, else from the receive time (`None`: not ours to check).
fn kamailio_time_and_node(msg: &HepMessage) -> (Option<String>, String) {
    match (msg.ts_sec, msg.ts_usec) {
        (Some(sec), Some(usec)) if sec != 0 => (
            Some((u64::from(sec) * 1_000_000 + u64::from(usec)).to_string()),
            format!("kamrecv:{}", msg.capture_id.unwrap_or(0)),
        ),
        _ => {
            // Only HEPv1 lacks the time; there micro_ts is Kamailio's receive time.
            assert_eq!(msg.version, Some(HepVersion::V1), "a message without time");
            (None, "kamrecv".into())
        }
    }
}

fn ip(v: &str) -> Option<IpAddr> {
    Some(v.parse().unwrap_or_else(|e| panic!("{v:?}: {e}")))
}

/// One sip_capture row against our decode of the message it was stored from.
fn check_sip_row(what: &str, row: &HashMap<String, String>, msg: &HepMessage) {
    let payload = text(msg.payload.bytes());
    let sip = sip(payload);
    let (micro_ts, node) = kamailio_time_and_node(msg);
    for (col, want) in row {
        let want = want.as_str();
        let ctx = format!("{what}, column {col}");
        match col.as_str() {
            // The row's key (file name) and SQLite's row id (insertion order).
            "file" | "id" => {}
            "micro_ts" => {
                if let Some(ts) = &micro_ts {
                    assert_eq!(ts, want, "{ctx}");
                }
            }
            "method" => assert_eq!(sip.method, want, "{ctx}"),
            "reply_reason" => assert_eq!(sip.reason, want, "{ctx}"),
            "type" => assert_eq!(sip.kind.to_string(), want, "{ctx}"),
            "source_ip" => assert_eq!(msg.src_ip, ip(want), "{ctx}"),
            "source_port" => assert_eq!(
                msg.src_port.map(|p| p.to_string()).as_deref(),
                Some(want),
                "{ctx}"
            ),
            "destination_ip" => assert_eq!(msg.dst_ip, ip(want), "{ctx}"),
            "destination_port" => {
                assert_eq!(
                    msg.dst_port.map(|p| p.to_string()).as_deref(),
                    Some(want),
                    "{ctx}"
                );
            }
            "proto" => assert_eq!(kamailio_proto(msg), want, "{ctx}"),
            "family" => assert_eq!(
                msg.family.map(|f| f.wire().to_string()).as_deref(),
                Some(want),
                "{ctx}"
            ),
            "node" => assert_eq!(node, want, "{ctx}"),
            // Chunk 0x11 when the message has one, else Kamailio stores the Call-ID.
            "correlation_id" => {
                let ours = msg.correlation_id.as_ref().map_or(sip.call_id, text);
                assert_eq!(ours, want, "{ctx}");
            }
            "callid" => assert_eq!(sip.call_id, want, "{ctx}"),
            "msglen" => assert_eq!(payload.len().to_string(), want, "{ctx}"),
            other => panic!("{what}: unmapped sipcapture column {other}"),
        }
    }
}

/// Every UDP vector Kamailio stored as SIP (v1, v2, v2-IPv6, v3, v3-IPv6, auth key),
/// field by field.
#[test]
fn kamailio_sipcapture_rows_match_our_decode() {
    let rows = tsv("decoded-kamailio-sipcapture.tsv");
    for row in &rows {
        let file = &row["file"];
        check_sip_row(file, row, &decode_file(file));
    }
    assert_eq!(rows.len(), 72);
}

/// The TCP stream, which Kamailio stored in stream order: row `id` N is frame N.
#[test]
fn kamailio_sipcapture_tcp_rows_match_our_stream_decode() {
    let rows = tsv("decoded-kamailio-sipcapture-tcp.tsv");
    let frames = decode_stream();
    assert_eq!(rows.len(), frames.len());
    for row in &rows {
        let id: usize = row["id"].parse().unwrap();
        let msg = &frames[id - 1];
        check_sip_row(&format!("v3-tcp-stream.bin frame {id}"), row, msg);
        // The same message as the split file.
        assert_eq!(*msg, decode_file(&format!("v3-tcp-{id:04}.hep")));
    }
    assert_eq!(rows.len(), 12);
}

/// The HEP log packets (type 100) of the auth-key set went to logs_capture, in file
/// order; every other packet of the set is a sip_capture row.
#[test]
fn kamailio_logs_capture_rows_match_our_decode() {
    let stored_as_sip: Vec<String> = tsv("decoded-kamailio-sipcapture.tsv")
        .into_iter()
        .map(|row| row["file"].clone())
        .collect();
    let mut logs = vec![];
    for (file, bytes) in vectors::kamailio("v3-udp-hlog-authkey-") {
        let msg = HepMessage::decode(bytes).unwrap();
        let is_log = msg.proto_type == Some(ProtoType::Log);
        assert_eq!(is_log, !stored_as_sip.contains(&file), "{file}");
        if is_log {
            logs.push((file, msg));
        }
    }
    // (The upstream README says 0002, 0008, 0011; the packets themselves, hepdump,
    // tshark and both Kamailio tables say 0002, 0009, 0012.)
    let names: Vec<&str> = logs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "v3-udp-hlog-authkey-0002.hep",
            "v3-udp-hlog-authkey-0009.hep",
            "v3-udp-hlog-authkey-0012.hep"
        ]
    );

    let rows = tsv("decoded-kamailio-logs_capture.tsv");
    assert_eq!(rows.len(), logs.len());
    for row in &rows {
        let id: usize = row["id"].parse().unwrap();
        let (file, msg) = &logs[id - 1];
        let (micro_ts, node) = kamailio_time_and_node(msg);
        for (col, want) in row {
            let want = want.as_str();
            let ctx = format!("{file}, column {col}");
            match col.as_str() {
                "id" => {} // the key: insertion order
                "micro_ts" => assert_eq!(micro_ts.as_deref(), Some(want), "{ctx}"),
                "correlation_id" => {
                    assert_eq!(msg.correlation_id.as_ref().map(text), Some(want), "{ctx}");
                }
                "source_ip" => assert_eq!(msg.src_ip, ip(want), "{ctx}"),
                "source_port" => assert_eq!(
                    msg.src_port.map(|p| p.to_string()).as_deref(),
                    Some(want),
                    "{ctx}"
                ),
                "destination_ip" => assert_eq!(msg.dst_ip, ip(want), "{ctx}"),
                "destination_port" => {
                    assert_eq!(
                        msg.dst_port.map(|p| p.to_string()).as_deref(),
                        Some(want),
                        "{ctx}"
                    );
                }
                "proto" => assert_eq!(kamailio_proto(msg), want, "{ctx}"),
                "family" => assert_eq!(
                    msg.family.map(|f| f.wire().to_string()).as_deref(),
                    Some(want),
                    "{ctx}"
                ),
                // sipcapture's record type for HEP type 100 (5 rtcp -> 3, 32 -> 2, 99 -> 4).
                "type" => {
                    assert_eq!(msg.proto_type, Some(ProtoType::Log), "{ctx}");
                    assert_eq!(want, "5", "{ctx}");
                }
                "node" => assert_eq!(node, want, "{ctx}"),
                "msg" => assert_eq!(text(msg.payload.bytes()), want, "{ctx}"),
                other => panic!("{file}: unmapped logs_capture column {other}"),
            }
        }
    }
}

/// hep-js `decapsulate()` of every v3 packet (63 readings: 51 files and the 12 frames of
/// the TCP stream), key by key.
#[test]
fn hepjs_readings_match_our_decode() {
    let stream = decode_stream();
    let lines = String::from_utf8(vectors::read("kamailio/decoded-hepjs.jsonl")).unwrap();
    let mut checked = 0;
    for line in lines.lines() {
        let reading: Value = serde_json::from_str(line).unwrap();
        let file = reading["file"].as_str().unwrap();
        let frame = reading["frame"].as_u64().unwrap();
        let what = format!("{file} frame {frame}");
        assert_eq!(
            reading["ok"],
            Value::Bool(true),
            "{what}: hep-js decoded it"
        );
        let msg = if file == "v3-tcp-stream.bin" {
            stream[usize::try_from(frame).unwrap() - 1].clone()
        } else {
            assert_eq!(frame, 1, "{what}");
            decode_file(file)
        };
        assert_eq!(msg.version, Some(HepVersion::V3), "{what}");

        for (key, value) in reading.as_object().unwrap() {
            match key.as_str() {
                "file" | "frame" | "ok" => {} // the key, and hep-js's success flag (checked)
                "payload" => assert_eq!(
                    Some(text(msg.payload.bytes())),
                    value.as_str(),
                    "{what}: payload"
                ),
                "rcinfo" => check_rcinfo(&what, value, &msg),
                other => panic!("{what}: unmapped hep-js key {other}"),
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 63);
}

fn check_rcinfo(what: &str, rcinfo: &Value, msg: &HepMessage) {
    let rcinfo = rcinfo.as_object().unwrap();
    for (key, value) in rcinfo {
        let ctx = format!("{what}: rcinfo.{key}");
        let num = value.as_u64();
        let str = value.as_str();
        match key.as_str() {
            "protocolFamily" => assert_eq!(msg.family.map(|f| u64::from(f.wire())), num, "{ctx}"),
            "protocol" => assert_eq!(msg.ip_proto.map(u64::from), num, "{ctx}"),
            "srcIp" => assert_eq!(msg.src_ip, str.and_then(ip), "{ctx}"),
            "dstIp" => assert_eq!(msg.dst_ip, str.and_then(ip), "{ctx}"),
            "srcPort" => assert_eq!(msg.src_port.map(u64::from), num, "{ctx}"),
            "dstPort" => assert_eq!(msg.dst_port.map(u64::from), num, "{ctx}"),
            "timeSeconds" => assert_eq!(msg.ts_sec.map(u64::from), num, "{ctx}"),
            "timeUseconds" => assert_eq!(msg.ts_usec.map(u64::from), num, "{ctx}"),
            "payloadType" => assert_eq!(msg.proto_type.map(|t| u64::from(t.id())), num, "{ctx}"),
            "captureId" => assert_eq!(msg.capture_id.map(u64::from), num, "{ctx}"),
            "capturePass" => assert_eq!(msg.auth_key.as_ref().map(text), str, "{ctx}"),
            "correlation_id" => assert_eq!(msg.correlation_id.as_ref().map(text), str, "{ctx}"),
            other => panic!("{what}: unmapped hep-js rcinfo key {other}"),
        }
    }
    // hep-js drops IPv6 address chunks (05/06): its reading has no srcIp/dstIp there.
    // Everything else we decode, it has too.
    for (key, ours) in [("srcIp", msg.src_ip), ("dstIp", msg.dst_ip)] {
        if !rcinfo.contains_key(key) {
            assert!(
                matches!(ours, Some(IpAddr::V6(_))),
                "{what}: hep-js lacks {key}"
            );
        }
    }
    for (key, present) in [
        ("capturePass", msg.auth_key.is_some()),
        ("correlation_id", msg.correlation_id.is_some()),
    ] {
        assert_eq!(rcinfo.contains_key(key), present, "{what}: {key}");
    }
}
