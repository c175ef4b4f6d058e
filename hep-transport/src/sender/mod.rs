//! HEP senders: the capture-agent and relay side.
//!
//! A [`HepSender`] sends already encoded HEP messages ([`Bytes`]) to one
//! [`HepDestination`] over UDP, TCP or TLS. It is a `tower::Service<Bytes>`, and
//! [`send_message`](HepSender::send_message) encodes a [`HepMessage`] at the destination's
//! version first.
//!
//! ```no_run
//! use bytes::Bytes;
//! use hep_transport::{HepDestination, HepSender, SenderConfig};
//! use tower::{Service, ServiceExt};
//!
//! # async fn run(frame: Bytes) -> Result<(), Box<dyn std::error::Error>> {
//! let dest: HepDestination = "[homer] 10.0.0.5:9060; transport=tcp; version=3".parse()?;
//! let mut sender = HepSender::new(dest, SenderConfig::default())?;
//! sender.ready().await?.call(frame).await?;
//! println!("{:?}", sender.stats().snapshot());
//! sender.close().await;
//! # Ok(()) }
//! # let _ = run;
//! ```
//!
//! # The seed's parameters
//!
//! [`SenderConfig`] uses OpenSIPS's names and defaults:
//!
//! | parameter | default | here |
//! |---|---|---|
//! | `hep_async` | true | async mode (below) or sync mode |
//! | `hep_async_max_postponed_chunks` | 32 | messages pending per connection (queued or being written) |
//! | `hep_async_local_connect_timeout` | 100 ms | async: how long a send's future waits while the connection is still being made |
//! | `hep_async_local_write_timeout` | 10 ms | async: how long a send's future waits for its write |
//! | `hep_send_timeout` | 100 ms | sync: bound of each message's write; a timeout closes the connection |
//! | `hep_max_retries` → `max_retries` | 5 | consecutive failures before the cooldown, **per destination** |
//! | `hep_retry_cooldown` → `retry_cooldown` | 30 s (OpenSIPS: 3600 s) | how long a failing destination refuses messages |
//!
//! # Async mode (`hep_async = true`)
//!
//! `call` never blocks: it queues the message on the connection's bounded queue
//! (`hep_async_max_postponed_chunks`) and a writer task connects (in the background) and
//! writes. The returned future does not hold the caller longer than OpenSIPS would hold
//! its process: it completes when the message is written, or when
//! `hep_async_local_write_timeout` (`hep_async_local_connect_timeout` while connecting)
//! has passed — then the message simply stays queued. Dropping the future never cancels
//! the send.
//!
//! When the queue of an **established** connection is full, what happens depends on
//! whether its writer still makes progress. If the destination has taken bytes within
//! [`overflow_stall_timeout`](SenderConfig::overflow_stall_timeout) (1 s), it reads
//! and we offer more than it (or we) can take: the overflowing message alone is dropped
//! and counted as `queue_overflow`, the connection stays, and nothing counts towards the
//! cooldown. Otherwise the connection is marked broken and dropped (OpenSIPS's
//! `S_CONN_BAD`, which OpenSIPS does on every overflow), every message lost — the queued
//! ones, the one being written, and the one that overflowed — is counted as
//! `queue_overflow`, it is a failure of the destination, and the next message opens a
//! new connection (after backoff). While a connection is still being made, an
//! overflowing message alone is dropped (dropping the attempt would restart it, and at a
//! high rate no connect would ever finish). A
//! connection whose writes make no progress for [`stall_timeout`](SenderConfig::stall_timeout)
//! is closed (`write_timeout`), so a stalled peer cannot hold messages forever at a low
//! rate.
//!
//! `poll_ready` is always ready (until [`close`](HepSender::close)): overload is not
//! pushed back, it is dropped and counted, as in OpenSIPS.
//!
//! A caller that holds messages in a bounded queue of its own (a relay) uses
//! [`offer_batch`](HepSender::offer_batch) and [`room`](HepSender::room) instead: over
//! plain TCP an idle established connection is written at once from the caller's
//! thread, a whole run in one vectored write, as OpenSIPS writes a message at once and
//! postpones it only when the socket would block; what the socket does not take is
//! queued up to the bound, and the offer stops there rather than drop while the
//! destination reads; [`room`](HepSender::room) waits for room as long as a send may wait
//! (`hep_async_local_write_timeout`). A stalled connection still meets the overflow rule
//! above.
//!
//! # Sync mode (`hep_async = false`)
//!
//! The future completes when the message is written. Each message's write is bounded by
//! `hep_send_timeout`; a timeout closes the connection and fails that message and the
//! ones queued behind it (`write_timeout`). `poll_ready` waits for a free slot: at most
//! `hep_async_max_postponed_chunks` messages are in flight, so a slow destination pushes
//! back on the caller instead of dropping. Calling without `poll_ready` takes a slot if
//! one is free and otherwise drops the message (`queue_overflow`).
//!
//! # UDP
//!
//! One connected socket per destination. A message is sent directly from `call` when the
//! socket is idle (no hop to the writer task); when the socket would block it is queued
//! like a stream message. [`send_batch`](HepSender::send_batch) sends runs of equal-size
//! messages as one GSO send (quinn-udp) for load generators.
//!
//! # Failures, backoff, cooldown
//!
//! A failed connect (resolution, connect, TLS handshake), a write error or timeout, or an
//! overflow of an established connection whose writer has stalled is a failure of the
//! destination (an overflow while the destination reads is not). The next
//! connection waits for the [`Backoff`] (100 ms doubling to 30 s, with jitter); messages
//! queue meanwhile. After `max_retries` consecutive failures, messages are refused at once
//! (`cooldown`) until `retry_cooldown` has passed since the last attempt; then the next
//! message tries again. A message written successfully resets the count, on a stream
//! connection only once the connection has lived [`stall_timeout`](SenderConfig::stall_timeout):
//! writes into a fresh connection fill the kernel's socket buffers whether or not the peer
//! reads, so a peer that accepts and never reads still reaches the cooldown. Unlike
//! OpenSIPS, whose counter is global (one failing destination silences all others), the
//! count is per destination, and async TCP connect failures count too (OpenSIPS counts
//! only the queueing, which always succeeds).
//!
//! # Fencing (for callers that resend from a log)
//!
//! With [`SenderConfig::fence_on_connection_end`], the end of a connection (for any
//! reason) raises a fence: messages that would open a new connection are refused
//! ([`SenderDropReason::Closed`]) until [`clear_fence`](HepSender::clear_fence). A caller that
//! resends from a position after a failure (hep-server's spooling relay) clears it once
//! it has rewound, so nothing it sent before it saw the failure goes out on the new
//! connection ahead of what it resends.
//!
//! # What a destination can have missed (for callers that resend)
//!
//! With [`SenderConfig::measure_unconfirmed`], a stream connection is measured on Linux
//! through the kernel's socket diagnostics (no `unsafe`): the bytes its peer has not
//! acknowledged, and the receive windows it advertised, which bound what it can hold
//! unread. [`unconfirmed_bytes`](HepSender::unconfirmed_bytes) turns them into the bytes
//! at the end of the stream the peer's application may not have read, so that a caller
//! resending from a log after a break resends that much and no more.
//!
//! # Counters
//!
//! [`SenderStats`]: sent messages and bytes, dropped by [`SenderDropReason`], connects,
//! reconnects, connect errors, queue depth. Nothing is dropped uncounted: at rest,
//! `sent + dropped + queue_depth` equals the messages offered.
//!
//! # Closing
//!
//! [`close`](HepSender::close), or dropping the last handle, stops accepting messages and
//! lets the writer flush the queue for at most [`close_timeout`](SenderConfig::close_timeout);
//! what is left then is counted as `closed`.

