//! Sender tests: destination specs, UDP/TCP/TLS delivery, async overflow accounting,
//! backoff and per-destination cooldown, sync write timeouts. Loopback only, bounded in
//! count and time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hep_proto::{HepFrameCodec, HepMessage, HepVersion, ProtoType};
use hep_transport::sender::{Backoff, ClientTls, SenderDropReason, SenderStatsSnapshot};
use hep_transport::{HepDestination, HepSender, SenderConfig, Transport};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::codec::Decoder;
use tower::{Service, ServiceExt};

/// A HEPv3 SIP message whose payload is `n`, padded to `len` bytes.
fn hep3(n: usize, len: usize) -> Bytes {
    let mut payload = format!("MESSAGE {n} SIP/2.0\r\n").into_bytes();
    payload.resize(len.max(payload.len()), b'x');
    message(payload).encode(HepVersion::V3).unwrap()
}

fn message(payload: Vec<u8>) -> HepMessage {
    HepMessage::builder()
        .src("10.0.0.1:5060".parse().unwrap())
        .dst("10.0.0.2:5060".parse().unwrap())
        .ip_proto(17)
        .timestamp(1_700_000_000, 1)
        .proto_type(ProtoType::Sip)
        .capture_id(7)
        .payload(payload)
        .build()
}

fn dest(spec: &str) -> HepDestination {
    spec.parse().unwrap()
}

fn tcp_dest(addr: SocketAddr) -> HepDestination {
    HepDestination::new(Transport::Tcp, addr.ip(), addr.port())
}

/// Complete frames in `bytes` (a trailing partial frame is ignored).
fn count_frames(bytes: &[u8]) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut codec = HepFrameCodec::new();
    let mut n = 0;
    while let Ok(Some(_)) = codec.decode(&mut buf) {
        n += 1;
    }
    n
}

fn assert_all_accounted(s: &SenderStatsSnapshot, offered: u64) {
    assert_eq!(s.queue_depth, 0, "{s:?}");
    assert_eq!(s.sent_messages + s.dropped_total(), offered, "{s:?}");
}

/// Reads HEP3 frames from a byte stream with [`HepFrameCodec`].
struct Frames<R> {
    io: R,
    buf: BytesMut,
    codec: HepFrameCodec,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    fn new(io: R) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            codec: HepFrameCodec::new(),
        }
    }

    /// The next frame; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }
}

// ===== destinations =====

#[test]
fn destination_specs_parse() {
    // Without a port: 5656, where a listen spec without one listens (HEP_PORT).
    let ok = [
        // (input, name, host, port, transport, version, display)
        (
            "[hep1] 10.0.0.1:9061; transport=udp; version=2",
            Some("hep1"),
            "10.0.0.1",
            9061,
            Transport::Udp,
            HepVersion::V2,
            "[hep1] 10.0.0.1:9061; transport=udp; version=2",
        ),
        (
            "[hep1]10.0.0.1",
            Some("hep1"),
            "10.0.0.1",
            5656,
            Transport::Tcp,
            HepVersion::V3,
            "[hep1] 10.0.0.1:5656; transport=tcp; version=3",
        ),
        (
            "[::1]:9000;transport=TLS",
            None,
            "::1",
            9000,
            Transport::Tls,
            HepVersion::V3,
            "[::1]:9000; transport=tls; version=3",
        ),
        (
            "[x] [2001:db8::1]; version=1; transport=Udp",
            Some("x"),
            "2001:db8::1",
            5656,
            Transport::Udp,
            HepVersion::V1,
            "[x] [2001:db8::1]:5656; transport=udp; version=1",
        ),
        (
            "  homer.example.net:9062 ; transport = udp ;",
            None,
            "homer.example.net",
            9062,
            Transport::Udp,
            HepVersion::V3,
            "homer.example.net:9062; transport=udp; version=3",
        ),
        (
            "::1",
            None,
            "::1",
            5656,
            Transport::Tcp,
            HepVersion::V3,
            "[::1]:5656; transport=tcp; version=3",
        ),
        (
            "hep_udp:10.1.2.3:9060;version=2",
            None,
            "10.1.2.3",
            9060,
            Transport::Udp,
            HepVersion::V2,
            "hep_udp:10.1.2.3:9060;version=2",
        ),
        (
            "HEP_TCP:[::1]:9061",
            None,
            "::1",
            9061,
            Transport::Tcp,
            HepVersion::V3,
            "hep_tcp:[::1]:9061;version=3",
        ),
        (
            "hep_tls:collector",
            None,
            "collector",
            5656,
            Transport::Tls,
            HepVersion::V3,
            "hep_tls:collector:5656;version=3",
        ),
    ];
    for (input, name, host, port, transport, version, display) in ok {
        let d: HepDestination = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(d.name(), name, "{input}");
        assert_eq!(d.host().to_string(), host, "{input}");
        assert_eq!(
            (d.port(), d.transport(), d.version()),
            (port, transport, version),
            "{input}"
        );
        assert_eq!(d.to_string(), display, "{input}");
        assert_eq!(display.parse::<HepDestination>().unwrap(), d, "{input}");
    }

    let bad = [
        ("", "expected `[name] host[:port]"),
        ("[hep1]", "neither an IPv6 address nor a name"),
        (
            "[hep1]; transport=udp",
            "neither an IPv6 address nor a name",
        ),
        ("[hep1 10.0.0.1", "unterminated `[`"),
        ("[] 10.0.0.1", "name in `[name]` must be non-empty"),
        ("10.0.0.1:0", "port must be a number from 1 to 65535"),
        ("10.0.0.1:99999", "port must be a number from 1 to 65535"),
        ("2001:db8::1:9060:x", "must be written in brackets"),
        ("[zz::1]:9060 ", "neither an IPv6 address"),
        ("[n] [zz]:1", "expected an IPv6 address inside"),
        ("bad_host!:9060", "invalid host"),
        ("1234", "cannot be all digits"),
        (
            "10.0.0.1; transport=sctp",
            "transport must be udp, tcp or tls",
        ),
        ("10.0.0.1; version=4", "version must be 1, 2 or 3"),
        (
            "10.0.0.1; Transport=udp",
            "keys are `transport` and `version` (case-sensitive)",
        ),
        ("10.0.0.1; proto=udp", "unknown parameter"),
        ("10.0.0.1; version", "expected `key=value`"),
        ("10.0.0.1; version=3; version=3", "given twice"),
        (
            "10.0.0.1; transport=tcp; version=2",
            "TCP and TLS carry HEPv3 only",
        ),
        (
            "hep_tls:10.0.0.1:9060;version=1",
            "TCP and TLS carry HEPv3 only",
        ),
        ("hep_udp:10.0.0.1:9060;transport=udp", "only `;version=N`"),
        ("hep_udp:", "missing host"),
    ];
    for (input, expected) in bad {
        let e = input
            .parse::<HepDestination>()
            .expect_err(input)
            .to_string();
        assert!(e.contains(expected), "{input:?}: {e}");
        assert!(e.starts_with("invalid HEP destination"), "{input:?}: {e}");
    }
}

