//! The HTTP API and the page: a reader of the store beside `hep-server search`, served by
//! `hep-server run` (`[http]`, `--http ADDR`; on by default on `127.0.0.1:9080`).
//!
//! - `mod.rs` (this file): the settings ([`HttpConfig`]), binding, and the server: an
//!   accept loop (mini-redis style) that takes a connection slot before it accepts, hyper
//!   HTTP/1.1 on each connection, the router as a tower service; shutdown is a parameter;
//! - `routes`: the router, its layers (limits, tokens, the request counter) and handlers;
//! - [`params`]: the query parameters, checked; [`error`]: the JSON errors and their codes;
//! - [`calls`]: the JSON of a call row and of a message; `access`: `[http.tokens]`;
//! - `counts`: `hep_http_requests_total{route,status}`; `page`: the embedded page.
//!
//! The API, its parameters, its bounds and curl examples are in `docs/API.md`.
//!
//! # Bounds
//! - HTTPS when `[http]` names a certificate (`cert_file`, `key_file`): the handshake
//!   within [`HEADER_TIMEOUT`];
//! - [`MAX_CONNECTIONS`] connections at once: the next one waits in the kernel's
//!   backlog until one closes (a slot is taken before `accept`);
//! - a request head of [`MAX_HEAD_BYTES`] at most, read within [`HEADER_TIMEOUT`];
//!   requests have no body (GET only);
//! - [`MAX_IN_FLIGHT`] requests being answered at once, more are refused at once with
//!   `503 overloaded`; each must be answered within [`REQUEST_TIMEOUT`] (else `503
//!   timeout`);
//! - [`MAX_STORE_QUERIES`] store queries at once, on threads of their own at nice
//!   [`queries::QUERY_NICE`] (the capture goes first when the cores are short); the rest
//!   wait, within the request timeout;
//! - [`MAX_LIVE_CLIENTS`] live streams (`/api/v1/live`, [`live`]) at once, more are
//!   refused with `503 overloaded`; their feed holds [`LIVE_CAPACITY`] messages, a client
//!   further behind is told how many it skipped;
//! - a search's window and sizes: [`params`], [`crate::store::calls()`] and
//!   [`MAX_CALL_MESSAGES`]; free text (`q`) reads at most
//!   [`MAX_TEXT_SCAN`](crate::store::text::MAX_TEXT_SCAN) messages and says so
//!   ([`crate::store::text`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hep_transport::TlsConfig;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod access;
pub mod calls;
mod counts;
pub mod error;
pub mod live;
pub mod page;
pub mod params;
pub mod queries;
mod routes;

pub use routes::MAX_CALL_MESSAGES;

use crate::aliases::SharedAliases;
use crate::cluster::metrics::PeerMetrics;
use crate::cluster::{Cluster, ClusterConfig};
use crate::telemetry::metrics::Registry;

/// Where the API listens by default: loopback, port 9080.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9080));
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Requests being answered at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// Store queries running at once.
pub const MAX_STORE_QUERIES: usize = 4;
/// Live streams (`GET /api/v1/live`) at once.
pub const MAX_LIVE_CLIENTS: usize = 64;
/// Messages the live feed holds for its slowest client (a broadcast channel's capacity).
pub const LIVE_CAPACITY: usize = 4096;
/// How long a request may take to be answered (a live stream: to start).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What is shown instead of a token.
const REDACTED: &str = "<redacted>";

/// `[http]`: the API and page listener (see `docs/CONFIG.md`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct HttpConfig {
    /// Whether to serve at all (`enabled = false`, or `--http off`).
    pub enabled: bool,
    /// The address (`listen`, `--http ADDR`), default [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// `[http.tokens]`: each token and the capture ids it may read. Secrets: shown
    /// redacted by `check-config` and `Debug`.
    #[serde(serialize_with = "redact_tokens")]
    pub tokens: BTreeMap<String, Vec<u32>>,
    /// `cert_file` and `key_file`: serve HTTPS with this certificate chain and key (PEM).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTls>,
}

/// The certificate of an HTTPS listener (`[http] cert_file`, `key_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpTls {
    /// The certificate chain, PEM: the server's first, then intermediates.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN,
            tokens: BTreeMap::new(),
            tls: None,
        }
    }
}

fn redact_tokens<S: serde::Serializer>(
    tokens: &BTreeMap<String, Vec<u32>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(
        tokens
            .values()
            .enumerate()
            .map(|(i, ids)| (format!("{REDACTED} {}", i + 1), ids)),
    )
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("tokens", &self.tokens.values().collect::<Vec<_>>())
            .field("tls", &self.tls)
            .finish()
    }
}

impl HttpConfig {
    /// Refuses an API open to the network: bound to an address other than loopback
    /// without `[http.tokens]`.
    ///
    /// # Errors
    /// What is wrong and how to fix it.
    ///
    /// ```
    /// use hep_server::http::HttpConfig;
    /// let mut c = HttpConfig::default();
    /// assert!(c.check().is_ok());
    /// c.listen = "0.0.0.0:9080".parse().unwrap();
    /// assert!(c.check().unwrap_err().contains("[http.tokens]"));
    /// c.tokens.insert("secret".into(), vec![1]);
    /// assert!(c.check().is_ok());
    /// ```
    pub fn check(&self) -> Result<(), String> {
        if self.enabled && !self.listen.ip().is_loopback() && self.tokens.is_empty() {
            return Err(format!(
                "http listen {}: the API would be open to anyone who reaches this address; \
                 add [http.tokens] (\"TOKEN\" = [capture ids]) to the config, or listen on \
                 127.0.0.1 (`--http 127.0.0.1:9080`), or turn it off (`--http off`)",
                self.listen
            ));
        }
        Ok(())
    }
}

