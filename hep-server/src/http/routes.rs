//! The router: the API's routes and the page's, and the layers around them.
//!
//! ```text
//!  request ─> count (hep_http_requests_total, nosniff) ─> limits (load shed over
//!          MAX_IN_FLIGHT, REQUEST_TIMEOUT) ─> [API only] tokens ─> handler
//!                                                        └─> store query (blocking
//!                                                            thread, MAX_STORE_QUERIES)
//!                                                        └─> [cluster] peers, at once
//!                                                            (unless X-Hep-Cluster: local)
//! ```
//!
//! With `[cluster] peers`, the call list asks this node's store and every peer at once
//! and merges the pages ([`crate::cluster::merge`]); a call's view, its exports and a
//! message come from this node when it holds them, else from the first peer that does.
//! A message id of a peer's call is `ID@HOST:PORT`, the peer it comes from: asked for
//! here, it is fetched from that peer.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::Uri;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hep_proto::ProtoType;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, ServiceBuilder};

use super::access::{Access, Tokens, capture_ids, narrowed};
use super::calls::{CallRow, MessageJson};
use super::counts::RequestCounts;
use super::error::ApiError;
use super::params::{CallDetail, CallSearch};
use super::queries::QueryPool;
use super::{REQUEST_TIMEOUT, bytes_response, json_response, page};
use crate::aliases::{Aliases, SharedAliases};
use crate::call_quality::CallQuality;
use crate::cluster::client::PeerAnswer;
use crate::cluster::merge::{self, NodePage};
use crate::cluster::{CAPTURE_IDS_HEADER, Cluster, LOCAL_HEADER, LOCAL_VALUE, Peer, Unanswered};
use crate::formats::ladder::{self, Arrow, LadderStyle};
use crate::formats::pcap::PcapFileWriter;
use crate::formats::text::{Endpoint, TextLine};
use crate::kpi::call::CallView;
use crate::qos::call::CallQos;
use crate::store::{self, MessageId, Query as StoreQuery, StoreError, Stored};
use crate::sync::lock;
use crate::time::now_usec;

/// Messages a call's detail and exports read at most (the newest), legs besides.
pub const MAX_CALL_MESSAGES: usize = 10_000;
/// The longest Call-ID taken in a path.
const MAX_CALL_ID: usize = 1_024;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The store directory, if the run writes one.
    pub(crate) store: Option<Arc<PathBuf>>,
    /// The store's read connections, kept from one query to the next.
    pub(crate) readers: store::Readers,
    pub(crate) tokens: Arc<Tokens>,
    /// The threads store queries run on.
    pub(crate) queries: QueryPool,
    /// Requests at once.
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) counts: Arc<RequestCounts>,
    /// The live view's feed, when the run has one.
    pub(crate) live: Option<tokio::sync::broadcast::Sender<Arc<hep_transport::Received>>>,
    /// Live streams at once.
    pub(crate) live_clients: Arc<Semaphore>,
    /// Cancelled at shutdown.
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// `[aliases]`, as a reload leaves them.
    pub(crate) aliases: SharedAliases,
    /// `[cluster]`: this node's name and its peers.
    pub(crate) cluster: Cluster,
    /// `[kpi]`: the timeouts a call's KPIs are read with.
    pub(crate) kpi: Arc<crate::kpi::KpiConfig>,
}

/// What the token of a request may read.
#[derive(Debug, Clone)]
struct Granted(Access);

/// Whether a request is to be answered with this node's store only: it comes from a
/// peer (`X-Hep-Cluster: local`), or there are no peers.
#[derive(Debug, Clone, Copy)]
struct LocalOnly(bool);

