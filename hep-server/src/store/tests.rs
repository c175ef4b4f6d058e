//! The store across schema versions: files of version 1 (left by earlier builds) and
//! version 2 searched side by side, appended to after a restart, and Call-IDs of one hash.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hep_proto::{HepMessage, HepVersion, ProtoType};
use hep_transport::{Received, RecvInfo, Transport};

use super::partition::Partition;
use super::query::{Query, search};
use super::schema::{self, Version, text_hash};
use super::writer::{StoreStats, StoreWriter};
use crate::config::StoreConfig;
use crate::output::fanout::Queued;
use crate::output::spool::tests::TempDir;

/// 2026-11-26 09:00:00 UTC and 10:00:00 UTC: two hourly partitions.
const NINE: u32 = 1_795_683_600;
const TEN: u32 = NINE + 3_600;

/// A SIP request or response of `call_id` captured at `ts`, with `extra` headers.
fn sip(ts: u32, call_id: &str, first_line: &str, user: &str, extra: &str) -> Queued {
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

fn invite(ts: u32, call_id: &str, user: &str, extra: &str) -> Queued {
    sip(
        ts,
        call_id,
        "INVITE sip:bob@example.com SIP/2.0",
        user,
        extra,
    )
}

fn writer(dir: &Path) -> StoreWriter {
    let config = StoreConfig {
        max_age_hours: 0,
        max_size_mb: 0,
        min_free_mb: 0,
        ..StoreConfig::default()
    };
    StoreWriter::open(dir, config, Arc::new(StoreStats::new("store:test"))).expect("opens")
}

/// The Call-IDs of a search's result, in time order.
fn call_ids(dir: &Path, q: &Query) -> Vec<String> {
    search(dir, q)
        .expect("searches")
        .into_iter()
        .map(|s| s.call_id.unwrap_or_default())
        .collect()
}

fn by_call(id: &str) -> Query {
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

/// A version-1 partition for the hour of `ts`, as an earlier build created it.
fn version_1_partition(dir: &Path, ts: u32) -> Partition {
    let p = Partition::holding(dir, i64::from(ts), 3_600);
    let (conn, v) = schema::open_for_write_creating(&p.path, Version::V1).expect("creates");
    assert_eq!(v, Version::V1);
    drop(conn);
    p
}

#[test]
fn a_version_1_file_and_a_version_2_file_are_searched_side_by_side() {
    let dir = TempDir::new("store-v1-v2");
    let old = version_1_partition(dir.path(), NINE);
    let mut w = writer(dir.path());
    // One call across both hours; the other leg of a B2BUA in each (X-CID), and a
    // stranger in each.
    let written = w.write(&[
        invite(NINE + 10, "call-a", "alice", ""),
        invite(NINE + 11, "leg-b", "carol", "X-CID: call-a\r\n"),
        invite(NINE + 12, "stranger-1", "alice", ""),
        invite(TEN + 10, "call-a", "alice", ""),
        invite(TEN + 11, "leg-c", "dave", "X-CID: call-a\r\n"),
        invite(TEN + 12, "stranger-2", "erin", ""),
    ]);
    assert_eq!(written.stored, 6);
    drop(w);
    let new = Partition::holding(dir.path(), i64::from(TEN), 3_600);
    assert_eq!(user_version(&old.path), 1, "the old file keeps its schema");
    assert_eq!(user_version(&new.path), 2, "a new file gets this build's");

    assert_eq!(
        call_ids(dir.path(), &by_call("call-a")),
        ["call-a", "leg-b", "call-a", "leg-c"]
    );
    assert_eq!(
        call_ids(dir.path(), &by_call("leg-b")),
        ["call-a", "leg-b", "call-a", "leg-c"],
        "a leg brings the call it names and that call's other leg, from both files"
    );
    let alice = Query {
        user: Some("alice".into()),
        ..Query::default()
    };
    assert_eq!(
        call_ids(dir.path(), &alice),
        ["call-a", "stranger-1", "call-a"]
    );
}

#[test]
fn a_restart_keeps_appending_version_1_rows_to_a_version_1_file() {
    let dir = TempDir::new("store-v1-restart");
    let old = version_1_partition(dir.path(), NINE);
    for (i, call) in ["first-run", "second-run"].into_iter().enumerate() {
        let mut w = writer(dir.path());
        let ts = NINE + 100 + i as u32;
        assert_eq!(w.write(&[invite(ts, call, "alice", "")]).stored, 1);
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
fn two_call_ids_of_one_hash_are_told_apart_by_their_text() {
    let dir = TempDir::new("store-collision");
    let mut w = writer(dir.path());
    assert_eq!(
        w.write(&[
            invite(TEN + 1, "call-x", "alice", ""),
            invite(TEN + 2, "call-y", "bob", ""),
            invite(TEN + 3, "leg-z", "carol", "X-CID: call-y\r\n"),
        ])
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

#[test]
fn a_call_id_search_of_a_version_2_file_goes_through_the_hash_index() {
    let dir = TempDir::new("store-plan");
    let mut w = writer(dir.path());
    assert_eq!(w.write(&[invite(TEN + 1, "call-x", "alice", "")]).stored, 1);
    drop(w);
    let p = Partition::holding(dir.path(), i64::from(TEN), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    let plan = super::query::plan_of_call_search(&conn, Version::V2, "call-x");
    assert!(
        plan.contains("messages_call_id_hash") && plan.contains("messages_correlation_hash"),
        "{plan}"
    );
    assert!(!plan.contains("SCAN messages"), "{plan}");
}

/// Rows in the partition of the hour of `ts`.
fn rows_in(dir: &Path, ts: u32) -> i64 {
    let p = Partition::holding(dir, i64::from(ts), 3_600);
    let conn = schema::open_for_read(&p.path).expect("opens");
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .expect("counts")
}

#[test]
fn a_big_batch_built_on_two_threads_keeps_every_message_of_every_partition() {
    // Above `PARALLEL_ROWS`: its rows are built in two parts on two threads. Calls of 5
    // messages at 10:00 and 11:00, with a late message of 09:00 now and then.
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
    let written = w.write(&batch);
    assert_eq!(written.stored, 6_000);
    assert_eq!((written.failed, written.expired), (0, 0));
    drop(w);
    assert_eq!(rows_in(dir.path(), NINE), 6);
    assert_eq!(rows_in(dir.path(), TEN), 3_500 - 3);
    assert_eq!(rows_in(dir.path(), eleven), 2_500 - 3);
    // The first part's calls, the second part's, and one across the split (3,600 / 5 = 720).
    for call in ["big-0", "big-719", "big-720", "big-1100"] {
        assert_eq!(call_ids(dir.path(), &by_call(call)).len(), 5, "{call}");
    }
    assert_eq!(
        call_ids(dir.path(), &by_call("big-199")),
        ["big-199"; 5],
        "message 999 (late, 09:00) with its call's others"
    );
}
