//! The tracker's findings as Prometheus metrics: counters by call labels, histograms of
//! the delays. Label values come from the configuration (targets, nodes) or from short
//! fixed lists (methods, Q.850 causes 0-127, status codes 100-699), never from the text of
//! a message, so traffic cannot grow them.

use std::collections::HashMap;

// Every finding of the tracker updates these maps (several a message): foldhash, not the
// default SipHash, whose hashing was 10 % of the tracker's instructions (callgrind). The
// keys come from the configuration and short fixed lists, not from the traffic.
use foldhash::fast::RandomState;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tracker::{Count, Delay, Party, Sink, Timeout};
use crate::qos::{Report, Source};
use crate::sync::lock;
use crate::telemetry::metrics::{Collect, HistogramSnapshot, Kind, Samples};

/// Upper bounds of the setup delays' buckets (SRD, PDD, answer, RRD), seconds.
pub(crate) const DELAY_BOUNDS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the call durations' buckets, seconds.
pub(crate) const DURATION_BOUNDS: [f64; 11] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// Upper bounds of the jitter buckets, seconds.
pub(crate) const JITTER_BOUNDS: [f64; 9] = [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5];
/// Upper bounds of the loss buckets, a ratio (0.01 = 1 %).
pub(crate) const LOSS_BOUNDS: [f64; 9] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
/// Upper bounds of the MOS buckets.
pub(crate) const MOS_BOUNDS: [f64; 10] = [1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4];
/// Upper bounds of the round-trip time buckets, seconds.
pub(crate) const RTT_BOUNDS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0];

/// A media quality figure of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Quality {
    Jitter,
    Loss,
    Mos,
    Rtt,
}

impl Quality {
    const ALL: [Self; 4] = [Self::Jitter, Self::Loss, Self::Mos, Self::Rtt];

    fn family(self) -> (&'static str, &'static str, &'static [f64]) {
        match self {
            Self::Jitter => (
                "hep_rtcp_jitter_seconds",
                "Interarrival jitter of each stream report (RTCP report block, RTCP-XR IAJ, X-RTP-Stat JI).",
                &JITTER_BOUNDS,
            ),
            Self::Loss => (
                "hep_rtcp_loss_ratio",
                "Packet loss of each stream report, 0 to 1 (RTCP fraction lost of the last interval, RTCP-XR NLR, X-RTP-Stat of the call).",
                &LOSS_BOUNDS,
            ),
            Self::Mos => (
                "hep_rtcp_mos",
                "MOS of each stream report: the reporter's (RTCP-XR MOSLQ) or the E-model's of jitter, delay and loss (docs/KPI.md).",
                &MOS_BOUNDS,
            ),
            Self::Rtt => (
                "hep_rtcp_rtt_seconds",
                "Round-trip time of each stream report that tells it (RTCP LSR/DLSR, RTCP-XR RTD).",
                &RTT_BOUNDS,
            ),
        }
    }
}

/// Where a call is counted: the configured target its initial request was sent to (or
/// came from), which way, and the capture node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CallLabels {
    /// Index into the target names; `None`: `other`.
    pub(crate) target: Option<u16>,
    pub(crate) direction: Direction,
    /// Index into the node names; `None`: `other`.
    pub(crate) node: Option<u16>,
}

/// Which way a call went, seen from its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    /// Sent to the target.
    Out,
    /// Came from the target.
    In,
    /// Neither end is a target.
    Other,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Each bucket's own count, the last for `+Inf`.
    buckets: Vec<u64>,
    sum_micros: u64,
}

#[derive(Debug, Default, Clone)]
struct State {
    counts: HashMap<(Count, CallLabels), u64, RandomState>,
    delays: HashMap<(Delay, CallLabels), Histogram, RandomState>,
    quality: HashMap<(Quality, Source, CallLabels), Histogram, RandomState>,
    /// RTCP, RTCP-XR and `X-RTP-Stat` payloads that gave no report, by source.
    unreadable: HashMap<Source, u64>,
    tracked: usize,
}

