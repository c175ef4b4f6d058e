//! The counters of a spool.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one spool (metrics and the exit summary).
#[derive(Debug, Default)]
pub struct SpoolStats {
    pub(super) bytes: AtomicU64,
    pub(super) messages: AtomicU64,
    pub(super) dropped_full: AtomicU64,
    pub(super) dropped_corrupt: AtomicU64,
    pub(super) corrupt_estimated: AtomicU64,
    pub(super) corrupt_bytes: AtomicU64,
    pub(super) replayed: AtomicU64,
    pub(super) write_failed: AtomicU64,
}

impl SpoolStats {
    /// Bytes of the spool's segment files now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Messages in the spool not yet written to the destination.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Messages deleted unsent because the spool was over `max_bytes`.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
    }

    /// Messages lost to damaged records (torn or corrupt), not yet sent when the damage
    /// was found: each damaged span is skipped to the next valid record, and the records
    /// it held are counted by following their length fields, or, where a length was
    /// damaged too, estimated from the span's bytes and the segment's mean record length
    /// ([`corrupt_estimated`](Self::corrupt_estimated) of them).
    pub fn dropped_corrupt(&self) -> u64 {
        self.dropped_corrupt.load(Ordering::Relaxed)
    }

    /// Of [`dropped_corrupt`](Self::dropped_corrupt), those estimated from bytes rather
    /// than counted.
    pub fn corrupt_estimated(&self) -> u64 {
        self.corrupt_estimated.load(Ordering::Relaxed)
    }

    /// Bytes of damaged spans skipped or cut off (not yet sent when found).
    pub fn corrupt_bytes(&self) -> u64 {
        self.corrupt_bytes.load(Ordering::Relaxed)
    }

    /// Counts a damaged span found, as lost if it was `unsent`; `mean` is the segment's
    /// mean record length for an estimate.
    pub(super) fn count_damage(&self, d: &super::Damage, mean: u64, unsent: bool) {
        if !unsent {
            return;
        }
        let records = d.records(mean);
        self.dropped_corrupt.fetch_add(records, Ordering::Relaxed);
        if d.counted.is_none() {
            self.corrupt_estimated.fetch_add(records, Ordering::Relaxed);
        }
        self.corrupt_bytes.fetch_add(d.bytes(), Ordering::Relaxed);
    }

    /// Messages sent again although they had been written before (possible duplicates).
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Messages lost because appending them to the spool failed (disk full, IO error).
    pub fn write_failed(&self) -> u64 {
        self.write_failed.load(Ordering::Relaxed)
    }

    pub(crate) fn add_replayed(&self, n: u64) {
        self.replayed.fetch_add(n, Ordering::Relaxed);
    }
}
