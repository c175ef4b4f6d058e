//! Searches: the messages matching a [`Query`], from every partition holding messages
//! captured in the query's time range, with the other legs of a call.
//!
//! A time range is capture time, the time the user sees in every record. Partitions
//! cover spans of receive time ([`super::partition`]) and may hold any capture time (a
//! replayed capture, an agent whose clock is off), so a search does not go by their
//! names: it reads each partition's smallest and largest row id (the row id is the
//! capture time, see [`schema::RowIds`]; two lookups at the ends of the table's B-tree)
//! and searches those whose capture times meet the range, newest first.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use hep_proto::HepMessage;
use hep_transport::{RecvInfo, Transport};
use rusqlite::types::Value;

use super::StoreError;
use super::hepfile;
use super::message_id::MessageId;
use super::partition::{self, Partition};
use super::readers::{Reader, Readers};
use super::schema::{self, Version, text_hash};
use super::text::{MAX_TEXT_SCAN, Next, TextScan, TextSearch};

/// What to look for; every filter given must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Messages of this call: its Call-ID, and the messages of every leg of its chain
    /// (linked by correlation id, `[correlation] headers` or `Session-ID`, either way;
    /// bounded, see [`super::legs`]).
    pub call_id: Option<String>,
    /// Messages whose From or To user is this.
    pub user: Option<String>,
    /// Requests of this method and their responses (`INVITE`, any case), or responses of
    /// this status code (`486`).
    pub method: Option<String>,
    /// Captured at or after, us since the epoch.
    pub since_usec: Option<i64>,
    /// Captured before, us since the epoch.
    pub until_usec: Option<i64>,
    /// At most this many messages matched (the newest), plus the linked legs' messages.
    /// (For [`calls`](super::calls()): at most this many calls.)
    pub limit: usize,
    /// Only messages of these capture ids (an HTTP token's tenants), legs included;
    /// `None`: every capture id. Applied in the SQL of every step.
    pub capture_ids: Option<Vec<u32>>,
    /// Messages whose HEP node name (chunk 0x0013) is this, exactly. Files written
    /// before schema version 6 keep no node name: nothing in them matches.
    pub node: Option<String>,
    /// The calls one of whose SIP messages holds this text (ASCII letters without
    /// case), among the messages the other filters match: read message by message, at
    /// most [`text_scan_limit`](Self::text_scan_limit); see [`super::text`].
    pub text: Option<String>,
    /// Messages a `text` search reads at most ([`MAX_TEXT_SCAN`] by default).
    pub text_scan_limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            call_id: None,
            user: None,
            method: None,
            since_usec: None,
            until_usec: None,
            limit: 1_000,
            capture_ids: None,
            node: None,
            text: None,
            text_scan_limit: MAX_TEXT_SCAN,
        }
    }
}

/// A message read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The message, decoded again from the HEP bytes kept.
    pub message: HepMessage,
    /// How it was received.
    pub recv: Option<RecvInfo>,
    /// Capture time (receive time for HEPv1), us since the epoch.
    pub ts_usec: i64,
    /// Receive time, us since the epoch.
    pub recv_ts_usec: i64,
    /// Its Call-ID, if SIP.
    pub call_id: Option<String>,
    /// The call it is linked to: its HEP correlation id or `X-CID` header, if any.
    pub correlation_id: Option<String>,
    /// Where it is in the store: an id unique across partitions.
    pub id: MessageId,
}

/// What a search found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Results {
    /// The messages matching, oldest first.
    pub messages: Vec<Stored>,
    /// Matching messages that could not be read back, each naming its file and what is
    /// wrong (bytes lost in a crash, a damaged file); the search went on without them.
    pub damaged: Vec<StoreError>,
    /// What the `text` search read, when the query has one.
    pub text_scan: Option<TextScan>,
    /// For a `call_id` search: whether a bound of [`super::legs`] cut the call's chain
    /// (it may have more legs than the messages found show).
    pub legs_cut: bool,
}

/// One row as read, before decoding.
pub(super) struct Found {
    pub(super) partition: usize,
    pub(super) id: i64,
    ts: i64,
    recv_ts: i64,
    transport: Option<String>,
    peer: Option<String>,
    listener: Option<String>,
    /// The HEP bytes, or why they could not be read.
    hep: Result<Vec<u8>, StoreError>,
    pub(super) call_id: Option<String>,
    pub(super) correlation_id: Option<String>,
}

