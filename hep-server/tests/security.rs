//! What `hep-server` lets in, run as the real binary (SECURITY.md): per-listener source
//! allowlists, TLS client certificates mapped to capture ids, the auth key check under a
//! flood of bad keys, and the shutdown deadline.
//!
//! Two loopback addresses stand for two hosts: the agent sends from 127.0.0.1, a stranger
//! from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to `lo`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

mod common;

use common::*;

const STRANGER: &str = "127.0.0.2";

/// A TCP connection to `to` from `from_ip`.
fn connect_from(from_ip: &str, to: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{from_ip}:0").parse().unwrap();
    sock.bind(&from.into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(2))
        .unwrap();
    sock.into()
}

#[test]
fn listeners_with_an_allowlist_refuse_strangers_and_serve_agents() {
    let dir = test_dir("allowlist");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0;allow=127.0.0.1",
        "--listen",
        "hep_tcp:127.0.0.1:0;allow=127.0.0.0/32,127.0.0.1",
        "--output",
        &format!("json:{}", out.display()),
        "--metrics",
        "127.0.0.1:0",
    ]);
    assert!(
        server.stderr().contains("(agents from 127.0.0.1 only)"),
        "the start-up lines say who may send:\n{}",
        server.stderr()
    );
    let datagrams = set_bytes("v3-udp-");
    let stream = hep_testkit::vectors::read("kamailio/v3-tcp-stream.bin");
    let frames = hep3_frames(&stream).len();

    // The stranger: datagrams, and a connection that writes a whole stream.
    let s = UdpSocket::bind(format!("{STRANGER}:0")).unwrap();
    for d in &datagrams {
        s.send_to(d, server.udp()).unwrap();
    }
    let mut conn = connect_from(STRANGER, server.tcp());
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = conn.write_all(&stream);
    let mut buf = [0u8; 16];
    assert!(
        matches!(conn.read(&mut buf), Ok(0) | Err(_)),
        "the stranger's connection is closed"
    );

    // The agent, alongside.
    send_udp(server.udp(), &datagrams);
    send_tcp(server.tcp(), &stream);
    wait_json(&out, datagrams.len() + frames);

    let refused = wait_for("the refusals in the metrics", OUTPUT_WAIT, || {
        let m = server.metrics();
        let n = m.get("hep_rejected_total", &[("reason", "source_not_allowed")]);
        (n == datagrams.len() as u64 + 1).then_some(n)
    });
    let stopped = server.stop();
    let c = stopped.counts;
    assert_eq!(c.decoded, (datagrams.len() + frames) as u64, "{c:?}");
    assert_eq!(c.rejected, refused, "{c:?}");
    assert_eq!(c.delivered, c.decoded, "{c:?}");
    assert_eq!(json_lines(&out).len(), datagrams.len() + frames);
}

#[test]
fn a_bad_allowlist_is_refused_at_start_naming_it() {
    let out = std::process::Command::new(BIN)
        .args(["run", "--listen", "hep_udp:127.0.0.1:0;allow=10.0.0.0/33"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow= expects networks"), "{err}");
}
