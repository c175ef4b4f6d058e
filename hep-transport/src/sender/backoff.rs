//! Reconnect backoff and the per-destination retry limit.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Exponential reconnect backoff with jitter.
///
/// After `n` consecutive failures the next attempt waits `initial * 2^(n-1)`, at most
/// `max`; with `jitter`, a random part of up to half of that is taken off (so attempts of
/// many senders spread out). The randomness comes from std's randomly keyed `SipHash` of
/// the time and the destination, not from a random number crate.
///
/// ```
/// use std::time::Duration;
/// use hep_transport::sender::Backoff;
///
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
/// assert_eq!(b.delay(0), Duration::ZERO);
/// assert_eq!(b.delay(1), Duration::from_millis(100));
/// assert_eq!(b.delay(4), Duration::from_millis(800));
/// assert_eq!(b.delay(40), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The wait after the first failure (default 100 ms).
    pub initial: Duration,
    /// The longest wait (default 30 s).
    pub max: Duration,
    /// Whether up to half of each wait is taken off at random (default true).
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Backoff from `initial` doubling up to `max`, with jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: true,
        }
    }

    /// The same backoff without jitter (deterministic, for tests).
    pub const fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The wait before the next attempt after `failures` consecutive failures, before
    /// jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// [`delay`](Self::delay) with jitter applied when enabled; `seed` varies the draw.
    pub(crate) fn jittered(&self, failures: u32, seed: impl Hash) -> Duration {
        let d = self.delay(failures);
        if !self.jitter || d.is_zero() {
            return d;
        }
        let mut h = RandomState::new().build_hasher();
        seed.hash(&mut h);
        failures.hash(&mut h);
        std::time::SystemTime::now().hash(&mut h);
        let half = d / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let cut = h.finish() % nanos.saturating_add(1);
        d - Duration::from_nanos(cut)
    }
}

/// Consecutive failures of one destination, the time of the last attempt and the next
/// allowed attempt.
#[derive(Debug, Default)]
pub(crate) struct RetryState {
    /// Mirror of `inner.failures`, so that the success path takes no lock.
    failures: AtomicU32,
    inner: Mutex<RetryInner>,
}

#[derive(Debug, Default)]
struct RetryInner {
    failures: u32,
    last_attempt: Option<Instant>,
    next_attempt: Option<Instant>,
}

impl RetryState {
    fn lock(&self) -> std::sync::MutexGuard<'_, RetryInner> {
        // A panic while holding this lock leaves plain numbers behind: keep using them.
        crate::sync::lock(&self.inner)
    }

    /// Whether a new attempt is refused: `max_retries` (> 0) consecutive failures and
    /// the last attempt less than `cooldown` ago.
    pub(crate) fn cooling_down(&self, now: Instant, max_retries: u32, cooldown: Duration) -> bool {
        if max_retries == 0 || self.failures.load(Relaxed) < max_retries {
            return false;
        }
        let inner = self.lock();
        inner.failures >= max_retries
            && inner
                .last_attempt
                .is_some_and(|t| now.saturating_duration_since(t) < cooldown)
    }

    /// When the next attempt may start (backoff), if it has to wait.
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        if self.failures.load(Relaxed) == 0 {
            return None;
        }
        self.lock().next_attempt
    }

    pub(crate) fn attempt(&self, now: Instant) {
        self.lock().last_attempt = Some(now);
    }

    pub(crate) fn failure(&self, now: Instant, backoff: &Backoff, seed: impl Hash) -> u32 {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        inner.next_attempt = Some(now + backoff.jittered(inner.failures, seed));
        self.failures.store(inner.failures, Relaxed);
        inner.failures
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Relaxed) == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.failures = 0;
        inner.next_attempt = None;
        self.failures.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for n in 1..12 {
            let d = b.jittered(n, "x");
            let full = b.delay(n);
            assert!(d <= full && d >= full / 2, "{n}: {d:?} vs {full:?}");
        }
        assert_eq!(
            b.without_jitter().jittered(3, 1),
            Duration::from_millis(400)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_after_max_retries() {
        let r = RetryState::default();
        let b = Backoff::default().without_jitter();
        let cd = Duration::from_secs(10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!r.cooling_down(t0, 3, cd));
            r.attempt(t0);
            r.failure(t0, &b, 0);
        }
        assert!(r.cooling_down(t0, 3, cd));
        assert!(!r.cooling_down(t0, 0, cd), "0 disables the limit");
        assert!(!r.cooling_down(t0 + cd, 3, cd));
        assert_eq!(r.next_attempt(), Some(t0 + Duration::from_millis(400)));
        r.success();
        assert!(!r.cooling_down(t0, 3, cd));
        assert_eq!(r.next_attempt(), None);
    }
}
