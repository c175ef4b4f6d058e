//! Kept read connections ([`super::Readers`]): a search through them finds what a search
//! with fresh connections finds, rows written since included, and a partition deleted
//! (or deleted and written again under its name) is never read through an old one.

use std::path::Path;

use super::partition::Partition;
use super::query::Query;
use super::readers::{MAX_IDLE_READERS, Readers};
use super::tests::{NINE, invite, write, writer};
use crate::testing::TempDir;

/// The Call-IDs of the call list, newest first, through `readers`; the same as with
/// fresh connections (checked).
fn listed(readers: &Readers, dir: &Path) -> Vec<String> {
    let ids =
        |page: super::Calls| -> Vec<String> { page.calls.into_iter().map(|c| c.call_id).collect() };
    let kept = ids(readers.calls(dir, &Query::default(), None).expect("lists"));
    let fresh = ids(super::calls(dir, &Query::default(), None).expect("lists"));
    assert_eq!(kept, fresh, "kept connections answer as fresh ones");
    kept
}

#[test]
fn kept_connections_see_new_rows_and_never_a_deleted_partition() {
    let dir = TempDir::new("readers-kept");
    let ten = NINE + 3_600;
    let mut w = writer(dir.path());
    write(&mut w, &[invite(NINE, "nine-a", "alice", "")]);
    write(&mut w, &[invite(ten, "ten-a", "alice", "")]);
    let readers = Readers::new();
    assert_eq!(listed(&readers, dir.path()), ["ten-a", "nine-a"]);
    // One connection a partition: each step of the list took it and gave it back.
    assert_eq!(readers.idle(), 2);

    // Written after the connections were kept: found through them.
    write(&mut w, &[invite(ten + 1, "ten-b", "alice", "")]);
    assert_eq!(listed(&readers, dir.path()), ["ten-b", "ten-a", "nine-a"]);
    assert_eq!(readers.idle(), 2);

    // The 09:00 partition deleted (as retention does): its connection is closed.
    drop(w);
    for f in Partition::holding(dir.path(), i64::from(NINE), 3_600).files() {
        std::fs::remove_file(&f).ok();
    }
    assert_eq!(listed(&readers, dir.path()), ["ten-b", "ten-a"]);
    assert_eq!(readers.idle(), 1);

    // Deleted again, then written again under its name while a connection to the old
    // file is kept: the new file is read, not the old one.
    let mut w = writer(dir.path());
    write(&mut w, &[invite(NINE, "nine-b", "alice", "")]);
    assert_eq!(listed(&readers, dir.path()), ["ten-b", "ten-a", "nine-b"]);
    drop(w);
    let nine = Partition::holding(dir.path(), i64::from(NINE), 3_600);
    let kept_nine = readers.open(&nine).expect("opens").expect("has a table");
    for f in nine.files() {
        std::fs::remove_file(&f).ok();
    }
    let mut w = writer(dir.path());
    write(&mut w, &[invite(NINE + 1, "nine-c", "alice", "")]);
    drop(kept_nine); // back among the kept ones, for a file no longer there
    assert_eq!(listed(&readers, dir.path()), ["ten-b", "ten-a", "nine-c"]);
    assert_eq!(readers.idle(), 2, "the old file's connection is closed");
}

#[test]
fn at_most_the_bound_of_connections_is_kept() {
    let dir = TempDir::new("readers-bound");
    let mut w = writer(dir.path());
    write(&mut w, &[invite(NINE, "a", "alice", "")]);
    let p = Partition::holding(dir.path(), i64::from(NINE), 3_600);
    let readers = Readers::new();
    let lent: Vec<_> = (0..MAX_IDLE_READERS + 3)
        .map(|_| readers.open(&p).expect("opens").expect("has a table"))
        .collect();
    assert_eq!(readers.idle(), 0, "lent ones are not idle");
    drop(lent);
    assert_eq!(readers.idle(), MAX_IDLE_READERS);
    // One-shot readers keep nothing.
    let one_shot = Readers::one_shot();
    drop(one_shot.open(&p).expect("opens"));
    assert_eq!(one_shot.idle(), 0);
}
