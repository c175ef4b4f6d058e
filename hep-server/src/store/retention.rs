//! Which partitions to delete: those past the age limit, then the oldest while the store
//! is over its size limit. Whole files go; rows are never deleted one by one.

use super::partition::Partition;

/// The limits of `[store]`, in the units retention works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Partitions that ended this long ago go, seconds; `None`: no age limit.
    pub(crate) max_age: Option<i64>,
    /// The store's size on disk at most, bytes; `None`: no size limit.
    pub(crate) max_bytes: Option<u64>,
}

/// The indexes of `partitions` (oldest first, with their sizes in bytes) to delete at
/// time `now` (Unix seconds). The newest partition is never chosen for size: it is the
/// one being written.
pub(crate) fn to_delete(partitions: &[(Partition, u64)], now: i64, limits: Limits) -> Vec<usize> {
    let mut delete = Vec::new();
    let mut total: u64 = partitions.iter().map(|(_, b)| b).sum();
    for (i, (p, bytes)) in partitions.iter().enumerate() {
        let too_old = limits.max_age.is_some_and(|age| p.end() <= now - age);
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
    use std::path::Path;

    use super::*;

    fn hours(starts: &[i64], bytes: u64) -> Vec<(Partition, u64)> {
        starts
            .iter()
            .map(|&h| (Partition::holding(Path::new("/s"), h * 3_600, 3_600), bytes))
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
