//! The callback API, specified by example.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hep_callbacks::{
    AsyncCallbackLayer, AuthKeyCheck, CallbackChainLayer, CallbackLayer, Dedup, Filter,
    HepCallback, RateLimit, Rewrite, StripAuthKey, Verdict,
};
use hep_proto::{HepMessage, ProtoType};
use hep_proto::{Received, RecvInfo, Transport};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn received(payload: &str) -> Received {
    received_from(payload, "127.0.0.1:40000")
}

fn received_from(payload: &str, peer: &str) -> Received {
    let msg = HepMessage::builder()
        .src("10.1.1.1:5060".parse().unwrap())
        .dst("10.1.1.2:5060".parse().unwrap())
        .proto_type(ProtoType::Sip)
        .capture_id(2001)
        .payload(payload.to_owned())
        .build();
    let info = RecvInfo::new(
        Transport::Udp,
        peer.parse().unwrap(),
        "127.0.0.1:9060".parse().unwrap(),
    );
    Received::new(msg, Bytes::new(), info)
}

/// A terminal service that records what reaches it.
fn sink() -> (
    Arc<Mutex<Vec<Received>>>,
    impl Service<Received, Response = (), Error = Infallible, Future: Send> + Clone,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let svc = service_fn(move |r: Received| {
        s.lock().unwrap().push(r);
        async { Ok::<(), Infallible>(()) }
    });
    (seen, svc)
}

async fn send<S: Service<Received, Response = ()>>(svc: &mut S, r: Received)
where
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(r).await.unwrap();
}

#[tokio::test]
async fn callbacks_run_in_registration_order_and_skip_stops_the_rest() {
    let trace = Arc::new(Mutex::new(Vec::new()));
    let (t1, t2, t3) = (Arc::clone(&trace), Arc::clone(&trace), Arc::clone(&trace));
    let callbacks = CallbackChainLayer::builder()
        .register(move |_: &mut Received| {
            t1.lock().unwrap().push("first");
            Verdict::Continue
        })
        .register(move |r: &mut Received| {
            t2.lock().unwrap().push("second");
            if r.message.payload.bytes().starts_with(b"OPTIONS") {
                Verdict::Skip
            } else {
                Verdict::Continue
            }
        })
        .register(move |_: &mut Received| {
            t3.lock().unwrap().push("third");
            Verdict::Continue
        })
        .build();
    let (seen, inner) = sink();
    let mut svc = ServiceBuilder::new()
        .layer(callbacks.clone())
        .service(inner);

    send(&mut svc, received("INVITE sip:a SIP/2.0\r\n")).await;
    send(&mut svc, received("OPTIONS sip:a SIP/2.0\r\n")).await;

    assert_eq!(
        *trace.lock().unwrap(),
        ["first", "second", "third", "first", "second"]
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    let skipped: Vec<u64> = callbacks.stats().iter().map(|s| s.skipped()).collect();
    assert_eq!(skipped, [0, 1, 0]);
}

#[tokio::test]
async fn a_callback_may_change_the_message_and_it_is_marked_modified() {
    let (seen, inner) = sink();
    let mut svc = ServiceBuilder::new()
        .layer(CallbackLayer::new(|r: &mut Received| {
            r.message_mut().capture_id = Some(7);
            Verdict::Continue
        }))
        .service(inner);
    send(&mut svc, received("INVITE sip:a SIP/2.0\r\n")).await;
    let got = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got.message.capture_id, Some(7));
    assert!(got.modified);
}

#[tokio::test]
async fn layers_run_outermost_first() {
    let trace = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (Arc::clone(&trace), Arc::clone(&trace));
    let (_, inner) = sink();
    let mut svc = ServiceBuilder::new()
        .layer(CallbackLayer::new(move |_: &mut Received| {
            a.lock().unwrap().push("outer");
            Verdict::Continue
        }))
        .layer(CallbackLayer::new(move |_: &mut Received| {
            b.lock().unwrap().push("inner");
            Verdict::Continue
        }))
        .service(inner);
    send(&mut svc, received("x")).await;
    assert_eq!(*trace.lock().unwrap(), ["outer", "inner"]);
}