/// The decoded query string.
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/{call_id}", get(call))
        .route("/api/v1/calls/{call_id}/pcap", get(call_pcap))
        .route("/api/v1/calls/{call_id}/text", get(call_text))
        .route("/api/v1/messages/{id}", get(message))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    // Its token may be in the query string (an EventSource cannot send headers).
    let live = Router::new().route("/api/v1/live", get(live));
    let page = Router::new()
        .route("/", get(index))
        .route("/call/{call_id}", get(index))
        .route("/assets/{file}", get(asset));
    let limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limit_error))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::clone(
            &state.in_flight,
        )))
        .layer(TimeoutLayer::new(REQUEST_TIMEOUT));
    // The fallbacks count their answers themselves: the layers run on matched routes.
    api.merge(live)
        .merge(page)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(limits)
        .route_layer(middleware::from_fn_with_state(state.clone(), count))
        .fallback(fallback)
        .with_state(state)
}

// ===== layers =====

/// Counts every answer by route and status, and marks it not to be sniffed.
async fn count(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let mut response = next.run(req).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    s.counts.count(&route, response.status().as_u16());
    response
}

/// The token check of the API routes.
async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = s
        .tokens
        .access(req.headers().get(header::AUTHORIZATION))
        .and_then(|a| narrowed(a, req.headers().get(CAPTURE_IDS_HEADER)));
    match access {
        Ok(access) => {
            let from_peer = req
                .headers()
                .get(LOCAL_HEADER)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(LOCAL_VALUE.as_bytes()));
            req.extensions_mut().insert(Granted(access));
            req.extensions_mut()
                .insert(LocalOnly(from_peer || !s.cluster.has_peers()));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn limit_error(e: BoxError) -> ApiError {
    if e.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "more than {} requests at once: try again",
                super::MAX_IN_FLIGHT
            ),
        )
    } else if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s: narrow the search",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
    } else {
        ApiError::internal(format!("{e}"))
    }
}

async fn fallback(State(s): State<AppState>, req: Request) -> ApiError {
    s.counts.count("unmatched", 404);
    ApiError::not_found(format!(
        "no such endpoint: {} (see docs/API.md)",
        req.uri().path()
    ))
}

async fn method_not_allowed(State(s): State<AppState>, req: Request) -> ApiError {
    s.counts.count("unmatched", 405);
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} {}: only GET is served", req.method(), req.uri().path()),
    )
}

// ===== the live view =====

/// `GET /api/v1/live`: Server-Sent Events of the calls as they are captured
/// ([`super::live`]). The token: `Authorization: Bearer`, or `?token=` (this route only).
async fn live(State(s): State<AppState>, req: Request) -> Response {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {}", percent_decode(t))).ok())
    });
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .or(from_query.as_ref());
    let access = match s.tokens.access(authorization) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(feed) = s.live.as_ref() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "live_unavailable",
            "this server has no live feed",
        )
        .into_response();
    };
    let Ok(slot) = Arc::clone(&s.live_clients).try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "more than {} live streams at once: try again",
                super::MAX_LIVE_CLIENTS
            ),
        )
        .into_response();
    };
    super::live::stream(
        feed.subscribe(),
        access,
        s.stop.clone(),
        slot,
        Arc::clone(&s.counts),
    )
}

/// `%XX` decoded (a token is ASCII; anything else is left as it is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ===== the store =====

impl AppState {
    /// Runs `f` on the store directory on a query thread ([`super::queries`]), at most
    /// [`super::MAX_STORE_QUERIES`] at once.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&store::Readers, &FsPath) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let Some(dir) = self.store.clone() else {
            return Err(ApiError::store_unavailable(
                "this server writes no store: run it with the output store:DIR (the default)",
            ));
        };
        let readers = self.readers.clone();
        self.queries.run(move || f(&readers, &dir)).await
    }
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::store_unavailable(e.to_string())
}

fn warn_damaged(damaged: &[StoreError]) {
    for e in damaged {
        tracing::warn!(error = %e, "http: a matching message is left out");
    }
}

fn pairs(q: Pairs) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::bad_parameter(format!("query string: {}", e.body_text())))
}

