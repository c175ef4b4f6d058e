//! `hep_tcp` (and the accept loop of `hep_tls`): HEPv3 frames back to back.
//!
//! # Connections
//! Each accepted connection takes a permit from a semaphore of
//! [`TcpConfig::max_connections`]. At the limit a new connection is reset at once and
//! counted (`max_connections`), as OpenSIPS's `tcp_max_connections` closes it. Holding
//! it in the kernel's backlog instead (mini-redis takes the permit before `accept()`)
//! hides a flood: nothing counts the peers waiting there, a well-behaved agent queues
//! behind every flood connection made before it, and once the backlog is full the
//! kernel drops handshakes unseen. Refused, an agent knows and reconnects, and the
//! operator sees the refusals. Failed `accept()` calls (e.g. out of file descriptors)
//! are backed off exponentially, 1 ms to 1 s. Each connection is one task.
//!
//! # Framing
//! A connection reads into a buffer and splits frames off it with
//! [`HepFrameCodec`](hep_proto::HepFrameCodec) (magic, then the u16 total length; a
//! zero-copy `Bytes` per frame), then decodes each frame on its own:
//! - a frame whose chunks are bad (but whose framing is sound) is counted under its
//!   [`DecodeError::label`](hep_proto::DecodeError::label) and skipped; the connection
//!   goes on with the next frame;
//! - a framing error (not `HEP3`/`EEP3`, a total length below 6 or above
//!   [`TcpConfig::max_frame_length`]) is counted the same way and closes the connection.
//!
//! There is no resync mode (scanning forward for the next `HEP3`). A stream that is out
//! of step has lost the frame boundary; the bytes after it may be the middle of a payload
//! that happens to contain `HEP3` (SIP bodies can carry anything), so "resynchronising"
//! would turn corruption into forged messages. The sender reconnects and starts clean.
//! OpenSIPS and heplify-server do not resync either (OpenSIPS stalls until a limit
//! closes the connection; we close at once, with a reason).
//!
//! # Limits (OpenSIPS names in parentheses)
//! - [`max_msg_chunks`](TcpConfig::max_msg_chunks) (`hep_max_msg_chunks`): every read
//!   that leaves a frame incomplete counts; the count resets when a frame completes; the
//!   connection is closed when it reaches the limit (0 = unlimited). A frame that needs
//!   more reads than the limit closes the connection: a slow-loris defence.
//! - [`frame_timeout`](TcpConfig::frame_timeout) (`tcp_max_msg_time`): a frame must
//!   complete this long after its first bytes arrived.
//! - [`idle_timeout`](TcpConfig::idle_timeout): no bytes at all for this long closes.
//! - [`max_frame_length`](TcpConfig::max_frame_length): checked from the header, before
//!   the frame is buffered.
//!
//! # Order and backpressure
//! Frames of one connection reach the service in order. Before each one the connection
//! waits for the service's `poll_ready` and reads nothing meanwhile: the socket buffers
//! fill and TCP slows the sender down. Time spent waiting for the service does not count
//! against the timeouts. Up to [`TcpConfig::max_in_flight`] answers are awaited at once,
//! oldest first (see the [listener docs](crate::listener)).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use super::config::{
    DEFAULT_BACKLOG, DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MSG_CHUNKS, DEFAULT_READ_BUFFER_SIZE, DEFAULT_TCP_MAX_IN_FLIGHT, TcpConfig,
};
use super::error::ListenError;
use super::shared::{Shared, next_backoff};
use super::stream::{Handshake, ReadReady, serve_stream};
use crate::{ClientIdentity, HepService, ListenSpec, RecvInfo, RejectReason};

/// Binds a listening TCP socket (`SO_REUSEADDR`, `IPV6_V6ONLY` for IPv6).
pub(super) fn bind(spec: ListenSpec, config: &TcpConfig) -> Result<TcpListener, ListenError> {
    let err = |what| move |source| ListenError::Socket { spec, what, source };
    let addr = spec.addr;
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(err("creating the socket"))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err("setting IPV6_V6ONLY"))?;
    }
    sock.set_reuse_address(true)
        .map_err(err("setting SO_REUSEADDR"))?;
    sock.set_nonblocking(true)
        .map_err(err("making the socket non-blocking"))?;
    sock.bind(&addr.into())
        .map_err(|source| ListenError::Bind { spec, source })?;
    let backlog = i32::try_from(config.backlog).unwrap_or(i32::MAX);
    sock.listen(backlog).map_err(err("listen()"))?;
    TcpListener::from_std(sock.into()).map_err(err("registering the socket with tokio"))
}

