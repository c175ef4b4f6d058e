//! `hep-server run` and `check-config`, run as the real binary (DESIGN.md, "External
//! interfaces").
//!
//! Every test starts its own server on loopback with port 0 and reads the bound ports
//! from the `hep-server: listening on ...` lines, stops it with SIGTERM and checks the
//! `hep-server: received N, decoded N, ...` summary. Every wait is bounded: a broken
//! server fails a test, it never hangs it. The harness is in `tests/common` (shared with
//! `tests/reload.rs`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hep_proto::{HepMessage, HepVersion};
use hep_testkit::vectors::{read, testdata_dir};
use serde_json::Value;

mod common;

use common::*;

/// A plain TCP listener standing in for another collector: accepts one connection and
/// collects what arrives until `expected` bytes are in or 5 s pass.
fn tcp_sink(expected: usize) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut conn = loop {
            match l.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no connection from the relay: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.len() < expected && Instant::now() < deadline {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        got
    });
    (addr, handle)
}

fn sort_bytes(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// The relay mark's chunk header: vendor `HR`, type `RM`, length 15 (`docs/CONFIG.md`,
/// "Relay loops").
const MARK_HEADER: &[u8] = b"HRRM\x00\x0f";

/// Records a second server wrote of what a relay sent it, without the relay's mark: each
/// carries one, its last chunk, at the first hop.
fn without_mark(mut records: Vec<Value>) -> Vec<Value> {
    for r in &mut records {
        let chunks = r["chunks"].as_array_mut().unwrap();
        let mark = chunks.pop().expect("a relay mark");
        assert_eq!(
            (&mark["vendor"], &mark["type"]),
            (&0x4852.into(), &0x524d.into()),
            "{mark}"
        );
        assert!(
            mark["hex"].as_str().unwrap().ends_with("01"),
            "hop 1: {mark}"
        );
    }
    records
}

/// `decode` records as the outputs write them: the agents' auth keys removed (`[auth]
/// strip`, true by default, also without `[auth]`).
fn keys_removed(mut records: Vec<Value>) -> Vec<Value> {
    for r in &mut records {
        r["auth_key"] = Value::Null;
    }
    records
}

/// A HEP3 frame without its auth key chunk (vendor 0, type 0x000e), as a relay forwards
/// it by default.
fn key_cut(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..6].to_vec();
    let mut at = 6;
    while at < frame.len() {
        let len = usize::from(u16::from_be_bytes([frame[at + 4], frame[at + 5]]));
        if frame[at..at + 4] != [0, 0, 0, 0x0e] {
            out.extend_from_slice(&frame[at..at + len]);
        }
        at += len;
    }
    let total = u16::try_from(out.len()).unwrap().to_be_bytes();
    out[4..6].copy_from_slice(&total);
    out
}

/// A frame a relay sent, without the mark it appended (the frame as received), and the
/// mark's instance id and hop count.
fn unmarked(frame: &[u8]) -> (Vec<u8>, u64, u8) {
    let (body, mark) = frame.split_at(frame.len() - 15);
    assert_eq!(&mark[..6], MARK_HEADER, "ends with the relay mark");
    let mut original = body.to_vec();
    original[4..6].copy_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    let id = u64::from_be_bytes(mark[6..14].try_into().unwrap());
    (original, id, mark[14])
}

// ===== receiving: every vector, every field =====

#[test]
fn every_kamailio_vector_arrives_in_json_with_every_field() {
    let dir = test_dir("json");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
    ]);

    let mut files = Vec::new();
    let mut datagrams = Vec::new();
    for set in UDP_SETS {
        files.extend(set_files(set));
        datagrams.extend(set_bytes(set));
    }
    let udp_peer = send_udp(server.udp(), &datagrams);
    let tcp_peer = send_tcp(server.tcp(), &read("kamailio/v3-tcp-stream.bin"));
    let tcp_expected = decode(&[testdata_dir().join("kamailio/v3-tcp-stream.bin")]);
    let mut expected = keys_removed(decode(&files));
    assert_eq!((expected.len(), tcp_expected.len()), (75, 12));
    expected.extend(tcp_expected.iter().cloned());

    // Readable while the server runs: flushed shortly after the messages arrived.
    let records = wait_json(&out, expected.len());
    assert_eq!(
        sorted(&records),
        sorted(&expected),
        "what `decode` reads from the same files"
    );
    let (udp, tcp): (Vec<&Value>, Vec<&Value>) = records
        .iter()
        .partition(|r| r["recv"]["transport"] == "udp");
    assert_eq!((udp.len(), tcp.len()), (75, 12));
    for r in &udp {
        assert_eq!(r["recv"]["peer"], udp_peer.to_string());
        assert_eq!(r["recv"]["listener"], server.udp().to_string());
    }
    for r in &tcp {
        assert_eq!(r["recv"]["transport"], "tcp");
        assert_eq!(r["recv"]["peer"], tcp_peer.to_string());
        assert_eq!(r["recv"]["listener"], server.tcp().to_string());
    }
    let tcp: Vec<Value> = tcp.into_iter().cloned().collect();
    assert_eq!(
        sorted(&tcp),
        sorted(&tcp_expected),
        "the stream's frames came over TCP"
    );
    // One connection, in order.
    let tcp_order: Vec<&Value> = tcp.iter().map(|r| &r["ts_usec"]).collect();
    let want_order: Vec<&Value> = tcp_expected.iter().map(|r| &r["ts_usec"]).collect();
    assert_eq!(tcp_order, want_order);

    let stopped = server.stop();
    assert_eq!(
        stopped.counts,
        Counts {
            received: 87,
            decoded: 87,
            delivered: 87,
            ..Counts::default()
        }
    );
    assert_eq!(json_lines(&out).len(), 87, "nothing written twice at exit");
}

