use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::OverloadDrop;
use crate::{ListenerStats, RateLimitedWarn};

/// Wraps services in [`OverloadDrop`], counting into one [`ListenerStats`]. The services
/// it makes share one rate-limited warning (one line a second at most).
#[derive(Clone)]
pub struct OverloadDropLayer {
    stats: Arc<ListenerStats>,
    warn: Arc<RateLimitedWarn>,
}

impl OverloadDropLayer {
    /// A layer counting drops into `stats` (usually the listener's,
    /// [`Listener::stats`](crate::Listener::stats)).
    pub fn new(stats: Arc<ListenerStats>) -> Self {
        Self {
            stats,
            warn: Arc::new(RateLimitedWarn::per_second()),
        }
    }
}

impl<S> Layer<S> for OverloadDropLayer {
    type Service = OverloadDrop<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OverloadDrop::with_warn(inner, self.stats.clone(), self.warn.clone())
    }
}

impl fmt::Debug for OverloadDropLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadDropLayer").finish_non_exhaustive()
    }
}
