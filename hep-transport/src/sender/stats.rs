//! Sender counters: lock-free, shared through an `Arc`, read as a [`SenderStatsSnapshot`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a message was not sent. Every message a [`HepSender`](super::HepSender) accepts is
/// eventually counted either as sent or as dropped with exactly one of these reasons.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SenderDropReason {
    /// The per-connection queue (`hep_async_max_postponed_chunks`) overflowed. Only the
    /// overflowing message is dropped, unless the connection is established and its
    /// writer has stalled (no progress for `overflow_stall_timeout`): then the connection
    /// is dropped and every queued message with it. In sync mode: a
    /// message sent without a free slot (`poll_ready` not called).
    QueueOverflow,
    /// The connection (name resolution, TCP connect, TLS handshake) failed or timed out.
    ConnectFailed,
    /// A write blocked longer than its bound (`hep_send_timeout` in sync mode, the stall
    /// timeout in async mode); the connection was closed.
    WriteTimeout,
    /// The destination failed `max_retries` times in a row and `retry_cooldown` has not
    /// passed since the last attempt: the message was refused without trying.
    Cooldown,
    /// A socket error (reset, broken pipe, refused, unreachable ...).
    Io,
    /// The connection was closed: by the peer, or by [`close`](super::HepSender::close) or
    /// the drop of the sender when its flush bound ran out, or the sender was already
    /// closed.
    Closed,
    /// The message could not be encoded at the destination's HEP version
    /// ([`send_message`](super::HepSender::send_message) only).
    Encode,
}

