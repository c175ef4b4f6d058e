//! SIP KPIs (`[kpi]`): every accepted SIP message goes through a per-call state machine
//! (`tracker`) whose findings are Prometheus metrics (`hep_sip_*`, `metrics`).
//!
//! The fan-out offers every message to the tracker's own feed ([`KpiFeed`], `feed`: what
//! the tracker reads of it is copied into a batch, and full batches cross to the tracker
//! through a bounded queue) and never waits for it; the tracker runs on a thread of its
//! own at a lower priority than capture. If it falls behind, the messages it missed are
//! counted in `hep_sip_kpi_lagged_total` and the KPIs under-count; the store and the
//! relays are not affected. docs/KPI.md has the definitions, the metric names and the
//! PromQL of the ratios (ASR, NER, SCR, ISA, IRA).

pub mod call;
mod feed;
mod metrics;
#[cfg(test)]
mod tests;
pub(crate) mod tracker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hep_proto::ProtoType;
use hep_proto::sip::{self, SipSummary, StartLine};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::aliases::Aliases;
use crate::qos::Source as QosSource;
pub use feed::{FEED_CAPACITY, KpiFeed};
pub(crate) use feed::{FeedReader, QUEUED_BATCHES, Seen};
pub(crate) use metrics::KpiMetrics;
use metrics::{CallLabels, Direction, Findings, Recording};
use tracker::{Limits, Observed, Tracker, q850_cause};

/// How often calls are checked for their timeouts.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often a busy tracker publishes its findings to the metrics (an idle one does at
/// once).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// `[kpi]`: the SIP KPIs and their call table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KpiConfig {
    /// Whether to track calls at all (`enabled`, default on).
    pub enabled: bool,
    /// Calls tracked at once (`max_calls`, default 1,000,000); when full, the oldest call
    /// is evicted and counted in `hep_sip_calls_evicted_total`.
    pub max_calls: usize,
    /// A call without a final response is given up after this long without a message
    /// (`setup_timeout_secs`, default 300).
    pub setup_timeout_secs: u64,
    /// An answered call without a BYE is ended after this long without a message
    /// (`call_timeout_secs`, default 14,400: 4 hours; session refreshes keep a call alive).
    pub call_timeout_secs: u64,
    /// The capture ids that get a `node` label of their own (`nodes`); any other is
    /// `other`, so that agents cannot grow the label's values.
    pub nodes: Vec<u32>,
}

impl Default for KpiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_calls: 1_000_000,
            setup_timeout_secs: 300,
            call_timeout_secs: 4 * 3600,
            nodes: Vec::new(),
        }
    }
}

/// A finished call lingers this long for its retransmissions (RFC 3261 Timer B: 32 s).
const LINGER: Duration = Duration::from_secs(32);

impl KpiConfig {
    fn limits(&self) -> Limits {
        Limits {
            max_calls: self.max_calls.max(1),
            setup_timeout_us: self.setup_timeout_secs.saturating_mul(1_000_000),
            call_timeout_us: self.call_timeout_secs.saturating_mul(1_000_000),
            linger_us: LINGER.as_micros() as u64,
        }
    }
}

/// The tracker: its metrics (to register) and its task (to spawn).
pub(crate) struct KpiTask {
    pub(crate) metrics: Arc<KpiMetrics>,
    config: KpiConfig,
    /// `[aliases]` as the run started: each name is a `target`.
    aliases: Aliases,
    /// The distinct alias names, in the order of `KpiMetrics`' targets.
    targets: Vec<String>,
    feed: FeedReader,
}

impl KpiTask {
    pub(crate) fn new(
        config: &KpiConfig,
        aliases: &Aliases,
        feed: &KpiFeed,
        rx: FeedReader,
    ) -> Self {
        let nodes = config.nodes.iter().map(u32::to_string).collect();
        let mut targets: Vec<String> = aliases.entries().map(|(_, n)| n.to_owned()).collect();
        targets.sort();
        targets.dedup();
        Self {
            metrics: Arc::new(KpiMetrics::new(
                targets.clone(),
                nodes,
                Arc::clone(feed.lagged()),
            )),
            config: config.clone(),
            aliases: aliases.clone(),
            targets,
            feed: rx,
        }
    }

    /// The target of a call and its direction: the alias of where its first message
    /// went (`out`), else of where it came from (`in`).
    fn target(&self, src: SocketAddr, dst: SocketAddr) -> (Option<u16>, Direction) {
        let index = |name: &str| {
            let i = self
                .targets
                .binary_search_by(|t| t.as_str().cmp(name))
                .ok()?;
            u16::try_from(i).ok()
        };
        if let Some(i) = self.aliases.name_of(dst).and_then(index) {
            return (Some(i), Direction::Out);
        }
        if let Some(i) = self.aliases.name_of(src).and_then(index) {
            return (Some(i), Direction::In);
        }
        (None, Direction::Other)
    }