// ===== UDP =====

fn udp_config() -> SenderConfig {
    let mut cfg = SenderConfig::default();
    cfg.hep_async_max_postponed_chunks = 1024;
    cfg
}

async fn recv_all(sock: &UdpSocket, n: usize) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65_536];
    while out.len() < n {
        let len = timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} datagrams arrived", out.len()))
            .unwrap();
        out.push(Bytes::copy_from_slice(&buf[..len]));
    }
    out
}

#[tokio::test]
async fn udp_messages_arrive_byte_exact_and_in_order() {
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = rx.local_addr().unwrap();
    let mut sender = HepSender::new(
        dest(&format!("127.0.0.1:{}; transport=udp", addr.port())),
        udp_config(),
    )
    .unwrap();
    // Lockstep chunks of 50, so that the receiver's socket buffer never overflows.
    let msgs: Vec<Bytes> = (0..300).map(|i| hep3(i, 100 + i % 700)).collect();
    for chunk in msgs.chunks(50) {
        for m in chunk {
            sender.ready().await.unwrap().call(m.clone()).await.unwrap();
        }
        assert_eq!(recv_all(&rx, chunk.len()).await, chunk);
    }

    // The load-generator path: equal-size runs go out as GSO sends where supported.
    let batch: Vec<Bytes> = (0..200).map(|i| hep3(1000 + i, 900)).collect();
    for chunk in batch.chunks(50) {
        assert_eq!(sender.send_batch(chunk), chunk.len());
        assert_eq!(recv_all(&rx, chunk.len()).await, chunk);
    }

    // HEPv2 from a message, encoded at the destination's version.
    let v2 = HepSender::new(
        dest(&format!(
            "[v2] 127.0.0.1:{}; transport=udp; version=2",
            addr.port()
        )),
        udp_config(),
    )
    .unwrap();
    let msg = message(b"OPTIONS sip:a SIP/2.0\r\n\r\n".to_vec());
    v2.send_message(&msg).await.unwrap();
    let got = recv_all(&rx, 1).await;
    assert_eq!(got[0], msg.encode(HepVersion::V2).unwrap());
    assert_eq!(got[0][0], 2);
    // Not encodable at v2 (no addresses): counted, not sent.
    let e = v2
        .send_message(&HepMessage::builder().payload("x").build())
        .await
        .unwrap_err();
    assert_eq!(e.reason(), SenderDropReason::Encode);

    let s = sender.stats().snapshot();
    assert_eq!(s.sent_messages, 500);
    assert_eq!(s.connects, 1);
    assert_all_accounted(&s, 500);
    assert_eq!(v2.stats().snapshot().dropped(SenderDropReason::Encode), 1);
}

#[tokio::test]
async fn udp_ipv6() {
    let Ok(rx) = UdpSocket::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback: skipped");
        return;
    };
    let port = rx.local_addr().unwrap().port();
    let sender = HepSender::new(dest(&format!("hep_udp:[::1]:{port}")), udp_config()).unwrap();
    let msgs: Vec<Bytes> = (0..20).map(|i| hep3(i, 200)).collect();
    for m in &msgs {
        sender.send(m.clone()).await.unwrap();
    }
    assert_eq!(recv_all(&rx, msgs.len()).await, msgs);
}

// ===== TCP =====

#[tokio::test]
async fn tcp_1000_messages_arrive_framed_in_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let msgs: Vec<Bytes> = (0..1000).map(|i| hep3(i, 50 + (i * 37) % 1400)).collect();
    let expected = msgs.clone();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Frames::new(stream);
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match timeout(Duration::from_secs(5), framed.next()).await {
                Ok(Some(f)) => got.push(f),
                other => panic!("after {} frames: {other:?}", got.len()),
            }
        }
        assert!(got == expected, "frames differ");
    });
    let mut sender = HepSender::new(tcp_dest(addr), SenderConfig::default()).unwrap();
    for m in msgs {
        // Awaiting each future keeps the 32-message queue from overflowing.
        sender.ready().await.unwrap().call(m).await.unwrap();
    }
    timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!(
        (s.sent_messages, s.connects, s.dropped_total()),
        (1000, 1, 0)
    );
    assert_all_accounted(&s, 1000);
}

