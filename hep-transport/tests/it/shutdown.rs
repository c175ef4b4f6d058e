//! Shutdown: current frames finish, then the listener stops; a stuck service is cut off
//! after the grace period, counted.

use std::time::Duration;

use hep_transport::{ListenerConfig, ListenerDropReason, Received};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{Running, connect, recv, start_collecting, tcp_frames, wait_for};

#[tokio::test]
async fn shutdown_lets_a_connection_finish_its_frame_then_stops_accepting() {
    let frame = &tcp_frames()[0];
    let (mut srv, mut rx) =
        start_collecting("hep_tcp:127.0.0.1:0", ListenerConfig::default()).await;
    let mut client = connect(srv.addr).await;
    client.write_all(&frame[..100]).await.unwrap();
    let stats = srv.stats.clone();
    wait_for("the half frame read", || stats.bytes() == 100).await;

    srv.signal_stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(&frame[100..]).await.unwrap();
    assert_eq!(&recv(&mut rx).await.wire[..], &frame[..]);
    let addr = srv.addr;
    srv.stop().await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_stuck_service_is_cut_off_after_the_grace_period_and_counted() {
    let stuck = tower::service_fn(|_: Received| {
        std::future::pending::<Result<(), std::convert::Infallible>>()
    });
    let mut config = ListenerConfig::default();
    config.shutdown_grace = Duration::from_millis(100);
    let srv = Running::start("hep_tcp:127.0.0.1:0", config, stuck).await;
    let mut client = connect(srv.addr).await;
    client.write_all(&tcp_frames()[0]).await.unwrap();
    let stats = srv.stats.clone();
    wait_for("the frame received", || stats.received_total() == 1).await;

    srv.stop().await.unwrap();
    assert_eq!(stats.dropped(ListenerDropReason::Shutdown), 1);
    assert_eq!(stats.connections_open(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_sending_does_not_hold_shutdown_open() {
    let frames = tcp_frames();
    let mut config = ListenerConfig::default();
    config.shutdown_grace = Duration::from_secs(10);
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", config).await;
    let client = connect(srv.addr).await;
    // An agent streaming without pause, every write ending in the middle of a frame
    // (the tail of one frame and the head of the next), so the reader never sees a
    // frame boundary at the end of a read.
    let (read_half, mut write_half) = client.into_split();
    let agent = tokio::spawn(async move {
        let half = |f: &Vec<u8>| f.len() / 2;
        write_half
            .write_all(&frames[0][..half(&frames[0])])
            .await
            .unwrap();
        // Paced, so that every read ends where a write ended: mid-frame.
        for i in 0..20_000usize {
            let (this, next) = (&frames[i % frames.len()], &frames[(i + 1) % frames.len()]);
            let mut piece = this[half(this)..].to_vec();
            piece.extend_from_slice(&next[..half(next)]);
            if write_half.write_all(&piece).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let stats = srv.stats.clone();
    wait_for("frames flowing", || stats.received_total() > 20).await;

    let started = tokio::time::Instant::now();
    srv.stop().await.unwrap();
    // The connection read only the rest of the frame it was in, then closed: it did not
    // keep reading the agent's stream until the 10 s grace period ran out.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    // Every message handed on is a whole frame.
    while let Ok(r) = rx.try_recv() {
        assert_eq!(&r.wire[..4], b"HEP3");
        assert_eq!(
            usize::from(u16::from_be_bytes([r.wire[4], r.wire[5]])),
            r.wire.len()
        );
    }
    assert_eq!(stats.dropped(ListenerDropReason::Shutdown), 0);
    drop(read_half);
    agent.abort();
}
