//! `[dedup]`: duplicate suppression.

use serde::{Deserialize, Serialize};

/// `[dedup]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDedup {
    window_ms: u64,
    capture_id_aware: Option<bool>,
    max_entries: Option<usize>,
}

/// Dedup (`[dedup]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DedupConfig {
    /// Window, ms.
    pub window_ms: u64,
    /// Capture id is part of the key (default true).
    pub capture_id_aware: bool,
    /// Payload hashes remembered at most (default 100000).
    pub max_entries: usize,
}

/// `[dedup]` with its defaults filled in.
pub(super) fn resolve(raw: RawDedup) -> DedupConfig {
    DedupConfig {
        window_ms: raw.window_ms,
        capture_id_aware: raw.capture_id_aware.unwrap_or(true),
        max_entries: raw.max_entries.unwrap_or(100_000),
    }
}