#[tokio::test]
async fn tcp_batches_are_queued_whole_in_order_and_fall_back_when_they_do_not_fit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let msgs: Vec<Bytes> = (0..2000).map(|i| hep3(i, 60 + (i * 13) % 900)).collect();
    let expected = msgs.clone();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Frames::new(stream);
        let mut got = Vec::new();
        while got.len() < expected.len() {
            match timeout(Duration::from_secs(5), framed.next()).await {
                Ok(Some(f)) => got.push(f),
                other => panic!("after {} frames: {other:?}", got.len()),
            }
        }
        assert!(got == expected, "frames differ");
    });
    let mut config = SenderConfig::default();
    config.hep_async_max_postponed_chunks = 100;
    let sender = HepSender::new(tcp_dest(addr), config).unwrap();
    // The first message opens the connection.
    sender.send(msgs[0].clone()).await.unwrap();
    let mut offered = 1;
    for chunk in msgs[1..].chunks(40) {
        // Room for 40 (at most 60 pending): queued at once, in order.
        while sender.stats().snapshot().queue_depth > 60 {
            sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(sender.send_batch(chunk), chunk.len());
        offered += chunk.len();
    }
    assert_eq!(offered, msgs.len());
    timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!((s.sent_messages, s.dropped_total()), (2000, 0));
    assert_all_accounted(&s, 2000);

    // A batch larger than the queue goes message by message: the overflow rules apply
    // (the connection is dropped with its queue, each loss counted).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = SenderConfig::default();
    config.hep_async_max_postponed_chunks = 10;
    let sender = HepSender::new(tcp_dest(addr), config).unwrap();
    let (_held, _) = tokio::join!(listener.accept(), sender.send(msgs[0].clone()));
    let accepted = sender.send_batch(&msgs[1..41]);
    assert!(accepted < 40, "{accepted}");
    sender.close().await;
    assert_all_accounted(&sender.stats().snapshot(), 41);
}

#[tokio::test]
async fn close_flushes_the_queue() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = SenderConfig::default();
    cfg.hep_async_max_postponed_chunks = 200;
    let sender = HepSender::new(tcp_dest(addr), cfg).unwrap();
    // Queued before the connection exists: close() must wait for the connect and flush.
    for i in 0..150 {
        let _ = sender.enqueue(hep3(i, 300));
    }
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        count_frames(&all)
    });
    sender.close().await;
    assert_eq!(reader.await.unwrap(), 150);
    let e = sender.send(hep3(0, 10)).await.unwrap_err();
    assert!(e.is_closed(), "{e}");
    let s = sender.stats().snapshot();
    assert_eq!(s.sent_messages, 150);
    assert_all_accounted(&s, 151);
}

