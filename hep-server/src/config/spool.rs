//! `[spool]`: the bounds of the spools of `relay:...;spool=DIR` outputs.

use serde::Deserialize;

use super::error::{ConfigError, Source};
use crate::outputs::relay::spool::SpoolConfig;

/// `[spool]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpool {
    max_bytes: Option<u64>,
    segment_bytes: Option<u64>,
    sync_interval_ms: Option<u64>,
    sync_messages: Option<u64>,
    replay_bytes: Option<u64>,
    replay_margin_bytes: Option<u64>,
}

/// `[spool]` (its defaults without it), its bounds checked together.
pub(super) fn resolve(raw: Option<RawSpool>, src: &Source<'_>) -> Result<SpoolConfig, ConfigError> {
    let d = SpoolConfig::default();
    let Some(r) = raw else {
        return Ok(d);
    };
    let c = SpoolConfig {
        max_bytes: r.max_bytes.unwrap_or(d.max_bytes),
        segment_bytes: r.segment_bytes.unwrap_or(d.segment_bytes),
        sync_interval_ms: r.sync_interval_ms.unwrap_or(d.sync_interval_ms),
        sync_messages: r.sync_messages.unwrap_or(d.sync_messages),
        replay_bytes: r.replay_bytes.unwrap_or(d.replay_bytes),
        replay_margin_bytes: r.replay_margin_bytes.unwrap_or(d.replay_margin_bytes),
    };
    c.check()
        .map_err(|m| src.error_at_section("spool", format!("section [spool]: {m}")))?;
    Ok(c)
}