mod backoff;
mod conn;
mod connect;
mod destination;
pub mod error;
pub mod future;
mod progress;
mod queue;
mod stats;
mod tls;

// Layout: `queue` is the sans-IO core of a connection (its pending messages, the
// overflow rule, what a break leaves unconfirmed), driven and tested without sockets;
// `conn` is its IO (the callers' paths, the writer task), `connect` opens connections,
// `backoff` decides retries and the cooldown, `progress` measures what a stream's peer
// confirmed; this module is the public `HepSender` on top.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hep_proto::HepMessage;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

pub use backoff::Backoff;
pub use destination::{DEFAULT_DESTINATION_PORT, DestinationSyntax, HepDestination, Host};
pub use stats::{SenderDropReason, SenderStats, SenderStatsSnapshot};
pub use tls::{ClientTls, ClientTlsBuilder};

use crate::Transport;
use crate::sync::{get_mut, lock};
use conn::{Shared, Submitted};
use connect::Connector;
use error::{BuildError, SendError};
use future::ResponseFuture;
use queue::End;

/// Settings of a [`HepSender`]. OpenSIPS's parameters keep their names and defaults; the
/// others are ours, documented with their reason.
///
/// ```
/// use std::time::Duration;
/// use hep_transport::SenderConfig;
///
/// let mut cfg = SenderConfig::default();
/// assert!(cfg.hep_async);
/// assert_eq!(cfg.hep_async_max_postponed_chunks, 32);
/// assert_eq!(cfg.hep_send_timeout, Duration::from_millis(100));
/// cfg.hep_async = false; // blocking writes bounded by hep_send_timeout
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SenderConfig {
    /// `hep_async` (default true): see the [module docs](self) for both modes.
    pub hep_async: bool,
    /// `hep_async_local_connect_timeout` (default 100 ms): async mode, how long a send's
    /// future waits while the connection is still being made before it completes
    /// (the message stays queued, the connect continues in the background).
    pub hep_async_local_connect_timeout: Duration,
    /// `hep_async_local_write_timeout` (default 10 ms): async mode, how long a send's
    /// future waits for its write before it completes (the rest stays queued).
    pub hep_async_local_write_timeout: Duration,
    /// `hep_async_max_postponed_chunks` (default 32, at least 1): messages pending per
    /// connection, queued or being written. Async: overflow drops the connection. Sync:
    /// the number of slots `poll_ready` hands out.
    pub hep_async_max_postponed_chunks: usize,
    /// `hep_send_timeout` (default 100 ms): sync mode, the bound of each message's
    /// write; a timeout closes the connection.
    pub hep_send_timeout: Duration,
    /// OpenSIPS `hep_max_retries` (default 5): consecutive failures of this destination
    /// after which it cools down; 0 disables the limit (backoff still applies).
    pub max_retries: u32,
    /// OpenSIPS `hep_retry_cooldown`: how long after its last attempt a destination that
    /// reached `max_retries` refuses messages. Default 30 s: OpenSIPS's 3600 s would
    /// silence capture for an hour after a 2-second collector restart.
    pub retry_cooldown: Duration,
    /// Wait between connection attempts after failures (ours; 100 ms .. 30 s, jitter).
    pub backoff: Backoff,
    /// Bound of one connect attempt to one address, name resolution and TLS handshake
    /// included (ours; default 3 s; OpenSIPS uses its core `tcp_connect_timeout`).
    pub connect_timeout: Duration,
    /// Async mode: a connection whose pending writes make no progress for this long is
    /// closed and its messages counted `write_timeout` (ours; default 2 s). Without it a
    /// stalled peer would hold up to `hep_async_max_postponed_chunks` messages until the
    /// next overflow, which at a low rate may never come.
    pub stall_timeout: Duration,
    /// Async mode: an overflow of an established connection's queue ends the connection
    /// only when its writer has made no write progress for this long (ours; default
    /// 1 s). Until then only the overflowing message is dropped (`queue_overflow`): a
    /// destination that reads, however slowly, is overloaded, not failed, and must not
    /// count towards `max_retries`. With 200 ms, a relay at 600,000 msg/s to a reading
    /// hep-server on a loaded 2-core machine still saw a few such gaps in 8 s, each one
    /// a failure (docs/BENCHMARKS.md). `Duration::ZERO` gives OpenSIPS's behaviour
    /// (every overflow drops the connection and its queue).
    pub overflow_stall_timeout: Duration,
    /// How long [`HepSender::close`] (or dropping the sender) lets the queue flush
    /// (ours; default 1 s).
    pub close_timeout: Duration,
    /// After the flush of a [`HepSender::close`], how long to wait for the destination
    /// to confirm the connection (ours; default zero: no wait). TCP/TLS: the sender
    /// closes its side after the last byte, and the destination must close its own in
    /// answer, which a receiver does once it has read everything (one that closes with
    /// unread data resets the connection instead). UDP: no ICMP error (port unreachable,
    /// reported on the connected socket) may come back within it; a datagram the
    /// receiver discards cannot be seen. A connection that fails this is counted in
    /// [`broken_connections`](SenderStatsSnapshot::broken_connections), its messages in
    /// [`unconfirmed_messages`](SenderStatsSnapshot::unconfirmed_messages). For a
    /// one-shot sender (`hep-server send`) that must say whether it delivered.
    pub close_confirm_timeout: Duration,
    /// `SO_SNDBUF` of the sockets, if set (ours; default: the system's).
    pub send_buffer_size: Option<usize>,
    /// TLS settings, required for `transport=tls` destinations.
    pub tls: Option<ClientTls>,
    /// When a connection ends (for any reason), refuse every message that would open a
    /// new one, as [`SenderDropReason::Closed`], until [`HepSender::clear_fence`] (ours;
    /// default false). For a caller that resends from a log after a break: without the
    /// fence, messages it sent after the break but before it saw the failure would go
    /// out on a new connection, ahead of the ones it is about to resend.
    pub fence_on_connection_end: bool,
    /// Measure, on stream connections, what the destination can have missed: see
    /// [`HepSender::unconfirmed_bytes`] (ours; default false: a sample costs a system
    /// call pair every millisecond of writing, worth it only to a caller that resends).
    pub measure_unconfirmed: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            hep_async: true,
            hep_async_local_connect_timeout: Duration::from_millis(100),
            hep_async_local_write_timeout: Duration::from_millis(10),
            hep_async_max_postponed_chunks: 32,
            hep_send_timeout: Duration::from_millis(100),
            max_retries: 5,
            retry_cooldown: Duration::from_secs(30),
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(2),
            overflow_stall_timeout: Duration::from_secs(1),
            close_timeout: Duration::from_secs(1),
            close_confirm_timeout: Duration::ZERO,
            send_buffer_size: None,
            tls: None,
            fence_on_connection_end: false,
            measure_unconfirmed: false,
        }
    }
}

