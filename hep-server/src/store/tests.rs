//! The store across schema versions: files of versions 1 to 3 (left by earlier builds)
//! and version 4 searched side by side, appended to after a restart, Call-IDs of one
//! hash, a call's ranges over batches; the side file of HEP bytes through restarts,
//! crashes, retention and a foreign file in its place.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hep_proto::{HepMessage, HepVersion, ProtoType};
use hep_transport::{Received, RecvInfo, Transport};

use super::hepfile;
use super::partition::Partition;
use super::query::Query;
use super::schema::{self, Version, text_hash};
use super::search::search;
use super::{Store, StoreConfig, StoreStats, Written};
use crate::testing::TempDir;

/// A message as the store output takes it off its queue.
pub(super) type Queued = Arc<Received>;

/// 2026-11-26 09:00:00 UTC and 10:00:00 UTC: two hourly partitions.
pub(super) const NINE: u32 = 1_795_683_600;
const TEN: u32 = NINE + 3_600;

/// A SIP request or response of `call_id` captured at `ts`, with `extra` headers.
pub(super) fn sip(ts: u32, call_id: &str, first_line: &str, user: &str, extra: &str) -> Queued {
    let payload = format!(
        "{first_line}\r\nFrom: <sip:{user}@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    let message = HepMessage::builder()
        .src("10.0.0.1:5060".parse().expect("addr"))
        .dst("10.0.0.2:5060".parse().expect("addr"))
        .timestamp(ts, 0)
        .proto_type(ProtoType::Sip)
        .capture_id(7)
        .payload(payload.into_bytes())
        .build();
    let wire = message.encode(HepVersion::V3).expect("encodes");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let listener: SocketAddr = "127.0.0.1:5656".parse().expect("addr");
    Arc::new(Received::new(
        message,
        wire,
        RecvInfo::new(Transport::Tcp, peer, listener),
    ))
}

/// The message as a search gives it back: its wire bytes decoded.
fn as_received(m: &Queued) -> HepMessage {
    HepMessage::decode(m.wire.clone()).expect("decodes")
}

pub(super) fn invite(ts: u32, call_id: &str, user: &str, extra: &str) -> Queued {
    sip(
        ts,
        call_id,
        "INVITE sip:bob@example.com SIP/2.0",
        user,
        extra,
    )
}

/// `w` writes `batch` as if each message were received when it was captured: these tests
/// place messages in the partitions of their times.
pub(super) fn write(w: &mut Store, batch: &[Queued]) -> Written {
    w.write_received(batch, captured_at)
}

/// The capture time of `m`, us.
fn captured_at(m: &Queued) -> i64 {
    i64::from(m.message.ts_sec.expect("a HEPv3 time")) * 1_000_000
        + i64::from(m.message.ts_usec.unwrap_or(0))
}

pub(super) fn writer(dir: &Path) -> Store {
    let config = StoreConfig {
        max_age_hours: 0,
        max_size_mb: 0,
        min_free_mb: 0,
        ..StoreConfig::default()
    };
    Store::open(dir, config, Arc::new(StoreStats::new("store:test"))).expect("opens")
}

/// The Call-IDs of a search's result, in time order.
pub(super) fn call_ids(dir: &Path, q: &Query) -> Vec<String> {
    search(dir, q)
        .expect("searches")
        .messages
        .into_iter()
        .map(|s| s.call_id.unwrap_or_default())
        .collect()
}

pub(super) fn by_call(id: &str) -> Query {
    Query {
        call_id: Some(id.to_owned()),
        ..Query::default()
    }
}

fn user_version(path: &Path) -> u32 {
    let conn = schema::open_for_read(path).expect("opens");
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("reads")
}

/// A partition of `version` for the hour of `ts`, as an earlier build created it.
fn old_partition(dir: &Path, ts: u32, version: Version) -> Partition {
    let p = Partition::holding(dir, i64::from(ts), 3_600);
    let (conn, v) = schema::open_for_write_creating(&p.path, version).expect("creates");
    assert_eq!(v, version);
    drop(conn);
    p
}

/// A version-1 partition for the hour of `ts`.
fn version_1_partition(dir: &Path, ts: u32) -> Partition {
    old_partition(dir, ts, Version::V1)
}

#[test]
fn files_of_versions_1_to_7_are_searched_side_by_side() {
    let dir = TempDir::new("store-v1-to-v7");
    let eleven = TEN + 3_600;
    let twelve = eleven + 3_600;
    let thirteen = twelve + 3_600;
    let fourteen = thirteen + 3_600;
    let fifteen = fourteen + 3_600;
    let hours = [NINE, TEN, eleven, twelve, thirteen, fourteen, fifteen];
    let v1 = version_1_partition(dir.path(), NINE);
    let v2 = old_partition(dir.path(), TEN, Version::V2);
    let v3 = old_partition(dir.path(), eleven, Version::V3);
    let v4 = old_partition(dir.path(), twelve, Version::V4);
    let v5 = old_partition(dir.path(), thirteen, Version::V5);
    let v6 = old_partition(dir.path(), fourteen, Version::V6);
    let mut w = writer(dir.path());
    // One call across the seven hours; the other leg of a B2BUA in each (X-CID), and a
    // stranger in each.
    let mut batch = Vec::new();
    for (i, hour) in hours.into_iter().enumerate() {
        batch.push(invite(hour + 10, "call-a", "alice", ""));
        let leg = format!("leg-{i}");
        batch.push(invite(hour + 11, &leg, "carol", "X-CID: call-a\r\n"));
        let stranger = format!("stranger-{i}");
        batch.push(invite(hour + 12, &stranger, ["alice", "erin"][i % 2], ""));
    }
    assert_eq!(write(&mut w, &batch).stored, 21);
    drop(w);
    let v7 = Partition::holding(dir.path(), i64::from(fifteen), 3_600);
    let files = [&v1, &v2, &v3, &v4, &v5, &v6, &v7];
    let versions = files.map(|p| user_version(&p.path));
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5, 6, 7],
        "old files keep their schema, a new one gets this build's"
    );
    let side = files.map(|p| hepfile::path_of(&p.path).exists());
    assert_eq!(
        side,
        [false, false, true, true, true, true, true],
        "versions 3 to 7 keep the HEP bytes beside the partition"
    );

    let all = [
        "call-a", "leg-0", "call-a", "leg-1", "call-a", "leg-2", "call-a", "leg-3", "call-a",
        "leg-4", "call-a", "leg-5", "call-a", "leg-6",
    ];
    assert_eq!(call_ids(dir.path(), &by_call("call-a")), all);
    assert_eq!(
        call_ids(dir.path(), &by_call("leg-1")),
        all,
        "a leg brings the call it names and that call's other legs, from all files"
    );
    let alice = Query {
        user: Some("alice".into()),
        ..Query::default()
    };
    assert_eq!(
        call_ids(dir.path(), &alice),
        [
            "call-a",
            "stranger-0",
            "call-a",
            "call-a",
            "stranger-2",
            "call-a",
            "call-a",
            "stranger-4",
            "call-a",
            "call-a",
            "stranger-6"
        ]
    );
    // The bytes read back are the bytes sent, from each version.
    let found = search(dir.path(), &by_call("call-a")).expect("searches");
    assert!(found.damaged.is_empty());
    for (i, hour) in hours.into_iter().enumerate() {
        let sent = invite(hour + 10, "call-a", "alice", "");
        assert_eq!(
            found.messages[2 * i].message,
            as_received(&sent),
            "hour {i}"
        );
    }
}

