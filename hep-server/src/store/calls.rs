//! Calls: the newest calls matching a [`Query`], a page at a time, each with its
//! messages and the Call-IDs of its other legs (what the HTTP API's call list shows).
//!
//! The same filters as [`search`](super::search) ([`query`](super::query)'s terms, one
//! code path), in two steps:
//! 1. the Call-IDs: the rows matching (their id and Call-ID only, newest first) give the
//!    calls in the order of their newest matching message, at most [`Query::limit`]
//!    calls, reading at most [`MAX_SCAN_ROWS`] rows of each partition;
//! 2. their messages (within the query's time range and capture ids), at most
//!    [`MAX_PAGE_MESSAGES`], and the Call-IDs of the other legs of their chains
//!    ([`super::legs`]).
//!
//! When the filter is a list of calls alone, short enough for one page (a user's calls,
//! the calls whose text matched), the rows of step 2 also give each call's newest row:
//! one read instead of two (`page_of_known`), the same page.
//!
//! # Pages
//! [`Calls::next`] is the cursor of the next page: a row id, the calls whose newest
//! matching message is older. Every call with a matching message at or after the cursor
//! is on this page or an earlier one, and a later page leaves them out (one more indexed
//! query by Call-ID), so a call shows on one page only. A page may hold fewer calls than
//! the limit (a partition read to its bound, calls already shown) and still have a next.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rusqlite::types::Value;

use super::StoreError;
use super::legs;
use super::query::{
    Filter, Found, Query, Source, Stored, Term, Terms, check_dir, decode, filters, select, sources,
};
use super::readers::Readers;
use super::text::TextScan;

/// Rows (id and Call-ID) a call list reads in each partition to find its calls, at most.
pub const MAX_SCAN_ROWS: usize = 50_000;
/// Messages a page of calls reads back, at most (the newest; a call with more shows the
/// newest of them).
pub const MAX_PAGE_MESSAGES: usize = 20_000;

/// One call of a page.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call {
    /// Its Call-ID.
    pub call_id: String,
    /// Its messages in the query's scope, oldest first: those with its Call-ID, and those
    /// without one (a log line) that name it as correlation id.
    pub messages: Vec<Stored>,
    /// The other Call-IDs of its chain (linked by correlation id, `[correlation]
    /// headers` or `Session-ID`, either way, over any number of hops up to the bounds of
    /// [`super::legs`]), sorted: its number of legs is one more.
    pub legs: Vec<String>,
    /// Whether a bound of [`super::legs`] cut its chain: it may have more legs than
    /// `legs` lists.
    pub legs_cut: bool,
    /// The row id of its newest matching message (its place in the list).
    pub newest_row: i64,
}

/// A page of calls.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Calls {
    /// The calls, newest first (by their newest matching message).
    pub calls: Vec<Call>,
    /// The cursor of the next page, if there may be one: pass it as `before`.
    pub next: Option<i64>,
    /// Matching messages that could not be read back, each naming its file.
    pub damaged: Vec<StoreError>,
    /// What the `text` search read, when the query has one.
    pub text_scan: Option<TextScan>,
}

/// The calls of the store in `dir` matching `q` (at most `q.limit`), whose newest
/// matching message has a row id below `before` (a [`Calls::next`]) when given; see the
/// [module docs](self).
///
/// # Errors
/// The directory does not exist or holds a foreign file; a partition cannot be read.
pub fn calls(dir: &Path, q: &Query, before: Option<i64>) -> Result<Calls, StoreError> {
    Readers::one_shot().calls(dir, q, before)
}

impl Readers {
    /// [`calls()`], with the connections of these readers.
    ///
    /// # Errors
    /// As [`calls()`].
    pub fn calls(&self, dir: &Path, q: &Query, before: Option<i64>) -> Result<Calls, StoreError> {
        calls_in(self, dir, q, before)
    }
}

