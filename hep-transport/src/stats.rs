//! Lock-free counters a listener keeps, for metrics (Prometheus) and the exit summary.
//!
//! One [`ListenerStats`] per listener, shared through an `Arc` by the listener's workers,
//! its connections and the [`OverloadDrop`](crate::layer::overload::OverloadDrop) layer.
//! Every counter is an `AtomicU64` updated with `Relaxed` ordering: counters are
//! independent, and a scrape only needs each value to be eventually exact, not a
//! consistent cut across counters. The hot paths do not touch them per message: the
//! listeners tally in local variables and add once per receive batch (UDP) or per read
//! (TCP/TLS).
//!
//! Every label is a stable `snake_case` string and every counter is listed, zeros
//! included, so that metrics can be registered before the first message:
//!
//! ```
//! use hep_transport::{ListenerDropReason, ListenerStats, RejectReason};
//!
//! let stats = ListenerStats::new();
//! stats.record_rejected(RejectReason::IdleTimeout);
//! stats.record_decode_error(&hep_proto::DecodeError::MissingPayload);
//! stats.record_dropped(ListenerDropReason::Overload, 3);
//!
//! let snap = stats.snapshot();
//! assert_eq!(snap.rejected_by("idle_timeout"), 1);
//! assert_eq!(snap.rejected_by("missing_payload"), 1);
//! assert_eq!(snap.dropped_by("overload"), 3);
//! for (reason, n) in snap.rejected() {
//!     // hep_rejected_total{reason="..."} n
//!     # let _ = (reason, n);
//! }
//! assert_eq!(snap.rejected().count(), ListenerStats::rejected_labels().count());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hep_proto::{DecodeError, HepVersion};

/// A transport-level reason a connection was closed, or its bytes refused, that is not a
/// [`DecodeError`]. Counted under [`ListenerStats::rejected_by`] with its [`label`](Self::label).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A frame needed more reads than `max_msg_chunks` (OpenSIPS `hep_max_msg_chunks`).
    MaxMsgChunks,
    /// A started frame did not complete within `frame_timeout`.
    FrameTimeout,
    /// No bytes arrived for `idle_timeout`.
    IdleTimeout,
    /// The TLS handshake failed or timed out (includes a client certificate refused by mTLS).
    TlsHandshake,
    /// The peer closed or reset the connection in the middle of a frame: the bytes of the
    /// incomplete frame were discarded.
    Truncated,
    /// A UDP receive error (datagrams may have been lost). A TCP/TLS read error between
    /// frames loses nothing and is not counted; in the middle of a frame it is
    /// [`Truncated`](Self::Truncated).
    Io,
    /// A TCP/TLS connection beyond `max_connections`: reset at accept, before any read.
    MaxConnections,
    /// The agent's address is not in the listener's allowlist
    /// ([`ListenerConfig::allow`](crate::ListenerConfig::allow)): a datagram dropped before
    /// decoding, or a connection closed at accept.
    SourceNotAllowed,
    /// A TLS client certificate that verified but that the listener's client check
    /// ([`TlsConfig::with_client_check`](crate::TlsConfig::with_client_check)) does not
    /// know: the connection is closed after the handshake, before any read.
    ClientCertNotAllowed,
}

