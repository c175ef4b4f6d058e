//! Resource limits under attack, against the running binary (issue 7): a connection
//! flood beyond `[limits] max_connections` (and beyond the open-files limit), a flood
//! on the metrics port, slow senders, connections stalled inside a large frame, many
//! idle TCP and TLS connections, and a UDP flood far above capacity. In each, memory
//! stays bounded, the overload is shed and counted, and a well-behaved agent alongside
//! is served in full.
//!
//! The heavy versions (10,000 idle connections, 4,000 idle TLS connections, 4,000
//! stalled frames, a UDP flood of millions of datagrams) are `#[ignore]`d; run them in
//! release, with their numbers on stderr (SECURITY.md, "What it withstands"):
//!
//! ```sh
//! cargo build --release -p hep-testkit --bin hep-bench-peer
//! cargo test --release -p hep-server --test attack -- --ignored --nocapture --test-threads 1
//! ```
//!
//! No test asserts a time: the waits are bounded so that a broken server fails a test
//! instead of hanging it, and memory is checked against a generous bound.

use std::any::Any;
use std::collections::BTreeMap;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hep_proto::{HepMessage, HepVersion, ProtoType};
use serde_json::Value;

mod common;

use common::*;

/// The most datagrams one GSO send of `hep-server send` carries (quinn-udp's
/// `max_gso_segments`, the kernel's `UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: u64 = 64;

/// What the server may hold in memory under any of these attacks.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// The `Udp:` counters of `/proc/net/snmp` (this machine's, every process's).
fn udp_snmp() -> BTreeMap<String, u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(n, v)| (n.to_owned(), v.parse().unwrap()))
        .collect()
}

/// A valid HEPv3 SIP message named `tag` (in its payload and correlation id).
fn message(tag: &str) -> Vec<u8> {
    HepMessage::builder()
        .src("10.0.0.1:5060".parse().unwrap())
        .dst("10.0.0.2:5060".parse().unwrap())
        .timestamp(1_700_000_000, 0)
        .proto_type(ProtoType::Sip)
        .capture_id(2001)
        .correlation_id(tag.to_owned())
        .payload(format!(
            "OPTIONS sip:{tag}@example.com SIP/2.0\r\nCall-ID: {tag}\r\n\r\n"
        ))
        .build()
        .encode(HepVersion::V3)
        .unwrap()
        .to_vec()
}

/// The correlation ids of the records of `path` that came over `transport`, sorted.
/// Reads line by line and parses only those records: the file may be large.
fn tags(path: &Path, transport: &str) -> Vec<String> {
    let needle = format!("\"transport\":\"{transport}\"");
    let file = std::fs::File::open(path).unwrap();
    let mut out: Vec<String> = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(&needle))
        .map(|l| {
            let v: Value = serde_json::from_str(&l).unwrap();
            v["correlation_id"].as_str().unwrap().to_owned()
        })
        .collect();
    out.sort();
    out
}

fn sorted_tags(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    v.sort();
    v
}