#[test]
fn an_idle_connection_closed_by_the_server_is_not_a_rejected_message() {
    let dir = test_dir("idle");
    let server = Server::with_config(
        &dir,
        "listen = [\"hep_tcp:127.0.0.1:0\"]\noutputs = [\"null\"]\n\
         [limits]\nidle_timeout_ms = 200\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut idle = TcpStream::connect(server.tcp()).unwrap();
    idle.set_read_timeout(Some(OUTPUT_WAIT)).unwrap();
    let started = Instant::now();
    assert!(matches!(idle.read(&mut [0u8; 1]), Ok(0) | Err(_)));
    assert!(
        started.elapsed() < OUTPUT_WAIT,
        "closed after idle_timeout_ms"
    );
    // Counted as the connection ends, which the client may see first.
    wait_for("idle_timeout counted", OUTPUT_WAIT, || {
        let m = server.metrics();
        (m.get("hep_rejected_total", &[("reason", "idle_timeout")]) == 1).then_some(())
    });
    let stopped = server.stop();
    assert_eq!(
        stopped.counts,
        Counts::default(),
        "no message came, none was lost"
    );
}

// ===== outputs =====

/// A captured packet read back from a pcap file.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Packet {
    time: Duration,
    src: SocketAddr,
    dst: SocketAddr,
    ip_proto: u8,
    payload: Vec<u8>,
}

/// Parses Ethernet / IPv4|IPv6 / UDP|TCP; returns the packet and the TCP sequence number.
fn parse_frame(time: Duration, f: &[u8]) -> (Packet, Option<u32>) {
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let ip = &f[14..];
    let (src_ip, dst_ip, proto, l4): (std::net::IpAddr, std::net::IpAddr, u8, &[u8]) =
        match ethertype {
            0x0800 => {
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                assert_eq!(total, ip.len(), "IPv4 total length");
                let a: [u8; 4] = ip[12..16].try_into().unwrap();
                let b: [u8; 4] = ip[16..20].try_into().unwrap();
                (a.into(), b.into(), ip[9], &ip[ihl..])
            }
            0x86dd => {
                let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                assert_eq!(len + 40, ip.len(), "IPv6 payload length");
                let a: [u8; 16] = ip[8..24].try_into().unwrap();
                let b: [u8; 16] = ip[24..40].try_into().unwrap();
                (a.into(), b.into(), ip[6], &ip[40..])
            }
            other => panic!("ethertype {other:#06x}"),
        };
    let port = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let (payload, seq) = match proto {
        17 => {
            assert_eq!(usize::from(port(4)), l4.len(), "UDP length");
            (&l4[8..], None)
        }
        6 => {
            let off = usize::from(l4[12] >> 4) * 4;
            (
                &l4[off..],
                Some(u32::from_be_bytes(l4[4..8].try_into().unwrap())),
            )
        }
        p => panic!("IP protocol {p}"),
    };
    (
        Packet {
            time,
            src: SocketAddr::new(src_ip, port(0)),
            dst: SocketAddr::new(dst_ip, port(2)),
            ip_proto: proto,
            payload: payload.to_vec(),
        },
        seq,
    )
}

/// The packets of a pcap file, as far as it is complete.
fn read_pcap(path: &Path) -> Vec<(Packet, Option<u32>)> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(mut r) = pcap_file::pcap::PcapReader::new(file) else {
        return Vec::new();
    };
    assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut out = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        out.push(parse_frame(p.timestamp, &p.data));
    }
    out
}

fn packet_of(msg: &HepMessage) -> Packet {
    Packet {
        time: Duration::from_secs(msg.ts_sec.unwrap().into())
            + Duration::from_micros(msg.ts_usec.unwrap().into()),
        src: msg.src().unwrap(),
        dst: msg.dst().unwrap(),
        ip_proto: match msg.ip_proto {
            Some(6) => 6,
            _ => 17,
        },
        payload: msg.payload.bytes().to_vec(),
    }
}

