//! The embedded store, with the real binary: `run --output store:DIR` keeps messages,
//! `search` finds them again (README "The capture store", docs/CONFIG.md `[store]`).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hep_proto::{HepMessage, HepVersion, ProtoType};
use hep_testkit::vectors::read;
use serde_json::Value;

use common::*;

/// A server on loopback UDP and TCP writing `store:DIR` and `json:DIR/all.jsonl`, with
/// `store` as its `[store]` section.
fn start(dir: &Path, store: &str) -> Server {
    let text = format!(
        "listen = [\"hep_udp:127.0.0.1:0\", \"hep_tcp:127.0.0.1:0\"]\n\
         outputs = [\"store:{}\", \"json:{}\"]\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [store]\n{store}\n",
        dir.join("store").display(),
        dir.join("all.jsonl").display(),
    );
    let path = dir.join("hep-server.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()]);
    Server::spawn(cmd)
}

/// `hep-server search --store DIR ARGS...`.
fn search(store: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["search", "--store", store.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

/// The JSON records `search --format json ARGS...` prints (it must succeed).
fn search_json(store: &Path, args: &[&str]) -> Vec<Value> {
    let out = search(store, &[&["--format", "json"], args].concat());
    json_records(&out, &format!("search {args:?}"))
}

/// Whole records (with `recv`) as sorted JSON text.
fn as_set(records: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(Value::to_string).collect();
    v.sort();
    v
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// A HEPv3 SIP message from `src` to `dst` captured at `ts` with `payload`.
fn sip(ts: u32, src: &str, dst: &str, payload: &str) -> Vec<u8> {
    HepMessage::builder()
        .src(src.parse().unwrap())
        .dst(dst.parse().unwrap())
        .timestamp(ts, 0)
        .proto_type(ProtoType::Sip)
        .capture_id(7)
        .payload(payload.to_owned())
        .build()
        .encode(HepVersion::V3)
        .unwrap()
        .to_vec()
}

fn invite(call_id: &str, user: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\nFrom: <sip:caller@example.com>;tag=f1\r\n\
         To: <sip:{user}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n{extra}\r\n"
    )
}

fn ok(call_id: &str, user: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\nFrom: <sip:caller@example.com>;tag=f1\r\n\
         To: <sip:{user}@example.com>;tag=t1\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\r\n"
    )
}

fn partitions(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".db"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_vector_set_survives_a_store_and_search_round_trip() {
    let dir = test_dir("store-round-trip");
    // No age limit: the vectors were captured on 2026-11-26.
    let server = start(&dir, "max_age_hours = 0");
    let mut sent = 0;
    for set in UDP_SETS {
        let datagrams = set_bytes(set);
        sent += datagrams.len();
        send_udp(server.udp(), &datagrams);
    }
    let others: Vec<Vec<u8>> = [
        "hepjs/hepjs-v3-options.hep",
        "hepjs/hepjs-v3-utf8-truncated.hep",
        "spec/hep3-spec-example.hep",
    ]
    .iter()
    .map(|f| read(f))
    .collect();
    sent += others.len();
    send_udp(server.udp(), &others);
    let stream = read("kamailio/v3-tcp-stream.bin");
    sent += hep3_frames(&stream).len();
    send_tcp(server.tcp(), &stream);
    let written = wait_json(&dir.join("all.jsonl"), sent);
    let store = dir.join("store");
    let label = [("output", &*format!("store:{}", store.display()))];
    wait_for("the store to write every message", OUTPUT_WAIT, || {
        (server.metrics().get("hep_delivered_total", &label) == sent as u64).then_some(())
    });
    let metrics = server.metrics();
    assert!(metrics.get("hep_store_partitions", &label) >= 1);
    assert!(metrics.get("hep_store_bytes", &label) > 0);

    // While the server runs (a reader beside the writer), and after it stopped.
    let live = search_json(&store, &["--limit", "100000"]);
    let stopped = server.stop();
    assert_eq!(stopped.counts.dropped, 0);
    let found = search_json(&store, &["--limit", "100000"]);
    assert_eq!(found.len(), sent);
    assert_eq!(
        as_set(&found),
        as_set(&written),
        "every field of every record"
    );
    assert_eq!(as_set(&live), as_set(&written));
    // Oldest first (HEPv1 messages, without a capture time, sort by receive time).
    let ts: Vec<u64> = found
        .iter()
        .filter_map(|r| {
            r["ts_sec"]
                .as_u64()
                .map(|s| s * 1_000_000 + r["ts_usec"].as_u64().unwrap())
        })
        .collect();
    assert!(ts.is_sorted(), "{ts:?}");
}

#[test]
fn searches_filter_by_call_id_user_method_and_time() {
    let dir = test_dir("store-filters");
    let server = start(&dir, "max_age_hours = 0");
    send_udp(server.udp(), &set_bytes("v3-udp-"));
    wait_json(&dir.join("all.jsonl"), 12);
    server.stop();
    let store = dir.join("store");
    // The set is one sipp call through Kamailio: 12 SIP messages with one Call-ID.
    let all = search_json(&store, &[]);
    assert_eq!(all.len(), 12);
    let call = search_json(&store, &["--call-id", "1-13274@127.0.0.1"]);
    assert_eq!(call.len(), 12);
    assert!(
        search(&store, &["--call-id", "1-13274@127.0.0.2"])
            .status
            .code()
            == Some(1)
    );

    let byes = search_json(&store, &["--method", "bye"]);
    assert!(!byes.is_empty());
    for r in &byes {
        let p = r["payload"].as_str().unwrap();
        assert!(p.contains("CSeq: 2 BYE") || p.starts_with("BYE "), "{p}");
    }
    let ringing = search_json(&store, &["--method", "180"]);
    assert!(
        ringing
            .iter()
            .all(|r| r["payload"].as_str().unwrap().starts_with("SIP/2.0 180"))
    );
    assert!(!ringing.is_empty());
    assert_eq!(
        search_json(&store, &["--user", "sipp"]).len(),
        12,
        "the From user"
    );
    assert_eq!(
        search_json(&store, &["--user", "service"]).len(),
        12,
        "the To user"
    );
    assert_eq!(search(&store, &["--user", "nobody"]).status.code(), Some(1));
    assert_eq!(search_json(&store, &["--limit", "3"]).len(), 3);

    // The vectors were captured within one second: split them at the seventh message.
    let at = |r: &Value| r["ts_sec"].as_u64().unwrap() * 1_000_000 + r["ts_usec"].as_u64().unwrap();
    let split = at(&all[6]);
    let since = format!("{}.{:06}", split / 1_000_000, split % 1_000_000);
    let late = search_json(&store, &["--since", &since]);
    assert!(late.iter().all(|r| at(r) >= split));
    assert!(late.len() >= 6 && late.len() < 12, "{}", late.len());
    let early = search_json(&store, &["--until", &since]);
    assert!(early.iter().all(|r| at(r) < split));
    assert_eq!(early.len() + late.len(), all.len());
    let none = search(&store, &["--since", "2100-01-01", "--format", "json"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no message matches"));
    // A Call-ID nobody sent: no KPIs or QoS of a call that is not there.
    let unknown = search(&store, &["--call-id", "nobody@nowhere"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&unknown.stdout).contains("KPIs of"));
    let bad = search(&store, &["--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}

#[test]
fn a_call_search_brings_the_other_leg_of_a_b2bua() {
    let dir = test_dir("store-legs");
    let server = start(&dir, "");
    let now = now_secs();
    let (a, b) = ("leg-a@pbx", "leg-b@pbx");
    let mut msgs = vec![
        sip(now, "10.0.0.1:5060", "10.0.0.2:5060", &invite(a, "bob", "")),
        // The B2BUA's outgoing leg names the incoming one.
        sip(
            now,
            "10.0.0.2:5060",
            "10.0.0.3:5060",
            &invite(b, "bob", "X-CID: leg-a@pbx\r\n"),
        ),
        sip(now, "10.0.0.3:5060", "10.0.0.2:5060", &ok(b, "bob")),
        sip(now, "10.0.0.2:5060", "10.0.0.1:5060", &ok(a, "bob")),
        sip(
            now,
            "10.0.0.9:5060",
            "10.0.0.2:5060",
            &invite("other@pbx", "carol", ""),
        ),
    ];
    // A log line about leg A, linked by the HEP correlation id (chunk 0x0011).
    msgs.push({
        let mut m =
            HepMessage::decode(Bytes::from(sip(now, "10.0.0.2:0", "10.0.0.2:0", "x"))).unwrap();
        m.proto_type = Some(ProtoType::Log);
        m.correlation_id = Some(Bytes::from_static(b"leg-a@pbx"));
        m.payload = hep_proto::Payload::Plain(Bytes::from_static(b"routing to 10.0.0.3"));
        m.encode(HepVersion::V3).unwrap().to_vec()
    });
    send_udp(server.udp(), &msgs);
    wait_json(&dir.join("all.jsonl"), msgs.len());
    server.stop();
    let store = dir.join("store");
    let payloads = |records: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .map(|r| {
                r["payload"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    };
    let from_a = search_json(&store, &["--call-id", a]);
    assert_eq!(from_a.len(), 5, "both legs and the log line: {from_a:#?}");
    assert!(!payloads(&from_a).iter().any(|p| p.contains("carol")));
    let from_b = search_json(&store, &["--call-id", b]);
    assert_eq!(
        as_set(&from_b),
        as_set(&from_a),
        "the same call from either leg"
    );
    assert_eq!(search_json(&store, &["--call-id", "other@pbx"]).len(), 1);
}

#[test]
fn a_user_search_shows_whole_calls_found_by_their_initial_request() {
    let dir = test_dir("store-user-calls");
    let store = dir.join("store");
    // The INVITE received in the hour before, its answer in this hour's partition.
    let now = now_secs();
    let (a, b) = ("10.0.0.1:5060", "10.0.0.2:5060");
    let server = start(&dir, "max_age_hours = 0");
    send_udp(
        server.udp(),
        &[sip(now, a, b, &invite("across@x", "carol", ""))],
    );
    wait_json(&dir.join("all.jsonl"), 1);
    server.stop();
    as_if_received_hours_ago(&store, 1);
    let server = start(&dir, "max_age_hours = 0");
    send_udp(
        server.udp(),
        &[
            sip(now + 2, b, a, &ok("across@x", "carol")),
            // Only the answer of this call was captured: no initial request names carol.
            sip(now + 2, b, a, &ok("answer-only@x", "carol")),
        ],
    );
    wait_json(&dir.join("all.jsonl"), 2);
    server.stop();
    assert_eq!(partitions(&store).len(), 2);
    let found = search_json(&store, &["--user", "carol"]);
    let calls: Vec<&str> = found
        .iter()
        .map(|r| {
            let payload = r["payload"].as_str().unwrap();
            let at = payload.find("Call-ID: ").unwrap() + "Call-ID: ".len();
            payload[at..].split("\r\n").next().unwrap()
        })
        .collect();
    assert_eq!(
        calls,
        ["across@x", "across@x"],
        "the INVITE and its 200 from the next partition; not the call without its INVITE"
    );
    assert_eq!(
        search_json(&store, &["--call-id", "answer-only@x"]).len(),
        1
    );
}

/// Two INVITEs to bob, captured at `old` and at `now` (Call-IDs `old{tag}@x`, `new{tag}@x`).
fn bobs_calls(old: u32, now: u32, tag: &str) -> [Vec<u8>; 2] {
    [(old, "old"), (now, "new")].map(|(ts, name)| {
        sip(
            ts,
            "10.0.0.1:5060",
            "10.0.0.2:5060",
            &invite(&format!("{name}{tag}@x"), "bob", ""),
        )
    })
}

#[test]
fn partitions_and_retention_follow_receive_time_whatever_time_the_agents_write() {
    let dir = test_dir("store-retention");
    let store = dir.join("store");
    let now = now_secs();
    let old = now - 8 * 24 * 3_600;
    let label = format!("store:{}", store.display());
    // First run: a capture replayed from eight days ago, a call of now, and two messages
    // dated into the future (a year, ten years): all stored, in the hour they arrived.
    let server = start(&dir, "max_age_hours = 0");
    let future = [now + 366 * 86_400, now + 3_653 * 86_400].map(|ts| {
        let call = format!("future-{ts}@x");
        sip(
            ts,
            "10.0.0.1:5060",
            "10.0.0.2:5060",
            &invite(&call, "bob", ""),
        )
    });
    send_udp(
        server.udp(),
        &[bobs_calls(old, now, "").as_slice(), &future].concat(),
    );
    wait_json(&dir.join("all.jsonl"), 4);
    // The replayed and the future-dated messages are counted (as the store writes them).
    wait_for("3 messages of skewed clocks", OUTPUT_WAIT, || {
        let m = server.metrics();
        (m.get("hep_store_clock_skew_total", &[("output", &*label)]) == 3).then_some(())
    });
    let stopped = server.stop();
    assert_eq!(stopped.counts.dropped, 0);
    assert!(
        stopped.stderr.contains("clock_skew"),
        "a warning names the reason: {}",
        stopped.stderr
    );
    let received = partitions(&store);
    assert!(
        (1..=2).contains(&received.len()),
        "only the hour(s) the messages arrived in: {received:?}"
    );
    assert_eq!(search_json(&store, &["--user", "bob"]).len(), 4);
    // A time range is capture time: the replayed call is found in its own hour.
    let around_old = [old - 60, old + 60].map(|t| t.to_string());
    let found = search_json(
        &store,
        &["--since", &around_old[0], "--until", &around_old[1]],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]["payload"]
            .as_str()
            .unwrap()
            .contains("Call-ID: old@x")
    );

    as_if_received_hours_ago(&store, 3 * 24);

    // Second run: a day's retention removes what was received three days ago at start,
    // and stores what arrives now whatever its capture time.
    let server = start(&dir, "max_age_hours = 24");
    send_udp(server.udp(), &bobs_calls(old, now, "-again"));
    wait_json(&dir.join("all.jsonl"), 2);
    let m = server.metrics();
    assert_eq!(
        m.get("hep_store_partitions_removed_total", &[("output", &*label)]),
        received.len() as u64
    );
    let stopped = server.stop();
    assert_eq!(stopped.counts.dropped, 0);
    let kept = partitions(&store);
    assert!((1..=2).contains(&kept.len()), "{kept:?}");
    let hour = now - now % 3_600;
    assert!(kept[0].contains(&format_hour(hour)), "{kept:?}");
    let left = search_json(&store, &["--user", "bob"]);
    let ids: Vec<&str> = left
        .iter()
        .map(|r| r["payload"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|p| p.contains("-again@x")), "{ids:?}");
}

/// Renames the partitions of `store` (a stopped one) as if their messages had been
/// received `hours` earlier: a partition is named after the hour its messages arrived.
fn as_if_received_hours_ago(store: &Path, hours: i64) {
    use hep_server::store::partition::{file_name, parse_file_name};
    for name in partitions(store) {
        let (start, span) = parse_file_name(&name).unwrap();
        let renamed = file_name(start - hours * 3_600, span);
        std::fs::rename(store.join(&name), store.join(&renamed)).unwrap();
        let side = |n: &str| store.join(n.replace(".db", ".hep"));
        std::fs::rename(side(&name), side(&renamed)).unwrap();
    }
}

/// `HHMMSSZ` of a partition name for the hour starting at `secs`.
fn format_hour(secs: u32) -> String {
    let sod = secs % 86_400;
    format!("T{:02}0000Z-3600s.db", sod / 3_600)
}

#[test]
fn a_restart_appends_to_the_store() {
    let dir = test_dir("store-restart");
    let store = dir.join("store");
    let now = now_secs();
    for round in 0..2 {
        let server = start(&dir, "");
        let id = format!("call-{round}@x");
        send_udp(
            server.udp(),
            &[sip(
                now,
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                &invite(&id, "bob", ""),
            )],
        );
        wait_json(&dir.join("all.jsonl"), 1);
        server.stop();
    }
    let found = search_json(&store, &["--user", "bob"]);
    assert_eq!(found.len(), 2);
    assert!(found[0]["payload"].as_str().unwrap().contains("call-0@x"));
    assert!(found[1]["payload"].as_str().unwrap().contains("call-1@x"));
}

#[test]
fn a_foreign_file_in_the_store_is_refused_and_left_alone() {
    let dir = test_dir("store-foreign");
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let refused = |file: &Path, contents: &[u8], says: &str| {
        std::fs::write(file, contents).unwrap();
        let config = dir.join("c.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"store:{}\"]\n",
                store.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config", config.to_str().unwrap()]);
        let err = Server::try_spawn(cmd)
            .err()
            .expect("the server refuses to start");
        assert!(
            err.contains(&file.display().to_string()),
            "names the file: {err}"
        );
        assert!(err.contains(says), "`{says}` in {err}");
        let out = search(&store, &["--format", "json"]);
        let search_err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            search_err.contains(&file.display().to_string()),
            "{search_err}"
        );
        assert_eq!(std::fs::read(file).unwrap(), contents, "never overwritten");
        std::fs::remove_file(file).unwrap();
    };
    refused(
        &store.join("notes.txt"),
        b"my notes",
        "expected names like hep-",
    );
    refused(
        &store.join("hep-20261126T050000Z-3600s.hep"),
        b"named like the side file of a partition, but another program's bytes",
        "not a side file of a hep-server partition",
    );
    refused(
        &store.join("hep-20261126T050000Z-3600s.db"),
        b"not a database at all, but long enough to have a header of a hundred bytes..........................",
        "not an SQLite database",
    );
}

#[test]
fn a_message_whose_bytes_a_crash_lost_is_reported_and_the_rest_are_found() {
    let dir = test_dir("store-lost-tail");
    let server = start(&dir, "");
    let now = now_secs();
    let messages: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            sip(
                now,
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                &invite("lost@x", "bob", &format!("X-N: {i}\r\n")),
            )
        })
        .collect();
    send_tcp(server.tcp(), &messages.concat());
    wait_json(&dir.join("all.jsonl"), 3);
    server.stop();
    let store = dir.join("store");
    // The HEP bytes are in the side file beside the partition (schema version 3).
    let side = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "hep"))
        .expect("a .hep side file");
    // A power cut lost the file's tail: half of the last message.
    let len = std::fs::metadata(&side).unwrap().len();
    let cut = len - messages[2].len() as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&side)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let out = search(&store, &["--call-id", "lost@x", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let found = json_records(&out, "search");
    assert_eq!(found.len(), 2, "the messages whose bytes are there");
    assert!(
        stderr.contains("warning") && stderr.contains(&side.display().to_string()),
        "the lost one is reported, naming the file: {stderr}"
    );
}

#[test]
fn pcap_search_writes_the_call_for_wireshark() {
    let dir = test_dir("store-pcap");
    let server = start(&dir, "max_age_hours = 0");
    send_udp(server.udp(), &set_bytes("v3-udp-"));
    wait_json(&dir.join("all.jsonl"), 12);
    server.stop();
    let store = dir.join("store");
    let file = dir.join("call.pcap");
    let out = search(
        &store,
        &[
            "--call-id",
            "1-13274@127.0.0.1",
            "--format",
            "pcap",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = search_json(&store, &["--call-id", "1-13274@127.0.0.1"]);
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let payload = expected[n]["payload"].as_str().unwrap();
        assert!(p.data.ends_with(payload.as_bytes()), "packet {n}");
        n += 1;
    }
    assert_eq!(n, expected.len());
}

#[test]
fn a_burst_of_messages_with_one_timestamp_is_stored_whole() {
    // `send` stamps every message of a run with the same time: 3000 in one microsecond
    // (ids of one microsecond are 1024; the rest spill over without a loss).
    let dir = test_dir("store-burst");
    let server = start(&dir, "");
    let payload = dir.join("invite.sip");
    std::fs::write(&payload, invite("burst@x", "bob", "")).unwrap();
    let out = Command::new(BIN)
        .args([
            "send",
            "--dest",
            &format!("hep_tcp:{}", server.tcp()),
            "--count",
            "3000",
        ])
        .arg(&payload)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_json(&dir.join("all.jsonl"), 3000);
    let stopped = server.stop();
    assert_eq!(stopped.counts.dropped, 0);
    let found = search_json(
        &dir.join("store"),
        &["--call-id", "burst@x", "--limit", "10000"],
    );
    assert_eq!(found.len(), 3000);
    let ts = (found[0]["ts_sec"].clone(), found[0]["ts_usec"].clone());
    let t = found[0]["ts_sec"].as_u64().unwrap();
    assert!(
        found
            .iter()
            .all(|r| (r["ts_sec"].clone(), r["ts_usec"].clone()) == ts)
    );
    // The time filters still find all of them.
    let around = search_json(
        &dir.join("store"),
        &[
            "--since",
            &t.to_string(),
            "--until",
            &(t + 1).to_string(),
            "--limit",
            "10000",
        ],
    );
    assert_eq!(around.len(), 3000);
}

#[test]
fn the_kamailio_sipp_call_searched_from_the_store_draws_as_its_golden_ladder() {
    let dir = test_dir("store-ladder");
    let server = start(&dir, "max_age_hours = 0");
    // The call with the other sets around it: the search picks out its 12 messages.
    let mut sent = 0;
    for set in ["v3-udp-", "v2-udp-ipv6-", "v3-udp-hlog-authkey-"] {
        let datagrams = set_bytes(set);
        sent += datagrams.len();
        send_udp(server.udp(), &datagrams);
    }
    wait_json(&dir.join("all.jsonl"), sent);
    server.stop();
    // The default format is the ladder; no colors when not on a terminal.
    let out = search(&dir.join("store"), &["--call-id", "1-13274@127.0.0.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ladder-kamailio-v3.txt");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ladder = std::fs::read_to_string(golden).unwrap();
    assert!(stdout.starts_with(&ladder), "{stdout}");
    // Under the ladder of one call, its KPIs (SUMMARY.txt's capture times: INVITE at
    // .909050, the first 180 at .910010, the first 200 at .911120, the BYE at .916908,
    // sent by the caller on port 5061) and its QoS (none here).
    assert_eq!(
        &stdout[ladder.len()..],
        "\nKPIs of 1-13274@127.0.0.1 (1 leg)\n\
         \x20 result 200 (2xx)  SRD 0.960 ms  PDD 0.960 ms  answer 2.070 ms  \
         duration 0.006 s  hung up by caller\n\
         \x20 Q.850 cause -  retransmissions 0  re-INVITEs 0\n\
         \nQoS: no RTCP, RTCP-XR or X-RTP-Stat report\n"
    );
    let colored = search(
        &dir.join("store"),
        &["--call-id", "1-13274@127.0.0.1", "--color", "always"],
    );
    assert!(
        colored.stdout.windows(2).any(|w| w == b"\x1b["),
        "ANSI colors"
    );
}

#[test]
fn below_the_free_space_floor_nothing_is_written_and_drops_are_counted() {
    let dir = test_dir("store-disk-low");
    // A floor of a thousand tebibytes: no disk here has that much free.
    let server = start(&dir, "min_free_mb = 1000000000");
    let now = now_secs();
    send_udp(
        server.udp(),
        &[sip(
            now,
            "10.0.0.1:5060",
            "10.0.0.2:5060",
            &invite("full@x", "bob", ""),
        )],
    );
    wait_json(&dir.join("all.jsonl"), 1);
    wait_first_drop(&server, "disk_low");
    let stopped = server.stop();
    assert_eq!(stopped.counts.dropped, 1);
    assert!(
        stopped.stderr.contains("free space below the floor"),
        "{}",
        stopped.stderr
    );
    assert!(
        partitions(&dir.join("store")).is_empty(),
        "no partition written"
    );
}

/// Waits until the first message dropped for `reason` is counted (the series appears with
/// the first drop of its reason).
fn wait_first_drop(server: &Server, reason: &str) {
    let series = format!("reason=\"{reason}\"}} 1");
    wait_for(&format!("a {reason} drop counted"), OUTPUT_WAIT, || {
        server.metrics().0.contains(&series).then_some(())
    });
}

#[test]
fn search_by_node_and_text_with_the_ladder_named_by_the_configs_aliases() {
    let dir = test_dir("store-node-text-aliases");
    let server = start(&dir, "max_age_hours = 0");
    send_udp(server.udp(), &set_bytes("v3-udp-"));
    // Another call, from node sbc-east, with a header no other field holds.
    let ts = 1_795_670_509 + 60;
    let from_node = |payload: &str, ts: u32| {
        let mut m = HepMessage::decode(Bytes::from(sip(
            ts,
            "192.0.2.1:5060",
            "192.0.2.2:5060",
            payload,
        )))
        .unwrap();
        m.node_name = Some(Bytes::from_static(b"sbc-east"));
        m.encode(HepVersion::V3).unwrap().to_vec()
    };
    send_udp(
        server.udp(),
        &[
            from_node(&invite("ticket-call", "bob", "X-Ticket: T-4711\r\n"), ts),
            from_node(&ok("ticket-call", "bob"), ts + 1),
        ],
    );
    wait_json(&dir.join("all.jsonl"), 14);
    server.stop();
    let store = dir.join("store");

    let by_node = search_json(&store, &["--node", "sbc-east"]);
    assert_eq!(by_node.len(), 2);
    assert!(by_node.iter().all(|r| r["node_name"] == "sbc-east"));
    assert_eq!(search(&store, &["--node", "sbc"]).status.code(), Some(1));
    let by_text = search_json(&store, &["--text", "x-ticket: t-4711"]);
    assert_eq!(by_text.len(), 2, "the whole call, its 200 OK too");
    assert!(
        by_text[0]["payload"]
            .as_str()
            .unwrap()
            .contains("X-Ticket: T-4711")
    );
    assert_eq!(
        search_json(&store, &["--text", "Performance Test"]).len(),
        12,
        "the Kamailio call's Subject"
    );
    let long = "x".repeat(257);
    assert_eq!(search(&store, &["--text", &long]).status.code(), Some(2));

    // The collector's config names the ladder's columns, and gives the store.
    let config = dir.join("hep-server.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[aliases]\n\"127.0.0.1:5060\" = \"proxy\"\n\"127.0.0.1\" = \"sipp-host\"\n");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .args(["search", "--config", config.to_str().unwrap()])
        .args(["--call-id", "1-13274@127.0.0.1", "--color", "never"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ladder = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = ladder.lines().skip(4).take(2).collect();
    for name in ["proxy", "sipp-host"] {
        assert!(header[0].contains(name), "{name} heads a column:\n{ladder}");
    }
    for addr in ["127.0.0.1:5060", "127.0.0.1:5061", "127.0.0.1:5070"] {
        assert!(
            header[1].contains(addr),
            "{addr} under its alias:\n{ladder}"
        );
    }
    std::fs::write(&config, "[aliases]\n\"127.0.0.1/33\" = \"x\"\n").unwrap();
    let bad = Command::new(BIN)
        .args(["search", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("`127.0.0.1/33`: `/33` is not a prefix length"),
        "{err}"
    );
}