/// The columns a search reads, in a file of `version`: the HEP bytes last (versions 3 to 5:
/// their place in the side file).
const fn columns(version: Version) -> &'static str {
    if version.has_side_file() {
        "id, ts, recv_ts, transport, peer, listener, call_id, correlation_id, hep_offset, hep_len"
    } else {
        "id, ts, recv_ts, transport, peer, listener, call_id, correlation_id, hep"
    }
}

/// Refuses a store directory that does not exist.
pub(super) fn check_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(StoreError::foreign(
        dir,
        "no such store directory (`hep-server run` writes one with the output \
         store:DIR; the default is hep-store in the working directory)",
    ))
}

/// What [`filters`] gives.
pub(super) struct Terms {
    /// What a message must match and the scope every step stays in; `None` when no
    /// message can match.
    pub(super) matching: Option<(Filter, Filter)>,
    /// What the text search read, when `q` has one.
    pub(super) text_scan: Option<TextScan>,
}

/// The terms of `q`: what a message must match (Call-ID, method, node, user, text) and
/// the scope every step of a search stays in (time range, capture ids); no match at all
/// for a user who made no call or a text no message holds. The text search's candidates
/// stay below row id `text_before` when given (a call list's cursor).
pub(super) fn filters(
    q: &Query,
    partitions: &[Source],
    text_before: Option<i64>,
) -> Result<Terms, StoreError> {
    let none = |text_scan| Terms {
        matching: None,
        text_scan,
    };
    let mut filter = Filter::default();
    if let Some(id) = &q.call_id {
        filter.terms.push(Term::CallOrLinked(vec![id.clone()]));
    }
    if let Some(m) = &q.method {
        match m.parse::<u16>() {
            Ok(code) => filter.push_value("status = ?", Value::Integer(code.into())),
            Err(_) => filter.push("method = ?", &[&m.to_ascii_uppercase()]),
        }
    }
    if let Some(n) = &q.node {
        filter.terms.push(Term::Node(n.clone()));
    }
    let mut time = Filter::default();
    // The row id is the capture time (see `schema::RowIds`): a range of the table itself,
    // and `ts` for the exact bounds (ids of a burst in one microsecond spill over).
    if let Some(s) = q.since_usec {
        time.push_value(
            "id >= ?",
            Value::Integer(s.saturating_mul(schema::IDS_PER_USEC)),
        );
        time.push_value("ts >= ?", Value::Integer(s));
    }
    if let Some(u) = q.until_usec {
        let spill = u.saturating_add(1_000_000);
        time.push_value(
            "id < ?",
            Value::Integer(spill.saturating_mul(schema::IDS_PER_USEC)),
        );
        time.push_value("ts < ?", Value::Integer(u));
    }
    if let Some(ids) = &q.capture_ids {
        time.terms.push(capture_ids_term(ids));
    }
    if let Some(u) = &q.user {
        // Users are indexed on the requests that start a dialog (or stand alone), see
        // `schema`: first the calls, then their messages.
        let calls = calls_of_user(partitions, u, &time)?;
        if calls.is_empty() {
            return Ok(none(None));
        }
        filter.terms.push(Term::CallIn(calls));
    }
    let mut text_scan = None;
    if let Some(text) = &q.text {
        // Last: its candidates are what every other term matches.
        let mut candidates = filter.and(&time);
        if let Some(b) = text_before {
            candidates.push_value("id < ?", Value::Integer(b));
        }
        let (calls, scan) = calls_with_text(partitions, &candidates, text, q.text_scan_limit)?;
        text_scan = Some(scan);
        if calls.is_empty() {
            return Ok(none(text_scan));
        }
        filter.terms.push(Term::CallIn(calls));
    }
    Ok(Terms {
        matching: Some((filter, time)),
        text_scan,
    })
}

/// `capture_id IN (...)`; none given matches nothing.
fn capture_ids_term(ids: &[u32]) -> Term {
    if ids.is_empty() {
        return Term::Sql("0 = 1".to_owned(), Vec::new());
    }
    Term::Sql(
        format!("capture_id IN ({})", marks(ids.len())),
        ids.iter().map(|&i| Value::Integer(i.into())).collect(),
    )
}