impl SenderConfig {
    fn check(&self) -> Result<(), BuildError> {
        if self.hep_async_max_postponed_chunks == 0
            || self.hep_async_max_postponed_chunks > Semaphore::MAX_PERMITS
        {
            return Err(BuildError::InvalidConfig(
                "hep_async_max_postponed_chunks must be at least 1 (every queue is bounded)",
            ));
        }
        let nonzero = [
            (self.hep_send_timeout, "hep_send_timeout must be above 0"),
            (self.connect_timeout, "connect_timeout must be above 0"),
            (self.stall_timeout, "stall_timeout must be above 0"),
        ];
        for (d, msg) in nonzero {
            if d.is_zero() {
                return Err(BuildError::InvalidConfig(msg));
            }
        }
        Ok(())
    }
}

type AcquireFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A HEP client for one destination: `tower::Service<Bytes>` taking encoded HEP messages.
///
/// Clones share the connection, the queue, the retry state and the counters; each clone
/// has its own `poll_ready` reservation. See the [module docs](self) for the semantics
/// of each mode.
pub struct HepSender {
    handle: Arc<Handle>,
    permit: Option<OwnedSemaphorePermit>,
    acquiring: Mutex<Option<AcquireFuture>>,
}

/// Closes the sender when the last clone is dropped.
struct Handle {
    shared: Arc<Shared>,
}

