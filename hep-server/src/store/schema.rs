//! The schema of a partition file, and how connections to it are opened.
//!
//! One table, `messages`: the indexed summary of each message and its HEP bytes as
//! received (`hep`), which searches decode again to print records or pcap. Times are
//! microseconds since the Unix epoch, UTC. Indexes are few on purpose, as each one costs
//! insert speed: Call-ID, correlation id, From user, To user (partial: rows without the
//! value are not indexed). The users are indexed only on requests without a To tag (the
//! initial request of a dialog, or a lone one): a dialog keeps its users, so a user search
//! finds the calls there and then their messages by Call-ID, and the two user indexes get
//! one entry per call instead of one per message (the store thread's CPU per message went
//! from 4.9 to 3.7 µs). Time needs no index of its own: the row id is the capture time
//! in microseconds times 1024, made unique ([`RowIds`]), so the table itself is in time
//! order and a time range is a range of row ids.
//!
//! The file carries SQLite's `application_id` (`HEPS`) and `user_version` (the schema
//! version), so that a foreign or newer database is recognised from its header.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// `PRAGMA application_id` of a partition: `HEPS`.
pub const APPLICATION_ID: u32 = u32::from_be_bytes(*b"HEPS");
/// `PRAGMA user_version` of the schema below.
pub const SCHEMA_VERSION: u32 = 1;

/// Page size of new files: large rows (a SIP message is ~0.5-1.5 KB) pack better in
/// bigger pages and the B-trees are shallower.
const PAGE_SIZE: u32 = 16_384;

/// The table and its indexes (`IF NOT EXISTS`: the same text opens an existing file).
const CREATE: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id             INTEGER PRIMARY KEY, -- ts * 1024, made unique: rows are kept in time order
    ts             INTEGER NOT NULL, -- capture time, us (receive time for HEPv1)
    recv_ts        INTEGER NOT NULL, -- receive time, us
    proto_type     INTEGER,
    capture_id     INTEGER,
    src            TEXT,             -- captured source IP:PORT
    dst            TEXT,             -- captured destination IP:PORT
    call_id        TEXT,
    method         TEXT,             -- request method, or for a response its CSeq method
    status         INTEGER,          -- response status code
    cseq           INTEGER,
    from_user      TEXT,
    from_tag       TEXT,
    to_user        TEXT,
    to_tag         TEXT,
    correlation_id TEXT,             -- chunk 0x0011, or the X-CID header: the other leg
    transport      TEXT,             -- how it reached us: udp, tcp, tls
    peer           TEXT,             -- the agent's IP:PORT
    listener       TEXT,             -- our listener's IP:PORT
    hep            BLOB NOT NULL     -- the HEP message as received
);
CREATE INDEX IF NOT EXISTS messages_call_id ON messages(call_id) WHERE call_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_correlation_id ON messages(correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_from_user ON messages(from_user)
    WHERE status IS NULL AND to_tag IS NULL AND from_user IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_to_user ON messages(to_user)
    WHERE status IS NULL AND to_tag IS NULL AND to_user IS NOT NULL;
";

/// Row ids per microsecond of capture time.
pub const IDS_PER_USEC: i64 = 1_024;

/// The row ids a writer gives one partition: the capture time in microseconds times
/// [`IDS_PER_USEC`], so the table is in time order and a time range is a range of ids.
///
/// Messages sharing a microsecond (or an agent that only sends whole seconds) take the
/// ids after the last one given, as long as they do not go back in time: a burst of a
/// million messages of one timestamp costs no retries, and spills at most a second into
/// the ids of the following microseconds. A late message starts at its own time; an id
/// already taken (a late message, a restart) is retried with the next one.
///
/// ```
/// use hep_server::store::schema::RowIds;
/// let mut ids = RowIds::default();
/// assert_eq!(ids.first(5), 5 * 1024);
/// ids.stored(5, 5 * 1024);
/// assert_eq!(ids.first(5), 5 * 1024 + 1, "the same microsecond: the next id");
/// assert_eq!(ids.first(9), 9 * 1024, "later: its own time");
/// assert_eq!(ids.first(2), 2 * 1024, "earlier: its own time");
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowIds {
    /// The first id of the last message's microsecond, and the id it got.
    last: Option<(i64, i64)>,
}

impl RowIds {
    /// The first id to try for a message captured at `ts_usec`.
    pub fn first(&self, ts_usec: i64) -> i64 {
        let base = ts_usec.saturating_mul(IDS_PER_USEC);
        match self.last {
            Some((last_base, last_id)) if base >= last_base && base <= last_id => last_id + 1,
            _ => base,
        }
    }

    /// Records that the message captured at `ts_usec` got `id`.
    pub fn stored(&mut self, ts_usec: i64, id: i64) {
        self.last = Some((ts_usec.saturating_mul(IDS_PER_USEC), id));
    }
}

/// The insert a writer prepares once per connection.
pub(crate) const INSERT: &str = "INSERT INTO messages (id, ts, recv_ts, proto_type, capture_id, \
    src, dst, call_id, method, status, cseq, from_user, from_tag, to_user, to_tag, \
    correlation_id, transport, peer, listener, hep) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

/// Opens (creating if needed) a partition for writing: WAL journal (readers never wait
/// for the writer), `synchronous = NORMAL` (a commit is not an fsync; a power cut may lose
/// the last commits, never the file), a large page cache (128 MiB, so that the indexes of a busy hour stay in memory).
///
/// # Errors
/// The file cannot be opened or created, or is not a store partition.
pub(crate) fn open_for_write(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e| StoreError::sqlite(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let app: u32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(sql)?;
    let fresh = app == 0 && is_empty(&conn).map_err(sql)?;
    if !fresh && app != APPLICATION_ID {
        return Err(StoreError::foreign(
            path,
            format!("an SQLite database of another application (application_id {app:#010x})"),
        ));
    }
    if fresh {
        // Before WAL: in WAL mode the header (application id, version) would stay in the
        // WAL until a checkpoint, and a file checked meanwhile would look foreign.
        conn.execute_batch(&format!(
            "PRAGMA page_size = {PAGE_SIZE}; BEGIN; {CREATE} \
             PRAGMA application_id = {APPLICATION_ID}; \
             PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(sql)?;
    }
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -131072;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(sql)?;
    Ok(conn)
}

/// Opens a partition for searching, read-only.
///
/// # Errors
/// The file cannot be opened.
pub(crate) fn open_for_read(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::sqlite(path, e))?;
    Ok(conn)
}

/// Whether the database has no table at all (a file SQLite has just created).
fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n == 0)
}