impl RejectReason {
    /// Every label, in a stable order.
    pub const LABELS: &'static [&'static str] = &[
        "max_msg_chunks",
        "frame_timeout",
        "idle_timeout",
        "tls_handshake",
        "truncated",
        "io",
        "max_connections",
        "source_not_allowed",
        "client_cert_not_allowed",
    ];

    /// The metrics label, e.g. `"max_msg_chunks"`.
    pub const fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    const fn index(self) -> usize {
        match self {
            Self::MaxMsgChunks => 0,
            Self::FrameTimeout => 1,
            Self::IdleTimeout => 2,
            Self::TlsHandshake => 3,
            Self::Truncated => 4,
            Self::Io => 5,
            Self::MaxConnections => 6,
            Self::SourceNotAllowed => 7,
            Self::ClientCertNotAllowed => 8,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a decoded message was not delivered. Counted under [`ListenerStats::dropped`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerDropReason {
    /// The service was not ready (UDP under overload, see
    /// [`OverloadDrop`](crate::layer::overload::OverloadDrop)).
    Overload,
    /// The service returned an error for the message (or failed while it waited).
    ServiceError,
    /// The listener shut down and its grace period ended while the message was still
    /// being handled.
    Shutdown,
}

impl ListenerDropReason {
    /// Every label, in a stable order.
    pub const LABELS: &'static [&'static str] = &["overload", "service_error", "shutdown"];

    /// The metrics label, e.g. `"overload"`.
    pub const fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    const fn index(self) -> usize {
        match self {
            Self::Overload => 0,
            Self::ServiceError => 1,
            Self::Shutdown => 2,
        }
    }
}

impl fmt::Display for ListenerDropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Label of a [`DecodeError`] whose [`label`](DecodeError::label) is not listed in
/// [`DecodeError::LABELS`] (a newer `hep-proto`): counted, never lost.
const OTHER_DECODE_LABEL: &str = "other_decode_error";
const DECODE_SLOTS: usize = DecodeError::LABELS.len() + 1;
const TRANSPORT_SLOTS: usize = RejectReason::LABELS.len();
const DROP_SLOTS: usize = ListenerDropReason::LABELS.len();

/// A listener's counters (see the [module docs](self)). Create one, share it via `Arc`.
///
/// Its `Debug` shows the numbers now, as a [`ListenerStatsSnapshot`] does.
pub struct ListenerStats {
    received: [AtomicU64; 3],
    bytes: AtomicU64,
    rejected_decode: [AtomicU64; DECODE_SLOTS],
    rejected_transport: [AtomicU64; TRANSPORT_SLOTS],
    dropped: [AtomicU64; DROP_SLOTS],
    accepted: AtomicU64,
    closed: AtomicU64,
    accept_errors: AtomicU64,
}

impl Default for ListenerStats {
    fn default() -> Self {
        Self::new()
    }
}

// ===== impl ListenerStats =====

impl ListenerStats {
    /// All counters at zero.
    pub const fn new() -> Self {
        Self {
            received: [const { AtomicU64::new(0) }; 3],
            bytes: AtomicU64::new(0),
            rejected_decode: [const { AtomicU64::new(0) }; DECODE_SLOTS],
            rejected_transport: [const { AtomicU64::new(0) }; TRANSPORT_SLOTS],
            dropped: [const { AtomicU64::new(0) }; DROP_SLOTS],
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
        }
    }

    /// Every label [`ListenerStatsSnapshot::rejected`] yields, in its order: the
    /// [`DecodeError::LABELS`], `"other_decode_error"`, then the [`RejectReason::LABELS`].
    pub fn rejected_labels() -> impl Iterator<Item = &'static str> {
        DecodeError::LABELS
            .iter()
            .copied()
            .chain([OTHER_DECODE_LABEL])
            .chain(RejectReason::LABELS.iter().copied())
    }

    // ----- recording -----

    /// Counts `n` messages of `version` decoded from the wire.
    pub fn record_received(&self, version: HepVersion, n: u64) {
        if n > 0 {
            self.received[version_index(version)].fetch_add(n, Relaxed);
        }
    }

    /// Counts `n` bytes read from the wire (datagrams, or stream reads).
    pub fn record_bytes(&self, n: u64) {
        if n > 0 {
            self.bytes.fetch_add(n, Relaxed);
        }
    }

    /// Counts one message (datagram or frame) rejected by the decoder.
    pub fn record_decode_error(&self, err: &DecodeError) {
        self.rejected_decode[decode_index(err.label())].fetch_add(1, Relaxed);
    }

    /// Counts one transport-level rejection.
    pub fn record_rejected(&self, reason: RejectReason) {
        self.rejected_transport[reason.index()].fetch_add(1, Relaxed);
    }

    /// Counts `n` transport-level rejections of one reason (e.g. a GRO batch of datagrams).
    pub fn record_rejected_many(&self, reason: RejectReason, n: u64) {
        if n > 0 {
            self.rejected_transport[reason.index()].fetch_add(n, Relaxed);
        }
    }

    /// Counts `n` decoded messages that were not delivered.
    pub fn record_dropped(&self, reason: ListenerDropReason, n: u64) {
        if n > 0 {
            self.dropped[reason.index()].fetch_add(n, Relaxed);
        }
    }

    /// Counts an accepted connection.
    pub fn record_accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// Counts a closed connection.
    pub fn record_closed(&self) {
        self.closed.fetch_add(1, Relaxed);
    }

    /// Counts a failed `accept()`.
    pub fn record_accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    // ----- reading -----

    /// Messages of `version` decoded from the wire.
    pub fn received(&self, version: HepVersion) -> u64 {
        self.received[version_index(version)].load(Relaxed)
    }

    /// Messages decoded from the wire, all versions.
    pub fn received_total(&self) -> u64 {
        self.received.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Bytes read from the wire.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// Rejections counted under `label` (a [`DecodeError::label`] or a
    /// [`RejectReason::label`]); 0 for a label that does not exist.
    pub fn rejected_by(&self, label: &str) -> u64 {
        if let Some(i) = RejectReason::LABELS.iter().position(|l| *l == label) {
            return self.rejected_transport[i].load(Relaxed);
        }
        if label == OTHER_DECODE_LABEL || DecodeError::LABELS.contains(&label) {
            return self.rejected_decode[decode_index(label)].load(Relaxed);
        }
        0
    }

    /// Rejections, all reasons.
    pub fn rejected_total(&self) -> u64 {
        let decode: u64 = self.rejected_decode.iter().map(|c| c.load(Relaxed)).sum();
        let transport: u64 = self
            .rejected_transport
            .iter()
            .map(|c| c.load(Relaxed))
            .sum();
        decode + transport
    }

    /// Messages dropped for `reason`.
    pub fn dropped(&self, reason: ListenerDropReason) -> u64 {
        self.dropped[reason.index()].load(Relaxed)
    }

    /// Messages dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Connections accepted so far (TCP/TLS; for TLS, before the handshake).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Connections closed so far.
    pub fn connections_closed(&self) -> u64 {
        self.closed.load(Relaxed)
    }

    /// Connections open now (accepted minus closed).
    pub fn connections_open(&self) -> u64 {
        // Read `closed` first: it never overtakes `accepted`, so this cannot underflow.
        let closed = self.closed.load(Relaxed);
        self.accepted.load(Relaxed).saturating_sub(closed)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> ListenerStatsSnapshot {
        ListenerStatsSnapshot {
            received: [
                self.received[0].load(Relaxed),
                self.received[1].load(Relaxed),
                self.received[2].load(Relaxed),
            ],
            bytes: self.bytes(),
            rejected_decode: self.rejected_decode.each_ref().map(|c| c.load(Relaxed)),
            rejected_transport: self.rejected_transport.each_ref().map(|c| c.load(Relaxed)),
            dropped: self.dropped.each_ref().map(|c| c.load(Relaxed)),
            connections_closed: self.closed.load(Relaxed),
            connections_accepted: self.accepted.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
        }
    }
}

/// A copy of a [`ListenerStats`] at one moment, with iteration over labelled counters.
///
/// Its `Debug` lists the totals, then only the rejection and drop reasons that counted
/// something (the others are zero):
///
/// ```
/// use hep_transport::{ListenerStats, RejectReason};
///
/// let stats = ListenerStats::new();
/// stats.record_rejected(RejectReason::IdleTimeout);
/// assert_eq!(
///     format!("{:?}", stats.snapshot()),
///     "ListenerStatsSnapshot { received: {\"v1\": 0, \"v2\": 0, \"v3\": 0}, bytes: 0, \
///      rejected: {\"idle_timeout\": 1}, dropped: {}, connections_accepted: 0, \
///      connections_closed: 0, accept_errors: 0 }",
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ListenerStatsSnapshot {
    received: [u64; 3],
    bytes: u64,
    rejected_decode: [u64; DECODE_SLOTS],
    rejected_transport: [u64; TRANSPORT_SLOTS],
    dropped: [u64; DROP_SLOTS],
    connections_accepted: u64,
    connections_closed: u64,
    accept_errors: u64,
}

// ===== impl ListenerStatsSnapshot =====

impl ListenerStatsSnapshot {
    /// Messages decoded per HEP version: `(V1, n), (V2, n), (V3, n)`.
    pub fn received(&self) -> impl Iterator<Item = (HepVersion, u64)> + '_ {
        [HepVersion::V1, HepVersion::V2, HepVersion::V3]
            .into_iter()
            .map(|v| (v, self.received[version_index(v)]))
    }

    /// Messages of one version.
    pub fn received_by(&self, version: HepVersion) -> u64 {
        self.received[version_index(version)]
    }

    /// Messages decoded, all versions.
    pub fn received_total(&self) -> u64 {
        self.received.iter().sum()
    }

    /// Bytes read from the wire.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every rejection counter as `(label, n)`, zeros included, in the order of
    /// [`ListenerStats::rejected_labels`].
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ListenerStats::rejected_labels().zip(
            self.rejected_decode
                .iter()
                .chain(self.rejected_transport.iter())
                .copied(),
        )
    }

    /// The rejections under one label; 0 for an unknown label.
    pub fn rejected_by(&self, label: &str) -> u64 {
        self.rejected()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, n)| n)
    }

    /// Rejections, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected_decode.iter().sum::<u64>() + self.rejected_transport.iter().sum::<u64>()
    }

    /// Every drop counter as `(label, n)`, zeros included, in [`ListenerDropReason::LABELS`] order.
    pub fn dropped(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ListenerDropReason::LABELS
            .iter()
            .copied()
            .zip(self.dropped.iter().copied())
    }

    /// The drops under one label; 0 for an unknown label.
    pub fn dropped_by(&self, label: &str) -> u64 {
        self.dropped()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, n)| n)
    }

    /// Messages dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Connections accepted.
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted
    }

    /// Connections closed.
    pub fn connections_closed(&self) -> u64 {
        self.connections_closed
    }

    /// Connections open (accepted minus closed).
    pub fn connections_open(&self) -> u64 {
        self.connections_accepted
            .saturating_sub(self.connections_closed)
    }

    /// Failed `accept()` calls.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors
    }
}

