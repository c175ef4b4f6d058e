//! Listeners: bind a [`ListenSpec`], then hand every received message to a
//! `tower::Service<Received>` until a shutdown future completes.
//!
//! ```text
//!  hep_udp   socket ×N ──recvmmsg batch──┐
//!  hep_tcp   accept ──task per connection┼─► decode ─► service.ready() ─► service.call(Received)
//!  hep_tls   accept ──handshake──────────┘   (bad input: counted, logged rate-limited)
//! ```
//!
//! Bind first, so that bind errors are reported before anything runs and a caller that
//! binds port 0 learns the port; then run:
//!
//! ```no_run
//! use std::convert::Infallible;
//! use hep_transport::{Listener, ListenerConfig, Received};
//! use hep_transport::layer::overload::OverloadDropLayer;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = Listener::bind("hep_udp:0.0.0.0:9060".parse()?, ListenerConfig::default()).await?;
//! println!("listening on {}", listener.local_addr());
//! let sink = tower::service_fn(|msg: Received| async move {
//!     println!("{} from {}", msg.message.payload.bytes().len(), msg.info.peer);
//!     Ok::<_, Infallible>(())
//! });
//! // UDP cannot push back: drop (and count) what the service cannot take in time.
//! let service = ServiceBuilder::new()
//!     .layer(OverloadDropLayer::new(listener.stats().clone()))
//!     .buffer(8192)
//!     .service(sink);
//! listener.run(service, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Backpressure
//! - TCP/TLS: a connection waits for `poll_ready` before each message and stops reading
//!   meanwhile, so the kernel's buffers fill and the sender is slowed down: nothing is lost.
//! - UDP: a datagram cannot be slowed down. The UDP listener waits for `poll_ready` too,
//!   but while it waits the kernel drops datagrams without anyone counting them. Wrap the
//!   service in [`OverloadDrop`](crate::layer::overload::OverloadDrop) (always ready; drops
//!   and counts `dropped{reason="overload"}` when the inner service is not ready), usually
//!   around a `Buffer` whose capacity is the burst you accept.
//!
//! # Who may send
//! - [`ListenerConfig::allow`] (a [`ListenOn`]'s `;allow=`): agents from other addresses
//!   are refused before any work: datagrams before they are copied or decoded,
//!   connections right after `accept()` (reset, before a TLS handshake or a read); counted
//!   as `rejected{reason="source_not_allowed"}`.
//! - `hep_tls` with client certificates: each message's [`RecvInfo::client`] names the
//!   verified certificate ([`ClientIdentity`](crate::ClientIdentity)), for a service to
//!   check; [`TlsConfig::with_client_check`] refuses unknown certificates after the
//!   handshake (`rejected{reason="client_cert_not_allowed"}`).
//!
//! # Shutdown
//! When the shutdown future completes, a listener stops accepting (the listening socket is
//! closed) and stops receiving datagrams; a connection finishes the frame it is reading
//! (within `frame_timeout`), hands on what it has, waits for the pending answers and
//! closes. After [`ListenerConfig::shutdown_grace`] whatever is still pending is dropped and
//! counted (`dropped{reason="shutdown"}`) and [`Listener::run`] returns.

mod dispatch;
mod warn;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hep_proto::DecodeOptions;
use tokio_util::sync::CancellationToken;
use tower::Service;

pub(crate) use dispatch::Dispatcher;
pub use warn::RateLimitedWarn;

use crate::tcp::{self, TcpConfig};
use crate::tls::{TlsConfig, TlsConfigError};
use crate::udp::{self, UdpConfig};
use crate::{BoxError, ListenSpec, ListenerStats, Received, SourceAllowlist, Transport};
#[cfg(doc)]
use crate::{ListenOn, RecvInfo};

/// The default [`ListenerConfig::shutdown_grace`]: 5 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a listener receives: limits, timeouts, buffers. `Default` gives the documented
/// defaults; change fields as needed.
///
/// ```
/// use std::time::Duration;
/// use hep_transport::ListenerConfig;
///
/// let mut config = ListenerConfig::default();
/// config.tcp.max_msg_chunks = 0; // unlimited, as hep_max_msg_chunks = 0
/// config.tcp.idle_timeout = Duration::from_secs(300);
/// config.udp.recv_buffer_size = 16 << 20;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Decode limits (inflate cap, `EEP3`). Default: [`DecodeOptions::default`].
    pub decode: DecodeOptions,
    /// How long a shutdown waits for connections and pending answers before dropping
    /// them (counted). Default: [`DEFAULT_SHUTDOWN_GRACE`] (5 s).
    pub shutdown_grace: Duration,
    /// `hep_udp` settings.
    pub udp: UdpConfig,
    /// `hep_tcp` and `hep_tls` settings.
    pub tcp: TcpConfig,
    /// `hep_tls` certificate, key and client verification. Required for a `hep_tls` spec.
    pub tls: Option<TlsConfig>,
    /// The agents' networks this listener accepts (the `;allow=` of a [`ListenOn`]);
    /// `None` (the default) accepts everyone. Other sources are refused before any work:
    /// datagrams before decoding, connections at accept (before a TLS handshake or a
    /// read), each counted as `rejected{reason="source_not_allowed"}`.
    pub allow: Option<SourceAllowlist>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            decode: DecodeOptions::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            udp: UdpConfig::default(),
            tcp: TcpConfig::default(),
            tls: None,
            allow: None,
        }
    }
}

