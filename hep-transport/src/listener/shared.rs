//! What every worker and connection of one listener shares, and the backoff its loops
//! use after a failed `accept()` or receive.

use std::sync::Arc;
use std::time::Duration;

use super::config::ListenerConfig;
use super::warn::RateLimitedWarn;
use crate::{ListenSpec, ListenerStats};

/// One listener's state, shared through one `Arc` clone per worker or connection, never
/// per message.
#[derive(Debug)]
pub(super) struct Shared {
    /// The spec with the bound address (the actual port when port 0 was asked for).
    pub(super) spec: ListenSpec,
    pub(super) config: ListenerConfig,
    pub(super) stats: Arc<ListenerStats>,
    /// Log budget for bad input (datagrams, frames, connections closed for cause).
    pub(super) warn_input: RateLimitedWarn,
    /// Log budget for service failures and overload.
    pub(super) warn_service: RateLimitedWarn,
}

impl Shared {
    /// The state of a listener bound as `spec`, counting into `stats`.
    pub(super) fn new(spec: ListenSpec, config: ListenerConfig, stats: Arc<ListenerStats>) -> Self {
        Self {
            spec,
            config,
            stats,
            warn_input: RateLimitedWarn::per_second(),
            warn_service: RateLimitedWarn::per_second(),
        }
    }
}

/// Doubles `backoff` up to `max`.
pub(super) fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    backoff.saturating_mul(2).min(max)
}
