//! `hep_cluster_peer_requests_total{peer,result}` (`ok`, `error`, `timeout`) and
//! `hep_cluster_peer_seconds{peer}` (histogram): the requests this node sent its peers,
//! and how long each took to be answered (failures included, at the time they failed).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::lock;
use crate::telemetry::metrics::{Collect, HistogramSnapshot, Kind, Samples};

/// Upper bounds of the latency buckets, seconds.
const BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered (any status: a 404 is an answer).
    Ok,
    /// Failed (not reached, broken exchange, an answer not understood).
    Error,
    /// No answer within the deadline.
    Timeout,
}

impl Outcome {
    const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Default)]
struct PerPeer {
    results: BTreeMap<Outcome, u64>,
    /// Each bucket's own count, one more for `+Inf`.
    buckets: Vec<u64>,
    sum_micros: u64,
}

/// The counters of every peer; registered in the run's metrics registry.
#[derive(Debug, Default)]
pub struct PeerMetrics {
    peers: Mutex<BTreeMap<String, PerPeer>>,
}

impl PeerMetrics {
    /// Counts one request to `peer` that took `took`.
    pub fn observe(&self, peer: &str, outcome: Outcome, took: Duration) {
        let mut peers = lock(&self.peers);
        let p = peers.entry(peer.to_owned()).or_default();
        *p.results.entry(outcome).or_default() += 1;
        if p.buckets.is_empty() {
            p.buckets = vec![0; BOUNDS.len() + 1];
        }
        let secs = took.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BOUNDS.len());
        p.buckets[i] += 1;
        p.sum_micros += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    }
}

impl Collect for PeerMetrics {
    fn collect(&self, out: &mut Samples) {
        out.declare(
            "hep_cluster_peer_requests_total",
            "Requests sent to [cluster] peers, by peer and result (ok, error, timeout).",
            Kind::Counter,
        );
        out.declare(
            "hep_cluster_peer_seconds",
            "Time [cluster] peers took to answer (or to fail), by peer.",
            Kind::Histogram,
        );
        for (peer, p) in lock(&self.peers).iter() {
            for (outcome, n) in &p.results {
                out.sample(
                    "hep_cluster_peer_requests_total",
                    &[("peer", peer), ("result", outcome.label())],
                    *n,
                );
            }
            out.histogram(
                "hep_cluster_peer_seconds",
                &[("peer", peer)],
                HistogramSnapshot {
                    bounds: BOUNDS,
                    buckets: &p.buckets,
                    sum_micros: p.sum_micros,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_has_its_results_and_latency() {
        let m = PeerMetrics::default();
        m.observe("http://a:1", Outcome::Ok, Duration::from_millis(3));
        m.observe("http://a:1", Outcome::Timeout, Duration::from_secs(2));
        m.observe("http://b:1", Outcome::Error, Duration::from_millis(1));
        let mut s = Samples::default();
        m.collect(&mut s);
        let results = s.family("hep_cluster_peer_requests_total");
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].label("result"), Some("timeout"));
        let text = s.render();
        assert!(
            text.contains("hep_cluster_peer_seconds_count{peer=\"http://a:1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hep_cluster_peer_seconds_bucket{peer=\"http://a:1\",le=\"0.005\"} 1"),
            "{text}"
        );
    }
}