fn calls_in(
    readers: &Readers,
    dir: &Path,
    q: &Query,
    before: Option<i64>,
) -> Result<Calls, StoreError> {
    check_dir(dir)?;
    let partitions = sources(readers, dir, q)?;
    let Terms {
        matching,
        text_scan,
    } = filters(q, &partitions, before)?;
    let Some((filter, scope)) = matching else {
        return Ok(Calls {
            text_scan,
            ..Calls::default()
        });
    };
    let limit = q.limit.max(1);
    let Page { order, next, found } = match known_calls(&filter, limit) {
        Some(calls) => page_of_known(&partitions, calls, &scope, before)?,
        None => None,
    }
    .map_or_else(|| page(&partitions, &filter, &scope, before, limit), Ok)?;
    if order.is_empty() {
        return Ok(Calls {
            next,
            text_scan,
            ..Calls::default()
        });
    }

    // Their messages, and the messages that name them (the other legs).
    let ids: Vec<String> = order.iter().map(|(_, c)| c.clone()).collect();
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut found = match found {
        Some(mut read) => {
            read.retain(|f| names_one_of(f, &wanted));
            read
        }
        None => {
            let mut linked = Filter::default();
            linked.terms.push(Term::CallOrLinked(ids.clone()));
            select(&partitions, &linked.and(&scope), MAX_PAGE_MESSAGES)?
        }
    };
    // Read whole (not cut at the bound), these rows are the leg walk's first round: the
    // rows of these Call-IDs and of those naming them, in the scope. Each round reads
    // the calls' ranges again (a third of a user search, among calls captured together).
    let first_round = (found.len() < MAX_PAGE_MESSAGES).then(|| {
        legs::first_pairs(
            found
                .iter()
                .map(|f| (f.call_id.as_ref(), f.correlation_id.as_ref())),
        )
    });
    found.sort_by_key(|f| (f.id, f.partition));
    let mut own: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
    let mut damaged = Vec::new();
    for f in found {
        let owner = match (&f.call_id, &f.correlation_id) {
            (Some(c), _) if wanted.contains(c.as_str()) => c.clone(),
            (None, Some(l)) if wanted.contains(l.as_str()) => l.clone(),
            // A message of another leg naming this call: its chain's, below.
            _ => continue,
        };
        match decode(f, &partitions) {
            Ok(s) => own.entry(owner).or_default().push(s),
            Err(e) => damaged.push(e),
        }
    }
    let mut chains = legs::chains_after(&partitions, &scope, &ids, first_round)?;
    let calls = order
        .into_iter()
        .map(|(newest_row, call_id)| Call {
            messages: own.remove(&call_id).unwrap_or_default(),
            legs: chains.legs(&call_id),
            legs_cut: chains.is_cut(&call_id),
            call_id,
            newest_row,
        })
        .collect();
    Ok(Calls {
        calls,
        next,
        damaged,
        text_scan,
    })
}

/// The first step's answer: the calls of the page and the cursor of the next, with the
/// rows of their messages when they were read on the way.
struct Page {
    /// `(newest matching row id, Call-ID)`, newest first, at most the limit.
    order: Vec<(i64, String)>,
    next: Option<i64>,
    /// The rows of the calls' messages and of the messages naming them, in the scope,
    /// read whole ([`page_of_known`]); `None` when they are still to be read.
    found: Option<Vec<Found>>,
}

/// The calls of the page: the newest `limit` by their newest row matching `filter` in
/// `scope` below `before`, less those an earlier page showed.
fn page(
    partitions: &[Source],
    filter: &Filter,
    scope: &Filter,
    before: Option<i64>,
    limit: usize,
) -> Result<Page, StoreError> {
    let mut matching = filter.and(scope);
    if let Some(b) = before {
        matching.push_value("id < ?", Value::Integer(b));
    }
    let Scan { mut newest, floor } = scan(partitions, &matching, limit)?;
    // Calls shown on an earlier page: a matching message at or after the cursor.
    if let Some(b) = before
        && !newest.is_empty()
    {
        let mut earlier = filter.and(scope);
        earlier.push_value("id >= ?", Value::Integer(b));
        earlier
            .terms
            .push(Term::CallIn(newest.keys().cloned().collect()));
        for shown in distinct_calls(partitions, &earlier)? {
            newest.remove(&shown);
        }
    }
    // Only the calls known exactly; the rest come on a later page.
    let mut order: Vec<(i64, String)> = newest
        .into_iter()
        .filter(|(_, id)| floor.is_none_or(|f| *id >= f))
        .map(|(call, id)| (id, call))
        .collect();
    order.sort_unstable();
    order.reverse();
    let next = if order.len() > limit {
        order.truncate(limit);
        order.last().map(|(id, _)| *id)
    } else {
        floor
    };
    Ok(Page {
        order,
        next,
        found: None,
    })
}

