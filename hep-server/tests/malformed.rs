//! Malformed input against the running binary over UDP, TCP and TLS: every class of
//! `hep-protocol.md` f and its negative vectors (issue 7, "Faults and bad input").
//!
//! One server with the three listeners and a json output runs the whole table. Each
//! case is sent between two valid messages of its own: on UDP from one socket; on a
//! stream the valid frame after the case goes on the same connection when the case
//! leaves it open, else on a new one. Meanwhile a bystander on every transport keeps
//! sending valid messages on its own socket or connection, and every stream case runs
//! on its own thread, at the same time as the others. Then:
//! - the process is still up and stops cleanly;
//! - the json output holds every valid message and nothing else, compared record by
//!   record with `hep-server decode` of the same bytes;
//! - `hep_rejected_total` of each listener holds exactly the reasons of the table.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hep_proto::{HepMessage, HepVersion, ProtoType};
use hep_testkit::vectors::read;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, ClientConnection, StreamOwned};

mod common;

use common::*;

/// `hep_max_msg_chunks` of the server under test: a frame may take 4 reads.
const MAX_MSG_CHUNKS: u32 = 4;
/// `[limits] frame_timeout_ms` and `idle_timeout_ms` of the server under test.
const TIMEOUT_MS: u64 = 1500;
/// `[limits] max_frame_length` of the server under test.
const MAX_FRAME_LENGTH: usize = 32 * 1024;
/// `[limits] max_inflated_len` of the server under test (the default).
const MAX_INFLATED_LEN: usize = 256 * 1024;
/// How long a client waits for the server to close a connection it must close: the
/// timeouts above plus room for a loaded machine.
const CLOSE_WAIT: Duration = Duration::from_secs(8);

// ===== the table =====

/// What a stream case does after its leading valid frame, and what becomes of the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// The bytes are a complete frame with bad chunks: it is skipped and the
    /// connection goes on (the next valid frame follows on it).
    Skipped,
    /// The bytes put the stream out of step: the server closes the connection.
    Closes,
    /// The bytes are written one at a time, 100 ms apart, until the server closes.
    Trickled,
    /// The bytes, then the client shuts its write side (FIN; on TLS close_notify first).
    HalfClosed,
    /// The bytes, then the client resets the connection (RST, `SO_LINGER` 0).
    Reset,
    /// The bytes, then nothing: a peer gone without a FIN. A timeout closes it.
    Vanished,
    /// TLS only: the bytes in plain text on the TLS port instead of a handshake (none: a
    /// peer that never starts one, cut by `handshake_timeout_ms`).
    NotTls,
}

/// One class of bad input.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// As a datagram: the reason it is counted under (`None`: not a UDP case).
    udp: Option<&'static str>,
    /// On TCP and TLS: what it does and the reason counted (`None`: counted under no
    /// reason; a `None` stream: not a stream case).
    stream: Option<(Stream, Option<&'static str>)>,
}

