//! `hep_tcp`: framing, limits, timeouts, connection limit, backpressure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hep_testkit::hex;
use hep_transport::{ListenerConfig, RecvInfo, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimit;

use crate::support::{
    Running, assert_nothing, collector, connect, expect_closed, expect_refused, recv, recv_n,
    start_collecting, tcp_frames, tcp_stream, wait_for, write_in_pieces,
};

fn config() -> ListenerConfig {
    ListenerConfig::default()
}

#[tokio::test]
async fn the_kamailio_stream_one_byte_per_write_arrives_complete_and_in_order() {
    let stream = tcp_stream();
    let frames = tcp_frames();
    let mut cfg = config();
    // Within the limit: no frame can take more reads than it has bytes.
    cfg.tcp.max_msg_chunks = 4096;
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", cfg).await;
    let mut client = connect(srv.addr).await;
    for byte in &stream {
        client.write_all(std::slice::from_ref(byte)).await.unwrap();
    }
    let got = recv_n(&mut rx, frames.len()).await;
    let info = RecvInfo::new(Transport::Tcp, client.local_addr().unwrap(), srv.addr);
    for (msg, frame) in got.iter().zip(&frames) {
        assert_eq!(&msg.wire[..], &frame[..], "in order, unchanged");
        assert_eq!(msg.info, info);
        assert_eq!(msg.message, crate::support::decode(frame).unwrap());
    }
    assert_eq!(srv.stats.received_total(), frames.len() as u64);
    assert_eq!(srv.stats.rejected_total(), 0);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn frames_coalesced_in_one_write_all_arrive() {
    let (srv, mut rx) = start_collecting("hep_tcp:[::1]:0", config()).await;
    let mut client = connect(srv.addr).await;
    client.write_all(&tcp_stream()).await.unwrap();
    let got = recv_n(&mut rx, 12).await;
    for (msg, frame) in got.iter().zip(tcp_frames()) {
        assert_eq!(&msg.wire[..], &frame[..]);
    }
    assert!(got[0].info.peer.is_ipv6());
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_frame_taking_more_reads_than_max_msg_chunks_closes_the_connection() {
    let frame = &tcp_frames()[0];
    let mut cfg = config();
    cfg.tcp.max_msg_chunks = 4;
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", cfg).await;

    // Three reads (two incomplete): within the limit.
    let mut ok = connect(srv.addr).await;
    write_in_pieces(&mut ok, frame, 3, Duration::from_millis(30)).await;
    assert_eq!(&recv(&mut rx).await.wire[..], &frame[..]);

    // Ten bytes per write, paused: the fourth read that leaves the frame incomplete
    // closes the connection (a loaded machine may merge a few pieces; there are plenty).
    let mut slow = connect(srv.addr).await;
    let stats = srv.stats.clone();
    for piece in frame.chunks(10) {
        if slow.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
        if stats.rejected_by("max_msg_chunks") == 1 {
            break;
        }
    }
    expect_closed(&mut slow).await;
    assert_eq!(stats.rejected_by("max_msg_chunks"), 1);
    assert_nothing(&mut rx, Duration::from_millis(50)).await;
    srv.stop().await.unwrap();
}

/// Sends `bytes` on a new connection and expects it closed with `reason` counted, and
/// nothing delivered.
async fn expect_rejected(srv: &Running, bytes: &[u8], reason: &str) {
    let before = srv.stats.rejected_by(reason);
    let mut client = connect(srv.addr).await;
    client.write_all(bytes).await.unwrap();
    expect_closed(&mut client).await;
    let stats = srv.stats.clone();
    wait_for(reason, || stats.rejected_by(reason) == before + 1).await;
}

#[tokio::test]
async fn impossible_lengths_and_garbage_close_the_connection_with_a_reason() {
    let mut cfg = config();
    cfg.tcp.max_frame_length = 1000;
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", cfg).await;
    expect_rejected(&srv, b"HEP3\x00\x00", "total_length_too_small").await;
    expect_rejected(&srv, b"HEP3\x00\x05", "total_length_too_small").await;
    expect_rejected(&srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_magic").await;
    expect_rejected(&srv, b"HEP3\x07\xd0", "frame_too_long").await;
    // A good frame, then garbage: the frame is delivered, then the connection closes.
    let mut bytes = tcp_frames()[0].clone();
    bytes.extend_from_slice(b"\x00\x01garbage");
    expect_rejected(&srv, &bytes, "bad_magic").await;
    assert_eq!(&recv(&mut rx).await.wire[..], &tcp_frames()[0][..]);
    assert_nothing(&mut rx, Duration::from_millis(20)).await;
    let stats = srv.stats.clone();
    wait_for("every connection closed", || stats.connections_open() == 0).await;
    assert_eq!(stats.connections_accepted(), 5);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_frame_with_bad_chunks_is_skipped_and_the_connection_goes_on() {
    let frames = tcp_frames();
    // Sound framing (25 bytes), but the family chunk is 8 bytes long (must be 7).
    let bad = hex("48455033 0019 0000 0001 0008 0200 0000 000f 000b 68656c6c6f");
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", config()).await;
    let mut client = connect(srv.addr).await;
    let mut bytes = frames[0].clone();
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(&frames[1]);
    client.write_all(&bytes).await.unwrap();
    assert_eq!(&recv(&mut rx).await.wire[..], &frames[0][..]);
    assert_eq!(&recv(&mut rx).await.wire[..], &frames[1][..]);
    assert_eq!(srv.stats.rejected_by("bad_chunk_size"), 1);
    // Still open: a later frame on the same connection arrives too.
    client.write_all(&frames[2]).await.unwrap();
    let msg = recv(&mut rx).await;
    assert_eq!(&msg.wire[..], &frames[2][..]);
    assert_eq!(msg.info.peer, client.local_addr().unwrap());
    assert_eq!(srv.stats.connections_open(), 1);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn idle_and_stalled_connections_time_out() {
    let mut cfg = config();
    cfg.tcp.idle_timeout = Duration::from_millis(200);
    cfg.tcp.frame_timeout = Duration::from_millis(100);
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", cfg).await;

    // Idle after a frame.
    let mut idle = connect(srv.addr).await;
    idle.write_all(&tcp_frames()[0]).await.unwrap();
    recv(&mut rx).await;
    expect_closed(&mut idle).await;
    assert_eq!(srv.stats.rejected_by("idle_timeout"), 1);

    // Stopped in the middle of a frame: the frame timeout, shorter, closes it.
    let mut stalled = connect(srv.addr).await;
    stalled.write_all(&tcp_frames()[0][..100]).await.unwrap();
    expect_closed(&mut stalled).await;
    assert_eq!(srv.stats.rejected_by("frame_timeout"), 1);
    assert_eq!(srv.stats.rejected_by("idle_timeout"), 1);
    assert_nothing(&mut rx, Duration::from_millis(20)).await;
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_leaves_mid_frame_is_counted_as_truncated() {
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", config()).await;
    let frame = &tcp_frames()[0];

    // Closes (FIN) mid-frame.
    let mut closes = connect(srv.addr).await;
    closes.write_all(&frame[..50]).await.unwrap();
    drop(closes);
    let stats = srv.stats.clone();
    wait_for("truncated (FIN)", || stats.rejected_by("truncated") == 1).await;

    // Resets (RST, SO_LINGER 0) mid-frame.
    let resets = connect(srv.addr).await;
    let mut resets = {
        let std = resets.into_std().unwrap();
        socket2::SockRef::from(&std)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        TcpStream::from_std(std).unwrap()
    };
    resets.write_all(&frame[..50]).await.unwrap();
    wait_for("the server read the half frame", || stats.bytes() >= 100).await;
    drop(resets);
    wait_for("truncated (RST)", || stats.rejected_by("truncated") == 2).await;
    wait_for("both closed", || stats.connections_open() == 0).await;
    assert_nothing(&mut rx, Duration::from_millis(20)).await;
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_beyond_the_limit_is_refused_and_counted_and_a_free_slot_serves_the_next() {
    let frame = &tcp_frames()[0];
    let mut cfg = config();
    cfg.tcp.max_connections = 2;
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", cfg).await;

    let mut a = connect(srv.addr).await;
    a.write_all(frame).await.unwrap();
    assert_eq!(recv(&mut rx).await.info.peer, a.local_addr().unwrap());
    let mut b = connect(srv.addr).await;
    b.write_all(frame).await.unwrap();
    assert_eq!(recv(&mut rx).await.info.peer, b.local_addr().unwrap());

    // The third is reset at accept, before its frame is read: refused, not held.
    expect_refused(TcpStream::connect(srv.addr).await, frame).await;
    assert_nothing(&mut rx, Duration::from_millis(100)).await;
    assert_eq!(srv.stats.rejected_by("max_connections"), 1);
    assert_eq!(srv.stats.connections_open(), 2);
    assert_eq!(srv.stats.connections_accepted(), 2);

    // A slot frees: the next peer is served.
    drop(a);
    wait_for("a free slot", || srv.stats.connections_open() == 1).await;
    let mut d = connect(srv.addr).await;
    d.write_all(frame).await.unwrap();
    let msg = recv(&mut rx).await;
    assert_eq!(msg.info.peer, d.local_addr().unwrap());
    assert_eq!(&msg.wire[..], &frame[..]);
    assert_eq!(srv.stats.connections_accepted(), 3);
    drop((b, d));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_that_is_not_ready_stops_the_reader_and_nothing_is_lost() {
    let frames = tcp_frames();
    // Enough bytes to fill the kernel's buffers on both sides many times over.
    const TOTAL: usize = 16 << 20;
    let mut stream = Vec::with_capacity(TOTAL + 1024);
    let mut count = 0;
    while stream.len() < TOTAL {
        stream.extend_from_slice(&frames[count % frames.len()]);
        count += 1;
    }

    let gate = Arc::new(Semaphore::new(0));
    let (inner, mut rx) = collector();
    let svc = ConcurrencyLimit::with_semaphore(inner, gate.clone());
    let srv = Running::start("hep_tcp:127.0.0.1:0", config(), svc).await;

    let client = connect(srv.addr).await;
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (written, done) = (written.clone(), done.clone());
        async move {
            let mut client = client;
            for chunk in stream.chunks(64 * 1024) {
                client.write_all(chunk).await.unwrap();
                written.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            done.store(true, Ordering::Relaxed);
            client
        }
    });

    // The service is closed: the reader stops, the buffers fill, the writer blocks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled_at = written.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!done.load(Ordering::Relaxed), "the sender is pushed back");
    assert_eq!(
        written.load(Ordering::Relaxed),
        stalled_at,
        "the sender is blocked"
    );
    assert!(stalled_at < TOTAL);
    assert!(rx.try_recv().is_err(), "nothing delivered while not ready");

    // Open: everything arrives, in order.
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    let got = recv_n(&mut rx, count).await;
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(&msg.wire[..], &frames[i % frames.len()][..], "message {i}");
    }
    let _client = crate::support::bounded("the writer finishes", writer)
        .await
        .unwrap();
    assert_eq!(srv.stats.received_total(), count as u64);
    assert_eq!(srv.stats.dropped_total(), 0);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn answers_that_come_later_keep_the_order_and_do_not_deadlock_a_concurrency_limit() {
    let frames = tcp_frames();
    let mut stream = Vec::new();
    for _ in 0..5 {
        stream.extend(frames.iter().flatten());
    }
    let n = frames.len() * 5;

    // 1. A buffered service: its answers are pending when first polled (pipelined).
    let (inner, mut rx) = collector();
    let buffered = tower::ServiceBuilder::new().buffer(16).service(inner);
    let srv = Running::start("hep_tcp:127.0.0.1:0", config(), buffered).await;
    connect(srv.addr).await.write_all(&stream).await.unwrap();
    let got = recv_n(&mut rx, n).await;
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(
            &msg.wire[..],
            &frames[i % frames.len()][..],
            "buffered: message {i}"
        );
    }
    srv.stop().await.unwrap();

    // 2. A service that works in its future, taking longer for some messages, behind a
    //    concurrency limit of 1: one at a time, in order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let lazy = tower::service_fn(move |msg: hep_transport::Received| {
        let tx = tx.clone();
        async move {
            if msg.wire.len().is_multiple_of(3) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tx.send(msg).map_err(|_| "gone")
        }
    });
    let limited = tower::ServiceBuilder::new()
        .concurrency_limit(1)
        .service(lazy);
    let srv = Running::start("hep_tcp:127.0.0.1:0", config(), limited).await;
    connect(srv.addr).await.write_all(&stream).await.unwrap();
    let got = recv_n(&mut rx, n).await;
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(
            &msg.wire[..],
            &frames[i % frames.len()][..],
            "lazy: message {i}"
        );
    }
    assert_eq!(srv.stats.dropped_total(), 0);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn service_errors_are_counted_and_the_connection_goes_on() {
    let frames = tcp_frames();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Fails every other message.
    let flaky = tower::service_fn(move |msg: hep_transport::Received| {
        let res = if msg.message.payload.bytes().len().is_multiple_of(2) {
            tx.send(msg).map_err(|_| "gone")
        } else {
            Err("refused")
        };
        std::future::ready(res)
    });
    let srv = Running::start("hep_tcp:127.0.0.1:0", config(), flaky).await;
    let mut client = connect(srv.addr).await;
    client.write_all(&tcp_stream()).await.unwrap();
    let failing = frames
        .iter()
        .filter(|f| crate::support::decode(f).unwrap().payload.bytes().len() % 2 == 1)
        .count() as u64;
    assert!(failing > 0 && failing < frames.len() as u64);
    let got = recv_n(&mut rx, frames.len() - failing as usize).await;
    assert!(!got.is_empty());
    let stats = srv.stats.clone();
    wait_for("service errors counted", || {
        stats.dropped(hep_transport::ListenerDropReason::ServiceError) == failing
    })
    .await;
    assert_eq!(stats.received_total(), frames.len() as u64);
    assert_eq!(stats.connections_open(), 1);
    srv.stop().await.unwrap();
}
