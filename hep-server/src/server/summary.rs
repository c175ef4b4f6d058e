//! The counters of a run, summed up: the line said at exit, and the drops by reason
//! listed under it.

use std::fmt;
use std::sync::Arc;

use hep_transport::{ListenerDropReason, RejectReason};

use crate::outputs::queue::OutputStats;
use crate::outputs::relay::RelayCollect;
use crate::outputs::relay::spool::SpoolStats;
use crate::telemetry::drops::{DropKind, DropWatch};
use crate::telemetry::stats::{CallbackCollect, ListenerCollect};

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
            .map(|l| l.stats().received_total())
            .sum()
    }

    /// Datagrams, frames or connections refused. A connection closed for being idle
    /// (`idle_timeout`) lost nothing and refused nothing: it is in the metrics, not here.
    pub fn rejected(&self) -> u64 {
        let idle = RejectReason::IdleTimeout.label();
        self.listeners
            .iter()
            .flat_map(|l| l.stats().snapshot().rejected().collect::<Vec<_>>())
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
        let relay_names: Vec<&str> = self.relays.iter().map(|r| r.output().name()).collect();
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
        let listeners: u64 = self
            .listeners
            .iter()
            .map(|l| l.stats().dropped_total())
            .sum();
        let callbacks: u64 = self
            .callbacks
            .iter()
            .flat_map(|c| c.all())
            .map(|c| c.rejected().map(|(_, n)| n).sum::<u64>())
            .sum();
        let relay_names: Vec<&str> = self.relays.iter().map(|r| r.output().name()).collect();
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
            .map(|l| l.stats().dropped(ListenerDropReason::Overload))
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
