//! `GET /api/v1/live`: the calls as they are captured, as Server-Sent Events.
//!
//! The fan-out ([`crate::outputs::fanout`]) publishes every accepted message to a
//! `tokio::sync::broadcast` channel of [`super::LIVE_CAPACITY`] messages while someone
//! listens (a `send` never waits). Each client's task reads it and writes:
//! - `event: call` with a [`LiveCall`] JSON the first time it sees a SIP Call-ID (since
//!   its stream began), among the capture ids its token may read;
//! - `event: lagged` with `{"skipped": N}` when it fell more than the channel's capacity
//!   behind: those messages are not shown to it (counted, never silent);
//! - a `: keep-alive` comment every [`KEEP_ALIVE`].
//!
//! Metrics: `hep_http_live_streams` (open), `hep_http_live_skipped_total` (lagged).
//!
//! At most [`super::MAX_LIVE_CLIENTS`] streams at once (more: `503 overloaded`). The
//! stream ends when the server shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use hep_proto::ProtoType;
use hep_proto::sip::SipSummary;
use hep_transport::Received;
use hyper::body::Frame;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::access::Access;
use super::calls::rfc3339;
use super::counts::RequestCounts;

/// A comment this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Call-IDs a stream remembers as seen; past this it forgets them all (a call may then
/// be announced again).
const MAX_SEEN: usize = 100_000;

/// One `event: call` of the live view: a call's row as far as its first message tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    /// The Call-ID.
    pub call_id: String,
    /// The From user.
    pub from_user: Option<String>,
    /// The To user.
    pub to_user: Option<String>,
    /// Capture time of the message, RFC 3339 UTC.
    pub first_ts: Option<String>,
    /// Its method, for a request.
    pub method: Option<String>,
    /// Its status code, for a response.
    pub status: Option<u16>,
    /// The HEP capture id.
    pub capture_id: Option<u32>,
}

impl LiveCall {
    /// The call `r` tells of, if it is SIP with a Call-ID.
    pub fn of(r: &Received) -> Option<Self> {
        let m = &r.message;
        if !matches!(m.proto_type, None | Some(ProtoType::Sip)) {
            return None;
        }
        let s = SipSummary::parse(m.payload.bytes())?;
        let call_id = s.call_id?.to_owned();
        let ts = m
            .ts_sec
            .map(|sec| i64::from(sec) * 1_000_000 + i64::from(m.ts_usec.unwrap_or(0)));
        Some(Self {
            call_id,
            from_user: s.from.and_then(|f| f.user).map(str::to_owned),
            to_user: s.to.and_then(|t| t.user).map(str::to_owned),
            first_ts: ts.map(rfc3339),
            method: s
                .is_request()
                .then(|| s.method())
                .flatten()
                .map(str::to_owned),
            status: s.status(),
            capture_id: m.capture_id,
        })
    }
}