// ===== impl HepSender =====

impl HepSender {
    /// A sender for `destination`. Nothing is connected until the first message.
    ///
    /// Must be called inside a tokio runtime: connections run as tasks on it.
    ///
    /// # Errors
    /// [`BuildError`]: outside a runtime, an invalid setting, a TLS destination without
    /// [`SenderConfig::tls`], or a host that is not a valid TLS server name.
    pub fn new(destination: HepDestination, config: SenderConfig) -> Result<Self, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        config.check()?;
        let connector = match destination.transport() {
            Transport::Udp => Connector::Udp,
            Transport::Tcp => Connector::Tcp,
            Transport::Tls => {
                let tls = config
                    .tls
                    .as_ref()
                    .ok_or_else(|| BuildError::MissingTls(destination.to_string()))?;
                let server_name = match (tls.server_name(), destination.host().as_ip()) {
                    (Some(name), _) => name.clone(),
                    (None, Some(ip)) => ServerName::IpAddress(ip.into()),
                    (None, None) => {
                        let host = destination.host().to_string();
                        ServerName::try_from(host.clone())
                            .map_err(|_| BuildError::InvalidServerName(host))?
                    }
                };
                Connector::Tls {
                    connector: TlsConnector::from(tls.rustls_config().clone()),
                    server_name,
                }
            }
        };
        let stats = Arc::new(SenderStats::new());
        let shared = Shared::new(destination, config, stats, runtime, connector);
        Ok(Self {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
            permit: None,
            acquiring: Mutex::new(None),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The destination.
    pub fn destination(&self) -> &HepDestination {
        &self.shared().dest
    }

    /// The settings.
    pub fn config(&self) -> &SenderConfig {
        &self.shared().config
    }

    /// The live counters (shared by all clones).
    pub fn stats(&self) -> &Arc<SenderStats> {
        &self.shared().stats
    }

    /// Bytes at the end of what the current stream connection (or the last one, once it
    /// ended) was given that the destination's application may not have read: those its
    /// kernel has not acknowledged, and an allowance for what its receive buffer may hold
    /// unread (twice the largest receive window it advertised, less the one it offered
    /// last), as last measured (Linux; at most every millisecond after a write, and when
    /// the connection fails). Where nothing could be measured, every byte written on the
    /// connection. `None` before the first stream connection, for UDP, and without
    /// [`SenderConfig::measure_unconfirmed`].
    ///
    /// A caller that resends from a log after a break (hep-server's spooling relay)
    /// resends at least this many bytes of its last messages: together with what was
    /// never written, they are all the destination can have missed (short of its own
    /// application losing what it had read).
    pub fn unconfirmed_bytes(&self) -> Option<u64> {
        lock(&self.shared().last_stream)
            .as_ref()
            .map(|p| p.unconfirmed())
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared().closed.load(Ordering::Acquire)
    }

    /// Sends one encoded HEP message: the same as `Service::call`, without a `poll_ready`
    /// reservation (in sync mode it takes a free slot, or drops the message as
    /// `queue_overflow` when there is none).
    ///
    /// The message is sent or queued before this returns; see [`ResponseFuture`].
    pub fn send(&self, message: Bytes) -> ResponseFuture {
        self.send_with(message, None)
    }

    /// Sends or queues one encoded message without waiting and without a future (the
    /// cheapest call: no completion channel). `Err` if it was dropped (counted).
    ///
    /// # Errors
    /// The message was dropped: see [`SendError::reason`].
    pub fn enqueue(&self, message: Bytes) -> Result<(), SendError> {
        let permit = self.sync_slot(None)?;
        match self.shared().submit(message, false, permit) {
            Submitted::Dropped(e) => Err(e),
            Submitted::Sent | Submitted::Queued { .. } => Ok(()),
        }
    }

    /// Encodes `message` at the destination's HEP version and sends it.
    ///
    /// A message that cannot be encoded at that version (e.g. HEPv2 with a capture id
    /// above 65535) fails with [`SenderDropReason::Encode`], counted.
    pub fn send_message(&self, message: &HepMessage) -> ResponseFuture {
        let shared = self.shared();
        match message.encode(shared.dest.version()) {
            Ok(bytes) => self.send(bytes),
            Err(e) => ResponseFuture::done(Err(
                shared.drop_one(SenderDropReason::Encode, Some(Arc::new(e)))
            )),
        }
    }

    /// Sends many encoded messages without waiting for any of them (the load-generator
    /// fast path). UDP: while the socket is idle they are written directly, runs of
    /// equal-size messages as single GSO sends. TCP/TLS in async mode: when the open (or
    /// opening) connection's queue has room for all of them, they are queued at once
    /// (one lock, one wake-up of the writer). Otherwise each is queued as by
    /// [`send`](Self::send) (sync mode: only while slots are free).
    ///
    /// Returns how many were sent or queued; the others were dropped and counted.
    pub fn send_batch(&self, messages: &[Bytes]) -> usize {
        let shared = self.shared();
        let (handled, mut accepted) = if matches!(shared.connector, Connector::Udp) {
            shared.udp_direct_batch(messages)
        } else {
            let queued = shared.queue_batch(messages);
            (queued, queued)
        };
        for m in &messages[handled..] {
            let Ok(permit) = self.sync_slot(None) else {
                continue;
            };
            if !matches!(
                shared.submit(m.clone(), false, permit),
                Submitted::Dropped(_)
            ) {
                accepted += 1;
            }
        }
        accepted
    }

    /// Offers messages in order and takes as many leading ones as the destination takes
    /// now, without dropping one for lack of room while it reads: the relay's way to
    /// forward a run of messages it holds in a bounded queue of its own. Returns how many
    /// it took (sent, queued, or dropped and counted for another reason: cooldown, close,
    /// a stalled connection); the caller keeps the rest, and offers them again when
    /// [`room`](Self::room) says so, or hands them to [`send_batch`](Self::send_batch)
    /// when it does not.
    ///
    /// - TCP, async mode: while the connection is established and idle, the messages are
    ///   written at once from the caller's thread, in one vectored write (no hop to the
    ///   writer task); what the socket does not take is queued (postponed, as OpenSIPS
    ///   postpones a write that would block) up to `hep_async_max_postponed_chunks`, and
    ///   the offer stops there. Before the connection is established, messages queue up
    ///   to the same bound. A connection whose writer has made no progress for
    ///   [`overflow_stall_timeout`](SenderConfig::overflow_stall_timeout) meets the
    ///   overflow rule of [`send`](Self::send): it is dropped with its queue.
    /// - TLS, async mode: queued up to the bound, as above, for the writer.
    /// - Sync mode: each message takes a free slot; the offer stops when none is free.
    /// - UDP: all are taken, as by [`send_batch`](Self::send_batch).
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use hep_transport::{HepDestination, HepSender, SenderConfig};
    ///
    /// # async fn run(frames: Vec<Bytes>) -> Result<(), Box<dyn std::error::Error>> {
    /// let dest: HepDestination = "[homer] 10.0.0.5:9060; transport=tcp".parse()?;
    /// let sender = HepSender::new(dest, SenderConfig::default())?;
    /// let mut at = 0;
    /// while at < frames.len() {
    ///     at += sender.offer_batch(&frames[at..]);
    ///     if at < frames.len() && !sender.room().await {
    ///         // No room within hep_async_local_write_timeout: drop what does not fit
    ///         // (counted), rather than hold up everything queued behind it.
    ///         sender.send_batch(&frames[at..]);
    ///         at = frames.len();
    ///     }
    /// }
    /// # Ok(()) }
    /// # let _ = run;
    /// ```
    pub fn offer_batch(&self, messages: &[Bytes]) -> usize {
        let shared = self.shared();
        if matches!(shared.connector, Connector::Udp) {
            self.send_batch(messages);
            return messages.len();
        }
        if shared.config.hep_async {
            return shared.offer_batch(messages);
        }
        let mut taken = 0;
        for m in messages {
            let permit = match shared.slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(TryAcquireError::NoPermits) => break,
                Err(TryAcquireError::Closed) => None,
            };
            if permit.is_none() {
                shared.drop_one(SenderDropReason::Closed, None);
            } else {
                shared.submit(m.clone(), false, permit);
            }
            taken += 1;
        }
        taken
    }

    /// Waits until [`offer_batch`](Self::offer_batch) may take more, for as long as
    /// OpenSIPS lets a send wait. `true`: offer again (the connection's queue has room,
    /// the connection ended or stalled, or the sender was closed). `false`: no room within
    /// `hep_async_local_write_timeout` (`hep_async_local_connect_timeout` while the
    /// connection is being made); the destination is not keeping up. Sync mode waits for
    /// a free slot (each write is bounded by `hep_send_timeout`) and returns `true`.
    pub async fn room(&self) -> bool {
        let shared = self.shared();
        if shared.config.hep_async {
            shared.room().await
        } else {
            if let Ok(permit) = shared.slots.acquire().await {
                drop(permit);
            }
            true
        }
    }

    /// Stops accepting messages (for every clone), lets the writer flush the queue for
    /// at most [`SenderConfig::close_timeout`], waits at most
    /// [`SenderConfig::close_confirm_timeout`] for the destination to confirm, then stops
    /// the writer. Messages still unsent are counted as `closed`. Later sends fail with
    /// [`SenderDropReason::Closed`].
    pub async fn close(&self) {
        let shared = self.shared();
        let conn = {
            let mut cur = lock(&shared.current);
            shared.closed.store(true, Ordering::Release);
            cur.take()
        };
        shared.slots.close();
        if let Some(conn) = conn {
            let deadline = Instant::now() + shared.config.close_timeout;
            conn.begin_close(deadline);
            let mut finished = conn.finished.subscribe();
            // The writer enforces the deadline itself; the margin covers its last steps.
            let margin = Duration::from_millis(100);
            let confirm = shared.config.close_confirm_timeout;
            let _ = timeout_at(deadline + confirm + margin, finished.wait_for(|done| *done)).await;
            conn.end(shared, End::closed());
        }
    }

    /// Lets messages open a new connection again after a connection ended
    /// ([`SenderConfig::fence_on_connection_end`]).
    pub fn clear_fence(&self) {
        self.shared().fenced.store(false, Ordering::Release);
    }

    /// Sync mode: the slot a message needs (the reservation if any, else a free one).
    fn sync_slot(
        &self,
        reserved: Option<OwnedSemaphorePermit>,
    ) -> Result<Option<OwnedSemaphorePermit>, SendError> {
        let shared = self.shared();
        if shared.config.hep_async {
            return Ok(None);
        }
        if let Some(p) = reserved {
            return Ok(Some(p));
        }
        match shared.slots.clone().try_acquire_owned() {
            Ok(p) => Ok(Some(p)),
            Err(TryAcquireError::Closed) => Err(shared.drop_one(SenderDropReason::Closed, None)),
            Err(TryAcquireError::NoPermits) => {
                Err(shared.drop_one(SenderDropReason::QueueOverflow, None))
            }
        }
    }

    fn send_with(&self, message: Bytes, reserved: Option<OwnedSemaphorePermit>) -> ResponseFuture {
        let permit = match self.sync_slot(reserved) {
            Ok(p) => p,
            Err(e) => return ResponseFuture::done(Err(e)),
        };
        let shared = self.shared();
        match shared.submit(message, true, permit) {
            Submitted::Sent => ResponseFuture::done(Ok(())),
            Submitted::Dropped(e) => ResponseFuture::done(Err(e)),
            Submitted::Queued { rx: None, .. } => ResponseFuture::done(Ok(())),
            Submitted::Queued {
                rx: Some(rx),
                established,
            } => {
                let cfg = &shared.config;
                let deadline = cfg.hep_async.then(|| {
                    Instant::now()
                        + if established {
                            cfg.hep_async_local_write_timeout
                        } else {
                            cfg.hep_async_local_connect_timeout
                        }
                });
                ResponseFuture::waiting(rx, deadline, shared.error(SenderDropReason::Closed, None))
            }
        }
    }
}

impl Clone for HepSender {
    /// Another handle on the same sender, without a `poll_ready` reservation.
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            permit: None,
            acquiring: Mutex::new(None),
        }
    }
}