    /// Reads the feed until `until` is cancelled, then what the fan-out handed over
    /// until then. A blocking loop, on a thread of its own: the tracker's work never
    /// holds a worker of the runtime the listeners run on, and the thread runs at a lower
    /// priority than capture.
    pub(crate) fn run(self, until: &CancellationToken) {
        yield_to_capture();
        let mut tracker = Tracker::new(self.config.limits());
        let mut findings = Findings::default();
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        while !until.is_cancelled() {
            match self.feed.next(feed::GATHER_WAIT) {
                Some(batch) => {
                    self.observe_batch(&mut tracker, &batch, &mut findings.record());
                    self.feed.recycle(batch);
                    findings.publish_every(PUBLISH_EVERY, &self.metrics);
                }
                // Nothing came: what was read is shown at once.
                None => findings.publish(&self.metrics),
            }
            if Instant::now() >= next_sweep {
                let mut rec = findings.record();
                tracker.expire(now_us(), &mut rec);
                rec.set_tracked(tracker.len());
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
        }
        // What the listeners took last (the run is cancelled once they have stopped).
        while let Some(batch) = self.feed.take_gathered() {
            self.observe_batch(&mut tracker, &batch, &mut findings.record());
        }
        findings.record().set_tracked(tracker.len());
        findings.publish(&self.metrics);
    }

    /// Reads a batch; its messages were received within a few milliseconds of each
    /// other (the feed's gathering), so one clock reading serves as their receive time.
    fn observe_batch(
        &self,
        tracker: &mut Tracker<CallLabels>,
        batch: &feed::Batch,
        rec: &mut Recording<'_>,
    ) {
        let recv_us = now_us();
        for m in batch.iter() {
            self.observe(tracker, &m, recv_us, rec);
        }
    }

    fn observe(
        &self,
        tracker: &mut Tracker<CallLabels>,
        msg: &Seen<'_>,
        recv_us: u64,
        rec: &mut Recording<'_>,
    ) {
        let node = msg.capture_id.and_then(|id| {
            let i = self.config.nodes.iter().position(|n| *n == id)?;
            u16::try_from(i).ok()
        });
        if let Some(source) = qos_source(msg.proto_type) {
            self.observe_qos(tracker, msg, source, node, rec);
            return;
        }
        read_sip(msg, recv_us, |observed| {
            let labels = || {
                let (target, direction) = self.target(observed.src, observed.dst);
                CallLabels {
                    target,
                    direction,
                    node,
                }
            };
            tracker.observe(&observed, labels, rec);
            // The X-RTP-Stat of a BYE or its answer, under the call's labels.
            if observed.sip.cseq.is_some_and(|c| c.method == "BYE")
                && let Some(stat) = sip::header(msg.payload, "X-RTP-Stat")
                && let Some(labels) = observed.sip.call_id.and_then(|id| tracker.labels_of(id))
            {
                match crate::qos::xrtpstat::parse(stat) {
                    Ok(reports) => reports.iter().for_each(|r| rec.report(labels, r)),
                    Err(_) => rec.unreadable(QosSource::XRtpStat),
                }
            }
        });
    }

    /// An RTCP or RTCP-XR report: its streams under the labels of the call its
    /// correlation id names (`other` when the call is not in the table).
    fn observe_qos(
        &self,
        tracker: &Tracker<CallLabels>,
        msg: &Seen<'_>,
        source: QosSource,
        node: Option<u16>,
        rec: &mut Recording<'_>,
    ) {
        let labels = msg
            .correlation_id
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(|id| tracker.labels_of(id).copied())
            .unwrap_or(CallLabels {
                target: None,
                direction: Direction::Other,
                node,
            });
        let payload = msg.payload;
        let reports = match source {
            QosSource::Rtcp => {
                crate::qos::rtcp::parse(payload, msg.capture_us(), crate::qos::DEFAULT_CLOCK_HZ)
            }
            _ => crate::qos::vq::parse(payload),
        };
        match reports {
            Ok(reports) => reports.iter().for_each(|r| rec.report(&labels, r)),
            Err(_) => rec.unreadable(source),
        }
    }
}

/// The QoS source a message's protocol type carries, if any.
fn qos_source(proto_type: Option<ProtoType>) -> Option<QosSource> {
    match proto_type {
        Some(ProtoType::Rtcp) => Some(QosSource::Rtcp),
        Some(ProtoType::MosShort) => Some(QosSource::RtcpXr),
        _ => None,
    }
}

/// Reads `msg` as the tracker does and hands it to `f`; nothing when it is not SIP with
/// both addresses. The live feed and a stored call's view ([`call`]) read it alike.
pub(crate) fn read_sip<R>(
    msg: &Seen<'_>,
    recv_us: u64,
    f: impl FnOnce(Observed<'_>) -> R,
) -> Option<R> {
    // HEPv1 and v2 carry no type: their payload is SIP, or it does not parse as SIP.
    if !matches!(msg.proto_type, None | Some(ProtoType::Sip)) {
        return None;
    }
    let payload = msg.payload;
    let (Some(src), Some(dst)) = (msg.src, msg.dst) else {
        return None;
    };
    let sip = SipSummary::parse(payload)?;
    let capture_us = msg.capture_us().unwrap_or(recv_us);
    Some(f(Observed {
        capture_us,
        recv_us,
        src,
        dst,
        sip: &sip,
        q850: may_have_reason(&sip)
            .then(|| sip::header(payload, "Reason"))
            .flatten()
            .and_then(q850_cause),
    }))
}

/// The tracker's thread's nice value: when the CPU is short, the listeners and outputs
/// go first and the tracker lags (counted in `hep_sip_kpi_lagged_total`): KPIs never cost
/// a captured message.
const TRACKER_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`TRACKER_NICE`] (Linux: a thread's nice
/// value is its own); where that fails, the tracker runs at the process's priority.
fn yield_to_capture() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), TRACKER_NICE) {
        tracing::debug!(error = %e, "kpi: the tracker's priority stays the process's");
    }
}

/// Whether a `Reason` header of this message would be counted: BYE, CANCEL, a final
/// failure response (the header is looked for only then).
fn may_have_reason(sip: &SipSummary<'_>) -> bool {
    match sip.start {
        StartLine::Request { method, .. } => method == "BYE" || method == "CANCEL",
        StartLine::Response { code, .. } => code >= 300,
    }
}

fn now_us() -> u64 {
    u64::try_from(crate::time::now_usec()).unwrap_or(0)
}
