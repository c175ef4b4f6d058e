//! `hep-server send`, run as a binary against UDP sockets and TCP listeners of the test.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hep_proto::{HepMessage, HepVersion, ProtoType, ip_proto};

mod common;
use common::{Server, test_dir};

fn hep_server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hep-server"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running hep-server")
}

fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hep-server"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running hep-server");
    // A process that refuses its arguments may exit before reading: a broken pipe here
    // is its answer, not the test's failure (the exit status is checked by the caller).
    if let Err(e) = child.stdin.take().unwrap().write_all(input) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("send-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn udp_sink() -> (UdpSocket, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    (sock, addr)
}

fn recv_one(sock: &UdpSocket) -> HepMessage {
    let mut buf = vec![0u8; 65536];
    let n = sock.recv(&mut buf).expect("a datagram");
    buf.truncate(n);
    HepMessage::decode(buf).expect("valid HEP")
}

const INVITE: &[u8] = include_bytes!("../../hep-testkit/testdata/kamailio/v3-udp-0001.hep");

/// The SIP payload of the Kamailio vector (608-byte HEP3 packet).
fn invite_payload() -> Vec<u8> {
    HepMessage::decode(INVITE).unwrap().payload.bytes().to_vec()
}

#[test]
fn every_version_carries_the_payload_and_the_fields() {
    let payload = invite_payload();
    let file = temp_file("invite.sip", &payload);
    let file = file.to_str().unwrap();
    let (sock, addr) = udp_sink();
    let dest = format!("hep_udp:{addr}");
    let common = [
        "send",
        "--dest",
        &dest,
        "--src",
        "10.1.2.3:5061",
        "--dst",
        "10.4.5.6:5062",
    ];
    for version in ["1", "2", "3"] {
        let mut args = common.to_vec();
        args.extend(["--hep-version", version, "--ip-proto", "tcp"]);
        if version != "1" {
            args.extend(["--capture-id", "2001"]);
        }
        if version == "3" {
            args.extend([
                "--proto-type",
                "log",
                "--auth-key",
                "s3cret",
                "--correlation-id",
                "call-1@x",
            ]);
        }
        args.push(file);
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let out = hep_server(&args);
        assert!(out.status.success(), "v{version}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("sent 1 messages") && stderr(&out).contains("dropped 0"),
            "{}",
            stderr(&out)
        );
        let msg = recv_one(&sock);
        let v = HepVersion::from_number(version.parse().unwrap()).unwrap();
        assert_eq!(msg.version, Some(v));
        assert_eq!(msg.payload.bytes().as_ref(), &payload[..], "v{version}");
        assert_eq!(msg.src().unwrap(), "10.1.2.3:5061".parse().unwrap());
        assert_eq!(msg.dst().unwrap(), "10.4.5.6:5062".parse().unwrap());
        assert_eq!(msg.ip_proto, Some(ip_proto::TCP));
        match v {
            HepVersion::V1 => {
                assert_eq!((msg.capture_id, msg.ts_sec), (None, None));
            }
            HepVersion::V2 => {
                assert_eq!(msg.capture_id, Some(2001));
                assert!(msg.ts_sec.unwrap() as u64 >= before);
                assert_eq!(msg.auth_key, None);
            }
            HepVersion::V3 => {
                assert_eq!(msg.capture_id, Some(2001));
                assert!(msg.ts_sec.unwrap() as u64 >= before);
                assert_eq!(msg.proto_type, Some(ProtoType::Log));
                assert_eq!(msg.auth_key.as_deref(), Some(&b"s3cret"[..]));
                assert_eq!(msg.correlation_id.as_deref(), Some(&b"call-1@x"[..]));
            }
        }
    }
}