/// Whether a read says the server closed (or reset) the connection; a read that timed
/// out says it is open.
fn closed(read: io::Result<usize>) -> bool {
    match read {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

/// Whether the server has closed (or reset) `s`; a look that does not wait.
fn closed_by_the_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let closed = match s.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// A well-behaved agent: `n` messages tagged `prefix-i` over one TCP connection,
/// closed cleanly at the end. Fails if the server closes it first.
fn agent(addr: SocketAddr, prefix: &str, n: usize) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    for i in 0..n {
        s.write_all(&message(&format!("{prefix}-{i}"))).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(PROCESS_WAIT)).unwrap();
    assert_eq!(
        s.read(&mut [0u8; 1]).unwrap(),
        0,
        "closed after the agent's FIN"
    );
}

fn config(dir: &Path, out: &Path, listen: &[&str], extra: &str) -> PathBuf {
    let listen: Vec<String> = listen.iter().map(|l| format!("\"{l}\"")).collect();
    let text = format!(
        "listen = [{}]\noutputs = [\"json:{}\"]\n{extra}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        listen.join(", "),
        out.display(),
    );
    let path = dir.join("hep-server.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `hep-server run --config FILE` with the open-files limit raised to the hard limit.
fn server_with_many_files(config: &Path) -> Server {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n \"$(ulimit -Hn)\" && exec \"$0\" run --http 127.0.0.1:0 --config \"$1\"",
        BIN,
        config.to_str().unwrap(),
    ]);
    Server::spawn(cmd)
}

// ===== a connection flood =====

#[test]
fn a_connection_flood_beyond_max_connections_is_refused_and_counted_and_a_free_slot_serves_an_agent()
 {
    const MAX: usize = 16;
    const FLOOD: usize = 64;
    let dir = test_dir("attack-conn-flood");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--config",
        config(
            &dir,
            &out,
            &["hep_udp:127.0.0.1:0", "hep_tcp:127.0.0.1:0"],
            &format!("[limits]\nmax_connections = {MAX}\n"),
        )
        .to_str()
        .unwrap(),
    ]);
    let tcp_listener = format!("hep_tcp:{}", server.tcp());

    // The flood: connections that never send anything.
    // A connect may already see the reset of a refused one.
    let flood: Vec<io::Result<TcpStream>> = (0..FLOOD)
        .map(|_| TcpStream::connect_timeout(&server.tcp(), Duration::from_secs(2)))
        .collect();
    // UDP is served meanwhile.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..50 {
        udp.send_to(&message(&format!("udp-{i}")), server.udp())
            .unwrap();
    }
    let m = wait_for("the excess refused", PROCESS_WAIT, || {
        let m = server.metrics();
        let refused = m.get(
            "hep_rejected_total",
            &[("listener", &tcp_listener), ("reason", "max_connections")],
        );
        (refused == (FLOOD - MAX) as u64).then_some(m)
    });
    assert_eq!(
        m.get("hep_connections_open", &[("listener", &tcp_listener)]),
        MAX as u64
    );
    // Each excess connection sees its close at once: none is left waiting.
    let refused_now = |s: &io::Result<TcpStream>| s.as_ref().map_or(true, closed_by_the_server);
    wait_for("the refused to see their close", OUTPUT_WAIT, || {
        (flood.iter().filter(|s| refused_now(s)).count() == FLOOD - MAX).then_some(())
    });
    let (refused, open): (Vec<_>, Vec<_>) = flood.into_iter().partition(refused_now);
    let mut open: Vec<TcpStream> = open.into_iter().map(Result::unwrap).collect();
    assert_eq!((refused.len(), open.len()), (FLOOD - MAX, MAX));

    // A well-behaved agent while every slot is taken: refused too, and counted.
    if let Ok(mut early) = TcpStream::connect_timeout(&server.tcp(), Duration::from_secs(2)) {
        early.set_read_timeout(Some(PROCESS_WAIT)).unwrap();
        assert!(closed(early.read(&mut [0u8; 1])), "refused while full");
    }

    // One slot frees: the agent that connects now is served in full.
    drop(open.pop());
    wait_for("a free slot", PROCESS_WAIT, || {
        let m = server.metrics();
        (m.get("hep_connections_open", &[("listener", &tcp_listener)]) == (MAX - 1) as u64)
            .then_some(())
    });
    agent(server.tcp(), "agent", 20);

    wait_json(&out, 50 + 20);
    assert_eq!(tags(&out, "udp"), sorted_tags("udp", 50));
    assert_eq!(tags(&out, "tcp"), sorted_tags("agent", 20));
    let m = server.metrics();
    assert_eq!(
        m.get(
            "hep_rejected_total",
            &[("listener", &tcp_listener), ("reason", "max_connections")]
        ),
        (FLOOD - MAX + 1) as u64
    );
    drop((open, refused));
    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, 70);
}