impl fmt::Debug for ListenerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt_as("ListenerStats", f)
    }
}

impl fmt::Debug for ListenerStatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_as("ListenerStatsSnapshot", f)
    }
}

impl ListenerStatsSnapshot {
    /// The numbers, under `name`: what both `Debug`s show.
    fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let received = Labelled(["v1", "v2", "v3"].into_iter().zip(self.received).collect());
        let nonzero = |it: &mut dyn Iterator<Item = (&'static str, u64)>| {
            Labelled(it.filter(|&(_, n)| n > 0).collect())
        };
        f.debug_struct(name)
            .field("received", &received)
            .field("bytes", &self.bytes)
            .field("rejected", &nonzero(&mut self.rejected()))
            .field("dropped", &nonzero(&mut self.dropped()))
            .field("connections_accepted", &self.connections_accepted)
            .field("connections_closed", &self.connections_closed)
            .field("accept_errors", &self.accept_errors)
            .finish()
    }
}

/// Counters by label, shown as a map.
struct Labelled(Vec<(&'static str, u64)>);

impl fmt::Debug for Labelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().copied()).finish()
    }
}

const fn version_index(v: HepVersion) -> usize {
    match v {
        HepVersion::V1 => 0,
        HepVersion::V2 => 1,
        HepVersion::V3 => 2,
    }
}

