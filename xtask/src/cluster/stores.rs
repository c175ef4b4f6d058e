//! What the consumers' stores hold at the end, against what the peers sent.
//!
//! Every store is read directly, read-only, partition file by partition file
//! (`hep-*.db`, table `messages`): a count through `hep-server search` would print a
//! million JSON records. A message of the run is identified by its call (`bench-N@...`,
//! the Call-ID `hep-bench-peer sip-calls` writes) and its step in the call (INVITE, 100,
//! 180, 200, ACK, BYE, 200: the method column holds a response's CSeq method), so a copy
//! that a redelivery left would show as a second row of the same step.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rusqlite::{Connection, OpenFlags};

/// Messages a call of `sip-calls` has.
pub(crate) const STEPS: u8 = 7;

/// How many examples of each kind of problem a tally keeps.
const EXAMPLES: usize = 5;

/// The step (0-6) of a message of a `sip-calls` call, from its method and status.
fn step(method: Option<&str>, status: Option<i64>) -> Option<u8> {
    Some(match (method?, status) {
        ("INVITE", None) => 0,
        ("INVITE", Some(100)) => 1,
        ("INVITE", Some(180)) => 2,
        ("INVITE", Some(200)) => 3,
        ("ACK", None) => 4,
        ("BYE", None) => 5,
        ("BYE", Some(200)) => 6,
        _ => return None,
    })
}

/// The call number of a `sip-calls` Call-ID (`bench-N@10.0.0.1`).
fn call_number(call_id: &str) -> Option<u64> {
    call_id
        .strip_prefix("bench-")?
        .split_once('@')?
        .0
        .parse()
        .ok()
}

/// One stored message of the run.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Which store (index into the list given to [`tally`]).
    store: u8,
    /// The row id: the capture time made unique, so the store's capture order.
    id: i64,
    /// The step in the call.
    step: u8,
    /// The receive time the store recorded, us.
    recv_ts: i64,
}

/// What the stores hold, against the calls that were sent.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Messages sent (calls times 7).
    pub(crate) expected: u64,
    /// Rows in each store, every row counted (the run's and any other).
    pub(crate) per_store: Vec<u64>,
    /// Messages of the run found at least once.
    pub(crate) found: u64,
    /// Messages of the run not found in any store.
    pub(crate) lost: u64,
    /// Rows beyond the first of one message (in one store or across stores).
    pub(crate) duplicates: u64,
    /// Rows that are no message of the run (another Call-ID, an unknown step).
    pub(crate) foreign: u64,
    /// Calls whose messages are in more than one store.
    pub(crate) split_calls: u64,
    /// Calls whose messages, in the store's capture order, are not the call's steps in
    /// order, or whose receive times go back.
    pub(crate) out_of_order: u64,
    /// Calls with all seven messages, in one store, in order.
    pub(crate) whole_calls: u64,
    /// Which store holds each whole call's messages: calls per store.
    pub(crate) calls_per_store: Vec<u64>,
    /// A few examples of each problem, for the report.
    pub(crate) examples: Vec<String>,
}

impl Tally {
    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES * 4 {
            self.examples.push(text);
        }
    }
}

/// The partition files of a store directory, in name order.
fn partitions(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the store {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hep-") && n.ends_with("s.db"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The rows of a store (every partition), as a reader sees them now (committed rows).
///
/// # Errors
/// A partition that cannot be read. A store directory that does not exist yet holds 0.
pub(crate) fn count_rows(dir: &Path) -> Result<u64> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut rows = 0;
    for file in partitions(dir)? {
        let conn = Connection::open_with_flags(
            &file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {} read-only", file.display()))?;
        let n: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .with_context(|| format!("counting the rows of {}", file.display()))?;
        rows += u64::try_from(n).unwrap_or(0);
    }
    Ok(rows)
}

/// Reads every row of one partition file: `(call_id, id, method, status, recv_ts)`.
fn read_partition(
    path: &Path,
    mut each: impl FnMut(Option<String>, i64, Option<String>, Option<i64>, i64),
) -> Result<()> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", path.display()))?;
    let mut stmt = conn
        .prepare("SELECT call_id, id, method, status, recv_ts FROM messages")
        .with_context(|| format!("reading {}", path.display()))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        each(
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        );
    }
    Ok(())
}

