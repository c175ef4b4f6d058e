//! `[kpi]`: the SIP KPIs' call table.

use serde::Deserialize;

use super::error::{ConfigError, Source};
use crate::kpi::KpiConfig;

/// `[kpi]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKpi {
    enabled: Option<bool>,
    max_calls: Option<usize>,
    setup_timeout_secs: Option<u64>,
    call_timeout_secs: Option<u64>,
    nodes: Option<Vec<u32>>,
}

/// Calls the table may be asked to hold: about 4 GiB of entries (docs/KPI.md).
const MAX_CALLS: usize = 10_000_000;

/// `[kpi]`, its defaults without it.
pub(super) fn resolve(raw: Option<RawKpi>, src: &Source<'_>) -> Result<KpiConfig, ConfigError> {
    let d = KpiConfig::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let max_calls = raw.max_calls.unwrap_or(d.max_calls);
    if !(1..=MAX_CALLS).contains(&max_calls) {
        return Err(src.error_in_file(format!(
            "key `kpi.max_calls`: expected 1 to {MAX_CALLS} calls, found {max_calls}"
        )));
    }
    let secs = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(src.error_in_file(format!(
            "key `kpi.{key}`: expected a number of seconds above 0"
        ))),
        v => Ok(v.unwrap_or(default)),
    };
    let nodes = raw.nodes.unwrap_or_default();
    if nodes.len() > 1000 {
        return Err(src.error_in_file(
            "key `kpi.nodes`: at most 1000 capture ids get a `node` label of their own",
        ));
    }
    Ok(KpiConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        max_calls,
        setup_timeout_secs: secs(
            "setup_timeout_secs",
            raw.setup_timeout_secs,
            d.setup_timeout_secs,
        )?,
        call_timeout_secs: secs(
            "call_timeout_secs",
            raw.call_timeout_secs,
            d.call_timeout_secs,
        )?,
        nodes,
    })
}