fn case(
    name: &'static str,
    bytes: impl Into<Vec<u8>>,
    udp: Option<&'static str>,
    stream: Option<(Stream, Option<&'static str>)>,
) -> Case {
    Case {
        name,
        bytes: bytes.into(),
        udp,
        stream,
    }
}

/// HEP3 + total length + the chunks (vendor, type, declared length, data).
fn v3(chunks: &[(u16, u16, u16, &[u8])]) -> Vec<u8> {
    let mut b = b"HEP3\0\0".to_vec();
    for (vendor, kind, len, data) in chunks {
        b.extend_from_slice(&vendor.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(data);
    }
    let total = u16::try_from(b.len()).expect("a frame fits HEP3's u16 length");
    b[4..6].copy_from_slice(&total.to_be_bytes());
    b
}

const PAYLOAD: (u16, u16, u16, &[u8]) = (0, 0x0f, 9, b"SIP");

/// A chunk 0x0010 whose data is `data`.
fn compressed(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(6 + data.len()).unwrap();
    v3(&[(0, 0x10, len, data)])
}

/// `n` zero bytes (a multiple of 1 MiB) compressed with zlib, or else gzip.
fn bomb(n: usize, zlib: bool) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let level = flate2::Compression::best();
    if zlib {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
        for _ in 0..n / zeros.len() {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    } else {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
        for _ in 0..n / zeros.len() {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    }
}

#[rustfmt::skip] // a table: one case a line
fn cases() -> Vec<Case> {
    use Stream::*;
    let invite = read("kamailio/v3-udp-0001.hep");
    let v2 = read("kamailio/v2-udp-0001.hep");
    // 8 MiB of zeros: 32 times max_inflated_len, about 8 KB on the wire.
    let gzip_bomb = bomb(8 << 20, false);
    let zlib_bomb = bomb(8 << 20, true);
    assert!(gzip_bomb.len() + 12 < MAX_FRAME_LENGTH && (8 << 20) > 16 * MAX_INFLATED_LEN);
    let mut v1_ipv4_ipv6_len = vec![1, 40, 2, 17, 0, 0, 0, 0];
    v1_ipv4_ipv6_len.resize(60, b'x');
    let mut v2_ipv6_20 = vec![2, 40, 10, 17, 0x13, 0xc4, 0x13, 0xc4];
    v2_ipv6_20.resize(20, 0);
    let mut frame_too_long = b"HEP3".to_vec();
    frame_too_long.extend_from_slice(&u16::try_from(MAX_FRAME_LENGTH + 1).unwrap().to_be_bytes());
    frame_too_long.extend_from_slice(&[0; 64]);
    // A valid frame long enough to be trickled over more reads than MAX_MSG_CHUNKS.
    let long = valid_message("trickled", 400);
    let v6 = [0u8; 16];
    let closes = |reason| Some((Closes, Some(reason)));
    let skipped = |reason| Some((Skipped, Some(reason)));
    vec![
        // Not HEP at all.
        case("sip_text", &b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..], Some("unknown_version"), closes("bad_magic")),
        case("http_request", &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], Some("unknown_version"), closes("bad_magic")),
        case("empty_datagram", &b""[..], Some("unknown_version"), None),
        case("random_bytes", (0..=255u8).rev().collect::<Vec<_>>(), Some("unknown_version"), closes("bad_magic")),
        // Unknown versions and families.
        case("eep1", &b"EEP1\x00\x10\x00\x00\x00\x01\x00\x07\x02\x00\x00\x00"[..], Some("unknown_version"), closes("bad_magic")),
        case("v1_header_version_3", &[3, 16, 2, 17, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'x', b'y', b'z', b'w'][..], Some("unknown_version"), closes("bad_magic")),
        case("v1_family_7", &[1, 16, 7, 17, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'x', b'y', b'z', b'w'][..], Some("unknown_family"), closes("bad_magic")),
        case("v3_family_7", v3(&[(0, 1, 7, &[7]), PAYLOAD]), Some("unknown_family"), skipped("unknown_family")),
        // Bad lengths.
        case("hep3_00_00", &b"HEP3\x00\x00"[..], Some("total_length_too_small"), closes("total_length_too_small")),
        case("hep3_00_05", &b"HEP3\x00\x05"[..], Some("total_length_too_small"), closes("total_length_too_small")),
        case("five_bytes", &b"HEP3\x00"[..], Some("too_short"), Some((HalfClosed, Some("truncated")))),
        case("total_length_beyond_the_data", &invite[..100], Some("total_length_exceeds_data"), Some((HalfClosed, Some("truncated")))),
        case("total_length_7", { let mut w = v3(&[PAYLOAD]); w[4..6].copy_from_slice(&7u16.to_be_bytes()); w.truncate(7); w }, Some("chunk_header_truncated"), skipped("chunk_header_truncated")),
        case("frame_too_long", frame_too_long, None, closes("frame_too_long")),
        // Chunk overruns and wrong fixed sizes.
        case("chunk_length_0", v3(&[(0, 0x0f, 0, b"")]), Some("chunk_length_too_small"), skipped("chunk_length_too_small")),
        case("chunk_length_5", v3(&[(0, 0x0f, 5, b"")]), Some("chunk_length_too_small"), skipped("chunk_length_too_small")),
        case("chunk_overrun", v3(&[(0, 0x0f, 100, b"SIP")]), Some("chunk_overrun"), skipped("chunk_overrun")),
        case("family_chunk_of_8_bytes", v3(&[(0, 1, 8, &[0, 2]), PAYLOAD]), Some("bad_chunk_size"), skipped("bad_chunk_size")),
        case("capture_id_chunk_of_8_bytes", v3(&[(0, 0x0c, 8, &[0, 1]), PAYLOAD]), Some("bad_chunk_size"), skipped("bad_chunk_size")),
        case("mos_chunk_of_7_bytes", v3(&[(0, 0x20, 7, &[1]), PAYLOAD]), Some("bad_chunk_size"), skipped("bad_chunk_size")),
        case("ipv4_family_ipv6_address", v3(&[(0, 1, 7, &[2]), (0, 5, 22, &v6), PAYLOAD]), Some("family_mismatch"), skipped("family_mismatch")),
        case("no_payload_chunk", v3(&[(0, 2, 7, &[17])]), Some("missing_payload"), skipped("missing_payload")),
        case("vendor_payload_only", v3(&[(3, 0x0f, 9, b"SIP")]), Some("missing_payload"), skipped("missing_payload")),
        // v1/v2 truncations and headers.
        case("v1_three_bytes", &[1, 16, 2][..], Some("too_short"), None),
        case("v1_ipv4_with_ipv6_header_length", v1_ipv4_ipv6_len, Some("bad_header_length"), closes("bad_magic")),
        case("v2_ipv6_in_20_bytes", v2_ipv6_20, Some("too_short"), closes("bad_magic")),
        case("v2_vector_cut_at_27", &v2[..27], Some("too_short"), None),
        // Compression (chunk 0x0010).
        case("gzip_bomb", compressed(&gzip_bomb), Some("inflated_too_large"), skipped("inflated_too_large")),
        case("zlib_bomb", compressed(&zlib_bomb), Some("inflated_too_large"), skipped("inflated_too_large")),
        case("corrupt_gzip", compressed(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff]), Some("corrupt_compression"), skipped("corrupt_compression")),
        case("unknown_compression", compressed(b"not compressed"), Some("unknown_compression"), skipped("unknown_compression")),
        // Streams only: slow, half-open and vanished peers.
        case("frame_over_more_reads_than_max_msg_chunks", long, None, Some((Trickled, Some("max_msg_chunks")))),
        case("half_open_mid_frame", &invite[..30], None, Some((HalfClosed, Some("truncated")))),
        case("reset_mid_frame", &invite[..30], None, Some((Reset, Some("truncated")))),
        case("reset_between_frames", &b""[..], None, Some((Reset, None))),
        case("vanished_mid_frame", &invite[..30], None, Some((Vanished, Some("frame_timeout")))),
        case("vanished_between_frames", &b""[..], None, Some((Vanished, Some("idle_timeout")))),
        case("plain_text_on_the_tls_port", valid_message("plain", 0), None, Some((NotTls, Some("tls_handshake")))),
        case("silent_on_the_tls_port", &b""[..], None, Some((NotTls, Some("tls_handshake")))),
    ]
}