fn call_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = p.map_err(|e| ApiError::bad_parameter(format!("call_id: {}", e.body_text())))?;
    if id.is_empty() || id.len() > MAX_CALL_ID {
        return Err(ApiError::bad_parameter(format!(
            "call_id: expected 1 to {MAX_CALL_ID} bytes, found {}",
            id.len()
        )));
    }
    Ok(id)
}

// ===== the API =====

#[derive(Serialize)]
struct CallsJson<Row> {
    /// [`CallRow`]s, or JSON rows of several nodes merged.
    calls: Vec<Row>,
    next: Option<String>,
    /// With `q`: what the text search read (`null` without), on every node that
    /// answered.
    text_scan: Option<Value>,
    /// The `[cluster]` peers that did not answer in time or failed.
    unanswered: Vec<Unanswered>,
}

/// The path and query of `uri`: what is asked of the peers.
fn target(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

/// The `text_scan`s of several nodes as one: messages read summed, stopped if any
/// stopped.
fn text_scans(scans: impl Iterator<Item = Value>) -> Option<Value> {
    let scans: Vec<Value> = scans.filter(|v| !v.is_null()).collect();
    let first = scans.first()?.clone();
    let scanned: u64 = scans.iter().filter_map(|v| v["scanned"].as_u64()).sum();
    let truncated = scans.iter().any(|v| v["truncated"].as_bool() == Some(true));
    let mut merged = first;
    merged["scanned"] = scanned.into();
    merged["truncated"] = truncated.into();
    Some(merged)
}

/// `GET /api/v1/calls`.
async fn list_calls(
    State(s): State<AppState>,
    Extension(Granted(access)): Extension<Granted>,
    Extension(LocalOnly(local_only)): Extension<LocalOnly>,
    uri: Uri,
    q: Pairs,
) -> Result<Response, ApiError> {
    let p = CallSearch::parse(&pairs(q)?, now_usec())?;
    let query = StoreQuery {
        call_id: p.call_id,
        user: p.user,
        method: p.method,
        since_usec: p.since_usec,
        until_usec: p.until_usec,
        limit: p.limit,
        capture_ids: capture_ids(&access, p.capture_id),
        node: p.node,
        text: p.text,
        ..StoreQuery::default()
    };
    let (cursor, limit) = (p.cursor, p.limit);
    // A node without a store that has peers only searches them.
    let storeless = s.store.is_none() && !local_only;
    let local = async {
        if storeless {
            return Ok(store::Calls::default());
        }
        s.read(move |readers, dir| readers.calls(dir, &query, cursor).map_err(store_error))
            .await
    };
    let peers = async {
        if local_only {
            Vec::new()
        } else {
            s.cluster.ask_all(&target(&uri), access.as_deref()).await
        }
    };
    let (page, answers) = tokio::join!(local, peers);
    let page = page?;
    warn_damaged(&page.damaged);
    let name = s.cluster.name();
    if local_only {
        // This node alone: its rows as they are (keys in their order).
        return Ok(json_response(&CallsJson {
            calls: page.calls.iter().map(|c| CallRow::of(c, name)).collect(),
            next: page.next.map(|n| n.to_string()),
            text_scan: page.text_scan.and_then(|t| serde_json::to_value(t).ok()),
            unanswered: Vec::new(),
        }));
    }
    let rows = page
        .calls
        .iter()
        .map(|c| serde_json::to_value(CallRow::of(c, name)).unwrap_or_default())
        .collect();
    let mut scans = vec![serde_json::to_value(page.text_scan).unwrap_or_default()];
    let mut pages = vec![NodePage {
        calls: rows,
        next: page.next,
    }];
    let mut unanswered = Vec::new();
    for (peer, answer) in answers {
        let read = answer.map_err(|e| e.to_string()).and_then(|a| {
            let v = a.json().map_err(|e| e.to_string())?;
            Ok((NodePage::from_json(&v)?, v["text_scan"].clone()))
        });
        match read {
            Ok((mut page, scan)) => {
                for row in &mut page.calls {
                    row["peer"] = peer.url().into();
                }
                pages.push(page);
                scans.push(scan);
            }
            Err(e) => unanswered.push(Unanswered::new(&peer, e)),
        }
    }
    let (calls, next) = merge::merge(pages, limit);
    Ok(json_response(&CallsJson {
        calls,
        next: next.map(|n| n.to_string()),
        text_scan: text_scans(scans.into_iter()),
        unanswered,
    }))
}

/// What a peer holds, when this node does not: the first peer that answers `200` to
/// the request of `uri`, else `not_found` (every peer answered that it has no `what`)
/// or `peers_unanswered` naming those that did not answer.
async fn from_peers(
    s: &AppState,
    uri: &Uri,
    access: &Access,
    what: &str,
) -> Result<(Peer, PeerAnswer), ApiError> {
    s.cluster
        .find(&target(uri), access.as_deref())
        .await
        .map_err(|unanswered| {
            let n = s.cluster.config().peers.len();
            if unanswered.is_empty() {
                return ApiError::not_found(format!("no {what} on this node or its {n} peers"));
            }
            let named: Vec<String> = unanswered
                .iter()
                .map(|u| format!("{} ({})", u.peer, u.error))
                .collect();
            ApiError::peers_unanswered(
                format!(
                    "no {what} on this node or the peers that answered; {} of {n} peers \
                     did not answer: {}",
                    unanswered.len(),
                    named.join(", ")
                ),
                unanswered,
            )
        })
}

/// Message ids of `peer` as this node hands them out: `ID@HOST:PORT`.
fn route_ids_back(messages: &mut Value, peer: &Peer) {
    let Some(list) = messages.as_array_mut() else {
        return;
    };
    for m in list {
        if let Some(id) = m["id"].as_str() {
            m["id"] = format!("{id}@{}", peer.authority()).into();
        }
    }
}

/// A peer's answer of a binary or text export, passed on with its headers of interest
/// and the peer it comes from (`X-Hep-Peer`).
fn relayed(peer: &Peer, answer: PeerAnswer) -> Response {
    let mut r = Response::new(axum::body::Body::from(answer.body));
    let h = r.headers_mut();
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        HeaderName::from_static("x-rtcp-json-left-out"),
        HeaderName::from_static("x-hep-node"),
    ] {
        if let Some(v) = answer.headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(peer.url()) {
        h.insert(HeaderName::from_static("x-hep-peer"), v);
    }
    r
}

/// `X-Hep-Node`: this node's name, on what it answers from its store.
fn with_node(mut r: Response, s: &AppState) -> Response {
    if let Ok(v) = HeaderValue::from_str(s.cluster.name()) {
        r.headers_mut()
            .insert(HeaderName::from_static("x-hep-node"), v);
    }
    r
}

/// Whether a call this node could not give (`e`) is to be asked of the peers: it is
/// not here, or this node keeps no store (a node that only searches its peers).
fn ask_peers(s: &AppState, e: &ApiError, local_only: bool) -> bool {
    !local_only && (e.code == "not_found" || s.store.is_none())
}

/// The messages of `call_id` (legs included), oldest first, and whether its chain of
/// legs was cut at a bound; `not_found` when there are no messages.
async fn messages_of(
    s: &AppState,
    access: &Access,
    call_id: String,
    p: &CallDetail,
) -> Result<store::Results, ApiError> {
    let query = StoreQuery {
        call_id: Some(call_id.clone()),
        since_usec: p.since_usec,
        until_usec: p.until_usec,
        limit: MAX_CALL_MESSAGES,
        capture_ids: access.clone(),
        ..StoreQuery::default()
    };
    let results = s
        .read(move |readers, dir| readers.search(dir, &query).map_err(store_error))
        .await?;
    warn_damaged(&results.damaged);
    if results.messages.is_empty() {
        return Err(ApiError::not_found(format!("no call {call_id}")));
    }
    Ok(results)
}

#[derive(Serialize)]
struct CallJson<'a> {
    call_id: &'a str,
    messages: Vec<MessageJson<'a>>,
    /// The node that holds it.
    node: &'a str,
    /// The peer it was read from (`None`: this node).
    peer: Option<&'a str>,
    /// The peers that did not answer (none: the view is whole from `node`).
    unanswered: Vec<Unanswered>,
    /// Whether a bound of the walk over its legs cut the chain (more legs may exist than
    /// its messages show).
    legs_cut: bool,
    /// The `[aliases]` name of each source and destination of the messages that has
    /// one, keyed by the address as the ladder writes it (`IP:PORT`, `[IPv6]:PORT`).
    aliases: BTreeMap<String, String>,
    /// The SIP KPIs of the call and its legs ([`crate::kpi::call`]).
    kpis: CallView,
    /// Its streams' quality ([`crate::qos::call`]).
    qos: CallQos,
}