/// The Call-IDs that `filter` is made of alone (a user's calls, a text's), when they fit
/// on one page.
fn known_calls(filter: &Filter, limit: usize) -> Option<&[String]> {
    match filter.terms.as_slice() {
        [Term::CallIn(calls)] if calls.len() <= limit => Some(calls),
        _ => None,
    }
}

/// The page of `calls` (all of them fit on it) in one read instead of two: the rows of
/// their messages and of the messages naming them, which the page needs next anyway,
/// give each call's newest row, and the calls an earlier page showed (a row at or after
/// `before`). `None` when those rows reach [`MAX_PAGE_MESSAGES`] (not all read): then
/// [`page`] finds the calls.
fn page_of_known(
    partitions: &[Source],
    calls: &[String],
    scope: &Filter,
    before: Option<i64>,
) -> Result<Option<Page>, StoreError> {
    let mut linked = Filter::default();
    linked.terms.push(Term::CallOrLinked(calls.to_vec()));
    let found = select(partitions, &linked.and(scope), MAX_PAGE_MESSAGES)?;
    if found.len() >= MAX_PAGE_MESSAGES {
        return Ok(None);
    }
    let known: BTreeSet<&str> = calls.iter().map(String::as_str).collect();
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    let mut shown: BTreeSet<&str> = BTreeSet::new();
    for f in &found {
        let Some(call) = f.call_id.as_deref().filter(|c| known.contains(c)) else {
            continue;
        };
        if before.is_some_and(|b| f.id >= b) {
            shown.insert(call);
        } else {
            let n = newest.entry(call).or_insert(f.id);
            *n = (*n).max(f.id);
        }
    }
    let mut order: Vec<(i64, String)> = newest
        .into_iter()
        .filter(|(call, _)| !shown.contains(call))
        .map(|(call, id)| (id, call.to_owned()))
        .collect();
    order.sort_unstable();
    order.reverse();
    Ok(Some(Page {
        order,
        next: None,
        found: Some(found),
    }))
}

/// Whether the row's Call-ID or correlation id is one of `wanted`.
fn names_one_of(f: &Found, wanted: &BTreeSet<&str>) -> bool {
    [&f.call_id, &f.correlation_id]
        .into_iter()
        .flatten()
        .any(|c| wanted.contains(c.as_str()))
}

/// What the first step found.
struct Scan {
    /// Each call's newest matching row id.
    newest: BTreeMap<String, i64>,
    /// When a partition was not read to its end (it gave `limit + 1` calls, or
    /// [`MAX_SCAN_ROWS`] rows): the highest row id where one stopped. Every row at or
    /// after it was read, so the calls whose newest row is there are known exactly.
    floor: Option<i64>,
}

/// The newest `limit + 1` calls (by their newest row matching `filter`) of each
/// partition, merged; partitions older than what is already kept are not read.
fn scan(partitions: &[Source], filter: &Filter, limit: usize) -> Result<Scan, StoreError> {
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    let mut floor: Option<i64> = None;
    for source in partitions {
        if floor.is_some_and(|f| source.newest_id < f) {
            break;
        }
        let p = &source.partition;
        let sql_err = |e| StoreError::sqlite(&p.path, e);
        let Some(conn) = source.open()? else {
            continue;
        };
        let version = conn.version;
        let (clause, params) = filter.sql(version);
        let joiner = if clause.is_empty() { " WHERE" } else { " AND" };
        let sql = format!(
            "SELECT id, call_id FROM messages{clause}{joiner} call_id IS NOT NULL ORDER BY id DESC"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(sql_err)?;
        let mut here: BTreeSet<String> = BTreeSet::new();
        let mut read = 0;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let id: i64 = r.get(0).map_err(sql_err)?;
            let call: String = r.get(1).map_err(sql_err)?;
            read += 1;
            if here.insert(call.clone()) {
                let n = newest.entry(call).or_insert(id);
                *n = (*n).max(id);
            }
            // Enough calls here, or read to the bound: the rows below are not read.
            if here.len() > limit || read >= MAX_SCAN_ROWS {
                floor = Some(floor.map_or(id, |f: i64| f.max(id)));
                break;
            }
        }
    }
    Ok(Scan { newest, floor })
}

