//! The tracker's findings as Prometheus metrics: counters by call labels, histograms of
//! the delays. Label values come from the configuration (targets, nodes) or from short
//! fixed lists (methods, Q.850 causes 0-127, status codes 100-699), never from the text of
//! a message, so traffic cannot grow them.

use std::collections::HashMap;
use std::sync::Mutex;

use super::tracker::{Count, Delay, Party, Sink, Timeout};
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

#[derive(Debug, Default)]
struct Histogram {
    /// Each bucket's own count, the last for `+Inf`.
    buckets: Vec<u64>,
    sum_micros: u64,
}

#[derive(Debug, Default)]
struct State {
    counts: HashMap<(Count, CallLabels), u64>,
    delays: HashMap<(Delay, CallLabels), Histogram>,
    tracked: usize,
    /// Messages the tracker never saw: its feed overflowed.
    lagged: u64,
}

/// The KPI metrics; the tracker's task writes them, a scrape reads them.
#[derive(Debug)]
pub(crate) struct KpiMetrics {
    targets: Vec<String>,
    nodes: Vec<String>,
    state: Mutex<State>,
}

/// The metrics, locked for one message's findings.
pub(crate) struct Recording<'a>(std::sync::MutexGuard<'a, State>);

impl KpiMetrics {
    pub(crate) fn new(targets: Vec<String>, nodes: Vec<String>) -> Self {
        Self {
            targets,
            nodes,
            state: Mutex::new(State::default()),
        }
    }

    /// Locks the metrics for the tracker's findings.
    pub(crate) fn record(&self) -> Recording<'_> {
        Recording(lock(&self.state))
    }
}

impl Recording<'_> {
    pub(crate) fn set_tracked(&mut self, calls: usize) {
        self.0.tracked = calls;
    }

    pub(crate) fn add_lagged(&mut self, n: u64) {
        self.0.lagged += n;
    }
}

impl Sink<CallLabels> for Recording<'_> {
    fn count(&mut self, labels: &CallLabels, what: Count) {
        *self.0.counts.entry((what, *labels)).or_default() += 1;
    }

    fn delay(&mut self, labels: &CallLabels, what: Delay, micros: u64) {
        let bounds = bounds(what);
        let h = self.0.delays.entry((what, *labels)).or_default();
        if h.buckets.is_empty() {
            h.buckets = vec![0; bounds.len() + 1];
        }
        let secs = micros as f64 / 1e6;
        let i = bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(bounds.len());
        h.buckets[i] += 1;
        h.sum_micros = h.sum_micros.saturating_add(micros);
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
        let state = lock(&self.state);
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
        out.sample("hep_sip_kpi_lagged_total", &[], state.lagged);
    }
}
