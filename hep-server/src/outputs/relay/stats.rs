//! A relay's counters: its queue's, its senders' and its spool's, as one metrics source.

use std::sync::{Arc, Mutex};

use hep_transport::sender::{SenderDropReason, SenderStats, SenderStatsSnapshot};

use super::spool::SpoolStats;
use crate::outputs::queue::OutputStats;
use crate::sync::lock;
use crate::telemetry::metrics::{Collect, Kind, Samples};

/// A relay output: its queue, and what its senders delivered or lost. A reload that
/// changes a relay's settings starts a new sender for it; the counters of every sender
/// the output has had are summed.
///
/// A spooling relay (`;spool=DIR`) is counted differently: a failed write is sent again
/// from the spool, so its sender's failures are `hep_relay_send_failures_total`, not
/// drops; its drops are the spool's (`spool_full`, `spool_corrupt`, `spool_write_failed`);
/// and a message written again is counted once as delivered and once as replayed.
#[derive(Debug)]
pub struct RelayCollect {
    output: Arc<OutputStats>,
    senders: Mutex<Vec<Arc<SenderStats>>>,
    spool: Mutex<Option<Arc<SpoolStats>>>,
}

impl RelayCollect {
    /// The counters of a relay output with the queue counters `output`; its senders
    /// ([`add_sender`](Self::add_sender)) and its spool
    /// ([`spool_or_new`](Self::spool_or_new)) are added as they start.
    pub fn new(output: Arc<OutputStats>) -> Self {
        Self {
            output,
            senders: Mutex::new(Vec::new()),
            spool: Mutex::new(None),
        }
    }

    /// The spool counters of this output, created if it had none (a relay that gets a
    /// spool in a reload).
    pub fn spool_or_new(&self) -> Arc<SpoolStats> {
        Arc::clone(lock(&self.spool).get_or_insert_with(Arc::default))
    }

    /// The spool counters, if the relay has (had) a spool.
    pub fn spool(&self) -> Option<Arc<SpoolStats>> {
        lock(&self.spool).clone()
    }

    /// Adds the counters of a new sender of the same output.
    pub fn add_sender(&self, sender: Arc<SenderStats>) {
        lock(&self.senders).push(sender);
    }

    /// The output's queue counters.
    pub fn output(&self) -> &Arc<OutputStats> {
        &self.output
    }

    fn snapshots(&self) -> Vec<SenderStatsSnapshot> {
        lock(&self.senders).iter().map(|s| s.snapshot()).collect()
    }

    /// Messages delivered: written by its senders, less those a spooling relay wrote again.
    pub fn delivered(&self) -> u64 {
        let snaps = self.snapshots();
        if snaps.is_empty() {
            // A NATS edge's spool: delivered when the stream acknowledged it.
            return self.output.delivered();
        }
        let sent: u64 = snaps.iter().map(|s| s.sent_messages).sum();
        let replayed = self.spool().map_or(0, |s| s.replayed());
        sent.saturating_sub(replayed)
    }

    /// Messages dropped: by its senders (or, spooling, by its spool) and by its queue.
    pub fn dropped(&self) -> u64 {
        let relay: u64 = match self.spool() {
            Some(s) => s.dropped_full() + s.dropped_corrupt() + s.write_failed(),
            None => self.snapshots().iter().map(|s| s.dropped_total()).sum(),
        };
        relay + self.output.failed() + self.output.closed()
    }
}