/// The distinct Call-IDs of the rows matching `filter`, in every partition.
fn distinct_calls(partitions: &[Source], filter: &Filter) -> Result<Vec<String>, StoreError> {
    let mut out = BTreeSet::new();
    for source in partitions {
        let p = &source.partition;
        let sql_err = |e| StoreError::sqlite(&p.path, e);
        let Some(conn) = source.open()? else {
            continue;
        };
        let version = conn.version;
        let (clause, params) = filter.sql(version);
        let sql = format!("SELECT DISTINCT call_id FROM messages{clause}");
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            if let Some(c) = r.get::<_, Option<String>>(0).map_err(sql_err)? {
                out.insert(c);
            }
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{NINE, invite, sip, write, writer};
    use crate::testing::TempDir;

    /// The two ways to a page agree: for every cursor, the page of a user's calls read in
    /// one step has the calls (in order) and the next cursor of the page read in two.
    #[test]
    fn a_page_of_known_calls_is_the_page_the_two_steps_find() {
        let dir = TempDir::new("store-known-calls");
        let mut w = writer(dir.path());
        let mut batch = Vec::new();
        for i in 0..5u32 {
            let call = format!("call-{i}");
            batch.push(invite(NINE + 10 * i, &call, "alice", ""));
            batch.push(sip(NINE + 10 * i + 1, &call, "SIP/2.0 200 OK", "alice", ""));
            batch.push(invite(NINE + 10 * i + 2, &format!("other-{i}"), "bob", ""));
        }
        // A leg naming call-0, a message of call-3 late in the next hour's partition.
        batch.push(invite(NINE + 3, "leg-of-0", "carol", "X-CID: call-0\r\n"));
        batch.push(sip(
            NINE + 3_700,
            "call-3",
            "BYE sip:x SIP/2.0",
            "alice",
            "",
        ));
        assert_eq!(write(&mut w, &batch).stored, 17);
        drop(w);

        let readers = Readers::new();
        let q = Query {
            user: Some("alice".into()),
            limit: 10,
            ..Query::default()
        };
        let partitions = sources(&readers, dir.path(), &q).expect("lists");
        let (filter, scope) = filters(&q, &partitions, None)
            .expect("filters")
            .matching
            .expect("alice has calls");
        let calls = known_calls(&filter, q.limit).expect("five calls fit a page of ten");
        assert_eq!(calls.len(), 5);
        let two_steps = |before| page(&partitions, &filter, &scope, before, q.limit);
        let all = two_steps(None).expect("reads").order;
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].1, "call-3", "its BYE is the newest row");
        // Every cursor a page can give: each call's newest row, and past the oldest.
        let cursors = std::iter::once(None)
            .chain(all.iter().map(|(row, _)| Some(*row)))
            .chain([Some(all[4].0 - 1)]);
        for before in cursors {
            let one = page_of_known(&partitions, calls, &scope, before)
                .expect("reads")
                .expect("all rows fit");
            let two = two_steps(before).expect("reads");
            assert_eq!(one.order, two.order, "before {before:?}");
            assert_eq!(one.next, two.next, "before {before:?}");
            let rows = one.found.expect("read on the way");
            assert!(
                rows.iter()
                    .any(|f| f.call_id.as_deref() == Some("leg-of-0")),
                "the rows naming a call come with it"
            );
        }
    }

    #[test]
    fn more_calls_than_a_page_or_other_terms_take_the_two_steps() {
        let ids = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
        let mut one = Filter::default();
        one.terms.push(Term::CallIn(ids(3)));
        assert!(known_calls(&one, 3).is_some());
        assert!(known_calls(&one, 2).is_none(), "more than a page");
        let mut more = one.clone();
        more.push("method = ?", &["INVITE"]);
        assert!(known_calls(&more, 3).is_none(), "another term decides too");
        let mut linked = Filter::default();
        linked.terms.push(Term::CallOrLinked(ids(1)));
        assert!(known_calls(&linked, 3).is_none());
    }
}