/// The message `id` of the store in `dir`, if it exists (and has one of `capture_ids`,
/// when given).
///
/// # Errors
/// The directory does not exist; the partition cannot be read; the message's bytes
/// cannot be read back (a damaged file).
pub fn message(
    dir: &Path,
    id: MessageId,
    capture_ids: Option<&[u32]>,
) -> Result<Option<Stored>, StoreError> {
    Readers::one_shot().message(dir, id, capture_ids)
}

impl Readers {
    /// [`message`], with the connections of these readers.
    ///
    /// # Errors
    /// As [`message`].
    pub fn message(
        &self,
        dir: &Path,
        id: MessageId,
        capture_ids: Option<&[u32]>,
    ) -> Result<Option<Stored>, StoreError> {
        message_in(self, dir, id, capture_ids)
    }
}

fn message_in(
    readers: &Readers,
    dir: &Path,
    id: MessageId,
    capture_ids: Option<&[u32]>,
) -> Result<Option<Stored>, StoreError> {
    check_dir(dir)?;
    let path = dir.join(partition::file_name(id.partition_start, id.partition_span));
    if !path.is_file() {
        return Ok(None);
    }
    let source = Source {
        partition: Partition {
            start: id.partition_start,
            span: id.partition_span,
            path,
        },
        newest_id: i64::MAX,
        readers: readers.clone(),
    };
    let mut filter = Filter::default();
    filter.push_value("id = ?", Value::Integer(id.row));
    if let Some(ids) = capture_ids {
        filter.terms.push(capture_ids_term(ids));
    }
    let sources = [source];
    let found = select(&sources, &filter, 1)?;
    found
        .into_iter()
        .next()
        .map(|f| decode(f, &sources))
        .transpose()
}

/// A partition to search.
pub(super) struct Source {
    pub(super) partition: Partition,
    /// The largest row id it holds: its newest capture time (see [`schema::RowIds`]).
    pub(super) newest_id: i64,
    /// Where its connections come from.
    readers: Readers,
}

impl Source {
    /// A connection to it (see [`Readers`]); `None` for a file created but never
    /// written (no table yet).
    pub(super) fn open(&self) -> Result<Option<Reader>, StoreError> {
        self.readers.open(&self.partition)
    }
}

/// How far the row ids of a burst of messages spill past their capture time (see
/// [`schema::RowIds`]), us: a generous bound.
const ID_SPILL_USEC: i64 = 1_000_000;

/// The smallest and largest row id of a partition. Two subqueries: SQLite reads the ends
/// of the table's B-tree for a lone `min()` or `max()`, but `SELECT min(id), max(id)`
/// scans every row (700 ms among 10 million).
pub(crate) const EXTENT: &str =
    "SELECT (SELECT min(id) FROM messages), (SELECT max(id) FROM messages)";

/// The partitions of `dir` holding messages captured in `q`'s time range, the newest
/// capture first. Found by their smallest and largest row ids, not their names (which
/// are receive time, or in files of versions 1 to 4 the capture time of most of their
/// messages).
pub(super) fn sources(readers: &Readers, dir: &Path, q: &Query) -> Result<Vec<Source>, StoreError> {
    let mut sources = Vec::new();
    let listed = partition::scan(dir)?;
    readers.keep_only(&listed);
    for partition in listed {
        let Some(conn) = readers.open(&partition)? else {
            continue;
        };
        let (first, last) = conn
            .prepare_cached(EXTENT)
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
                })
            })
            .map_err(|e| StoreError::sqlite(&partition.path, e))?;
        drop(conn);
        let (Some(first), Some(last)) = (first, last) else {
            continue; // No rows.
        };
        // A row's capture time is at most its id's, and at most the spill before it.
        let earliest = (first / schema::IDS_PER_USEC).saturating_sub(ID_SPILL_USEC);
        let latest = last / schema::IDS_PER_USEC;
        if q.since_usec.is_some_and(|s| latest < s) || q.until_usec.is_some_and(|u| earliest >= u) {
            continue;
        }
        sources.push(Source {
            partition,
            newest_id: last,
            readers: readers.clone(),
        });
    }
    sources.sort_by_key(|s| std::cmp::Reverse(s.newest_id));
    Ok(sources)
}

/// A `WHERE` clause: terms that must all match, written in the terms of each file's
/// schema version.
#[derive(Debug, Default, Clone)]
pub(super) struct Filter {
    pub(super) terms: Vec<Term>,
}

