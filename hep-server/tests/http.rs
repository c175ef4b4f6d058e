//! The HTTP API with the real binary: `hep-server run` fed with the Kamailio call over
//! UDP (and calls of a second capture agent), then every endpoint of docs/API.md asked
//! with a plain HTTP/1.1 client over a `TcpStream`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hep_proto::{HepMessage, HepVersion, ProtoType};
use serde_json::Value;

use common::*;

/// The Kamailio call of the `v3-udp-` vectors: 12 messages, capture id 2001, captured
/// 2026-11-26 at 05:21:49 UTC.
const CALL: &str = "1-13274@127.0.0.1";
/// A window around it.
const DAY: &str = "since=2026-11-26&until=2026-11-27";
/// A call of capture agent 2002 (built here), captured the same day.
const OTHER: &str = "tenant-b-call@192.0.2.1";
const TOKEN_A: &str = "token-of-tenant-a-2001";
const TOKEN_B: &str = "token-of-tenant-b-2002";

// ===== a tiny HTTP/1.1 client =====

impl Answer {
    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The error's code, checking the error's shape.
    fn error_code(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["code"].as_str().unwrap().to_owned()
    }
}

fn get(server: &Server, target: &str) -> Answer {
    http_request(server.http.expect("an http listener"), "GET", target, &[])
}

fn get_with(server: &Server, target: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    http_request(
        server.http.expect("an http listener"),
        "GET",
        target,
        &[("Authorization", &auth)],
    )
}

// ===== the server and what it is fed =====

/// A HEPv3 SIP message of capture agent `capture_id`, captured at `ts`.
fn sip(capture_id: u32, ts: u32, src: &str, dst: &str, payload: &str) -> Vec<u8> {
    HepMessage::builder()
        .src(src.parse().unwrap())
        .dst(dst.parse().unwrap())
        .timestamp(ts, 0)
        .proto_type(ProtoType::Sip)
        .capture_id(capture_id)
        .payload(payload.to_owned())
        .build()
        .encode(HepVersion::V3)
        .unwrap()
        .to_vec()
}

/// An INVITE and its 486 from capture agent 2002, captured an hour after the Kamailio
/// call; the INVITE carries `extra` headers.
fn other_call(extra: &str) -> Vec<Vec<u8>> {
    let ts = 1_795_670_509 + 3_600;
    let (a, b) = ("192.0.2.1:5060", "192.0.2.2:5060");
    vec![
        sip(
            2002,
            ts,
            a,
            b,
            &format!(
                "INVITE sip:bob@example.com SIP/2.0\r\nFrom: <sip:carol@example.com>;tag=f\r\n\
                 To: <sip:bob@example.com>\r\nCall-ID: {OTHER}\r\nCSeq: 1 INVITE\r\n{extra}\r\n"
            ),
        ),
        sip(
            2002,
            ts + 1,
            b,
            a,
            &format!(
                "SIP/2.0 486 Busy Here\r\nFrom: <sip:carol@example.com>;tag=f\r\n\
                 To: <sip:bob@example.com>;tag=t\r\nCall-ID: {OTHER}\r\nCSeq: 1 INVITE\r\n\r\n"
            ),
        ),
    ]
}

/// A server writing `store:DIR/store` (kept forever: the vectors are old; whatever the
/// free space of the test machine) with `extra`
/// configuration, fed with the Kamailio call and `more`; returns once the API finds
/// both calls.
fn start(dir: &Path, extra: &str, more: &[Vec<u8>]) -> Server {
    let text = format!(
        "listen = [\"hep_udp:127.0.0.1:0\"]\n\
         outputs = [\"store:{}\"]\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [store]\nmax_age_hours = 0\nmin_free_mb = 0\n{extra}",
        dir.join("store").display(),
    );
    let server = Server::with_config(dir, &text);
    send_udp(server.udp(), &set_bytes("v3-udp-"));
    send_udp(server.udp(), more);
    server
}

/// Waits until the API finds `n` messages of `call_id` (the store writes in batches).
fn wait_stored(server: &Server, call_id: &str, n: usize, token: Option<&str>) {
    wait_for(&format!("{n} messages of {call_id}"), PROCESS_WAIT, || {
        let target = format!("/api/v1/calls/{call_id}");
        let a = match token {
            Some(t) => get_with(server, &target, t),
            None => get(server, &target),
        };
        (a.status == 200 && a.json()["messages"].as_array().unwrap().len() == n).then_some(())
    });
}

/// The server of most tests (and of docs/API.md's examples): the Kamailio call, and the
/// other call from node `sbc-east` with an `X-Ticket` header; `[aliases]` name the
/// Kamailio proxy and loopback.
fn fed(name: &str) -> (Server, std::path::PathBuf) {
    let dir = test_dir(name);
    let other: Vec<Vec<u8>> = other_call("X-Ticket: T-4711\r\n")
        .iter()
        .map(|m| of_node(m, "sbc-east"))
        .collect();
    let aliases = "[aliases]\n\"127.0.0.1:5060\" = \"proxy\"\n\"127.0.0.0/8\" = \"loopback\"\n";
    let server = start(&dir, aliases, &other);
    wait_stored(&server, CALL, 12, None);
    wait_stored(&server, OTHER, 2, None);
    (server, dir)
}

