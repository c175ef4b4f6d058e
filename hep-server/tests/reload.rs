//! Signals, with the real binary: SIGHUP reloads the callbacks and outputs (docs/CONFIG.md,
//! "Reloading"), and SIGTERM in the middle of a stream loses nothing the server decoded.
//!
//! The harness is `tests/common` (the same as `tests/run.rs`): a server per test on
//! loopback with port 0, every wait bounded.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hep_proto::{HepMessage, HepVersion};
use hep_testkit::vectors::read;
use serde_json::Value;

mod common;

use common::*;

/// Starts `hep-server run --config DIR/hep-server.toml` with `text` as the file, logging
/// at `info` whatever the environment says (the reload outcome is an `info` line).
fn start(dir: &Path, text: &str) -> (Server, PathBuf) {
    let path = dir.join("hep-server.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info");
    (Server::spawn(cmd), path)
}

/// A configuration listening on loopback UDP and TCP, with metrics, then `rest`.
fn config(outputs: &[&Path], rest: &str) -> String {
    let outputs: Vec<String> = outputs
        .iter()
        .map(|p| format!("\"json:{}\"", p.display()))
        .collect();
    format!(
        "listen = [\"hep_udp:127.0.0.1:0\", \"hep_tcp:127.0.0.1:0\"]\n\
         outputs = [{}]\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n{rest}",
        outputs.join(", ")
    )
}

/// Rewrites the config file, sends SIGHUP and waits for the `n`th outcome line
/// (`reloaded FILE: ...` or `reload of FILE failed, ...`); returns it.
fn reload(server: &Server, path: &Path, text: &str, n: usize) -> String {
    std::fs::write(path, text).unwrap();
    server.signal("HUP");
    let (ok, failed) = (
        format!("reloaded {}: ", path.display()),
        format!("reload of {} failed", path.display()),
    );
    wait_for(&format!("reload outcome {n}"), PROCESS_WAIT, || {
        let err = server.stderr();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(&ok) || l.contains(&failed))
            .collect();
        (lines.len() >= n).then(|| lines[n - 1].to_owned())
    })
}

fn proto_types(records: &[Value]) -> BTreeSet<u64> {
    records
        .iter()
        .map(|r| r["proto_type"].as_u64().unwrap())
        .collect()
}

// ===== SIGHUP =====

#[test]
fn a_reloaded_filter_applies_from_the_next_message_on() {
    let dir = test_dir("reload-filter");
    let out = dir.join("out.jsonl");
    let (server, path) = start(
        &dir,
        &config(&[&out], "[filter]\nproto_types = [\"log\"]\n"),
    );
    // 3 log messages (hlog) and 12 SIP messages.
    let set = set_bytes("v3-udp-hlog-authkey-");
    send_udp(server.udp(), &set);
    let before = wait_json(&out, 3);
    assert_eq!(proto_types(&before), BTreeSet::from([100]), "log only");

    let line = reload(
        &server,
        &path,
        &config(&[&out], "[filter]\nproto_types = [\"sip\"]\n"),
        1,
    );
    assert!(
        line.contains(&format!(
            "reloaded {}: outputs [json:{}], callbacks [filter (changed)]",
            path.display(),
            out.display()
        )),
        "{line}"
    );
    send_udp(server.udp(), &set);
    let records = wait_json(&out, 3 + 12);
    assert_eq!(records[..3], before[..], "the file was kept, not truncated");
    assert_eq!(proto_types(&records[3..]), BTreeSet::from([1]), "SIP only");
    assert_eq!(
        sorted(&records[3..]),
        sorted(
            &decode(&set_files("v3-udp-hlog-authkey-"))
                .into_iter()
                .filter(|r| r["proto_type"] == 1)
                // The agents' key, not checked here, is removed all the same.
                .map(|mut r| {
                    r["auth_key"] = Value::Null;
                    r
                })
                .collect::<Vec<_>>()
        )
    );
    // The filter's counters continue across the two chains.
    wait_for("the filter's counters", OUTPUT_WAIT, || {
        let m = server.metrics();
        let filtered = m.get(
            "hep_dropped_total",
            &[("stage", "filter"), ("reason", "proto_type")],
        );
        (filtered == 12 + 3).then_some(())
    });
    let m = server.metrics();
    assert_eq!(
        m.get("hep_config_reloads_total", &[("result", "success")]),
        1
    );
    let stopped = server.stop();
    assert_eq!(
        stopped.counts,
        Counts {
            received: 30,
            decoded: 30,
            delivered: 15,
            dropped: 15,
            ..Counts::default()
        },
        "a filtered message is counted, never delivered"
    );
}