#[test]
fn pcap_output_rebuilds_each_packet_from_its_hep_header() {
    let dir = test_dir("pcap");
    let out = dir.join("out.pcap");
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &format!("pcap:{}", out.display()),
    ]);
    let mut datagrams = Vec::new();
    for set in ["v2-udp-", "v2-udp-ipv6-", "v3-udp-", "v3-udp-ipv6-"] {
        datagrams.extend(set_bytes(set));
    }
    // SIP over TCP, one flow of three segments.
    for (i, sip) in [
        "INVITE sip:b SIP/2.0\r\n\r\n",
        "ACK sip:b SIP/2.0\r\n\r\n",
        "BYE",
    ]
    .iter()
    .enumerate()
    {
        let msg = HepMessage::builder()
            .src("10.1.1.1:40000".parse().unwrap())
            .dst("10.2.2.2:5060".parse().unwrap())
            .ip_proto(6)
            .timestamp(1_795_670_000 + i as u32, 7)
            .capture_id(1)
            .payload(*sip)
            .build();
        datagrams.push(msg.encode(HepVersion::V3).unwrap().to_vec());
    }
    send_udp(server.udp(), &datagrams);

    let packets = wait_for("51 packets in the pcap", OUTPUT_WAIT, || {
        let p = read_pcap(&out);
        (p.len() == 51).then_some(p)
    });
    let mut want: Vec<Packet> = datagrams
        .iter()
        .map(|d| packet_of(&HepMessage::decode(Bytes::from(d.clone())).unwrap()))
        .collect();
    want.sort();
    let mut got: Vec<Packet> = Vec::new();
    let mut tcp: Vec<(u32, usize)> = Vec::new();
    for (p, seq) in packets {
        if let Some(seq) = seq {
            tcp.push((seq, p.payload.len()));
        }
        got.push(p);
    }
    got.sort();
    assert_eq!(got, want, "addresses, ports, protocol, time and payload");
    tcp.sort_unstable();
    assert_eq!(tcp.len(), 3);
    assert_eq!(tcp[0].0, 1);
    for w in tcp.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0 + w[0].1 as u32,
            "one sequence space per flow"
        );
    }

    let stopped = server.stop();
    assert_eq!((stopped.counts.decoded, stopped.counts.delivered), (51, 51));
    assert_eq!(read_pcap(&out).len(), 51, "complete after a clean stop");
}

#[test]
fn a_same_version_relay_forwards_the_received_bytes_unchanged() {
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for set in ["v3-udp-", "v3-udp-ipv6-", "v3-udp-hlog-authkey-"] {
        sent.extend(set_bytes(set));
    }
    let stream = read("kamailio/v3-tcp-stream.bin");
    let total = sent.iter().map(Vec::len).sum::<usize>() + stream.len();
    // Each with the relay's 15-byte mark; the 15 with a key without its 16-byte chunk.
    let (sink, received) = tcp_sink(total + 51 * 15 - 15 * 16);
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--output",
        &format!("relay:hep_tcp:{sink}"),
    ]);
    send_udp(server.udp(), &sent);
    send_tcp(server.tcp(), &stream);
    let received = received.join().unwrap();
    sent.extend(hep3_frames(&stream));
    let sent: Vec<Vec<u8>> = sent.iter().map(|f| key_cut(f)).collect();
    // Each as received (less the auth key), with one mark appended: this server's id,
    // first hop.
    let received: Vec<(Vec<u8>, u64, u8)> =
        hep3_frames(&received).iter().map(|f| unmarked(f)).collect();
    let id = received[0].1;
    assert!(received.iter().all(|r| (r.1, r.2) == (id, 1)));
    assert_eq!(
        sort_bytes(received.into_iter().map(|r| r.0).collect()),
        sort_bytes(sent),
        "byte for byte"
    );
    let stopped = server.stop();
    assert_eq!((stopped.counts.decoded, stopped.counts.delivered), (51, 51));
    assert_eq!(stopped.counts.dropped, 0);
}

#[test]
fn a_relay_chain_delivers_every_message_to_a_second_server() {
    let dir = test_dir("relay-chain");
    let out = dir.join("b.jsonl");
    let b = Server::run(&[
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
    ]);
    let a = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &format!("relay:hep_tcp:{}", b.tcp()),
    ]);
    let mut files = Vec::new();
    let mut datagrams = Vec::new();
    for set in ["v3-udp-", "v3-udp-ipv6-", "v3-udp-hlog-authkey-"] {
        files.extend(set_files(set));
        datagrams.extend(set_bytes(set));
    }
    send_udp(a.udp(), &datagrams);
    let records = without_mark(wait_json(&out, 39));
    assert_eq!(sorted(&records), sorted(&keys_removed(decode(&files))));
    assert!(records.iter().all(|r| r["recv"]["transport"] == "tcp"));
    let a = a.stop();
    let b = b.stop();
    assert_eq!((a.counts.decoded, a.counts.delivered), (39, 39));
    assert_eq!((b.counts.decoded, b.counts.delivered), (39, 39));
}

