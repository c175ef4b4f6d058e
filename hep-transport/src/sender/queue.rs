//! The sans-IO core of a connection: its queue of pending messages and the accounting
//! rules the sender keeps, as quinn-proto keeps a connection's state apart from its
//! sockets. No socket, no clock (times come in as arguments), no lock: `conn` keeps one
//! [`ConnQueue`] behind each connection's mutex and drives it from the callers and the
//! writer task; the tests below drive it alone.
//!
//! # The rules
//! - **Every accepted message is an [`Entry`]**, which is in exactly one place: the
//!   connection's queue, or the batch the writer took from it ([`ConnQueue::take_batch`]).
//!   It is counted exactly once: sent ([`complete_sent`]), or dropped with the reason
//!   the connection ended with ([`drop_all`]). At rest, `sent + dropped + queue_depth`
//!   is what was offered.
//! - **Overflow** (`hep_async_max_postponed_chunks` pending, [`ConnQueue::admit`]): a
//!   connection still being made drops only the overflowing message; an established
//!   one whose destination reads (its writer made progress lately, [`stalled`]) drops
//!   only that message too, and it is no failure; an established one whose writer has
//!   stalled is broken (OpenSIPS's `S_CONN_BAD`): it ends, with its queue.
//! - **A break** ([`ConnQueue::end`]): an established connection that ends otherwise
//!   than by the sender is broken; what was written on it is unconfirmed, unless the
//!   destination closed it in order while nothing was being written (a receiver with
//!   unread data resets instead of closing).
//!
//! Retry and backoff decisions (consecutive failures, cooldown, the next attempt) are
//! sans-IO too, in `backoff`'s `RetryState`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::error::SendError;
use super::future::Completion;
use super::{SenderDropReason, SenderStats};

/// The cause of a failure, shared by every message it drops.
pub(crate) type Source = Arc<dyn std::error::Error + Send + Sync>;

/// The most messages and bytes the writer takes from the queue for one write.
pub(crate) const MAX_BATCH_MESSAGES: usize = 256;
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024;

/// One accepted message.
pub(crate) struct Entry {
    bytes: Bytes,
    /// Who waits for the outcome (a send's future), if anyone.
    done: Option<Completion>,
    /// Sync mode: the slot the message holds until it is sent or dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Entry {
    /// A message nobody waits for and that holds no slot.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self::with(bytes, None, None)
    }

    /// A message whose outcome goes to `done`, holding `permit` until then.
    pub(crate) fn with(
        bytes: Bytes,
        done: Option<Completion>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            bytes,
            done,
            _permit: permit,
        }
    }

    /// The encoded message.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Tells whoever waits for it (and frees its slot).
    fn complete(self, result: Result<(), SendError>) {
        if let Some(done) = self.done {
            // The receiver may be gone (future dropped or deadline passed): fine.
            let _ = done.send(result);
        }
    }
}

/// Why a connection ended; its unsent messages are dropped with this reason.
#[derive(Clone)]
pub(crate) struct End {
    pub(crate) reason: SenderDropReason,
    pub(crate) source: Option<Source>,
    pub(crate) by: EndedBy,
}

/// Who ended a connection, which says what became of the messages written on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// The sender's close (or its drop, or the close deadline).
    Us,
    /// The destination closed it in order (EOF) while nothing was being written: it had
    /// read what it got, since a receiver that closes with unread data resets instead.
    PeerInOrder,
    /// A reset, a socket error, a timeout, a close in the middle of a write, a stall, an
    /// unconfirmed close: the messages written on it may not have been read.
    Failure,
}

impl End {
    /// A failure of the destination.
    pub(crate) fn new(reason: SenderDropReason, source: Option<Source>) -> Self {
        Self {
            reason,
            source,
            by: EndedBy::Failure,
        }
    }

    /// A failure of the destination, caused by `e`.
    pub(crate) fn io(reason: SenderDropReason, e: io::Error) -> Self {
        Self::new(reason, Some(Arc::new(e)))
    }