/// The counters once the writers of connections that ended have accounted for what they
/// held (they do so when they next run, after `close` may have returned).
async fn settled(sender: &HepSender) -> SenderStatsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = sender.stats().snapshot();
        if s.queue_depth == 0 || Instant::now() >= deadline {
            return s;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback listener whose connections have a 4 KiB receive buffer: a peer that reads
/// slowly, or not at all, holds the sender back at once.
fn small_buffer_listener() -> TcpListener {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    sock.listen(64).unwrap()
}

/// A listener that accepts and never reads, with a small receive buffer.
struct StalledPeer {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    task: JoinHandle<()>,
}

impl StalledPeer {
    fn start() -> Self {
        let listener = small_buffer_listener();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let acc = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                acc.lock().unwrap().push(s);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// Reads every accepted connection to its end; the number of complete frames.
    async fn drain(self, connections: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.accepted.lock().unwrap().len() < connections {
            assert!(Instant::now() < deadline, "not all connections accepted");
            sleep(Duration::from_millis(5)).await;
        }
        self.task.abort();
        let streams = std::mem::take(&mut *self.accepted.lock().unwrap());
        let mut frames = 0;
        for mut s in streams {
            let mut all = Vec::new();
            timeout(Duration::from_secs(3), s.read_to_end(&mut all))
                .await
                .expect("sender side never closed")
                .unwrap();
            frames += count_frames(&all);
        }
        frames
    }
}

#[tokio::test]
async fn async_overflow_of_a_stalled_connection_drops_it_and_counts_every_loss() {
    let peer = StalledPeer::start();
    let mut cfg = SenderConfig::default();
    cfg.send_buffer_size = Some(4096);
    cfg.hep_async_local_write_timeout = Duration::from_millis(1);
    cfg.hep_async_local_connect_timeout = Duration::from_millis(1);
    cfg.backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(20));
    cfg.stall_timeout = Duration::from_secs(10); // overflow, not the stall timer, ends it
    // OpenSIPS's rule: every overflow of an established connection ends it (by default
    // only one whose writer made no progress for 1 s; see the next tests).
    cfg.overflow_stall_timeout = Duration::ZERO;
    // The peer never reads: without a limit on retries the sender would cool down after
    // 5 overflows (see the next test); here every overflow is to be seen.
    cfg.max_retries = 0;
    cfg.close_timeout = Duration::from_millis(200);
    let mut sender = HepSender::new(tcp_dest(peer.addr), cfg).unwrap();
    let offered = 600;
    let mut took = Vec::with_capacity(offered);
    let mut overflow_errors = 0;
    for i in 0..offered {
        let t = Instant::now();
        let r = sender.ready().await.unwrap().call(hep3(i, 1500)).await;
        took.push(t.elapsed());
        if let Err(e) = r {
            assert_eq!(e.reason(), SenderDropReason::QueueOverflow, "{e}");
            overflow_errors += 1;
        }
    }
    // The caller is held at most hep_async_local_write_timeout (1 ms) per message, plus
    // scheduling noise. A blocking writer would be held until the peer reads, i.e. until
    // the 10 s stall timer: the bounds below separate the two with room for a loaded
    // 2-CPU CI machine, which can deschedule a thread for tens of ms (p99 12 ms seen).
    took.sort();
    let (p99, max) = (took[offered * 99 / 100], took[offered - 1]);
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    assert!(max < Duration::from_secs(1), "max {max:?}");
    sender.close().await;
    let s = settled(&sender).await;
    assert!(overflow_errors > 0 && s.reconnects > 0, "{s:?}");
    // Each overflow of an established connection loses its whole queue plus the message
    // that overflowed; all of it counted.
    assert!(s.dropped(SenderDropReason::QueueOverflow) > 32, "{s:?}");
    assert_all_accounted(&s, offered as u64);
    // Exactly what was counted as sent arrived; nothing counted as lost did.
    let connects = usize::try_from(s.connects).unwrap();
    assert_eq!(peer.drain(connects).await as u64, s.sent_messages, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_sender_to_a_reading_destination_keeps_delivering() {
    // The destination reads, through a small receive buffer and slower than it is
    // offered messages: the 32-message queue overflows again and again. That is
    // overload, not a failure: the excess is dropped and counted, the connection stays,
    // and the destination is never cooled down.
    let listener = small_buffer_listener();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Frames::new(stream);
        let mut n = 0u64;
        while frames.next().await.is_some() {
            n += 1;
            if n.is_multiple_of(16) {
                sleep(Duration::from_millis(1)).await;
            }
        }
        n
    });
    let mut cfg = SenderConfig::default();
    cfg.send_buffer_size = Some(4096);
    let sender = HepSender::new(tcp_dest(addr), cfg).unwrap();
    let (rounds, per_round) = (20u64, 1000);
    let mut offered = 0u64;
    for round in 0..rounds {
        let before = sender.stats().snapshot().sent_messages;
        // As fast as the relay offers them: nothing awaits a write.
        for i in 0..per_round {
            offered += 1;
            let _ = sender.enqueue(hep3(i, 1500));
        }
        // Every round delivers some (the bound is generous: the count is what matters).
        let deadline = Instant::now() + Duration::from_secs(10);
        while sender.stats().snapshot().sent_messages == before {
            assert!(
                Instant::now() < deadline,
                "round {round} delivered nothing: {:?}",
                sender.stats().snapshot()
            );
            sleep(Duration::from_millis(2)).await;
        }
    }
    sender.close().await;
    let s = settled(&sender).await;
    assert!(
        s.dropped(SenderDropReason::QueueOverflow) > 0,
        "never overloaded: {s:?}"
    );
    assert_eq!(s.dropped(SenderDropReason::Cooldown), 0, "{s:?}");
    assert_eq!(s.connect_errors, 0, "{s:?}");
    assert!(s.sent_messages >= rounds, "{s:?}");
    assert_all_accounted(&s, offered);
    // What was counted as sent arrived.
    let received = timeout(Duration::from_secs(10), reader)
        .await
        .expect("the sender never closed the connection")
        .unwrap();
    assert_eq!(received, s.sent_messages, "{s:?}");
}

/// Offers `msgs` as the relay does: runs taken whole or in part, the rest offered again
/// once the sender has room, or handed to `send_batch` when room did not come in time.
/// Returns how many offers took less than they were given, and how many times room did
/// not come in time.
async fn offer_all(sender: &HepSender, msgs: &[Bytes], run: usize) -> (usize, usize) {
    let (mut short, mut late) = (0, 0);
    for chunk in msgs.chunks(run) {
        let mut at = 0;
        while at < chunk.len() {
            at += sender.offer_batch(&chunk[at..]);
            if at < chunk.len() {
                short += 1;
                if !sender.room().await {
                    late += 1;
                    sender.send_batch(&chunk[at..]);
                    at = chunk.len();
                }
            }
        }
    }
    (short, late)
}

#[tokio::test]
async fn an_idle_tcp_connection_takes_an_offer_at_once_from_the_callers_thread() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let msgs: Vec<Bytes> = (0..200).map(|i| hep3(i, 100 + i * 7)).collect();
    let expected = msgs.clone();
    let sender = HepSender::new(tcp_dest(addr), SenderConfig::default()).unwrap();
    let (accepted, first) = tokio::join!(listener.accept(), sender.send(msgs[0].clone()));
    first.unwrap();
    // 199 messages, far more than the 32 the queue holds: an idle established
    // connection writes them from this thread (this test's runtime has one thread, and
    // nothing here yields to the writer task), so all are sent when the call returns.
    assert_eq!(sender.offer_batch(&msgs[1..]), 199);
    let s = sender.stats().snapshot();
    assert_eq!(
        (s.sent_messages, s.queue_depth, s.dropped_total()),
        (200, 0, 0)
    );
    let mut frames = Frames::new(accepted.unwrap().0);
    for (i, want) in expected.iter().enumerate() {
        let got = timeout(Duration::from_secs(5), frames.next())
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(want), "frame {i}");
    }
    sender.close().await;
    assert_all_accounted(&sender.stats().snapshot(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_to_a_slow_reader_arrive_whole_and_in_order_and_none_is_lost_for_room() {
    // A destination that reads slowly through small buffers: direct writes are cut
    // short mid-message, the rest of the message and of the run waits in the sender's
    // queue and then in the caller's hands. The stream must stay framed and ordered,
    // and nothing may be dropped: the caller waits for room instead.
    let listener = small_buffer_listener();
    let addr = listener.local_addr().unwrap();
    let msgs: Vec<Bytes> = (0..6000).map(|i| hep3(i, 60 + (i * 131) % 1400)).collect();
    let expected = msgs.clone();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Frames::new(stream);
        for (i, want) in expected.iter().enumerate() {
            let got = timeout(Duration::from_secs(10), frames.next())
                .await
                .unwrap();
            assert_eq!(got.as_ref(), Some(want), "frame {i}");
            if i % 64 == 0 {
                sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut cfg = SenderConfig::default();
    cfg.send_buffer_size = Some(4096);
    // Room always comes in time here: the point is that the offers wait for it.
    cfg.hep_async_local_write_timeout = Duration::from_secs(30);
    let sender = HepSender::new(tcp_dest(addr), cfg).unwrap();
    let (short, late) = offer_all(&sender, &msgs, 256).await;
    assert!(short > 0, "the reader never held the sender back");
    assert_eq!(late, 0);
    timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!((s.sent_messages, s.dropped_total()), (6000, 0), "{s:?}");
    assert_eq!(s.connects, 1, "{s:?}");
    assert_all_accounted(&s, 6000);
}

#[tokio::test]
async fn offers_to_a_stalled_destination_wait_no_longer_than_a_send_may() {
    // The destination never reads. An offer that finds no room waits at most
    // hep_async_local_write_timeout; the rest then goes as sends go: the excess dropped
    // and counted while the connection may still read, the connection dropped with its
    // queue once it has made no progress for overflow_stall_timeout. All of it counted,
    // and never more waiting than the timeouts allow.
    let peer = StalledPeer::start();
    let mut cfg = SenderConfig::default();
    cfg.send_buffer_size = Some(4096);
    cfg.hep_async_local_write_timeout = Duration::from_millis(2);
    cfg.overflow_stall_timeout = Duration::from_millis(50);
    cfg.stall_timeout = Duration::from_secs(10);
    cfg.backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(20));
    cfg.max_retries = 0;
    cfg.close_timeout = Duration::from_millis(100);
    let sender = HepSender::new(tcp_dest(peer.addr), cfg).unwrap();
    let msgs: Vec<Bytes> = (0..20_000).map(|i| hep3(i, 1000)).collect();
    let (_, late) = timeout(Duration::from_secs(20), offer_all(&sender, &msgs, 256))
        .await
        .expect("offers to a stalled destination never finished");
    assert!(late > 0, "room never timed out");
    sender.close().await;
    let s = settled(&sender).await;
    assert!(s.dropped(SenderDropReason::QueueOverflow) > 0, "{s:?}");
    assert!(
        s.reconnects > 0,
        "the stalled connection was never dropped: {s:?}"
    );
    assert_all_accounted(&s, 20_000);
    let connects = usize::try_from(s.connects).unwrap();
    assert_eq!(peer.drain(connects).await as u64, s.sent_messages, "{s:?}");
}

#[tokio::test]
async fn sync_offers_take_free_slots_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    cfg.hep_async_max_postponed_chunks = 8;
    let sender = HepSender::new(tcp_dest(addr), cfg).unwrap();
    let msgs: Vec<Bytes> = (0..20).map(|i| hep3(i, 200)).collect();
    // Nothing is written before this task yields: 8 slots, 8 taken.
    assert_eq!(sender.offer_batch(&msgs), 8);
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        count_frames(&all)
    });
    let mut at = 8;
    while at < msgs.len() {
        timeout(Duration::from_secs(5), sender.room())
            .await
            .unwrap();
        at += sender.offer_batch(&msgs[at..]);
    }
    sender.close().await;
    assert_eq!(reader.await.unwrap(), 20);
    let s = sender.stats().snapshot();
    assert_eq!((s.sent_messages, s.dropped_total()), (20, 0), "{s:?}");
}