#[test]
fn a_relay_loop_through_another_collector_is_dropped_not_amplified() {
    // The other collector: whatever the relay sends it, it relays back to the server's
    // UDP listener (as a collector relaying to us would), and counts.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink = l.local_addr().unwrap();
    let dir = test_dir("relay-loop");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
        "--output",
        &format!("relay:hep_tcp:{sink}"),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let back_to = server.udp();
    let echoed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&echoed);
    let echo = std::thread::spawn(move || {
        let (mut conn, _) = l.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut pending = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(5);
        // Bounded: 10,000 messages or 5 s, whichever first (the loop this test is
        // about would go on for ever).
        while Instant::now() < deadline && count.load(std::sync::atomic::Ordering::Relaxed) < 10_000
        {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(_) => continue,
            }
            while pending.len() >= 6 {
                let len = usize::from(u16::from_be_bytes([pending[4], pending[5]]));
                if pending.len() < len {
                    break;
                }
                let frame: Vec<u8> = pending.drain(..len).collect();
                udp.send_to(&frame, back_to).unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let sent = set_bytes("v3-udp-");
    send_udp(server.udp(), &sent[..5]);
    let dropped = || {
        server.metrics().get(
            "hep_dropped_total",
            &[("stage", "relay_loop"), ("reason", "loop")],
        )
    };
    wait_for("5 looped messages dropped", PROCESS_WAIT, || {
        (dropped() == 5).then_some(())
    });
    // Nothing more goes round: each message once to the outputs, once to the relay.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(echoed.load(std::sync::atomic::Ordering::Relaxed), 5);
    assert_eq!(dropped(), 5);
    assert_eq!(wait_json(&out, 5).len(), 5);
    let stopped = server.stop();
    echo.join().unwrap();
    assert_eq!(
        (
            stopped.counts.received,
            stopped.counts.delivered,
            stopped.counts.dropped
        ),
        (10, 10, 5)
    );
    assert!(
        stopped
            .stderr
            .contains("relay loop: dropping messages that were relayed back here"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_udp_relay_with_version_2_re_encodes() {
    let dir = test_dir("relay-v2");
    let out = dir.join("b.jsonl");
    let b = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
    ]);
    let a = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &format!("relay:hep_udp:{};version=2", b.udp()),
    ]);
    let mut files = Vec::new();
    let mut datagrams = Vec::new();
    for set in ["v3-udp-", "v3-udp-ipv6-"] {
        files.extend(set_files(set));
        datagrams.extend(set_bytes(set));
    }
    send_udp(a.udp(), &datagrams);
    let records = wait_json(&out, 24);
    // What HEPv2 carries: addresses, ports, protocol, time, a 16-bit capture id, payload.
    let v2_view = |r: &Value| {
        let keys = [
            "family",
            "ip_proto",
            "src_ip",
            "src_port",
            "dst_ip",
            "dst_port",
            "ts_sec",
            "ts_usec",
            "capture_id",
            "payload",
        ];
        keys.iter()
            .map(|k| format!("{k}={}", r[k]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut got: Vec<String> = records.iter().map(v2_view).collect();
    let mut want: Vec<String> = decode(&files).iter().map(v2_view).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(records.iter().all(|r| r["version"] == 2), "{records:#?}");
    let a = a.stop();
    b.stop();
    assert_eq!((a.counts.decoded, a.counts.delivered), (24, 24));
}

#[test]
fn stopping_under_load_loses_nothing_that_was_accepted() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = test_dir("load");
    let out = dir.join("out.jsonl");
    let server = Server::run(&[
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--output",
        &format!("json:{}", out.display()),
        "--output",
        "null",
    ]);
    // Agents that keep sending (about 10,000 messages/s each) until the server is gone.
    // (Not flat out: a TCP agent that never pauses keeps a stopping connection reading
    // until the listener's 5 s grace period ends; see hep-transport's tcp.rs.)
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(5);
    let (tcp, udp) = (server.tcp(), server.udp());
    let tcp_agent = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let stream = read("kamailio/v3-tcp-stream.bin");
            let mut s = TcpStream::connect(tcp).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                if s.write_all(&stream).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let udp_agent = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let datagrams = set_bytes("v3-udp-");
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                for d in &datagrams {
                    let _ = s.send_to(d, udp);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    wait_for("the first records", OUTPUT_WAIT, || {
        (json_lines(&out).len() > 500).then_some(())
    });
    // Stop while the agents are still sending.
    let stopped = server.stop();
    done.store(true, Ordering::Relaxed);
    tcp_agent.join().unwrap();
    udp_agent.join().unwrap();
    let c = stopped.counts;
    assert_eq!(c.rejected, 0, "{c:?}");
    // Two outputs: a decoded message is delivered (or dropped) once per output.
    assert_eq!(2 * c.decoded, c.delivered + c.dropped, "{c:?}");
    assert_eq!(
        json_lines(&out).len() as u64,
        (c.delivered + c.dropped) / 2 - c.dropped,
        "every record the summary counts as delivered is in the file: {c:?}"
    );
}

#[test]
fn a_tls_relay_verifies_the_collector_with_relay_tls() {
    let dir = test_dir("relay-tls");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.join("b.pem"), dir.join("b.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let out = dir.join("b.jsonl");
    let b = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_tls:127.0.0.1:0\"]\noutputs = [\"json:{}\"]\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            out.display(),
            cert_file.to_str().unwrap(),
            key_file.to_str().unwrap(),
        ),
    );
    let b_tls = b.tls.expect("a hep_tls listener");
    let a_dir = dir.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let a = Server::with_config(
        &a_dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"relay:hep_tls:{b_tls}\"]\n\
             [relay_tls]\nca_file = {:?}\nserver_name = \"localhost\"\n",
            cert_file.to_str().unwrap(),
        ),
    );
    send_udp(a.udp(), &set_bytes("v3-udp-"));
    let records = without_mark(wait_json(&out, 12));
    assert_eq!(sorted(&records), sorted(&decode(&set_files("v3-udp-"))));
    assert!(records.iter().all(|r| r["recv"]["transport"] == "tls"));
    assert_eq!(a.stop().counts.delivered, 12);
    b.stop();

    // Without [relay_tls] a TLS relay cannot verify anything: refused at start.
    let (ok, _, err) = hep_server(&["run", "--output", &format!("relay:hep_tls:{b_tls}")]);
    assert!(!ok);
    assert!(err.contains("needs a [relay_tls] section"), "{err}");
}

// ===== the config file =====

#[test]
fn an_auth_key_admits_only_messages_that_carry_it() {
    let dir = test_dir("auth");
    let out = dir.join("out.jsonl");
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"json:{}\"]\n\n[auth]\nkey = \"hep-secret\"\n",
            out.display()
        ),
    );
    let mut datagrams = set_bytes("v3-udp-hlog-authkey-"); // key "hep-secret"
    datagrams.extend(set_bytes("v3-udp-")); // no key
    let mut wrong = HepMessage::decode(Bytes::from(datagrams[0].clone())).unwrap();
    wrong.auth_key = Some(Bytes::from_static(b"hep-secreT"));
    datagrams.push(wrong.encode(HepVersion::V3).unwrap().to_vec());
    send_udp(server.udp(), &datagrams);

    let records = wait_json(&out, 15);
    // Checked, then removed (`[auth] strip` defaults to true).
    let mut want = decode(&set_files("v3-udp-hlog-authkey-"));
    for r in &mut want {
        assert_eq!(r["auth_key"], "hep-secret");
        r["auth_key"] = Value::Null;
    }
    assert_eq!(sorted(&records), sorted(&want));
    let stopped = server.stop();
    assert_eq!(
        stopped.counts,
        Counts {
            received: 28,
            decoded: 28,
            delivered: 15,
            dropped: 13,
            ..Counts::default()
        }
    );
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn the_auth_key_is_kept_by_no_output_unless_strip_is_false() {
    let datagrams = set_bytes("v3-udp-hlog-authkey-"); // 15 messages, key "hep-secret"
    let total: usize = datagrams.iter().map(Vec::len).sum();
    assert!(datagrams.iter().all(|d| contains(d, b"hep-secret")));

    // Without [auth] (keys are not checked) and with [auth] (strip not set): JSON, the
    // store and a relay get the messages without the key.
    for auth in ["", "[auth]\nkey = \"hep-secret\"\n"] {
        let dir = test_dir(if auth.is_empty() {
            "strip-no-auth"
        } else {
            "strip-auth"
        });
        let (out, store) = (dir.join("out.jsonl"), dir.join("store"));
        // Each without the key's 16-byte chunk, with the 15-byte relay mark.
        let (sink, relayed) = tcp_sink(total - 15);
        let server = Server::with_config(
            &dir,
            &format!(
                "listen = [\"hep_udp:127.0.0.1:0\"]\n\
                 outputs = [\"json:{}\", \"store:{}\", \"relay:hep_tcp:{sink}\"]\n\
                 [store]\nmax_age_hours = 0\nmin_free_mb = 0\n{auth}",
                out.display(),
                store.display()
            ),
        );
        send_udp(server.udp(), &datagrams);
        let records = wait_json(&out, 15);
        assert!(records.iter().all(|r| r["auth_key"].is_null()), "{auth}");
        let relayed = relayed.join().unwrap();
        assert_eq!(hep3_frames(&relayed).len(), 15);
        assert!(!contains(&relayed, b"hep-secret"), "relayed: {auth}");
        let stopped = server.stop();
        assert_eq!((stopped.counts.delivered, stopped.counts.dropped), (45, 0));
        let stored = all_bytes(&store);
        assert!(!stored.is_empty());
        assert!(!contains(&stored, b"hep-secret"), "stored: {auth}");
    }

    // `strip = false`: a relay forwards the key (to a collector that checks it); the
    // other outputs keep it too.
    let dir = test_dir("strip-false");
    let out = dir.join("out.jsonl");
    let (sink, relayed) = tcp_sink(total + 15 * 15);
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\n\
             outputs = [\"json:{}\", \"relay:hep_tcp:{sink}\"]\n\
             [auth]\nkey = \"hep-secret\"\nstrip = false\n",
            out.display()
        ),
    );
    send_udp(server.udp(), &datagrams);
    assert!(
        wait_json(&out, 15)
            .iter()
            .all(|r| r["auth_key"] == "hep-secret")
    );
    let relayed: Vec<Vec<u8>> = hep3_frames(&relayed.join().unwrap())
        .iter()
        .map(|f| unmarked(f).0)
        .collect();
    assert_eq!(sort_bytes(relayed), sort_bytes(datagrams), "as received");
    server.stop();
}