#[test]
fn a_call_in_many_batches_among_other_calls_is_found_whole_and_alone() {
    let dir = TempDir::new("store-v4-ranges");
    let mut w = writer(dir.path());
    // Batch 1: call-a's messages interleaved with call-b's (call-a's range holds call-b's
    // rows too); batch 2: one more of each, and calls named like them only in part.
    let first: Vec<Queued> = (0..6u32)
        .map(|i| invite(TEN + i, ["call-a", "call-b"][i as usize % 2], "alice", ""))
        .collect();
    assert_eq!(write(&mut w, &first).stored, 6);
    let second = [
        invite(TEN + 10, "call-b", "alice", ""),
        invite(TEN + 11, "call-a", "alice", ""),
        invite(TEN + 12, "call-ab", "alice", ""),
    ];
    assert_eq!(write(&mut w, &second).stored, 3);
    drop(w);
    let p = Partition::holding(dir.path(), i64::from(TEN), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    let ranges: i64 = conn
        .query_row("SELECT count(*) FROM call_ranges", [], |r| r.get(0))
        .expect("counts");
    assert_eq!(ranges, 5, "one a call and batch: a and b twice, ab once");
    let found = search(dir.path(), &by_call("call-a")).expect("searches");
    let times: Vec<i64> = found
        .messages
        .iter()
        .map(|m| m.ts_usec / 1_000_000)
        .collect();
    let ten = i64::from(TEN);
    assert_eq!(
        times,
        [ten, ten + 2, ten + 4, ten + 11],
        "call-a's four, in time order"
    );
    assert_eq!(call_ids(dir.path(), &by_call("call-b")).len(), 4);
}

#[test]
fn a_restart_keeps_appending_version_1_rows_to_a_version_1_file() {
    let dir = TempDir::new("store-v1-restart");
    let old = version_1_partition(dir.path(), NINE);
    for (i, call) in ["first-run", "second-run"].into_iter().enumerate() {
        let mut w = writer(dir.path());
        let ts = NINE + 100 + i as u32;
        assert_eq!(write(&mut w, &[invite(ts, call, "alice", "")]).stored, 1);
    }
    assert_eq!(user_version(&old.path), 1);
    let conn = schema::open_for_read(&old.path).expect("opens");
    let columns: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'call_id_hash'",
            [],
            |r| r.get(0),
        )
        .expect("reads");
    assert_eq!(columns, 0, "no version-2 column was added to the old file");
    assert_eq!(call_ids(dir.path(), &by_call("first-run")), ["first-run"]);
    assert_eq!(call_ids(dir.path(), &by_call("second-run")), ["second-run"]);
}

#[test]
fn a_restart_keeps_appending_version_2_rows_to_a_version_2_file() {
    let dir = TempDir::new("store-v2-restart");
    let old = old_partition(dir.path(), NINE, Version::V2);
    for (i, call) in ["first-run", "second-run"].into_iter().enumerate() {
        let mut w = writer(dir.path());
        let ts = NINE + 100 + i as u32;
        assert_eq!(write(&mut w, &[invite(ts, call, "alice", "")]).stored, 1);
    }
    assert_eq!(user_version(&old.path), 2);
    assert!(
        !hepfile::path_of(&old.path).exists(),
        "no side file: the bytes stay in its rows"
    );
    assert_eq!(call_ids(dir.path(), &by_call("first-run")), ["first-run"]);
    assert_eq!(call_ids(dir.path(), &by_call("second-run")), ["second-run"]);
}