#[tokio::test]
async fn a_peer_that_accepts_and_never_reads_leads_to_the_cooldown() {
    // Each new connection takes writes until the kernel's buffers are full; those writes
    // must not count as the destination being healthy, or the sender would reconnect
    // forever and never stop offering it messages.
    let peer = StalledPeer::start();
    let mut cfg = SenderConfig::default();
    cfg.send_buffer_size = Some(4096);
    cfg.hep_async_local_write_timeout = Duration::from_millis(1);
    cfg.hep_async_local_connect_timeout = Duration::from_millis(1);
    cfg.backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(5)).without_jitter();
    cfg.max_retries = 3;
    cfg.retry_cooldown = Duration::from_secs(30);
    cfg.close_timeout = Duration::from_millis(200);
    let sender = HepSender::new(tcp_dest(peer.addr), cfg).unwrap();
    let mut offered = 0u64;
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never cooled down: {:?}",
            sender.stats().snapshot()
        );
        offered += 1;
        match sender.send(hep3(offered as usize, 1500)).await {
            Err(e) if e.is_cooldown() => break,
            _ => {}
        }
    }
    sender.close().await;
    let s = settled(&sender).await;
    // The connections made before the cooldown are the retries, no more.
    assert_eq!(s.connects, 3, "{s:?}");
    assert_all_accounted(&s, offered);
}

#[tokio::test]
async fn sync_write_times_out_after_hep_send_timeout() {
    let peer = StalledPeer::start();
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    cfg.send_buffer_size = Some(4096);
    cfg.hep_send_timeout = Duration::from_millis(100);
    let mut sender = HepSender::new(tcp_dest(peer.addr), cfg).unwrap();
    let mut sent = 0;
    let err = loop {
        assert!(sent < 1000, "the peer never stalled");
        let t = Instant::now();
        match sender.ready().await.unwrap().call(hep3(sent, 4000)).await {
            Ok(()) => sent += 1,
            Err(e) => break (e, t.elapsed()),
        }
    };
    let (e, took) = err;
    assert!(e.is_timeout(), "{e}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(1),
        "{took:?}"
    );
    let s = sender.stats().snapshot();
    assert_eq!(s.dropped(SenderDropReason::WriteTimeout), 1, "{s:?}");
    assert_eq!(s.sent_messages, sent as u64);
    assert_all_accounted(&s, sent as u64 + 1);
}