#[test]
fn auth_rejections_are_counted_by_reason() {
    let dir = test_dir("auth-metrics");
    let server = Server::with_config(
        &dir,
        "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"null\"]\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n[auth]\nkey = \"hep-secret\"\n",
    );
    let mut datagrams = set_bytes("v3-udp-");
    let mut wrong = HepMessage::decode(Bytes::from(datagrams[0].clone())).unwrap();
    wrong.auth_key = Some(Bytes::from_static(b"guess"));
    datagrams.push(wrong.encode(HepVersion::V3).unwrap().to_vec());
    datagrams.extend(set_bytes("v3-udp-hlog-authkey-"));
    send_udp(server.udp(), &datagrams);
    let m = wait_for("28 messages through", OUTPUT_WAIT, || {
        let m = server.metrics();
        let through =
            m.get("hep_delivered_total", &[]) + m.get("hep_dropped_total", &[("stage", "auth")]);
        (through == 28).then_some(m)
    });
    let auth = |reason| {
        m.get(
            "hep_dropped_total",
            &[("stage", "auth"), ("reason", reason)],
        )
    };
    assert_eq!((auth("missing_key"), auth("wrong_key")), (12, 1), "{}", m.0);
    assert_eq!(m.get("hep_delivered_total", &[("output", "null")]), 15);
    server.stop();
}

