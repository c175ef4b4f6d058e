//! A log-line budget for input an attacker controls.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// At most one log line per interval, and a count of the lines left out in between.
///
/// Bad input arrives at line rate; logging every bad datagram would turn a flood into a
/// disk-filling, CPU-eating log. A listener keeps one of these (shared by its workers and
/// connections) and logs the first problem of each interval with the number of problems
/// it suppressed since the last line; the counters in
/// [`ListenerStats`](crate::ListenerStats) still count every one.
///
/// ```
/// use std::time::Duration;
/// use hep_transport::RateLimitedWarn;
///
/// let limit = RateLimitedWarn::new(Duration::from_secs(60));
/// assert_eq!(limit.check(), Some(0)); // the first line may be logged
/// assert_eq!(limit.check(), None); // the next ones within the minute are counted
/// assert_eq!(limit.check(), None);
/// assert_eq!(limit.suppressed(), 2); // and reported with the next line that is logged
///
/// if let Some(suppressed) = limit.check() {
///     tracing::warn!(suppressed, "bad datagram");
/// }
/// ```
#[derive(Debug)]
pub struct RateLimitedWarn {
    origin: Instant,
    interval_ns: u64,
    /// Nanoseconds since `origin` from which the next line may be logged.
    next_ns: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for RateLimitedWarn {
    fn default() -> Self {
        Self::per_second()
    }
}

impl RateLimitedWarn {
    /// One line per `interval` at most.
    pub fn new(interval: Duration) -> Self {
        Self {
            origin: Instant::now(),
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            next_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// One line per second at most: the listeners' budget.
    pub fn per_second() -> Self {
        Self::new(Duration::from_secs(1))
    }

    /// `Some(suppressed)` if a line may be logged now, with the number of lines left out
    /// since the last one (and that count resets); `None` if not (and it is counted).
    ///
    /// Costs a clock read: call it on the error path only.
    pub fn check(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_ns.load(Relaxed);
        if now >= next
            && self
                .next_ns
                .compare_exchange(next, now.saturating_add(self.interval_ns), Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }

    /// Lines left out since the last one allowed.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_again_after_the_interval_and_reports_what_it_held_back() {
        let limit = RateLimitedWarn::new(Duration::from_millis(20));
        assert_eq!(limit.check(), Some(0));
        assert_eq!(limit.check(), None);
        assert_eq!(limit.check(), None);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(limit.check(), Some(2));
        assert_eq!(limit.check(), None);
    }
}
