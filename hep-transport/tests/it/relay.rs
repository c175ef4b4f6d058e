//! The relay example (`examples/relay.rs`), run end to end on loopback: an agent's
//! datagrams reach a collector over TCP through it, byte for byte and in order.

use hep_transport::{HepDestination, HepSender, Listener, ListenerConfig, SenderConfig};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::support::{bounded, recv_n, start_collecting, tcp_frames};

// The example's own code, not a copy of it.
#[allow(dead_code, reason = "the example's `main` is not run here")]
#[path = "../../examples/relay.rs"]
mod example;

#[tokio::test]
async fn the_relay_example_forwards_every_message_unchanged_and_in_order() {
    let (collector, mut rx) =
        start_collecting("hep_tcp:127.0.0.1:0", ListenerConfig::default()).await;
    let listener = Listener::bind(
        "hep_udp:127.0.0.1:0".parse().unwrap(),
        ListenerConfig::default(),
    )
    .await
    .unwrap();
    let relay_addr = listener.local_addr();
    let sender =
        HepSender::new(HepDestination::tcp(collector.addr), SenderConfig::default()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(example::relay(listener, sender.clone(), async {
        let _ = stopped.await;
    }));

    let frames = tcp_frames();
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for frame in &frames {
        agent.send_to(frame, relay_addr).await.unwrap();
    }
    let got = recv_n(&mut rx, frames.len()).await;
    for (i, (msg, frame)) in got.iter().zip(&frames).enumerate() {
        assert_eq!(
            &msg.wire[..],
            &frame[..],
            "message {i} arrives as it was sent"
        );
    }

    let _ = stop.send(());
    bounded("the relay stops", relay).await.unwrap().unwrap();
    sender.close().await;
    let s = sender.stats().snapshot();
    assert_eq!(s.sent_messages, frames.len() as u64, "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    collector.stop().await.unwrap();
}