#[test]
fn a_proto_type_filter_keeps_only_log_messages() {
    let dir = test_dir("filter");
    let out = dir.join("out.jsonl");
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"json:{}\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n[filter]\nproto_types = [\"log\"]\n",
            out.display()
        ),
    );
    send_udp(server.udp(), &set_bytes("v3-udp-hlog-authkey-"));
    let records = wait_json(&out, 3);
    for r in &records {
        assert_eq!(
            (r["proto_type"].as_u64(), r["proto_name"].as_str()),
            (Some(100), Some("log"))
        );
        // hlog() puts the Call-ID in the correlation id.
        assert!(!r["correlation_id"].as_str().unwrap().is_empty());
    }
    wait_for("12 messages filtered out", OUTPUT_WAIT, || {
        let m = server.metrics();
        let filtered = m.get(
            "hep_dropped_total",
            &[("stage", "filter"), ("reason", "proto_type")],
        );
        (filtered == 12).then_some(())
    });
    let stopped = server.stop();
    assert_eq!((stopped.counts.delivered, stopped.counts.dropped), (3, 12));
}

#[test]
fn a_capture_id_rewrite_is_re_encoded_by_the_relay() {
    let dir = test_dir("rewrite");
    let sent = set_bytes("v3-udp-");
    // Capture id 2001 and 9 are both 4 bytes in HEP3: same length.
    let total: usize = sent.iter().map(Vec::len).sum();
    let (sink, received) = tcp_sink(total + sent.len() * 15);
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"relay:hep_tcp:{sink}\"]\n\
             [rewrite]\ncapture_id = 9\n"
        ),
    );
    send_udp(server.udp(), &sent);
    let received = received.join().unwrap();
    let mut got: Vec<String> = hep3_frames(&received)
        .into_iter()
        .map(|f| {
            let (f, _, hop) = unmarked(&f);
            assert_eq!(hop, 1);
            format!("{:?}", HepMessage::decode(Bytes::from(f)).unwrap())
        })
        .collect();
    let mut want: Vec<String> = sent
        .iter()
        .map(|d| {
            let mut m = HepMessage::decode(Bytes::from(d.clone())).unwrap();
            assert_eq!(m.capture_id, Some(2001));
            m.capture_id = Some(9);
            format!("{m:?}")
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the same messages, with capture id 9");
    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, 12);
}