/// One term of a [`Filter`].
#[derive(Debug, Clone)]
pub(super) enum Term {
    /// The same SQL in every version, and its parameters.
    Sql(String, Vec<Value>),
    /// Messages whose Call-ID is one of these.
    CallIn(Vec<String>),
    /// Messages whose Call-ID or correlation id is one of these.
    CallOrLinked(Vec<String>),
    /// Messages of this node name (none in files before version 6, which keep none).
    Node(String),
}

impl Term {
    /// Appends the term's SQL to `sql` and its parameters to `params`, for a file of
    /// `version`. Versions 2 to 4 ask for the hash (its index; for a Call-ID in version
    /// 4, its call ranges) and the text (the hash of another value may be equal: the
    /// text decides).
    fn write(&self, version: Version, sql: &mut String, params: &mut Vec<Value>) {
        let texts = |ids: &[String], params: &mut Vec<Value>| {
            params.extend(ids.iter().map(|i| Value::Text(i.clone())));
            marks(ids.len())
        };
        let hashes = |ids: &[String], params: &mut Vec<Value>| {
            params.extend(ids.iter().map(|i| Value::Integer(text_hash(i))));
            marks(ids.len())
        };
        match (self, version) {
            (Self::Sql(term, values), _) => {
                sql.push_str(term);
                params.extend(values.iter().cloned());
            }
            (Self::Node(name), v) if v.has_node() => {
                sql.push_str("node = ?");
                params.push(Value::Text(name.clone()));
            }
            (Self::Node(_), _) => sql.push_str("0 = 1"),
            (Self::CallIn(ids), Version::V1) => {
                let m = texts(ids, params);
                sql.push_str(&format!("call_id IN ({m})"));
            }
            (Self::CallIn(ids), Version::V2 | Version::V3) => {
                let h = hashes(ids, params);
                let t = texts(ids, params);
                sql.push_str(&format!("call_id_hash IN ({h}) AND call_id IN ({t})"));
            }
            (Self::CallIn(ids), v) => {
                let r = in_call_ranges(v, &hashes(ids, params));
                let t = texts(ids, params);
                sql.push_str(&format!("{r} AND call_id IN ({t})"));
            }
            (Self::CallOrLinked(ids), Version::V1) => {
                let c = texts(ids, params);
                let l = texts(ids, params);
                sql.push_str(&format!("(call_id IN ({c}) OR correlation_id IN ({l}))"));
            }
            (Self::CallOrLinked(ids), Version::V2 | Version::V3) => {
                let ch = hashes(ids, params);
                let c = texts(ids, params);
                let lh = hashes(ids, params);
                let l = texts(ids, params);
                sql.push_str(&format!(
                    "((call_id_hash IN ({ch}) AND call_id IN ({c})) \
                     OR (correlation_hash IN ({lh}) AND correlation_id IN ({l})))"
                ));
            }
            (Self::CallOrLinked(ids), v) => {
                let r = in_call_ranges(v, &hashes(ids, params));
                let c = texts(ids, params);
                let lh = hashes(ids, params);
                let l = texts(ids, params);
                sql.push_str(&format!(
                    "(({r} AND call_id IN ({c})) \
                     OR (correlation_hash IN ({lh}) AND correlation_id IN ({l})))"
                ));
            }
        }
    }
}

/// `id IN (...)`: the rows of the call ranges `call_ranges` holds for the Call-ID hashes
/// of the parameters `hash_marks` (`?, ?`), in a file of `version` (4 on); the caller
/// compares the text. From version 7 a range lists its rows, looked up by id; before, the
/// rows between its first and last with one of those hashes are read.
fn in_call_ranges(version: Version, hash_marks: &str) -> String {
    if version.has_call_rows() {
        format!(
            "id IN (SELECT r.first_id + j.value FROM call_ranges r \
             JOIN call_rows c ON c.first_id = r.first_id, json_each(c.offsets) j \
             WHERE r.call_id_hash IN ({hash_marks}))"
        )
    } else {
        format!(
            "id IN (SELECT m.id FROM call_ranges r JOIN messages m \
             ON m.id BETWEEN r.first_id AND r.last_id AND m.call_id_hash = r.call_id_hash \
             WHERE r.call_id_hash IN ({hash_marks}))"
        )
    }
}

