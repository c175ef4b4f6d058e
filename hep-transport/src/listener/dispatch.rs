//! Handing decoded messages to the service: readiness, in-flight answers, counting.
//!
//! Every listener loop (a UDP socket worker, a TCP/TLS connection) owns one
//! [`Dispatcher`] around its clone of the service. For each message it waits until the
//! service is ready (that wait is the backpressure), calls it, and keeps the response
//! future until it completes, so that the service's errors are counted.
//!
//! Response futures complete in call order: only the oldest is polled. That keeps a
//! connection's messages in order for every kind of service:
//! - a service that does its work in `call` and answers at once (a channel send, a
//!   counter) completes on the first poll;
//! - a service that answers later (`tower::buffer::Buffer`) is pipelined: up to
//!   `max_in_flight` answers are awaited while reading goes on;
//! - a service that does its work in its future (an `async` block) runs one message at a
//!   time, in order, because only the oldest future is polled.
//!
//! When `max_in_flight` answers are pending, a stream connection waits for the oldest
//! (backpressure); a datagram worker drops the message and counts it as `overload`
//! instead, because waiting would only move the loss into the kernel, uncounted.
//!
//! # Cost per message
//! The hot path is a plain function polled in place ([`Dispatcher::poll_dispatch`]): no
//! future per message is built or moved. The oldest answer lives in a slot allocated once
//! per connection (`Pin<Box<Option<F>>>`, refilled with `Pin::set`), so a service that
//! answers at once costs no allocation; only answers queued behind a pending one are
//! boxed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hep_proto::HepVersion;

use super::shared::Shared;
use crate::{BoxError, HepService, ListenerDropReason, Received};

/// One loop's handle on the service (see the [module docs](self)).
pub(super) struct Dispatcher<S>
where
    S: HepService,
{
    service: S,
    /// The message waiting for the service to be ready.
    next: Option<Received>,
    /// The oldest pending answer when nothing is queued behind it; reused, never freed.
    head: Pin<Box<Option<S::Future>>>,
    /// Answers younger than `head`, oldest first.
    queue: VecDeque<Pin<Box<S::Future>>>,
    max_in_flight: usize,
    drop_when_full: bool,
    /// Messages received (by version), not yet added to the shared counters: added once
    /// per batch or read, and before any wait, so that a stalled service cannot hide them.
    received: [u64; 3],
    shared: Arc<Shared>,
}

