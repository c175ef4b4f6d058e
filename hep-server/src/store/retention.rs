//! Which partitions to delete: those past the age limit, then the oldest while the store
//! is over its size limit. Whole files go; rows are never deleted one by one.
//!
//! Age is receive time ([`Partition::received_until`](super::partition::Partition)),
//! which only the collector's clock decides: no time an agent writes into its messages
//! can make retention delete data younger than its limits.

/// The limits of `[store]`, in the units retention works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Partitions that ended this long ago go, seconds; `None`: no age limit.
    pub(crate) max_age: Option<i64>,
    /// The store's size on disk at most, bytes; `None`: no size limit.
    pub(crate) max_bytes: Option<u64>,
}

/// What retention needs to know of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aged {
    /// The latest its messages were received, Unix seconds.
    pub(crate) received_until: i64,
    /// Its size on disk, bytes.
    pub(crate) bytes: u64,
}

/// The indexes of `partitions` (in the order of their `received_until`, oldest first) to
/// delete at time `now` (Unix seconds). The newest partition is never chosen for size:
/// it is the one being written.
pub(crate) fn to_delete(partitions: &[Aged], now: i64, limits: Limits) -> Vec<usize> {
    let mut delete = Vec::new();
    let mut total: u64 = partitions.iter().map(|p| p.bytes).sum();
    for (i, p) in partitions.iter().enumerate() {
        let bytes = p.bytes;
        let too_old = limits
            .max_age
            .is_some_and(|age| p.received_until <= now - age);
        let too_big = limits.max_bytes.is_some_and(|max| total > max) && i + 1 < partitions.len();
        if too_old || too_big {
            delete.push(i);
            total -= bytes;
        }
    }
    delete
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partitions received until the ends of these hours.
    fn hours(ends: &[i64], bytes: u64) -> Vec<Aged> {
        ends.iter()
            .map(|&h| Aged {
                received_until: (h + 1) * 3_600,
                bytes,
            })
            .collect()
    }

    #[test]
    fn partitions_that_ended_before_the_age_limit_go() {
        let ps = hours(&[0, 1, 2, 3], 10);
        let limits = Limits {
            max_age: Some(2 * 3_600),
            max_bytes: None,
        };
        // At 4:00, a two-hour limit keeps 2:00-3:00 (ends 3:00) and 3:00-4:00.
        assert_eq!(to_delete(&ps, 4 * 3_600, limits), [0, 1]);
        assert_eq!(to_delete(&ps, 4 * 3_600 - 1, limits), [0]);
        let none = Limits {
            max_age: None,
            max_bytes: None,
        };
        assert!(to_delete(&ps, i64::MAX / 2, none).is_empty());
    }

    #[test]
    fn the_oldest_go_until_the_store_fits_but_never_the_newest() {
        let ps = hours(&[0, 1, 2, 3], 10);
        let limits = |max| Limits {
            max_age: None,
            max_bytes: Some(max),
        };
        assert_eq!(to_delete(&ps, 0, limits(25)), [0, 1]);
        assert_eq!(to_delete(&ps, 0, limits(40)), Vec::<usize>::new());
        assert_eq!(to_delete(&ps, 0, limits(1)), [0, 1, 2]);
    }
}
