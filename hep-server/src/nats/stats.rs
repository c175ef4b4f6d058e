//! The counters of an edge output and of a consumer input, and their metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::sync::lock;
use crate::telemetry::metrics::{Collect, HistogramSnapshot, Kind, Samples};

/// Latency buckets, seconds: from a loopback ack (sub-millisecond) to a leader election
/// (seconds) and a consumer that catches up after an outage (a minute).
const BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram updated without a lock.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Latency {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| s <= *b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn sample(&self, out: &mut Samples, name: &'static str, labels: &[(&str, &str)]) {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        out.histogram(
            name,
            labels,
            HistogramSnapshot {
                bounds: &BOUNDS,
                buckets: &buckets,
                sum_micros: self.sum_micros.load(Relaxed),
            },
        );
    }
}

/// An edge output's counters (`output nats:...`).
#[derive(Debug, Default)]
pub struct EdgeStats {
    name: String,
    /// Messages the stream acknowledged (stored, or a copy it already had).
    pub published: AtomicU64,
    /// Of those, acknowledged as a copy of one the stream already had (a retry).
    pub duplicates: AtomicU64,
    /// Publishes sent again after a failure or a timeout.
    pub retries: AtomicU64,
    /// Publishes awaiting their acknowledgement now.
    pub in_flight: AtomicU64,
    /// New messages the stream acknowledged at a sequence at or below one it had given
    /// this edge before (see [`SequenceWatch`]).
    pub sequence_regressions: AtomicU64,
    /// Publish to acknowledgement.
    pub ack: Latency,
}

/// The stream sequences of an edge's acknowledgements, which only grow while the stream
/// keeps its promises: the edge's publishes are acknowledged in order, a new message gets
/// the stream's next sequence once it is stored on a majority of the replicas, and a copy
/// (a retry the stream deduplicated) is acknowledged with its first sequence, so it is
/// left out. A new message acknowledged at or below a sequence given before means the
/// stream handed sequences out again: a replica that missed messages became its leader
/// (nats-server 2.9 after "Resetting stream cluster state"), and the consumers, already
/// past those sequences, may never read what it stored there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SequenceWatch {
    highest: u64,
}

impl SequenceWatch {
    /// Notes one acknowledgement; the highest sequence seen before when `sequence`, of a
    /// new message, is not above it.
    pub fn ack(&mut self, sequence: u64, duplicate: bool) -> Option<u64> {
        if duplicate {
            return None;
        }
        if sequence > self.highest {
            self.highest = sequence;
            return None;
        }
        Some(self.highest)
    }
}

impl EdgeStats {
    /// Counters of the output named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

impl Collect for EdgeStats {
    fn collect(&self, out: &mut Samples) {
        let l = [("output", self.name.as_str())];
        out.declare(
            "hep_nats_published_total",
            "Messages an edge published that the stream acknowledged.",
            Kind::Counter,
        );
        out.sample("hep_nats_published_total", &l, self.published.load(Relaxed));
        out.declare(
            "hep_nats_publish_duplicates_total",
            "Acknowledged publishes the stream already had (Nats-Msg-Id): retries it deduplicated.",
            Kind::Counter,
        );
        out.sample(
            "hep_nats_publish_duplicates_total",
            &l,
            self.duplicates.load(Relaxed),
        );
        out.declare(
            "hep_nats_publish_retries_total",
            "Publishes sent again after a failure or a timeout (same Nats-Msg-Id).",
            Kind::Counter,
        );
        out.sample(
            "hep_nats_publish_retries_total",
            &l,
            self.retries.load(Relaxed),
        );
        out.declare(
            "hep_nats_in_flight",
            "Publishes awaiting their acknowledgement.",
            Kind::Gauge,
        );
        out.sample("hep_nats_in_flight", &l, self.in_flight.load(Relaxed));
        out.declare(
            "hep_nats_sequence_regressions_total",
            "New messages the stream acknowledged at a sequence it had given before: it lost its order (a replica that missed messages led it), and consumers may never read them.",
            Kind::Counter,
        );
        out.sample(
            "hep_nats_sequence_regressions_total",
            &l,
            self.sequence_regressions.load(Relaxed),
        );
        out.declare(
            "hep_nats_ack_seconds",
            "Publish to the stream's acknowledgement.",
            Kind::Histogram,
        );
        self.ack.sample(out, "hep_nats_ack_seconds", &l);
    }
}

/// A consumer input's counters (`input nats:...`).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    name: String,
    /// Messages taken from the stream.
    pub received: AtomicU64,
    /// Messages every output has: the partition's position moved past them.
    pub done: AtomicU64,
    /// Partition consumers made again after one was lost, skipped a delivery or failed.
    pub restarts: AtomicU64,
    /// Partitions read again from their start because the stream ended before their
    /// position (it lost messages it had stored).
    pub rewinds: AtomicU64,
    /// Messages without the edge's headers or HEP bytes that decode: passed over and
    /// dropped.
    pub invalid: AtomicU64,
    /// Per partition, messages waiting in the stream for this consumer (JetStream's
    /// `num_pending`, as last reported).
    pub pending: Mutex<Vec<(u32, u64)>>,
    /// Edge receive to the outputs having the message.
    pub edge_to_store: Latency,
}