#[test]
fn a_connection_flood_cannot_exhaust_the_file_descriptors_when_max_connections_exceeds_ulimit() {
    const FLOOD: usize = 300;
    let dir = test_dir("attack-conn-flood-fds");
    let out = dir.join("out.jsonl");
    // max_connections at its default (4096), the open-files limit far below it.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 200 && exec \"$0\" run --http 127.0.0.1:0 --config \"$1\"",
        BIN,
        config(
            &dir,
            &out,
            &["hep_udp:127.0.0.1:0", "hep_tcp:127.0.0.1:0"],
            "",
        )
        .to_str()
        .unwrap(),
    ]);
    let server = Server::spawn(cmd);
    let tcp_listener = format!("hep_tcp:{}", server.tcp());
    assert!(
        server.stderr().contains("open-files limit"),
        "says that max_connections does not fit:\n{}",
        server.stderr()
    );
    let flood: Vec<io::Result<TcpStream>> = (0..FLOOD)
        .map(|_| TcpStream::connect_timeout(&server.tcp(), Duration::from_secs(2)))
        .collect();
    // The excess is refused and counted, and the server still has descriptors for the
    // metrics endpoint (a scrape is a new connection) and everything else.
    let m = wait_for("the excess refused", PROCESS_WAIT, || {
        let m = server.metrics();
        let refused = m.get(
            "hep_rejected_total",
            &[("listener", &tcp_listener), ("reason", "max_connections")],
        );
        let open = m.get("hep_connections_open", &[("listener", &tcp_listener)]);
        (refused + open == FLOOD as u64).then_some(m)
    });
    assert!(m.get("hep_rejected_total", &[("reason", "max_connections")]) > 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20 {
        udp.send_to(&message(&format!("udp-{i}")), server.udp())
            .unwrap();
    }
    wait_json(&out, 20);
    drop(flood);
    let stopped = server.stop();
    assert!(
        !stopped.stderr.contains("accept failed"),
        "the listener ran out of file descriptors:\n{}",
        stopped.stderr
    );
}

// ===== slow senders =====

/// Writes `frame` a few bytes at a time, `gap` apart, until the server closes the
/// connection (at most the whole frame but its last byte); returns whether it did.
fn trickle(addr: SocketAddr, frame: &[u8], step: usize, gap: Duration) -> bool {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_nodelay(true).unwrap();
    for piece in frame[..frame.len() - 1].chunks(step) {
        if s.write_all(piece).is_err() || closed_by_the_server(&s) {
            return true;
        }
        std::thread::sleep(gap);
    }
    false
}

#[test]
fn slow_senders_are_cut_by_the_frame_limits_and_give_their_slots_back() {
    let dir = test_dir("attack-slow");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--config",
        config(
            &dir,
            &out,
            &["hep_tcp:127.0.0.1:0"],
            "hep_max_msg_chunks = 8\n[limits]\nmax_connections = 3\n\
             frame_timeout_ms = 1500\nidle_timeout_ms = 1500\n",
        )
        .to_str()
        .unwrap(),
    ]);
    let addr = server.tcp();
    let listener = format!("hep_tcp:{addr}");
    // A frame long enough to be trickled for far longer than the limits allow.
    let frame = message(&"x".repeat(400));

    // Three slow senders take every slot: one byte every 20 ms (more reads than
    // hep_max_msg_chunks), a few bytes every 400 ms (too slow for frame_timeout), and
    // a connection that never sends (idle_timeout).
    let chunks = {
        let f = frame.clone();
        std::thread::spawn(move || trickle(addr, &f, 1, Duration::from_millis(20)))
    };
    let slow = {
        let f = frame.clone();
        std::thread::spawn(move || trickle(addr, &f, 4, Duration::from_millis(400)))
    };
    let mut silent = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    silent.set_read_timeout(Some(PROCESS_WAIT)).unwrap();
    assert!(chunks.join().unwrap(), "cut by hep_max_msg_chunks");
    assert!(slow.join().unwrap(), "cut by frame_timeout");
    assert!(closed(silent.read(&mut [0u8; 1])), "cut by idle_timeout");

    // The slots are free again: a well-behaved agent is served in full.
    wait_for("every slot free", PROCESS_WAIT, || {
        let m = server.metrics();
        (m.get("hep_connections_open", &[("listener", &listener)]) == 0).then_some(())
    });
    agent(addr, "agent", 20);
    wait_json(&out, 20);
    assert_eq!(tags(&out, "tcp"), sorted_tags("agent", 20));
    let m = server.metrics();
    for reason in ["max_msg_chunks", "frame_timeout", "idle_timeout"] {
        assert_eq!(
            m.get(
                "hep_rejected_total",
                &[("listener", &listener), ("reason", reason)]
            ),
            1,
            "{reason}"
        );
    }
    assert_eq!(server.stop().counts.delivered, 20);
}

