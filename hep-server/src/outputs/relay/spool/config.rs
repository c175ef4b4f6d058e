//! The bounds of a spool.

use std::time::Duration;

/// The bounds of a spool (`[spool]` in the configuration file; they apply to every
/// spooling relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpoolConfig {
    /// Bytes on disk at most, all segments together (default 1 GiB).
    pub max_bytes: u64,
    /// Size at which a segment is closed and the next one started (default 64 MiB).
    pub segment_bytes: u64,
    /// Longest time between `fsync`s while messages arrive, ms (default 100).
    pub sync_interval_ms: u64,
    /// Messages appended between `fsync`s at most (default 10,000).
    pub sync_messages: u64,
    /// Bytes of messages already written that are sent again after a failure or a
    /// restart, at most: within them, only what the destination can have missed, where
    /// the connection can be measured (default 4 MiB).
    pub replay_bytes: u64,
    /// Bytes sent again after a failure beyond what the destination can have held
    /// unread in its kernel (measured on the connection): what its application may
    /// have read and not yet handled (default 64 KiB, what hep-server reads at once).
    /// [`replay_bytes`](Self::replay_bytes) or more: the whole window at every failure.
    pub replay_margin_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            sync_interval_ms: 100,
            sync_messages: 10_000,
            replay_bytes: 4 << 20,
            replay_margin_bytes: 64 << 10,
        }
    }
}

impl SpoolConfig {
    /// Checks that the bounds make sense together.
    ///
    /// # Errors
    /// A message naming the key that is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.segment_bytes < 4096 {
            return Err("segment_bytes must be at least 4096".into());
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(format!(
                "max_bytes ({}) must be at least twice segment_bytes ({}): the oldest \
                 segment is dropped whole while the newest is being written",
                self.max_bytes, self.segment_bytes
            ));
        }
        if self.sync_interval_ms == 0 || self.sync_messages == 0 {
            return Err("sync_interval_ms and sync_messages must be above 0".into());
        }
        Ok(())
    }

    /// [`sync_interval_ms`](Self::sync_interval_ms) as a `Duration`.
    pub const fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_that_cannot_work_together_are_refused() {
        assert!(SpoolConfig::default().check().is_ok());
        let e = SpoolConfig {
            max_bytes: 100 << 20,
            segment_bytes: 64 << 20,
            ..SpoolConfig::default()
        }
        .check()
        .unwrap_err();
        assert!(e.contains("max_bytes"), "{e}");
    }
}
