//! `hep_tcp` (and the stream half of `hep_tls`): HEPv3 frames back to back.
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
//! [`HepFrameCodec`] (magic, then the u16 total length; a zero-copy `Bytes` per frame),
//! then decodes each frame on its own:
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
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hep_proto::{
    DecodeError, HEP3_HEADER_LEN, HepCodecError, HepFrameCodec, HepMessage, HepVersion,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::listener::{Dispatcher, Shared, next_backoff};
use crate::{BoxError, DropReason, ListenError, ListenSpec, Received, RecvInfo, RejectReason};

/// The default [`TcpConfig::max_msg_chunks`]: 32, as OpenSIPS's `hep_max_msg_chunks`.
pub const DEFAULT_MAX_MSG_CHUNKS: u32 = 32;
/// The default [`TcpConfig::idle_timeout`]: 120 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The default [`TcpConfig::frame_timeout`]: 4 s, as OpenSIPS's `tcp_max_msg_time`.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(4);
/// The default [`TcpConfig::max_connections`]: 4096.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The default [`TcpConfig::read_buffer_size`]: 64 KiB.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 64 * 1024;
/// The default [`TcpConfig::max_in_flight`] per connection: 64.
pub const DEFAULT_TCP_MAX_IN_FLIGHT: usize = 64;
/// The default [`TcpConfig::backlog`]: 1024.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// A read with less room than this left in the buffer makes room first.
const MIN_READ: usize = 4 * 1024;
/// The first read of a connection (or after it was idle) is this small at most, so that
/// an idle connection holds little memory.
const FIRST_READ: usize = 8 * 1024;

/// `hep_tcp` / `hep_tls` settings (part of [`ListenerConfig`](crate::ListenerConfig)).
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Reads a frame may take before the connection is closed (`hep_max_msg_chunks`;
    /// 0 = unlimited). Default: [`DEFAULT_MAX_MSG_CHUNKS`] (32).
    pub max_msg_chunks: u32,
    /// No bytes for this long closes the connection. Default: [`DEFAULT_IDLE_TIMEOUT`]
    /// (120 s).
    pub idle_timeout: Duration,
    /// A frame must complete within this time of its first bytes. Default:
    /// [`DEFAULT_FRAME_TIMEOUT`] (4 s).
    pub frame_timeout: Duration,
    /// Longest frame accepted, checked from its header (at most 65535, HEP3's u16).
    /// Default: 65535.
    pub max_frame_length: usize,
    /// Connections served at once; more are reset at accept and counted
    /// ([`RejectReason::MaxConnections`]). Default: [`DEFAULT_MAX_CONNECTIONS`] (4096).
    pub max_connections: usize,
    /// Bytes a busy connection reads at once. Default: [`DEFAULT_READ_BUFFER_SIZE`]
    /// (64 KiB).
    pub read_buffer_size: usize,
    /// Answers a connection awaits at once, oldest first (1 = one message at a time).
    /// Default: [`DEFAULT_TCP_MAX_IN_FLIGHT`] (64).
    pub max_in_flight: usize,
    /// `listen()` backlog. Default: [`DEFAULT_BACKLOG`] (1024).
    pub backlog: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_msg_chunks: DEFAULT_MAX_MSG_CHUNKS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            max_frame_length: hep_proto::codec::MAX_FRAME_LENGTH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            max_in_flight: DEFAULT_TCP_MAX_IN_FLIGHT,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// Binds a listening TCP socket (`SO_REUSEADDR`, `IPV6_V6ONLY` for IPv6).
pub(crate) fn bind(spec: ListenSpec, config: &TcpConfig) -> Result<TcpListener, ListenError> {
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

/// The accept loop (see the [module docs](self)); `tls` makes it `hep_tls`.
pub(crate) async fn run<S>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
                    tls.clone(),
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

/// One connection's task: TLS handshake if any, then the frame loop.
#[allow(clippy::too_many_arguments)]
async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    service: S,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) where
    S: Service<Received, Response = ()>,
    S::Error: Into<BoxError>,
{
    let info = RecvInfo::new(shared.spec.transport, peer, shared.spec.addr);
    tracing::debug!(listener = %shared.spec, %peer, "connection accepted");
    match tls {
        None => serve_stream(stream, info, &shared, service, &stop, &hard_stop).await,
        Some(acceptor) => {
            // Boxed: the TLS session and handshake are large, and unboxed they made every
            // connection's task as large as a TLS one's (5.5 KB instead of 2 KB; 10,000
            // idle plain TCP connections took 107 MB instead of 73 MB, docs/BENCHMARKS.md).
            Box::pin(async {
                let accepted =
                    crate::tls::handshake(&acceptor, stream, &info, &shared, &stop).await;
                if let Some((stream, client)) = accepted {
                    let info = info.with_client(client);
                    serve_stream(stream, info, &shared, service, &stop, &hard_stop).await;
                }
            })
            .await;
        }
    }
    shared.stats.record_closed();
    drop(permit);
}

/// Whether a stream can say it is readable without being read: lets an idle connection
/// give its read buffer back (a TLS stream cannot tell: its records may already be
/// buffered).
pub(crate) trait ReadReady {
    /// `Ready` when a read would not wait (or it cannot tell).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Self::poll_read_ready(self, cx)
    }
}

/// Why a connection ended.
enum End {
    /// The peer closed it between frames.
    Eof,
    /// A read failed between frames (e.g. the peer reset): nothing was lost.
    Reset(io::Error),
    /// The listener is shutting down.
    Shutdown,
    /// Closed for a transport-level reason (counted here).
    Closed(RejectReason, Option<io::Error>),
    /// A framing error (already counted under its decode label).
    Framing(DecodeError),
    /// The service failed in `poll_ready`.
    ServiceFailed(BoxError),
}

/// Runs the frame loop on an established stream until it ends, then logs why.
pub(crate) async fn serve_stream<IO, S>(
    io: IO,
    info: RecvInfo,
    shared: &Arc<Shared>,
    service: S,
    stop: &CancellationToken,
    hard_stop: &CancellationToken,
) where
    IO: AsyncRead + ReadReady + Unpin,
    S: Service<Received, Response = ()>,
    S::Error: Into<BoxError>,
{
    let tcp = &shared.config.tcp;
    let peer = info.peer;
    let mut codec = HepFrameCodec::new();
    codec.set_max_frame_length(tcp.max_frame_length);
    codec.set_accept_eep3(shared.config.decode.accept_eep3());
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        filled: false,
        codec,
        info,
        dispatcher: Dispatcher::new(service, shared.clone(), tcp.max_in_flight, false),
        shared,
    };
    let end = tokio::select! {
        biased;
        () = hard_stop.cancelled() => None,
        end = conn.run(stop) => Some(end),
    };
    conn.dispatcher.flush_counts();
    let Some(end) = end else {
        shared
            .stats
            .record_dropped(DropReason::Shutdown, conn.dispatcher.pending() as u64);
        if !conn.buf.is_empty() {
            shared.stats.record_rejected(RejectReason::Truncated);
        }
        return;
    };
    let spec = &shared.spec;
    match end {
        End::Eof => tracing::debug!(listener = %spec, %peer, "connection closed by the peer"),
        End::Reset(e) => {
            tracing::debug!(listener = %spec, %peer, error = %e, "connection ended between frames");
        }
        End::Shutdown => tracing::debug!(listener = %spec, %peer, "connection closed: shutdown"),
        End::Closed(reason, error) => {
            shared.stats.record_rejected(reason);
            if let Some(suppressed) = shared.warn_input.check() {
                let why = describe(reason, &shared.config.tcp);
                match error {
                    Some(e) => {
                        tracing::warn!(listener = %spec, %peer, reason = reason.label(), suppressed, "closing connection: {why}: {e}")
                    }
                    None => {
                        tracing::warn!(listener = %spec, %peer, reason = reason.label(), suppressed, "closing connection: {why}")
                    }
                }
            }
        }
        End::Framing(e) => {
            if let Some(suppressed) = shared.warn_input.check() {
                tracing::warn!(
                    listener = %spec,
                    %peer,
                    reason = e.label(),
                    suppressed,
                    "closing connection: {e}; the stream is out of step (no resync)"
                );
            }
        }
        End::ServiceFailed(e) => {
            if let Some(suppressed) = shared.warn_service.check() {
                tracing::warn!(listener = %spec, %peer, suppressed, error = %e, "closing connection: the service failed");
            }
        }
    }
}