    /// The sender's own close.
    pub(crate) const fn closed() -> Self {
        Self {
            reason: SenderDropReason::Closed,
            source: None,
            by: EndedBy::Us,
        }
    }

    /// The same end, by `by`.
    pub(crate) const fn by(mut self, by: EndedBy) -> Self {
        self.by = by;
        self
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the backoff deadline.
    Waiting,
    Connecting,
    Established,
}

/// What the overflow rule decides for a message that finds the queue full (see the
/// [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Established, and the destination reads: only this message is dropped, and it is
    /// no failure of the destination (it is overloaded, not failed).
    Overload,
    /// Still being made: only this message is dropped (dropping the attempt would
    /// restart the connect and, at a high message rate, never finish one).
    Connecting,
    /// Established, and its writer has stalled: the connection is broken and dropped
    /// with its queue, and that is a failure of the destination.
    Break,
}

/// What the writer should do next ([`ConnQueue::take_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A batch was taken: write it.
    Write,
    /// Nothing queued: wait for a message.
    Idle,
    /// Nothing queued and a close was asked for: close.
    Shutdown,
    /// The connection ended: stop.
    Ended,
}

/// What an ended connection leaves behind ([`ConnQueue::end`]), to be
/// [`settle`](Self::settle)d outside the lock.
pub(crate) struct Ended {
    pub(crate) end: End,
    /// The messages still queued: dropped with `end`'s reason.
    drained: VecDeque<Entry>,
    /// `Some` when the end broke an established connection: how many of the messages
    /// written on it are not known to have been read.
    pub(crate) unconfirmed: Option<u64>,
}

impl Ended {
    /// Counts the break, if it was one, and drops (counts, and tells) every message
    /// that was still queued.
    pub(crate) fn settle(self, stats: &SenderStats, destination: &Arc<str>) {
        if let Some(unconfirmed) = self.unconfirmed {
            stats.broken(unconfirmed);
        }
        drop_all(self.drained, &self.end, stats, destination);
    }
}

/// One connection's pending messages and what its end leaves behind (see the
/// [module docs](self)).
pub(crate) struct ConnQueue {
    queue: VecDeque<Entry>,
    /// Messages the writer has taken out of `queue` and not yet accounted for.
    held: usize,
    phase: Phase,
    end: Option<End>,
    close_deadline: Option<Instant>,
    /// Messages written whole on this connection (counted sent): what a break leaves
    /// unconfirmed.
    written: u64,
}

// ===== impl ConnQueue =====

