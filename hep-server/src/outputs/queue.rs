//! An output's bounded queue and its counters: what every output kind is started with.
//!
//! The fan-out ([`super::fanout`]) reserves a slot in each queue before it takes a
//! message, so a full queue pushes back instead of growing; the output's worker takes
//! messages off the other end (`blocking_next` for a worker thread) and counts each
//! one, delivered, failed or dropped for a reason of its own, in [`OutputStats`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hep_transport::Received;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, Receiver};
use tokio_util::sync::{CancellationToken, PollSender};

use crate::sync;
use crate::telemetry::metrics::{Collect, Kind, Samples};

/// Counters of one output.
#[derive(Debug)]
pub struct OutputStats {
    name: String,
    delivered: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    queued: AtomicU64,
    deadline: AtomicU64,
    /// Set when the shutdown deadline gave up on the output: its counters are final, a
    /// worker that is still running (a thread stuck in a write) no longer changes them.
    abandoned: Mutex<bool>,
    active: AtomicBool,
    /// Drops of output-specific reasons (the store's `disk_low`), by reason.
    other: Mutex<Vec<(&'static str, u64)>>,
}

impl OutputStats {
    /// Counters for the output written as `name` (its spec).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            abandoned: Mutex::new(false),
            active: AtomicBool::new(true),
            other: Mutex::new(Vec::new()),
        }
    }

    /// The output's spec.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages the output wrote or handed to its transport.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Messages the output failed to write (IO or encode errors), dropped.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Messages lost because the output had stopped.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Messages dropped for an output-specific `reason` (see [`OutputStats::other`]).
    pub fn add_dropped(&self, reason: &'static str, n: u64) {
        let mut other = sync::lock(&self.other);
        match other.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += n,
            None => other.push((reason, n)),
        }
    }

    /// Messages dropped for output-specific reasons, by reason (the store's `disk_low`:
    /// free space below `[store] min_free_mb`).
    pub fn other(&self) -> Vec<(&'static str, u64)> {
        sync::lock(&self.other).clone()
    }

    /// Every message the output dropped: failed, closed and output-specific reasons.
    pub fn dropped(&self) -> u64 {
        // Summed under the lock: no copy of the reasons (inputs read this per message).
        let other: u64 = sync::lock(&self.other).iter().map(|(_, n)| n).sum();
        self.failed() + self.closed() + other
    }

    /// Messages waiting in the output's queue now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Messages still queued when the shutdown deadline passed, not delivered.
    pub fn lost_at_deadline(&self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }

    /// Counts what is queued now (taken by the worker but not yet written included) as
    /// lost at the shutdown deadline, and freezes the counters (see
    /// [`record_written`](Self::record_written)); returns how many.
    pub(crate) fn abandon(&self) -> u64 {
        let mut abandoned = sync::lock(&self.abandoned);
        if *abandoned {
            return 0;
        }
        *abandoned = true;
        let n = self.queued();
        self.deadline.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// A writer's batch: `taken` messages left the queue, `written` of them were written
    /// (the rest failed). `false`, counting nothing, once the output was abandoned at the
    /// shutdown deadline (its queue, this batch included, was counted lost): the writer
    /// stops. So a message is counted once, delivered or lost, even when a stuck write
    /// completes after the deadline.
    pub(crate) fn record_written(&self, taken: u64, written: u64) -> bool {
        self.record_batch(taken, written, &[])
    }

    /// As [`record_written`](Self::record_written), with some of the `taken` messages
    /// dropped for output-specific reasons (`other`: reason, count), neither written nor
    /// failed.
    pub(crate) fn record_batch(
        &self,
        taken: u64,
        written: u64,
        other: &[(&'static str, u64)],
    ) -> bool {
        let abandoned = sync::lock(&self.abandoned);
        if *abandoned {
            return false;
        }
        let dropped: u64 = other.iter().map(|(_, n)| n).sum();
        self.dequeued(taken);
        self.add_delivered(written);
        self.add_failed(taken - written - dropped);
        for &(reason, n) in other.iter().filter(|(_, n)| *n > 0) {
            self.add_dropped(reason, n);
        }
        true
    }

    /// Whether the output is in the running configuration (a reload may have removed it;
    /// its counters stay, at their final values).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    pub(crate) fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_failed(&self, n: u64) {
        self.failed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` messages as queued, as [`OutputQueue::send`] does.
    #[cfg(test)]
    pub(crate) fn enqueued_for_tests(&self, n: u64) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self, n: u64) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Collect for OutputStats {
    fn collect(&self, out: &mut Samples) {
        out.declare(
            "hep_delivered_total",
            "Messages delivered, by output.",
            Kind::Counter,
        );
        out.declare(
            "hep_dropped_total",
            "Messages not delivered, by stage and reason.",
            Kind::Counter,
        );
        out.declare(
            "hep_output_queue_depth",
            "Messages waiting in an output's queue.",
            Kind::Gauge,
        );
        let o = self.name.as_str();
        out.sample("hep_delivered_total", &[("output", o)], self.delivered());
        out.sample(
            "hep_dropped_total",
            &[
                ("stage", "output"),
                ("output", o),
                ("reason", "write_failed"),
            ],
            self.failed(),
        );
        out.sample(
            "hep_dropped_total",
            &[
                ("stage", "output"),
                ("output", o),
                ("reason", "output_closed"),
            ],
            self.closed(),
        );
        for (reason, n) in self.other() {
            out.sample(
                "hep_dropped_total",
                &[("stage", "output"), ("output", o), ("reason", reason)],
                n,
            );
        }
        out.sample("hep_output_queue_depth", &[("output", o)], self.queued());
        self.collect_deadline(out);
        self.collect_active(out);
    }
}

impl OutputStats {
    /// `hep_dropped_total{stage="shutdown",output,reason="deadline"}`.
    pub(crate) fn collect_deadline(&self, out: &mut Samples) {
        out.sample(
            "hep_dropped_total",
            &[
                ("stage", "shutdown"),
                ("output", self.name.as_str()),
                ("reason", "deadline"),
            ],
            self.lost_at_deadline(),
        );
    }

    /// `hep_output_active{output}`: 1 while the output is configured, 0 once a reload
    /// removed it.
    pub(crate) fn collect_active(&self, out: &mut Samples) {
        out.declare(
            "hep_output_active",
            "1 for an output of the running configuration, 0 for one a reload removed.",
            Kind::Gauge,
        );
        out.sample(
            "hep_output_active",
            &[("output", self.name.as_str())],
            u64::from(self.active()),
        );
    }
}

/// A message on its way to an output.
pub type Queued = Arc<Received>;

/// The sending side of one output's queue.
#[derive(Debug, Clone)]
pub struct OutputQueue {
    sender: PollSender<Queued>,
    stats: Arc<OutputStats>,
}

impl OutputQueue {
    /// A queue of `capacity` messages; the receiver goes to the output's worker.
    pub fn new(capacity: usize, stats: Arc<OutputStats>) -> (Self, Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                sender: PollSender::new(tx),
                stats,
            },
            rx,
        )
    }
}

impl OutputQueue {
    /// Reserves a slot for the next [`send`](Self::send); `Ready` also when the queue is
    /// closed (its worker stopped): `send` then counts the loss.
    #[inline]
    pub(crate) fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sender.poll_reserve(cx).map(drop)
    }

    /// Queues `msg` in the slot reserved by [`poll_reserve`](Self::poll_reserve); counted
    /// as `output_closed` when there is none (a caller skipped `poll_reserve`) or the
    /// worker is gone.
    #[inline]
    pub(crate) fn send(&mut self, msg: Queued) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.sender.send_item(msg).is_err() {
            // Not reserved (a caller skipped poll_ready) or the worker is gone.
            self.stats.dequeued(1);
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The next message for a worker thread, waiting on the runtime `runtime`; `None` once
/// the queue is closed and drained. When `close` is cancelled the queue is closed to new
/// messages (`closing` records it), and what it holds (reserved slots included) still
/// comes.
pub(crate) fn blocking_next(
    rx: &mut Receiver<Queued>,
    close: &CancellationToken,
    runtime: &Handle,
    closing: &mut bool,
) -> Option<Queued> {
    loop {
        if *closing {
            return rx.blocking_recv();
        }
        let next = runtime.block_on(async {
            tokio::select! {
                biased;
                m = rx.recv() => Some(m),
                () = close.cancelled() => None,
            }
        });
        match next {
            Some(m) => return m,
            None => {
                rx.close();
                *closing = true;
            }
        }
    }
}