#[tokio::test]
async fn sync_mode_pushes_back_through_poll_ready() {
    let peer = StalledPeer::start();
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    cfg.hep_async_max_postponed_chunks = 4;
    cfg.send_buffer_size = Some(4096);
    cfg.hep_send_timeout = Duration::from_secs(5);
    let mut sender = HepSender::new(tcp_dest(peer.addr), cfg).unwrap();
    let mut pending = Vec::new();
    let mut blocked = false;
    for i in 0..500 {
        match timeout(Duration::from_millis(200), sender.ready()).await {
            Ok(r) => {
                r.unwrap();
                pending.push(sender.call(hep3(i, 4000)));
            }
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "poll_ready never waited");
    // Without a reservation and no free slot, a send is refused and counted.
    let e = sender.send(hep3(0, 10)).await.unwrap_err();
    assert!(e.is_overflow(), "{e}");
    sender.close().await;
    drop(peer);
}

// ===== failures, backoff, cooldown =====

#[tokio::test]
async fn down_destination_backs_off_cools_down_and_recovers() {
    // A port with nothing listening: connects are refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cfg = SenderConfig::default();
    cfg.max_retries = 3;
    cfg.retry_cooldown = Duration::from_millis(400);
    cfg.backoff =
        Backoff::new(Duration::from_millis(20), Duration::from_millis(100)).without_jitter();
    let sender = HepSender::new(tcp_dest(addr), cfg).unwrap();

    // A healthy destination next to it is not affected (the limit is per destination).
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let healthy = HepSender::new(
        tcp_dest(other.local_addr().unwrap()),
        SenderConfig::default(),
    )
    .unwrap();

    let mut offered = 0u64;
    let started = Instant::now();
    let cooling_since = loop {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never cooled down"
        );
        offered += 1;
        match sender.send(hep3(0, 100)).await {
            Err(e) if e.is_cooldown() => break Instant::now(),
            _ => sleep(Duration::from_millis(5)).await,
        }
    };
    let s = sender.stats().snapshot();
    assert_eq!(s.connect_errors, 3, "{s:?}");
    assert!(s.dropped(SenderDropReason::ConnectFailed) >= 3, "{s:?}");
    // 3 attempts with 20 + 40 ms of backoff between them.
    assert!(cooling_since - started >= Duration::from_millis(60));

    healthy.send(hep3(1, 100)).await.unwrap();
    assert_eq!(healthy.stats().snapshot().sent_messages, 1);

    // The destination comes back while the sender is cooling down.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(addr).unwrap();
    let listener = sock.listen(8).unwrap();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Frames::new(stream);
        framed.next().await
    });
    let recovered_at = loop {
        assert!(
            cooling_since.elapsed() < Duration::from_secs(3),
            "never recovered"
        );
        offered += 1;
        match sender.send(hep3(2, 100)).await {
            Err(e) if e.is_cooldown() => {
                // No attempt is made during the cooldown.
                assert_eq!(sender.stats().snapshot().connect_errors, 3);
                sleep(Duration::from_millis(10)).await;
            }
            Ok(()) => break Instant::now(),
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        recovered_at - cooling_since >= Duration::from_millis(300),
        "cooldown too short: {:?}",
        recovered_at - cooling_since
    );
    assert_eq!(reader.await.unwrap(), Some(hep3(2, 100)));
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!((s.connects, s.sent_messages), (1, 1), "{s:?}");
    assert!(s.dropped(SenderDropReason::Cooldown) >= 1, "{s:?}");
    assert_all_accounted(&s, offered);
}

#[tokio::test]
async fn a_fenced_sender_opens_no_new_connection_until_the_fence_is_cleared() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    cfg.fence_on_connection_end = true;
    cfg.backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(10));
    let sender = HepSender::new(tcp_dest(listener.local_addr().unwrap()), cfg).unwrap();

    sender.send(hep3(0, 100)).await.unwrap();
    let (first, _) = listener.accept().await.unwrap();
    let mut first = Frames::new(first);
    assert_eq!(first.next().await, Some(hep3(0, 100)));
    // The peer closes the connection: the sender finds out on its next read or write.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    while sender.send(hep3(1, 100)).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the closed connection was never noticed"
        );
        sleep(Duration::from_millis(10)).await;
    }
    // Fenced: refused at once, no connection attempted.
    let e = sender.send(hep3(2, 100)).await.unwrap_err();
    assert!(e.is_closed(), "{e}");
    assert_eq!(sender.stats().snapshot().connects, 1);

    sender.clear_fence();
    sender.send(hep3(3, 100)).await.unwrap();
    let (second, _) = timeout(Duration::from_secs(3), listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Frames::new(second).next().await, Some(hep3(3, 100)));
    sender.close().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_sender_measures_what_its_destination_can_have_missed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    cfg.measure_unconfirmed = true;
    let sender = HepSender::new(tcp_dest(addr), cfg).unwrap();
    assert_eq!(sender.unconfirmed_bytes(), None, "no connection yet");

    let n = 2_000;
    let reader = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut frames = Frames::new(s);
        for _ in 0..n {
            frames.next().await.unwrap();
        }
        frames
    });
    for i in 0..n {
        sender.send(hep3(i, 1_000)).await.unwrap();
    }
    let frames = reader.await.unwrap();
    let written = 1_000 * n as u64;
    // Everything was read: what is left unconfirmed is the allowance for the peer's
    // receive buffer (a window or two), not the 2 MB written. Samples follow writes.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = n;
    let unconfirmed = loop {
        let u = sender.unconfirmed_bytes().unwrap();
        if u < written / 2 || Instant::now() > deadline {
            break u;
        }
        sleep(Duration::from_millis(5)).await;
        sender.send(hep3(i, 1_000)).await.unwrap();
        i += 1;
    };
    assert!(
        unconfirmed < written / 2,
        "{unconfirmed} of {written} bytes unconfirmed after the peer read them all"
    );
    drop(frames);
    sender.close().await;

    // Without the setting, nothing is measured.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    let sender = HepSender::new(tcp_dest(listener.local_addr().unwrap()), cfg).unwrap();
    let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
    sender.send(hep3(0, 100)).await.unwrap();
    let _peer = accept.await.unwrap();
    assert_eq!(sender.unconfirmed_bytes(), None);
    sender.close().await;
}

#[tokio::test]
async fn destination_that_never_answers_connect_is_bounded() {
    // TEST-NET-1: either unroutable (fails at once) or silent (times out).
    let mut cfg = SenderConfig::default();
    cfg.connect_timeout = Duration::from_millis(200);
    let sender = HepSender::new(dest("192.0.2.1:9060; transport=tcp"), cfg).unwrap();
    let _ = sender.enqueue(hep3(0, 100));
    let deadline = Instant::now() + Duration::from_secs(2);
    while sender
        .stats()
        .snapshot()
        .dropped(SenderDropReason::ConnectFailed)
        == 0
    {
        assert!(Instant::now() < deadline, "connect not bounded");
        sleep(Duration::from_millis(10)).await;
    }
    let s = sender.stats().snapshot();
    assert_eq!(s.connect_errors, 1);
    assert_all_accounted(&s, 1);
}