/// The API bound, not yet serving.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    /// Cancelled at shutdown: the connections finish, the live streams end.
    stop: CancellationToken,
}

/// Binds the API of `config` (`None` when it is off), reading the store in `store` (the
/// run's first `store:DIR` output; without one the API answers `503
/// store_unavailable`) and asking the peers of `cluster`, a call's KPIs read with `kpi`'s
/// timeouts, its request counter (and the peers' counters) registered in `registry`.
///
/// # Errors
/// [`HttpConfig::check`]; the TLS files cannot be read; the address cannot be bound (in
/// use).
pub async fn bind(
    config: &HttpConfig,
    store: Option<PathBuf>,
    live: Option<tokio::sync::broadcast::Sender<Arc<hep_transport::Received>>>,
    aliases: SharedAliases,
    cluster: &ClusterConfig,
    kpi: &crate::kpi::KpiConfig,
    registry: &Registry,
) -> anyhow::Result<Option<HttpServer>> {
    if !config.enabled {
        return Ok(None);
    }
    config.check().map_err(anyhow::Error::msg)?;
    let tls = match &config.tls {
        Some(t) => {
            let loaded = TlsConfig::from_pem_files(&t.cert_file, &t.key_file, None)
                .context("[http] cert_file, key_file")?;
            Some(TlsAcceptor::from(Arc::clone(loaded.server_config())))
        }
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("http listen {}", config.listen))?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let counts = Arc::new(counts::RequestCounts::default());
    registry.register(Arc::clone(&counts) as _);
    let peer_metrics = Arc::new(PeerMetrics::default());
    if !cluster.peers.is_empty() {
        registry.register(Arc::clone(&peer_metrics) as _);
    }
    let state = routes::AppState {
        store: store.map(Arc::new),
        readers: crate::store::Readers::new(),
        tokens: Arc::new(access::Tokens::new(&config.tokens)),
        queries: queries::QueryPool::start(MAX_STORE_QUERIES, MAX_IN_FLIGHT)
            .context("starting the store query threads")?,
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        counts,
        live,
        live_clients: Arc::new(Semaphore::new(MAX_LIVE_CLIENTS)),
        stop: CancellationToken::new(),
        aliases,
        cluster: Cluster::new(cluster.clone(), peer_metrics),
        kpi: Arc::new(kpi.clone()),
    };
    Ok(Some(HttpServer {
        listener,
        stop: state.stop.clone(),
        router: routes::router(state),
        addr,
        tls,
    }))
}

impl HttpServer {
    /// The address bound (port 0 resolved).
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` with TLS, else `http`.
    pub const fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets each connection
    /// finish the request it is answering (bounded by [`REQUEST_TIMEOUT`]) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let stop = self.stop.clone();
        let connections = TaskTracker::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES);
        tokio::pin!(shutdown);
        loop {
            // Limits before accept: over the bound, a connection waits in the backlog.
            let slot = tokio::select! {
                () = &mut shutdown => break,
                s = Arc::clone(&slots).acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::debug!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = TowerToHyperService::new(self.router.clone());
            let (stop, builder, tls) = (stop.clone(), builder.clone(), self.tls.clone());
            connections.spawn(async move {
                let _slot = slot;
                let Some(tls) = tls else {
                    return serve_connection(stream, builder, service, stop, peer).await;
                };
                // The handshake in the time a request head gets.
                match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, builder, service, stop, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "https handshake failed"),
                    Err(_) => tracing::debug!(%peer, "https handshake timed out"),
                }
            });
        }
        drop(self.listener);
        stop.cancel();
        connections.close();
        connections.wait().await;
    }
}

/// Serves HTTP/1.1 on one connection until it ends, or until `stop` (then the request
/// being answered is finished).
async fn serve_connection<I>(
    io: I,
    builder: http1::Builder,
    service: TowerToHyperService<Router>,
    stop: CancellationToken,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// `value` as a JSON response, with `<`, `>` and `&` written as `\u003c`, `\u003e` and
/// `\u0026`: the body stays inert even if something treats it as HTML (a SIP message
/// carrying `<script>`), as Go's encoder does. Those bytes only occur inside JSON strings,
/// where the escapes mean the same characters.
pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
    let bytes = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "http: a response could not be serialized");
            br#"{"error":{"code":"internal","message":"the response could not be serialized"}}"#
                .to_vec()
        }
    };
    let mut body = Vec::with_capacity(bytes.len());
    for b in bytes {
        match b {
            b'<' => body.extend_from_slice(b"\\u003c"),
            b'>' => body.extend_from_slice(b"\\u003e"),
            b'&' => body.extend_from_slice(b"\\u0026"),
            b => body.push(b),
        }
    }
    bytes_response(StatusCode::OK, "application/json; charset=utf-8", body)
}

/// A response of `body` with `content_type`, not cached, not sniffed.
pub(crate) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_escape_markup() {
        let r = json_response(&serde_json::json!({"payload": "<script>alert(1)&</script>"}));
        let body = futures_body(r);
        assert_eq!(
            body,
            r#"{"payload":"\u003cscript\u003ealert(1)\u0026\u003c/script\u003e"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(back["payload"], "<script>alert(1)&</script>");
    }

    fn futures_body(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