#[test]
fn a_reload_adds_and_removes_outputs_without_losing_a_message() {
    let dir = test_dir("reload-outputs");
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let (server, path) = start(&dir, &config(&[&a], ""));
    let udp_set = set_bytes("v3-udp-");
    let frames = hep3_frames(&read("kamailio/v3-tcp-stream.bin"));
    // One TCP connection across both reloads: it must follow them too.
    let mut conn = TcpStream::connect(server.tcp()).unwrap();
    let send_round = |conn: &mut TcpStream| {
        send_udp(server.udp(), &udp_set);
        conn.write_all(&frames.concat()).unwrap();
    };

    send_round(&mut conn);
    let first = wait_json(&a, 24);

    // Add B.
    let line = reload(&server, &path, &config(&[&a, &b], ""), 1);
    let (a_spec, b_spec) = (
        format!("json:{}", a.display()),
        format!("json:{}", b.display()),
    );
    assert!(
        line.contains(&format!(
            "outputs [{a_spec}, {b_spec} (added)], callbacks [none]"
        )),
        "{line}"
    );
    send_round(&mut conn);
    let in_a = wait_json(&a, 48);
    let in_b = wait_json(&b, 24);
    assert_eq!(in_a[..24], first[..], "A kept what it had: not restarted");
    assert_eq!(
        sorted(&in_a[24..]),
        sorted(&in_b),
        "after the reload both have every message"
    );
    let mut expected = decode(&set_files("v3-udp-"));
    expected.extend(decode(&[
        hep_testkit::vectors::testdata_dir().join("kamailio/v3-tcp-stream.bin")
    ]));
    assert_eq!(sorted(&in_b), sorted(&expected));
    assert_eq!(
        in_b.iter()
            .filter(|r| r["recv"]["transport"] == "tcp")
            .count(),
        12,
        "the connection opened before the reload delivers to B"
    );

    // Remove A: it writes what it had and closes; B goes on.
    let line = reload(&server, &path, &config(&[&b], ""), 2);
    assert!(
        line.contains(&format!("outputs [{b_spec}, {a_spec} (removed)]")),
        "{line}"
    );
    server.wait_log("output closed after the reload", 1);
    send_round(&mut conn);
    wait_json(&b, 48);
    assert_eq!(json_lines(&a).len(), 48, "nothing more in A");
    let m = server.metrics();
    assert_eq!(m.get("hep_output_active", &[("output", &a_spec)]), 0);
    assert_eq!(m.get("hep_output_active", &[("output", &b_spec)]), 1);
    assert_eq!(m.get("hep_delivered_total", &[("output", &a_spec)]), 48);
    drop(conn);
    let stopped = server.stop();
    assert_eq!(
        stopped.counts,
        Counts {
            received: 72,
            decoded: 72,
            // A: 48, B: 48; the removed output's deliveries stay in the summary.
            delivered: 96,
            ..Counts::default()
        }
    );
    assert_eq!(json_lines(&b).len(), 48);
}