/// The body of the stream: the frames its task writes.
struct LiveBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for LiveBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn event(name: &str, json: &impl Serialize) -> Bytes {
    // Inert even if treated as HTML, as the JSON bodies ([`super::json_response`]).
    let data = serde_json::to_string(json)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Whether `access` may see a message of `capture_id`.
fn allowed(access: &Access, capture_id: Option<u32>) -> bool {
    match access {
        None => true,
        Some(ids) => capture_id.is_some_and(|c| ids.contains(&c)),
    }
}

/// The response of one live client, its task spawned.
pub(crate) fn stream(
    feed: broadcast::Receiver<Arc<Received>>,
    access: Access,
    stop: CancellationToken,
    slot: OwnedSemaphorePermit,
    counts: Arc<RequestCounts>,
) -> Response {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(feed, access, stop, slot, tx, counts));
    let mut r = Response::new(Body::new(LiveBody(rx)));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn run(
    mut feed: broadcast::Receiver<Arc<Received>>,
    access: Access,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
    tx: mpsc::Sender<Bytes>,
    counts: Arc<RequestCounts>,
) {
    counts.live_streams.fetch_add(1, Ordering::Relaxed);
    let _open = OnDrop(|| {
        counts.live_streams.fetch_sub(1, Ordering::Relaxed);
    });
    let mut seen: HashSet<String> = HashSet::new();
    // The first bytes at once, so that a client knows the stream is open.
    if tx.send(Bytes::from_static(b": live\n\n")).await.is_err() {
        return;
    }
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.tick().await;
    loop {
        let out = tokio::select! {
            () = stop.cancelled() => return,
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            r = feed.recv() => match r {
                Ok(msg) => {
                    let Some(call) = LiveCall::of(&msg) else { continue };
                    if !allowed(&access, call.capture_id) || seen.contains(&call.call_id) {
                        continue;
                    }
                    if seen.len() >= MAX_SEEN {
                        seen.clear();
                    }
                    seen.insert(call.call_id.clone());
                    event("call", &call)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    counts.live_skipped.fetch_add(n, Ordering::Relaxed);
                    event("lagged", &serde_json::json!({ "skipped": n }))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        tokio::select! {
            () = stop.cancelled() => return,
            r = tx.send(out) => if r.is_err() { return },
        }
    }
}

/// Runs its closure when dropped (a stream's task ends however it ends).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hep_proto::{HepMessage, HepVersion};
    use hep_transport::{RecvInfo, Transport};
    use tokio::sync::Semaphore;

    use super::*;

    fn received(call_id: &str) -> Arc<Received> {
        let wire = HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .timestamp(1_700_000_000, 0)
            .proto_type(ProtoType::Sip)
            .capture_id(7)
            .payload(
                format!(
                    "OPTIONS sip:x@example.com SIP/2.0\r\nFrom: <sip:a@example.com>\r\n\
                     Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n\r\n"
                )
                .into_bytes(),
            )
            .build()
            .encode(HepVersion::V3)
            .unwrap();
        let at: SocketAddr = "127.0.0.1:5656".parse().unwrap();
        Arc::new(Received::new(
            HepMessage::decode(wire.clone()).unwrap(),
            wire,
            RecvInfo::new(Transport::Udp, at, at),
        ))
    }

    #[tokio::test]
    async fn a_slow_client_is_told_how_many_messages_it_skipped_and_calls_come_once() {
        let (feed, rx) = broadcast::channel(2);
        // Five messages before the stream reads any: three are lost to it.
        for id in ["c1", "c2", "c3", "<c0>", "<c0>"] {
            feed.send(received(id)).unwrap();
        }
        let counts = Arc::new(RequestCounts::default());
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let (tx, mut out) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(rx, None, stop.clone(), slot, tx, Arc::clone(&counts)));
        let mut text = String::new();
        let mut read_until = async |needle: &str| {
            while !text.contains(needle) {
                let b = out.recv().await.unwrap();
                text.push_str(std::str::from_utf8(&b).unwrap());
            }
        };
        read_until("c0").await;
        // The feed keeps its order: past `last`, the second `<c0>` was read too.
        feed.send(received("last")).unwrap();
        read_until("last").await;
        stop.cancel();
        task.await.unwrap();
        assert!(
            text.starts_with(": live\n\nevent: lagged\ndata: {\"skipped\":3}\n\n"),
            "{text}"
        );
        // Markup comes out escaped; a Call-ID seen is not announced again.
        let first = "event: call\ndata: {\"call_id\":\"\\u003cc0\\u003e\"";
        assert!(text.contains(first), "{text}");
        assert!(!text.contains('<'), "{text}");
        assert_eq!(
            text.matches("event: call").count(),
            2,
            "<c0> once, last: {text}"
        );
        assert_eq!(counts.live_skipped.load(Ordering::Relaxed), 3);
        assert_eq!(counts.live_streams.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_token_sees_only_its_capture_ids() {
        assert!(allowed(&None, None));
        assert!(allowed(&Some(vec![7]), Some(7)));
        assert!(!allowed(&Some(vec![7]), Some(8)));
        assert!(!allowed(&Some(vec![7]), None));
    }
}