/// The accept loop (see the [module docs](self)); `handshake` makes it `hep_tcp`
/// ([`Plain`]) or `hep_tls`.
pub(super) async fn run<S, H>(
    listener: TcpListener,
    handshake: H,
    shared: Arc<Shared>,
    service: S,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<(), ListenError>
where
    S: HepService,
    H: Handshake,
{
    let limit = Arc::new(Semaphore::new(shared.config.tcp.max_connections.max(1)));
    let mut conns = JoinSet::new();
    let mut backoff = Duration::ZERO;
    loop {
        // Reap finished connections so the set does not grow.
        while let Some(joined) = conns.try_join_next() {
            log_panic(&shared, joined);
        }
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::ZERO;
                if let Some(allow) = &shared.config.allow
                    && !allow.contains(peer.ip())
                {
                    // Before a slot is taken: strangers never count against the limit.
                    // Closed before a TLS handshake or a read.
                    refuse_source(&shared, stream, peer);
                    continue;
                }
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    refuse_over_limit(&shared, stream, peer);
                    continue;
                };
                shared.stats.record_accepted();
                conns.spawn(connection(
                    stream,
                    peer,
                    handshake.clone(),
                    shared.clone(),
                    service.clone(),
                    stop.clone(),
                    hard_stop.clone(),
                    permit,
                ));
            }
            Err(e) => {
                shared.stats.record_accept_error();
                if is_connection_error(&e) {
                    // That peer is gone before we got to it; the listener is fine.
                    tracing::debug!(listener = %shared.spec, error = %e, "accept failed");
                    continue;
                }
                if let Some(suppressed) = shared.warn_service.check() {
                    tracing::warn!(listener = %shared.spec, suppressed, error = %e, "accept failed; backing off");
                }
                backoff = next_backoff(
                    backoff.max(Duration::from_micros(500)),
                    Duration::from_secs(1),
                );
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
    // Close the listening socket: new peers are refused from now on.
    drop(listener);
    if !conns.is_empty() {
        tracing::info!(listener = %shared.spec, connections = conns.len(), "stopped accepting; waiting for connections to finish");
    }
    while let Some(joined) = conns.join_next().await {
        log_panic(&shared, joined);
    }
    Ok(())
}

/// Closes a connection beyond `max_connections` at once, counted and logged
/// (rate-limited). With `SO_LINGER` 0 the close is a reset: nothing of the peer's is
/// read, the peer learns at once that it was refused (and may retry), and no
/// `TIME_WAIT` is left behind for a flood of them.
#[cold]
fn refuse_over_limit(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    shared.stats.record_rejected(RejectReason::MaxConnections);
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    if let Some(suppressed) = shared.warn_service.check() {
        tracing::warn!(
            listener = %shared.spec,
            %peer,
            max_connections = shared.config.tcp.max_connections,
            reason = RejectReason::MaxConnections.label(),
            suppressed,
            "connection limit reached: refused a new connection"
        );
    }
}

/// Closes a connection from outside the allowlist at once, counted and logged
/// (rate-limited). With `SO_LINGER` 0 the close is a reset: nothing of the peer's is
/// read, and no `TIME_WAIT` is left behind for a peer that keeps trying.
#[cold]
fn refuse_source(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    shared.stats.record_rejected(RejectReason::SourceNotAllowed);
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    if let Some(suppressed) = shared.warn_input.check() {
        tracing::warn!(
            listener = %shared.spec,
            %peer,
            reason = RejectReason::SourceNotAllowed.label(),
            suppressed,
            "refused a connection from a source outside the listener's allowlist"
        );
    }
}

fn log_panic(shared: &Shared, joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::error!(listener = %shared.spec, error = %e, "connection task panicked");
        shared.stats.record_closed();
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection's task: the handshake (TLS, or none), then the frame loop.
#[allow(clippy::too_many_arguments)]
async fn connection<S, H>(
    stream: TcpStream,
    peer: SocketAddr,
    handshake: H,
    shared: Arc<Shared>,
    service: S,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) where
    S: HepService,
    H: Handshake,
{
    let info = RecvInfo::new(shared.spec.transport, peer, shared.spec.addr);
    tracing::debug!(listener = %shared.spec, %peer, "connection accepted");
    // A plain TCP connection's task holds nothing of TLS: `Plain` is a type of its own,
    // and the TLS session and handshake are large (unboxed in one task for both kinds,
    // they made every connection's task as large as a TLS one's: 5.5 KB instead of 2 KB;
    // 10,000 idle plain TCP connections took 107 MB instead of 73 MB, docs/BENCHMARKS.md).
    if let Some((io, client)) = handshake.handshake(stream, &info, &shared, &stop).await {
        let info = info.with_client(client);
        serve_stream(io, info, &shared, service, &stop, &hard_stop).await;
    }
    shared.stats.record_closed();
    drop(permit);
}

/// `hep_tcp`: no handshake; frames are read from the socket itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;

    fn handshake(
        &self,
        stream: TcpStream,
        _: &RecvInfo,
        _: &Shared,
        _: &CancellationToken,
    ) -> impl Future<Output = Option<(TcpStream, Option<Arc<ClientIdentity>>)>> + Send {
        std::future::ready(Some((stream, None)))
    }
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Self::poll_read_ready(self, cx)
    }
}