/// The side file of the partition of the hour of `ts`.
fn side_file(dir: &Path, ts: u32) -> std::path::PathBuf {
    hepfile::path_of(&Partition::holding(dir, i64::from(ts), 3_600).path)
}

fn side_len(dir: &Path, ts: u32) -> u64 {
    std::fs::metadata(side_file(dir, ts))
        .expect("the side file")
        .len()
}

#[test]
fn a_batch_appends_its_hep_bytes_to_the_side_file_and_the_rows_point_at_them() {
    let dir = TempDir::new("store-side-file");
    let batch = [
        invite(TEN + 1, "one", "alice", ""),
        invite(TEN + 2, "two", "bob", ""),
    ];
    let mut w = writer(dir.path());
    assert_eq!(write(&mut w, &batch).stored, 2);
    drop(w);
    let wire: Vec<u8> = batch.iter().flat_map(|m| m.wire.to_vec()).collect();
    let file = std::fs::read(side_file(dir.path(), TEN)).expect("reads");
    assert_eq!(&file[..8], b"HEPSBYTE", "the header");
    assert_eq!(
        &file[16..],
        &wire[..],
        "the messages as received, one after the other"
    );
    let p = Partition::holding(dir.path(), i64::from(TEN), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    let places: Vec<(i64, i64)> = conn
        .prepare("SELECT hep_offset, hep_len FROM messages ORDER BY id")
        .expect("prepares")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("reads")
        .map(|r| r.expect("a row"))
        .collect();
    let first = batch[0].wire.len() as i64;
    assert_eq!(
        places,
        [(16, first), (16 + first, batch[1].wire.len() as i64)]
    );
}

#[test]
fn a_restart_appends_after_the_bytes_already_in_the_side_file() {
    let dir = TempDir::new("store-side-restart");
    let mut w = writer(dir.path());
    assert_eq!(
        write(&mut w, &[invite(TEN + 1, "first-run", "alice", "")]).stored,
        1
    );
    drop(w);
    // A crash between the write and the commit leaves bytes no row points to.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(side_file(dir.path(), TEN))
        .expect("opens");
    std::io::Write::write_all(&mut file, b"bytes of a batch never committed").expect("writes");
    drop(file);
    let before = side_len(dir.path(), TEN);
    let second = invite(TEN + 2, "second-run", "alice", "");
    let mut w = writer(dir.path());
    assert_eq!(write(&mut w, std::slice::from_ref(&second)).stored, 1);
    drop(w);
    assert_eq!(
        side_len(dir.path(), TEN),
        before + second.wire.len() as u64,
        "appended after the existing bytes, none overwritten"
    );
    assert_eq!(call_ids(dir.path(), &by_call("first-run")), ["first-run"]);
    assert_eq!(call_ids(dir.path(), &by_call("second-run")), ["second-run"]);
}

#[test]
fn a_row_pointing_past_the_end_of_a_truncated_side_file_is_reported_and_the_others_are_found() {
    let dir = TempDir::new("store-side-truncated");
    let mut w = writer(dir.path());
    let batch = [
        invite(TEN + 1, "call-t", "alice", ""),
        invite(TEN + 2, "call-t", "alice", ""),
        invite(TEN + 3, "call-t", "alice", ""),
    ];
    assert_eq!(write(&mut w, &batch).stored, 3);
    drop(w);
    // A power cut lost the tail of the side file (the last message's bytes, half of them).
    let side = side_file(dir.path(), TEN);
    let cut = side_len(dir.path(), TEN) - batch[2].wire.len() as u64 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&side)
        .expect("opens")
        .set_len(cut)
        .expect("truncates");
    let found = search(dir.path(), &by_call("call-t")).expect("searches on");
    assert_eq!(
        found.messages.len(),
        2,
        "the messages whose bytes are there"
    );
    assert_eq!(found.messages[1].message, as_received(&batch[1]));
    assert_eq!(found.damaged.len(), 1);
    let report = found.damaged[0].to_string();
    assert!(
        report.contains(&side.display().to_string()) && report.contains("ends before them"),
        "{report}"
    );

    // The writer appends after the end the rows point into, not after the cut: a new
    // message never takes the place of a lost one.
    let mut w = writer(dir.path());
    assert_eq!(
        write(&mut w, &[invite(TEN + 4, "call-t", "alice", "")]).stored,
        1
    );
    drop(w);
    let found = search(dir.path(), &by_call("call-t")).expect("searches on");
    assert_eq!(found.messages.len(), 3);
    assert_eq!(found.damaged.len(), 1, "the lost message is still reported");
    assert_eq!(found.messages[2].ts_usec, i64::from(TEN + 4) * 1_000_000);
}

#[test]
fn a_foreign_side_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("store-side-foreign");
    let side = side_file(dir.path(), TEN);
    let contents = b"a file of another program, named like a side file".to_vec();
    std::fs::write(&side, &contents).expect("writes");
    let config = StoreConfig {
        max_age_hours: 0,
        ..StoreConfig::default()
    };
    let refused =
        Store::open(dir.path(), config, Arc::new(StoreStats::new("store:t"))).expect_err("refused");
    assert!(
        matches!(&refused, super::StoreError::Foreign { path, .. } if *path == side),
        "{refused}"
    );
    let searched = search(dir.path(), &Query::default()).expect_err("refused");
    assert!(
        matches!(searched, super::StoreError::Foreign { .. }),
        "{searched}"
    );
    assert_eq!(
        std::fs::read(&side).expect("reads"),
        contents,
        "never written"
    );
}