#[test]
fn a_reload_with_a_mistake_keeps_the_running_configuration() {
    let dir = test_dir("reload-mistake");
    let out = dir.join("out.jsonl");
    let log_only = "[filter]\nproto_types = [\"log\"]\n";
    let (server, path) = start(&dir, &config(&[&out], log_only));
    let p = path.display().to_string();

    // A value that is not a protocol type: file, line, column and key.
    let bad = config(&[&out], "[filter]\nproto_types = [\"log\", \"nonsense\"]\n");
    let line = reload(&server, &path, &bad, 1);
    let (row, text) = bad
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("nonsense"))
        .unwrap();
    let (row, col) = (row + 1, text.find("\"nonsense\"").unwrap() + 1);
    assert!(
        line.contains(&format!(
            "reload of {p} failed, the running configuration stays: {p}:{row}:{col}: \
             key `filter.proto_types`: unknown protocol type `nonsense`"
        )),
        "{line}"
    );
    // An output that cannot start: refused as a whole.
    let missing = dir.join("no-such-dir").join("x.jsonl");
    let line = reload(&server, &path, &config(&[&missing], ""), 2);
    assert!(
        line.contains("failed, the running configuration stays")
            && line.contains("cannot create the file"),
        "{line}"
    );
    // Unknown key.
    let typo = format!("hep_max_msg_chunk = 3\n{}", config(&[&out], log_only));
    let line = reload(&server, &path, &typo, 3);
    assert!(
        line.contains(&format!("{p}:1:1: unknown field `hep_max_msg_chunk`")),
        "{line}"
    );

    // Still the first configuration: log messages only, into the same file.
    send_udp(server.udp(), &set_bytes("v3-udp-hlog-authkey-"));
    assert_eq!(proto_types(&wait_json(&out, 3)), BTreeSet::from([100]));

    // What needs a restart is said, and the rest is applied.
    let text = config(&[&out], "[limits]\noutput_queue = 10\n");
    let line = reload(&server, &path, &text, 4);
    assert!(line.contains(&format!("reloaded {p}")), "{line}");
    let warning = server.wait_log("needs a restart", 1);
    assert!(
        warning.contains(&format!(
            "{p}: [limits] changed, which needs a restart: the running values stay"
        )),
        "{warning}"
    );
    send_udp(server.udp(), &set_bytes("v3-udp-hlog-authkey-"));
    wait_json(&out, 3 + 15);
    let m = server.metrics();
    assert_eq!(
        (
            m.get("hep_config_reloads_total", &[("result", "failure")]),
            m.get("hep_config_reloads_total", &[("result", "success")])
        ),
        (3, 1)
    );
    let stopped = server.stop();
    assert_eq!((stopped.counts.delivered, stopped.counts.dropped), (18, 12));
}

#[test]
fn a_reload_making_two_outputs_write_one_file_is_refused() {
    let dir = test_dir("reload-same-file");
    let out = dir.join("out.jsonl");
    let (server, path) = start(&dir, &config(&[&out], ""));
    let line = reload(&server, &path, &config(&[&out, &out], ""), 1);
    let json = format!("json:{}", out.display());
    assert!(
        line.contains("failed, the running configuration stays")
            && line.contains(&format!("outputs `{json}` and `{json}` both write")),
        "{line}"
    );
    // Still one output writing the file: each message once.
    send_udp(server.udp(), &set_bytes("v3-udp-hlog-authkey-"));
    assert_eq!(wait_json(&out, 15).len(), 15);
    let stopped = server.stop();
    assert_eq!((stopped.counts.delivered, stopped.counts.dropped), (15, 0));
    assert_eq!(json_lines(&out).len(), 15);
}

#[test]
fn sighup_without_a_config_file_changes_nothing() {
    let dir = test_dir("reload-none");
    let out = dir.join("out.jsonl");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
    ])
    .env("RUST_LOG", "info");
    let server = Server::spawn(cmd);
    server.signal("HUP");
    server.wait_log(
        "SIGHUP: started without --config, there is nothing to reload",
        1,
    );
    send_udp(server.udp(), &set_bytes("v3-udp-"));
    wait_json(&out, 12);
    assert_eq!(server.stop().counts.delivered, 12);
}

// ===== SIGTERM =====

/// Rounds of the Kamailio vectors each agent sends at most (12 messages a round).
const ROUNDS: u64 = 2_000;