#[tokio::test]
async fn receiver_restart_mid_stream() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = HepSender::new(tcp_dest(addr), SenderConfig::default()).unwrap();
    for i in 0..10 {
        sender.send(hep3(i, 200)).await.unwrap();
    }
    // The receiver reads the first 10 and closes that connection.
    let (stream, _) = listener.accept().await.unwrap();
    let mut framed = Frames::new(stream);
    for _ in 0..10 {
        framed.next().await.unwrap();
    }
    drop(framed);
    // The idle sender notices the close (it watches for EOF) and reconnects on demand.
    let deadline = Instant::now() + Duration::from_secs(2);
    let (stream, _) = loop {
        assert!(Instant::now() < deadline, "no reconnect");
        let _ = sender.enqueue(hep3(99, 200));
        if let Ok(r) = timeout(Duration::from_millis(50), listener.accept()).await {
            break r.unwrap();
        }
    };
    let mut framed = Frames::new(stream);
    let first = framed.next().await.unwrap();
    assert_eq!(first, hep3(99, 200));
    let s = sender.stats().snapshot();
    assert_eq!(s.reconnects, 1, "{s:?}");
    // The receiver closed in order while the sender was idle: it had read everything.
    assert_eq!(
        (s.broken_connections, s.unconfirmed_messages),
        (1, 0),
        "{s:?}"
    );
}

// ===== confirmed close =====

fn confirming(timeout: Duration) -> SenderConfig {
    let mut cfg = SenderConfig::default();
    cfg.close_confirm_timeout = timeout;
    cfg
}

#[tokio::test]
async fn a_receiver_that_reads_everything_confirms_the_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        count_frames(&all)
        // Dropped: closes its side in answer to the sender's.
    });
    let sender = HepSender::new(tcp_dest(addr), confirming(Duration::from_secs(5))).unwrap();
    for i in 0..20 {
        let _ = sender.enqueue(hep3(i, 300));
    }
    sender.close().await;
    assert_eq!(reader.await.unwrap(), 20);
    let s = sender.stats().snapshot();
    assert_eq!(s.sent_messages, 20, "{s:?}");
    assert_eq!(
        (s.broken_connections, s.unconfirmed_messages),
        (0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_resets_the_connection_unread_leaves_the_messages_unconfirmed() {
    // What a listener's allow= refusal does: accept, then close unread with a reset.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = HepSender::new(tcp_dest(addr), confirming(Duration::from_secs(5))).unwrap();
    for i in 0..3 {
        sender.send(hep3(i, 300)).await.unwrap();
    }
    let (stream, _) = listener.accept().await.unwrap();
    while sender.stats().snapshot().sent_messages < 3 {
        sleep(Duration::from_millis(5)).await;
    }
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    sender.close().await;
    let s = settled(&sender).await;
    assert_eq!(s.sent_messages, 3, "written, so counted sent: {s:?}");
    assert_eq!(
        (s.broken_connections, s.unconfirmed_messages),
        (1, 3),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_the_close_leaves_the_messages_unconfirmed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = HepSender::new(tcp_dest(addr), confirming(Duration::from_millis(300))).unwrap();
    for i in 0..4 {
        let _ = sender.enqueue(hep3(i, 300));
    }
    // Reads everything, our close included, and keeps its side open.
    let (stream, _) = listener.accept().await.unwrap();
    let holder = tokio::spawn(async move {
        let mut stream = stream;
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        sleep(Duration::from_secs(2)).await;
        count_frames(&all)
    });
    let started = Instant::now();
    sender.close().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "waited for the answer: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "no longer than it may: {took:?}"
    );
    let s = settled(&sender).await;
    assert_eq!(
        (s.broken_connections, s.unconfirmed_messages),
        (1, 4),
        "{s:?}"
    );
    assert_eq!(holder.await.unwrap(), 4);
}

#[tokio::test]
async fn a_udp_port_nobody_listens_on_is_seen_at_close() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = dest(&format!("127.0.0.1:{port}; transport=udp"));
    // Without the check, the one datagram is "sent" and nothing more is known.
    let sender = HepSender::new(to.clone(), SenderConfig::default()).unwrap();
    sender.send(hep3(0, 100)).await.unwrap();
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!((s.sent_messages, s.broken_connections), (1, 0), "{s:?}");
    // With it, the ICMP port unreachable comes back as ECONNREFUSED.
    let sender = HepSender::new(to, confirming(Duration::from_secs(2))).unwrap();
    sender.send(hep3(0, 100)).await.unwrap();
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!(s.sent_messages, 1, "{s:?}");
    assert_eq!(
        (s.broken_connections, s.unconfirmed_messages),
        (1, 1),
        "{s:?}"
    );
}

// ===== TLS =====

struct Pki {
    ca_pem: String,
    ca_der: Vec<u8>,
    server: (Vec<u8>, Vec<u8>),
    client_pem: (String, String),
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["agent-1".into()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        server: (server_cert.der().to_vec(), server_key.serialize_der()),
        client_pem: (client_cert.pem(), client_key.serialize_pem()),
    }
}

/// A TLS receiver; with `require_client_cert`, mTLS. Returns the frames of the first
/// connection and whether the client presented a certificate.
async fn tls_receiver(
    pki: &Pki,
    require_client_cert: bool,
    frames: usize,
) -> (SocketAddr, JoinHandle<(Vec<Bytes>, bool)>) {
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto::ring};

    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(pki.ca_der.clone())).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from(pki.server.0.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.1.clone())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let mut framed = Frames::new(tls);
        let mut got = Vec::new();
        while got.len() < frames {
            got.push(framed.next().await.unwrap());
        }
        (got, presented)
    });
    (addr, task)
}

