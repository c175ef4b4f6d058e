//! The callback trait, its verdict and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hep_proto::{Received, RecvInfo};

/// What a callback decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Hand the message on.
    Continue,
    /// Stop here: nothing further sees it (OpenSIPS's `HEP_SCRIPT_SKIP`). Counted as skipped.
    Skip,
    /// Refused by a check; counted under this reason, which must be one of the
    /// callback's [`reasons`](HepCallback::reasons).
    Reject(&'static str),
}

/// A callback: sees each message, may change it, and decides what happens to it.
///
/// Closures `Fn(&mut Received) -> Verdict` are callbacks. Change the message through
/// [`Received::message_mut`] so that outputs know to re-encode it.
///
/// An `Arc<C>` of a callback is a callback too, so one instance (and its state: a
/// dedup's window, a rate limit's buckets) can serve several chains, e.g. the chain
/// before a configuration reload and the one after it:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use hep_callbacks::{CallbackChainLayer, Dedup};
///
/// let dedup = Arc::new(Dedup::new(Duration::from_millis(500)));
/// let before = CallbackChainLayer::builder().register(Arc::clone(&dedup)).build();
/// let after = CallbackChainLayer::builder().register(dedup).build();
/// # drop((before, after));
/// ```
pub trait HepCallback: Send + Sync + 'static {
    /// Runs on one message.
    fn call(&self, received: &mut Received) -> Verdict;

    /// A short name for logs and metrics (the `stage` label).
    fn name(&self) -> &'static str {
        "callback"
    }

    /// Every reason this callback may give in [`Verdict::Reject`].
    fn reasons(&self) -> &'static [&'static str] {
        &[]
    }
}

impl<F> HepCallback for F
where
    F: Fn(&mut Received) -> Verdict + Send + Sync + 'static,
{
    fn call(&self, received: &mut Received) -> Verdict {
        self(received)
    }
}

impl<C: HepCallback + ?Sized> HepCallback for Arc<C> {
    fn call(&self, received: &mut Received) -> Verdict {
        (**self).call(received)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn reasons(&self) -> &'static [&'static str] {
        (**self).reasons()
    }
}

// `Box<C>` in general would overlap the closure impl above (a boxed closure is a
// closure); a boxed trait object does not.
impl HepCallback for Box<dyn HepCallback> {
    fn call(&self, received: &mut Received) -> Verdict {
        (**self).call(received)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn reasons(&self) -> &'static [&'static str] {
        (**self).reasons()
    }
}

/// Counters of one callback: messages skipped, and rejected by reason (with where the
/// last one came from, so that a warning about them can name the agent).
#[derive(Debug)]
pub struct CallbackStats {
    name: &'static str,
    skipped: AtomicU64,
    rejected: Vec<Rejected>,
}

/// The count of one reason, and the source of a recent message rejected for it.
#[derive(Debug)]
struct Rejected {
    reason: &'static str,
    count: AtomicU64,
    last: Mutex<Option<RecvInfo>>,
}

impl CallbackStats {
    pub(crate) fn new(name: &'static str, reasons: &'static [&'static str]) -> Self {
        Self {
            name,
            skipped: AtomicU64::new(0),
            rejected: reasons
                .iter()
                .map(|&reason| Rejected {
                    reason,
                    count: AtomicU64::new(0),
                    last: Mutex::new(None),
                })
                .collect(),
        }
    }

    /// The callback's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Messages the callback skipped.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Messages rejected, by reason (every declared reason, zeros included).
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.rejected
            .iter()
            .map(|r| (r.reason, r.count.load(Ordering::Relaxed)))
    }

    /// Where a message rejected for `reason` came from: the last one, or, when several
    /// were rejected at once, one of the last (recording gives way rather than wait).
    /// `None` before the first.
    pub fn last_rejected(&self, reason: &str) -> Option<RecvInfo> {
        let r = self.rejected.iter().find(|r| r.reason == reason)?;
        r.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Counts a verdict about a message from `source`; true when the message goes on.
    pub(crate) fn record(&self, verdict: Verdict, source: &RecvInfo) -> bool {
        match verdict {
            Verdict::Continue => return true,
            Verdict::Skip => self.skipped.fetch_add(1, Ordering::Relaxed),
            Verdict::Reject(reason) => match self.rejected.iter().find(|r| r.reason == reason) {
                Some(r) => {
                    // A flood of rejections from several workers must not queue on this
                    // lock: one that finds it taken leaves the last source as it is.
                    if let Ok(mut last) = r.last.try_lock()
                        && last.as_ref() != Some(source)
                    {
                        *last = Some(source.clone());
                    }
                    r.count.fetch_add(1, Ordering::Relaxed)
                }
                // An undeclared reason is a bug in the callback; still never silent.
                None => {
                    tracing::error!(
                        callback = self.name,
                        reason,
                        "callback rejected with an undeclared reason"
                    );
                    self.skipped.fetch_add(1, Ordering::Relaxed)
                }
            },
        };
        false
    }
}
