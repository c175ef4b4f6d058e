//! Duplicate suppression: the same payload seen again within a window.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use hep_proto::Received;
use tokio::time::Instant;

use crate::{HepCallback, Verdict};

/// Rejects a message whose payload was seen within `window` (reason `duplicate`), as
/// when two agents capture the same packet. By default the capture id is part of the
/// key, so the same packet from two agents is kept and a replay from one is not; turn
/// that off to keep one copy across agents.
///
/// Memory is bounded: at most `max_entries` payload hashes are remembered (oldest
/// forgotten first).
///
/// ```
/// use std::time::Duration;
/// use hep_callbacks::Dedup;
/// let dedup = Dedup::new(Duration::from_millis(500)).capture_id_aware(false);
/// # drop(dedup);
/// ```
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capture_id_aware: bool,
    max_entries: usize,
    hasher: RandomState,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    first_seen: HashMap<u64, Instant>,
    order: VecDeque<(u64, Instant)>,
}

impl Dedup {
    /// Remembers payloads for `window` (heplify-server uses 500 ms), up to 100,000.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            capture_id_aware: true,
            max_entries: 100_000,
            hasher: RandomState::new(),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Whether the capture id is part of the key (default: yes).
    #[must_use]
    pub fn capture_id_aware(mut self, aware: bool) -> Self {
        self.capture_id_aware = aware;
        self
    }

    /// How many payloads to remember at most (default 100,000).
    #[must_use]
    pub fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }

    fn key(&self, r: &Received) -> u64 {
        let mut h = self.hasher.build_hasher();
        if self.capture_id_aware {
            r.message.capture_id.hash(&mut h);
        }
        r.message.payload.bytes().hash(&mut h);
        h.finish()
    }
}

impl HepCallback for Dedup {
    fn call(&self, r: &mut Received) -> Verdict {
        let key = self.key(r);
        let now = Instant::now();
        // A poisoned lock only means another thread panicked mid-update; the map is
        // still a valid cache.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Seen { first_seen, order } = &mut *seen;
        while let Some(&(k, t)) = order.front() {
            if now.duration_since(t) < self.window && order.len() < self.max_entries {
                break;
            }
            order.pop_front();
            if first_seen.get(&k) == Some(&t) {
                first_seen.remove(&k);
            }
        }
        if first_seen
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < self.window)
        {
            return Verdict::Reject("duplicate");
        }
        first_seen.insert(key, now);
        order.push_back((key, now));
        Verdict::Continue
    }

    fn name(&self) -> &'static str {
        "dedup"
    }

    fn reasons(&self) -> &'static [&'static str] {
        &["duplicate"]
    }
}