/// `n` connections each send all of a 65,535-byte frame but its last byte and stall:
/// the most a slow sender can make the server hold. Returns the server's RSS (KiB)
/// before, with them all buffered, and after `frame_timeout` cut them.
fn stalled_large_frames(n: usize) -> (u64, u64, u64) {
    let dir = test_dir(&format!("attack-stalled-{n}"));
    let out = dir.join("out.jsonl");
    let server = server_with_many_files(&config(
        &dir,
        &out,
        &["hep_tcp:127.0.0.1:0"],
        &format!(
            "[limits]\nmax_connections = {}\nframe_timeout_ms = 4000\n",
            n + 16
        ),
    ));
    let (pid, addr) = (server.child.id(), server.tcp());
    let listener = format!("hep_tcp:{addr}");
    // A valid frame of (nearly) 65,535 bytes: its tag (3 times in it) padded.
    let short = message("x").len();
    let frame = message(&"x".repeat(1 + (65_535 - short) / 3));
    assert!((65_533..=65_535).contains(&frame.len()), "{}", frame.len());
    let before = rss_kib(pid);
    let held: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            s.write_all(&frame[..frame.len() - 1]).unwrap();
            s
        })
        .collect();
    let want = (n * (frame.len() - 1)) as u64;
    let mut with = 0;
    wait_for("every partial frame read", Duration::from_secs(60), || {
        with = with.max(rss_kib(pid));
        let m = server.metrics();
        (m.get("hep_received_bytes_total", &[("listener", &listener)]) >= want).then_some(())
    });
    with = with.max(rss_kib(pid));
    agent(addr, "agent", 100);
    wait_for(
        "the stalled cut by frame_timeout",
        Duration::from_secs(60),
        || {
            let m = server.metrics();
            let cut = m.get(
                "hep_rejected_total",
                &[("listener", &listener), ("reason", "frame_timeout")],
            );
            (cut == n as u64).then_some(())
        },
    );
    let after = rss_kib(pid);
    drop(held);
    wait_json(&out, 100);
    assert_eq!(tags(&out, "tcp"), sorted_tags("agent", 100));
    eprintln!(
        "{n} connections stalled 1 byte short of a {}-byte frame: server RSS {:.1} MiB before, \
         {:.1} MiB peak with them ({:.0} bytes each), {:.1} MiB after frame_timeout cut them",
        frame.len(),
        before as f64 / 1024.0,
        with as f64 / 1024.0,
        (with.saturating_sub(before) * 1024) as f64 / n as f64,
        after as f64 / 1024.0,
    );
    assert_eq!(server.stop().counts.delivered, 100);
    (before, with, after)
}

#[test]
fn stalled_large_frames_are_cut_by_frame_timeout_and_an_agent_is_served() {
    let (_, with, _) = stalled_large_frames(64);
    assert!(with < RSS_BOUND_KIB, "RSS {with} KiB");
}

#[test]
#[ignore = "heavy: 4,000 connections holding 64 KB each; run in release with --ignored"]
fn four_thousand_stalled_large_frames_hold_bounded_memory() {
    let (_, with, _) = stalled_large_frames(4000);
    assert!(with < 2 * RSS_BOUND_KIB, "RSS {with} KiB");
}

// ===== idle connections =====

