//! Shutdown: current frames finish, then the listener stops; a stuck service is cut off
//! after the grace period, counted.

use std::time::Duration;

use hep_transport::{DropReason, ListenerConfig, Received};
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
    assert_eq!(stats.dropped(DropReason::Shutdown), 1);
    assert_eq!(stats.connections_open(), 0);
}