// ===== valid traffic =====

/// A valid HEPv3 SIP message named `tag` (in its payload and correlation id), its
/// payload padded to at least `pad` bytes.
fn valid_message(tag: &str, pad: usize) -> Vec<u8> {
    let mut payload = format!("OPTIONS sip:{tag}@example.com SIP/2.0\r\nCall-ID: {tag}\r\n");
    while payload.len() < pad {
        payload.push_str("X-Pad: 0123456789abcdef0123456789abcdef\r\n");
    }
    payload.push_str("\r\n");
    HepMessage::builder()
        .src("10.0.0.1:5060".parse().unwrap())
        .dst("10.0.0.2:5060".parse().unwrap())
        .timestamp(1_700_000_000, 0)
        .proto_type(ProtoType::Sip)
        .capture_id(2001)
        .correlation_id(tag.to_owned())
        .payload(payload)
        .build()
        .encode(HepVersion::V3)
        .unwrap()
        .to_vec()
}

/// A valid message of `len` bytes made mostly of empty unknown chunks: the most chunks
/// a frame can carry (OpenSIPS: two allocations each). Delivered, not a blow-up.
fn many_chunks(len: usize) -> Vec<u8> {
    let n = (len - 6 - 9) / 6;
    let mut chunks = vec![(0u16, 0x99u16, 6u16, &b""[..]); n];
    chunks.push(PAYLOAD);
    v3(&chunks)
}

/// Every valid frame sent, in the order sent per sender (compared as a set).
#[derive(Default, Clone)]
struct Sent(Arc<Mutex<Vec<Vec<u8>>>>);

