//! `hep_udp`: versions, families, bad datagrams, several sockets.

use std::collections::HashMap;
use std::time::Duration;

use hep_proto::HepVersion;
use hep_testkit::{hex, vectors};
use hep_transport::{ListenerConfig, RecvInfo, Transport};
use tokio::net::UdpSocket;

use crate::support::{decode, recv_n, start_collecting, wait_for};

/// Every Kamailio UDP vector: HEPv1, v2 and v3, IPv4 and IPv6 inner addresses.
fn udp_vectors() -> Vec<Vec<u8>> {
    [
        "v1-udp-",
        "v2-udp-",
        "v2-udp-ipv6-",
        "v3-udp-",
        "v3-udp-ipv6-",
        "v3-udp-hlog-authkey-",
    ]
    .into_iter()
    .flat_map(vectors::kamailio)
    .map(|(_, bytes)| bytes)
    .collect()
}

#[tokio::test]
async fn mixed_versions_arrive_with_their_recv_info_on_ipv4_and_ipv6() {
    let sent = udp_vectors();
    let count = |v: u8| sent.iter().filter(|d| version_of(d) == v).count() as u64;
    for (spec, client_addr) in [
        ("hep_udp:127.0.0.1:0", "127.0.0.1:0"),
        ("hep_udp:[::1]:0", "[::1]:0"),
    ] {
        let (srv, mut rx) = start_collecting(spec, ListenerConfig::default()).await;
        let client = UdpSocket::bind(client_addr).await.unwrap();
        for datagram in &sent {
            client.send_to(datagram, srv.addr).await.unwrap();
        }
        let got = recv_n(&mut rx, sent.len()).await;

        let expected_info = RecvInfo::new(Transport::Udp, client.local_addr().unwrap(), srv.addr);
        for msg in &got {
            assert_eq!(msg.info, expected_info, "{spec}");
            assert!(!msg.modified);
            assert_eq!(
                msg.message,
                decode(&msg.wire).unwrap(),
                "{spec}: decoded as the vector"
            );
        }
        let mut got_wire: Vec<&[u8]> = got.iter().map(|m| &m.wire[..]).collect();
        let mut sent_wire: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
        got_wire.sort();
        sent_wire.sort();
        assert_eq!(got_wire, sent_wire, "{spec}: every datagram, unchanged");

        let snap = srv.stats.snapshot();
        assert_eq!(snap.received_by(HepVersion::V1), count(1), "{spec}");
        assert_eq!(snap.received_by(HepVersion::V2), count(2), "{spec}");
        assert_eq!(snap.received_by(HepVersion::V3), count(3), "{spec}");
        assert_eq!(
            snap.bytes(),
            sent.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        assert_eq!(snap.rejected_total(), 0);
        srv.stop().await.unwrap();
    }
}

fn version_of(datagram: &[u8]) -> u8 {
    match datagram[0] {
        1 | 2 => datagram[0],
        _ => 3,
    }
}

/// Malformed datagrams of many kinds (each must be rejected by the decoder).
fn bad_datagrams() -> Vec<Vec<u8>> {
    let v3 = vectors::read("kamailio/v3-udp-0001.hep");
    let mut bad_family_v2 = vectors::read("kamailio/v2-udp-0001.hep");
    bad_family_v2[2] = 99;
    vec![
        b"GARBAGE, NOT HEP AT ALL".to_vec(),
        Vec::new(),
        b"HEP3\x00\x00".to_vec(),
        b"HEP3\x00".to_vec(),
        v3[..100].to_vec(),
        bad_family_v2,
        // A chunk whose length is below its own header.
        hex("48455033 000e 0000 0001 0003 02 00"),
        // No payload chunk.
        hex("48455033 000d 0000 0001 0007 02"),
        // Family chunk of 8 bytes (must be 7), then a payload chunk.
        hex("48455033 0019 0000 0001 0008 0200 0000 000f 000b 68656c6c6f"),
    ]
}

#[tokio::test]
async fn a_flood_of_bad_datagrams_loses_no_good_one_and_counts_every_bad_one() {
    let good = udp_vectors();
    let bad = bad_datagrams();
    let mut expected_rejects: HashMap<&'static str, u64> = HashMap::new();
    const ROUNDS: usize = 1500;
    for i in 0..ROUNDS {
        let label = decode(&bad[i % bad.len()])
            .expect_err("a bad datagram")
            .label();
        *expected_rejects.entry(label).or_default() += 1;
    }
    assert!(
        expected_rejects.len() >= 7,
        "many kinds of bad: {expected_rejects:?}"
    );

    let (srv, mut rx) = start_collecting("hep_udp:127.0.0.1:0", ListenerConfig::default()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..ROUNDS {
        client.send_to(&bad[i % bad.len()], srv.addr).await.unwrap();
        client
            .send_to(&good[i % good.len()], srv.addr)
            .await
            .unwrap();
        // A moderate rate: about 30,000 datagrams/s.
        if i % 32 == 31 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let got = recv_n(&mut rx, ROUNDS).await;
    for (i, msg) in got.iter().enumerate() {
        assert_eq!(
            &msg.wire[..],
            &good[i % good.len()][..],
            "message {i}, in order"
        );
    }
    let stats = srv.stats.clone();
    wait_for("every bad datagram counted", || {
        stats.rejected_total() == ROUNDS as u64
    })
    .await;
    let snap = stats.snapshot();
    for (label, n) in &expected_rejects {
        assert_eq!(snap.rejected_by(label), *n, "rejected{{reason={label}}}");
    }
    assert_eq!(snap.received_total(), ROUNDS as u64);
    assert_eq!(snap.dropped_total(), 0);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn several_reuseport_sockets_share_one_port() {
    let mut config = ListenerConfig::default();
    config.udp.sockets = 2;
    let (srv, mut rx) = start_collecting("hep_udp:127.0.0.1:0", config).await;
    let datagram = vectors::read("kamailio/v3-udp-0001.hep");
    // Several senders, so that the kernel's hash spreads them over both sockets.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for _ in 0..10 {
            c.send_to(&datagram, srv.addr).await.unwrap();
        }
        clients.push(c.local_addr().unwrap());
    }
    let got = recv_n(&mut rx, 80).await;
    for c in clients {
        assert_eq!(
            got.iter().filter(|m| m.info.peer == c).count(),
            10,
            "from {c}"
        );
    }
    assert!(got.iter().all(|m| m.info.listener == srv.addr));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_granted_receive_buffer_is_reported() {
    let mut config = ListenerConfig::default();
    config.udp.recv_buffer_size = 1 << 20;
    let udp = hep_transport::Listener::bind("hep_udp:127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let granted = udp.recv_buffer_size().expect("UDP reports SO_RCVBUF");
    // Linux reports twice what it grants, capped by net.core.rmem_max.
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        granted >= (1 << 20).min(rmem_max),
        "granted {granted}, rmem_max {rmem_max}"
    );
    assert_eq!(udp.spec().transport, Transport::Udp);
    assert_eq!(udp.spec().addr, udp.local_addr());
    let tcp = hep_transport::Listener::bind(
        "hep_tcp:127.0.0.1:0".parse().unwrap(),
        ListenerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(tcp.recv_buffer_size(), None);
}

#[tokio::test]
async fn a_privileged_listener_gets_its_receive_buffer_above_rmem_max() {
    // Ask for twice net.core.rmem_max. Without CAP_NET_ADMIN Linux caps the buffer at
    // rmem_max (reported doubled); with it (root), SO_RCVBUFFORCE grants the request.
    let Some(rmem_max) = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return; // not Linux
    };
    let mut config = ListenerConfig::default();
    config.udp.recv_buffer_size = rmem_max * 2;
    let udp = hep_transport::Listener::bind("hep_udp:127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let granted = udp.recv_buffer_size().expect("UDP reports SO_RCVBUF");
    let privileged = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0); // CAP_NET_ADMIN
    if privileged {
        assert_eq!(
            granted,
            rmem_max * 4,
            "SO_RCVBUFFORCE: the request, doubled"
        );
    } else {
        assert_eq!(granted, rmem_max * 2, "capped at rmem_max, doubled");
    }
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error_that_names_the_spec() {
    for transport in ["hep_udp", "hep_tcp"] {
        let first = hep_transport::Listener::bind(
            format!("{transport}:127.0.0.1:0").parse().unwrap(),
            ListenerConfig::default(),
        )
        .await
        .unwrap();
        let spec = first.spec().to_string();
        let err = hep_transport::Listener::bind(spec.parse().unwrap(), ListenerConfig::default())
            .await
            .expect_err("the port is taken");
        assert!(
            matches!(err, hep_transport::ListenError::Bind { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on {spec}: bind failed")),
            "{text}"
        );
    }
}