#[test]
fn log_format_and_level_come_from_the_config() {
    let dir = test_dir("log");
    let config =
        "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"null\"]\n[log]\nformat = \"json\"\n";
    let path = dir.join("json.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG");
    let stopped = Server::spawn(cmd).stop();
    let json: Vec<Value> = stopped
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        json.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on hep_udp:"))),
        "{}",
        stopped.stderr
    );

    // level = "warn": no INFO lines; RUST_LOG, when set, overrides it.
    let path = dir.join("warn.toml");
    std::fs::write(
        &path,
        "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"null\"]\n[log]\nlevel = \"warn\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG");
    let quiet = Server::spawn(cmd).stop();
    assert!(!quiet.stderr.contains(" INFO "), "{}", quiet.stderr);
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let loud = Server::spawn(cmd).stop();
    assert!(loud.stderr.contains(" INFO "), "{}", loud.stderr);
}

// ===== check-config and start-up errors =====

fn hep_server(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    with_own_http_port(&mut cmd);
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn check_config(dir: &Path, name: &str, text: &str) -> (bool, String, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap().to_owned();
    let (ok, out, err) = hep_server(&["check-config", "--config", &p]);
    (ok, out, err, p)
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = test_dir("check-config");
    let (ok, out, err, _) = check_config(
        &dir,
        "ok.toml",
        "# an OpenSIPS user's settings\nhep_port = 9060\nhep_async = 0\n\n[auth]\nkey = \"k\"\n",
    );
    assert!(ok, "{err}");
    for line in [
        "listen = [\n    \"hep_udp:0.0.0.0:9060\",\n    \"hep_tcp:0.0.0.0:9060\",\n]",
        "outputs = [\"store:hep-store\"]",
        "hep_port = 9060",
        "hep_send_timeout = 100",
        "hep_max_msg_chunks = 32",
        "hep_async = false",
        "hep_async_max_postponed_chunks = 32",
        "hep_capture_id = 1",
        "hep_async_local_connect_timeout = 100",
        "hep_async_local_write_timeout = 10",
        "[limits]",
        "output_queue = 65536",
        "[store]",
        "max_age_hours = 168",
        "partition_minutes = 60",
        "[auth]",
        // The key is a secret: said to be set, never shown.
        "key = \"<redacted>\"",
    ] {
        assert!(out.contains(line), "`{line}` in\n{out}");
    }
    assert!(!out.contains("key = \"k\""), "{out}");
    // What it prints is itself a valid config, with the same meaning (but for the key).
    let (ok, again, err, _) = check_config(&dir, "printed.toml", &out);
    assert!(ok, "{err}");
    assert_eq!(again, out);
}

#[test]
fn check_config_names_the_file_line_and_key_of_a_mistake() {
    let dir = test_dir("check-config-errors");
    let (ok, out, err, p) = check_config(
        &dir,
        "unknown.toml",
        "hep_port = 9060\n\n[limits]\nmax_conections = 3\n",
    );
    assert!(!ok && out.is_empty());
    assert!(
        err.starts_with(&format!(
            "hep-server: {p}:4:1: unknown field `max_conections`"
        )),
        "{err}"
    );
    let (ok, _, err, p) = check_config(&dir, "bad.toml", "hep_port = 9060\nhep_async = 2\n");
    assert!(!ok);
    assert_eq!(
        err,
        format!("hep-server: {p}:2:13: key `hep_async`: expected true/false or 0/1, found 2\n")
    );
    let (ok, _, err, p) = check_config(&dir, "listen.toml", "listen = [\"udp:0.0.0.0\"]\n");
    assert!(!ok);
    assert!(
        err.starts_with(&format!("hep-server: {p}:1:11: key `listen`")),
        "{err}"
    );
    let (ok, _, err, p) = check_config(&dir, "log.toml", "[log]\nformat = \"xml\"\n");
    assert!(!ok);
    assert!(
        err.starts_with(&format!("hep-server: {p}:2:10: key `log.format`")),
        "{err}"
    );
    let (ok, _, err, p) = check_config(
        &dir,
        "level.toml",
        "[log]\nlevel = \"info,hep_transport=loud\"\n",
    );
    assert!(!ok);
    assert!(
        err.starts_with(&format!("hep-server: {p}:2:9: key `log.level`")),
        "{err}"
    );

    let missing = dir.join("missing.toml");
    let (ok, _, err) = hep_server(&["check-config", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("missing.toml: cannot read the file"), "{err}");

    // `run` refuses the same file with the same message.
    let (ok, _, run_err) = hep_server(&["run", "--config", &p]);
    assert!(!ok);
    assert!(
        run_err.contains(&format!("{p}:2:9: key `log.level`")),
        "{run_err}"
    );
}

#[test]
fn the_example_config_is_valid_and_is_the_one_in_the_docs() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = manifest.join("examples/hep-server.toml");
    let (ok, out, err) = hep_server(&["check-config", "--config", example.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("hep_max_msg_chunks = 32"), "{out}");
    let docs = std::fs::read_to_string(manifest.join("../docs/CONFIG.md")).unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(
        docs.contains(&format!("```toml\n{text}```")),
        "docs/CONFIG.md shows hep-server/examples/hep-server.toml verbatim"
    );
}

#[test]
fn two_outputs_on_one_file_are_refused_by_check_config_and_run() {
    let dir = test_dir("same-file");
    let file = dir.join("capture");
    let (ok, _, err, p) = check_config(
        &dir,
        "same.toml",
        &format!(
            "outputs = [\"json:{}\", \"pcap:{}/../same-file/capture\"]",
            file.display(),
            dir.display()
        ),
    );
    assert!(!ok);
    assert!(
        err.contains(&format!("{p}:1:")) && err.contains("both write") && err.contains("`json:"),
        "{err}"
    );
    // Specs given on the command line are checked as well.
    let json = format!("json:{}", file.display());
    let (ok, _, err) = hep_server(&[
        "run",
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        &json,
        "--output",
        &json,
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!("outputs `{json}` and `{json}` both write")),
        "{err}"
    );
    assert!(!file.exists(), "refused before anything was created");
    let (ok, _, err) = hep_server(&[
        "run",
        "--listen",
        "hep_udp:127.0.0.1:0",
        "--output",
        "stdout",
        "--output",
        "json:-",
    ]);
    assert!(!ok);
    assert!(err.contains("both write standard output"), "{err}");
}

#[test]
fn a_relay_to_its_own_listener_is_refused_by_check_config_and_run() {
    // A port nobody listens on: the server is refused before it binds anything.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = test_dir("self-relay");
    let (ok, _, err, p) = check_config(
        &dir,
        "self.toml",
        &format!(
            "listen = [\"hep_udp:0.0.0.0:{port}\"]\n\
             outputs = [\"json:-\", \"relay:hep_udp:127.0.0.1:{port}\"]\n"
        ),
    );
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{p}:2:22: key `outputs`: output `relay:hep_udp:127.0.0.1:{port}` sends to \
             listener `hep_udp:0.0.0.0:{port}`"
        )),
        "{err}"
    );
    let listen = format!("hep_tcp:127.0.0.1:{port}");
    let relay = format!("relay:hep_tcp:127.0.0.1:{port}");
    let (ok, _, err) = hep_server(&["run", "--listen", &listen, "--output", &relay]);
    assert!(!ok);
    assert!(
        err.contains(&format!("output `{relay}` sends to listener `{listen}`")),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_reported_at_start() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let spec = format!("hep_udp:{}", taken.local_addr().unwrap());
    let (ok, _, err) = hep_server(&["run", "--listen", &spec, "--output", "null"]);
    assert!(!ok);
    assert!(err.contains(&format!("listen `{spec}`")), "{err}");
}