/// The slot of a decode-error label: its place in [`DecodeError::LABELS`], or the last
/// slot ("other") for a label the list does not have. Only rejections pay for the search.
fn decode_index(label: &str) -> usize {
    DecodeError::LABELS
        .iter()
        .position(|l| *l == label)
        .unwrap_or(DECODE_SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decode_label_has_its_own_counter() {
        let stats = ListenerStats::new();
        for label in DecodeError::LABELS {
            stats.rejected_decode[decode_index(label)].fetch_add(1, Relaxed);
        }
        let snap = stats.snapshot();
        for label in DecodeError::LABELS {
            assert_eq!(snap.rejected_by(label), 1, "{label}");
        }
        assert_eq!(snap.rejected_by(OTHER_DECODE_LABEL), 0);
        assert_eq!(decode_index("not a label"), DECODE_SLOTS - 1);
    }

    #[test]
    fn labels_are_unique_and_snapshot_lists_them_all() {
        let labels: Vec<_> = ListenerStats::rejected_labels().collect();
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len(), "duplicate label in {labels:?}");
        let snap = ListenerStats::new().snapshot();
        assert_eq!(snap.rejected().map(|(l, _)| l).collect::<Vec<_>>(), labels);
        assert_eq!(snap.dropped().count(), ListenerDropReason::LABELS.len());
    }

    #[test]
    fn totals_add_up() {
        let stats = ListenerStats::new();
        stats.record_received(HepVersion::V1, 1);
        stats.record_received(HepVersion::V3, 5);
        stats.record_rejected(RejectReason::Truncated);
        stats.record_decode_error(&DecodeError::FamilyMismatch);
        stats.record_dropped(ListenerDropReason::ServiceError, 2);
        stats.record_accepted();
        stats.record_accepted();
        stats.record_closed();
        assert_eq!(stats.received_total(), 6);
        assert_eq!(stats.received(HepVersion::V3), 5);
        assert_eq!(stats.rejected_total(), 2);
        assert_eq!(stats.rejected_by("truncated"), 1);
        assert_eq!(stats.rejected_by("family_mismatch"), 1);
        assert_eq!(stats.rejected_by("nonsense"), 0);
        assert_eq!(stats.dropped_total(), 2);
        assert_eq!(stats.connections_open(), 1);
        let snap = stats.snapshot();
        assert_eq!(snap.received_total(), 6);
        assert_eq!(snap.rejected_total(), 2);
        assert_eq!(snap.connections_open(), 1);
        assert_eq!(
            snap.received().collect::<Vec<_>>(),
            [
                (HepVersion::V1, 1),
                (HepVersion::V2, 0),
                (HepVersion::V3, 5)
            ]
        );
    }
}