#[tokio::test]
async fn tls_delivers_with_a_private_ca() {
    let pki = pki();
    let (addr, receiver) = tls_receiver(&pki, false, 50).await;
    let mut cfg = SenderConfig::default();
    cfg.tls = Some(
        ClientTls::builder()
            .ca_pem(pki.ca_pem.clone())
            .build()
            .unwrap(),
    );
    // The IP address is the server name: the certificate has an IP SAN for it.
    let sender = HepSender::new(
        dest(&format!("[tls] 127.0.0.1:{}; transport=tls", addr.port())),
        cfg,
    )
    .unwrap();
    let msgs: Vec<Bytes> = (0..50).map(|i| hep3(i, 700)).collect();
    for m in &msgs {
        sender.send(m.clone()).await.unwrap();
    }
    let (got, presented) = timeout(Duration::from_secs(5), receiver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, msgs);
    assert!(!presented);
    sender.close().await;
    assert_all_accounted(&sender.stats().snapshot(), 50);
}

#[tokio::test]
async fn tls_server_name_from_a_host_name() {
    // `localhost` may resolve to ::1 first: the receiver listens on 127.0.0.1 only, so
    // this also shows each resolved address being tried in turn.
    let pki = pki();
    let (addr, receiver) = tls_receiver(&pki, false, 3).await;
    let mut cfg = SenderConfig::default();
    cfg.tls = Some(
        ClientTls::builder()
            .ca_pem(pki.ca_pem.clone())
            .build()
            .unwrap(),
    );
    let sender = HepSender::new(dest(&format!("hep_tls:localhost:{}", addr.port())), cfg).unwrap();
    for i in 0..3 {
        sender.send(hep3(i, 100)).await.unwrap();
    }
    let (got, _) = timeout(Duration::from_secs(5), receiver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 3);
    sender.close().await;
}

#[tokio::test]
async fn tls_dangerous_skip_verify_connects_without_the_ca() {
    let pki = pki();
    let (addr, receiver) = tls_receiver(&pki, false, 1).await;
    let mut cfg = SenderConfig::default();
    cfg.tls = Some(
        ClientTls::builder()
            .dangerous_accept_any_server_certificate()
            .build()
            .unwrap(),
    );
    let sender = HepSender::new(dest(&format!("hep_tls:127.0.0.1:{}", addr.port())), cfg).unwrap();
    sender.send(hep3(0, 100)).await.unwrap();
    let (got, _) = timeout(Duration::from_secs(5), receiver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, [hep3(0, 100)]);
    sender.close().await;
}

#[tokio::test]
async fn mtls_presents_the_client_certificate() {
    let pki = pki();
    let (addr, receiver) = tls_receiver(&pki, true, 5).await;
    let mut cfg = SenderConfig::default();
    cfg.tls = Some(
        ClientTls::builder()
            .ca_der(pki.ca_der.clone())
            .client_cert_pem(pki.client_pem.0.clone(), pki.client_pem.1.clone())
            .server_name("localhost")
            .build()
            .unwrap(),
    );
    let sender = HepSender::new(dest(&format!("hep_tls:127.0.0.1:{}", addr.port())), cfg).unwrap();
    for i in 0..5 {
        sender.send(hep3(i, 100)).await.unwrap();
    }
    let (got, presented) = timeout(Duration::from_secs(5), receiver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 5);
    assert!(presented, "no client certificate presented");
    sender.close().await;
}

#[tokio::test]
async fn tls_with_an_unknown_ca_fails_to_connect() {
    let pki = pki();
    let other = self::pki();
    let (addr, _receiver) = tls_receiver(&pki, false, 1).await;
    let mut cfg = SenderConfig::default();
    cfg.tls = Some(ClientTls::builder().ca_pem(other.ca_pem).build().unwrap());
    let sender = HepSender::new(dest(&format!("hep_tls:127.0.0.1:{}", addr.port())), cfg).unwrap();
    let _ = sender.enqueue(hep3(0, 100));
    let deadline = Instant::now() + Duration::from_secs(2);
    while sender.stats().snapshot().connect_errors == 0 {
        assert!(Instant::now() < deadline, "handshake did not fail");
        sleep(Duration::from_millis(10)).await;
    }
    let s = sender.stats().snapshot();
    assert_eq!(s.dropped(SenderDropReason::ConnectFailed), 1, "{s:?}");
    // A TLS destination needs TLS settings.
    let e = HepSender::new(dest("hep_tls:127.0.0.1:1"), SenderConfig::default()).unwrap_err();
    assert!(e.to_string().contains("SenderConfig::tls"), "{e}");
}

// ===== stress (run with --ignored) =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress: 1,000,000 messages"]
async fn tcp_one_million_messages_in_order_without_loss() {
    const N: usize = 1_000_000;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Frames::new(stream);
        let mut n = 0;
        while let Some(f) = frames.next().await {
            // The payload starts with "MESSAGE <n> ": order check without keeping copies.
            let msg = HepMessage::decode(f).unwrap();
            let want = format!("MESSAGE {n} ");
            assert!(
                msg.payload.bytes().starts_with(want.as_bytes()),
                "frame {n}"
            );
            n += 1;
        }
        n
    });
    // Sync mode: poll_ready pushes back instead of dropping; futures need not be awaited
    // (the slot travels with the message).
    let mut cfg = SenderConfig::default();
    cfg.hep_async = false;
    cfg.hep_async_max_postponed_chunks = 1024;
    cfg.hep_send_timeout = Duration::from_secs(5);
    let mut sender = HepSender::new(tcp_dest(addr), cfg).unwrap();
    let started = Instant::now();
    for i in 0..N {
        drop(sender.ready().await.unwrap().call(hep3(i, 200)));
    }
    sender.close().await;
    let received = reader.await.unwrap();
    let s = sender.stats().snapshot();
    eprintln!("{N} messages in {:?}: {s:?}", started.elapsed());
    assert_eq!(received, N);
    assert_eq!((s.sent_messages, s.dropped_total()), (N as u64, 0));
}
