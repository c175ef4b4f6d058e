//! The store's settings (`[store]`; see `docs/CONFIG.md`).

use serde::Serialize;

use super::link::Correlation;

/// Settings of a store (`[store]` of `store:DIR` outputs); see `docs/CONFIG.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreConfig {
    /// Partitions whose messages were all received longer ago than this are deleted,
    /// hours; 0 = keep forever (default 168, a week). Receive time, not capture time:
    /// a message is stored whatever time its agent wrote into it.
    pub max_age_hours: u64,
    /// The store's files take at most this much disk, MiB: the oldest partitions go
    /// first; 0 = no limit (default 10240).
    pub max_size_mb: u64,
    /// Below this much free space on the store's filesystem nothing is written and
    /// messages are dropped (counted, `reason="disk_low"`), MiB; 0 = no floor (default
    /// 1024).
    pub min_free_mb: u64,
    /// Receive time one partition file covers, minutes, 1 to 1440 (default 60).
    pub partition_minutes: u32,
    /// Messages written in one transaction at most (default 50000).
    pub batch_size: usize,
    /// A message whose capture time is further than this from its receive time is
    /// counted (`hep_store_clock_skew_total`) and logged (at most a line every 10 s),
    /// seconds; 0 = not checked (default 300). It is stored all the same.
    pub clock_skew_warn_secs: u64,
    /// What links the legs of a call (`[correlation]`, a section of its own in the file:
    /// printed there, not here).
    #[serde(skip)]
    pub correlation: Correlation,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_age_hours: 168,
            max_size_mb: 10_240,
            min_free_mb: 1_024,
            partition_minutes: 60,
            batch_size: 50_000,
            clock_skew_warn_secs: 300,
            correlation: Correlation::default(),
        }
    }
}