impl ConnQueue {
    /// A connection waiting for its first attempt, with nothing queued.
    pub(crate) const fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            held: 0,
            phase: Phase::Waiting,
            end: None,
            close_deadline: None,
            written: 0,
        }
    }

    pub(crate) fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The connect attempt starts.
    pub(crate) fn connecting(&mut self) {
        self.phase = Phase::Connecting;
    }

    /// The connection is made.
    pub(crate) fn established(&mut self) {
        self.phase = Phase::Established;
    }

    /// Why it ended, if it did.
    pub(crate) const fn ended(&self) -> Option<&End> {
        self.end.as_ref()
    }

    pub(crate) const fn is_ended(&self) -> bool {
        self.end.is_some()
    }

    /// Messages pending: queued, or taken by the writer and not yet accounted for.
    pub(crate) fn pending(&self) -> usize {
        self.queue.len() + self.held
    }

    /// Nothing pending: a message may bypass the queue (a direct write).
    pub(crate) fn is_idle(&self) -> bool {
        self.pending() == 0
    }

    /// How many more messages fit under `limit` pending.
    pub(crate) fn room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.pending())
    }

    /// Whether a message may be queued under `limit` pending: yes when there is room, or
    /// when it holds a sync-mode slot (the slots already bound the queue). Otherwise the
    /// overflow rule; `stalled` says whether the writer has made no progress lately (see
    /// [`stalled`]), asked only of an established connection with a full queue (it
    /// reads the clock).
    pub(crate) fn admit(
        &self,
        limit: usize,
        holds_slot: bool,
        stalled: impl FnOnce() -> bool,
    ) -> Result<(), Overflow> {
        if holds_slot || self.pending() < limit {
            return Ok(());
        }
        if !self.is_established() {
            return Err(Overflow::Connecting);
        }
        Err(if stalled() {
            Overflow::Break
        } else {
            Overflow::Overload
        })
    }

    /// Queues one message (admitted, or the rest of one a direct write cut short).
    pub(crate) fn push(&mut self, entry: Entry, stats: &SenderStats) {
        self.queue.push_back(entry);
        stats.queued();
    }

    /// Queues messages at once (the caller checked the room).
    pub(crate) fn extend(&mut self, messages: &[Bytes], stats: &SenderStats) {
        self.queue
            .extend(messages.iter().map(|bytes| Entry::new(bytes.clone())));
        stats.queued_many(messages.len() as u64);
    }

    /// Whether messages wait in the queue (the writer has something to take).
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The writer takes its next batch into `batch` (empty): at most `max_messages`
    /// messages, and it stops once `max_bytes` are reached. Or says why there is none.
    pub(crate) fn take_batch(
        &mut self,
        batch: &mut VecDeque<Entry>,
        max_messages: usize,
        max_bytes: usize,
    ) -> Next {
        if self.end.is_some() {
            return Next::Ended;
        }
        if self.queue.is_empty() {
            return if self.close_deadline.is_some() {
                Next::Shutdown
            } else {
                Next::Idle
            };
        }
        let mut bytes = 0;
        while let Some(e) = self.queue.pop_front() {
            bytes += e.bytes.len();
            batch.push_back(e);
            if batch.len() >= max_messages || bytes >= max_bytes {
                break;
            }
        }
        self.held = batch.len();
        Next::Write
    }

    /// `n` messages of the writer's batch were written whole, and `left` remain in it.
    /// Then [`complete_sent`] them (outside the lock).
    pub(crate) fn sent_from_batch(&mut self, n: usize, left: usize) {
        self.held = left;
        self.written += n as u64;
    }

    /// `n` messages were written whole without being queued (a direct write; counted
    /// sent by the caller).
    pub(crate) fn sent_directly(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// The writer is gone: it dropped (and counted) its batch itself.
    pub(crate) fn release_batch(&mut self) {
        self.held = 0;
    }

    /// Asks for a close, at the latest at `deadline` (the first deadline asked for stays).
    pub(crate) fn begin_close(&mut self, deadline: Instant) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(deadline);
        }
    }

    pub(crate) const fn close_deadline(&self) -> Option<Instant> {
        self.close_deadline
    }

    /// Ends the connection with `end`: what it leaves behind, or `None` if it had
    /// already ended (the first end counts, once). See the [module docs](self) for when
    /// it is a break and what is then unconfirmed.
    pub(crate) fn end(&mut self, end: End) -> Option<Ended> {
        if self.end.is_some() {
            return None;
        }
        self.end = Some(end.clone());
        let unconfirmed = (self.is_established() && end.by != EndedBy::Us).then(|| {
            if end.by == EndedBy::Failure {
                self.written
            } else {
                0
            }
        });
        Some(Ended {
            end,
            drained: std::mem::take(&mut self.queue),
            unconfirmed,
        })
    }
}

/// Whether a writer whose last progress was at `progress_ms` has stalled by `now_ms`
/// (both on the sender's millisecond clock): no progress for `timeout`
/// (`overflow_stall_timeout`).
pub(crate) fn stalled(now_ms: u64, progress_ms: u64, timeout: Duration) -> bool {
    u128::from(now_ms.saturating_sub(progress_ms)) >= timeout.as_millis()
}