/// The Kamailio messages of `set` with capture ids `first + 12 * round + i`: every
/// message sent is told apart in the output.
fn numbered(messages: &[Vec<u8>], first: u32, round: u64) -> Vec<Vec<u8>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut m = HepMessage::decode(Bytes::from(m.clone())).unwrap();
            m.capture_id = Some(first + (12 * round) as u32 + i as u32);
            m.encode(HepVersion::V3).unwrap().to_vec()
        })
        .collect()
}

#[test]
fn sigterm_mid_stream_loses_nothing_the_server_decoded() {
    const TCP_IDS: u32 = 0;
    const UDP_IDS: u32 = 1_000_000;
    let dir = test_dir("sigterm-stream");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    // Frames the TCP agent's kernel accepted (whole rounds), datagrams the UDP agent sent.
    let tcp_written = Arc::new(AtomicU64::new(0));
    let udp_sent = Arc::new(AtomicU64::new(0));
    let (tcp, udp) = (server.tcp(), server.udp());
    // About 12 messages per millisecond per agent, for at most 2,000 rounds each.
    let tcp_agent = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&tcp_written));
        let frames = hep3_frames(&read("kamailio/v3-tcp-stream.bin"));
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(tcp).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            for round in 0..ROUNDS {
                if stop.load(Ordering::Relaxed)
                    || s.write_all(&numbered(&frames, TCP_IDS, round).concat())
                        .is_err()
                {
                    break;
                }
                written.fetch_add(12, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let udp_agent = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&udp_sent));
        let datagrams = set_bytes("v3-udp-");
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            for round in 0..ROUNDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for d in numbered(&datagrams, UDP_IDS, round) {
                    let _ = s.send_to(&d, udp);
                }
                sent.fetch_add(12, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    wait_for("the first records", OUTPUT_WAIT, || {
        (json_lines(&out).len() > 1_000).then_some(())
    });
    let (tcp_at_stop, udp_at_stop) = (
        tcp_written.load(Ordering::Relaxed),
        udp_sent.load(Ordering::Relaxed),
    );
    assert!(
        tcp_at_stop < 12 * ROUNDS && udp_at_stop < 12 * ROUNDS,
        "SIGTERM comes mid-stream"
    );
    let stopped = server.stop();
    stop.store(true, Ordering::Relaxed);
    tcp_agent.join().unwrap();
    udp_agent.join().unwrap();

    let c = stopped.counts;
    assert_eq!((c.rejected, c.skipped), (0, 0), "{c:?}");
    assert!(c.decoded > 1_000, "{c:?}");
    // One output: every decoded message is delivered or counted as dropped...
    assert_eq!(c.decoded, c.delivered + c.dropped, "{c:?}");
    // ... and every delivered one is in the file, whole, once.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "no partial record at the end");
    let records = json_lines(&out);
    assert_eq!(records.len() as u64, c.delivered, "{c:?}");
    let ids: Vec<u64> = records
        .iter()
        .map(|r| r["capture_id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "no message twice"
    );
    // TCP: what the server took from the connection is a gap-free prefix of the stream,
    // in order. (Bytes the agent's kernel accepted but the stopping server never read
    // were not accepted by the server: they are neither decoded nor counted.)
    let tcp_ids: Vec<u64> = records
        .iter()
        .filter(|r| r["recv"]["transport"] == "tcp")
        .map(|r| r["capture_id"].as_u64().unwrap())
        .collect();
    let n = tcp_ids.len() as u64;
    assert_eq!(
        tcp_ids,
        (0..n).collect::<Vec<_>>(),
        "in order, without a gap"
    );
    assert!(
        n > 0 && n <= tcp_written.load(Ordering::Relaxed),
        "{n} of {tcp_at_stop}"
    );
    // UDP: only what was sent.
    let udp_sent = udp_sent.load(Ordering::Relaxed);
    assert!(
        records
            .iter()
            .filter(|r| r["recv"]["transport"] == "udp")
            .all(|r| (u64::from(UDP_IDS)..u64::from(UDP_IDS) + udp_sent)
                .contains(&r["capture_id"].as_u64().unwrap())),
        "UDP records are datagrams the agent sent"
    );
}