fn is_rfc3339_micros(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    // 2026-11-26T05:21:49.909050Z
    s.len() == 27 && s.as_bytes()[10] == b'T' && s.ends_with('Z') && s.as_bytes()[19] == b'.'
}

// ===== the tests =====

#[test]
fn calls_are_found_by_call_id_and_by_user_with_their_fields() {
    let (server, _dir) = fed("http-search");
    let by_id = get(&server, &format!("/api/v1/calls?call_id={CALL}"));
    assert_eq!(by_id.status, 200, "{}", by_id.text());
    let v = by_id.json();
    assert_eq!(v["next"], Value::Null);
    let calls = v["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    let row = &calls[0];
    assert_eq!(row["call_id"], CALL);
    assert_eq!(row["from_user"], "sipp");
    assert_eq!(row["to_user"], "service");
    assert!(is_rfc3339_micros(&row["first_ts"]), "{row}");
    assert!(is_rfc3339_micros(&row["last_ts"]), "{row}");
    assert!(
        row["first_ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-26T05:21:")
    );
    assert!(row["first_ts"].as_str() <= row["last_ts"].as_str());
    let methods: Vec<&str> = row["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(methods[0], "INVITE", "{row}");
    for m in ["ACK", "BYE"] {
        assert!(methods.contains(&m), "{m} in {row}");
    }
    assert_eq!(row["final_status"], 200);
    assert_eq!(row["messages"], 12);
    assert_eq!(row["legs"], serde_json::json!([]));
    assert_eq!(row["legs_cut"], false);
    assert!(row["duration"].as_f64().unwrap() >= 0.0);
    let keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "call_id",
        "from_user",
        "to_user",
        "first_ts",
        "last_ts",
        "methods",
        "final_status",
        "duration",
        "messages",
        "legs",
        "legs_cut",
    ] {
        assert!(keys.contains(&k), "{k} in {row}");
    }

    // By user (From or To), in a window: the same row.
    for user in ["sipp", "service"] {
        let v = get(&server, &format!("/api/v1/calls?user={user}&{DAY}")).json();
        assert_eq!(v["calls"].as_array().unwrap().len(), 1, "{user}: {v}");
        assert_eq!(v["calls"][0], *row, "{user}");
    }
    let bob = get(&server, &format!("/api/v1/calls?user=bob&{DAY}")).json();
    assert_eq!(bob["calls"][0]["call_id"], OTHER);
    assert_eq!(bob["calls"][0]["final_status"], 486);
    let nobody = get(&server, &format!("/api/v1/calls?user=nobody&{DAY}")).json();
    assert_eq!(nobody["calls"], serde_json::json!([]));
    // By method or status, and by capture id.
    let byes = get(&server, &format!("/api/v1/calls?method=BYE&{DAY}")).json();
    assert_eq!(byes["calls"].as_array().unwrap().len(), 1);
    let busy = get(&server, &format!("/api/v1/calls?method=486&{DAY}")).json();
    assert_eq!(busy["calls"][0]["call_id"], OTHER);
    let agent = get(&server, &format!("/api/v1/calls?capture_id=2002&{DAY}")).json();
    assert_eq!(agent["calls"].as_array().unwrap().len(), 1);
    assert_eq!(agent["calls"][0]["call_id"], OTHER);
    // The default window is the last day: the vectors are older.
    let recent = get(&server, "/api/v1/calls").json();
    assert_eq!(recent["calls"], serde_json::json!([]), "{recent}");
    server.stop();
}

#[test]
fn calls_page_newest_first_with_a_cursor_and_never_twice() {
    let (server, _dir) = fed("http-pages");
    let first = get(&server, &format!("/api/v1/calls?limit=1&{DAY}")).json();
    assert_eq!(
        first["calls"][0]["call_id"], OTHER,
        "the newest first: {first}"
    );
    let cursor = first["next"].as_str().expect("a next page").to_owned();
    let second = get(
        &server,
        &format!("/api/v1/calls?limit=1&{DAY}&cursor={cursor}"),
    )
    .json();
    assert_eq!(second["calls"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["calls"][0]["call_id"], CALL);
    let mut seen = vec![CALL.to_owned(), OTHER.to_owned()];
    let mut next = second["next"].as_str().map(str::to_owned);
    // Whatever pages follow hold no call already shown.
    while let Some(c) = next {
        let page = get(&server, &format!("/api/v1/calls?limit=1&{DAY}&cursor={c}")).json();
        for call in page["calls"].as_array().unwrap() {
            let id = call["call_id"].as_str().unwrap().to_owned();
            assert!(!seen.contains(&id), "{id} twice");
            seen.push(id);
        }
        next = page["next"].as_str().map(str::to_owned);
    }
    let all = get(&server, &format!("/api/v1/calls?{DAY}")).json();
    assert_eq!(all["calls"].as_array().unwrap().len(), 2);
    assert_eq!(all["next"], Value::Null);
    server.stop();
}

#[test]
fn a_call_detail_has_every_message_with_an_id_that_reads_it_back() {
    let (server, _dir) = fed("http-detail");
    let v = get(&server, &format!("/api/v1/calls/{CALL}")).json();
    assert_eq!(v["call_id"], CALL);
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 12);
    let ids: BTreeSet<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 12, "ids are unique");
    let keys: BTreeSet<&str> = messages[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want: BTreeSet<&str> = hep_server::formats::record::RECORD_KEYS
        .iter()
        .copied()
        .collect();
    want.insert("id");
    assert_eq!(keys, want, "the id and the record of search --format json");
    let raw = get(&server, &format!("/api/v1/calls/{CALL}")).text();
    assert!(
        raw.starts_with(r#"{"call_id":"1-13274@127.0.0.1","messages":[{"id":""#),
        "the id first: {raw}"
    );
    assert_eq!(messages[0]["capture_id"], 2001);
    assert!(
        messages[0]["payload"]
            .as_str()
            .unwrap()
            .starts_with("INVITE ")
    );
    // Oldest first.
    let at = |m: &Value| {
        (
            m["ts_sec"].as_u64().unwrap(),
            m["ts_usec"].as_u64().unwrap(),
        )
    };
    assert!(messages.windows(2).all(|w| at(&w[0]) <= at(&w[1])));
    for m in messages {
        let one = get(
            &server,
            &format!("/api/v1/messages/{}", m["id"].as_str().unwrap()),
        );
        assert_eq!(one.status, 200);
        assert_eq!(one.json(), *m);
    }
    let gone = get(&server, "/api/v1/messages/1795651200-3600-1");
    assert_eq!((gone.status, gone.error_code()), (404, "not_found".into()));
    server.stop();
}

#[test]
fn the_exports_are_a_pcap_and_text() {
    let (server, _dir) = fed("http-exports");
    let pcap = get(&server, &format!("/api/v1/calls/{CALL}/pcap"));
    assert_eq!(pcap.status, 200, "{}", pcap.text());
    assert_eq!(
        pcap.header("content-type"),
        Some("application/vnd.tcpdump.pcap")
    );
    let disposition = pcap.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"call-1-13274@127.0.0.1.pcap\""),
        "{disposition}"
    );
    let b = &pcap.body;
    assert_eq!(
        &b[..4],
        &0xa1b2_c3d4u32.to_le_bytes(),
        "pcap magic (microseconds, LE)"
    );
    assert_eq!(
        u32::from_le_bytes(b[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut records = 0;
    let mut at = 24;
    while at < b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + incl;
        records += 1;
    }
    assert_eq!(at, b.len(), "whole records");
    assert_eq!(records, 12, "one packet per message");

    let text = get(&server, &format!("/api/v1/calls/{CALL}/text"));
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let lines: Vec<String> = text.text().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 12);
    assert!(lines[0].starts_with("2026-11-26T05:21:49."), "{}", lines[0]);
    assert!(
        lines[0].contains("INVITE sip:service@127.0.0.1:5060"),
        "{}",
        lines[0]
    );
    let ladder = get(&server, &format!("/api/v1/calls/{CALL}/text?format=ladder")).text();
    assert!(ladder.starts_with("12 messages between"), "{ladder}");
    for what in ["INVITE", "180", "200", "ACK", "BYE"] {
        assert!(ladder.contains(what), "{what} in\n{ladder}");
    }
    server.stop();
}

#[test]
fn bad_parameters_are_refused_naming_them_and_unknown_things_are_404() {
    let (server, _dir) = fed("http-errors");
    for (target, name) in [
        ("/api/v1/calls?limit=0", "limit"),
        ("/api/v1/calls?limit=1001", "limit"),
        ("/api/v1/calls?limit=ten", "limit"),
        ("/api/v1/calls?since=yesterday", "since"),
        ("/api/v1/calls?until=2026-13-01", "until"),
        ("/api/v1/calls?capture_id=x", "capture_id"),
        ("/api/v1/calls?cursor=abc", "cursor"),
        ("/api/v1/calls?colour=red", "colour"),
        ("/api/v1/calls?user=a&user=b", "user"),
        ("/api/v1/calls/x/text?format=svg", "format"),
        ("/api/v1/calls/x?format=ladder", "format"),
        ("/api/v1/messages/not-an-id", "id"),
    ] {
        let a = get(&server, target);
        assert_eq!(a.status, 400, "{target}: {}", a.text());
        let v = a.json();
        assert_eq!(v["error"]["code"], "bad_parameter", "{target}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(name),
            "{target}: `{message}` names {name}"
        );
    }
    let broad = get(&server, "/api/v1/calls?since=2026-01-01&until=2026-11-27");
    assert_eq!(
        (broad.status, broad.error_code()),
        (400, "too_broad".into())
    );
    for target in [
        "/api/v1/calls/no-such-call@nowhere",
        "/api/v1/calls/no-such-call@nowhere/pcap",
        "/api/v1/calls/no-such-call@nowhere/text",
        "/api/v2/calls",
    ] {
        let a = get(&server, target);
        assert_eq!(
            (a.status, a.error_code()),
            (404, "not_found".into()),
            "{target}"
        );
    }
    let post = http_request(server.http.unwrap(), "POST", "/api/v1/calls", &[]);
    assert_eq!(post.status, 405);
    assert_eq!(post.error_code(), "method_not_allowed");

    // Counted by route and status.
    let m = server.metrics();
    assert!(
        m.get(
            "hep_http_requests_total",
            &[("route", "/api/v1/calls"), ("status", "400")]
        ) >= 9
    );
    assert!(
        m.get(
            "hep_http_requests_total",
            &[("route", "/api/v1/calls/{call_id}"), ("status", "200")]
        ) >= 1
    );
    server.stop();
}

#[test]
fn a_token_sees_the_calls_of_its_capture_ids_only() {
    let dir = test_dir("http-tokens");
    let tokens = format!("[http.tokens]\n\"{TOKEN_A}\" = [2001]\n\"{TOKEN_B}\" = [2002]\n");
    let server = start(&dir, &tokens, &other_call(""));
    wait_stored(&server, CALL, 12, Some(TOKEN_A));
    wait_stored(&server, OTHER, 2, Some(TOKEN_B));

    // Without a token, or with one it does not know: 401, for every API route.
    for target in [
        format!("/api/v1/calls?{DAY}"),
        format!("/api/v1/calls/{CALL}"),
        format!("/api/v1/calls/{CALL}/pcap"),
        "/api/v1/messages/1795651200-3600-1".to_owned(),
    ] {
        let a = get(&server, &target);
        assert_eq!(
            (a.status, a.error_code()),
            (401, "unauthorized".into()),
            "{target}"
        );
        let a = get_with(&server, &target, "token-nobody-was-given");
        assert_eq!(a.status, 401, "{target}");
    }
    // The page holds no data: no token needed.
    assert_eq!(get(&server, "/").status, 200);

    let calls = |token: &str, query: &str| -> Vec<String> {
        let v = get_with(&server, &format!("/api/v1/calls?{query}"), token).json();
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(calls(TOKEN_A, DAY), [CALL]);
    assert_eq!(calls(TOKEN_B, DAY), [OTHER]);
    assert_eq!(
        calls(TOKEN_A, &format!("call_id={OTHER}")),
        Vec::<String>::new()
    );
    assert_eq!(
        calls(TOKEN_A, &format!("user=bob&{DAY}")),
        Vec::<String>::new()
    );
    assert_eq!(
        calls(TOKEN_A, &format!("capture_id=2002&{DAY}")),
        Vec::<String>::new()
    );
    assert_eq!(
        calls(TOKEN_B, &format!("user=sipp&{DAY}")),
        Vec::<String>::new()
    );

    // Nor its messages, its exports, or a message by id.
    for target in [
        format!("/api/v1/calls/{OTHER}"),
        format!("/api/v1/calls/{OTHER}/pcap"),
        format!("/api/v1/calls/{OTHER}/text"),
    ] {
        let a = get_with(&server, &target, TOKEN_A);
        assert_eq!(
            (a.status, a.error_code()),
            (404, "not_found".into()),
            "{target}"
        );
    }
    let b_messages = get_with(&server, &format!("/api/v1/calls/{OTHER}"), TOKEN_B).json();
    let b_id = b_messages["messages"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get_with(&server, &format!("/api/v1/messages/{b_id}"), TOKEN_B).status,
        200
    );
    let a = get_with(&server, &format!("/api/v1/messages/{b_id}"), TOKEN_A);
    assert_eq!((a.status, a.error_code()), (404, "not_found".into()));
    server.stop();
}

#[test]
fn bound_beyond_loopback_without_tokens_it_refuses_to_start() {
    let out = Command::new(BIN)
        .args(["run", "--listen", "hep_udp:127.0.0.1:0", "--output", "null"])
        .args(["--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("http listen 0.0.0.0:0") && err.contains("[http.tokens]"),
        "{err}"
    );

    // A port in use is an error at start, as for the HEP listeners.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["run", "--listen", "hep_udp:127.0.0.1:0", "--output", "null"])
        .args(["--http", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("http listen {addr}")), "{err}");

    // Off: no listener at all.
    let dir = test_dir("http-off");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&dir).args([
        "run",
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        "null",
        "--http",
        "off",
    ]);
    let server = Server::spawn(cmd);
    assert_eq!(server.http, None);
    let stopped = server.stop();
    assert!(
        !stopped.stderr.contains("http listening"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn markup_in_a_sip_message_comes_back_as_data() {
    let dir = test_dir("http-escape");
    let script = "<script>alert(1)</script>";
    let server = start(&dir, "", &other_call(&format!("Subject: {script}\r\n")));
    wait_stored(&server, OTHER, 2, None);
    let a = get(&server, &format!("/api/v1/calls/{OTHER}"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    let raw = a.text();
    assert!(
        !raw.contains('<') && !raw.contains('>'),
        "no markup in the body: {raw}"
    );
    assert!(
        raw.contains(r"\u003cscript\u003ealert(1)\u003c/script\u003e"),
        "{raw}"
    );
    let v = a.json();
    let payload = v["messages"][0]["payload"].as_str().unwrap();
    assert!(
        payload.contains(&format!("Subject: {script}\r\n")),
        "read back exactly: {payload}"
    );
    let text = get(&server, &format!("/api/v1/calls/{OTHER}/text"));
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(text.header("x-content-type-options"), Some("nosniff"));
    server.stop();
}

#[test]
fn the_page_is_served_from_the_binary() {
    let dir = test_dir("http-page");
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"store:{}\"]\n[store]\nmin_free_mb = 0\n",
            dir.join("store").display()
        ),
    );
    for target in [
        "/".to_owned(),
        format!("/call/{CALL}"),
        "/assets/index.html".to_owned(),
    ] {
        let a = get(&server, &target);
        assert_eq!(a.status, 200, "{target}");
        assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(a.text().contains("<title>hep-server</title>"), "{target}");
    }
    let missing = get(&server, "/assets/nothing.js");
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found".into())
    );
    server.stop();
}

/// docs/API.md: every `curl` line, its path and query asked of a server fed with the
/// call, answers with the status written after `#` (200 when none is).
#[test]
fn every_curl_example_of_the_api_docs_answers_as_documented() {
    let (server, _dir) = fed("http-docs");
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/API.md"))
        .unwrap();
    let first_id = get(&server, &format!("/api/v1/calls/{CALL}")).json()["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut asked = BTreeSet::new();
    for line in doc.lines().filter(|l| l.trim_start().starts_with("curl ")) {
        let url_start = line
            .find("'http://127.0.0.1:9080")
            .unwrap_or_else(|| panic!("a URL in `{line}`"));
        let url = &line[url_start + 1..];
        let url = &url[..url.find('\'').unwrap()];
        let mut target = url.trim_start_matches("http://127.0.0.1:9080").to_owned();
        // A documented message id is an example: ask for a real one.
        if let Some(id) = target.strip_prefix("/api/v1/messages/")
            && id.parse::<hep_server::store::MessageId>().is_ok()
        {
            target = format!("/api/v1/messages/{first_id}");
        }
        let status: u16 = line
            .rsplit_once("# ")
            .map_or(200, |(_, s)| s.trim().parse().unwrap());
        let headers: Vec<(&str, &str)> = line
            .split("-H '")
            .skip(1)
            .map(|h| h[..h.find('\'').unwrap()].split_once(": ").unwrap())
            .collect();
        // A stream (`curl -N`): its head and first bytes.
        if line.contains(" -N ") {
            let mut live = open_live(server.http.unwrap(), &target, &headers);
            assert_eq!(live.status, status, "`{line}`: {}", live.head);
            if status == 200 {
                assert!(live.wait_for(": live", PROCESS_WAIT), "{line}");
            }
            asked.insert(target.split('?').next().unwrap().to_owned());
            continue;
        }
        let a = http_request(server.http.unwrap(), "GET", &target, &headers);
        assert_eq!(a.status, status, "`{line}`: {}", a.text());
        if status == 200
            && target.starts_with("/api/v1/")
            && !target.ends_with("/pcap")
            && !target.contains("/text")
        {
            let v = a.json();
            assert!(
                v.get("calls").is_some() || v.get("messages").is_some() || v.get("id").is_some(),
                "{line}: {v}"
            );
        }
        asked.insert(target.split('?').next().unwrap().to_owned());
    }
    for endpoint in [
        "/api/v1/calls".to_owned(),
        format!("/api/v1/calls/{CALL}"),
        format!("/api/v1/calls/{CALL}/pcap"),
        format!("/api/v1/calls/{CALL}/text"),
        format!("/api/v1/messages/{first_id}"),
        "/api/v1/live".to_owned(),
        "/".to_owned(),
        format!("/call/{CALL}"),
    ] {
        assert!(
            asked.contains(&endpoint),
            "docs/API.md has a curl example of {endpoint}"
        );
    }
    server.stop();
}

/// `hep` (HEPv3 bytes) as sent by the node named `node` (chunk 0x0013).
fn of_node(hep: &[u8], node: &str) -> Vec<u8> {
    let mut m = HepMessage::decode(bytes::Bytes::copy_from_slice(hep)).unwrap();
    m.node_name = Some(node.as_bytes().to_vec().into());
    m.encode(HepVersion::V3).unwrap().to_vec()
}

/// The Call-IDs of a call list.
fn listed(a: &Answer) -> Vec<String> {
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_call_names_its_addresses_by_the_aliases_and_a_reload_renames_them() {
    let dir = test_dir("http-aliases");
    let aliases = |proxy: &str| {
        format!("[aliases]\n\"127.0.0.1:5060\" = \"{proxy}\"\n\"127.0.0.0/8\" = \"loopback\"\n")
    };
    let server = start(&dir, &aliases("kamailio"), &other_call(""));
    wait_stored(&server, CALL, 12, None);
    let v = get(&server, &format!("/api/v1/calls/{CALL}")).json();
    let named = v["aliases"].as_object().unwrap();
    // Every address of the call is on loopback: each is named, 5060 by its own entry.
    let mut addresses = BTreeSet::new();
    for m in v["messages"].as_array().unwrap() {
        for (ip, port) in [("src_ip", "src_port"), ("dst_ip", "dst_port")] {
            addresses.insert(format!("{}:{}", m[ip].as_str().unwrap(), m[port]));
        }
    }
    assert!(addresses.len() >= 2, "{addresses:?}");
    for a in &addresses {
        let expected = if a == "127.0.0.1:5060" {
            "kamailio"
        } else {
            "loopback"
        };
        assert_eq!(named[a.as_str()], expected, "{a}: {v}");
    }
    assert_eq!(
        named.len(),
        addresses.len(),
        "only the call's addresses: {v}"
    );
    // The other call's addresses are named by no entry: no aliases.
    let other = get(&server, &format!("/api/v1/calls/{OTHER}")).json();
    assert_eq!(other["aliases"], serde_json::json!({}), "{other}");
    // The text ladder heads its columns with them too.
    let ladder = get(&server, &format!("/api/v1/calls/{CALL}/text?format=ladder")).text();
    assert!(
        ladder.contains("kamailio") && ladder.contains("loopback"),
        "{ladder}"
    );

    // SIGHUP with other names: the next answer has them.
    let path = dir.join("hep-server.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"kamailio\"", "\"proxy\"");
    std::fs::write(&path, text).unwrap();
    server.signal("HUP");
    wait_for("the reload", PROCESS_WAIT, || {
        server.stderr().contains("aliases replaced").then_some(())
    });
    let v = get(&server, &format!("/api/v1/calls/{CALL}")).json();
    assert_eq!(v["aliases"]["127.0.0.1:5060"], "proxy", "{v}");
    server.stop();
}

/// An INVITE of `call_id` naming `x_cid` in `X-CID`, two hours after the Kamailio call.
fn invite_naming(call_id: &str, x_cid: &str) -> Vec<u8> {
    sip(
        2001,
        1_795_670_509 + 7_200,
        "192.0.2.1:5060",
        "192.0.2.2:5060",
        &format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nFrom: <sip:hub-alice@example.com>;tag=f\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             X-CID: {x_cid}\r\n\r\n"
        ),
    )
}

#[test]
fn a_calls_kpis_are_read_with_the_running_kpi_timeouts() {
    let dir = test_dir("http-kpi-timeouts");
    // Unanswered: given up after `setup_timeout_secs` without a message (default 300).
    let server = start(
        &dir,
        "[kpi]\nsetup_timeout_secs = 1\n",
        &[invite_naming("lonely@x", "lonely@x")],
    );
    wait_stored(&server, "lonely@x", 1, None);
    let sent = std::time::Instant::now();
    let timed_out = || get(&server, "/api/v1/calls/lonely@x").json()["kpis"]["timed_out"].clone();
    if sent.elapsed() < Duration::from_millis(900) {
        assert_eq!(timed_out(), Value::Null, "within the timeout");
    }
    std::thread::sleep(Duration::from_millis(1_100));
    let kpis = get(&server, "/api/v1/calls/lonely@x").json()["kpis"].clone();
    assert_eq!(
        kpis["timed_out"], "setup",
        "past the configured 1 s, not the default 300 s: {kpis}"
    );
}

#[test]
fn a_chain_cut_at_its_bound_is_said_to_be_by_the_list_the_call_and_search() {
    let dir = test_dir("http-legs-cut");
    // 20 calls naming one hub: more than a chain holds (16 Call-IDs). And a chain of two
    // beside it, within the bounds.
    let mut more: Vec<Vec<u8>> = (0..20)
        .map(|i| invite_naming(&format!("spoke-{i:02}@x"), "hub@x"))
        .collect();
    more.push(invite_naming("leg-b@x", "leg-a@x"));
    more.push(invite_naming("leg-a@x", "leg-a@x"));
    let server = start(&dir, "", &more);
    wait_stored(&server, "leg-a@x", 2, None);
    wait_for("the spokes", PROCESS_WAIT, || {
        let v = get(
            &server,
            &format!("/api/v1/calls?user=hub-alice&limit=100&{DAY}"),
        )
        .json();
        (v["calls"].as_array().map_or(0, Vec::len) == 22).then_some(())
    });

    let row = |id: &str| {
        let v = get(&server, &format!("/api/v1/calls?call_id={id}")).json();
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} listed: {v}"))
    };
    let spoke = row("spoke-00@x");
    assert_eq!(spoke["legs_cut"], true, "{spoke}");
    assert_eq!(spoke["legs"].as_array().unwrap().len(), 15, "{spoke}");
    let leg = row("leg-b@x");
    assert_eq!(leg["legs_cut"], false, "{leg}");
    assert_eq!(leg["legs"], serde_json::json!(["leg-a@x"]));

    let call = |id: &str| get(&server, &format!("/api/v1/calls/{id}")).json();
    assert_eq!(call("spoke-00@x")["legs_cut"], true);
    assert_eq!(call("leg-a@x")["legs_cut"], false);
    server.stop();

    let note = |id: &str| {
        let out = Command::new(BIN)
            .args(["search", "--store"])
            .arg(dir.join("store"))
            .args(["--call-id", id])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cut = note("spoke-00@x");
    assert!(
        cut.contains("was cut at its bound (16 legs, 8 hops)"),
        "{cut}"
    );
    assert!(!note("leg-a@x").contains("cut"));
}

#[test]
fn calls_are_found_by_node_and_by_free_text_within_the_tokens_capture_ids() {
    let dir = test_dir("http-node-text");
    let tokens = format!("[http.tokens]\n\"{TOKEN_A}\" = [2001]\n\"{TOKEN_B}\" = [2002]\n");
    // The other call from node sbc-east, its INVITE with a header no other field holds.
    let other: Vec<Vec<u8>> = other_call("X-Ticket: T-4711\r\n")
        .iter()
        .map(|m| of_node(m, "sbc-east"))
        .collect();
    let server = start(&dir, &tokens, &other);
    wait_stored(&server, CALL, 12, Some(TOKEN_A));
    wait_stored(&server, OTHER, 2, Some(TOKEN_B));
    let ask = |q: &str, token| get_with(&server, &format!("/api/v1/calls?{DAY}&{q}"), token);

    assert_eq!(listed(&ask("node=sbc-east", TOKEN_B)), [OTHER]);
    assert!(listed(&ask("node=sbc", TOKEN_B)).is_empty(), "exact");
    assert!(
        listed(&ask("node=sbc-east", TOKEN_A)).is_empty(),
        "not its capture id"
    );
    let a = ask("node=sbc-east", TOKEN_B).json();
    assert_eq!(a["text_scan"], Value::Null, "no text search: {a}");

    // Free text: any case, a header value no other field holds.
    let a = ask("q=x-ticket%3A%20t-4711", TOKEN_B);
    assert_eq!(listed(&a), [OTHER]);
    let scan = &a.json()["text_scan"];
    assert_eq!(scan["truncated"], false, "{scan}");
    assert_eq!(scan["limit"], 50_000, "{scan}");
    assert_eq!(scan["scanned"], 2, "the token's messages only: {scan}");
    // The other token does not find it, and reads its own call's 12 messages only.
    let a = ask("q=x-ticket%3A%20t-4711", TOKEN_A);
    assert!(listed(&a).is_empty());
    assert_eq!(a.json()["text_scan"]["scanned"], 12);
    assert_eq!(listed(&ask("q=performance+test", TOKEN_A)), [CALL]);
    // With the other filters: only among what they match.
    assert!(listed(&ask("q=performance+test&method=BYE&user=nobody", TOKEN_A)).is_empty());

    for (q, name) in [("node=a%09b", "node"), ("q=a%0D%0Ab", "q")] {
        let a = ask(q, TOKEN_A);
        assert_eq!(
            (a.status, a.error_code()),
            (400, "bad_parameter".into()),
            "{q}"
        );
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(name),
            "{q}"
        );
    }
    let long = format!("q={}", "x".repeat(257));
    assert_eq!(ask(&long, TOKEN_A).status, 400);
    server.stop();
}

#[test]
fn with_a_certificate_it_serves_https_only() {
    let dir = test_dir("http-tls");
    let (cert_file, key_file, cert) = self_signed(&dir);
    let extra = format!(
        "[http]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    );
    let server = start(&dir, &extra, &[]);
    assert!(
        own_lines(&server.stderr()).contains("(https://127.0.0.1:"),
        "{}",
        server.stderr()
    );
    let addr = server.http.unwrap();
    let client = tls_client(cert);
    let answer = wait_for("the call over HTTPS", PROCESS_WAIT, || {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = tls_handshake(tcp, &client);
        let request = format!(
            "GET /api/v1/calls?call_id={CALL} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        // A TLS close without close_notify is still the end of the answer here.
        let _ = tls.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.contains(r#""messages":12"#).then_some(text)
    });
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    // Plain HTTP on the HTTPS port gets no answer.
    let mut plain = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    server.stop();
}

// ===== the live view =====

/// A live stream open on `target`: the response head read, the body to read on.
struct LiveStream {
    stream: TcpStream,
    status: u16,
    head: String,
    seen: Vec<u8>,
}

fn open_live(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> LiveStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut live = LiveStream {
        stream,
        status: 0,
        head: String::new(),
        seen: Vec::new(),
    };
    let started = std::time::Instant::now();
    while started.elapsed() < PROCESS_WAIT {
        live.read_some();
        if let Some(end) = live.seen.windows(4).position(|w| w == b"\r\n\r\n") {
            live.head = String::from_utf8_lossy(&live.seen[..end]).into_owned();
            live.status = live.head.split(' ').nth(1).unwrap().parse().unwrap();
            live.seen.drain(..end + 4);
            return live;
        }
    }
    panic!("no response head from {target}");
}

impl LiveStream {
    fn read_some(&mut self) {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(n) => self.seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("live stream: {e}"),
        }
    }

    /// Reads until `needle` is in what the stream sent, within `within`; true if so.
    fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let started = std::time::Instant::now();
        loop {
            if String::from_utf8_lossy(&self.seen).contains(needle) {
                return true;
            }
            if started.elapsed() > within {
                return false;
            }
            self.read_some();
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

/// A new call's INVITE from capture agent `capture_id`.
fn new_invite(capture_id: u32, call_id: &str) -> Vec<u8> {
    sip(
        capture_id,
        1_795_670_509 + 7_200,
        "192.0.2.1:5060",
        "192.0.2.2:5060",
        &format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nFrom: <sip:live-alice@example.com>;tag=f\r\n\
             To: <sip:live-bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\r\n"
        ),
    )
}

#[test]
fn the_live_stream_shows_a_new_call_within_a_second_to_the_tokens_that_may_see_it() {
    let dir = test_dir("http-live");
    let tokens = format!("[http.tokens]\n\"{TOKEN_A}\" = [2001]\n\"{TOKEN_B}\" = [2002]\n");
    let server = start(&dir, &tokens, &[]);
    let addr = server.http.unwrap();

    // Without a token: 401; the token in the query string works (an EventSource's way).
    let refused = open_live(addr, "/api/v1/live", &[]);
    assert_eq!(refused.status, 401, "{}", refused.head);
    let mut b = open_live(addr, &format!("/api/v1/live?token={TOKEN_B}"), &[]);
    assert_eq!(b.status, 200, "{}", b.head);
    assert!(
        b.head
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    let auth = format!("Bearer {TOKEN_A}");
    let mut a = open_live(addr, "/api/v1/live", &[("Authorization", &auth)]);
    assert_eq!(a.status, 200, "{}", a.head);
    // The stream is open once its first comment came.
    assert!(b.wait_for(": live", PROCESS_WAIT) && a.wait_for(": live", PROCESS_WAIT));
    let m = server.metrics();
    assert_eq!(m.get("hep_http_live_streams", &[]), 2);
    assert_eq!(m.get("hep_http_live_skipped_total", &[]), 0);

    // A new call of 2002: B sees it within 1 s, as a call row.
    let of_b = "live-call-of-b@192.0.2.1";
    let sent = std::time::Instant::now();
    send_udp(server.udp(), &[new_invite(2002, of_b)]);
    assert!(
        b.wait_for(&format!("\"call_id\":\"{of_b}\""), Duration::from_secs(1)),
        "within 1 s: {}",
        b.text()
    );
    assert!(sent.elapsed() < Duration::from_secs(1));
    let t = b.text();
    assert!(t.contains("event: call\n"), "{t}");
    for field in [
        "\"from_user\":\"live-alice\"",
        "\"to_user\":\"live-bob\"",
        "\"method\":\"INVITE\"",
        "\"capture_id\":2002",
    ] {
        assert!(t.contains(field), "{field} in {t}");
    }

    // A call of 2001 then another of 2002: A sees its own and never B's; B never A's.
    let of_a = "live-call-of-a@192.0.2.1";
    let of_b2 = "live-call-2-of-b@192.0.2.1";
    send_udp(
        server.udp(),
        &[new_invite(2001, of_a), new_invite(2002, of_b2)],
    );
    assert!(a.wait_for(of_a, Duration::from_secs(1)), "{}", a.text());
    assert!(b.wait_for(of_b2, Duration::from_secs(1)), "{}", b.text());
    assert!(
        !a.wait_for(of_b2, Duration::from_millis(300)),
        "{}",
        a.text()
    );
    assert!(!a.text().contains(of_b), "{}", a.text());
    assert!(!b.text().contains(of_a), "{}", b.text());

    // The second message of a call is not a new call.
    send_udp(server.udp(), &[new_invite(2002, of_b)]);
    b.wait_for("(nothing: wait 300 ms)", Duration::from_millis(300));
    assert_eq!(
        b.text().matches(&format!("\"call_id\":\"{of_b}\"")).count(),
        1
    );

    // Shutdown ends the streams: the server does not wait for its deadline on them, and
    // each stream ends with its last chunk.
    let stopping = std::time::Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        stopping.elapsed()
    );
    assert!(
        b.wait_for("\r\n0\r\n\r\n", Duration::from_secs(1)),
        "{:?}",
        b.text()
    );
}
