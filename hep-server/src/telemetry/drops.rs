//! Loud drops: every message the server refuses or loses is logged at `warn`, by reason,
//! and listed by reason in the exit summary.
//!
//! Each drop is counted where it happens (a listener, a callback, an output, a relay, a
//! spool) as a series of `hep_dropped_total{stage,reason,...}` or
//! `hep_rejected_total{listener,reason}`. A [`DropWatch`] reads those series from the
//! metrics registry every [`POLL`] (the paths that drop pay nothing more than their
//! counter) and, for each series that went up, logs one line at `warn` naming the reason,
//! the stage, the source, the count since the last line of that series and the total:
//!
//! ```text
//! WARN hep_server::telemetry::drops: dropped 12 (missing_key at auth), 12 in all stage=auth reason=missing_key listener=hep_udp:0.0.0.0:9060 peer=10.0.0.7:5060 count=12 total=12
//! ```
//!
//! The source is the listener or the output of the series; for a callback's refusals,
//! which are counted by callback, the agent (`peer`, and `client` for a TLS client
//! certificate) and the listener of the last message refused. A series gets at most one
//! line per [`INTERVAL`] (a [`RateLimitedWarn`]): the first drop is said within a second,
//! a flood costs one line per series every 10 s, and what the limit held back is in the
//! next line, at exit at the latest ([`DropWatch::flush`]): the counts of a series' lines
//! add up to its counter.
//!
//! Not losses, so not here: a callback's skip (`hep_skipped_total`, asked for by the
//! configuration), and a TCP connection closed for being idle (`idle_timeout`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hep_transport::{ListenSpec, RateLimitedWarn, RecvInfo, RejectReason};

use super::metrics::{Registry, Samples};
use super::stats::CallbackCollect;
use crate::sync;

/// How often the counters are read: the longest a first drop waits to be said.
pub const POLL: Duration = Duration::from_secs(1);

/// At most one line per series in this time.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One counted cause of loss: a series of `hep_dropped_total` or `hep_rejected_total`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropKind {
    /// Refused at a listener (`hep_rejected_total`: a datagram, frame or connection
    /// that was not decoded), not dropped after decoding (`hep_dropped_total`).
    pub rejected: bool,
    /// Where: `listener`, a callback (`auth`, `rate_limit`...), `output`, `relay`,
    /// `spool`, `shutdown`.
    pub stage: String,
    /// Why, as the metrics label it (`missing_key`, `overload`, `disk_low`...).
    pub reason: String,
    /// The listener the series names, if it names one.
    pub listener: Option<String>,
    /// The output the series names, if it names one.
    pub output: Option<String>,
}

impl DropKind {
    /// `missing_key at auth`, `overload at listener hep_udp:0.0.0.0:9060`, `disk_low at
    /// output store:/var/lib/hep`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} at {}", self.reason, self.stage);
        if let Some(source) = self.output.as_ref().or(self.listener.as_ref()) {
            s.push(' ');
            s.push_str(source);
        }
        s
    }

    /// `dropped` or `rejected`.
    pub fn verb(&self) -> &'static str {
        if self.rejected { "rejected" } else { "dropped" }
    }
}

/// Every drop series of `samples` with its value (zeros included), in a stable order.
pub fn counts(samples: &Samples) -> Vec<(DropKind, u64)> {
    let idle = RejectReason::IdleTimeout.label();
    let mut out: BTreeMap<DropKind, u64> = BTreeMap::new();
    for (family, rejected) in [("hep_dropped_total", false), ("hep_rejected_total", true)] {
        for s in samples.family(family) {
            let Some(reason) = s.label("reason") else {
                continue;
            };
            if rejected && reason == idle {
                continue;
            }
            let kind = DropKind {
                rejected,
                stage: s.label("stage").unwrap_or("listener").to_owned(),
                reason: reason.to_owned(),
                listener: s.label("listener").map(str::to_owned),
                output: s.label("output").map(str::to_owned),
            };
            *out.entry(kind).or_default() += s.value();
        }
    }
    out.into_iter().collect()
}

/// One warning: what, how many since the last line of the same series, how many in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropWarning {
    /// The series.
    pub kind: DropKind,
    /// Drops since the last line of this series.
    pub count: u64,
    /// Drops of this series since the start.
    pub total: u64,
    /// For a callback's refusals: where the last message refused came from.
    pub from: Option<RecvInfo>,
}

impl DropWarning {
    /// Logs it at `warn`.
    pub fn log(&self) {
        let k = &self.kind;
        let from = self.from.as_ref();
        let listener = k
            .listener
            .clone()
            .or_else(|| from.map(|i| ListenSpec::new(i.transport, i.listener).to_string()));
        tracing::warn!(
            stage = %k.stage,
            reason = %k.reason,
            listener = listener.map(display),
            output = k.output.as_ref().map(display),
            peer = from.map(|i| display(i.peer)),
            client = from.and_then(|i| i.client.as_ref()).map(display),
            count = self.count,
            total = self.total,
            "{} {} ({}), {} in all",
            k.verb(),
            self.count,
            k.describe(),
            self.total,
        );
    }
}

/// What a series has been said to be.
#[derive(Debug)]
struct Seen {
    /// The counter as last read.
    total: u64,
    warn: RateLimitedWarn,
}

/// Reads the drop counters of a run and logs what went up (see the
/// [module docs](self)).
pub struct DropWatch {
    registry: Registry,
    callbacks: Option<Arc<CallbackCollect>>,
    interval: Duration,
    seen: Mutex<BTreeMap<DropKind, Seen>>,
}

