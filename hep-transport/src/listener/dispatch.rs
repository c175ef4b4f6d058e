//! Handing decoded messages to the service: readiness, in-flight responses, counting.
//!
//! Every listener loop (a UDP socket worker, a TCP/TLS connection) owns one
//! [`Dispatcher`] around its clone of the service. For each message it waits until the
//! service is ready (that wait is the backpressure), calls it, and keeps the response
//! future until it completes, so that the service's errors are counted.
//!
//! Response futures complete in call order: only the oldest is polled. That keeps a
//! connection's messages in order for every kind of service:
//! - a service that does its work in `call` and answers at once (a channel send, a
//!   counter) completes inline: no allocation, no queue;
//! - a service that answers later (`tower::buffer::Buffer`) is pipelined: up to
//!   `max_in_flight` answers are awaited while reading goes on;
//! - a service that does its work in its future (an `async` block) runs one message at a
//!   time, in order, because only the oldest future is polled.
//!
//! When `max_in_flight` answers are pending, a stream connection waits for the oldest
//! (backpressure); a datagram worker drops the message and counts it as `overload`
//! instead, because waiting would only move the loss into the kernel, uncounted.
//!
//! The dispatcher starts inline; the first future that does not complete on its first
//! poll switches it to pipelining (each future is then boxed), and a run of futures that
//! complete at once switches it back.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use hep_proto::HepVersion;
use tower::Service;

use super::Shared;
use crate::{BoxError, DropReason, Received};

/// Futures that complete on their first poll, in a row, before pipelining is given up.
const BACK_TO_INLINE: u32 = 16;

/// One loop's handle on the service (see the [module docs](self)).
pub(crate) struct Dispatcher<S>
where
    S: Service<Received>,
{
    service: S,
    in_flight: VecDeque<Pin<Box<S::Future>>>,
    max_in_flight: usize,
    drop_when_full: bool,
    inline: bool,
    immediate_streak: u32,
    /// A message between `dispatch` being entered and its response being handled or
    /// queued: the caller may be cancelled (hard stop) while waiting, and it must count.
    holding: bool,
    /// Messages received (by version), not yet added to the shared counters: added once
    /// per batch or read, and before any wait, so that a stalled service cannot hide them.
    received: [u64; 3],
    shared: Arc<Shared>,
}

impl<S> Dispatcher<S>
where
    S: Service<Received, Response = ()>,
    S::Error: Into<BoxError>,
{
    /// A dispatcher with at most `max_in_flight` (at least 1) pending answers, that waits
    /// when they are all taken, or drops (`drop_when_full`).
    pub(crate) fn new(
        service: S,
        shared: Arc<Shared>,
        max_in_flight: usize,
        drop_when_full: bool,
    ) -> Self {
        Self {
            service,
            in_flight: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            drop_when_full,
            inline: true,
            immediate_streak: 0,
            holding: false,
            received: [0; 3],
            shared,
        }
    }

    /// Counts a message received from the wire (added to the shared counters later).
    pub(crate) fn count_received(&mut self, version: HepVersion) {
        self.received[usize::from(version.number() - 1)] += 1;
    }

    /// Adds the counts of received messages to the shared counters.
    pub(crate) fn flush_counts(&mut self) {
        for (v, n) in [HepVersion::V1, HepVersion::V2, HepVersion::V3]
            .into_iter()
            .zip(self.received)
        {
            self.shared.stats.record_received(v, n);
        }
        self.received = [0; 3];
    }

    /// Messages handed over whose response has not completed yet.
    pub(crate) fn pending(&self) -> usize {
        self.in_flight.len() + usize::from(self.holding)
    }

    /// Whether response futures are waiting to be driven.
    pub(crate) fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Waits for the service, calls it with `req` and handles or queues the response
    /// (or drops `req`, counted, if all in-flight slots are taken and `drop_when_full`).
    ///
    /// # Errors
    /// The service failed in `poll_ready`: it cannot take more requests. `req` is counted
    /// as dropped (`service_error`); the caller stops using this dispatcher.
    pub(crate) async fn dispatch(&mut self, req: Received) -> Result<(), BoxError> {
        self.holding = true;
        match self.ready().await {
            Ok(true) => {}
            Ok(false) => {
                self.holding = false;
                self.shared.stats.record_dropped(DropReason::Overload, 1);
                if let Some(suppressed) = self.shared.warn_service.check() {
                    tracing::warn!(
                        listener = %self.shared.spec,
                        suppressed,
                        in_flight = self.in_flight.len(),
                        "overload: every in-flight slot is taken; dropping datagrams"
                    );
                }
                return Ok(());
            }
            Err(e) => {
                self.holding = false;
                self.shared
                    .stats
                    .record_dropped(DropReason::ServiceError, 1);
                return Err(e);
            }
        }
        let fut = self.service.call(req);
        if self.in_flight.is_empty() && self.inline {
            let mut fut = pin!(fut);
            if let Some(res) = poll_once(fut.as_mut()).await {
                self.holding = false;
                self.record(res);
                return Ok(());
            }
            // The service answers later. This one is pinned here: finish it in place
            // (order is kept), and pipeline the next ones.
            self.inline = false;
            self.flush_counts();
            self.immediate_streak = 0;
            let res = fut.await;
            self.holding = false;
            self.record(res);
            return Ok(());
        }
        let mut fut = Box::pin(fut);
        if self.in_flight.is_empty()
            && let Some(res) = poll_once(fut.as_mut()).await
        {
            self.holding = false;
            self.record(res);
            self.immediate_streak += 1;
            if self.immediate_streak >= BACK_TO_INLINE {
                self.inline = true;
            }
            return Ok(());
        }
        self.immediate_streak = 0;
        self.in_flight.push_back(fut);
        self.holding = false;
        Ok(())
    }

    /// Completes when no response future is pending; drives them meanwhile. Cancel-safe.
    pub(crate) async fn drain(&mut self) {
        poll_fn(|cx| self.poll_drain(cx)).await;
    }

    /// Polls the oldest response futures in order; `Ready` when none is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(head) = self.in_flight.front_mut() {
            match head.as_mut().poll(cx) {
                Poll::Ready(res) => {
                    self.in_flight.pop_front();
                    self.record(res);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }

    /// Waits until there is room in flight and the service is ready, driving the
    /// in-flight futures meanwhile (a `ConcurrencyLimit` inside frees its permits only
    /// when they complete: waiting on readiness alone would deadlock). `Ok(false)`: no
    /// room and `drop_when_full`.
    async fn ready(&mut self) -> Result<bool, BoxError> {
        poll_fn(|cx| {
            let _ = self.poll_drain(cx);
            if self.in_flight.len() >= self.max_in_flight {
                if self.drop_when_full {
                    return Poll::Ready(Ok(false));
                }
                // The oldest future is pending and has our waker.
                self.flush_counts();
                return Poll::Pending;
            }
            match self.service.poll_ready(cx) {
                Poll::Ready(res) => Poll::Ready(res.map(|()| true).map_err(Into::into)),
                Poll::Pending => {
                    self.flush_counts();
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn record(&self, res: Result<(), S::Error>) {
        if let Err(e) = res {
            let e: BoxError = e.into();
            self.shared
                .stats
                .record_dropped(DropReason::ServiceError, 1);
            if let Some(suppressed) = self.shared.warn_service.check() {
                tracing::warn!(
                    listener = %self.shared.spec,
                    suppressed,
                    error = %e,
                    "the service failed a message; it is dropped"
                );
            }
        }
    }
}

/// Polls `fut` once: `Some(output)` if it completed.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Option<F::Output> {
    poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}