#[test]
fn retention_deletes_the_side_file_with_its_partition_and_counts_its_size() {
    let dir = TempDir::new("store-side-retention");
    let now = (crate::time::now_usec() / 1_000_000) as u32;
    // At the start of an hour, so that the 600 s of old messages fill one partition (an
    // hour that began more than 3,000 s before `old` would split them over two).
    let (old, new) = ((now - 3 * 86_400) / 3_600 * 3_600, now);
    // Messages of 2 KB: most of the old partition's bytes are in its side file.
    let pad = format!("X-Pad: {}\r\n", "p".repeat(2_000));
    let batch: Vec<Queued> = (0..600)
        .map(|i| invite(old + i, &format!("old-{i}"), "alice", &pad))
        .chain([invite(new, "new", "alice", "")])
        .collect();
    let mut w = writer(dir.path());
    assert_eq!(write(&mut w, &batch).stored, 601);
    drop(w);
    let p = Partition::holding(dir.path(), i64::from(old), 3_600);
    let side = hepfile::path_of(&p.path);
    let db_only = std::fs::metadata(&p.path).expect("the db").len();
    assert!(p.files().contains(&side));
    assert_eq!(p.bytes(), db_only + side_len(dir.path(), old));
    assert!(
        db_only < 1 << 20 && p.bytes() > 1 << 20,
        "{db_only} {}",
        p.bytes()
    );

    // A size limit of 1 MiB: only the side file's bytes put the old partition over it.
    let config = StoreConfig {
        max_age_hours: 0,
        max_size_mb: 1,
        min_free_mb: 0,
        ..StoreConfig::default()
    };
    let w = Store::open(dir.path(), config, Arc::new(StoreStats::new("store:t"))).expect("opens");
    drop(w);
    assert!(!p.path.exists() && !side.exists(), "both files deleted");
    assert!(
        side_file(dir.path(), new).exists(),
        "the newest partition is kept"
    );
    assert_eq!(call_ids(dir.path(), &Query::default()), ["new"]);
}

/// `m` as received by `transport` from `peer`.
fn from_peer(m: &Queued, transport: Transport, peer: &str) -> Queued {
    let listener: SocketAddr = "127.0.0.1:5656".parse().expect("addr");
    let peer: SocketAddr = peer.parse().expect("addr");
    Arc::new(Received::new(
        m.message.clone(),
        m.wire.clone(),
        RecvInfo::new(transport, peer, listener),
    ))
}

