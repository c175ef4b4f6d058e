//! What `hep-server` lets in, run as the real binary (SECURITY.md): per-listener source
//! allowlists, TLS client certificates mapped to capture ids, and the auth key check
//! under a flood of bad keys.
//!
//! Two loopback addresses stand for two hosts: the agent sends from 127.0.0.1, a stranger
//! from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to `lo`).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

mod common;

use common::*;

const STRANGER: &str = "127.0.0.2";

/// A TCP connection to `to` from `from_ip`. A server that resets it at accept can do
/// so before the connect returns: then the connect itself fails with ECONNRESET.
fn connect_from(from_ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{from_ip}:0").parse().unwrap();
    sock.bind(&from.into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(sock.into())
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
    match connect_from(STRANGER, server.tcp()) {
        Ok(mut conn) => {
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = conn.write_all(&stream);
            let mut buf = [0u8; 16];
            assert!(
                matches!(conn.read(&mut buf), Ok(0) | Err(_)),
                "the stranger's connection is closed"
            );
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }

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

// ===== TLS client certificates mapped to capture ids =====

/// A CA, a server certificate for `localhost`, and client certificates on demand.
struct Pki {
    dir: std::path::PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(dir: std::path::PathBuf) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let pki = Self { dir, ca };
        pki.issue("server", "localhost");
        pki
    }

    /// `NAME.pem` and `NAME.key`: a certificate for DNS name `dns` signed by the CA; returns
    /// its SHA-256 fingerprint as `sha256:AB:...`.
    fn issue(&self, name: &str, dns: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![dns.to_owned()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        let id = hep_transport::identity_from_der(cert.der());
        format!("sha256:{}", id.fingerprint())
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// `hep-server send` over TLS with client certificate `agent`, `count` messages of
/// capture id `capture_id`; returns its stderr.
fn send_tls(pki: &Pki, to: SocketAddr, agent: &str, capture_id: u32, count: u64) -> String {
    let payload = pki.dir.join("options.sip");
    std::fs::write(&payload, "OPTIONS sip:probe@example.com SIP/2.0\r\n\r\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["send", "--dest", &format!("hep_tls:{to}")])
        .args([
            "--tls-ca",
            &pki.path("ca.pem"),
            "--tls-server-name",
            "localhost",
        ])
        .args(["--tls-cert", &pki.path(&format!("{agent}.pem"))])
        .args(["--tls-key", &pki.path(&format!("{agent}.key"))])
        .args(["--capture-id", &capture_id.to_string()])
        .args(["--count", &count.to_string()])
        .arg(&payload)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tls_client_certificates_send_only_their_capture_ids() {
    let dir = test_dir("tls-clients");
    let pki = Pki::new(dir.clone());
    pki.issue("agent-a", "agent-a.example");
    let pinned = pki.issue("agent-c", "agent-c.example");
    pki.issue("agent-b", "agent-b.example"); // signed by the CA, but not in the map
    let out = dir.join("out.jsonl");
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_tls:127.0.0.1:0\"]\noutputs = [\"json:{}\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n\
             [tls.clients]\n\"agent-a.example\" = [2001, 2002]\n\"{pinned}\" = [3001]\n",
            out.display(),
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem"),
        ),
    );
    let tls = server.tls.expect("a hep_tls listener");

    // Their own capture ids: delivered. A's by its DNS name, C's by its fingerprint.
    send_tls(&pki, tls, "agent-a", 2001, 5);
    send_tls(&pki, tls, "agent-a", 2002, 5);
    send_tls(&pki, tls, "agent-c", 3001, 5);
    // Someone else's: refused message by message.
    send_tls(&pki, tls, "agent-a", 3001, 7);
    send_tls(&pki, tls, "agent-c", 2001, 4);
    // A certificate the map does not name: its connection is closed after the handshake,
    // unread. (With TLS 1.3 the agent's side of the handshake completes first, so the
    // agent writes first, and learns of the refusal after: `send` reports its messages
    // not delivered, exit 1.)
    send_tls(&pki, tls, "agent-b", 2001, 3);

    let records = wait_json(&out, 15);
    wait_for("the refusals in the metrics", OUTPUT_WAIT, || {
        let m = server.metrics();
        let wrong_id = m.get(
            "hep_dropped_total",
            &[
                ("stage", "tls_clients"),
                ("reason", "capture_id_not_allowed_for_client"),
            ],
        );
        let unknown = m.get(
            "hep_rejected_total",
            &[("reason", "client_cert_not_allowed")],
        );
        (wrong_id == 11 && unknown >= 1).then_some(())
    });
    let stopped = server.stop();
    let mut ids: Vec<u64> = records
        .iter()
        .map(|r| r["capture_id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            2001, 2001, 2001, 2001, 2001, 2002, 2002, 2002, 2002, 2002, 3001, 3001, 3001, 3001,
            3001
        ]
    );
    assert_eq!(json_lines(&out).len(), 15, "nothing else was let through");
    assert_eq!(stopped.counts.decoded, 15 + 11, "{:?}", stopped.counts);
    assert!(
        stopped.stderr.contains("agent-b.example (sha256 "),
        "the refused certificate is logged so that it can be added:\n{}",
        stopped.stderr
    );
}

// ===== the auth key under a flood of bad keys =====

/// Bad-key attempts of [`with_auth_on_no_message_with_a_wrong_or_missing_key_gets_in`]
/// (the report in SECURITY.md); `HEP_AUTH_ATTEMPTS` changes it.
fn auth_attempts() -> u64 {
    std::env::var("HEP_AUTH_ATTEMPTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

/// The auth report of SECURITY.md: `auth_attempts()` messages with a wrong key, no key,
/// or another agent's key, sent over TCP alongside agents with the right keys. None of
/// the bad ones is accepted, every good one is delivered, every refusal is counted.
#[test]
fn with_auth_on_no_message_with_a_wrong_or_missing_key_gets_in() {
    let bad = auth_attempts();
    let (wrong, missing, borrowed) = (bad * 2 / 5, bad * 2 / 5, bad - bad * 4 / 5);
    let good = (bad / 10).max(1);
    let dir = test_dir("auth-flood");
    let out = dir.join("out.jsonl");
    let payload = dir.join("options.sip");
    std::fs::write(
        &payload,
        "OPTIONS sip:probe@example.com SIP/2.0\r\nCall-ID: flood\r\n\r\n",
    )
    .unwrap();
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_tcp:127.0.0.1:0\"]\noutputs = [\"json:{}\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [auth]\nkeys = {{ 2001 = \"key-2001\", 2002 = \"key-2002\" }}\n",
            out.display()
        ),
    );
    let to = server.tcp();
    let started = std::time::Instant::now();
    let senders = [
        spawn_send_tcp(to, &payload, 2001, Some("not-the-key"), wrong),
        spawn_send_tcp(to, &payload, 2001, None, missing),
        spawn_send_tcp(to, &payload, 2002, Some("key-2001"), borrowed),
        spawn_send_tcp(to, &payload, 2001, Some("key-2001"), good),
        spawn_send_tcp(to, &payload, 2002, Some("key-2002"), good),
    ];
    for mut s in senders {
        let status = s.wait().unwrap();
        let mut err = String::new();
        s.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success() && err.contains("dropped 0"), "{err}");
    }
    let expected_wrong = wrong + borrowed;
    let counted = wait_for("every message counted", Duration::from_secs(60), || {
        let m = server.metrics();
        let wrong_key = m.get(
            "hep_dropped_total",
            &[("stage", "auth"), ("reason", "wrong_key")],
        );
        let missing_key = m.get(
            "hep_dropped_total",
            &[("stage", "auth"), ("reason", "missing_key")],
        );
        let delivered = m.get("hep_delivered_total", &[]);
        (wrong_key + missing_key + delivered == bad + 2 * good).then_some((
            wrong_key,
            missing_key,
            delivered,
        ))
    });
    let elapsed = started.elapsed();
    let stopped = server.stop();
    assert_eq!(
        counted,
        (expected_wrong, missing, 2 * good),
        "(wrong_key, missing_key, delivered)"
    );
    let c = stopped.counts;
    assert_eq!(
        (c.decoded, c.delivered, c.dropped),
        (bad + 2 * good, 2 * good, bad),
        "{c:?}"
    );
    let records = json_lines(&out);
    assert_eq!(records.len() as u64, 2 * good);
    for r in &records {
        assert!(
            [2001, 2002].contains(&r["capture_id"].as_u64().unwrap()),
            "{r}"
        );
        // Checked, then removed (`[auth] strip` defaults to true).
        assert!(r["auth_key"].is_null(), "{r}");
    }
    eprintln!(
        "auth report: {bad} attempts with a wrong or missing key ({expected_wrong} wrong_key, \
         {missing} missing_key), 0 accepted; {} valid delivered of {}; {:.1} s",
        records.len(),
        2 * good,
        elapsed.as_secs_f64()
    );
}