/// `?, ?, ?` for `n` parameters.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Filter {
    pub(super) fn push(&mut self, term: &str, params: &[&str]) {
        let values = params
            .iter()
            .map(|p| Value::Text((*p).to_owned()))
            .collect();
        self.terms.push(Term::Sql(term.to_owned(), values));
    }

    pub(super) fn push_value(&mut self, term: &str, v: Value) {
        self.terms.push(Term::Sql(term.to_owned(), vec![v]));
    }

    pub(super) fn and(&self, other: &Self) -> Self {
        let mut f = self.clone();
        f.terms.extend(other.terms.iter().cloned());
        f
    }

    /// ` WHERE ...` (or nothing) and its parameters, for a file of `version`.
    pub(super) fn sql(&self, version: Version) -> (String, Vec<Value>) {
        let mut sql = String::new();
        let mut params = Vec::new();
        for (i, t) in self.terms.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            t.write(version, &mut sql, &mut params);
        }
        (sql, params)
    }
}

/// A user search looks at this many calls at most (the newest), which bounds its memory
/// and keeps its `IN` list under SQLite's limit of variables.
pub const MAX_USER_CALLS: usize = 10_000;

/// The Call-IDs of the dialogs (and lone requests) whose initial request has `user` as
/// From or To user, newest first, at most [`MAX_USER_CALLS`].
fn calls_of_user(
    partitions: &[Source],
    user: &str,
    time: &Filter,
) -> Result<Vec<String>, StoreError> {
    let mut calls = Vec::new();
    let mut seen = BTreeSet::new();
    for source in partitions {
        let p = &source.partition;
        let sql_err = |e| StoreError::sqlite(&p.path, e);
        let Some(conn) = source.open()? else {
            continue;
        };
        let version = conn.version;
        // The same terms as the partial indexes' `WHERE`, so that SQLite uses them.
        let mut from = Filter::default();
        from.push(
            "status IS NULL AND to_tag IS NULL AND from_user = ?",
            &[user],
        );
        let mut to = Filter::default();
        to.push("status IS NULL AND to_tag IS NULL AND to_user = ?", &[user]);
        let (from, mut params) = from.and(time).sql(version);
        let (to, to_params) = to.and(time).sql(version);
        params.extend(to_params);
        let sql = format!(
            "SELECT id, call_id FROM messages{from} UNION ALL SELECT id, call_id FROM messages{to} \
             ORDER BY 1 DESC"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let Some(call_id) = r.get::<_, Option<String>>(1).map_err(sql_err)? else {
                continue;
            };
            if seen.insert(call_id.clone()) {
                calls.push(call_id);
                if calls.len() >= MAX_USER_CALLS {
                    return Ok(calls);
                }
            }
        }
    }
    Ok(calls)
}

/// The Call-IDs of the calls with a message matching `filter` whose text holds `text`,
/// newest first, reading at most `limit` messages; see [`super::text`].
fn calls_with_text(
    partitions: &[Source],
    filter: &Filter,
    text: &str,
    limit: usize,
) -> Result<(Vec<String>, TextScan), StoreError> {
    let mut search = TextSearch::new(text, limit);
    for source in partitions {
        let p = &source.partition;
        let sql_err = |e| StoreError::sqlite(&p.path, e);
        let Some(conn) = source.open()? else {
            continue;
        };
        let version = conn.version;
        let (clause, params) = filter.sql(version);
        let joiner = if clause.is_empty() { " WHERE" } else { " AND" };
        let bytes = if version.has_side_file() {
            "hep_offset, hep_len"
        } else {
            "hep"
        };
        let sql = format!(
            "SELECT call_id, {bytes} FROM messages{clause}{joiner} call_id IS NOT NULL \
             ORDER BY id DESC"
        );
        let side = side_file(&conn, version, p)?;
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            let call_id: String = r.get(0).map_err(sql_err)?;
            match search.next(&call_id) {
                Next::Stop => return Ok(search.finish()),
                Next::Skip => continue,
                Next::Read => {}
            }
            let hep = match &side {
                Some(side) => side.read(r.get(1).map_err(sql_err)?, r.get(2).map_err(sql_err)?),
                None => r.get(1).map_err(sql_err),
            };
            // Bytes lost or damaged: no text to look at (a search reports them).
            if let Ok(hep) = hep {
                search.look(call_id, hep);
            }
        }
    }
    Ok(search.finish())
}