#[test]
fn each_message_keeps_its_own_receive_info_when_connections_interleave() {
    // The receive info is bound once per run of one connection's messages: runs of one,
    // two and three, alternating between a TCP agent and a UDP agent.
    let dir = TempDir::new("store-recv-runs");
    let agents = [
        (Transport::Tcp, "127.0.0.1:40000"),
        (Transport::Udp, "127.0.0.2:5060"),
    ];
    let pattern = [0, 1, 1, 0, 0, 0, 1, 0];
    let batch: Vec<Queued> = pattern
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let m = invite(TEN + i as u32, "runs", "alice", "");
            from_peer(&m, agents[a].0, agents[a].1)
        })
        .collect();
    let mut w = writer(dir.path());
    assert_eq!(write(&mut w, &batch).stored, pattern.len() as u64);
    drop(w);
    let found = search(dir.path(), &by_call("runs")).expect("searches");
    let got: Vec<(Transport, String)> = found
        .messages
        .iter()
        .map(|s| {
            let r = s.recv.as_ref().expect("receive info");
            (r.transport, r.peer.to_string())
        })
        .collect();
    let expected: Vec<(Transport, String)> = pattern
        .iter()
        .map(|&a| (agents[a].0, agents[a].1.to_owned()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn two_call_ids_of_one_hash_are_told_apart_by_their_text() {
    let dir = TempDir::new("store-collision");
    let mut w = writer(dir.path());
    assert_eq!(
        write(
            &mut w,
            &[
                invite(TEN + 1, "call-x", "alice", ""),
                invite(TEN + 2, "call-y", "bob", ""),
                invite(TEN + 3, "leg-z", "carol", "X-CID: call-y\r\n"),
            ]
        )
        .stored,
        3
    );
    drop(w);
    // Force what FNV-1a makes rare: call-y and the leg naming it get call-x's hash.
    let p = Partition::holding(dir.path(), i64::from(TEN), 3_600);
    let conn = rusqlite::Connection::open(&p.path).expect("opens");
    let x = text_hash("call-x");
    conn.execute(
        "UPDATE messages SET call_id_hash = ?1 WHERE call_id = 'call-y'",
        [x],
    )
    .expect("updates");
    conn.execute(
        "UPDATE messages SET correlation_hash = ?1 WHERE correlation_id = 'call-y'",
        [x],
    )
    .expect("updates");
    drop(conn);
    assert_eq!(
        call_ids(dir.path(), &by_call("call-x")),
        ["call-x"],
        "the rows of another Call-ID of the same hash are not taken"
    );
}

/// The query plan of a Call-ID search in the partition of `ts`, as its version asks it.
fn plan_in(dir: &Path, ts: u32, version: Version) -> String {
    let p = Partition::holding(dir, i64::from(ts), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    super::query::plan_of_call_search(&conn, version, "call-x")
}

#[test]
fn a_call_id_search_goes_through_the_call_ranges_and_the_hash_indexes() {
    let dir = TempDir::new("store-plan");
    old_partition(dir.path(), NINE, Version::V3);
    let mut w = writer(dir.path());
    assert_eq!(
        write(&mut w, &[invite(NINE + 1, "call-x", "alice", "")]).stored,
        1
    );
    assert_eq!(
        write(&mut w, &[invite(TEN + 1, "call-x", "alice", "")]).stored,
        1
    );
    drop(w);
    let v3 = plan_in(dir.path(), NINE, Version::V3);
    assert!(
        v3.contains("messages_call_id_hash") && v3.contains("messages_correlation_hash"),
        "{v3}"
    );
    assert!(!v3.contains("SCAN messages"), "{v3}");
    let v4 = plan_in(dir.path(), TEN, Version::V4);
    assert!(
        v4.contains("SEARCH r USING PRIMARY KEY (call_id_hash=?)")
            && v4.contains("SEARCH m USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")
            && v4.contains("messages_correlation_hash"),
        "{v4}"
    );
    assert!(!v4.contains("SCAN"), "{v4}");
}

/// Rows in the partition of the hour of `ts`.
fn rows_in(dir: &Path, ts: u32) -> i64 {
    let p = Partition::holding(dir, i64::from(ts), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .expect("counts")
}

#[test]
fn a_big_batch_across_partitions_keeps_every_message_of_every_partition() {
    // Calls of 5 messages at 10:00 and 11:00, with a late message of 09:00 now and then:
    // the batch's rows go into three partitions, each in the batch's order.
    let dir = TempDir::new("store-big-batch");
    let eleven = TEN + 3_600;
    let batch: Vec<Queued> = (0..6_000u32)
        .map(|i| {
            let ts = match i {
                _ if i % 1_000 == 999 => NINE + i / 100,
                _ if i < 3_500 => TEN + i / 10,
                _ => eleven + i / 10,
            };
            invite(ts, &format!("big-{}", i / 5), "alice", "")
        })
        .collect();
    let mut w = writer(dir.path());
    let written = write(&mut w, &batch);
    assert_eq!(written.stored, 6_000);
    assert_eq!(written.failed, 0);
    drop(w);
    assert_eq!(rows_in(dir.path(), NINE), 6);
    assert_eq!(rows_in(dir.path(), TEN), 3_500 - 3);
    assert_eq!(rows_in(dir.path(), eleven), 2_500 - 3);
    for call in ["big-0", "big-719", "big-720", "big-1100"] {
        assert_eq!(call_ids(dir.path(), &by_call(call)).len(), 5, "{call}");
    }
    assert_eq!(
        call_ids(dir.path(), &by_call("big-199")),
        ["big-199"; 5],
        "message 999 (late, 09:00) with its call's others"
    );
}

// Two clocks: the store's files follow receive time (the collector's clock); searches
// and records follow capture time (the agent's).

/// Now, whole seconds.
fn now_secs() -> u32 {
    (crate::time::now_usec() / 1_000_000) as u32
}

#[test]
fn a_capture_of_any_age_or_date_is_stored_in_the_hour_it_arrived_and_found_by_its_own_time() {
    let dir = TempDir::new("store-two-clocks");
    let now = now_secs();
    let week_ago = now - 8 * 86_400;
    let batch: Vec<Queued> = [week_ago, now, now + 86_400 * 365, u32::MAX]
        .iter()
        .enumerate()
        .map(|(i, &ts)| invite(ts, &format!("call-{i}"), "alice", ""))
        .collect();
    // A week's retention, as by default: the replayed call is younger than that here.
    let config = StoreConfig {
        max_size_mb: 0,
        min_free_mb: 0,
        ..StoreConfig::default()
    };
    let stats = Arc::new(StoreStats::new("store:test"));
    let mut w = Store::open(dir.path(), config, Arc::clone(&stats)).expect("opens");
    let received = i64::from(now) * 1_000_000;
    assert_eq!(w.write_received(&batch, |_| received).stored, 4);
    assert_eq!(stats.clock_skewed(), 3, "all but the call of now");
    drop(w);
    let files = super::partition::scan(dir.path()).expect("scans");
    let here = Partition::holding(dir.path(), i64::from(now), 3_600);
    assert_eq!(
        files,
        [here],
        "one partition: the hour they were received in"
    );

    let found = search(dir.path(), &by_call("call-0")).expect("searches");
    assert_eq!(found.messages.len(), 1);
    let m = &found.messages[0];
    assert_eq!(
        (m.ts_usec, m.recv_ts_usec),
        (i64::from(week_ago) * 1_000_000, received)
    );
    let around = |ts: u32| Query {
        since_usec: Some((i64::from(ts) - 1) * 1_000_000),
        until_usec: Some((i64::from(ts) + 1) * 1_000_000),
        ..Query::default()
    };
    assert_eq!(call_ids(dir.path(), &around(week_ago)), ["call-0"]);
    assert_eq!(call_ids(dir.path(), &around(now)), ["call-1"]);
    assert_eq!(call_ids(dir.path(), &around(u32::MAX)), ["call-3"]);
}

#[test]
fn a_limit_keeps_the_newest_captured_whichever_partition_received_them() {
    let dir = TempDir::new("store-limit-across");
    let mut w = writer(dir.path());
    let live = invite(TEN + 10, "live", "alice", "");
    // Received at ten; a week-old capture replayed at eleven, into the newer partition.
    let replayed = invite(TEN - 7 * 86_400, "replayed", "alice", "");
    let at = |secs: u32| move |_: &Queued| i64::from(secs) * 1_000_000;
    assert_eq!(w.write_received(&[live], at(TEN + 10)).stored, 1);
    assert_eq!(w.write_received(&[replayed], at(TEN + 3_700)).stored, 1);
    drop(w);
    assert_eq!(super::partition::scan(dir.path()).expect("scans").len(), 2);
    let newest = |limit| Query {
        limit,
        ..Query::default()
    };
    assert_eq!(call_ids(dir.path(), &newest(1)), ["live"]);
    assert_eq!(call_ids(dir.path(), &newest(2)), ["replayed", "live"]);
}

#[test]
fn a_partition_an_earlier_build_named_in_the_future_cannot_push_out_the_current_hour() {
    let dir = TempDir::new("store-future-name");
    let now = now_secs();
    // Version 4 named files after capture time: a forged date made one a year ahead,
    // written (as its files' times say) two hours ago.
    let next_year = now + 365 * 86_400;
    let forged = old_partition(dir.path(), next_year, Version::V4);
    let pad = format!("X-Pad: {}\r\n", "p".repeat(2_000));
    let padded = |ts: u32, name: &str| -> Vec<Queued> {
        (0..300)
            .map(|i| invite(ts, &format!("{name}-{i}"), "alice", &pad))
            .collect()
    };
    let mut w = writer(dir.path());
    assert_eq!(write(&mut w, &padded(next_year, "forged")).stored, 300);
    drop(w);
    let two_hours_ago =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(now) - 7_200);
    for f in forged.files().iter().filter(|f| f.exists()) {
        let file = std::fs::File::options().write(true).open(f).expect("opens");
        file.set_modified(two_hours_ago).expect("sets the time");
    }
    assert!(forged.received_until() <= i64::from(now) - 7_199);

    // The current hour, over the size limit together with the forged one.
    let config = StoreConfig {
        max_age_hours: 0,
        max_size_mb: 1,
        min_free_mb: 0,
        ..StoreConfig::default()
    };
    let stats = Arc::new(StoreStats::new("store:test"));
    let mut w = Store::open(dir.path(), config, stats).expect("opens");
    let received = i64::from(now) * 1_000_000;
    assert_eq!(
        w.write_received(&padded(now, "real"), |_| received).stored,
        300
    );
    drop(w);
    let left = super::partition::scan(dir.path()).expect("scans");
    assert_eq!(
        left,
        [Partition::holding(dir.path(), i64::from(now), 3_600)],
        "the forged partition went for size, the current hour stayed"
    );
    assert_eq!(call_ids(dir.path(), &by_call("real-7")), ["real-7"]);
}

#[test]
fn a_partitions_capture_times_are_read_from_the_ends_of_its_table_not_a_scan() {
    let dir = TempDir::new("store-extent-plan");
    let mut w = writer(dir.path());
    assert_eq!(
        write(&mut w, &[invite(TEN + 1, "call-x", "alice", "")]).stored,
        1
    );
    drop(w);
    let p = Partition::holding(dir.path(), i64::from(TEN), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", super::query::EXTENT))
        .expect("prepares")
        .query_map([], |r| r.get::<_, String>(3))
        .expect("explains")
        .map(|r| r.expect("a step"))
        .collect();
    // `SEARCH messages` for each end; `SELECT min(id), max(id)` would be `SCAN messages`.
    assert!(
        !plan.iter().any(|step| step.starts_with("SCAN messages")),
        "{plan:?}"
    );
    assert_eq!(
        plan.iter()
            .filter(|step| *step == "SEARCH messages")
            .count(),
        2,
        "{plan:?}"
    );
    let ends: (i64, i64) = conn
        .query_row(super::query::EXTENT, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("reads");
    assert_eq!(ends.0, ends.1, "one row: {ends:?}");
}

/// `m` as captured by agent `capture_id`.
fn of_agent(m: &Queued, capture_id: u32) -> Queued {
    let mut message = m.message.clone();
    message.capture_id = Some(capture_id);
    let wire = message.encode(HepVersion::V3).expect("encodes");
    Arc::new(Received::new(message, wire, m.info.clone()))
}

#[test]
fn capture_ids_bound_every_step_of_a_search_in_the_sql() {
    let dir = TempDir::new("store-capture-ids");
    let mut w = writer(dir.path());
    let batch = [
        of_agent(&invite(TEN + 1, "call-a", "alice", ""), 1),
        // The other leg, by agent 2: a tenant of agent 1 must not get it as a leg.
        of_agent(&invite(TEN + 2, "leg-b", "alice", "X-CID: call-a\r\n"), 2),
        of_agent(&invite(TEN + 3, "call-c", "alice", ""), 2),
    ];
    assert_eq!(write(&mut w, &batch).stored, 3);
    drop(w);
    let only = |ids: &[u32], q: Query| Query {
        capture_ids: Some(ids.to_vec()),
        ..q
    };
    assert_eq!(
        call_ids(dir.path(), &by_call("call-a")),
        ["call-a", "leg-b"]
    );
    assert_eq!(
        call_ids(dir.path(), &only(&[1], by_call("call-a"))),
        ["call-a"]
    );
    assert_eq!(
        call_ids(dir.path(), &only(&[2], by_call("call-a"))),
        ["leg-b"]
    );
    let alice = Query {
        user: Some("alice".into()),
        ..Query::default()
    };
    assert_eq!(call_ids(dir.path(), &only(&[1], alice.clone())), ["call-a"]);
    assert_eq!(
        call_ids(dir.path(), &only(&[], alice)),
        Vec::<String>::new()
    );

    let page = super::calls(dir.path(), &only(&[2], Query::default()), None).expect("lists");
    let listed: Vec<&str> = page.calls.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(listed, ["call-c", "leg-b"]);
}

#[test]
fn calls_come_newest_first_a_page_at_a_time_with_their_legs() {
    let dir = TempDir::new("store-calls");
    let mut w = writer(dir.path());
    let mut batch = Vec::new();
    for i in 0..5u32 {
        let call = format!("call-{i}");
        batch.push(invite(NINE + 10 * i, &call, "alice", ""));
        batch.push(sip(NINE + 10 * i + 1, &call, "SIP/2.0 200 OK", "alice", ""));
    }
    batch.push(invite(NINE + 2, "leg-of-0", "carol", "X-CID: call-0\r\n"));
    // The next hour, another partition.
    batch.push(invite(TEN + 5, "call-late", "alice", ""));
    assert_eq!(write(&mut w, &batch).stored, 12);
    drop(w);

    let q = Query {
        user: Some("alice".into()),
        limit: 2,
        ..Query::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = super::calls(dir.path(), &q, cursor).expect("lists");
        assert!(page.calls.len() <= 2);
        seen.extend(page.calls.iter().map(|c| c.call_id.clone()));
        if let Some(c) = page.calls.iter().find(|c| c.call_id == "call-0") {
            assert_eq!(c.legs, ["leg-of-0"], "its other leg is named");
            assert_eq!(c.messages.len(), 2, "its own messages only");
            let id = c.messages[0].id;
            let back = super::message(dir.path(), id, None)
                .expect("reads")
                .expect("found");
            assert_eq!(back, c.messages[0]);
            assert!(
                super::message(dir.path(), id, Some(&[9]))
                    .expect("reads")
                    .is_none()
            );
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "call-late",
            "call-4",
            "call-3",
            "call-2",
            "call-1",
            "call-0"
        ],
        "newest first, each once"
    );
}

/// `m` as sent by the node named `node` (chunk 0x0013).
fn of_node(m: &Queued, node: &str) -> Queued {
    let mut message = m.message.clone();
    message.node_name = Some(node.as_bytes().to_vec().into());
    let wire = message.encode(HepVersion::V3).expect("encodes");
    Arc::new(Received::new(message, wire, m.info.clone()))
}

#[test]
fn a_node_search_finds_its_messages_in_the_sql_and_none_in_files_before_version_6() {
    let dir = TempDir::new("store-node");
    // An hour of version 5 (no node column), written by the build before this one.
    let old = old_partition(dir.path(), NINE, Version::V5);
    drop(old);
    let mut w = writer(dir.path());
    let batch = [
        of_node(&invite(NINE + 1, "old-call", "alice", ""), "kamailio-1"),
        of_node(&invite(TEN + 1, "call-k1", "alice", ""), "kamailio-1"),
        of_node(&invite(TEN + 2, "call-k2", "alice", ""), "kamailio-2"),
        invite(TEN + 3, "call-none", "alice", ""),
    ];
    assert_eq!(write(&mut w, &batch).stored, 4);
    drop(w);
    let node = |n: &str| Query {
        node: Some(n.to_owned()),
        ..Query::default()
    };
    assert_eq!(call_ids(dir.path(), &node("kamailio-1")), ["call-k1"]);
    assert_eq!(call_ids(dir.path(), &node("kamailio-2")), ["call-k2"]);
    assert!(call_ids(dir.path(), &node("kamailio")).is_empty(), "exact");
    // With the other filters, and in the call list (the same terms).
    let both = Query {
        user: Some("alice".into()),
        ..node("kamailio-2")
    };
    assert_eq!(call_ids(dir.path(), &both), ["call-k2"]);
    let page = super::calls(dir.path(), &node("kamailio-1"), None).expect("lists");
    let listed: Vec<&str> = page.calls.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(listed, ["call-k1"]);
    let new = dir
        .path()
        .join(super::partition::file_name(i64::from(TEN), 3_600));
    assert_eq!(user_version(&new), schema::SCHEMA_VERSION);
    let conn = schema::open_for_read(&new).expect("opens");
    let stored: Option<String> = conn
        .query_row(
            "SELECT node FROM messages WHERE call_id = 'call-k2'",
            [],
            |r| r.get(0),
        )
        .expect("reads");
    assert_eq!(stored.as_deref(), Some("kamailio-2"));
}

#[test]
fn free_text_finds_a_call_by_a_header_only_its_text_holds_within_the_scope() {
    let dir = TempDir::new("store-text");
    let mut w = writer(dir.path());
    let batch = [
        of_agent(
            &invite(TEN + 1, "call-a", "alice", "X-Tenant: ACME-42\r\n"),
            1,
        ),
        of_agent(
            &invite(TEN + 2, "call-b", "alice", "X-Tenant: other\r\n"),
            1,
        ),
        // The same header, of another capture id: a token of capture id 1 must not find it.
        of_agent(
            &invite(TEN + 3, "call-c", "alice", "X-Tenant: acme-42\r\n"),
            2,
        ),
    ];
    // The 200 OK of call-a does not hold the text; the call is found by its INVITE and
    // comes whole.
    let ok = of_agent(&sip(TEN + 4, "call-a", "SIP/2.0 200 OK", "alice", ""), 1);
    assert_eq!(write(&mut w, &batch).stored, 3);
    assert_eq!(write(&mut w, &[ok]).stored, 1);
    drop(w);
    let text = |t: &str| Query {
        text: Some(t.to_owned()),
        ..Query::default()
    };
    // Case-insensitive, over the headers; no other field holds this value.
    let found = search(dir.path(), &text("x-tenant: Acme-42")).expect("searches");
    let ids: Vec<_> = found
        .messages
        .iter()
        .map(|s| s.call_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["call-a", "call-c", "call-a"]);
    let scan = found.text_scan.expect("a text search says what it read");
    assert!(!scan.truncated);
    assert_eq!(scan.scanned, 4, "every candidate read");
    // Within the capture ids (a token's), in the SQL of the candidates.
    let tenant = Query {
        capture_ids: Some(vec![1]),
        ..text("acme-42")
    };
    assert_eq!(call_ids(dir.path(), &tenant), ["call-a", "call-a"]);
    let page = super::calls(dir.path(), &tenant, None).expect("lists");
    let listed: Vec<&str> = page.calls.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(listed, ["call-a"]);
    assert_eq!(
        page.text_scan.map(|s| s.scanned),
        Some(3),
        "call-c never read"
    );
    // Nothing holds it: no call, and still what was read.
    let none = search(dir.path(), &text("X-Tenant: nobody")).expect("searches");
    assert!(none.messages.is_empty());
    assert_eq!(
        none.text_scan.map(|s| (s.scanned, s.truncated)),
        Some((4, false))
    );
}

#[test]
fn free_text_stops_at_its_bound_and_says_so() {
    let dir = TempDir::new("store-text-cap");
    let mut w = writer(dir.path());
    // 20 calls; the text is only in the oldest one.
    let batch: Vec<Queued> = (0..20u32)
        .map(|i| {
            let extra = if i == 0 { "Subject: needle\r\n" } else { "" };
            invite(TEN + i, &format!("call-{i:02}"), "alice", extra)
        })
        .collect();
    assert_eq!(write(&mut w, &batch).stored, 20);
    drop(w);
    let q = Query {
        text: Some("NEEDLE".into()),
        text_scan_limit: 10,
        ..Query::default()
    };
    let page = super::calls(dir.path(), &q, None).expect("lists");
    assert!(page.calls.is_empty(), "the oldest call is past the bound");
    let scan = page.text_scan.expect("reported");
    assert_eq!((scan.scanned, scan.limit, scan.truncated), (10, 10, true));
    // With the bound above the candidates, it is found, and the answer is whole.
    let q = Query {
        text_scan_limit: 20,
        ..q
    };
    let page = super::calls(dir.path(), &q, None).expect("lists");
    assert_eq!(page.calls.len(), 1);
    assert_eq!(page.calls[0].call_id, "call-00");
    assert_eq!(page.text_scan.map(|s| s.truncated), Some(false));
}

/// `m` as a cluster's consumer hands it on: received by an edge at `at` (Unix seconds).
fn from_edge(m: &Queued, at: u32) -> Queued {
    let mut r = (**m).clone();
    r.info = r
        .info
        .with_received_at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(at)));
    Arc::new(r)
}

#[test]
fn a_message_delivered_again_by_the_stream_is_stored_once_in_the_partition_of_its_edge_time() {
    let dir = TempDir::new("store-redelivery");
    let stats = Arc::new(StoreStats::new("store:test"));
    let config = StoreConfig {
        max_age_hours: 0,
        max_size_mb: 0,
        min_free_mb: 0,
        ..StoreConfig::default()
    };
    let mut w = Store::open(dir.path(), config, Arc::clone(&stats)).expect("opens");
    let call = [
        from_edge(&invite(NINE + 5, "redelivered@x", "alice", ""), NINE + 6),
        from_edge(&invite(NINE + 7, "other@x", "alice", ""), NINE + 8),
    ];
    let first = w.write_received(&call, |_| 0);
    assert_eq!((first.stored, first.duplicates), (2, 0));
    // A crash before the acknowledgement: the stream delivers both again, an hour later
    // by this node's clock (the `received` time the output passes is ignored for them).
    let again = w.write_received(&call, |_| i64::from(TEN + 100) * 1_000_000);
    assert_eq!((again.stored, again.duplicates), (0, 2));
    assert_eq!(stats.duplicates(), 2);
    // A new message from the same edge is stored; one from a listener is never checked.
    let new = from_edge(&invite(NINE + 9, "new@x", "bob", ""), NINE + 10);
    let listener_copy = invite(NINE + 5, "redelivered@x", "alice", "");
    let third = w.write_received(
        &[new, Arc::clone(&listener_copy), listener_copy],
        captured_at,
    );
    assert_eq!((third.stored, third.duplicates), (3, 0));
    drop(w);
    let ids = call_ids(dir.path(), &Query::default());
    assert_eq!(
        ids.iter().filter(|c| *c == "redelivered@x").count(),
        3,
        "{ids:?}"
    );
    assert_eq!(ids.iter().filter(|c| *c == "other@x").count(), 1);
    let partitions = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "db")
        })
        .count();
    assert_eq!(partitions, 1, "the edge's times are in the 09:00 partition");
}