impl ConsumerStats {
    /// Counters of the input named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Records what JetStream says is waiting in `partition`.
    pub fn set_pending(&self, partition: u32, n: u64) {
        let mut p = lock(&self.pending);
        match p.iter_mut().find(|(k, _)| *k == partition) {
            Some((_, v)) => *v = n,
            None => {
                p.push((partition, n));
                p.sort_unstable();
            }
        }
    }
}

impl Collect for ConsumerStats {
    fn collect(&self, out: &mut Samples) {
        let name = self.name.as_str();
        let l = [("input", name)];
        for (metric, help, v) in [
            (
                "hep_nats_received_total",
                "Messages a consumer took from the stream.",
                &self.received,
            ),
            (
                "hep_nats_done_total",
                "Messages every output has: the consumer's position in their partition moved past them.",
                &self.done,
            ),
            (
                "hep_nats_consumer_restarts_total",
                "Partition consumers made again from the node's position after one was lost (its server down), skipped a delivery or failed.",
                &self.restarts,
            ),
            (
                "hep_nats_rewinds_total",
                "Partitions read again from their start because the stream ended before their position (it lost messages it had stored).",
                &self.rewinds,
            ),
        ] {
            out.declare(metric, help, Kind::Counter);
            out.sample(metric, &l, v.load(Relaxed));
        }
        out.declare(
            "hep_dropped_total",
            "Messages not delivered, by stage and reason.",
            Kind::Counter,
        );
        out.sample(
            "hep_dropped_total",
            &[
                ("stage", "input"),
                ("input", name),
                ("reason", "nats_invalid"),
            ],
            self.invalid.load(Relaxed),
        );
        out.declare(
            "hep_nats_pending",
            "Messages waiting in the stream for a consumer, per partition (its lag).",
            Kind::Gauge,
        );
        for (k, n) in lock(&self.pending).iter() {
            let k = k.to_string();
            out.sample(
                "hep_nats_pending",
                &[("input", name), ("partition", &k)],
                *n,
            );
        }
        out.declare(
            "hep_nats_edge_to_store_seconds",
            "From the edge's receipt of a message to the consumer's outputs having it.",
            Kind::Histogram,
        );
        self.edge_to_store
            .sample(out, "hep_nats_edge_to_store_seconds", &l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_given_out_again_is_seen_and_copies_are_not() {
        let mut w = SequenceWatch::default();
        assert_eq!(w.ack(5, false), None);
        assert_eq!(w.ack(9, false), None);
        // A retry the stream had: acknowledged with its first sequence.
        assert_eq!(w.ack(7, true), None);
        assert_eq!(w.ack(10, false), None);
        // A stale leader numbering from where it was.
        assert_eq!(w.ack(3, false), Some(10));
        assert_eq!(w.ack(10, false), Some(10));
        assert_eq!(w.ack(4, false), Some(10), "every one of them counts");
        assert_eq!(w.ack(11, false), None, "past the highest again");
        let stats = EdgeStats::new("nats:a");
        stats.sequence_regressions.fetch_add(2, Relaxed);
        let mut s = Samples::default();
        stats.collect(&mut s);
        let text = s.render();
        assert!(
            text.contains("hep_nats_sequence_regressions_total{output=\"nats:a\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn a_latency_lands_in_the_first_bucket_that_holds_it() {
        let h = Latency::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(120));
        let mut s = Samples::default();
        h.sample(&mut s, "x_seconds", &[]);
        let text = s.render();
        assert!(text.contains("x_seconds_bucket{le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"60\"} 2"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert_eq!(h.count(), 3);
    }
}