/// `n` idle connections held by `listener` (its spec) while an agent sends 100 messages
/// over TCP; returns
/// the server's RSS (KiB) before and with them.
fn idle_connections(
    server: &Server,
    out: &Path,
    n: usize,
    listener: &str,
    hold: impl FnOnce() -> Box<dyn Any>,
) -> (u64, u64) {
    let pid = server.child.id();
    let before = rss_kib(pid);
    let held = hold();
    wait_for(
        &format!("{n} connections open"),
        Duration::from_secs(60),
        || {
            let m = server.metrics();
            (m.get("hep_connections_open", &[("listener", listener)]) == n as u64).then_some(())
        },
    );
    let with = rss_kib(pid);
    agent(server.tcp(), "agent", 100);
    wait_json(out, 100);
    assert_eq!(tags(out, "tcp"), sorted_tags("agent", 100));
    assert_eq!(
        server
            .metrics()
            .get("hep_connections_open", &[("listener", listener)]),
        n as u64,
        "the idle connections are still open"
    );
    drop(held);
    eprintln!(
        "{n} idle connections on {listener}: server RSS {:.1} MiB before, {:.1} MiB with them ({:.0} bytes each)",
        before as f64 / 1024.0,
        with as f64 / 1024.0,
        (with.saturating_sub(before) * 1024) as f64 / n as f64
    );
    assert!(
        with < RSS_BOUND_KIB,
        "RSS {with} KiB with {n} idle connections"
    );
    (before, with)
}

#[test]
fn hundreds_of_idle_connections_leave_an_agent_served_and_memory_bounded() {
    const N: usize = 500;
    let dir = test_dir("attack-idle");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--config",
        config(&dir, &out, &["hep_tcp:127.0.0.1:0"], "")
            .to_str()
            .unwrap(),
    ]);
    let addr = server.tcp();
    let listener = format!("hep_tcp:{addr}");
    idle_connections(&server, &out, N, &listener, || {
        let held: Vec<TcpStream> = (0..N)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap())
            .collect();
        Box::new(held)
    });
    assert_eq!(server.stop().counts.delivered, 100);
}

/// `hep-bench-peer idle-conns` holding `n` connections, with the open-files limit raised.
struct IdlePeer(std::process::Child);

impl Drop for IdlePeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn idle_peer(dest: SocketAddr, n: usize) -> IdlePeer {
    let peer = Path::new(BIN).with_file_name("hep-bench-peer");
    assert!(
        peer.exists(),
        "{} is missing: cargo build [--release] -p hep-testkit --bin hep-bench-peer",
        peer.display()
    );
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n \"$(ulimit -Hn)\" && exec \"$0\" idle-conns --dest \"$1\" --count \"$2\" --max-secs 300",
            peer.to_str().unwrap(),
            &dest.to_string(),
            &n.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains(&format!("connected={n} failed=0")),
        "idle-conns: {line}"
    );
    IdlePeer(child)
}

#[test]
#[ignore = "heavy: 10,000 connections; run in release with --ignored"]
fn ten_thousand_idle_connections_leave_an_agent_served_and_memory_bounded() {
    const N: usize = 10_000;
    let dir = test_dir("attack-idle-10k");
    let out = dir.join("out.jsonl");
    let server = server_with_many_files(&config(
        &dir,
        &out,
        &["hep_tcp:127.0.0.1:0"],
        "[limits]\nmax_connections = 12000\n",
    ));
    let addr = server.tcp();
    let listener = format!("hep_tcp:{addr}");
    idle_connections(&server, &out, N, &listener, || Box::new(idle_peer(addr, N)));
    assert_eq!(server.stop().counts.delivered, 100);
}

/// `n` idle TLS connections (handshake done) while an agent is served over TCP.
fn idle_tls_connections(n: usize) {
    let dir = test_dir(&format!("attack-idle-tls-{n}"));
    let out = dir.join("out.jsonl");
    let (cert_file, key_file, cert) = self_signed(&dir);
    let server = server_with_many_files(&config(
        &dir,
        &out,
        &["hep_tcp:127.0.0.1:0", "hep_tls:127.0.0.1:0"],
        &format!(
            "[limits]\nmax_connections = {}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            n + 16,
            cert_file.to_str().unwrap(),
            key_file.to_str().unwrap(),
        ),
    ));
    let tls_addr = server.tls.expect("a hep_tls listener");
    let client = tls_client(cert);
    idle_connections(&server, &out, n, &format!("hep_tls:{tls_addr}"), || {
        let held: Vec<_> = (0..n)
            .map(|_| {
                let tcp = TcpStream::connect_timeout(&tls_addr, Duration::from_secs(2)).unwrap();
                tls_handshake(tcp, &client)
            })
            .collect();
        Box::new(held)
    });
    assert_eq!(server.stop().counts.delivered, 100);
}