#[test]
fn defaults_and_the_destination_version() {
    let (sock, addr) = udp_sink();
    // No FILE: stdin. Version from the destination spec.
    let dest = format!("{addr}; transport=udp; version=2");
    let out = with_stdin(&["send", "--dest", &dest], b"hello");
    assert!(out.status.success(), "{}", stderr(&out));
    let msg = recv_one(&sock);
    assert_eq!(msg.version, Some(HepVersion::V2));
    assert_eq!(msg.payload.bytes().as_ref(), b"hello");
    assert_eq!(msg.src().unwrap(), "127.0.0.1:5060".parse().unwrap());
    assert_eq!(msg.dst().unwrap(), "127.0.0.2:5060".parse().unwrap());
    assert_eq!(
        (msg.capture_id, msg.ip_proto),
        (Some(1), Some(ip_proto::UDP))
    );

    // HEPv3 by default: SIP, capture id 1, IPv6 defaults following --dst.
    let dest = format!("hep_udp:{addr}");
    let out = with_stdin(
        &["send", "--dest", &dest, "--dst", "[2001:db8::5]:5080", "-"],
        b"x",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let msg = recv_one(&sock);
    assert_eq!(msg.version, Some(HepVersion::V3));
    assert_eq!(msg.proto_type, Some(ProtoType::Sip));
    assert_eq!(msg.capture_id, Some(1));
    assert_eq!(msg.src().unwrap(), "[::1]:5060".parse().unwrap());
    assert_eq!((msg.auth_key, msg.correlation_id), (None, None));
}

#[test]
fn count_cycles_through_the_payloads_in_order() {
    let (sock, addr) = udp_sink();
    let a = temp_file("a.txt", b"payload a");
    let b = temp_file("b.txt", b"payload bb");
    let dest = format!("hep_udp:{addr}");
    let out = hep_server(&[
        "send",
        "--dest",
        &dest,
        "--count",
        "5",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("sent 5 messages"), "{}", stderr(&out));
    let got: Vec<_> = (0..5)
        .map(|_| recv_one(&sock).payload.bytes().clone())
        .collect();
    assert_eq!(
        got,
        [
            "payload a",
            "payload bb",
            "payload a",
            "payload bb",
            "payload a"
        ]
    );
}

/// Reads HEP3 frames until EOF.
fn read_frames(mut stream: std::net::TcpStream) -> Vec<HepMessage> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let mut frames = Vec::new();
    let mut rest = &all[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 6 && &rest[..4] == b"HEP3", "not a HEP3 frame");
        let len = u16::from_be_bytes([rest[4], rest[5]]) as usize;
        frames.push(HepMessage::decode(rest[..len].to_vec()).unwrap());
        rest = &rest[len..];
    }
    frames
}

#[test]
fn count_over_tcp_delivers_every_frame() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = thread::spawn(move || read_frames(listener.accept().unwrap().0));
    let payload = invite_payload();
    let file = temp_file("invite-tcp.sip", &payload);
    let dest = format!("hep_tcp:{addr}");
    let out = hep_server(&[
        "send",
        "--dest",
        &dest,
        "--count",
        "1000",
        "--correlation-id",
        "c1",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sent 1000 messages"),
        "{}",
        stderr(&out)
    );
    let frames = reader.join().unwrap();
    assert_eq!(frames.len(), 1000);
    for f in &frames {
        assert_eq!(f.payload.bytes().as_ref(), &payload[..]);
        assert_eq!(f.correlation_id.as_deref(), Some(&b"c1"[..]));
    }
}

#[test]
fn sync_mode_over_tcp_with_a_small_queue_drops_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = thread::spawn(move || read_frames(listener.accept().unwrap().0));
    let dest = format!("[hep1] {addr}; transport=tcp");
    let out = with_stdin(
        &[
            "send",
            "--dest",
            &dest,
            "--count",
            "500",
            "--hep-async",
            "0",
            "--hep-async-max-postponed-chunks",
            "8",
        ],
        b"OPTIONS sip:x SIP/2.0\r\n\r\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(reader.join().unwrap().len(), 500);
}

#[test]
fn rate_paces_the_messages() {
    let (sock, addr) = udp_sink();
    let counter = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // The first may take a while (process start); then 500 ms of silence ends it.
        let mut n = usize::from(sock.recv(&mut buf).is_ok());
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while sock.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let dest = format!("hep_udp:{addr}");
    let started = Instant::now();
    let out = with_stdin(
        &["send", "--dest", &dest, "--rate", "2000", "--count", "1000"],
        b"x",
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        took > Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        stderr(&out).contains("sent 1000 messages"),
        "{}",
        stderr(&out)
    );
    assert_eq!(counter.join().unwrap(), 1000);
}

