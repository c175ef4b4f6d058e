//! Listeners: bind a [`ListenSpec`], then hand every received message to a
//! [`HepService`] (a `tower::Service<Received>`) until a shutdown future completes.
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
//! The service is cloned for each UDP worker and each TCP/TLS connection: see
//! [`Listener::run`] for what that means for its state.
//!
//! The settings and what each kind of listener does with them: [`udp`] (receive path,
//! receive buffer, binding), [`tcp`] (connections, framing, limits and their OpenSIPS
//! names), [`tls`] (handshake, client certificates).
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

mod config;
mod dispatch;
mod error;
mod shared;
mod stream;
pub mod tcp;
pub mod tls;
mod tls_config;
pub mod udp;
mod warn;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{DEFAULT_SHUTDOWN_GRACE, ListenerConfig, TcpConfig, UdpConfig};
pub use error::ListenError;
pub use tls_config::{ClientCheck, FileRole, TlsConfig, TlsConfigError};
pub use warn::RateLimitedWarn;

use crate::{HepService, ListenSpec, ListenerStats, SourceAllowlist, Transport};
#[cfg(doc)]
use crate::{ListenOn, RecvInfo};
use shared::Shared;

// Layout, bottom to top (each module uses only those before it):
// - `config`, `tls_config`: plain settings; `error`: `ListenError`; `warn`: log budgets.
// - `shared`: what a listener's workers and connections share (`Shared`).
// - `dispatch`: handing messages to the service (`Dispatcher`).
// - `udp`: the datagram workers. `stream`: the frame loop of a byte stream, and the
//   `Handshake` a connection goes through first.
// - `tcp`: binding and the accept loop (a `Plain` handshake); `tls`: the TLS handshake.
// - this module: `Listener` binds, and runs the kind its spec names.

/// The bound sockets.
enum Bound {
    Udp(Vec<udp::UdpSock>),
    Tcp(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, tls::TlsHandshake),
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
                let handshake = tls::TlsHandshake::new(tls);
                let l = tcp::bind(spec, &config.tcp)?;
                let local = local_addr(spec, &l)?;
                (Bound::Tls(l, handshake), local, None)
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
            shared: Arc::new(Shared::new(spec, config, stats)),
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
    /// # The service is cloned
    /// `service` is cloned once for each UDP socket's worker ([`UdpConfig::sockets`]) and
    /// once for each accepted TCP/TLS connection, never per message; each clone is polled
    /// by one task only, in the order its messages arrived. So a field of the service is
    /// per worker or per connection: a count, a cache or a connection pool that must be
    /// one for the whole listener is shared between the clones through an `Arc` (or the
    /// service is a handle on a task of its own, like a `tower::buffer::Buffer`).
    ///
    /// ```no_run
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use hep_transport::{Listener, ListenerConfig, Received};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = Listener::bind("hep_tcp:127.0.0.1:9060".parse()?, ListenerConfig::default()).await?;
    /// // One counter for all connections: every clone of the closure holds the same Arc.
    /// let messages = Arc::new(AtomicU64::new(0));
    /// let counted = messages.clone();
    /// let service = tower::service_fn(move |_: Received| {
    ///     counted.fetch_add(1, Ordering::Relaxed);
    ///     std::future::ready(Ok::<_, Infallible>(()))
    /// });
    /// listener.run(service, async { let _ = tokio::signal::ctrl_c().await; }).await?;
    /// println!("{} messages", messages.load(Ordering::Relaxed));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ListenError::Service`] if the service fails in `poll_ready` on a UDP listener
    /// (a TCP/TLS connection whose service clone fails is closed; the listener goes on).
    pub async fn run<S, F>(self, service: S, shutdown: F) -> Result<(), ListenError>
    where
        S: HepService,
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
    S: HepService,
{
    match bound {
        Bound::Udp(socks) => udp::run(socks, shared, service, stop, hard_stop).await,
        Bound::Tcp(l) => tcp::run(l, tcp::Plain, shared, service, stop, hard_stop).await,
        Bound::Tls(l, handshake) => tcp::run(l, handshake, shared, service, stop, hard_stop).await,
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
    S: HepService,
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
