//! Rate limit per agent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use hep_proto::Received;
use tokio::time::Instant;

use crate::{HepCallback, Verdict};

/// Limits each agent (the HEP sender's IP address) to `rate` messages per second with
/// bursts of `burst` (a token bucket); excess is rejected as `rate_limited`.
///
/// At most `max_agents` agents are tracked (default 65,536); agents idle for a minute
/// are forgotten when room is needed, and if none is, a new agent is rejected as
/// `too_many_agents` rather than growing memory.
///
/// ```
/// use hep_callbacks::RateLimit;
/// let limit = RateLimit::new(10_000.0, 20_000.0);
/// # drop(limit);
/// ```
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    max_agents: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

const IDLE: Duration = Duration::from_secs(60);

impl RateLimit {
    /// `rate` messages per second per agent, bursts of up to `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate: rate.max(0.0),
            burst: burst.max(1.0),
            max_agents: 65_536,
            buckets: Mutex::default(),
        }
    }

    /// How many agents to track at most.
    #[must_use]
    pub fn max_agents(mut self, max: usize) -> Self {
        self.max_agents = max.max(1);
        self
    }
}

impl HepCallback for RateLimit {
    fn call(&self, r: &mut Received) -> Verdict {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let agent = r.info.peer.ip();
        if !buckets.contains_key(&agent) && buckets.len() >= self.max_agents {
            buckets.retain(|_, b| now.duration_since(b.updated) < IDLE);
            if buckets.len() >= self.max_agents {
                return Verdict::Reject("too_many_agents");
            }
        }
        let b = buckets.entry(agent).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.updated).as_secs_f64() * self.rate).min(self.burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Verdict::Continue
        } else {
            Verdict::Reject("rate_limited")
        }
    }

    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn reasons(&self) -> &'static [&'static str] {
        &["rate_limited", "too_many_agents"]
    }
}
