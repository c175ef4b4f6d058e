//! The server's counters as metrics, and the summary printed at exit.
//!
//! Metric names (DESIGN.md): `hep_received_total{transport}` (messages decoded from the
//! wire), `hep_rejected_total{reason}`, `hep_skipped_total`, `hep_delivered_total{output}`,
//! `hep_dropped_total{stage,reason}`; plus connection and queue gauges. Every message that
//! is not delivered is counted under `hep_dropped_total` or `hep_rejected_total`.

use std::fmt;
use std::sync::Arc;

use hep_callbacks::CallbackStats;
use hep_proto::HepVersion;
use hep_transport::sender::SenderStats;
use hep_transport::{DropReason, ListenSpec, ListenerStats, RejectReason};

use crate::metrics::{Collect, Kind, Samples};
use crate::output::fanout::OutputStats;

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

/// The callbacks' counters.
#[derive(Debug)]
pub struct CallbackCollect(pub Vec<Arc<CallbackStats>>);

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
        if self.0.is_empty() {
            out.sample("hep_skipped_total", &[], 0);
        }
        for cb in &self.0 {
            out.sample(
                "hep_skipped_total",
                &[("callback", cb.name())],
                cb.skipped(),
            );
            for (reason, n) in cb.rejected() {
                out.sample(
                    "hep_dropped_total",
                    &[("stage", cb.name()), ("reason", reason)],
                    n,
                );
            }
        }
    }
}

/// A relay output: its queue, and what its sender delivered or lost.
#[derive(Debug)]
pub struct RelayCollect {
    output: Arc<OutputStats>,
    sender: Arc<SenderStats>,
}

impl RelayCollect {
    /// The counters of a relay output and its sender.
    pub fn new(output: Arc<OutputStats>, sender: Arc<SenderStats>) -> Self {
        Self { output, sender }
    }

    fn delivered(&self) -> u64 {
        self.sender.snapshot().sent_messages
    }

    fn dropped(&self) -> u64 {
        self.sender.snapshot().dropped_total() + self.output.failed() + self.output.closed()
    }
}

impl Collect for RelayCollect {
    fn collect(&self, out: &mut Samples) {
        let s = self.sender.snapshot();
        let o = self.output.name();
        out.declare(
            "hep_delivered_total",
            "Messages delivered, by output.",
            Kind::Counter,
        );
        out.sample("hep_delivered_total", &[("output", o)], s.sent_messages);
        out.declare(
            "hep_dropped_total",
            "Messages not delivered, by stage and reason.",
            Kind::Counter,
        );
        for (reason, n) in s.dropped_by_reason() {
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
        out.sample("hep_relay_queue_depth", &[("output", o)], s.queue_depth);
        out.declare(
            "hep_relay_connects_total",
            "Connections a relay made.",
            Kind::Counter,
        );
        out.sample("hep_relay_connects_total", &[("output", o)], s.connects);
    }
}

/// Every counter source of a run, for the summary line at exit.
#[derive(Debug, Default)]
pub struct Summary {
    /// Listeners.
    pub listeners: Vec<Arc<ListenerCollect>>,
    /// The callback chain, if any.
    pub callbacks: Option<Arc<CallbackCollect>>,
    /// Non-relay outputs (relays are also here, for their queues).
    pub outputs: Vec<Arc<OutputStats>>,
    /// Relay outputs.
    pub relays: Vec<Arc<RelayCollect>>,
}

impl Summary {
    /// Messages decoded from the wire.
    pub fn decoded(&self) -> u64 {
        self.listeners
            .iter()
            .map(|l| l.stats.received_total())
            .sum()
    }

    /// Datagrams, frames or connections refused. A connection closed for being idle
    /// (`idle_timeout`) lost nothing and refused nothing: it is in the metrics, not here.
    pub fn rejected(&self) -> u64 {
        let idle = RejectReason::IdleTimeout.label();
        self.listeners
            .iter()
            .flat_map(|l| l.stats.snapshot().rejected().collect::<Vec<_>>())
            .filter(|(reason, _)| *reason != idle)
            .map(|(_, n)| n)
            .sum()
    }

    /// Messages a callback skipped.
    pub fn skipped(&self) -> u64 {
        self.callbacks
            .iter()
            .flat_map(|c| &c.0)
            .map(|c| c.skipped())
            .sum()
    }

    /// Deliveries (one per message and output).
    pub fn delivered(&self) -> u64 {
        let relay_names: Vec<&str> = self.relays.iter().map(|r| r.output.name()).collect();
        let direct: u64 = self
            .outputs
            .iter()
            .filter(|o| !relay_names.contains(&o.name()))
            .map(|o| o.delivered())
            .sum();
        direct + self.relays.iter().map(|r| r.delivered()).sum::<u64>()
    }

    /// Messages dropped after decoding: overload, callback rejections, output failures.
    pub fn dropped(&self) -> u64 {
        let listeners: u64 = self.listeners.iter().map(|l| l.stats.dropped_total()).sum();
        let callbacks: u64 = self
            .callbacks
            .iter()
            .flat_map(|c| &c.0)
            .flat_map(|c| c.rejected())
            .map(|(_, n)| n)
            .sum();
        let relay_names: Vec<&str> = self.relays.iter().map(|r| r.output.name()).collect();
        let outputs: u64 = self
            .outputs
            .iter()
            .filter(|o| !relay_names.contains(&o.name()))
            .map(|o| o.failed() + o.closed())
            .sum();
        listeners + callbacks + outputs + self.relays.iter().map(|r| r.dropped()).sum::<u64>()
    }

    /// Overload drops at the listeners (UDP).
    pub fn overload(&self) -> u64 {
        self.listeners
            .iter()
            .map(|l| l.stats.dropped(DropReason::Overload))
            .sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decoded = self.decoded();
        let rejected = self.rejected();
        write!(
            f,
            "received {}, decoded {decoded}, rejected {rejected}, skipped {}, delivered {}, dropped {}",
            decoded + rejected,
            self.skipped(),
            self.delivered(),
            self.dropped()
        )
    }
}