fn describe(reason: RejectReason, config: &TcpConfig) -> String {
    match reason {
        RejectReason::MaxMsgChunks => format!(
            "a frame took {} reads without completing (max_msg_chunks)",
            config.max_msg_chunks
        ),
        RejectReason::FrameTimeout => format!(
            "a frame did not complete within {:?} (frame_timeout)",
            config.frame_timeout
        ),
        RejectReason::IdleTimeout => {
            format!("no bytes for {:?} (idle_timeout)", config.idle_timeout)
        }
        RejectReason::Truncated => "the peer closed the connection in the middle of a frame".into(),
        RejectReason::TlsHandshake => "TLS handshake failed".into(),
        RejectReason::ClientCertNotAllowed => {
            "the client certificate is not one the listener knows".into()
        }
        _ => reason.label().into(),
    }
}

struct Conn<'a, IO, S>
where
    S: Service<Received>,
{
    io: IO,
    /// Bytes read and not yet framed: at most one incomplete frame between reads.
    buf: BytesMut,
    /// The last read filled all the room it had (see [`read_some`]).
    filled: bool,
    codec: HepFrameCodec,
    info: RecvInfo,
    dispatcher: Dispatcher<S>,
    shared: &'a Arc<Shared>,
}

impl<IO, S> Conn<'_, IO, S>
where
    IO: AsyncRead + ReadReady + Unpin,
    S: Service<Received, Response = ()>,
    S::Error: Into<BoxError>,
{
    async fn run(&mut self, stop: &CancellationToken) -> End {
        let shared = self.shared;
        let tcp = &shared.config.tcp;
        let mut attempts: u32 = 0;
        let mut frame_deadline: Option<Instant> = None;
        let mut idle_deadline = Instant::now() + tcp.idle_timeout;
        let mut sleep = pin!(tokio::time::sleep_until(idle_deadline));
        let mut stopping = false;
        loop {
            let deadline = frame_deadline.map_or(idle_deadline, |f| f.min(idle_deadline));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            let limit = stopping.then(|| missing_of_current_frame(&self.buf));
            let read = tokio::select! {
                biased;
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    if self.buf.is_empty() {
                        self.dispatcher.drain().await;
                        return End::Shutdown;
                    }
                    // Finish the frame being read (within frame_timeout), then close.
                    continue;
                }
                () = &mut sleep => {
                    let reason = if frame_deadline.is_some_and(|f| f <= Instant::now()) {
                        RejectReason::FrameTimeout
                    } else {
                        RejectReason::IdleTimeout
                    };
                    self.dispatcher.drain().await;
                    return End::Closed(reason, None);
                }
                () = self.dispatcher.drain(), if self.dispatcher.has_in_flight() => continue,
                // Stopping: read only what the frame being read still needs, so that a
                // peer that keeps sending cannot hold the connection open.
                read = read_some(
                    &mut self.io,
                    &mut self.buf,
                    &mut self.filled,
                    tcp.read_buffer_size,
                    limit,
                ) => read,
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.dispatcher.drain().await;
                    if self.buf.is_empty() {
                        return End::Reset(e);
                    }
                    return End::Closed(RejectReason::Truncated, Some(e));
                }
            };
            if n == 0 {
                self.dispatcher.drain().await;
                if self.buf.is_empty() {
                    return End::Eof;
                }
                return End::Closed(RejectReason::Truncated, None);
            }
            shared.stats.record_bytes(n as u64);

            let mut completed = false;
            loop {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(frame)) => {
                        completed = true;
                        // Ready first, then decode straight into the call (see
                        // `Dispatcher::poll_ready`).
                        let ready = std::future::poll_fn(|cx| self.dispatcher.poll_ready(cx)).await;
                        if let Err(e) = ready {
                            if self.decode(&frame).is_some() {
                                shared.stats.record_dropped(DropReason::ServiceError, 1);
                            }
                            return End::ServiceFailed(e);
                        }
                        if let Some(message) = self.decode(&frame) {
                            self.dispatcher
                                .call(Received::new(message, frame, self.info.clone()));
                        }
                    }
                    Ok(None) => break,
                    Err(HepCodecError::Decode(e)) => {
                        shared.stats.record_decode_error(&e);
                        self.dispatcher.drain().await;
                        return End::Framing(e);
                    }
                    Err(e) => {
                        // Only `Decode` errors come out of framing bytes in memory.
                        self.dispatcher.drain().await;
                        return End::Reset(io::Error::other(e));
                    }
                }
            }
            self.dispatcher.flush_counts();

            // Taken after the frames were handed on: waiting for the service is not the
            // peer's fault and does not count against its timeouts.
            let now = Instant::now();
            idle_deadline = now + tcp.idle_timeout;
            if completed {
                attempts = 0;
                frame_deadline = None;
            }
            if !self.buf.is_empty() {
                attempts = attempts.saturating_add(1);
                if tcp.max_msg_chunks != 0 && attempts >= tcp.max_msg_chunks {
                    self.dispatcher.drain().await;
                    return End::Closed(RejectReason::MaxMsgChunks, None);
                }
                frame_deadline.get_or_insert(now + tcp.frame_timeout);
            } else if stopping {
                self.dispatcher.drain().await;
                return End::Shutdown;
            }
        }
    }

    /// One complete frame decoded and counted as received, or counted and skipped
    /// (`None`).
    fn decode(&mut self, frame: &Bytes) -> Option<HepMessage> {
        match self.shared.config.decode.decode(frame) {
            Ok(message) => {
                self.dispatcher
                    .count_received(message.version.unwrap_or(HepVersion::V3));
                Some(message)
            }
            Err(e) => {
                self.shared.stats.record_decode_error(&e);
                if let Some(suppressed) = self.shared.warn_input.check() {
                    tracing::warn!(
                        listener = %self.shared.spec,
                        peer = %self.info.peer,
                        reason = e.label(),
                        suppressed,
                        "skipped a {}-byte frame: {e}; the connection goes on",
                        frame.len()
                    );
                }
                None
            }
        }
    }
}