/// The KPI metrics as scrapes read them: the tracker's findings as it last published
/// them ([`Findings::publish`]).
#[derive(Debug)]
pub(crate) struct KpiMetrics {
    targets: Vec<String>,
    nodes: Vec<String>,
    /// Held only to swap or clone the pointer: a scrape, on a worker of the runtime the
    /// listeners run on, never waits for the tracker's work.
    published: Mutex<Arc<State>>,
    /// Messages the fan-out could not give the tracker (its queue was full).
    lagged: Arc<AtomicU64>,
}

impl KpiMetrics {
    pub(crate) fn new(targets: Vec<String>, nodes: Vec<String>, lagged: Arc<AtomicU64>) -> Self {
        Self {
            targets,
            nodes,
            published: Mutex::new(Arc::default()),
            lagged,
        }
    }
}

/// The tracker's findings, its thread's own: it records them without a lock and
/// publishes a copy to the [`KpiMetrics`] now and then. (When a scrape read the tracker's
/// state under a lock held for a whole batch, a scrape waited for the tracker, at the
/// lowest priority, with a worker of the listeners' runtime.)
#[derive(Debug)]
pub(crate) struct Findings {
    state: State,
    /// Changed since the last publication.
    changed: bool,
    published_at: Instant,
}

impl Default for Findings {
    fn default() -> Self {
        Self {
            state: State::default(),
            changed: false,
            published_at: Instant::now(),
        }
    }
}

impl Findings {
    /// Opens the findings for what the tracker finds next.
    pub(crate) fn record(&mut self) -> Recording<'_> {
        self.changed = true;
        Recording(&mut self.state)
    }

    /// Publishes the findings to `to` if they changed.
    pub(crate) fn publish(&mut self, to: &KpiMetrics) {
        if self.changed {
            let copy = Arc::new(self.state.clone());
            *lock(&to.published) = copy;
            self.changed = false;
        }
        self.published_at = Instant::now();
    }

    /// Publishes the findings if the last publication is `every` old.
    pub(crate) fn publish_every(&mut self, every: Duration, to: &KpiMetrics) {
        if self.published_at.elapsed() >= every {
            self.publish(to);
        }
    }
}

/// The findings, opened for a batch's findings.
pub(crate) struct Recording<'a>(&'a mut State);

impl Recording<'_> {
    pub(crate) fn set_tracked(&mut self, calls: usize) {
        self.0.tracked = calls;
    }

    /// A stream report of a call labelled `labels`.
    pub(crate) fn report(&mut self, labels: &CallLabels, r: &Report) {
        let figures = [
            (Quality::Jitter, r.jitter_ms.map(|ms| ms / 1000.0)),
            (Quality::Loss, r.loss_pct.map(|p| p / 100.0)),
            (Quality::Mos, r.mos),
            (Quality::Rtt, r.rtt_ms.map(|ms| ms / 1000.0)),
        ];
        for (what, value) in figures {
            let Some(value) = value.filter(|v| v.is_finite()) else {
                continue;
            };
            let value = value.max(0.0);
            let (_, _, bounds) = what.family();
            let h = self.0.quality.entry((what, r.source, *labels)).or_default();
            // The sum in millionths of the unit; a value beyond u64's reach is capped.
            h.observe(bounds, value, (value * 1e6).min(u64::MAX as f64) as u64);
        }
    }

    /// A QoS payload of `source` that gave no report.
    pub(crate) fn unreadable(&mut self, source: Source) {
        *self.0.unreadable.entry(source).or_default() += 1;
    }
}

impl Sink<CallLabels> for Recording<'_> {
    fn count(&mut self, labels: &CallLabels, what: Count) {
        *self.0.counts.entry((what, *labels)).or_default() += 1;
    }

    fn delay(&mut self, labels: &CallLabels, what: Delay, micros: u64) {
        let bounds = bounds(what);
        let h = self.0.delays.entry((what, *labels)).or_default();
        h.observe(bounds, micros as f64 / 1e6, micros);
    }
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64, micros: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }
}

fn source_label(s: Source) -> &'static str {
    match s {
        Source::Rtcp => "rtcp",
        Source::RtcpXr => "rtcp_xr",
        Source::XRtpStat => "x_rtp_stat",
    }
}

fn bounds(d: Delay) -> &'static [f64] {
    match d {
        Delay::Duration => &DURATION_BOUNDS,
        _ => &DELAY_BOUNDS,
    }
}