#[tokio::test]
async fn an_async_service_is_a_callback() {
    let check = service_fn(|mut r: Received| async move {
        tokio::task::yield_now().await;
        let verdict = if r.message.payload.bytes() == "drop me" {
            Verdict::Skip
        } else {
            Verdict::Continue
        };
        r.message_mut().vlan = Some(42);
        Ok::<_, Infallible>((r, verdict))
    });
    let layer = AsyncCallbackLayer::new("async", check);
    let stats = layer.stats();
    let (seen, inner) = sink();
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    send(&mut svc, received("keep me")).await;
    send(&mut svc, received("drop me")).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message.vlan, Some(42));
    assert_eq!(stats.skipped(), 1);
}

fn with_key(key: Option<&str>, capture_id: u32) -> Received {
    let mut r = received("INVITE sip:a SIP/2.0\r\n");
    r.message.auth_key = key.map(|k| Bytes::from(k.to_owned()));
    r.message.capture_id = Some(capture_id);
    r
}

#[test]
fn auth_key_check_shared_key() {
    let auth = AuthKeyCheck::shared("hep-secret");
    assert_eq!(
        auth.call(&mut with_key(Some("hep-secret"), 1)),
        Verdict::Continue
    );
    assert_eq!(
        auth.call(&mut with_key(Some("hep-secreT"), 1)),
        Verdict::Reject("wrong_key")
    );
    assert_eq!(
        auth.call(&mut with_key(Some(""), 1)),
        Verdict::Reject("wrong_key")
    );
    assert_eq!(
        auth.call(&mut with_key(None, 1)),
        Verdict::Reject("missing_key")
    );
}

#[test]
fn auth_key_check_per_capture_id() {
    let keys = [
        (2001, Bytes::from("kam-key")),
        (3001, Bytes::from("os-key")),
    ]
    .into_iter()
    .collect();
    let auth = AuthKeyCheck::per_capture_id(keys, None);
    assert_eq!(
        auth.call(&mut with_key(Some("kam-key"), 2001)),
        Verdict::Continue
    );
    // One agent's key does not open another capture id.
    assert_eq!(
        auth.call(&mut with_key(Some("kam-key"), 3001)),
        Verdict::Reject("wrong_key")
    );
    assert_eq!(
        auth.call(&mut with_key(Some("kam-key"), 9)),
        Verdict::Reject("unknown_capture_id")
    );
}

#[tokio::test]
async fn a_rejection_remembers_where_the_message_came_from() {
    let auth = CallbackLayer::new(AuthKeyCheck::shared("hep-secret"));
    let stats = auth.stats();
    let (_, inner) = sink();
    let mut svc = ServiceBuilder::new().layer(auth).service(inner);
    assert_eq!(stats.last_rejected("wrong_key"), None, "none yet");
    let from = |peer: &str, key: Option<&str>| {
        let mut r = received_from("INVITE sip:a SIP/2.0\r\n", peer);
        r.message.auth_key = key.map(|k| Bytes::from(k.to_owned()));
        r
    };
    send(&mut svc, from("10.0.0.1:5060", Some("guess"))).await;
    send(&mut svc, from("10.0.0.2:5060", None)).await;
    send(&mut svc, from("10.0.0.3:5060", Some("hep-secret"))).await;
    let peer = |reason| stats.last_rejected(reason).map(|i| i.peer.to_string());
    // A warning about each reason can name the agent; an accepted message changes nothing.
    assert_eq!(peer("wrong_key").as_deref(), Some("10.0.0.1:5060"));
    assert_eq!(peer("missing_key").as_deref(), Some("10.0.0.2:5060"));
    assert_eq!(peer("unknown_capture_id"), None);
    assert_eq!(stats.last_rejected("no_such_reason"), None);
}