/// Reads once into `buf`. Between frames (`buf` empty) it first waits for readability
/// and, if it has to wait, gives the buffer back: an idle connection holds no buffer.
/// Cancel-safe.
///
/// `filled` says the last read filled all the room it had: the peer is likely sending
/// faster than one buffer a read, so the buffer grows to `read_size`. Otherwise a buffer
/// taken after a wait is [`FIRST_READ`] small, so that many connections waking with one
/// message each take little memory. Without `filled`, a busy connection stayed on its
/// first 8 KiB buffer for good: the frame codec reclaims the same allocation for the
/// frame it completes, so the room never fell below [`MIN_READ`], and the connection
/// read 7.9 KB at a time where 64 KiB was possible (docs/BENCHMARKS.md).
async fn read_some<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    filled: &mut bool,
    read_size: usize,
    limit: Option<usize>,
) -> io::Result<usize>
where
    IO: AsyncRead + ReadReady + Unpin,
{
    if buf.is_empty() {
        std::future::poll_fn(|cx| {
            let ready = io.poll_read_ready(cx);
            if ready.is_pending() {
                *filled = false;
                if buf.capacity() > 0 {
                    *buf = BytesMut::new();
                }
            }
            ready
        })
        .await?;
    }
    let room = buf.capacity() - buf.len();
    if room < MIN_READ || (*filled && buf.capacity() < read_size) {
        let want = if *filled || buf.capacity() > 0 {
            read_size
        } else {
            read_size.min(FIRST_READ)
        };
        // Room for `want` bytes in all (the unfinished frame included), not `want` more:
        // asking for more than the allocation holds would double it.
        buf.reserve(want.saturating_sub(buf.len()).max(MIN_READ));
    }
    let room = buf.capacity() - buf.len();
    let n = match limit {
        Some(n) => io.take(n as u64).read_buf(buf).await?,
        None => io.read_buf(buf).await?,
    };
    *filled = n == room;
    Ok(n)
}