/// The names `aliases` gives the endpoints of `messages`.
fn aliases_of(aliases: &Aliases, messages: &[Stored]) -> BTreeMap<String, String> {
    let mut named = BTreeMap::new();
    if aliases.is_empty() {
        return named;
    }
    for m in messages {
        for e in [Endpoint::src(&m.message), Endpoint::dst(&m.message)] {
            let addr = e.to_string();
            if named.contains_key(&addr) {
                continue;
            }
            if let Some(name) = aliases.name_of_text(&addr) {
                named.insert(addr, name.to_owned());
            }
        }
    }
    named
}

/// `GET /api/v1/calls/{call_id}`.
async fn call(
    State(s): State<AppState>,
    Extension(Granted(access)): Extension<Granted>,
    Extension(LocalOnly(local_only)): Extension<LocalOnly>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> Result<Response, ApiError> {
    let id = call_id(id)?;
    let p = CallDetail::parse(&pairs(q)?, now_usec(), false)?;
    let found = match messages_of(&s, &access, id.clone(), &p).await {
        Err(e) if ask_peers(&s, &e, local_only) => {
            let (peer, answer) = from_peers(&s, &uri, &access, &format!("call {id}")).await?;
            let mut v = answer
                .json()
                .map_err(|e| ApiError::peers_unanswered(e.to_string(), vec![]))?;
            route_ids_back(&mut v["messages"], &peer);
            v["peer"] = peer.url().into();
            v["unanswered"] = Value::Array(Vec::new());
            return Ok(json_response(&v));
        }
        found => found?,
    };
    let legs_cut = found.legs_cut;
    let found = found.messages;
    let quality = CallQuality::of(&id, &found, now_usec(), &s.kpi);
    Ok(json_response(&CallJson {
        call_id: &id,
        node: s.cluster.name(),
        peer: None,
        unanswered: Vec::new(),
        legs_cut,
        messages: found.iter().map(MessageJson::of).collect(),
        aliases: aliases_of(&s.aliases.get(), &found),
        kpis: quality.kpis,
        qos: quality.qos,
    }))
}

/// A writer whose bytes can be taken back after the writer that owns it is dropped.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receive time, for messages without a capture time (HEPv1).
fn received_at(s: &Stored) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(s.recv_ts_usec).unwrap_or(0))
}