#[tokio::test]
async fn auth_refuses_100000_bad_attempts_and_counts_them() {
    let layer = CallbackLayer::new(AuthKeyCheck::shared("hep-secret").strip_key(true));
    let stats = layer.stats();
    let (seen, inner) = sink();
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    for i in 0..100_000u32 {
        let key = match i % 3 {
            0 => None,
            1 => Some(format!("guess-{i}")),
            _ => Some("hep-secre".to_owned()),
        };
        send(&mut svc, with_key(key.as_deref(), i)).await;
    }
    send(&mut svc, with_key(Some("hep-secret"), 1)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "only the one good key got through");
    assert_eq!(seen[0].message.auth_key, None, "the key was stripped");
    let rejected: u64 = stats.rejected().map(|(_, n)| n).sum();
    assert_eq!(rejected, 100_000);
}

/// A message carrying `key`, as received: decoded from its HEP3 bytes.
fn received_with_key(key: &str) -> Received {
    let msg = HepMessage::builder()
        .src("10.1.1.1:5060".parse().unwrap())
        .dst("10.1.1.2:5060".parse().unwrap())
        .proto_type(ProtoType::Sip)
        .capture_id(2001)
        .auth_key(key.to_owned())
        .correlation_id("call-1")
        .payload("OPTIONS sip:x SIP/2.0\r\n\r\n")
        .build();
    let wire = msg.encode(hep_proto::HepVersion::V3).unwrap();
    let info = RecvInfo::new(
        Transport::Udp,
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:9060".parse().unwrap(),
    );
    Received::new(HepMessage::decode(wire.clone()).unwrap(), wire, info)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_stripped_key_is_cut_from_the_received_bytes_which_relays_still_forward() {
    for strip in [
        &AuthKeyCheck::shared("hep-secret").strip_key(true) as &dyn HepCallback,
        &StripAuthKey,
    ] {
        let mut r = received_with_key("hep-secret");
        let before = r.clone();
        assert_eq!(strip.call(&mut r), Verdict::Continue);
        assert_eq!(r.message.auth_key, None);
        // Not `modified`: a relay forwards the bytes (without the key), no re-encoding.
        assert!(!r.modified);
        assert!(contains(&before.wire, b"hep-secret"));
        assert!(!contains(&r.wire, b"hep-secret"), "{:?}", r.wire);
        assert_eq!(r.wire.len(), before.wire.len() - (6 + 10));
        assert_eq!(HepMessage::decode(r.wire.clone()).unwrap(), r.message);
        assert_eq!(
            HepMessage {
                auth_key: None,
                ..before.message
            },
            r.message
        );
    }
    // Nothing to strip: the same bytes.
    let mut r = received("no key");
    let wire = r.wire.clone();
    assert_eq!(StripAuthKey.call(&mut r), Verdict::Continue);
    assert!(!r.modified && r.wire == wire);
    // Bytes that are not the message's HEP3 (a message built in code): the outputs
    // encode the message, which has no key.
    let mut r = received("built");
    r.message.auth_key = Some(Bytes::from_static(b"k"));
    assert_eq!(StripAuthKey.call(&mut r), Verdict::Continue);
    assert!(r.modified && r.message.auth_key.is_none());
}

#[test]
fn filter_rules() {
    let f = Filter::new().proto_types([ProtoType::Sip]);
    let mut log = received("x");
    log.message.proto_type = Some(ProtoType::Log);
    assert_eq!(f.call(&mut log), Verdict::Reject("proto_type"));
    assert_eq!(f.call(&mut received("x")), Verdict::Continue);

    let f = Filter::new().capture_ids([1, 2]);
    assert_eq!(f.call(&mut received("x")), Verdict::Reject("capture_id"));

    let f = Filter::new().agent_networks(["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(
        f.call(&mut received_from("x", "10.9.9.9:1")),
        Verdict::Continue
    );
    assert_eq!(
        f.call(&mut received_from("x", "[::ffff:10.9.9.9]:1")),
        Verdict::Continue
    );
    assert_eq!(
        f.call(&mut received_from("x", "192.0.2.1:1")),
        Verdict::Reject("agent_network")
    );

    let f = Filter::new().source_networks(["10.1.1.0/24".parse().unwrap()]);
    assert_eq!(f.call(&mut received("x")), Verdict::Continue);

    let f = Filter::new().deny_sip_methods(["options"]);
    assert_eq!(
        f.call(&mut received("OPTIONS sip:a SIP/2.0\r\n")),
        Verdict::Reject("sip_method")
    );
    assert_eq!(
        f.call(&mut received("SIP/2.0 200 OK\r\n")),
        Verdict::Continue
    );
    let f = Filter::new().allow_sip_methods(["INVITE", "BYE"]);
    assert_eq!(
        f.call(&mut received("REGISTER sip:a SIP/2.0\r\n")),
        Verdict::Reject("sip_method")
    );
    assert_eq!(
        f.call(&mut received("BYE sip:a SIP/2.0\r\n")),
        Verdict::Continue
    );
}

#[test]
fn rewrite_sets_capture_id_and_node_and_marks_modified() {
    let rw = Rewrite::new().capture_id(5).node_name("node-a");
    let mut r = received("x");
    assert_eq!(rw.call(&mut r), Verdict::Continue);
    assert_eq!(
        (r.message.capture_id, r.message.node_name.as_deref()),
        (Some(5), Some(&b"node-a"[..]))
    );
    assert!(r.modified);
    // Already right: nothing changes, nothing is marked.
    let mut again = r.clone();
    again.modified = false;
    rw.call(&mut again);
    assert!(!again.modified);
}

#[tokio::test(start_paused = true)]
async fn dedup_rejects_the_same_payload_within_the_window_only() {
    let dedup = Dedup::new(Duration::from_millis(500));
    assert_eq!(dedup.call(&mut received("INVITE 1")), Verdict::Continue);
    assert_eq!(
        dedup.call(&mut received("INVITE 1")),
        Verdict::Reject("duplicate")
    );
    assert_eq!(dedup.call(&mut received("INVITE 2")), Verdict::Continue);
    // Another agent's copy (other capture id) is kept by default.
    let mut other = received("INVITE 1");
    other.message.capture_id = Some(9);
    assert_eq!(dedup.call(&mut other), Verdict::Continue);
    tokio::time::advance(Duration::from_millis(501)).await;
    assert_eq!(dedup.call(&mut received("INVITE 1")), Verdict::Continue);

    let across = Dedup::new(Duration::from_millis(500)).capture_id_aware(false);
    assert_eq!(across.call(&mut received("BYE")), Verdict::Continue);
    let mut other = received("BYE");
    other.message.capture_id = Some(9);
    assert_eq!(across.call(&mut other), Verdict::Reject("duplicate"));
}

#[tokio::test(start_paused = true)]
async fn dedup_memory_is_bounded() {
    let dedup = Dedup::new(Duration::from_secs(3600)).max_entries(100);
    for i in 0..1000 {
        assert_eq!(
            dedup.call(&mut received(&format!("m{i}"))),
            Verdict::Continue
        );
    }
    // The oldest were forgotten: m0 is new again; the most recent is still known.
    assert_eq!(dedup.call(&mut received("m0")), Verdict::Continue);
    assert_eq!(
        dedup.call(&mut received("m999")),
        Verdict::Reject("duplicate")
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_per_agent_refills_over_time() {
    let limit = RateLimit::new(10.0, 5.0);
    let a = || received_from("x", "192.0.2.1:1");
    for _ in 0..5 {
        assert_eq!(limit.call(&mut a()), Verdict::Continue);
    }
    assert_eq!(limit.call(&mut a()), Verdict::Reject("rate_limited"));
    // Another agent has its own bucket.
    assert_eq!(
        limit.call(&mut received_from("x", "192.0.2.2:1")),
        Verdict::Continue
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(limit.call(&mut a()), Verdict::Continue);
    assert_eq!(limit.call(&mut a()), Verdict::Continue);
    assert_eq!(limit.call(&mut a()), Verdict::Reject("rate_limited"));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_tracks_a_bounded_number_of_agents() {
    let limit = RateLimit::new(10.0, 5.0).max_agents(2);
    let peer = |i: u8| -> SocketAddr { SocketAddr::from(([192, 0, 2, i], 1)) };
    for i in 1..=2 {
        assert_eq!(
            limit.call(&mut received_from("x", &peer(i).to_string())),
            Verdict::Continue
        );
    }
    assert_eq!(
        limit.call(&mut received_from("x", &peer(3).to_string())),
        Verdict::Reject("too_many_agents")
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        limit.call(&mut received_from("x", &peer(3).to_string())),
        Verdict::Continue
    );
}

// ===== Readiness: the inner service's backpressure goes through every layer =====

/// An inner service that is ready only while its gate is open.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::Relaxed);
    }
}

impl Service<Received> for Gate {
    type Response = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.open.load(Ordering::Relaxed) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _: Received) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

/// One poll of `poll_ready`, as a listener's first look before it reads more.
fn poll_ready<S: Service<Received>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    svc.poll_ready(&mut Context::from_waker(Waker::noop()))
}

fn assert_ready_only_with_the_inner_service<L>(what: &str, layer: L)
where
    L: Layer<Gate>,
    L::Service: Service<Received>,
    <L::Service as Service<Received>>::Error: std::fmt::Debug,
{
    let gate = Gate::default();
    let mut svc = layer.layer(gate.clone());
    assert!(
        poll_ready(&mut svc).is_pending(),
        "{what}: ready while its inner service is not"
    );
    gate.open();
    assert!(
        matches!(poll_ready(&mut svc), Poll::Ready(Ok(()))),
        "{what}: not ready once its inner service is"
    );
}

#[test]
fn every_layer_is_ready_only_when_its_inner_service_is() {
    let keep = |_: &mut Received| Verdict::Continue;
    assert_ready_only_with_the_inner_service("CallbackLayer", CallbackLayer::new(keep));
    assert_ready_only_with_the_inner_service(
        "CallbackChainLayer",
        CallbackChainLayer::builder().register(keep).build(),
    );
    assert_ready_only_with_the_inner_service(
        "AsyncCallbackLayer",
        AsyncCallbackLayer::new(
            "async",
            service_fn(|r: Received| async move { Ok::<_, Infallible>((r, Verdict::Continue)) }),
        ),
    );
}

#[tokio::test]
async fn an_async_callback_holds_the_listener_back_while_the_output_is_busy() {
    // An output that takes one message at a time and finishes it when released.
    let release = Arc::new(tokio::sync::Notify::new());
    let r = Arc::clone(&release);
    let slow_output = service_fn(move |_: Received| {
        let r = Arc::clone(&r);
        async move {
            r.notified().await;
            Ok::<(), Infallible>(())
        }
    });
    let check =
        service_fn(|r: Received| async move { Ok::<_, Infallible>((r, Verdict::Continue)) });
    let mut svc = ServiceBuilder::new()
        .layer(AsyncCallbackLayer::new("check", check))
        .concurrency_limit(1)
        .service(slow_output);

    let first = svc.ready().await.unwrap().call(received("INVITE 1"));
    // The first message holds the output's only slot, from before the callback ran: the
    // service is not ready, so a TCP listener stops reading.
    assert!(poll_ready(&mut svc).is_pending());
    release.notify_one();
    first.await.unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(10), svc.ready()).await;
    assert!(
        matches!(ready, Ok(Ok(_))),
        "ready again once the output is free"
    );
}

#[tokio::test(start_paused = true)]
async fn a_callback_shared_through_an_arc_keeps_one_state_across_chains() {
    // As a configuration reload does: the new chain keeps the old one's dedup window.
    let dedup = Arc::new(Dedup::new(Duration::from_millis(500)));
    let before = CallbackChainLayer::builder()
        .register(Arc::clone(&dedup))
        .build();
    let after = CallbackChainLayer::builder().register(dedup).build();
    let (seen, inner) = sink();
    send(&mut before.layer(inner.clone()), received("INVITE 1")).await;
    send(&mut after.layer(inner), received("INVITE 1")).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    let stats = after.stats();
    assert_eq!(stats[0].name(), "dedup", "an Arc<C> is named as C");
    assert_eq!(stats[0].rejected().collect::<Vec<_>>(), [("duplicate", 1)]);
}
