//! The task of a spooling relay: appends what its queue brings to the spool, and sends
//! the spool, in order, to the destination.
//!
//! The sender is in sync mode (each send's future says whether the message was written)
//! with at most `hep_async_max_postponed_chunks - 1` messages in flight, and fenced
//! ([`SenderConfig::fence_on_connection_end`](hep_transport::SenderConfig)): after a
//! connection ends, no message goes out on a new one until the relay has rewound, so the
//! destination never sees a later message ahead of the resent ones. The futures are
//! awaited in order; the first failure stops sending, lets the rest of the flight end,
//! then reads again from the start of the replay window ([`super::spool`], "Delivery
//! contract"). The window is trimmed at each message written, and once more at the
//! break, to what the sender measures the destination can have missed.
//!
//! Written messages form a prefix of the spool that only grows (the delivered position):
//! a message written again whose start lies before it is counted as replayed; so is a
//! message written during a failed round (it is written again after the rewind). So
//! `sent - replayed` is the number of distinct messages written.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hep_transport::sender::future::ResponseFuture;
use hep_transport::{HepDestination, HepSender};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use super::mark::RelayEncoder;
use super::spool::{Entry, Pos, RECORD_HEADER_LEN, Spool};
use crate::outputs::queue::{OutputStats, Queued};

/// Pause after a failed round before sending again, so that a destination refusing at
/// once cannot make the relay spin (the sender's own backoff paces reconnects).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Messages taken from the queue and appended per write.
const APPEND_BATCH: usize = 1024;
struct InFlight {
    start: Pos,
    end: Pos,
    /// Bytes in the spool (record header included): what `replay_bytes` bounds.
    len: u64,
    /// Bytes on the wire.
    wire: u64,
    fut: Pin<Box<ResponseFuture>>,
}

/// Written messages that the destination may not have read, oldest first: what is sent
/// again after a break (and after a restart: its start is the stored resume position).
#[derive(Default)]
struct Window {
    /// (start, spool bytes, wire bytes) of each message.
    messages: VecDeque<(Pos, u64, u64)>,
    bytes: u64,
    wire: u64,
}

impl Window {
    fn push(&mut self, start: Pos, len: u64, wire: u64) {
        self.messages.push_back((start, len, wire));
        self.bytes += len;
        self.wire += wire;
    }

    /// Forgets the oldest messages while the window is over `max_bytes`, and those the
    /// destination has read: the newest `at_risk` wire bytes are kept (`None`: not
    /// known, keep up to `max_bytes`).
    fn trim(&mut self, max_bytes: u64, at_risk: Option<u64>) {
        while let Some(&(_, len, wire)) = self.messages.front() {
            let over = self.bytes > max_bytes;
            let read = at_risk.is_some_and(|r| self.wire - wire >= r);
            if !(over || read) {
                break;
            }
            self.messages.pop_front();
            self.bytes -= len;
            self.wire -= wire;
        }
    }