impl fmt::Debug for HepSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HepSender")
            .field("destination", &self.shared().label)
            .field("hep_async", &self.shared().config.hep_async)
            .field("closed", &self.is_closed())
            .field("reserved", &self.permit.is_some())
            .finish()
    }
}

impl tower::Service<Bytes> for HepSender {
    type Response = ();
    type Error = SendError;
    type Future = ResponseFuture;

    /// Async mode: always ready (overload is dropped and counted, not pushed back).
    /// Sync mode: ready when one of the `hep_async_max_postponed_chunks` slots is free;
    /// the slot is reserved for the next `call`. After `close`: an error.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let Self {
            handle,
            permit,
            acquiring,
        } = self;
        let shared = &handle.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(shared.error(SenderDropReason::Closed, None)));
        }
        if shared.config.hep_async || permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        let acquiring = get_mut(acquiring);
        loop {
            if let Some(fut) = acquiring.as_mut() {
                let r = ready!(fut.as_mut().poll(cx));
                *acquiring = None;
                return Poll::Ready(match r {
                    Ok(p) => {
                        *permit = Some(p);
                        Ok(())
                    }
                    Err(_) => Err(shared.error(SenderDropReason::Closed, None)),
                });
            }
            match shared.slots.clone().try_acquire_owned() {
                Ok(p) => {
                    *permit = Some(p);
                    return Poll::Ready(Ok(()));
                }
                Err(TryAcquireError::Closed) => {
                    return Poll::Ready(Err(shared.error(SenderDropReason::Closed, None)));
                }
                Err(TryAcquireError::NoPermits) => {
                    *acquiring = Some(Box::pin(shared.slots.clone().acquire_owned()));
                }
            }
        }
    }

    /// Sends `message` (an encoded HEP message); see [`ResponseFuture`].
    fn call(&mut self, message: Bytes) -> ResponseFuture {
        let reserved = self.permit.take();
        self.send_with(message, reserved)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let shared = &self.shared;
        let conn = {
            let mut cur = lock(&shared.current);
            shared.closed.store(true, Ordering::Release);
            cur.take()
        };
        shared.slots.close();
        if let Some(conn) = conn {
            // The writer flushes in the background, bounded by close_timeout.
            conn.begin_close(Instant::now() + shared.config.close_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<HepSender>();
        send_sync::<SendError>();
        send_sync::<SenderStats>();
        send::<ResponseFuture>();
    }

    #[test]
    fn construction_errors() {
        let dest: HepDestination = "127.0.0.1:9060".parse().unwrap();
        let e = HepSender::new(dest.clone(), SenderConfig::default()).unwrap_err();
        assert!(matches!(e, BuildError::NoRuntime), "{e}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let cfg = SenderConfig {
            hep_async_max_postponed_chunks: 0,
            ..SenderConfig::default()
        };
        let e = HepSender::new(dest.clone(), cfg).unwrap_err();
        assert!(
            e.to_string().contains("hep_async_max_postponed_chunks"),
            "{e}"
        );
        let tls: HepDestination = "hep_tls:127.0.0.1:9060".parse().unwrap();
        assert!(matches!(
            HepSender::new(tls, SenderConfig::default()),
            Err(BuildError::MissingTls(_))
        ));
        assert!(HepSender::new(dest, SenderConfig::default()).is_ok());
    }
}
