//! Source-network allowlists: datagrams and connections from other addresses are refused
//! before any work and counted; allowed agents are served alongside.
//!
//! Two loopback addresses stand for two hosts: the listener allows 127.0.0.1, and a
//! stranger sends from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to `lo`).

use std::net::SocketAddr;
use std::time::Duration;

use hep_testkit::vectors;
use hep_transport::{ListenerConfig, SourceAllowlist};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::support::{
    assert_nothing, expect_refused, recv, recv_n, start_collecting, tcp_frames, wait_for,
};

const AGENT: &str = "127.0.0.1";
const STRANGER: &str = "127.0.0.2";

fn only_the_agent() -> ListenerConfig {
    let allow: SourceAllowlist = AGENT.parse().unwrap();
    ListenerConfig::default().with_allow(Some(allow))
}

fn datagram() -> Vec<u8> {
    vectors::kamailio("v3-udp-").remove(0).1
}

async fn try_connect_from(ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(to).await
}

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    try_connect_from(ip, to).await.unwrap()
}

#[tokio::test]
async fn udp_datagrams_from_outside_the_allowlist_are_dropped_and_counted() {
    let (srv, mut rx) = start_collecting("hep_udp:127.0.0.1:0", only_the_agent()).await;
    let stranger = UdpSocket::bind(format!("{STRANGER}:0")).await.unwrap();
    let agent = UdpSocket::bind(format!("{AGENT}:0")).await.unwrap();
    let d = datagram();
    for _ in 0..20 {
        stranger.send_to(&d, srv.addr).await.unwrap();
    }
    for _ in 0..5 {
        agent.send_to(&d, srv.addr).await.unwrap();
    }
    let got = recv_n(&mut rx, 5).await;
    assert!(
        got.iter()
            .all(|m| m.info.peer == agent.local_addr().unwrap())
    );
    wait_for("20 refused datagrams", || {
        srv.stats.rejected_by("source_not_allowed") == 20
    })
    .await;
    assert_nothing(&mut rx, Duration::from_millis(50)).await;
    let snap = srv.stats.snapshot();
    assert_eq!(
        snap.received_total(),
        5,
        "the stranger's were never decoded"
    );
    assert_eq!(snap.rejected_total(), 20);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn tcp_connections_from_outside_the_allowlist_are_closed_at_accept() {
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", only_the_agent()).await;
    let frames = tcp_frames();

    expect_refused(try_connect_from(STRANGER, srv.addr).await, &frames[0]).await;
    wait_for("the refusal", || {
        srv.stats.rejected_by("source_not_allowed") == 1
    })
    .await;

    let mut agent = connect_from(AGENT, srv.addr).await;
    agent.write_all(&frames[0]).await.unwrap();
    let got = recv(&mut rx).await;
    assert_eq!(got.info.peer, agent.local_addr().unwrap());
    assert_nothing(&mut rx, Duration::from_millis(50)).await;

    let snap = srv.stats.snapshot();
    assert_eq!(snap.received_total(), 1);
    assert_eq!(
        snap.connections_accepted(),
        1,
        "the refused connection is not served"
    );
    drop(agent);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn an_allowlist_of_networks_lets_every_address_in_them_through() {
    let allow: SourceAllowlist = "10.0.0.0/8,127.0.0.0/30".parse().unwrap();
    let (srv, mut rx) = start_collecting(
        "hep_udp:127.0.0.1:0",
        ListenerConfig::default().with_allow(Some(allow)),
    )
    .await;
    let d = datagram();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let s = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        s.send_to(&d, srv.addr).await.unwrap();
    }
    let outside = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    outside.send_to(&d, srv.addr).await.unwrap();
    recv_n(&mut rx, 3).await;
    wait_for("the refusal", || {
        srv.stats.rejected_by("source_not_allowed") == 1
    })
    .await;
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn strangers_are_refused_before_the_connection_limit_is_counted() {
    let mut config = only_the_agent();
    config.tcp.max_connections = 1;
    let (srv, mut rx) = start_collecting("hep_tcp:127.0.0.1:0", config).await;
    // The agent holds the only slot.
    let mut agent = connect_from(AGENT, srv.addr).await;
    agent.write_all(&tcp_frames()[0]).await.unwrap();
    recv(&mut rx).await;
    // Strangers are refused as strangers, not as one connection too many.
    for _ in 0..5 {
        expect_refused(try_connect_from(STRANGER, srv.addr).await, b"").await;
    }
    wait_for("five refusals", || {
        srv.stats.rejected_by("source_not_allowed") == 5
    })
    .await;
    assert_eq!(srv.stats.rejected_by("max_connections"), 0);
    // A second agent finds the slot taken.
    expect_refused(try_connect_from(AGENT, srv.addr).await, b"").await;
    wait_for("the limit", || {
        srv.stats.rejected_by("max_connections") == 1
    })
    .await;
    drop(agent);
    srv.stop().await.unwrap();
}