#[test]
fn idle_tls_connections_leave_an_agent_served_and_memory_bounded() {
    idle_tls_connections(50);
}

#[test]
#[ignore = "heavy: 4,000 TLS handshakes; run in release with --ignored"]
fn four_thousand_idle_tls_connections_leave_an_agent_served_and_memory_bounded() {
    idle_tls_connections(4000);
}

// ===== the metrics endpoint =====

#[test]
fn a_connection_flood_on_the_metrics_port_cannot_take_the_file_descriptors_of_the_listeners() {
    const FLOOD: usize = 300;
    let dir = test_dir("attack-metrics-flood");
    let out = dir.join("out.jsonl");
    // A small open-files limit, so that the flood could exhaust it.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 200 && exec \"$0\" run --http 127.0.0.1:0 --config \"$1\"",
        BIN,
        config(&dir, &out, &["hep_tcp:127.0.0.1:0"], "")
            .to_str()
            .unwrap(),
    ]);
    let server = Server::spawn(cmd);
    let metrics = server.metrics.expect("a metrics endpoint");
    // Connections that never send their request, replaced as they are closed, until
    // the agent is done (or 20 s).
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let connect = || TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).ok();
            let mut conns: Vec<Option<TcpStream>> = (0..FLOOD).map(|_| connect()).collect();
            let started = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if started.elapsed() > Duration::from_secs(20) {
                    return false;
                }
                for c in &mut conns {
                    if c.as_ref().is_none_or(closed_by_the_server) {
                        *c = connect();
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // An agent gets a connection and is served while the flood goes on.
    agent(server.tcp(), "agent", 20);
    wait_json(&out, 20);
    done.store(true, Ordering::Relaxed);
    assert!(
        flood.join().unwrap(),
        "the agent was served only after the flood"
    );
    assert_eq!(tags(&out, "tcp"), sorted_tags("agent", 20));
    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, 20);
    assert!(
        !stopped.stderr.contains("accept failed"),
        "the HEP listener ran out of file descriptors:\n{}",
        stopped.stderr
    );
}

// ===== a UDP flood =====

/// What a UDP flood cost and what survived it.
struct Flood {
    sent: u64,
    received: u64,
    delivered_udp: u64,
    dropped_overload: u64,
    kernel_rcvbuf_errors: u64,
    peak_rss_kib: u64,
}