impl<S> Dispatcher<S>
where
    S: HepService,
{
    /// A dispatcher with at most `max_in_flight` (at least 1) pending answers, that waits
    /// when they are all taken, or drops (`drop_when_full`).
    pub(super) fn new(
        service: S,
        shared: Arc<Shared>,
        max_in_flight: usize,
        drop_when_full: bool,
    ) -> Self {
        Self {
            service,
            next: None,
            head: Box::pin(None),
            queue: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
            drop_when_full,
            received: [0; 3],
            shared,
        }
    }

    /// Counts a message received from the wire (added to the shared counters later).
    pub(super) fn count_received(&mut self, version: HepVersion) {
        self.received[usize::from(version.number() - 1)] += 1;
    }

    /// Adds the counts of received messages to the shared counters.
    pub(super) fn flush_counts(&mut self) {
        for (v, n) in [HepVersion::V1, HepVersion::V2, HepVersion::V3]
            .into_iter()
            .zip(self.received)
        {
            self.shared.stats.record_received(v, n);
        }
        self.received = [0; 3];
    }

    /// Messages handed over (or about to be) whose answer has not completed.
    pub(super) fn pending(&self) -> usize {
        usize::from(self.next.is_some()) + self.in_flight()
    }

    /// Answers pending.
    fn in_flight(&self) -> usize {
        usize::from(self.head.is_some()) + self.queue.len()
    }

    /// Whether answers are waiting to be driven.
    pub(super) fn has_in_flight(&self) -> bool {
        self.in_flight() > 0
    }

    /// Hands `req` on at the next [`poll_dispatch`](Self::poll_dispatch).
    pub(super) fn submit(&mut self, req: Received) {
        self.next = Some(req);
    }

    /// Waits for room and for the service, then calls it with the submitted message
    /// (or drops it, counted, if all in-flight slots are taken and `drop_when_full`).
    /// `Ready(Ok)` once it is handed on (its answer may still be pending).
    ///
    /// Await it as `poll_fn(|cx| dispatcher.poll_dispatch(cx))`: cancelling that leaves
    /// the message submitted, and [`pending`](Self::pending) counts it.
    ///
    /// # Errors
    /// The service failed in `poll_ready`: it cannot take more requests. The message is
    /// counted as dropped (`service_error`); the caller stops using this dispatcher.
    pub(super) fn poll_dispatch(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let _ = self.poll_drain(cx);
        if self.in_flight() >= self.max_in_flight {
            if !self.drop_when_full {
                // The oldest answer is pending and has our waker.
                self.flush_counts();
                return Poll::Pending;
            }
            if self.next.take().is_some() {
                self.overload();
            }
            return Poll::Ready(Ok(()));
        }
        match self.service.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                if self.next.take().is_some() {
                    self.shared
                        .stats
                        .record_dropped(ListenerDropReason::ServiceError, 1);
                }
                return Poll::Ready(Err(e.into()));
            }
            Poll::Pending => {
                self.flush_counts();
                return Poll::Pending;
            }
        }
        let Some(req) = self.next.take() else {
            return Poll::Ready(Ok(()));
        };
        let fut = self.service.call(req);
        if self.in_flight() == 0 {
            self.head.set(Some(fut));
            let _ = self.poll_drain(cx);
        } else {
            self.queue.push_back(Box::pin(fut));
        }
        Poll::Ready(Ok(()))
    }

    /// Stream listeners: waits for room and for the service, without a message in hand;
    /// then the next frame goes straight to [`call`](Self::call). Decoding a frame only
    /// once the service is ready spares moving the 368-byte [`Received`] through the
    /// `next` slot (a `memcpy` a message). Cancel-safe.
    ///
    /// # Errors
    /// The service failed in `poll_ready`: it cannot take more requests.
    pub(super) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let _ = self.poll_drain(cx);
        if self.in_flight() >= self.max_in_flight {
            // The oldest answer is pending and has our waker.
            self.flush_counts();
            return Poll::Pending;
        }
        match self.service.poll_ready(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(Into::into)),
            Poll::Pending => {
                self.flush_counts();
                Poll::Pending
            }
        }
    }

    /// Calls the service, which [`poll_ready`](Self::poll_ready) found ready. The answer
    /// is driven by the next `poll_ready` or [`drain`](Self::drain).
    pub(super) fn call(&mut self, req: Received) {
        let fut = self.service.call(req);
        if self.in_flight() == 0 {
            self.head.set(Some(fut));
        } else {
            self.queue.push_back(Box::pin(fut));
        }
    }

    /// Completes when no answer is pending; drives them meanwhile. Cancel-safe.
    pub(super) async fn drain(&mut self) {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await;
    }

    /// Polls the oldest answers in order; `Ready` when none is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(head) = self.head.as_mut().as_pin_mut() {
                let res = std::task::ready!(head.poll(cx));
                self.head.set(None);
                self.record(res);
            }
            let Some(next) = self.queue.front_mut() else {
                return Poll::Ready(());
            };
            let res = std::task::ready!(next.as_mut().poll(cx));
            self.queue.pop_front();
            self.record(res);
        }
    }

    fn overload(&self) {
        self.shared
            .stats
            .record_dropped(ListenerDropReason::Overload, 1);
        if let Some(suppressed) = self.shared.warn_service.check() {
            tracing::warn!(
                listener = %self.shared.spec,
                suppressed,
                in_flight = self.in_flight(),
                "overload: every in-flight slot is taken; dropping datagrams"
            );
        }
    }

    fn record(&self, res: Result<(), S::Error>) {
        if let Err(e) = res {
            let e: BoxError = e.into();
            self.shared
                .stats
                .record_dropped(ListenerDropReason::ServiceError, 1);
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
