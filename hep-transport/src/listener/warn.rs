//! A log-line budget for input an attacker controls.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// At most one log line per interval, and a count of the events left out in between.
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
///
/// [`count`](Self::count) is the same budget for events that arrive counted (a counter
/// read now and then): it says how many happened since the last line, the held-back ones
/// included, and `count(0)` says them once the interval has passed even if no new one
/// came, so that a burst is never reported as its first event alone.
///
/// ```
/// use std::time::Duration;
/// use hep_transport::RateLimitedWarn;
///
/// let limit = RateLimitedWarn::new(Duration::from_secs(60));
/// assert_eq!(limit.count(3), Some(3)); // the first line: 3 since the start
/// assert_eq!(limit.count(5), None); // held back
/// assert_eq!(limit.count(0), None); // still within the minute
/// assert_eq!(limit.take(), 5); // at exit: whatever is held back, interval or not
/// ```
#[derive(Debug)]
pub struct RateLimitedWarn {
    origin: Instant,
    interval_ns: u64,
    /// Nanoseconds since `origin` from which the next line may be logged.
    next_ns: AtomicU64,
    /// Events since the last line allowed.
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
        self.count(1).map(|n| n.saturating_sub(1))
    }

    /// Counts `n` events; `Some(events since the last line, these included)` if a line may
    /// be logged now (and that count resets), `None` if not (they are reported with the
    /// next line). With nothing held back, `count(0)` is `None` and uses up no line.
    pub fn count(&self, n: u64) -> Option<u64> {
        let held = self.suppressed.fetch_add(n, Relaxed).saturating_add(n);
        if held == 0 {
            return None;
        }
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_ns.load(Relaxed);
        if now >= next
            && self
                .next_ns
                .compare_exchange(next, now.saturating_add(self.interval_ns), Relaxed, Relaxed)
                .is_ok()
        {
            // Those counted by others meanwhile are reported here too: none is lost. (Zero
            // if another caller took them between our count and our turn.)
            return Some(self.suppressed.swap(0, Relaxed)).filter(|&n| n > 0);
        }
        None
    }

    /// The events held back since the last line, which are then reported (at exit: the
    /// interval does not matter any more).
    pub fn take(&self) -> u64 {
        self.suppressed.swap(0, Relaxed)
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

    #[test]
    fn counted_events_are_all_reported_once_the_interval_passes() {
        let limit = RateLimitedWarn::new(Duration::from_millis(20));
        assert_eq!(limit.count(0), None, "nothing to say");
        assert_eq!(limit.count(2), Some(2));
        assert_eq!(limit.count(4), None);
        assert_eq!(limit.count(1), None);
        std::thread::sleep(Duration::from_millis(30));
        // No new event: the held-back ones are said anyway.
        assert_eq!(limit.count(0), Some(5));
        assert_eq!(limit.count(0), None);
        assert_eq!(limit.count(3), None, "within the interval of the last line");
        assert_eq!(limit.take(), 3);
        assert_eq!(limit.take(), 0);
    }
}
