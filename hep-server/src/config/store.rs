//! `[store]`: the settings of `store:DIR` outputs.

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::store::StoreConfig;

/// `[store]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    max_age_hours: Option<u64>,
    max_size_mb: Option<u64>,
    min_free_mb: Option<u64>,
    partition_minutes: Option<Spanned<u32>>,
    batch_size: Option<Spanned<usize>>,
    clock_skew_warn_secs: Option<u64>,
}

/// `[store]` (its defaults without it), its ranges checked.
pub(super) fn resolve(raw: Option<RawStore>, src: &Source<'_>) -> Result<StoreConfig, ConfigError> {
    let d = StoreConfig::default();
    let Some(st) = raw else {
        return Ok(d);
    };
    let partition_minutes = match st.partition_minutes {
        None => d.partition_minutes,
        Some(m) if (1..=1_440).contains(m.get_ref()) => m.into_inner(),
        Some(m) => {
            return Err(src.error(
                m.span(),
                format!(
                    "key `store.partition_minutes`: expected 1 to 1440 (a day), found {}",
                    m.get_ref()
                ),
            ));
        }
    };
    let batch_size = match st.batch_size {
        None => d.batch_size,
        Some(b) if (1..=1_000_000).contains(b.get_ref()) => b.into_inner(),
        Some(b) => {
            return Err(src.error(
                b.span(),
                format!(
                    "key `store.batch_size`: expected 1 to 1000000, found {}",
                    b.get_ref()
                ),
            ));
        }
    };
    Ok(StoreConfig {
        max_age_hours: st.max_age_hours.unwrap_or(d.max_age_hours),
        max_size_mb: st.max_size_mb.unwrap_or(d.max_size_mb),
        min_free_mb: st.min_free_mb.unwrap_or(d.min_free_mb),
        partition_minutes,
        batch_size,
        clock_skew_warn_secs: st.clock_skew_warn_secs.unwrap_or(d.clock_skew_warn_secs),
        ..d
    })
}