/// Reads `stores` and checks them against the calls `calls` (7 messages each).
///
/// # Errors
/// A store or partition that cannot be read.
pub(crate) fn tally(stores: &[PathBuf], calls: Range<u64>) -> Result<Tally> {
    let span = usize::try_from(calls.end.saturating_sub(calls.start))?;
    let mut by_call: Vec<Vec<Row>> = vec![Vec::new(); span];
    let mut t = Tally {
        expected: calls.end.saturating_sub(calls.start) * u64::from(STEPS),
        per_store: vec![0; stores.len()],
        calls_per_store: vec![0; stores.len()],
        ..Tally::default()
    };
    for (index, dir) in stores.iter().enumerate() {
        let store = u8::try_from(index)?;
        for file in partitions(dir)? {
            let mut foreign = 0;
            let mut rows = 0;
            read_partition(&file, |call_id, id, method, status, recv_ts| {
                rows += 1;
                let place = call_id
                    .as_deref()
                    .and_then(call_number)
                    .filter(|n| calls.contains(n))
                    .zip(step(method.as_deref(), status));
                match place {
                    Some((n, step)) => {
                        by_call[usize::try_from(n - calls.start).unwrap_or(0)].push(Row {
                            store,
                            id,
                            step,
                            recv_ts,
                        })
                    }
                    None => foreign += 1,
                }
            })?;
            t.per_store[index] += rows;
            t.foreign += foreign;
        }
    }
    for (offset, rows) in by_call.iter_mut().enumerate() {
        let call = calls.start + offset as u64;
        check_call(&mut t, call, rows);
    }
    Ok(t)
}