    fn start(&self) -> Option<Pos> {
        self.messages.front().map(|m| m.0)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The wire bytes at the end of what was written that the destination may not have read:
/// what the sender measured (see [`HepSender::unconfirmed_bytes`]) and `margin`, for
/// what its application may have read and not yet handled.
fn at_risk(sender: &HepSender, margin: u64) -> Option<u64> {
    sender.unconfirmed_bytes().map(|b| b.saturating_add(margin))
}

enum Event {
    Queued(usize),
    Sent(Result<(), hep_transport::sender::error::SendError>),
    Tick,
    Close,
    Resume,
    CloseDeadline,
}

/// Runs a spooling relay until its queue is closed and drained (after `close` or when
/// every sender of the queue is gone). At the end the spool is synced: what was not sent
/// stays in it for the next run. Sending goes on after `close` only while the destination
/// takes messages, for at most `close_timeout` of the sender.
pub(super) async fn forward(
    dest: HepDestination,
    sender: HepSender,
    mut rx: mpsc::Receiver<Queued>,
    stats: Arc<OutputStats>,
    mut spool: Spool,
    close: CancellationToken,
) {
    let mut encoder = RelayEncoder::new(dest.version());
    let max_in_flight = sender
        .config()
        .hep_async_max_postponed_chunks
        .saturating_sub(1)
        .max(1);
    let replay_bytes = spool.config().replay_bytes;
    let margin = spool.config().replay_margin_bytes;
    let close_timeout = sender.config().close_timeout;
    let mut tick = tokio::time::interval(spool.config().sync_interval());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(max_in_flight);
    let mut window = Window::default();
    let mut failing = false;
    let mut down = false;
    let mut paused_until: Option<Instant> = None;
    let mut queue_done = false;
    let mut close_by: Option<Instant> = None;
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    let mut exhausted = false;

    loop {
        // Send what the spool has, within the flight bound. After `close`, only while
        // the destination takes messages and the close deadline has not passed.
        let stop_sending = close_by.is_some_and(|t| down || Instant::now() >= t);
        if paused_until.is_none() && !failing && !stop_sending {
            while in_flight.len() < max_in_flight {
                match spool.next() {
                    Ok(Some(Entry { start, end, bytes })) => {
                        exhausted = false;
                        let wire = bytes.len() as u64;
                        let fut = Box::pin(sender.send(bytes));
                        in_flight.push_back(InFlight {
                            start,
                            end,
                            len: wire + RECORD_HEADER_LEN,
                            wire,
                            fut,
                        });
                    }
                    Ok(None) => {
                        exhausted = true;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(output = %dest, error = %e, "spool: cannot read");
                        paused_until = Some(Instant::now() + RETRY_PAUSE);
                        break;
                    }
                }
            }
        }
        // Done when the queue is drained into the spool and either everything was sent,
        // or (closing) the destination is down or the close deadline passed: then the
        // messages still in flight are left to the sender's close, and stay in the
        // spool (the cursor does not cover them).
        if queue_done && ((in_flight.is_empty() && exhausted) || stop_sending) {
            break;
        }

        // Not biased: a busy queue must not starve the completions, nor the reverse.
        let event = tokio::select! {
            () = close.cancelled(), if close_by.is_none() => Event::Close,
            n = rx.recv_many(&mut batch, APPEND_BATCH), if !queue_done => Event::Queued(n),
            r = async { in_flight.front_mut().map(|f| f.fut.as_mut()).expect("not empty").await },
                if !in_flight.is_empty() => Event::Sent(r),
            _ = tick.tick() => Event::Tick,
            () = sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => Event::Resume,
            () = sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some_and(|t| Instant::now() < t) => Event::CloseDeadline,
        };

        match event {
            Event::Close => {
                // No new messages; those queued or reserved still come (to the spool).
                rx.close();
                close_by = Some(Instant::now() + close_timeout);
            }
            Event::Queued(0) => queue_done = true,
            Event::Queued(n) => {
                stats.dequeued(n as u64);
                exhausted = false;
                for m in batch.drain(..) {
                    // Marked as it is spooled ([`RelayEncoder`]).
                    let bytes = match encoder.encode(&m) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::debug!(output = %dest, error = %e, "cannot encode for the relay");
                            stats.add_failed(1);
                            continue;
                        }
                    };
                    // A failed write is counted by the spool (`spool_write_failed`).
                    if let Err(e) = spool.append(&bytes) {
                        tracing::error!(output = %dest, error = %e, "spool: cannot append");
                    }
                }
                if let Err(e) = spool.flush() {
                    tracing::error!(output = %dest, error = %e, "spool: cannot write");
                }
                if spool.sync_due()
                    && let Err(e) = blocking(|| spool.sync())
                {
                    tracing::error!(output = %dest, error = %e, "spool: cannot sync");
                }
            }
            Event::Sent(result) => {
                let f = in_flight
                    .pop_front()
                    .expect("the future came from the front");
                match result {
                    // Written now and before: counted as replayed, once per extra copy.
                    // Written during a failed round: it is sent again after the rewind,
                    // so this copy is the extra one.
                    Ok(()) if failing => spool.stats().add_replayed(1),
                    Ok(()) => {
                        if f.start < spool.delivered_pos() {
                            spool.stats().add_replayed(1);
                        }
                        if down {
                            down = false;
                            tracing::info!(output = %dest, "relay destination back: sending the spool");
                        }
                        spool.delivered(f.end);
                        window.push(f.start, f.len, f.wire);
                        window.trim(replay_bytes, at_risk(&sender, margin));
                        spool.set_resume(window.start().unwrap_or(f.end));
                    }
                    Err(e) => {
                        if !down {
                            down = true;
                            tracing::warn!(
                                output = %dest,
                                error = %e,
                                backlog = spool.stats().messages(),
                                "relay destination failed: spooling, will resend from the \
                                 replay window"
                            );
                        }
                        failing = true;
                    }
                }
                if failing && in_flight.is_empty() {
                    // The last measure of the broken connection says how much of the
                    // window its destination can have missed.
                    let risk = at_risk(&sender, margin);
                    window.trim(replay_bytes, risk);
                    tracing::info!(
                        output = %dest,
                        messages = window.messages.len(),
                        bytes = window.wire,
                        unconfirmed = risk,
                        "relay: resending what the destination may not have read"
                    );
                    let from = window.start().unwrap_or_else(|| spool.resume_pos());
                    spool.rewind(from);
                    // Only now may a new connection open: nothing sent after the break
                    // went out ahead of the resent messages.
                    sender.clear_fence();
                    window.clear();
                    failing = false;
                    paused_until = Some(Instant::now() + RETRY_PAUSE);
                }
            }
            Event::Resume => paused_until = None,
            Event::Tick => {
                if let Err(e) = blocking(|| spool.sync()) {
                    tracing::error!(output = %dest, error = %e, "spool: cannot sync");
                }
            }
            Event::CloseDeadline => {}
        }
    }