#[test]
fn a_bad_destination_is_a_usage_error() {
    for bad in [
        "hep_udp:",
        "hep_sctp:1.2.3.4:9060",
        "1.2.3.4; transport=quic",
    ] {
        let out = with_stdin(&["send", "--dest", bad], b"x");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("HEP destination"), "{}", stderr(&out));
    }
    // Valid alone, but not together: an error naming both (exit 1).
    let out = with_stdin(
        &[
            "send",
            "--dest",
            "hep_tcp:127.0.0.1:9",
            "--hep-version",
            "2",
        ],
        b"x",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("HEPv3 only"), "{}", stderr(&out));
    let out = hep_server(&[
        "send",
        "--dest",
        "hep_udp:127.0.0.1:9",
        "/nonexistent/p.sip",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/p.sip"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn drops_are_reported_and_exit_1() {
    // A port nobody listens on: the connect is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dest = format!("hep_tcp:127.0.0.1:{port}");
    let out = with_stdin(&["send", "--dest", &dest, "--count", "3"], b"x");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sent 0 messages"), "{err}");
    assert!(
        err.contains("dropped 3 (") && err.contains("connect_failed"),
        "{err}"
    );
}

// ===== a receiver that refuses is a failure, not "dropped 0" =====

/// Asserts that `send` failed and said how many messages were not delivered.
fn assert_not_delivered(out: &Output, offered: u64) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("of {offered} messages NOT delivered")),
        "names what was not delivered: {err}"
    );
}

#[test]
fn a_udp_port_nobody_listens_on_is_reported_as_a_failure() {
    // The kernel answers with ICMP port unreachable, which a connected UDP socket reports
    // as ECONNREFUSED on its next send or receive: after the last message, the check of
    // the socket is that next receive.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dest = format!("hep_udp:127.0.0.1:{port}");
    for count in ["1", "50"] {
        let out = with_stdin(&["send", "--dest", &dest, "--count", count], b"x");
        assert_not_delivered(&out, count.parse().unwrap());
    }
}

#[test]
fn a_connection_the_listener_refuses_is_reported_as_a_failure() {
    // `allow=` refuses by closing the accepted connection unread (a reset): the message
    // was written into the socket, and never read.
    let server = Server::run(&[
        "--listen",
        "hep_tcp:127.0.0.1:0;allow=192.0.2.0/24",
        "--output",
        "null",
    ]);
    let dest = format!("hep_tcp:{}", server.tcp());
    for count in ["1", "50"] {
        let out = with_stdin(&["send", "--dest", &dest, "--count", count], b"x");
        assert_not_delivered(&out, count.parse().unwrap());
    }
    drop(server.stop());
}

#[test]
fn mtls_without_a_client_certificate_is_reported_as_a_failure() {
    // With TLS 1.3 the client's side of the handshake completes before the server has
    // checked the (missing) client certificate: the client writes, then reads the alert.
    let dir = test_dir("send-mtls-without-cert");
    let (cert, key, _) = common::self_signed(&dir);
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_tls:127.0.0.1:0\"]\noutputs = [\"null\"]\n\
             [tls]\ncert_file = {cert:?}\nkey_file = {key:?}\nclient_ca_file = {cert:?}\n"
        ),
    );
    let dest = format!("hep_tls:{}", server.tls.expect("a hep_tls listener"));
    let ca = cert.to_str().unwrap();
    for count in ["1", "50"] {
        let out = with_stdin(
            &[
                "send",
                "--dest",
                &dest,
                "--tls-ca",
                ca,
                "--tls-server-name",
                "localhost",
                "--count",
                count,
            ],
            b"x",
        );
        assert_not_delivered(&out, count.parse().unwrap());
    }
    drop(server.stop());
}

#[test]
fn a_collector_that_reads_everything_is_a_success() {
    // The other side of the check: hep-server itself takes every message, and answers
    // the sender's close with its own.
    let server = Server::run(&[
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        "null",
    ]);
    for dest in [
        format!("hep_tcp:{}", server.tcp()),
        format!("hep_udp:{}", server.udp()),
    ] {
        let out = with_stdin(&["send", "--dest", &dest, "--count", "20"], b"x");
        assert!(out.status.success(), "{dest}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("sent 20 messages"),
            "{}",
            stderr(&out)
        );
    }
    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, 40);
}