impl ListenerConfig {
    /// This config with TLS settings (for `hep_tls` specs).
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// This config accepting agents from `allow` only (see [`allow`](Self::allow)).
    #[must_use]
    pub fn with_allow(mut self, allow: Option<SourceAllowlist>) -> Self {
        self.allow = allow;
        self
    }
}

/// Why a listener could not be set up or stopped by itself.
///
/// The underlying error is the [`source`](std::error::Error::source), not repeated in the
/// message: print the chain (`{:#}` with anyhow) to see both.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound (in use, not local, no permission ...).
    #[error("cannot listen on {spec}: bind failed")]
    Bind {
        /// What was being bound.
        spec: ListenSpec,
        /// The OS error.
        source: io::Error,
    },
    /// A socket could not be created or configured.
    #[error("cannot listen on {spec}: {what}")]
    Socket {
        /// The listener.
        spec: ListenSpec,
        /// The step that failed, e.g. "setting SO_REUSEPORT".
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A `hep_tls` spec without [`ListenerConfig::tls`].
    #[error("cannot listen on {spec}: hep_tls needs a certificate and a key (ListenerConfig::tls)")]
    MissingTls {
        /// The listener.
        spec: ListenSpec,
    },
    /// The TLS certificate, key or CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The service failed in `poll_ready` (it can take no more requests).
    #[error("listener {spec} stopped: the service failed")]
    Service {
        /// The listener.
        spec: ListenSpec,
        /// The service's error.
        source: BoxError,
    },
}

/// What every worker and connection of one listener shares (one `Arc` clone per worker
/// or connection, never per message).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The spec with the bound address (the actual port when port 0 was asked for).
    pub(crate) spec: ListenSpec,
    pub(crate) config: ListenerConfig,
    pub(crate) stats: Arc<ListenerStats>,
    /// Log budget for bad input (datagrams, frames, connections closed for cause).
    pub(crate) warn_input: RateLimitedWarn,
    /// Log budget for service failures and overload.
    pub(crate) warn_service: RateLimitedWarn,
}

/// The bound sockets.
enum Bound {
    Udp(Vec<udp::UdpSock>),
    Tcp(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
}

/// A bound listener, not yet running (see the [module docs](self)).
pub struct Listener {
    shared: Arc<Shared>,
    bound: Bound,
    recv_buffer_size: Option<usize>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("spec", &self.shared.spec)
            .field("recv_buffer_size", &self.recv_buffer_size)
            .finish_non_exhaustive()
    }
}

// ===== impl Listener =====

impl Listener {
    /// Binds `spec` with new counters (see [`stats`](Self::stats)).
    ///
    /// # Errors
    /// The address cannot be bound or configured, or (`hep_tls`) the TLS settings are
    /// missing.
    pub async fn bind(spec: ListenSpec, config: ListenerConfig) -> Result<Self, ListenError> {
        Self::bind_with_stats(spec, config, Arc::new(ListenerStats::new())).await
    }

