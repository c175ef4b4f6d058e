//! The server's counters as metrics, and the summary printed at exit.
//!
//! Metric names (DESIGN.md): `hep_received_total{transport}` (messages decoded from the
//! wire), `hep_rejected_total{reason}`, `hep_skipped_total`, `hep_delivered_total{output}`,
//! `hep_dropped_total{stage,reason}`; plus connection and queue gauges. Every message that
//! is not delivered is counted under `hep_dropped_total` or `hep_rejected_total`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hep_callbacks::CallbackStats;
use hep_proto::HepVersion;
use hep_transport::sender::{SenderDropReason, SenderStats, SenderStatsSnapshot};
use hep_transport::{ListenSpec, ListenerDropReason, ListenerStats, RecvInfo, RejectReason};

use crate::drops::{DropKind, DropWatch};
use crate::metrics::{Collect, Kind, Samples};
use crate::output::fanout::OutputStats;
use crate::output::spool::SpoolStats;

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

    fn all(&self) -> Vec<Arc<CallbackStats>> {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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
    /// The counters of a relay output, its sender and its spool if it has one.
    pub fn new(
        output: Arc<OutputStats>,
        sender: Arc<SenderStats>,
        spool: Option<Arc<SpoolStats>>,
    ) -> Self {
        Self {
            output,
            senders: Mutex::new(vec![sender]),
            spool: Mutex::new(spool),
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

    fn delivered(&self) -> u64 {
        let sent: u64 = self.snapshots().iter().map(|s| s.sent_messages).sum();
        let replayed = self.spool().map_or(0, |s| s.replayed());
        sent.saturating_sub(replayed)
    }

    fn dropped(&self) -> u64 {
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

/// Every counter source of a run, for the summary line at exit.
#[derive(Debug, Default)]
pub struct Summary {
    /// Listeners.
    pub listeners: Vec<Arc<ListenerCollect>>,
    /// The callback chains, if any.
    pub callbacks: Option<Arc<CallbackCollect>>,
    /// Every output the run has had, removed ones included (relays are also here, for
    /// their queues).
    pub outputs: Vec<Arc<OutputStats>>,
    /// Every relay output the run has had.
    pub relays: Vec<Arc<RelayCollect>>,
    /// The drop warnings: what they held back is said at exit, and the drops by reason
    /// are listed under the summary.
    pub drops: Option<Arc<DropWatch>>,
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
            .flat_map(|c| c.all())
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
            .flat_map(|c| c.all())
            .map(|c| c.rejected().map(|(_, n)| n).sum::<u64>())
            .sum();
        let relay_names: Vec<&str> = self.relays.iter().map(|r| r.output.name()).collect();
        let outputs: u64 = self
            .outputs
            .iter()
            .filter(|o| !relay_names.contains(&o.name()))
            .map(|o| o.dropped())
            .sum();
        // Relays included: their sender's counters do not have it.
        let deadline: u64 = self.outputs.iter().map(|o| o.lost_at_deadline()).sum();
        listeners
            + callbacks
            + outputs
            + deadline
            + self.relays.iter().map(|r| r.dropped()).sum::<u64>()
    }

    /// Messages still queued in outputs when the shutdown deadline passed.
    pub fn lost_at_deadline(&self) -> u64 {
        self.outputs.iter().map(|o| o.lost_at_deadline()).sum()
    }

    /// What dropped or refused messages, with how many, for the lines under the summary
    /// (empty when nothing was lost).
    pub fn by_reason(&self) -> Vec<(DropKind, u64)> {
        self.drops
            .as_ref()
            .map(|d| d.by_reason())
            .unwrap_or_default()
    }

    /// Spooled and replayed messages, when a relay spools.
    pub fn spool(&self) -> Option<(u64, u64)> {
        let spools: Vec<Arc<SpoolStats>> = self.relays.iter().filter_map(|r| r.spool()).collect();
        (!spools.is_empty()).then(|| {
            (
                spools.iter().map(|s| s.messages()).sum(),
                spools.iter().map(|s| s.replayed()).sum(),
            )
        })
    }

    /// Overload drops at the listeners (UDP).
    pub fn overload(&self) -> u64 {
        self.listeners
            .iter()
            .map(|l| l.stats.dropped(ListenerDropReason::Overload))
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
        )?;
        if let Some((spooled, replayed)) = self.spool() {
            // What spooling relays left for the next run, and what they sent twice.
            write!(f, ", spooled {spooled}, replayed {replayed}")?;
        }
        Ok(())
    }
}