impl Collect for RelayCollect {
    fn collect(&self, out: &mut Samples) {
        let snaps = self.snapshots();
        let sum = |f: fn(&SenderStatsSnapshot) -> u64| snaps.iter().map(f).sum::<u64>();
        let o = self.output.name();
        out.declare(
            "hep_delivered_total",
            "Messages delivered, by output.",
            Kind::Counter,
        );
        out.sample("hep_delivered_total", &[("output", o)], self.delivered());
        out.declare(
            "hep_dropped_total",
            "Messages not delivered, by stage and reason.",
            Kind::Counter,
        );
        let spool = self.spool();
        if let Some(sp) = &spool {
            for (reason, n) in [
                ("spool_full", sp.dropped_full()),
                ("spool_corrupt", sp.dropped_corrupt()),
                ("spool_write_failed", sp.write_failed()),
            ] {
                out.sample(
                    "hep_dropped_total",
                    &[("stage", "spool"), ("output", o), ("reason", reason)],
                    n,
                );
            }
        } else {
            for reason in SenderDropReason::ALL {
                let n = snaps.iter().map(|s| s.dropped(reason)).sum();
                out.sample(
                    "hep_dropped_total",
                    &[
                        ("stage", "relay"),
                        ("output", o),
                        ("reason", reason.label()),
                    ],
                    n,
                );
            }
        }
        out.sample(
            "hep_dropped_total",
            &[
                ("stage", "output"),
                ("output", o),
                ("reason", "encode_failed"),
            ],
            self.output.failed(),
        );
        out.sample(
            "hep_dropped_total",
            &[
                ("stage", "output"),
                ("output", o),
                ("reason", "output_closed"),
            ],
            self.output.closed(),
        );
        self.output.collect_deadline(out);
        out.declare(
            "hep_output_queue_depth",
            "Messages waiting in an output's queue.",
            Kind::Gauge,
        );
        out.sample(
            "hep_output_queue_depth",
            &[("output", o)],
            self.output.queued(),
        );
        out.declare(
            "hep_relay_queue_depth",
            "Messages waiting in a relay connection's queue.",
            Kind::Gauge,
        );
        out.sample(
            "hep_relay_queue_depth",
            &[("output", o)],
            sum(|s| s.queue_depth),
        );
        out.declare(
            "hep_relay_connects_total",
            "Connections a relay made.",
            Kind::Counter,
        );
        out.sample(
            "hep_relay_connects_total",
            &[("output", o)],
            sum(|s| s.connects),
        );
        if let Some(sp) = &spool {
            out.declare(
                "hep_relay_send_failures_total",
                "Writes of a spooling relay that failed (the message stays in the spool \
                 and is sent again), by reason.",
                Kind::Counter,
            );
            for reason in SenderDropReason::ALL {
                let n = snaps.iter().map(|s| s.dropped(reason)).sum();
                out.sample(
                    "hep_relay_send_failures_total",
                    &[("output", o), ("reason", reason.label())],
                    n,
                );
            }
            out.declare(
                "hep_relay_replayed_total",
                "Messages a spooling relay sent again after a failure or a restart although \
                 they had been written before (possible duplicates at the destination).",
                Kind::Counter,
            );
            out.sample("hep_relay_replayed_total", &[("output", o)], sp.replayed());
            out.declare(
                "hep_spool_bytes",
                "Bytes of a relay's spool on disk.",
                Kind::Gauge,
            );
            out.sample("hep_spool_bytes", &[("output", o)], sp.bytes());
            out.declare(
                "hep_spool_messages",
                "Messages in a relay's spool not yet written to the destination.",
                Kind::Gauge,
            );
            out.sample("hep_spool_messages", &[("output", o)], sp.messages());
            out.declare(
                "hep_spool_corrupt_records_total",
                "Messages of a relay's spool lost to damaged records, counted through \
                 intact length fields (count=\"exact\") or estimated from the damaged \
                 bytes where a length was damaged too (count=\"estimated\"); they sum to \
                 hep_dropped_total{reason=\"spool_corrupt\"}.",
                Kind::Counter,
            );
            let estimated = sp.corrupt_estimated();
            for (count, n) in [
                ("exact", sp.dropped_corrupt().saturating_sub(estimated)),
                ("estimated", estimated),
            ] {
                out.sample(
                    "hep_spool_corrupt_records_total",
                    &[("output", o), ("count", count)],
                    n,
                );
            }
            out.declare(
                "hep_spool_corrupt_bytes_total",
                "Bytes of damaged records a relay's spool skipped or cut off before they \
                 were sent.",
                Kind::Counter,
            );
            out.sample(
                "hep_spool_corrupt_bytes_total",
                &[("output", o)],
                sp.corrupt_bytes(),
            );
        }
        self.output.collect_active(out);
    }
}