    /// Binds `spec`, counting into `stats` (which may be shared with other listeners).
    ///
    /// Logs (info) what was bound; for UDP also the receive buffer the kernel granted,
    /// with a warning when it is below the requested size.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub async fn bind_with_stats(
        spec: ListenSpec,
        config: ListenerConfig,
        stats: Arc<ListenerStats>,
    ) -> Result<Self, ListenError> {
        let (bound, local, recv_buffer_size) = match spec.transport {
            Transport::Udp => {
                let (socks, local, rcvbuf) = udp::bind(spec, &config.udp)?;
                (Bound::Udp(socks), local, Some(rcvbuf))
            }
            Transport::Tcp => {
                let l = tcp::bind(spec, &config.tcp)?;
                let local = local_addr(spec, &l)?;
                (Bound::Tcp(l), local, None)
            }
            Transport::Tls => {
                let tls = config
                    .tls
                    .as_ref()
                    .ok_or(ListenError::MissingTls { spec })?;
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config().clone());
                let l = tcp::bind(spec, &config.tcp)?;
                let local = local_addr(spec, &l)?;
                (Bound::Tls(l, acceptor), local, None)
            }
        };
        let spec = ListenSpec::new(spec.transport, local);
        // `debug`: the program says where it listens, once, in its own words (hep-server
        // announces each listener itself); this line is for debugging the library.
        match &config.allow {
            Some(allow) => {
                tracing::debug!(listener = %spec, recv_buffer_size, %allow, "listening; agents from the allowed networks only");
            }
            None => tracing::debug!(listener = %spec, recv_buffer_size, "listening"),
        }
        Ok(Self {
            shared: Arc::new(Shared {
                spec,
                config,
                stats,
                warn_input: RateLimitedWarn::per_second(),
                warn_service: RateLimitedWarn::per_second(),
            }),
            bound,
            recv_buffer_size,
        })
    }

    /// The bound address (with the actual port if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.spec.addr
    }

    /// The spec with the bound address.
    pub fn spec(&self) -> ListenSpec {
        self.shared.spec
    }

    /// The agents' networks it accepts, if restricted ([`ListenerConfig::allow`]).
    pub fn allow(&self) -> Option<&SourceAllowlist> {
        self.shared.config.allow.as_ref()
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.shared.stats
    }

    /// UDP: the receive buffer (`SO_RCVBUF`) the kernel granted, as it reports it (Linux
    /// reports twice the usable size and caps requests at `net.core.rmem_max`). The
    /// smallest over the sockets. `None` for TCP/TLS.
    pub fn recv_buffer_size(&self) -> Option<usize> {
        self.recv_buffer_size
    }

    /// Receives until `shutdown` completes, handing each message to `service` (see the
    /// [module docs](self) for backpressure and shutdown).
    ///
    /// Bad input never stops a listener: it is counted in [`stats`](Self::stats) and
    /// logged (rate-limited).
    ///
    /// # Errors
    /// [`ListenError::Service`] if the service fails in `poll_ready` on a UDP listener
    /// (a TCP/TLS connection whose service clone fails is closed; the listener goes on).
    pub async fn run<S, F>(self, service: S, shutdown: F) -> Result<(), ListenError>
    where
        S: Service<Received, Response = ()> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        F: Future<Output = ()>,
    {
        let stop = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let shared = self.shared;
        let spec = shared.spec;
        let grace = shared.config.shutdown_grace;
        let mut work = pin!(run_bound(
            self.bound,
            shared,
            service,
            stop.clone(),
            hard_stop.clone()
        ));
        tokio::select! {
            res = &mut work => return res,
            () = shutdown => {}
        }
        tracing::info!(listener = %spec, grace = ?grace, "shutting down: finishing current frames and pending answers");
        stop.cancel();
        let res = match tokio::time::timeout(grace, &mut work).await {
            Ok(res) => res,
            Err(_) => {
                tracing::warn!(listener = %spec, "shutdown grace ended: dropping what is still pending");
                hard_stop.cancel();
                work.await
            }
        };
        tracing::info!(listener = %spec, "stopped");
        res
    }
}

async fn run_bound<S>(
    bound: Bound,
    shared: Arc<Shared>,
    service: S,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<(), ListenError>
where
    S: Service<Received, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    match bound {
        Bound::Udp(socks) => udp::run(socks, shared, service, stop, hard_stop).await,
        Bound::Tcp(l) => tcp::run(l, None, shared, service, stop, hard_stop).await,
        Bound::Tls(l, acceptor) => {
            tcp::run(l, Some(acceptor), shared, service, stop, hard_stop).await
        }
    }
}

/// Binds `spec`, counts into `stats`, and receives until `shutdown` completes: the
/// one-call form of [`Listener::bind_with_stats`] + [`Listener::run`].
///
/// # Errors
/// As [`Listener::bind`] and [`Listener::run`].
pub async fn serve<S, F>(
    spec: ListenSpec,
    config: ListenerConfig,
    service: S,
    stats: Arc<ListenerStats>,
    shutdown: F,
) -> Result<(), ListenError>
where
    S: Service<Received, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    Listener::bind_with_stats(spec, config, stats)
        .await?
        .run(service, shutdown)
        .await
}

fn local_addr(spec: ListenSpec, l: &tokio::net::TcpListener) -> Result<SocketAddr, ListenError> {
    l.local_addr().map_err(|source| ListenError::Socket {
        spec,
        what: "reading the bound address",
        source,
    })
}

/// Doubles `backoff` up to `max`.
pub(crate) fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    backoff.saturating_mul(2).min(max)
}