/// The reader of a partition's side file (versions 3 on), knowing the ranges a crash
/// lost.
fn side_file(
    conn: &rusqlite::Connection,
    version: Version,
    p: &Partition,
) -> Result<Option<hepfile::Reader>, StoreError> {
    if !version.has_side_file() {
        return Ok(None);
    }
    let lost = conn
        .prepare_cached(schema::HEP_LOST)
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                .map(|r| r.map(|(from, to)| (from.max(0) as u64, to.max(0) as u64)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| StoreError::sqlite(&p.path, e))?;
    Ok(Some(hepfile::Reader::open(&p.path, lost)?))
}

/// The newest `limit` rows matching `filter` (newest first), from `partitions` (in the
/// order of [`sources`]).
///
/// Partitions may hold the same capture times (a replayed capture lands in the
/// partition of the hour it was received), so each gives its newest `limit` and the
/// newest of all are kept; the partitions whose newest message is older than all those
/// kept are not read.
pub(super) fn select(
    partitions: &[Source],
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Found>, StoreError> {
    let newest_first = |found: &mut Vec<Found>| {
        found.sort_unstable_by_key(|f| std::cmp::Reverse((f.id, f.partition)));
        found.truncate(limit);
    };
    let mut found = Vec::new();
    for (i, source) in partitions.iter().enumerate() {
        if found.len() >= limit {
            newest_first(&mut found);
            if found.last().is_some_and(|f| source.newest_id < f.id) {
                break;
            }
        }
        let p = &source.partition;
        let sql_err = |e| StoreError::sqlite(&p.path, e);
        let Some(conn) = source.open()? else {
            continue;
        };
        let version = conn.version;
        let per_partition = limit.min(i64::MAX as usize) as i64;
        let (filter, params) = filter.sql(version);
        let sql = format!(
            "SELECT {} FROM messages{filter} ORDER BY id DESC LIMIT {per_partition}",
            columns(version)
        );
        // Versions 3 on: the bytes are read from the side file, with positioned reads.
        let side = side_file(&conn, version, p)?;
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                let hep = match &side {
                    Some(side) => side.read(r.get(8)?, r.get(9)?),
                    None => Ok(r.get(8)?),
                };
                Ok(Found {
                    partition: i,
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    recv_ts: r.get(2)?,
                    transport: r.get(3)?,
                    peer: r.get(4)?,
                    listener: r.get(5)?,
                    call_id: r.get(6)?,
                    correlation_id: r.get(7)?,
                    hep,
                })
            })
            .map_err(sql_err)?;
        for row in rows {
            found.push(row.map_err(sql_err)?);
        }
    }
    newest_first(&mut found);
    Ok(found)
}

pub(super) fn decode(f: Found, partitions: &[Source]) -> Result<Stored, StoreError> {
    let path = &partitions[f.partition].partition.path;
    let message = HepMessage::decode(Bytes::from(f.hep?)).map_err(|e| {
        StoreError::foreign(
            path,
            format!(
                "message id {} does not decode as HEP ({e}): the file is damaged",
                f.id
            ),
        )
    })?;
    let recv = match (&f.transport, &f.peer, &f.listener) {
        (Some(t), Some(p), Some(l)) => Some(RecvInfo::new(
            Transport::parse(t).unwrap_or(Transport::Udp),
            p.parse::<SocketAddr>()
                .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
            l.parse::<SocketAddr>()
                .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
        )),
        _ => None,
    };
    let p = &partitions[f.partition].partition;
    Ok(Stored {
        message,
        recv,
        ts_usec: f.ts,
        recv_ts_usec: f.recv_ts,
        call_id: f.call_id,
        correlation_id: f.correlation_id,
        id: MessageId {
            partition_start: p.start,
            partition_span: p.span,
            row: f.id,
        },
    })
}

/// The query plan (`EXPLAIN QUERY PLAN`, one step a line) of a Call-ID search in a file of
/// `version`.
#[cfg(test)]
pub(crate) fn plan_of_call_search(
    conn: &rusqlite::Connection,
    version: Version,
    call_id: &str,
) -> String {
    let mut f = Filter::default();
    f.terms.push(Term::CallOrLinked(vec![call_id.to_owned()]));
    let (filter, params) = f.sql(version);
    let sql = format!(
        "EXPLAIN QUERY PLAN SELECT {} FROM messages{filter} ORDER BY id DESC LIMIT 10",
        columns(version)
    );
    let mut stmt = conn.prepare_cached(&sql).expect("prepares");
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params.iter()), |r| {
            r.get::<_, String>(3)
        })
        .expect("explains");
    rows.map(|r| r.expect("a step"))
        .collect::<Vec<_>>()
        .join("\n")
}
