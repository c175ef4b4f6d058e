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
    Filter, Query, Source, Stored, Term, Terms, check_dir, decode, filters, select, sources,
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
    let mut matching = filter.and(&scope);
    if let Some(b) = before {
        matching.push_value("id < ?", Value::Integer(b));
    }
    let limit = q.limit.max(1);
    let Scan { mut newest, floor } = scan(&partitions, &matching, limit)?;
    // Calls shown on an earlier page: a matching message at or after the cursor.
    if let Some(b) = before
        && !newest.is_empty()
    {
        let mut earlier = filter.and(&scope);
        earlier.push_value("id >= ?", Value::Integer(b));
        earlier
            .terms
            .push(Term::CallIn(newest.keys().cloned().collect()));
        for shown in distinct_calls(&partitions, &earlier)? {
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
    if order.is_empty() {
        return Ok(Calls {
            next,
            text_scan,
            ..Calls::default()
        });
    }

    // Their messages, and the messages that name them (the other legs).
    let ids: Vec<String> = order.iter().map(|(_, c)| c.clone()).collect();
    let mut linked = Filter::default();
    linked.terms.push(Term::CallOrLinked(ids.clone()));
    let mut found = select(&partitions, &linked.and(&scope), MAX_PAGE_MESSAGES)?;
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
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
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