impl std::fmt::Debug for DropWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropWatch")
            .field("interval", &self.interval)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl DropWatch {
    /// Watches every source of `registry`; `callbacks` names the agents a callback
    /// refused. At most one line per series per `interval`.
    pub fn new(
        registry: Registry,
        callbacks: Option<Arc<CallbackCollect>>,
        interval: Duration,
    ) -> Self {
        Self {
            registry,
            callbacks,
            interval,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reads the counters and logs a line for each series that went up, unless it had
    /// one within the interval; returns the lines.
    pub fn poll(&self) -> Vec<DropWarning> {
        self.read(false)
    }

    /// As [`poll`](Self::poll), interval or not: at exit, so that every drop is in a line.
    pub fn flush(&self) -> Vec<DropWarning> {
        self.read(true)
    }

    /// Every series that dropped something, with its total: the exit summary's list.
    pub fn by_reason(&self) -> Vec<(DropKind, u64)> {
        counts(&self.registry.gather())
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn read(&self, all: bool) -> Vec<DropWarning> {
        let now = counts(&self.registry.gather());
        let mut seen = sync::lock(&self.seen);
        let mut lines = Vec::new();
        for (kind, total) in now {
            // A series seen for the first time started at 0 in this run.
            let s = seen.entry(kind.clone()).or_insert_with(|| Seen {
                total: 0,
                warn: RateLimitedWarn::new(self.interval),
            });
            let new = total.saturating_sub(s.total);
            s.total = s.total.max(total);
            let count = match s.warn.count(new) {
                Some(n) => n,
                None if all => s.warn.take(),
                None => 0,
            };
            if count == 0 {
                continue;
            }
            let from = self
                .callbacks
                .as_ref()
                .filter(|_| !kind.rejected && kind.listener.is_none() && kind.output.is_none())
                .and_then(|c| c.last_rejected(&kind.stage, &kind.reason));
            let line = DropWarning {
                kind,
                count,
                total: s.total,
                from,
            };
            line.log();
            lines.push(line);
        }
        lines
    }

    /// Polls every [`POLL`] until `stop` completes (the caller flushes at exit).
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {
                    self.poll();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::telemetry::metrics::{Collect, Kind};

    /// A listener and an output that drop what they are told to.
    #[derive(Default)]
    struct Drops {
        overload: AtomicU64,
        disk_low: AtomicU64,
        idle: AtomicU64,
    }

    impl Collect for Drops {
        fn collect(&self, out: &mut Samples) {
            out.declare("hep_dropped_total", "", Kind::Counter);
            out.sample(
                "hep_dropped_total",
                &[
                    ("stage", "listener"),
                    ("listener", "hep_udp:0.0.0.0:9060"),
                    ("reason", "overload"),
                ],
                self.overload.load(Ordering::Relaxed),
            );
            out.sample(
                "hep_dropped_total",
                &[
                    ("stage", "output"),
                    ("output", "store:/var/lib/hep"),
                    ("reason", "disk_low"),
                ],
                self.disk_low.load(Ordering::Relaxed),
            );
            out.sample(
                "hep_rejected_total",
                &[
                    ("transport", "tcp"),
                    ("listener", "hep_tcp:0.0.0.0:9060"),
                    ("reason", "idle_timeout"),
                ],
                self.idle.load(Ordering::Relaxed),
            );
        }
    }

    fn said(lines: &[DropWarning]) -> Vec<(String, u64, u64)> {
        lines
            .iter()
            .map(|l| (l.kind.describe(), l.count, l.total))
            .collect()
    }

    #[test]
    fn each_series_is_said_at_once_then_at_most_once_an_interval_with_what_it_held_back() {
        let registry = Registry::new();
        let drops = Arc::new(Drops::default());
        registry.register(Arc::clone(&drops) as _);
        let watch = DropWatch::new(registry, None, Duration::from_millis(300));
        assert!(watch.poll().is_empty(), "nothing dropped, nothing said");

        drops.overload.store(5, Ordering::Relaxed);
        drops.idle.store(7, Ordering::Relaxed);
        assert_eq!(
            said(&watch.poll()),
            [("overload at listener hep_udp:0.0.0.0:9060".to_owned(), 5, 5)],
            "the first drops at once; an idle connection lost nothing"
        );
        // Within the interval: held back, even when another series speaks.
        drops.overload.store(8, Ordering::Relaxed);
        drops.disk_low.store(2, Ordering::Relaxed);
        assert_eq!(
            said(&watch.poll()),
            [("disk_low at output store:/var/lib/hep".to_owned(), 2, 2)]
        );
        drops.overload.store(9, Ordering::Relaxed);
        assert!(watch.poll().is_empty());
        std::thread::sleep(Duration::from_millis(350));
        // The count since the last line: 8 - 5, then 9 - 8, said although nothing new
        // came in this poll.
        drops.disk_low.store(2, Ordering::Relaxed);
        assert_eq!(
            said(&watch.poll()),
            [("overload at listener hep_udp:0.0.0.0:9060".to_owned(), 4, 9)]
        );
        // At exit, what the limit holds back is said at once.
        drops.overload.store(10, Ordering::Relaxed);
        assert!(watch.poll().is_empty(), "overload had its line just now");
        assert_eq!(
            said(&watch.flush()),
            [(
                "overload at listener hep_udp:0.0.0.0:9060".to_owned(),
                1,
                10
            )]
        );
        assert!(watch.flush().is_empty(), "nothing left");
        assert_eq!(
            watch
                .by_reason()
                .iter()
                .map(|(k, n)| (k.describe(), *n))
                .collect::<Vec<_>>(),
            [
                ("overload at listener hep_udp:0.0.0.0:9060".to_owned(), 10),
                ("disk_low at output store:/var/lib/hep".to_owned(), 2),
            ]
        );
    }
}
