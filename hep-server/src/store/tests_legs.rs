//! Legs: chains of calls linked by `X-CID`, configured headers and `Session-ID`, found
//! whole from any leg by a search and by the call list, within their bounds.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::legs::{MAX_CHAIN_HOPS, MAX_LEGS};
use super::tests::{NINE, by_call, call_ids, invite, sip, write, writer};
use super::{Correlation, LinkHeader, Pattern, Query, Store, StoreConfig, StoreStats};
use crate::testing::TempDir;

/// The distinct Call-IDs a search of `id` brings, sorted.
fn chain_of(dir: &Path, id: &str) -> Vec<String> {
    let ids: BTreeSet<String> = call_ids(dir, &by_call(id)).into_iter().collect();
    ids.into_iter().collect()
}

/// The `legs` the call list gives `id`.
fn legs_listed(dir: &Path, id: &str) -> Vec<String> {
    listed(dir, id).legs
}

/// The call list's row of `id`.
fn listed(dir: &Path, id: &str) -> super::Call {
    let q = Query {
        call_id: Some(id.to_owned()),
        ..Query::default()
    };
    let page = super::calls(dir, &q, None).expect("lists");
    page.calls
        .into_iter()
        .find(|c| c.call_id == id)
        .unwrap_or_else(|| panic!("{id} is listed"))
}

/// Whether a search of `id` says its chain was cut.
fn search_cut(dir: &Path, id: &str) -> bool {
    super::search::search(dir, &by_call(id))
        .expect("searches")
        .legs_cut
}

fn writer_with(dir: &Path, correlation: Correlation) -> Store {
    let config = StoreConfig {
        max_age_hours: 0,
        max_size_mb: 0,
        min_free_mb: 0,
        correlation,
        ..StoreConfig::default()
    };
    Store::open(dir, config, Arc::new(StoreStats::new("store:test"))).expect("opens")
}

#[test]
fn a_chain_of_three_legs_is_found_whole_from_any_leg() {
    let dir = TempDir::new("legs-chain");
    let mut w = writer(dir.path());
    let batch = [
        invite(NINE, "leg-a", "alice", ""),
        // B2BUA 1 names A on B; B2BUA 2 names B (not A) on C.
        invite(NINE + 1, "leg-b", "alice", "X-CID: leg-a\r\n"),
        invite(NINE + 2, "leg-c", "alice", "X-CID: leg-b\r\n"),
        sip(
            NINE + 3,
            "leg-c",
            "SIP/2.0 200 OK",
            "alice",
            "X-CID: leg-b\r\n",
        ),
        invite(NINE + 4, "stranger", "alice", "X-CID: someone-else\r\n"),
    ];
    assert_eq!(write(&mut w, &batch).stored, 5);
    drop(w);
    for id in ["leg-a", "leg-b", "leg-c"] {
        assert_eq!(
            chain_of(dir.path(), id),
            ["leg-a", "leg-b", "leg-c"],
            "from {id}"
        );
    }
    assert_eq!(legs_listed(dir.path(), "leg-a"), ["leg-b", "leg-c"]);
    assert_eq!(legs_listed(dir.path(), "leg-b"), ["leg-a", "leg-c"]);
    assert_eq!(legs_listed(dir.path(), "leg-c"), ["leg-a", "leg-b"]);
    assert_eq!(legs_listed(dir.path(), "stranger"), ["someone-else"]);
    // Within the bounds: neither the list nor the search says the chain was cut.
    for id in ["leg-a", "leg-b", "leg-c"] {
        assert!(!listed(dir.path(), id).legs_cut, "{id}");
        assert!(!search_cut(dir.path(), id), "{id}");
    }
}