/// Completes `entries` as sent (the writer's batch, written) and counts them.
pub(crate) fn complete_sent(entries: impl IntoIterator<Item = Entry>, stats: &SenderStats) {
    let (mut n, mut bytes) = (0, 0);
    for e in entries {
        n += 1;
        bytes += e.bytes.len() as u64;
        e.complete(Ok(()));
    }
    stats.sent_many(n, bytes);
    stats.dequeued(n);
}

/// Drops `entries` (queued or held) with `end`'s reason: counts them and tells whoever
/// waits.
pub(crate) fn drop_all(
    entries: impl IntoIterator<Item = Entry>,
    end: &End,
    stats: &SenderStats,
    destination: &Arc<str>,
) {
    let mut n = 0;
    for e in entries {
        n += 1;
        e.complete(Err(SendError::new(
            end.reason,
            destination.clone(),
            end.source.clone(),
        )));
    }
    stats.dropped(end.reason, n);
    stats.dequeued(n);
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::sender::SenderStatsSnapshot;

    /// The bound of the tests' queues (`hep_async_max_postponed_chunks`).
    const LIMIT: usize = 4;

    fn msg(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    fn dest() -> Arc<str> {
        "test-destination".into()
    }

    /// A queue in `phase` holding `n` messages, as a caller would have queued them.
    fn queued(phase: Phase, n: usize, stats: &SenderStats) -> ConnQueue {
        let mut q = ConnQueue::new();
        q.phase = phase;
        for i in 0..n {
            assert_eq!(q.admit(LIMIT, false, || false), Ok(()));
            q.push(Entry::new(msg(i as u8)), stats);
        }
        q
    }

    /// Sends what the writer takes in one batch, as the writer does.
    fn write_one_batch(q: &mut ConnQueue, stats: &SenderStats) -> usize {
        let mut batch = VecDeque::new();
        assert_eq!(
            q.take_batch(&mut batch, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES),
            Next::Write
        );
        let n = batch.len();
        q.sent_from_batch(n, 0);
        complete_sent(batch, stats);
        n
    }

    fn offered(s: &SenderStatsSnapshot) -> u64 {
        s.sent_messages + s.dropped_total() + s.queue_depth
    }

    #[test]
    fn below_the_bound_every_message_is_queued() {
        let stats = SenderStats::new();
        let q = queued(Phase::Established, LIMIT - 1, &stats);
        assert_eq!(q.admit(LIMIT, false, || true), Ok(()));
        assert_eq!(q.room(LIMIT), 1);
        assert_eq!(stats.queue_depth(), 3);
    }

    #[test]
    fn the_clock_is_read_only_for_an_established_connection_with_a_full_queue() {
        let stats = SenderStats::new();
        let not_asked = || panic!("the stall was measured");
        let room = queued(Phase::Established, LIMIT - 1, &stats);
        assert_eq!(room.admit(LIMIT, false, not_asked), Ok(()));
        let connecting = queued(Phase::Connecting, LIMIT, &stats);
        assert_eq!(
            connecting.admit(LIMIT, false, not_asked),
            Err(Overflow::Connecting)
        );
        let full = queued(Phase::Established, LIMIT, &stats);
        assert_eq!(full.admit(LIMIT, true, not_asked), Ok(()));
    }

    #[test]
    fn a_full_queue_of_a_destination_that_reads_drops_only_the_overflowing_message() {
        let stats = SenderStats::new();
        let q = queued(Phase::Established, LIMIT, &stats);
        assert_eq!(q.admit(LIMIT, false, || false), Err(Overflow::Overload));
        assert_eq!(q.pending(), LIMIT, "the queue stays");
        assert!(!q.is_ended());
    }

    #[test]
    fn a_full_queue_while_connecting_drops_only_the_overflowing_message() {
        let stats = SenderStats::new();
        for phase in [Phase::Waiting, Phase::Connecting] {
            let q = queued(phase, LIMIT, &stats);
            assert_eq!(
                q.admit(LIMIT, false, || true),
                Err(Overflow::Connecting),
                "{phase:?}"
            );
        }
    }

    #[test]
    fn a_sync_mode_message_holding_a_slot_is_always_queued() {
        let stats = SenderStats::new();
        let q = queued(Phase::Established, LIMIT, &stats);
        assert_eq!(q.admit(LIMIT, true, || true), Ok(()));
    }

    #[test]
    fn a_full_queue_of_a_stalled_connection_breaks_it_and_loses_the_queue() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 2, &stats);
        assert_eq!(
            write_one_batch(&mut q, &stats),
            2,
            "written on the connection"
        );
        for i in 0..LIMIT {
            q.push(Entry::new(msg(i as u8)), &stats);
        }
        assert_eq!(q.admit(LIMIT, false, || true), Err(Overflow::Break));

        let ended = q
            .end(End::new(SenderDropReason::QueueOverflow, None))
            .unwrap();
        assert_eq!(
            ended.unconfirmed,
            Some(2),
            "what was written may not have been read"
        );
        ended.settle(&stats, &dest());
        // The overflowing message is dropped by the caller, as `submit` does.
        stats.dropped(SenderDropReason::QueueOverflow, 1);

        let s = stats.snapshot();
        assert_eq!(s.sent_messages, 2);
        assert_eq!(s.dropped(SenderDropReason::QueueOverflow), LIMIT as u64 + 1);
        assert_eq!((s.broken_connections, s.unconfirmed_messages), (1, 2));
        assert_eq!(s.queue_depth, 0);
        assert_eq!(offered(&s), 2 + LIMIT as u64 + 1);
        assert!(q.is_ended());
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn the_first_end_counts_and_later_ones_are_no_ops() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 3, &stats);
        q.end(End::io(SenderDropReason::Io, io::Error::other("reset")))
            .unwrap()
            .settle(&stats, &dest());
        assert!(q.end(End::closed()).is_none());
        assert_eq!(q.ended().map(|e| e.reason), Some(SenderDropReason::Io));
        let s = stats.snapshot();
        assert_eq!(s.dropped(SenderDropReason::Io), 3);
        assert_eq!(s.dropped(SenderDropReason::Closed), 0);
        assert_eq!(s.broken_connections, 1);
    }

    #[test]
    fn the_senders_own_close_is_no_break() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 1, &stats);
        write_one_batch(&mut q, &stats);
        q.push(Entry::new(msg(9)), &stats);
        let ended = q.end(End::closed()).unwrap();
        assert_eq!(ended.unconfirmed, None);
        ended.settle(&stats, &dest());
        let s = stats.snapshot();
        assert_eq!((s.broken_connections, s.unconfirmed_messages), (0, 0));
        assert_eq!(
            s.dropped(SenderDropReason::Closed),
            1,
            "what was left unsent"
        );
    }

    #[test]
    fn a_destination_closing_in_order_breaks_the_connection_with_nothing_unconfirmed() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 3, &stats);
        write_one_batch(&mut q, &stats);
        let end = End::new(SenderDropReason::Closed, None).by(EndedBy::PeerInOrder);
        q.end(end).unwrap().settle(&stats, &dest());
        let s = stats.snapshot();
        assert_eq!((s.broken_connections, s.unconfirmed_messages), (1, 0));
    }

    #[test]
    fn a_connection_never_established_is_no_break() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Connecting, 2, &stats);
        let ended = q
            .end(End::io(
                SenderDropReason::ConnectFailed,
                io::Error::other("refused"),
            ))
            .unwrap();
        assert_eq!(ended.unconfirmed, None);
        ended.settle(&stats, &dest());
        let s = stats.snapshot();
        assert_eq!(s.broken_connections, 0);
        assert_eq!(s.dropped(SenderDropReason::ConnectFailed), 2);
    }

    #[test]
    fn direct_writes_count_as_written_on_the_connection() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 0, &stats);
        q.sent_directly(5);
        let ended = q
            .end(End::new(SenderDropReason::WriteTimeout, None))
            .unwrap();
        assert_eq!(ended.unconfirmed, Some(5));
    }

    #[test]
    fn whoever_waits_for_a_dropped_message_is_told_why() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 0, &stats);
        let (tx, mut rx) = oneshot::channel();
        q.push(Entry::with(msg(1), Some(tx), None), &stats);
        q.end(End::new(SenderDropReason::WriteTimeout, None))
            .unwrap()
            .settle(&stats, &dest());
        let e = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(e.reason(), SenderDropReason::WriteTimeout);
        assert_eq!(e.destination(), "test-destination");
    }

    #[test]
    fn the_writer_takes_batches_bounded_by_messages_and_by_bytes() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 0, &stats);
        let mut batch = VecDeque::new();
        assert_eq!(q.take_batch(&mut batch, 2, 1000), Next::Idle);
        q.extend(&[msg(1), msg(2), msg(3), msg(4), msg(5)], &stats);
        assert_eq!(q.take_batch(&mut batch, 2, 1000), Next::Write);
        assert_eq!(
            (batch.len(), q.pending()),
            (2, 5),
            "held ones are still pending"
        );
        q.sent_from_batch(1, 1);
        complete_sent(batch.drain(..1), &stats);
        assert_eq!(q.pending(), 4);
        q.sent_from_batch(1, 0);
        complete_sent(batch.drain(..), &stats);
        // 10-byte messages: the batch stops at the one that reaches 15 bytes.
        assert_eq!(q.take_batch(&mut batch, 100, 15), Next::Write);
        assert_eq!(batch.len(), 2);
        assert_eq!(stats.snapshot().sent_messages, 2);
    }

    #[test]
    fn an_empty_queue_closes_once_a_close_is_asked_for_and_an_ended_one_stops() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 1, &stats);
        let t0 = Instant::now();
        q.begin_close(t0 + Duration::from_secs(1));
        q.begin_close(t0 + Duration::from_secs(9));
        assert_eq!(
            q.close_deadline(),
            Some(t0 + Duration::from_secs(1)),
            "the first stays"
        );
        let mut batch = VecDeque::new();
        assert_eq!(
            q.take_batch(&mut batch, 8, 1000),
            Next::Write,
            "flush first"
        );
        q.sent_from_batch(1, 0);
        complete_sent(batch.drain(..), &stats);
        assert_eq!(q.take_batch(&mut batch, 8, 1000), Next::Shutdown);
        q.end(End::closed()).unwrap().settle(&stats, &dest());
        assert_eq!(q.take_batch(&mut batch, 8, 1000), Next::Ended);
    }

    #[test]
    fn a_held_batch_dropped_by_the_writer_is_counted_with_the_end_reason() {
        let stats = SenderStats::new();
        let mut q = queued(Phase::Established, 3, &stats);
        let mut batch = VecDeque::new();
        q.take_batch(&mut batch, 2, 1000);
        let end = End::new(SenderDropReason::Io, None);
        q.end(end.clone()).unwrap().settle(&stats, &dest());
        // What the writer does when it stops: its batch goes with the connection.
        drop_all(batch, &end, &stats, &dest());
        q.release_batch();
        let s = stats.snapshot();
        assert_eq!(s.dropped(SenderDropReason::Io), 3);
        assert_eq!((s.queue_depth, offered(&s)), (0, 3));
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn a_writer_has_stalled_once_it_made_no_progress_for_the_timeout() {
        let timeout = Duration::from_millis(1000);
        assert!(!stalled(5_999, 5_000, timeout));
        assert!(stalled(6_000, 5_000, timeout));
        assert!(
            !stalled(4_000, 5_000, timeout),
            "progress after now is no stall"
        );
        assert!(
            stalled(0, 0, Duration::ZERO),
            "zero: every overflow breaks (OpenSIPS)"
        );
    }
}