/// Floods the server's UDP listener with `count` datagrams from `hep-server send`
/// (as fast as it sends, GSO batches) while an agent sends `agent_n` messages over
/// TCP, one a millisecond; checks that the agent lost nothing and that every datagram
/// is accounted for. `limits` is added to the configuration.
fn udp_flood(name: &str, count: u64, agent_n: usize, limits: &str) -> Flood {
    let dir = test_dir(name);
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--config",
        config(
            &dir,
            &out,
            &["hep_udp:127.0.0.1:0", "hep_tcp:127.0.0.1:0"],
            limits,
        )
        .to_str()
        .unwrap(),
    ]);
    let pid = server.child.id();
    let (udp, tcp) = (server.udp(), server.tcp());
    let snmp_before = udp_snmp();

    let payload = dir.join("payload.sip");
    std::fs::write(&payload, "OPTIONS sip:flood@example.com SIP/2.0\r\n\r\n").unwrap();
    let mut sender = Command::new(BIN)
        .args([
            "send",
            "--dest",
            &format!("hep_udp:{udp}"),
            "--count",
            &count.to_string(),
            payload.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let agent = std::thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&tcp, Duration::from_secs(2)).unwrap();
        for i in 0..agent_n {
            s.write_all(&message(&format!("agent-{i}"))).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0);
    });
    // Memory, every 50 ms while the flood lasts (at most 5 minutes).
    let mut peak_rss_kib = 0;
    let started = Instant::now();
    let status = loop {
        peak_rss_kib = peak_rss_kib.max(rss_kib(pid));
        if let Some(status) = sender.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the flood ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "hep-server send: {err}");
    let sent: u64 = err
        .split_once("sent ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `sent N` in {err}"));
    assert_eq!(sent, count);
    agent.join().unwrap();

    // Settled: every message received is delivered or counted as dropped.
    let listener = format!("hep_udp:{udp}");
    let m = wait_for("the counters to settle", Duration::from_secs(120), || {
        peak_rss_kib = peak_rss_kib.max(rss_kib(pid));
        let m = server.metrics();
        let received = m.get("hep_received_total", &[]);
        let done = m.get("hep_delivered_total", &[]) + m.get("hep_dropped_total", &[]);
        (received == done).then_some(m)
    });
    let snmp_after = udp_snmp();
    let received = m.get("hep_received_total", &[("listener", &listener)]);
    let dropped_overload = m.get(
        "hep_dropped_total",
        &[("listener", &listener), ("reason", "overload")],
    );
    assert_eq!(
        m.get("hep_rejected_total", &[("listener", &listener)]),
        0,
        "no datagram was malformed"
    );
    let kernel_rcvbuf_errors = snmp_after["RcvbufErrors"] - snmp_before["RcvbufErrors"];
    // What the server did not receive, the kernel dropped and counted (its counters are
    // the machine's: other traffic can only add to them). It counts buffers, and a
    // buffer of a GSO send holds up to GSO_MAX_SEGMENTS datagrams (a receiver with GRO
    // on, as hep-transport's, takes it whole or not at all).
    assert!(
        sent - received <= kernel_rcvbuf_errors * GSO_MAX_SEGMENTS,
        "datagrams lost without a count: sent {sent}, received {received}, RcvbufErrors +{kernel_rcvbuf_errors}"
    );
    assert!(peak_rss_kib < RSS_BOUND_KIB, "peak RSS {peak_rss_kib} KiB");
    let stopped = server.stop();
    // What the server received it wrote, or counted as dropped; the agent lost nothing.
    let delivered_udp = json_count(&out, "udp");
    assert_eq!(delivered_udp + dropped_overload, received);
    assert_eq!(tags(&out, "tcp"), sorted_tags("agent", agent_n));
    assert_eq!(stopped.counts.delivered, delivered_udp + agent_n as u64);
    let flood = Flood {
        sent,
        received,
        delivered_udp,
        dropped_overload,
        kernel_rcvbuf_errors,
        peak_rss_kib,
    };
    eprintln!("UDP flood, the sender: {}", err.trim());
    eprintln!(
        "UDP flood: sent {} datagrams; the server received {} ({} delivered, {} dropped as overload); \
         kernel RcvbufErrors +{}; peak RSS {:.1} MiB; the TCP agent's {agent_n} messages all delivered",
        flood.sent,
        flood.received,
        flood.delivered_udp,
        flood.dropped_overload,
        flood.kernel_rcvbuf_errors,
        flood.peak_rss_kib as f64 / 1024.0
    );
    flood
}

/// The records of `path` that came over `transport`.
fn json_count(path: &Path, transport: &str) -> u64 {
    let needle = format!("\"transport\":\"{transport}\"");
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(&needle))
        .count() as u64
}

#[test]
fn a_udp_flood_is_shed_and_counted_while_a_tcp_agent_loses_nothing() {
    // Small queues and buffers, so that even a debug build sheds.
    udp_flood(
        "attack-udp-flood",
        50_000,
        200,
        "[limits]\noutput_queue = 256\nudp_recv_buffer = 262144\n",
    );
}

#[test]
#[ignore = "heavy: millions of datagrams; run in release with --ignored"]
fn a_udp_flood_far_above_capacity_is_shed_and_counted_while_a_tcp_agent_loses_nothing() {
    let flood = udp_flood("attack-udp-flood-heavy", 4_000_000, 2000, "");
    assert!(
        flood.received < flood.sent || flood.dropped_overload > 0,
        "the flood was above capacity"
    );
}
