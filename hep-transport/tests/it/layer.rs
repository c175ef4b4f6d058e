//! The overload layer in front of a UDP listener.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hep_testkit::vectors;
use hep_transport::layer::overload::OverloadDropLayer;
use hep_transport::{Listener, ListenerConfig, ListenerDropReason, Received};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

use crate::support::{Running, collector, recv_n, wait_for};

#[tokio::test]
async fn datagrams_the_service_cannot_take_are_dropped_and_counted_and_the_listener_goes_on() {
    let listener = Listener::bind(
        "hep_udp:127.0.0.1:0".parse().unwrap(),
        ListenerConfig::default(),
    )
    .await
    .unwrap();
    let stats = listener.stats().clone();
    let gate = Arc::new(Semaphore::new(0));
    let (inner, mut rx) = collector();
    let service = ServiceBuilder::new()
        .layer(OverloadDropLayer::new(stats.clone()))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .service(tower::limit::ConcurrencyLimit::with_semaphore(
            inner,
            gate.clone(),
        ));
    let addr = listener.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listener.run(service, async {
        let _ = stopped.await;
    }));

    let datagram = vectors::read("kamailio/v3-udp-0001.hep");
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..50 {
        client.send_to(&datagram, addr).await.unwrap();
    }
    wait_for("50 overload drops", || {
        stats.dropped(ListenerDropReason::Overload) == 50
    })
    .await;
    assert_eq!(stats.received_total(), 50);
    assert!(rx.try_recv().is_err());

    // Ready again: the listener did not stop.
    gate.add_permits(1000);
    client.send_to(&datagram, addr).await.unwrap();
    let got = recv_n(&mut rx, 1).await;
    assert_eq!(&got[0].wire[..], &datagram[..]);
    assert_eq!(stats.dropped(ListenerDropReason::Overload), 50);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_slow_buffered_service_is_pipelined_and_in_flight_overflow_is_counted() {
    // A service that answers only after its worker got to it: every answer is pending
    // when the listener first polls it, so the listener pipelines.
    let handled = Arc::new(AtomicUsize::new(0));
    let slow = tower::service_fn({
        let handled = handled.clone();
        move |_: Received| {
            let handled = handled.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                handled.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(())
            }
        }
    });
    let mut config = ListenerConfig::default();
    config.udp.max_in_flight = 8;
    let listener = Listener::bind("hep_udp:127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let stats = listener.stats().clone();
    let service = ServiceBuilder::new()
        .layer(OverloadDropLayer::new(stats.clone()))
        .buffer(4)
        .service(slow);
    let srv = Running::from_listener(listener, service);

    let datagram = vectors::read("kamailio/v3-udp-0001.hep");
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..200 {
        client.send_to(&datagram, srv.addr).await.unwrap();
    }
    wait_for("every datagram received", || stats.received_total() == 200).await;
    wait_for("every datagram handled or dropped", || {
        handled.load(Ordering::Relaxed) as u64 + stats.dropped_total() == 200
    })
    .await;
    // Most of the burst could not be taken: each one is counted, none is lost silently.
    assert!(stats.dropped(ListenerDropReason::Overload) > 0);
    assert!(handled.load(Ordering::Relaxed) >= 4);
    srv.stop().await.unwrap();
}

/// A service that is ready when it has reserved room in a bounded tokio channel, as
/// hep-server's outputs are: `reserve` is subject to tokio's cooperative budget.
#[derive(Clone)]
struct ChannelService(tokio_util::sync::PollSender<Received>);

impl tower::Service<Received> for ChannelService {
    type Response = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(), Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_reserve(cx).map(|_| Ok(()))
    }

    fn call(&mut self, req: Received) -> Self::Future {
        let _ = self.0.send_item(req);
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn a_burst_into_a_channel_with_room_is_not_dropped_as_overload() {
    // Regression: past tokio's cooperative budget (128 operations per task poll) a
    // channel's `reserve` answers Pending to make the task yield; the datagram worker
    // took that for "not ready" and dropped the rest of the batch as overload.
    const BURST: usize = 1000;
    let listener = Listener::bind(
        "hep_udp:127.0.0.1:0".parse().unwrap(),
        ListenerConfig::default(),
    )
    .await
    .unwrap();
    let stats = listener.stats().clone();
    let datagram = vectors::read("kamailio/v3-udp-0001.hep");
    // Sent with UDP GSO (as `hep-server send` does) and queued in the socket before the
    // listener runs: with GRO, one receive batch holds hundreds of datagrams.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let state = quinn_udp::UdpSocketState::new((&client).into()).unwrap();
    let per_send = state.max_gso_segments().min(50);
    let mut sent = 0;
    while sent < BURST {
        let n = per_send.min(BURST - sent);
        let contents = datagram.repeat(n);
        let transmit = quinn_udp::Transmit {
            destination: listener.local_addr(),
            ecn: None,
            contents: &contents,
            segment_size: (n > 1).then_some(datagram.len()),
            src_ip: None,
        };
        state.try_send((&client).into(), &transmit).unwrap();
        sent += n;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(BURST * 2);
    let service = ServiceBuilder::new()
        .layer(OverloadDropLayer::new(stats.clone()))
        .service(ChannelService(tokio_util::sync::PollSender::new(tx)));
    let srv = Running::from_listener(listener, service);
    let mut got = 0;
    while got < BURST {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("every datagram arrives")
            .expect("the channel is open");
        got += 1;
    }
    assert_eq!(stats.dropped(ListenerDropReason::Overload), 0);
    srv.stop().await.unwrap();
}