    // A clean end with the destination up: what was written is on its way (the
    // connection is closed gracefully below), so the next run starts after it.
    if !down && !failing {
        spool.set_resume(spool.delivered_pos());
    }
    if let Err(e) = blocking(|| spool.sync()) {
        tracing::error!(output = %dest, error = %e, "spool: cannot sync at exit");
    }
    let left = spool.stats().messages();
    if left > 0 {
        tracing::info!(
            output = %dest,
            spool = %spool.dir().display(),
            messages = left,
            "relay stopped with messages in its spool: they are sent by the next run"
        );
    }
    sender.close().await;
}

/// Runs `f` (an `fsync`) letting the runtime move this worker's other tasks to another
/// thread meanwhile, when it can (a multi-threaded runtime, as `hep-server run` has).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(n: u64) -> Window {
        let mut w = Window::default();
        for i in 0..n {
            w.push(Pos::new(1, 16 + i * 100), 100, 92);
        }
        w
    }

    #[test]
    fn the_window_keeps_what_the_destination_can_have_missed_within_replay_bytes() {
        // Unmeasured: the last replay_bytes.
        let mut w = window(10);
        w.trim(500, None);
        assert_eq!((w.messages.len(), w.bytes), (5, 500));
        assert_eq!(w.start(), Some(Pos::new(1, 516)));
        // Measured: the fewest newest messages that cover the bytes at risk.
        let mut w = window(10);
        w.trim(500, Some(200));
        assert_eq!((w.messages.len(), w.wire), (3, 276));
        // Never more than replay_bytes, whatever the measure says.
        let mut w = window(10);
        w.trim(500, Some(1 << 20));
        assert_eq!(w.messages.len(), 5);
        // Everything read: nothing to send again.
        let mut w = window(10);
        w.trim(500, Some(0));
        assert_eq!(w.start(), None);
    }
}