// ===== no arguments =====

#[test]
fn without_arguments_it_listens_on_5656_and_stores_in_hep_store() {
    let skip = || {
        println!("note: port 5656 or 9080 is in use on this machine; skipping the no-argument run")
    };
    let free = UdpSocket::bind("0.0.0.0:5656").is_ok()
        && TcpListener::bind("0.0.0.0:5656").is_ok()
        && TcpListener::bind("127.0.0.1:9080").is_ok();
    if !free {
        skip();
        return;
    }
    // The default store is `hep-store` in the working directory.
    let dir = test_dir("no-arguments");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&dir);
    let server = match Server::try_spawn(cmd) {
        Ok(server) => server,
        // Taken between the check and the start (another test run).
        Err(stderr)
            if (stderr.contains("5656") || stderr.contains("9080"))
                && stderr.contains("in use") =>
        {
            skip();
            return;
        }
        Err(stderr) => panic!("hep-server exited at start:\n{stderr}"),
    };
    let err = server.stderr();
    for want in [
        "hep-server: listening on hep_udp:0.0.0.0:5656",
        "hep-server: listening on hep_tcp:0.0.0.0:5656",
        "hep-server: writing to store:hep-store",
        // The page, on loopback only.
        "hep-server: http listening on 127.0.0.1:9080",
    ] {
        assert!(err.contains(want), "`{want}` in\n{err}");
    }
    // Captured now: the default retention (a week) keeps it.
    let mut invite = HepMessage::decode(Bytes::from(read("kamailio/v3-udp-0001.hep"))).unwrap();
    invite.ts_sec = Some(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32,
    );
    send_udp(
        "127.0.0.1:5656".parse().unwrap(),
        &[invite.encode(HepVersion::V3).unwrap().to_vec()],
    );
    let stopped = server.stop();
    assert_eq!(stopped.counts.delivered, 1);
    assert_eq!(stopped.stdout, "", "nothing on stdout");
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args([
            "search",
            "--call-id",
            "1-13274@127.0.0.1",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["ts_sec"], invite.ts_sec.unwrap());
    assert!(
        found["payload"]
            .as_str()
            .unwrap()
            .starts_with("INVITE sip:service@127.0.0.1:5060")
    );
}