#[test]
fn a_configured_header_and_its_regex_name_the_a_leg() {
    let dir = TempDir::new("legs-header");
    let rules = Correlation {
        headers: vec![LinkHeader {
            name: "X-Orig-CID".into(),
            regex: Some(Pattern::new("^([^;]+)").expect("compiles")),
        }],
        session_id: false,
    };
    let mut w = writer_with(dir.path(), rules);
    let batch = [
        invite(NINE, "leg-a", "alice", ""),
        invite(NINE + 1, "leg-b", "alice", "x-orig-cid: leg-a;foo=1\r\n"),
        // X-CID is no longer one of the headers: not linked.
        invite(NINE + 2, "leg-x", "alice", "X-CID: leg-a\r\n"),
    ];
    assert_eq!(write(&mut w, &batch).stored, 3);
    drop(w);
    assert_eq!(legs_listed(dir.path(), "leg-a"), ["leg-b"]);
    assert_eq!(chain_of(dir.path(), "leg-b"), ["leg-a", "leg-b"]);
    assert_eq!(legs_listed(dir.path(), "leg-x"), Vec::<String>::new());
}

#[test]
fn legs_sharing_a_session_id_are_one_call_whichever_side_sent_it() {
    let dir = TempDir::new("legs-session");
    let mut w = writer(dir.path());
    let caller = "ab30317f1a784dc48ff824d0d3715d86";
    let callee = "0a755a9de7794ba387653f2099600ef2";
    let null = "00000000000000000000000000000000";
    let other = "ffffffffffffffffffffffffffffff01";
    let batch = [
        // The caller's INVITE on both legs: its UUID, remote null.
        invite(
            NINE,
            "leg-a",
            "alice",
            &format!("Session-ID: {caller};remote={null}\r\n"),
        ),
        invite(
            NINE + 1,
            "leg-b",
            "alice",
            &format!("Session-ID: {caller};remote={null}\r\n"),
        ),
        // The callee's answer (both UUIDs, the callee's the smaller) on leg B only.
        sip(
            NINE + 2,
            "leg-b",
            "SIP/2.0 200 OK",
            "alice",
            &format!("Session-ID: {callee};remote={caller}\r\n"),
        ),
        invite(
            NINE + 3,
            "other",
            "alice",
            &format!("Session-ID: {other}\r\n"),
        ),
    ];
    assert_eq!(write(&mut w, &batch).stored, 4);
    drop(w);
    assert_eq!(legs_listed(dir.path(), "leg-a"), ["leg-b"]);
    assert_eq!(legs_listed(dir.path(), "leg-b"), ["leg-a"]);
    assert_eq!(chain_of(dir.path(), "leg-a"), ["leg-a", "leg-b"]);
    assert_eq!(legs_listed(dir.path(), "other"), Vec::<String>::new());
}

#[test]
fn chains_stop_at_their_bounds() {
    let dir = TempDir::new("legs-bounds");
    let mut w = writer(dir.path());
    let mut batch = Vec::new();
    // A line of 20 calls, each naming the one before.
    batch.push(invite(NINE, "line-0", "alice", ""));
    for i in 1..20u32 {
        let x_cid = format!("X-CID: line-{}\r\n", i - 1);
        batch.push(invite(NINE + i, &format!("line-{i}"), "alice", &x_cid));
    }
    // A star: 30 calls naming one hub.
    batch.push(invite(NINE + 100, "hub", "bob", ""));
    for i in 0..30u32 {
        batch.push(invite(
            NINE + 101 + i,
            &format!("spoke-{i:02}"),
            "bob",
            "X-CID: hub\r\n",
        ));
    }
    assert_eq!(write(&mut w, &batch).stored, 51);
    drop(w);
    let line = chain_of(dir.path(), "line-0");
    assert_eq!(
        line.len(),
        MAX_CHAIN_HOPS + 1,
        "the call and the calls up to {MAX_CHAIN_HOPS} hops away: {line:?}"
    );
    assert!(line.contains(&format!("line-{MAX_CHAIN_HOPS}")), "{line:?}");
    let hub = legs_listed(dir.path(), "hub");
    assert_eq!(hub.len(), MAX_LEGS - 1, "{hub:?}");
    let hub_search = chain_of(dir.path(), "hub");
    assert!(hub_search.len() <= MAX_LEGS, "{hub_search:?}");
    // Both cuts are told, by the list and by the search.
    for id in ["line-0", "hub"] {
        let l = listed(dir.path(), id);
        assert!(l.legs_cut, "{id}: {:?}", l.legs);
        assert!(search_cut(dir.path(), id), "{id}");
    }
}