/// Bytes still missing from the frame at the head of `buf` (up to its 6-byte header when
/// even that is incomplete): what a stopping connection still reads.
fn missing_of_current_frame(buf: &[u8]) -> usize {
    match buf {
        [_, _, _, _, hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo]))
            .saturating_sub(buf.len())
            .max(1),
        _ => HEP3_HEADER_LEN - buf.len(),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use tokio::io::ReadBuf;

    use super::*;

    /// A peer that always has more whole frames waiting than a read takes, and records
    /// how much room each read offered.
    struct Busy {
        frame: Vec<u8>,
        at: usize,
        rooms: Vec<usize>,
    }

    impl AsyncRead for Busy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let room = buf.remaining();
            self.rooms.push(room);
            for _ in 0..room {
                let byte = self.frame[self.at];
                buf.put_slice(&[byte]);
                self.at = (self.at + 1) % self.frame.len();
            }
            Poll::Ready(Ok(()))
        }
    }

    impl ReadReady for Busy {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_busy_connection_grows_its_first_small_buffer_to_the_read_size() {
        // 608-byte frames: 13 of them fill the 8 KiB first buffer but for 288 bytes,
        // the frame the codec then reclaims the buffer for.
        let mut frame = vec![0u8; 608];
        frame[..4].copy_from_slice(b"HEP3");
        frame[4..6].copy_from_slice(&608u16.to_be_bytes());
        let mut io = Busy {
            frame,
            at: 0,
            rooms: Vec::new(),
        };
        let (mut buf, mut filled, mut codec) = (BytesMut::new(), false, HepFrameCodec::new());
        let read_size = DEFAULT_READ_BUFFER_SIZE;
        for _ in 0..8 {
            read_some(&mut io, &mut buf, &mut filled, read_size, None)
                .await
                .unwrap();
            while codec.decode(&mut buf).unwrap().is_some() {}
        }
        assert!(io.rooms[0] <= FIRST_READ, "first read: {:?}", io.rooms);
        let last = *io.rooms.last().unwrap();
        assert!(
            last >= read_size - 608,
            "a busy connection should read about {read_size} bytes at a time: {:?}",
            io.rooms
        );
        assert!(last <= read_size, "the buffer doubled: {:?}", io.rooms);
    }
}