/// A file name for `call_id` and `ext`: what is not `[A-Za-z0-9._@-]` becomes `_`.
fn file_name(call_id: &str, ext: &str) -> HeaderValue {
    let safe: String = call_id
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!("attachment; filename=\"call-{safe}.{ext}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `GET /api/v1/calls/{call_id}/pcap`.
async fn call_pcap(
    State(s): State<AppState>,
    Extension(Granted(access)): Extension<Granted>,
    Extension(LocalOnly(local_only)): Extension<LocalOnly>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> Result<Response, ApiError> {
    let id = call_id(id)?;
    let p = CallDetail::parse(&pairs(q)?, now_usec(), false)?;
    let found = match messages_of(&s, &access, id.clone(), &p).await {
        Err(e) if ask_peers(&s, &e, local_only) => {
            let (peer, answer) = from_peers(&s, &uri, &access, &format!("call {id}")).await?;
            return Ok(relayed(&peer, answer));
        }
        found => found?.messages,
    };
    let buf = SharedBuf::default();
    // RTCP as an agent's JSON is not a packet that was on the wire: left out (and
    // counted in a header); RTCP sent raw is written as the UDP packet it was.
    let (packets, left_out): (Vec<&Stored>, Vec<&Stored>) = found.iter().partition(|m| {
        m.message.proto_type != Some(ProtoType::Rtcp)
            || crate::qos::rtcp::is_raw(m.message.payload.bytes())
    });
    let written = (|| {
        let mut w = PcapFileWriter::new(Box::new(buf.clone()))?;
        for m in packets {
            w.write(&m.message, received_at(m))?;
        }
        w.flush()
    })();
    written.map_err(|e| ApiError::internal(format!("writing the pcap: {e}")))?;
    let bytes = std::mem::take(&mut *lock(&buf.0));
    let mut r = bytes_response(StatusCode::OK, "application/vnd.tcpdump.pcap", bytes);
    r.headers_mut()
        .insert(header::CONTENT_DISPOSITION, file_name(&id, "pcap"));
    r.headers_mut().insert(
        HeaderName::from_static("x-rtcp-json-left-out"),
        HeaderValue::from(left_out.len()),
    );
    Ok(with_node(r, &s))
}

/// `GET /api/v1/calls/{call_id}/text`: one text line per message, or the ladder
/// (`?format=ladder`).
async fn call_text(
    State(s): State<AppState>,
    Extension(Granted(access)): Extension<Granted>,
    Extension(LocalOnly(local_only)): Extension<LocalOnly>,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> Result<Response, ApiError> {
    let id = call_id(id)?;
    let p = CallDetail::parse(&pairs(q)?, now_usec(), true)?;
    let found = match messages_of(&s, &access, id.clone(), &p).await {
        Err(e) if ask_peers(&s, &e, local_only) => {
            let (peer, answer) = from_peers(&s, &uri, &access, &format!("call {id}")).await?;
            return Ok(relayed(&peer, answer));
        }
        found => found?.messages,
    };
    let mut out = Vec::new();
    let written = if p.ladder {
        let arrows: Vec<Arrow> = found
            .iter()
            .map(|s| {
                let mut a = ladder::arrow_of(&s.message);
                if s.message.ts_sec.is_none() {
                    a.ts_usec = s.ts_usec;
                }
                a
            })
            .collect();
        ladder::render_named(&arrows, &LadderStyle::default(), &s.aliases.get(), &mut out)
            .and_then(|()| CallQuality::of(&id, &found, now_usec(), &s.kpi).write_text(&mut out))
    } else {
        found
            .iter()
            .try_for_each(|m| writeln!(out, "{}", TextLine::new(&m.message, m.recv.as_ref())))
    };
    written.map_err(|e| ApiError::internal(format!("writing the text: {e}")))?;
    let mut r = bytes_response(StatusCode::OK, "text/plain; charset=utf-8", out);
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("inline"),
    );
    Ok(with_node(r, &s))
}

/// `GET /api/v1/messages/{id}`.
async fn message(
    State(s): State<AppState>,
    Extension(Granted(access)): Extension<Granted>,
    Extension(LocalOnly(local_only)): Extension<LocalOnly>,
    id: Result<Path<String>, PathRejection>,
    q: Pairs,
) -> Result<Response, ApiError> {
    let Path(text) = id.map_err(|e| ApiError::bad_parameter(format!("id: {}", e.body_text())))?;
    if let Some((k, _)) = pairs(q)?.first() {
        return Err(ApiError::bad_parameter(format!(
            "{k}: no such parameter (this endpoint takes none)"
        )));
    }
    // A peer's message: fetched from that peer (one of ours only: never another host).
    if let Some((_, authority)) = text.rsplit_once('@')
        && !s.cluster.has_peers()
    {
        return Err(ApiError::not_found(format!(
            "id: `{authority}` is not one of this node's [cluster] peers (it has none)"
        )));
    }
    if let Some((own, authority)) = text.rsplit_once('@')
        && !local_only
    {
        let id: MessageId = own
            .parse()
            .map_err(|e| ApiError::bad_parameter(format!("id: {e}")))?;
        let Some((index, peer)) = s.cluster.peer_by_authority(authority) else {
            return Err(ApiError::not_found(format!(
                "id: `{authority}` is not one of this node's [cluster] peers"
            )));
        };
        let answer = s
            .cluster
            .ask(index, &format!("/api/v1/messages/{id}"), access.as_deref())
            .await
            .map_err(|e| {
                ApiError::peers_unanswered(e.to_string(), vec![Unanswered::new(peer, &e)])
            })?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(ApiError::not_found(format!("no message {text}")));
        }
        let mut v = answer.json().map_err(|e| {
            ApiError::peers_unanswered(e.to_string(), vec![Unanswered::new(peer, &e)])
        })?;
        if let Some(own) = v["id"].as_str() {
            v["id"] = format!("{own}@{authority}").into();
        }
        return Ok(json_response(&v));
    }
    let id: MessageId = text
        .parse()
        .map_err(|e| ApiError::bad_parameter(format!("id: {e}")))?;
    let found = s
        .read(move |readers, dir| {
            readers
                .message(dir, id, access.as_deref())
                .map_err(store_error)
        })
        .await?;
    match found {
        Some(m) => Ok(json_response(&MessageJson::of(&m))),
        None => Err(ApiError::not_found(format!("no message {id}"))),
    }
}

// ===== the page =====

fn page_response(name: &str) -> Result<Response, ApiError> {
    let (ctype, bytes) =
        page::asset(name).ok_or_else(|| ApiError::not_found(format!("no asset {name}")))?;
    let mut r = bytes_response(StatusCode::OK, ctype, bytes);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    Ok(r)
}

/// `GET /` and `GET /call/{call_id}`: the page (which reads the call from its URL).
async fn index() -> Result<Response, ApiError> {
    page_response("index.html")
}

/// `GET /assets/{file}`.
async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    page_response(&file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    fn state(in_flight: usize) -> AppState {
        AppState {
            store: None,
            readers: store::Readers::new(),
            tokens: Arc::new(Tokens::default()),
            queries: QueryPool::start(1, 1).expect("starts"),
            in_flight: Arc::new(Semaphore::new(in_flight)),
            counts: Arc::new(RequestCounts::default()),
            live: None,
            live_clients: Arc::new(Semaphore::new(1)),
            stop: tokio_util::sync::CancellationToken::new(),
            aliases: SharedAliases::default(),
            cluster: Cluster::new(crate::cluster::ClusterConfig::default(), Arc::default()),
            kpi: Arc::default(),
        }
    }

    #[test]
    fn a_token_in_the_query_string_is_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c%zz"), "a+b c%zz");
        assert_eq!(percent_decode("abc%2"), "abc%2");
    }

    async fn ask(router: Router, target: &str) -> (StatusCode, Value) {
        let request = axum::http::Request::get(target)
            .body(Body::empty())
            .expect("a request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[tokio::test]
    async fn over_the_requests_in_flight_an_answer_is_refused_at_once() {
        let (status, v) = ask(router(state(0)), "/api/v1/calls").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["error"]["code"], "overloaded", "{v}");
    }

    #[tokio::test]
    async fn without_a_store_the_api_says_so() {
        let s = state(1);
        let counts = Arc::clone(&s.counts);
        let (status, v) = ask(router(s), "/api/v1/calls?call_id=x").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
        let mut samples = crate::telemetry::metrics::Samples::default();
        crate::telemetry::metrics::Collect::collect(&*counts, &mut samples);
        let counted = samples.family("hep_http_requests_total");
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].label("route"), Some("/api/v1/calls"));
        assert_eq!(counted[0].label("status"), Some("503"));
    }
}
