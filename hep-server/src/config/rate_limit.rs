//! `[rate_limit]`: messages per second per agent.

use serde::{Deserialize, Serialize};

/// `[rate_limit]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    rate: f64,
    burst: Option<f64>,
}

/// Rate limit (`[rate_limit]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitConfig {
    /// Messages per second per agent.
    pub rate: f64,
    /// Burst size (default: one second's worth).
    pub burst: f64,
}

/// `[rate_limit]` with its default burst filled in.
pub(super) fn resolve(raw: RawRateLimit) -> RateLimitConfig {
    RateLimitConfig {
        rate: raw.rate,
        burst: raw.burst.unwrap_or(raw.rate),
    }
}