/// Each counted event's family, help text and own label.
fn family(c: Count) -> (&'static str, &'static str, Vec<(&'static str, String)>) {
    match c {
        Count::Invite => (
            "hep_sip_invites_total",
            "Initial INVITEs: one per call (retransmissions, a proxy's copies, challenge retries and re-INVITEs excluded).",
            vec![],
        ),
        Count::Reinvite => (
            "hep_sip_reinvites_total",
            "INVITEs within a dialog.",
            vec![],
        ),
        Count::CallResult(s) => (
            "hep_sip_call_results_total",
            "Each call's final response status to its initial INVITE, once per call (a challenge nobody retried counts when the call expires).",
            vec![("status", s.to_string())],
        ),
        Count::Retransmission { method, response } => (
            "hep_sip_retransmissions_total",
            "Retransmitted SIP messages (same branch, CSeq, status and addresses), by CSeq method.",
            vec![
                ("method", method.to_owned()),
                (
                    "message",
                    if response { "response" } else { "request" }.to_owned(),
                ),
            ],
        ),
        Count::Register => (
            "hep_sip_registers_total",
            "Registration attempts (a challenge's retry is the same attempt).",
            vec![],
        ),
        Count::RegisterResult(s) => (
            "hep_sip_register_results_total",
            "Each registration attempt's final status.",
            vec![("status", s.to_string())],
        ),
        Count::HangUp(p) => (
            "hep_sip_hangups_total",
            "Answered calls ended by a BYE, by who sent it.",
            vec![(
                "by",
                match p {
                    Party::Caller => "caller",
                    Party::Callee => "callee",
                }
                .to_owned(),
            )],
        ),
        Count::Q850(cause) => (
            "hep_sip_q850_causes_total",
            "Q.850 causes of Reason headers on BYE, CANCEL and final failure responses.",
            vec![("cause", cause.to_string())],
        ),
        Count::TimedOut(t) => (
            "hep_sip_calls_timed_out_total",
            "Calls given up by timeout: `setup` (no final response), `answered` (no BYE).",
            vec![(
                "stage",
                match t {
                    Timeout::Setup => "setup",
                    Timeout::Answered => "answered",
                }
                .to_owned(),
            )],
        ),
        Count::Evicted => (
            "hep_sip_calls_evicted_total",
            "Calls pushed out of the full call table ([kpi] max_calls) before their end.",
            vec![],
        ),
        Count::ClockDisorder => (
            "hep_sip_clock_disorders_total",
            "Delays not measured because they came out negative (two agents' clocks disagree).",
            vec![],
        ),
    }
}

fn delay_family(d: Delay) -> (&'static str, &'static str) {
    match d {
        Delay::Srd => (
            "hep_sip_srd_seconds",
            "Session Request Delay (RFC 6076 4.2): INVITE to the first response other than 100, once per call.",
        ),
        Delay::Pdd => (
            "hep_sip_pdd_seconds",
            "Post-dial delay: INVITE to the first 180 or 183, once per call.",
        ),
        Delay::Answer => (
            "hep_sip_answer_seconds",
            "INVITE to the first 2xx, once per answered call.",
        ),
        Delay::Duration => (
            "hep_sip_call_duration_seconds",
            "Answered calls: 2xx to BYE (or to the last message, when the call timed out).",
        ),
        Delay::Rrd => (
            "hep_sip_rrd_seconds",
            "Registration Request Delay (RFC 6076 4.1): REGISTER to its final response.",
        ),
    }
}

impl Collect for KpiMetrics {
    fn collect(&self, out: &mut Samples) {
        let state = Arc::clone(&lock(&self.published));
        let name = |names: &[String], i: Option<u16>| {
            i.and_then(|i| names.get(usize::from(i)))
                .map_or("other", String::as_str)
                .to_owned()
        };
        // Every family, with or without samples yet: a dashboard finds them all.
        for c in [
            Count::Invite,
            Count::Reinvite,
            Count::CallResult(0),
            Count::Retransmission {
                method: "INVITE",
                response: false,
            },
            Count::Register,
            Count::RegisterResult(0),
            Count::HangUp(Party::Caller),
            Count::Q850(0),
            Count::TimedOut(Timeout::Setup),
            Count::Evicted,
            Count::ClockDisorder,
        ] {
            let (family, help, _) = family(c);
            out.declare(family, help, Kind::Counter);
        }
        for d in [
            Delay::Srd,
            Delay::Pdd,
            Delay::Answer,
            Delay::Duration,
            Delay::Rrd,
        ] {
            let (family, help) = delay_family(d);
            out.declare(family, help, Kind::Histogram);
        }
        for ((what, labels), n) in &state.counts {
            let (family, help, own) = family(*what);
            out.declare(family, help, Kind::Counter);
            let target = name(&self.targets, labels.target);
            let node = name(&self.nodes, labels.node);
            let mut l: Vec<(&str, &str)> = vec![
                ("target", &target),
                ("direction", labels.direction.as_str()),
                ("node", &node),
            ];
            l.extend(own.iter().map(|(k, v)| (*k, v.as_str())));
            out.sample(family, &l, *n);
        }
        for ((what, labels), h) in &state.delays {
            let (family, help) = delay_family(*what);
            out.declare(family, help, Kind::Histogram);
            let target = name(&self.targets, labels.target);
            let node = name(&self.nodes, labels.node);
            out.histogram(
                family,
                &[
                    ("target", &target),
                    ("direction", labels.direction.as_str()),
                    ("node", &node),
                ],
                HistogramSnapshot {
                    bounds: bounds(*what),
                    buckets: &h.buckets,
                    sum_micros: h.sum_micros,
                },
            );
        }
        for what in Quality::ALL {
            let (family, help, _) = what.family();
            out.declare(family, help, Kind::Histogram);
        }
        for ((what, source, labels), h) in &state.quality {
            let (family, _, bounds) = what.family();
            let target = name(&self.targets, labels.target);
            let node = name(&self.nodes, labels.node);
            out.histogram(
                family,
                &[
                    ("target", &target),
                    ("direction", labels.direction.as_str()),
                    ("node", &node),
                    ("source", source_label(*source)),
                ],
                HistogramSnapshot {
                    bounds,
                    buckets: &h.buckets,
                    sum_micros: h.sum_micros,
                },
            );
        }
        out.declare(
            "hep_qos_unreadable_total",
            "RTCP, RTCP-XR and X-RTP-Stat payloads that gave no stream report (malformed), by source.",
            Kind::Counter,
        );
        for (source, n) in &state.unreadable {
            out.sample(
                "hep_qos_unreadable_total",
                &[("source", source_label(*source))],
                *n,
            );
        }
        out.declare(
            "hep_sip_calls_tracked",
            "Calls in the KPI call table now.",
            Kind::Gauge,
        );
        out.sample("hep_sip_calls_tracked", &[], state.tracked as u64);
        out.declare(
            "hep_sip_kpi_lagged_total",
            "Messages the KPI tracker never saw: its feed overflowed while it was busy (the KPIs under-count; capture is not affected).",
            Kind::Counter,
        );
        out.sample(
            "hep_sip_kpi_lagged_total",
            &[],
            self.lagged.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &KpiMetrics) -> String {
        let mut s = Samples::default();
        metrics.collect(&mut s);
        s.render()
    }

    fn invites(text: &str) -> Option<&str> {
        text.lines()
            .find(|l| l.starts_with("hep_sip_invites_total{"))
            .and_then(|l| l.rsplit(' ').next())
    }

    #[test]
    fn a_scrape_reads_what_was_published_while_the_tracker_records() {
        let metrics = KpiMetrics::new(vec![], vec![], Arc::default());
        let mut findings = Findings::default();
        let labels = CallLabels {
            target: None,
            direction: Direction::Other,
            node: None,
        };
        findings.record().count(&labels, Count::Invite);
        findings.publish(&metrics);

        // A batch under way: the scrape neither waits for it nor sees half of it.
        {
            let mut rec = findings.record();
            rec.count(&labels, Count::Invite);
            assert_eq!(invites(&scrape(&metrics)), Some("1"));
            rec.count(&labels, Count::Invite);
        }

        findings.publish_every(Duration::from_secs(3600), &metrics);
        assert_eq!(invites(&scrape(&metrics)), Some("1"), "not due yet");
        findings.publish(&metrics);
        assert_eq!(invites(&scrape(&metrics)), Some("3"));
    }
}
