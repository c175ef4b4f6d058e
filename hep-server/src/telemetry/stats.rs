//! The counters of the listeners, the callbacks and the reloads as metrics (the
//! outputs' are beside each output: [`crate::outputs`]).
//!
//! Metric names: `hep_received_total{transport}` (messages decoded from the wire),
//! `hep_rejected_total{reason}`, `hep_skipped_total`, `hep_delivered_total{output}`,
//! `hep_dropped_total{stage,reason}`; plus connection and queue gauges. Every message that
//! is not delivered is counted under `hep_dropped_total` or `hep_rejected_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hep_callbacks::CallbackStats;
use hep_proto::HepVersion;
use hep_transport::{ListenSpec, ListenerStats, RecvInfo};

use super::metrics::{Collect, Kind, Samples};
use crate::sync::lock;

/// A listener's counters, labelled with its transport and address.
#[derive(Debug)]
pub struct ListenerCollect {
    transport: &'static str,
    listener: String,
    stats: Arc<ListenerStats>,
}

impl ListenerCollect {
    /// Counters of the listener bound to `spec`.
    pub fn new(spec: ListenSpec, stats: Arc<ListenerStats>) -> Self {
        Self {
            transport: spec.transport.as_str(),
            listener: spec.to_string(),
            stats,
        }
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }
}

impl Collect for ListenerCollect {
    fn collect(&self, out: &mut Samples) {
        let s = self.stats.snapshot();
        let (t, l) = (self.transport, self.listener.as_str());
        out.declare(
            "hep_received_total",
            "HEP messages decoded from the wire.",
            Kind::Counter,
        );
        for v in [HepVersion::V1, HepVersion::V2, HepVersion::V3] {
            let version = v.number().to_string();
            out.sample(
                "hep_received_total",
                &[("transport", t), ("listener", l), ("version", &version)],
                s.received_by(v),
            );
        }
        out.declare(
            "hep_received_bytes_total",
            "Bytes of HEP received.",
            Kind::Counter,
        );
        out.sample(
            "hep_received_bytes_total",
            &[("transport", t), ("listener", l)],
            s.bytes(),
        );
        out.declare(
            "hep_rejected_total",
            "Datagrams, frames or connections refused, by reason.",
            Kind::Counter,
        );
        for (reason, n) in s.rejected() {
            out.sample(
                "hep_rejected_total",
                &[("transport", t), ("listener", l), ("reason", reason)],
                n,
            );
        }
        out.declare(
            "hep_dropped_total",
            "Messages not delivered, by stage and reason.",
            Kind::Counter,
        );
        for (reason, n) in s.dropped() {
            out.sample(
                "hep_dropped_total",
                &[("stage", "listener"), ("listener", l), ("reason", reason)],
                n,
            );
        }
        if t != "udp" {
            out.declare(
                "hep_connections_open",
                "Open TCP/TLS connections.",
                Kind::Gauge,
            );
            out.sample(
                "hep_connections_open",
                &[("listener", l)],
                s.connections_open(),
            );
            out.declare(
                "hep_connections_accepted_total",
                "TCP/TLS connections accepted.",
                Kind::Counter,
            );
            out.sample(
                "hep_connections_accepted_total",
                &[("listener", l)],
                s.connections_accepted(),
            );
        }
    }
}

/// The callbacks' counters: those of every chain the run has had (a reload builds a new
/// one), summed by callback name, so that the series never go backwards.
#[derive(Debug, Default)]
pub struct CallbackCollect {
    stats: Mutex<Vec<Arc<CallbackStats>>>,
}

impl CallbackCollect {
    /// The counters of `stats`.
    pub fn new(stats: Vec<Arc<CallbackStats>>) -> Self {
        Self {
            stats: Mutex::new(stats),
        }
    }

    /// Adds the counters of a new chain.
    pub fn extend(&self, stats: impl IntoIterator<Item = Arc<CallbackStats>>) {
        lock(&self.stats).extend(stats);
    }

    /// The counters of every chain the run has had.
    pub fn all(&self) -> Vec<Arc<CallbackStats>> {
        lock(&self.stats).clone()
    }

    /// Where the last message the callback `name` refused for `reason` came from (the
    /// newest chain that refused one).
    pub fn last_rejected(&self, name: &str, reason: &str) -> Option<RecvInfo> {
        self.all()
            .iter()
            .rev()
            .filter(|c| c.name() == name)
            .find_map(|c| c.last_rejected(reason))
    }

    /// `(name, skipped, [(reason, rejected)])` per callback name, in first-seen order.
    #[allow(clippy::type_complexity, reason = "a private tally")]
    fn by_name(&self) -> Vec<(&'static str, u64, Vec<(&'static str, u64)>)> {
        let mut out: Vec<(&'static str, u64, Vec<(&'static str, u64)>)> = Vec::new();
        for cb in self.all() {
            let i = match out.iter().position(|(n, ..)| *n == cb.name()) {
                Some(i) => i,
                None => {
                    out.push((cb.name(), 0, Vec::new()));
                    out.len() - 1
                }
            };
            let (_, skipped, reasons) = &mut out[i];
            *skipped += cb.skipped();
            for (reason, n) in cb.rejected() {
                match reasons.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, total)) => *total += n,
                    None => reasons.push((reason, n)),
                }
            }
        }
        out
    }
}

impl Collect for CallbackCollect {
    fn collect(&self, out: &mut Samples) {
        out.declare(
            "hep_skipped_total",
            "Messages a callback skipped (HEP_SCRIPT_SKIP).",
            Kind::Counter,
        );
        out.declare(
            "hep_dropped_total",
            "Messages not delivered, by stage and reason.",
            Kind::Counter,
        );
        let callbacks = self.by_name();
        if callbacks.is_empty() {
            out.sample("hep_skipped_total", &[], 0);
        }
        for (name, skipped, reasons) in callbacks {
            out.sample("hep_skipped_total", &[("callback", name)], skipped);
            for (reason, n) in reasons {
                out.sample(
                    "hep_dropped_total",
                    &[("stage", name), ("reason", reason)],
                    n,
                );
            }
        }
    }
}

/// Configuration reloads (SIGHUP), by outcome.
#[derive(Debug, Default)]
pub struct ReloadCollect {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ReloadCollect {
    /// Counts a reload that took effect.
    pub fn succeeded(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload that was refused (the running configuration stayed).
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Collect for ReloadCollect {
    fn collect(&self, out: &mut Samples) {
        out.declare(
            "hep_config_reloads_total",
            "Configuration reloads (SIGHUP), by result.",
            Kind::Counter,
        );
        out.sample(
            "hep_config_reloads_total",
            &[("result", "success")],
            self.ok.load(Ordering::Relaxed),
        );
        out.sample(
            "hep_config_reloads_total",
            &[("result", "failure")],
            self.failed.load(Ordering::Relaxed),
        );
    }
}