impl SenderDropReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 7] = [
        Self::QueueOverflow,
        Self::ConnectFailed,
        Self::WriteTimeout,
        Self::Cooldown,
        Self::Io,
        Self::Closed,
        Self::Encode,
    ];

    /// A stable snake_case label for metrics (`hep_dropped_total{reason="..."}`).
    ///
    /// ```
    /// use hep_transport::sender::SenderDropReason;
    /// let labels: Vec<_> = SenderDropReason::ALL.iter().map(|r| r.label()).collect();
    /// assert_eq!(labels, ["queue_overflow", "connect_failed", "write_timeout", "cooldown", "io", "closed", "encode"]);
    /// ```
    pub const fn label(self) -> &'static str {
        match self {
            Self::QueueOverflow => "queue_overflow",
            Self::ConnectFailed => "connect_failed",
            Self::WriteTimeout => "write_timeout",
            Self::Cooldown => "cooldown",
            Self::Io => "io",
            Self::Closed => "closed",
            Self::Encode => "encode",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SenderDropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

const REASONS: usize = SenderDropReason::ALL.len();

/// Live counters of one sender (`HepSender::stats`). Cheap to update from any thread;
/// read them with [`snapshot`](Self::snapshot).
///
/// At rest (nothing in flight), `sent_messages + dropped_total() + queue_depth` equals
/// the number of messages offered to the sender.
///
/// Its `Debug` shows the numbers now, as a [`SenderStatsSnapshot`] does.
#[derive(Default)]
pub struct SenderStats {
    sent_messages: AtomicU64,
    sent_bytes: AtomicU64,
    dropped: [AtomicU64; REASONS],
    connects: AtomicU64,
    reconnects: AtomicU64,
    connect_errors: AtomicU64,
    broken_connections: AtomicU64,
    unconfirmed_messages: AtomicU64,
    queue_depth: AtomicU64,
}

impl SenderStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages queued and not yet written or dropped (the gauge of
    /// [`SenderStatsSnapshot::queue_depth`], read alone).
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Relaxed)
    }

    /// A copy of every counter. Each is read atomically; the set is not one atomic read.
    pub fn snapshot(&self) -> SenderStatsSnapshot {
        let mut dropped = [0; REASONS];
        for (d, a) in dropped.iter_mut().zip(&self.dropped) {
            *d = a.load(Relaxed);
        }
        SenderStatsSnapshot {
            sent_messages: self.sent_messages.load(Relaxed),
            sent_bytes: self.sent_bytes.load(Relaxed),
            connects: self.connects.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            broken_connections: self.broken_connections.load(Relaxed),
            unconfirmed_messages: self.unconfirmed_messages.load(Relaxed),
            queue_depth: self.queue_depth.load(Relaxed),
            dropped,
        }
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.sent_messages.fetch_add(1, Relaxed);
        self.sent_bytes.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn sent_many(&self, messages: u64, bytes: u64) {
        self.sent_messages.fetch_add(messages, Relaxed);
        self.sent_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn dropped(&self, reason: SenderDropReason, n: u64) {
        if n > 0 {
            self.dropped[reason.index()].fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn connected(&self, again: bool) {
        self.connects.fetch_add(1, Relaxed);
        if again {
            self.reconnects.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Relaxed);
    }

    /// An established connection ended otherwise than by the sender's close, with
    /// `unconfirmed` of the messages written on it not known to have been read.
    pub(crate) fn broken(&self, unconfirmed: u64) {
        self.broken_connections.fetch_add(1, Relaxed);
        self.unconfirmed_messages.fetch_add(unconfirmed, Relaxed);
    }

    pub(crate) fn queued(&self) {
        self.queue_depth.fetch_add(1, Relaxed);
    }

    pub(crate) fn queued_many(&self, n: u64) {
        self.queue_depth.fetch_add(n, Relaxed);
    }

    pub(crate) fn dequeued(&self, n: u64) {
        self.queue_depth.fetch_sub(n, Relaxed);
    }
}

/// A copy of a sender's counters at one moment.
///
/// Its `Debug` lists every counter, and the drop reasons that counted something (the
/// others are zero):
///
/// ```
/// use hep_transport::sender::SenderStats;
///
/// assert_eq!(
///     format!("{:?}", SenderStats::new().snapshot()),
///     "SenderStatsSnapshot { sent_messages: 0, sent_bytes: 0, connects: 0, reconnects: 0, \
///      connect_errors: 0, broken_connections: 0, unconfirmed_messages: 0, queue_depth: 0, \
///      dropped: {} }",
/// );
/// ```
///
/// ```
/// use hep_transport::sender::{SenderDropReason, SenderStats};
///
/// let snap = SenderStats::new().snapshot();
/// assert_eq!(snap.dropped(SenderDropReason::Cooldown), 0);
/// let names: Vec<_> = snap.counters().map(|(name, _)| name).collect();
/// assert_eq!(&names[..3], ["sent_messages", "sent_bytes", "connects"]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SenderStatsSnapshot {
    /// Messages completely written to the socket (handed to the kernel, or for TLS to the
    /// TLS layer): not a proof of delivery, as with any TCP sender without acknowledgements.
    pub sent_messages: u64,
    /// Bytes of those messages.
    pub sent_bytes: u64,
    /// Connections established (for UDP: sockets connected).
    pub connects: u64,
    /// Connections established after an earlier one (the first is not a reconnect).
    pub reconnects: u64,
    /// Connect attempts that failed (each may have dropped several messages, counted as
    /// [`SenderDropReason::ConnectFailed`]).
    pub connect_errors: u64,
    /// Established connections that ended otherwise than by the sender's
    /// [`close`](super::HepSender::close): closed or reset by the destination, a socket
    /// error (for UDP: an ICMP error such as port unreachable, reported as
    /// `ECONNREFUSED`), a write timeout, a stalled queue; and, with
    /// [`close_confirm_timeout`](super::SenderConfig::close_confirm_timeout), a close the
    /// destination did not confirm.
    pub broken_connections: u64,
    /// Messages counted in `sent_messages` that were written on a broken connection
    /// (other than one the destination closed in order while nothing was being written:
    /// a receiver closes with unread data by a reset): handed to the kernel, but not known
    /// to have been read. An upper bound of what the destination missed, since it may
    /// have read some of them before the break.
    pub unconfirmed_messages: u64,
    /// Messages accepted and not yet sent or dropped (gauge).
    pub queue_depth: u64,
    dropped: [u64; REASONS],
}

impl SenderStatsSnapshot {
    /// Messages dropped for `reason`.
    pub const fn dropped(&self, reason: SenderDropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (SenderDropReason, u64)> + '_ {
        SenderDropReason::ALL.iter().map(|&r| (r, self.dropped(r)))
    }

    /// Every counter under a stable snake_case name: `sent_messages`, `sent_bytes`,
    /// `connects`, `reconnects`, `connect_errors`, `broken_connections`,
    /// `unconfirmed_messages`, `queue_depth`, then
    /// `dropped_<reason>` for each [`SenderDropReason`].
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        const DROPPED: [&str; REASONS] = [
            "dropped_queue_overflow",
            "dropped_connect_failed",
            "dropped_write_timeout",
            "dropped_cooldown",
            "dropped_io",
            "dropped_closed",
            "dropped_encode",
        ];
        [
            ("sent_messages", self.sent_messages),
            ("sent_bytes", self.sent_bytes),
            ("connects", self.connects),
            ("reconnects", self.reconnects),
            ("connect_errors", self.connect_errors),
            ("broken_connections", self.broken_connections),
            ("unconfirmed_messages", self.unconfirmed_messages),
            ("queue_depth", self.queue_depth),
        ]
        .into_iter()
        .chain(DROPPED.into_iter().zip(self.dropped))
    }
}

impl fmt::Debug for SenderStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt_as("SenderStats", f)
    }
}

impl fmt::Debug for SenderStatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_as("SenderStatsSnapshot", f)
    }
}

impl SenderStatsSnapshot {
    /// The numbers, under `name`: what both `Debug`s show.
    fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// The drop reasons above zero, as a map.
        struct Dropped<'a>(&'a SenderStatsSnapshot);
        impl fmt::Debug for Dropped<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(
                        self.0
                            .dropped_by_reason()
                            .filter(|&(_, n)| n > 0)
                            .map(|(r, n)| (r.label(), n)),
                    )
                    .finish()
            }
        }
        let mut s = f.debug_struct(name);
        // The named counters; the `dropped_*` ones follow as one map.
        for (name, n) in self.counters().filter(|(n, _)| !n.starts_with("dropped_")) {
            s.field(name, &n);
        }
        s.field("dropped", &Dropped(self)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up() {
        let s = SenderStats::new();
        s.queued();
        s.queued();
        s.sent(10);
        s.dequeued(1);
        s.dropped(SenderDropReason::Io, 1);
        s.dequeued(1);
        let snap = s.snapshot();
        assert_eq!(
            (snap.sent_messages, snap.sent_bytes, snap.queue_depth),
            (1, 10, 0)
        );
        assert_eq!(snap.dropped_total(), 1);
        assert_eq!(
            snap.counters().find(|(n, _)| *n == "dropped_io"),
            Some(("dropped_io", 1))
        );
        for (i, r) in SenderDropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