/// Adds one call's rows to the tally.
fn check_call(t: &mut Tally, call: u64, rows: &mut [Row]) {
    rows.sort_by_key(|r| r.id);
    let mut seen = [0u32; STEPS as usize];
    for r in rows.iter() {
        seen[usize::from(r.step)] += 1;
    }
    let present = seen.iter().filter(|&&n| n > 0).count() as u64;
    let copies: u64 = seen.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
    t.found += present;
    t.lost += u64::from(STEPS) - present;
    t.duplicates += copies;
    if present < u64::from(STEPS) {
        let missing: Vec<usize> = (0..usize::from(STEPS)).filter(|&s| seen[s] == 0).collect();
        t.example(format!("call bench-{call}: steps {missing:?} not stored"));
    }
    if copies > 0 {
        t.example(format!("call bench-{call}: {copies} duplicate row(s)"));
    }
    let Some(first) = rows.first() else {
        return;
    };
    let split = rows.iter().any(|r| r.store != first.store);
    if split {
        t.split_calls += 1;
        t.example(format!(
            "call bench-{call}: messages in more than one store"
        ));
    }
    // Capture order: the steps in row-id order (copies aside) are 0..7, and the receive
    // times do not go back.
    let mut last_step = None;
    let mut in_order = true;
    for pair in rows.windows(2) {
        if pair[1].recv_ts < pair[0].recv_ts {
            in_order = false;
        }
    }
    for r in rows.iter() {
        if last_step == Some(r.step) {
            continue;
        }
        if last_step.is_some_and(|s| r.step != s + 1) || (last_step.is_none() && r.step != 0) {
            in_order = false;
        }
        last_step = Some(r.step);
    }
    if !in_order {
        t.out_of_order += 1;
        t.example(format!(
            "call bench-{call}: stored out of capture order (steps {:?})",
            rows.iter().map(|r| r.step).collect::<Vec<_>>()
        ));
    }
    if in_order && !split && present == u64::from(STEPS) {
        t.whole_calls += 1;
        t.calls_per_store[usize::from(first.store)] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(store: u8, id: i64, step: u8) -> Row {
        Row {
            store,
            id,
            step,
            recv_ts: id,
        }
    }

    fn one(rows: &mut [Row]) -> Tally {
        let mut t = Tally {
            per_store: vec![0; 2],
            calls_per_store: vec![0; 2],
            ..Tally::default()
        };
        check_call(&mut t, 7, rows);
        t
    }

    #[test]
    #[ignore = "runs target/debug/hep-server and hep-bench-peer: cargo test -p xtask -- --ignored"]
    fn a_real_store_filled_by_two_peers_tallies_exactly() {
        use std::time::Duration;

        use crate::cluster::server::HepServer;
        use crate::cluster::traffic::{Load, Sender};
        use crate::interop::proc::Ports;

        let bins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug");
        let dir = std::env::temp_dir().join(format!("xtask-stores-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports = Ports::default();
        let mut servers = Vec::new();
        let mut senders = Vec::new();
        // Two stores, each filled by its own peer with its own calls.
        for (n, calls) in [(1, 0..300), (2, 300..500)] {
            let port = ports.free().unwrap();
            let store = dir.join(format!("store{n}"));
            let server = HepServer::start(
                &format!("store{n}"),
                &bins.join("hep-server"),
                vec![
                    "--listen".into(),
                    format!("hep_tcp:127.0.0.1:{port}"),
                    "--output".into(),
                    format!("store:{}", store.display()),
                    "--http".into(),
                    "off".into(),
                ],
                &dir,
                &ports,
                Duration::from_secs(120),
            )
            .unwrap();
            let load = Load {
                calls,
                rate: 20_000,
                start_ts: 1_800_000_000,
            };
            let log = dir.join(format!("peer{n}.log"));
            let sender = Sender::start(&bins.join("hep-bench-peer"), "peer", port, load, &log);
            senders.push(sender.unwrap());
            servers.push((server, store));
        }
        for s in &mut senders {
            s.wait_done(Duration::from_secs(60)).unwrap();
        }
        let stores: Vec<PathBuf> = servers.iter().map(|(_, s)| s.clone()).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stores.iter().map(|s| count_rows(s).unwrap()).sum::<u64>() < 3500 {
            assert!(std::time::Instant::now() < deadline, "not stored in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        for (server, _) in &mut servers {
            server.stop();
        }
        // Calls 0..510: the last 10 were never sent.
        let t = tally(&stores, 0..510).unwrap();
        assert_eq!(t.per_store, [2100, 1400]);
        assert_eq!((t.expected, t.found, t.lost), (3570, 3500, 70));
        assert_eq!(
            (t.duplicates, t.foreign, t.split_calls, t.out_of_order),
            (0, 0, 0, 0)
        );
        assert_eq!(t.whole_calls, 500);
        assert_eq!(t.calls_per_store, [300, 200]);
        // One store read twice: every message twice, every call in two places.
        let twice = tally(&[stores[0].clone(), stores[0].clone()], 0..300).unwrap();
        assert_eq!(
            (twice.duplicates, twice.split_calls, twice.lost),
            (2100, 300, 0)
        );
        assert_eq!(twice.whole_calls, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn steps_are_read_from_method_and_status() {
        assert_eq!(step(Some("INVITE"), None), Some(0));
        assert_eq!(step(Some("INVITE"), Some(200)), Some(3));
        assert_eq!(step(Some("BYE"), Some(200)), Some(6));
        assert_eq!(step(Some("OPTIONS"), None), None);
        assert_eq!(step(None, Some(200)), None);
        assert_eq!(call_number("bench-42@10.0.0.1"), Some(42));
        assert_eq!(call_number("other-42@10.0.0.1"), None);
        assert_eq!(call_number("bench-x@10.0.0.1"), None);
    }

    #[test]
    fn a_whole_call_in_one_store_in_order_counts_once() {
        let mut rows: Vec<Row> = (0..STEPS).rev().map(|s| row(1, i64::from(s), s)).collect();
        let t = one(&mut rows);
        assert_eq!((t.found, t.lost, t.duplicates), (7, 0, 0));
        assert_eq!((t.split_calls, t.out_of_order, t.whole_calls), (0, 0, 1));
        assert_eq!(t.calls_per_store, [0, 1]);
    }

    #[test]
    fn lost_duplicated_split_and_reordered_messages_are_each_counted() {
        // Step 4 missing, step 2 twice (once in the other store).
        let mut rows: Vec<Row> = [0, 1, 2, 3, 5, 6]
            .iter()
            .map(|&s| row(0, i64::from(s) * 10, s))
            .collect();
        rows.push(row(1, 21, 2));
        let t = one(&mut rows);
        assert_eq!((t.found, t.lost, t.duplicates), (6, 1, 1));
        assert_eq!(t.split_calls, 1);
        assert_eq!(t.whole_calls, 0);
        // Capture order broken: the 180 captured before the 100.
        let mut rows: Vec<Row> = [0, 2, 1, 3, 4, 5, 6]
            .iter()
            .enumerate()
            .map(|(i, &s)| row(0, i as i64, s))
            .collect();
        let t = one(&mut rows);
        assert_eq!((t.lost, t.out_of_order, t.whole_calls), (0, 1, 0));
        // Receive times going back in capture order.
        let mut rows: Vec<Row> = (0..STEPS).map(|s| row(0, i64::from(s), s)).collect();
        rows[3].recv_ts = -1;
        assert_eq!(one(&mut rows).out_of_order, 1);
    }
}