impl Sent {
    fn push(&self, frame: &[u8]) {
        self.0.lock().unwrap().push(frame.to_vec());
    }
}

// ===== clients =====

/// A stream client: TCP, or TLS over TCP.
enum Client {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Client {
    fn connect(transport: &str, addr: SocketAddr, tls: &Arc<ClientConfig>) -> Self {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        tcp.set_read_timeout(Some(CLOSE_WAIT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        match transport {
            "tcp" => Self::Tcp(tcp),
            "tls" => Self::Tls(Box::new(tls_handshake(tcp, tls))),
            other => panic!("not a stream transport: {other}"),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Tcp(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes),
            Self::Tls(s) => {
                s.write_all(bytes)?;
                s.flush()
            }
        }
    }

    fn shutdown_write(&mut self) {
        if let Self::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }

    fn reset(self) {
        socket2::SockRef::from(self.tcp())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    /// Whether the server has closed the connection (a look that does not wait).
    fn closed_by_the_server(&self) -> bool {
        let s = self.tcp();
        s.set_nonblocking(true).unwrap();
        let closed = matches!(s.peek(&mut [0u8; 1]), Ok(0));
        s.set_nonblocking(false).unwrap();
        closed
    }

    /// Waits for the server to close the connection; fails if it is still open after
    /// [`CLOSE_WAIT`] or sends anything.
    fn expect_closed(&mut self, what: &str) {
        let mut buf = [0u8; 64];
        let read = match self {
            Self::Tcp(s) => s.read(&mut buf),
            Self::Tls(s) => s.read(&mut buf),
        };
        match read {
            Ok(0) => {}
            Ok(n) => panic!("{what}: the server sent {n} bytes instead of closing"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{what}: still open after {CLOSE_WAIT:?}")
            }
            Err(_) => {} // reset, or TLS without close_notify: closed
        }
    }
}

/// Runs one stream case on `transport`: a valid frame, the case, a valid frame (on the
/// same connection if it stays open, else on a new one).
fn stream_case(
    transport: &'static str,
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    case: &Case,
    sent: &Sent,
) {
    let (kind, _) = case.stream.expect("a stream case");
    let what = format!("{transport} {}", case.name);
    let before = valid_message(&format!("{transport}-{}-before", case.name), 0);
    let after = valid_message(&format!("{transport}-{}-after", case.name), 0);
    if kind == Stream::NotTls {
        let mut raw =
            Client::Tcp(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap());
        raw.tcp().set_read_timeout(Some(CLOSE_WAIT)).unwrap();
        // The handshake fails at the first bytes; the write may already see the reset.
        let _ = raw.send(&case.bytes);
        // A TLS alert (7 bytes), then the close.
        let mut alert = [0u8; 7];
        if raw.tcp().peek(&mut alert).is_ok_and(|n| n == 7) && alert[0] == 0x15 {
            let _ = (&mut raw.tcp()).read_exact(&mut alert);
        }
        raw.expect_closed(&what);
        let mut c = Client::connect(transport, addr, tls);
        c.send(&after).unwrap();
        sent.push(&after);
        c.shutdown_write();
        c.expect_closed(&what);
        return;
    }
    let mut c = Client::connect(transport, addr, tls);
    c.send(&before).unwrap();
    sent.push(&before);
    match kind {
        Stream::Skipped => {
            c.send(&case.bytes).unwrap();
            c.send(&after).unwrap();
            sent.push(&after);
            c.shutdown_write();
            c.expect_closed(&what);
            return;
        }
        Stream::Closes => {
            c.send(&case.bytes).unwrap();
            c.expect_closed(&what);
        }
        Stream::Trickled => {
            // Bounded by the frame's length; the server closes it after MAX_MSG_CHUNKS
            // reads, long before the frame is complete.
            let mut closed = false;
            for b in &case.bytes[..case.bytes.len() - 1] {
                if c.send(std::slice::from_ref(b)).is_err() {
                    closed = true;
                    break;
                }
                if c.closed_by_the_server() {
                    closed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(closed, "{what}: the whole frame but its last byte went in");
            c.expect_closed(&what);
        }
        Stream::HalfClosed => {
            c.send(&case.bytes).unwrap();
            c.shutdown_write();
            c.expect_closed(&what);
        }
        Stream::Reset => {
            c.send(&case.bytes).unwrap();
            // Give the server time to read the bytes before the reset, so that it is
            // the reset, not an unread buffer, that it sees.
            std::thread::sleep(Duration::from_millis(200));
            c.reset();
        }
        Stream::Vanished => {
            c.send(&case.bytes).unwrap();
            c.expect_closed(&what);
        }
        Stream::NotTls => unreachable!(),
    }
    let mut c = Client::connect(transport, addr, tls);
    c.send(&after).unwrap();
    sent.push(&after);
    c.shutdown_write();
    c.expect_closed(&what);
}

/// Sends a valid message every 20 ms on one socket or connection of `transport` until
/// `stop` (at most 3000 messages).
fn bystander(
    transport: &'static str,
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    stop: Arc<AtomicBool>,
    sent: Sent,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut stream = (transport != "udp").then(|| Client::connect(transport, addr, &tls));
        for i in 0..3000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let m = valid_message(&format!("{transport}-bystander-{i}"), 0);
            match &mut stream {
                None => {
                    udp.send_to(&m, addr).unwrap();
                }
                Some(c) => c.send(&m).unwrap(),
            }
            sent.push(&m);
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut c) = stream {
            c.shutdown_write();
            c.expect_closed(&format!("{transport} bystander"));
        }
    })
}

/// The non-zero `hep_rejected_total` samples of `listener`, by reason.
fn rejected_by_reason(m: &Metrics, listener: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in m.0.lines().filter(|l| l.starts_with("hep_rejected_total{")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let labels = parse_labels(
            series
                .trim_start_matches("hep_rejected_total{")
                .trim_end_matches('}'),
        );
        let value: u64 = value.parse().unwrap();
        if labels["listener"] == listener && value > 0 {
            *out.entry(labels["reason"].clone()).or_default() += value;
        }
    }
    out
}

/// The server's configuration, and the certificate of its TLS listener.
fn config(dir: &Path, out: &Path) -> (String, CertificateDer<'static>) {
    let (cert_file, key_file, cert) = self_signed(dir);
    let text = format!(
        "listen = [\"hep_udp:127.0.0.1:0\", \"hep_tcp:127.0.0.1:0\", \"hep_tls:127.0.0.1:0\"]\n\
         outputs = [\"json:{out}\"]\n\
         hep_max_msg_chunks = {MAX_MSG_CHUNKS}\n\
         [limits]\n\
         idle_timeout_ms = {TIMEOUT_MS}\n\
         frame_timeout_ms = {TIMEOUT_MS}\n\
         max_frame_length = {MAX_FRAME_LENGTH}\n\
         max_inflated_len = {MAX_INFLATED_LEN}\n\
         [tls]\n\
         cert_file = {cert:?}\n\
         key_file = {key:?}\n\
         handshake_timeout_ms = {TIMEOUT_MS}\n\
         [metrics]\n\
         listen = \"127.0.0.1:0\"\n",
        out = out.display(),
        cert = cert_file.to_str().unwrap(),
        key = key_file.to_str().unwrap(),
    );
    (text, cert)
}

#[test]
fn every_class_of_bad_input_is_counted_and_valid_traffic_around_it_is_delivered_in_full() {
    let dir = test_dir("malformed-suite");
    let out = dir.join("out.jsonl");
    let (text, cert) = config(&dir, &out);
    let tls = tls_client(cert);
    let mut server = Server::with_config(&dir, &text);
    let addrs = [
        ("udp", server.udp()),
        ("tcp", server.tcp()),
        ("tls", server.tls.expect("a hep_tls listener")),
    ];
    let cases = Arc::new(cases());
    let sent = Sent::default();

    // Bystanders on every transport, from start to end.
    let stop = Arc::new(AtomicBool::new(false));
    let bystanders: Vec<_> = addrs
        .iter()
        .map(|&(t, a)| bystander(t, a, Arc::clone(&tls), Arc::clone(&stop), sent.clone()))
        .collect();

    // Before the bad input: the Kamailio vectors and the largest valid messages.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for set in UDP_SETS {
        for d in set_bytes(set) {
            udp.send_to(&d, server.udp()).unwrap();
            sent.push(&d);
        }
    }
    let big = many_chunks(65_000);
    udp.send_to(&big, server.udp()).unwrap();
    sent.push(&big);
    let stream = read("kamailio/v3-tcp-stream.bin");
    let big_frame = many_chunks(MAX_FRAME_LENGTH);
    for (t, a) in &addrs[1..] {
        let mut c = Client::connect(t, *a, &tls);
        c.send(&stream).unwrap();
        c.send(&big_frame).unwrap();
        c.shutdown_write();
        c.expect_closed(&format!("{t} vectors"));
        for f in hep3_frames(&stream) {
            sent.push(&f);
        }
        sent.push(&big_frame);
    }

    // Every stream case on its own thread, all at once; the UDP cases meanwhile.
    let mut threads = Vec::new();
    for (t, a) in addrs[1..].iter().copied() {
        for i in 0..cases.len() {
            let Some((kind, _)) = cases[i].stream else {
                continue;
            };
            if kind == Stream::NotTls && t != "tls" {
                continue;
            }
            let (cases, tls, sent) = (Arc::clone(&cases), Arc::clone(&tls), sent.clone());
            threads.push(std::thread::spawn(move || {
                stream_case(t, a, &tls, &cases[i], &sent);
            }));
        }
    }
    for c in cases.iter().filter(|c| c.udp.is_some()) {
        for (i, bytes) in [
            valid_message(&format!("udp-{}-before", c.name), 0),
            c.bytes.clone(),
            valid_message(&format!("udp-{}-after", c.name), 0),
        ]
        .iter()
        .enumerate()
        {
            udp.send_to(bytes, server.udp()).unwrap();
            if i != 1 {
                sent.push(bytes);
            }
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for b in bystanders {
        b.join().unwrap();
    }
    assert!(
        matches!(server.child.try_wait(), Ok(None)),
        "the server is up:\n{}",
        server.stderr()
    );

    // Every valid message, each once, and nothing else.
    let sent = sent.0.lock().unwrap().clone();
    let records = wait_for(
        &format!("{} records", sent.len()),
        // A bound, not a timing: a loaded CI machine running every test binary at once
        // has been seen to need more than 10 s here.
        Duration::from_secs(30),
        || {
            let records = json_lines(&out);
            (records.len() >= sent.len()).then_some(records)
        },
    );
    // The HEPv3 frames as one stream capture, the v1/v2 datagrams one file each.
    let (v3, v12): (Vec<_>, Vec<_>) = sent.iter().partition(|m| m.starts_with(b"HEP3"));
    let mut files = vec![dir.join("sent-v3.bin")];
    std::fs::write(
        &files[0],
        v3.into_iter().flatten().copied().collect::<Vec<u8>>(),
    )
    .unwrap();
    for (i, m) in v12.iter().enumerate() {
        files.push(dir.join(format!("sent-v12-{i}.hep")));
        std::fs::write(&files[i + 1], m).unwrap();
    }
    let mut expected = decode(&files);
    assert_eq!(expected.len(), sent.len());
    // The agents' keys (not checked here) are removed all the same.
    for r in &mut expected {
        r["auth_key"] = serde_json::Value::Null;
    }
    assert_eq!(sorted(&records), sorted(&expected));

    // Every case counted under its reason, on its listener, and nothing else.
    let mut want: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for c in cases.iter() {
        if let Some(reason) = c.udp {
            *want
                .entry("udp")
                .or_default()
                .entry(reason.to_owned())
                .or_default() += 1;
        }
        if let Some((kind, Some(reason))) = c.stream {
            for t in ["tcp", "tls"] {
                if kind != Stream::NotTls || t == "tls" {
                    *want
                        .entry(t)
                        .or_default()
                        .entry(reason.to_owned())
                        .or_default() += 1;
                }
            }
        }
    }
    // Counters are added per batch and as connections end: wait until they settle.
    let settled = Instant::now() + Duration::from_secs(30);
    let last = loop {
        let m = server.metrics();
        let last: BTreeMap<&str, _> = addrs
            .iter()
            .map(|(t, a)| (*t, rejected_by_reason(&m, &format!("hep_{t}:{a}"))))
            .collect();
        if last == want || Instant::now() > settled {
            break last;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(last, want);

    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, sent.len() as u64);
    assert_eq!(stopped.counts.dropped, 0);
    assert_eq!(
        json_lines(&out).len(),
        sent.len(),
        "nothing written twice at exit"
    );
}
