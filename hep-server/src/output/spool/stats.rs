//! The counters of a spool.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one spool (metrics and the exit summary).
#[derive(Debug, Default)]
pub struct SpoolStats {
    pub(super) bytes: AtomicU64,
    pub(super) messages: AtomicU64,
    pub(super) dropped_full: AtomicU64,
    pub(super) dropped_corrupt: AtomicU64,
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

    /// Torn or corrupt records cut off or skipped (one per damage found).
    pub fn dropped_corrupt(&self) -> u64 {
        self.dropped_corrupt.load(Ordering::Relaxed)
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
