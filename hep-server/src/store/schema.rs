//! The schema of a partition file, and how connections to it are opened.
//!
//! One table, `messages`: the indexed summary of each message and where its HEP bytes as
//! received are (`hep_offset`, `hep_len` in the partition's side file,
//! [`super::hepfile`]; in versions 1 and 2 the bytes themselves, `hep`), which searches
//! decode again to print records or pcap. Times are
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
//!
//! # Versions
//! - **7** (this build writes it into new files): version 6 with the rows of each call
//!   range listed in `call_rows`: keyed by the range's `first_id`, `offsets` is a JSON
//!   array of the ids of the call's messages in the batch, less `first_id`. A search
//!   looks the rows up by id (`json_each`) instead of reading every row between the
//!   first and the last. Calls are captured side by side, so a range spans the other
//!   calls' messages of its batch: with 1,000 calls under way a user's 35 calls spanned
//!   44,000-70,000 rows to find their 300 messages, 10-17 ms of a user search in a 10 M
//!   store. A table of its own, keyed in time order: its rows (about 70 bytes for 7
//!   messages) are appended, filling pages one after the other, and `call_ranges`, whose
//!   keys are hashes, keeps its small rows.
//! - **6**: version 5 with a `node` column, the
//!   HEP node name (chunk 0x0013) as text, for searches by node (`node = ?`, not
//!   indexed: like `method`, it narrows a search bounded by time and the other
//!   filters). Files of earlier versions have no node: a search by node finds nothing
//!   in them.
//! - **5**: the tables of version 4; the file is
//!   named after its messages' receive time instead of their capture time (see
//!   [`super::partition`]). Searches find a file's capture times from its row ids (the
//!   smallest and largest), not from its name, in every version. The version changed so
//!   that a build that reads names as capture time refuses these files instead of
//!   missing messages in them.
//! - **4**: version 3 with the Call-ID indexed by
//!   call and batch instead of by message. `messages_call_id_hash`, one entry per
//!   message under a hash key, put each new row on a page anywhere in the index, so
//!   that a commit rewrote (into the WAL, then at the checkpoint into the file) about
//!   every page of an index that grows all hour: 46 MiB a commit at 2 million rows. In
//!   its place `call_ranges` (a `WITHOUT ROWID` table keyed by `call_id_hash` and
//!   `first_id`) holds, for each call in each batch, the ids of its first and last
//!   messages there. A search reads the ranges of its Call-ID's hash and, in the table
//!   (in time order), the rows in them with that hash and Call-ID. A call's messages
//!   that arrive together share a range: one entry for an INVITE and its provisional
//!   responses instead of one each. The other rows in a range (other calls' messages
//!   between a call's first and last of a batch) are read and skipped, so a range spans
//!   at most one batch (`[store] batch_size`).
//! - **3**: version 2 with the HEP bytes in the
//!   side file `hep-...-3600s.hep` beside the partition instead of the `hep` column: the
//!   row holds `hep_offset` and `hep_len`. The bytes (most of a row's size) are written
//!   once, appended a batch at a time, instead of into the WAL and again into the file at
//!   the checkpoint. Two small tables go with them: `hep_file` (one row, the end of the
//!   bytes the committed rows point into, updated in each batch's transaction) and
//!   `hep_lost` (ranges of the side file a crash lost: after a power cut the file may be
//!   shorter than the rows say; the writer then appends after the rows' end, so no row
//!   ever points at another message's bytes, and searches report the lost ones).
//! - **2**: the Call-ID and the correlation id are
//!   indexed by an 8-byte hash of their text (`call_id_hash`, `correlation_hash`,
//!   [`text_hash`]: FNV-1a 64 of the UTF-8 bytes, its bits read as a signed integer)
//!   instead of the text: keys of 8 bytes instead of 20-60, compared as integers. A
//!   search asks for `call_id_hash = H AND call_id = ID`, so two values of one hash
//!   (possible, and harmless) are told apart by the text. The hash is part of the file
//!   format: files outlive the process, so it must never change within a version.
//! - **1**: the same table without the two hash columns, with the indexes on `call_id`
//!   and `correlation_id` themselves. Files of version 1 are still searched (a search
//!   reads each file's `user_version` and asks in that file's terms), and a writer that
//!   finds a version-1 file for the hour it writes keeps appending version-1 rows to it
//!   (a file has one schema); the next partition is version 3. The same holds for a
//!   version-2 file.
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// `PRAGMA application_id` of a partition: `HEPS`.
pub const APPLICATION_ID: u32 = u32::from_be_bytes(*b"HEPS");
/// `PRAGMA user_version` of the schema below, written into new files.
pub const SCHEMA_VERSION: u32 = 7;

/// The schema versions this build reads and appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Call-ID and correlation id indexed by their text.
    V1,
    /// Call-ID and correlation id indexed by [`text_hash`].
    V2,
    /// As version 2, with the HEP bytes in the partition's side file
    /// ([`super::hepfile`]) instead of the `hep` column.
    V3,
    /// As version 3, with the Call-ID indexed by call and batch (`call_ranges`) instead
    /// of by message.
    V4,
    /// Version 4's tables in a file named after receive time.
    V5,
    /// Version 5 with the node name (`node`).
    V6,
    /// Version 6 with each call range's rows listed (`call_rows`).
    V7,
}

impl Version {
    /// The version of a file's `user_version`; `None` for one this build does not know.
    pub const fn of(user_version: u32) -> Option<Self> {
        match user_version {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            4 => Some(Self::V4),
            5 => Some(Self::V5),
            6 => Some(Self::V6),
            7 => Some(Self::V7),
            _ => None,
        }
    }

    /// Its `user_version`.
    pub const fn number(self) -> u32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V4 => 4,
            Self::V5 => 5,
            Self::V6 => 6,
            Self::V7 => 7,
        }
    }

    /// Whether its rows keep the HEP bytes in the side file (`hep_offset`, `hep_len`)
    /// instead of the `hep` column.
    pub const fn has_side_file(self) -> bool {
        matches!(self, Self::V3 | Self::V4 | Self::V5 | Self::V6 | Self::V7)
    }

    /// Whether its Call-IDs are indexed by call and batch (`call_ranges`) instead of by
    /// message (`messages_call_id_hash`).
    pub const fn has_call_ranges(self) -> bool {
        matches!(self, Self::V4 | Self::V5 | Self::V6 | Self::V7)
    }

    /// Whether its call ranges list their rows (`call_rows`).
    pub const fn has_call_rows(self) -> bool {
        matches!(self, Self::V7)
    }

    /// Whether its rows keep the node name (`node`).
    pub const fn has_node(self) -> bool {
        matches!(self, Self::V6 | Self::V7)
    }
}

/// The 8-byte key of a Call-ID or correlation id in a version-2 file: FNV-1a 64 of the
/// UTF-8 bytes (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`), its bits
/// read as an `i64` (SQLite's integer).
///
/// A fixed function, not std's `Hasher` (randomly keyed per process): the keys are
/// stored in files that outlive the process.
///
/// ```
/// use hep_server::store::schema::text_hash;
/// // The published FNV-1a 64 test vectors.
/// assert_eq!(text_hash("") as u64, 0xcbf2_9ce4_8422_2325);
/// assert_eq!(text_hash("a") as u64, 0xaf63_dc4c_8601_ec8c);
/// assert_eq!(text_hash("foobar") as u64, 0x8594_4171_f739_67e8);
/// ```
pub fn text_hash(text: &str) -> i64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = text
        .bytes()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    h as i64
}

/// Page size of new files. A commit writes every page it changed twice (into the WAL,
/// then into the file at the checkpoint), and a busy partition's indexes (users, call
/// ranges) are changed at pages all over, a page for about each call: the smaller the
/// page, the fewer bytes. With 16 KiB pages (chosen when the rows held the HEP bytes, 0.5
/// to 1.5 KB) the writer and the checkpointer wrote 1.0-1.2 GB/s at 100,000 msg/s into a
/// 10 M partition, the disk's bound here; with 4 KiB, 0.75 GB/s. The rows are about 200
/// bytes since the bytes went to the side file (version 3).
const PAGE_SIZE: u32 = 4_096;

/// The columns every version shares, in the order of the inserts below.
macro_rules! shared_columns {
    () => {
        "
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
    -- our listener's IP:PORT (each fragment ends without a comment: the next one
    -- starts with its comma)
    listener       TEXT"
    };
}

/// The HEP bytes in the row (versions 1 and 2).
macro_rules! hep_blob {
    () => {
        ",
    -- the HEP message as received
    hep            BLOB NOT NULL"
    };
}

/// The user indexes, the same in every version.
macro_rules! user_indexes {
    () => {
        "
CREATE INDEX IF NOT EXISTS messages_from_user ON messages(from_user)
    WHERE status IS NULL AND to_tag IS NULL AND from_user IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_to_user ON messages(to_user)
    WHERE status IS NULL AND to_tag IS NULL AND to_user IS NOT NULL;
"
    };
}

/// The hash columns (versions 2 to 4).
macro_rules! hash_columns {
    () => {
        ",
    call_id_hash     INTEGER,        -- text_hash(call_id)
    correlation_hash INTEGER         -- text_hash(correlation_id)"
    };
}

/// The index on the Call-ID's hash (versions 2 and 3).
macro_rules! call_id_hash_index {
    () => {
        "
CREATE INDEX IF NOT EXISTS messages_call_id_hash ON messages(call_id_hash)
    WHERE call_id_hash IS NOT NULL;"
    };
}

/// The index on the correlation id's hash (versions 2 to 4).
macro_rules! correlation_hash_index {
    () => {
        "
CREATE INDEX IF NOT EXISTS messages_correlation_hash ON messages(correlation_hash)
    WHERE correlation_hash IS NOT NULL;"
    };
}

/// The table of the version-3 and -4 rows: shared columns, the HEP bytes' place in the
/// side file, the hashes.
macro_rules! side_file_messages {
    () => {
        concat!(
            "CREATE TABLE IF NOT EXISTS messages (",
            shared_columns!(),
            ",
    hep_offset     INTEGER NOT NULL, -- where its HEP bytes start in the side file
    -- and how many there are
    hep_len        INTEGER NOT NULL",
            hash_columns!(),
            "
);"
        )
    };
}

/// The side file's tables (versions 3 to 5): `hep_file`, one row holding the end of
/// the bytes the committed rows point into, and `hep_lost`, the ranges of the side file
/// a crash lost (see [`super::hepfile`]: after a crash the side file may be shorter
/// than the rows say).
macro_rules! side_file_tables {
    () => {
        "
CREATE TABLE IF NOT EXISTS hep_file (
    id  INTEGER PRIMARY KEY CHECK (id = 0),
    end_offset INTEGER NOT NULL      -- the end of the bytes the rows point into
);
INSERT OR IGNORE INTO hep_file (id, end_offset) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS hep_lost (
    start      INTEGER NOT NULL,     -- bytes of the side file lost in a crash, from
    end_offset INTEGER NOT NULL      -- to (exclusive): the rows pointing there are reported
);"
    };
}

/// The Call-ID's index by call and batch (versions 4 on).
macro_rules! call_ranges_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS call_ranges (
    call_id_hash INTEGER NOT NULL,   -- text_hash(call_id)
    first_id     INTEGER NOT NULL,   -- the call's first message in one batch
    last_id      INTEGER NOT NULL,   -- and its last there
    PRIMARY KEY (call_id_hash, first_id)
) WITHOUT ROWID;"
    };
}

/// Version 4: version 3 with `call_ranges` instead of the index on `call_id_hash`. Kept
/// to describe (and in tests, to create) the files of versions 4 and 5.
#[cfg_attr(not(test), allow(dead_code))]
const CREATE_V4: &str = concat!(
    side_file_messages!(),
    correlation_hash_index!(),
    user_indexes!(),
    call_ranges_table!(),
    side_file_tables!()
);

/// The table of the version-6 and -7 rows (version 4's with the node name) and its
/// indexes.
macro_rules! node_messages {
    () => {
        concat!(
            "CREATE TABLE IF NOT EXISTS messages (",
            shared_columns!(),
            ",
    hep_offset     INTEGER NOT NULL, -- where its HEP bytes start in the side file
    -- and how many there are
    hep_len        INTEGER NOT NULL",
            hash_columns!(),
            // On a line of its own: the hash columns end with a comment.
            "
  , node           TEXT              -- HEP node name, chunk 0x0013
);",
            correlation_hash_index!(),
            user_indexes!(),
        )
    };
}

/// Version 6: version 4's tables with the node name. Kept to describe (and in tests, to
/// create) the files of version 6.
#[cfg_attr(not(test), allow(dead_code))]
const CREATE_V6: &str = concat!(node_messages!(), call_ranges_table!(), side_file_tables!());

/// Version 7: version 6 with the rows of each call range listed (this build creates it).
const CREATE_V7: &str = concat!(
    node_messages!(),
    call_ranges_table!(),
    "
CREATE TABLE IF NOT EXISTS call_rows (
    first_id     INTEGER PRIMARY KEY, -- a range's first_id
    offsets      TEXT NOT NULL        -- JSON array: the ids of its messages, less first_id
);",
    side_file_tables!()
);

/// Version 3, as the build before version 4 created it: version 2's table with the HEP
/// bytes' place in the side file instead of the bytes, and the side file's tables. Kept
/// to describe (and in tests, to create) the files it left.
#[cfg_attr(not(test), allow(dead_code))]
const CREATE_V3: &str = concat!(
    side_file_messages!(),
    call_id_hash_index!(),
    correlation_hash_index!(),
    user_indexes!(),
    side_file_tables!()
);

/// Version 2, as the build before version 3 created it: kept to describe (and in tests,
/// to create) the files it left.
#[cfg_attr(not(test), allow(dead_code))]
const CREATE_V2: &str = concat!(
    "CREATE TABLE IF NOT EXISTS messages (",
    shared_columns!(),
    hep_blob!(),
    hash_columns!(),
    "
);",
    call_id_hash_index!(),
    correlation_hash_index!(),
    user_indexes!()
);

/// Version 1, as earlier builds created it: kept to describe (and in tests, to create)
/// the files they left.
#[cfg_attr(not(test), allow(dead_code))]
const CREATE_V1: &str = concat!(
    "CREATE TABLE IF NOT EXISTS messages (",
    shared_columns!(),
    hep_blob!(),
    "
);
CREATE INDEX IF NOT EXISTS messages_call_id ON messages(call_id) WHERE call_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_correlation_id ON messages(correlation_id)
    WHERE correlation_id IS NOT NULL;",
    user_indexes!()
);

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

/// The insert of a version-1 file: 20 parameters, `?1` the id ... `?20` the HEP bytes.
pub(crate) const INSERT_V1: &str = "INSERT INTO messages (id, ts, recv_ts, proto_type, \
    capture_id, src, dst, call_id, method, status, cseq, from_user, from_tag, to_user, to_tag, \
    correlation_id, transport, peer, listener, hep) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

/// The insert of a version-2 file: those of [`INSERT_V1`], then `?21` the Call-ID's hash
/// and `?22` the correlation id's.
pub(crate) const INSERT_V2: &str = "INSERT INTO messages (id, ts, recv_ts, proto_type, \
    capture_id, src, dst, call_id, method, status, cseq, from_user, from_tag, to_user, to_tag, \
    correlation_id, transport, peer, listener, hep, call_id_hash, correlation_hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
    ?20, ?21, ?22)";

/// The insert of a version-3 file: those of [`INSERT_V1`] with `?20` the offset of the
/// HEP bytes in the side file instead of the bytes, then `?21` their length, `?22` the
/// Call-ID's hash and `?23` the correlation id's.
pub(crate) const INSERT_V3: &str = "INSERT INTO messages (id, ts, recv_ts, proto_type, \
    capture_id, src, dst, call_id, method, status, cseq, from_user, from_tag, to_user, to_tag, \
    correlation_id, transport, peer, listener, hep_offset, hep_len, call_id_hash, \
    correlation_hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
    ?20, ?21, ?22, ?23)";

/// The insert of a version-6 file: those of [`INSERT_V3`], then `?24` the node name.
pub(crate) const INSERT_V6: &str = "INSERT INTO messages (id, ts, recv_ts, proto_type, \
    capture_id, src, dst, call_id, method, status, cseq, from_user, from_tag, to_user, to_tag, \
    correlation_id, transport, peer, listener, hep_offset, hep_len, call_id_hash, \
    correlation_hash, node) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
    ?20, ?21, ?22, ?23, ?24)";

/// The keys of the messages from another collector (a cluster's edge) a partition holds
/// ([`delivery_key`](super::delivery_key)): any version of file may get it; a file fed
/// by listeners only never does. Older builds ignore it.
pub(crate) const CREATE_RECEIVED_KEYS: &str =
    "CREATE TABLE IF NOT EXISTS received_keys (key INTEGER PRIMARY KEY)";

/// Adds key `?1`; no change when the partition holds it (a redelivery).
pub(crate) const ADD_RECEIVED_KEY: &str = "INSERT OR IGNORE INTO received_keys (key) VALUES (?1)";

/// Records that a batch's messages of the call of hash `?1` are the rows `?2` to `?3`
/// with that hash (versions 4 to 6).
pub(crate) const ADD_CALL_RANGE: &str =
    "INSERT INTO call_ranges (call_id_hash, first_id, last_id) VALUES (?1, ?2, ?3)";

/// Records that the messages of the call range starting at row `?1` are that row plus
/// each offset of the JSON array `?2` (version 7).
pub(crate) const ADD_CALL_ROWS: &str = "INSERT INTO call_rows (first_id, offsets) VALUES (?1, ?2)";

/// The end of the side file's bytes the committed rows point into (version 3), `?1`.
pub(crate) const SET_HEP_END: &str = "UPDATE hep_file SET end_offset = ?1 WHERE id = 0";

/// The end of the side file's bytes the committed rows point into (version 3).
pub(crate) const HEP_END: &str = "SELECT end_offset FROM hep_file WHERE id = 0";

/// Records bytes of the side file lost in a crash, `?1` to `?2` (version 3).
pub(crate) const ADD_HEP_LOST: &str = "INSERT INTO hep_lost (start, end_offset) VALUES (?1, ?2)";

/// The bytes of the side file lost in crashes (version 3).
pub(crate) const HEP_LOST: &str = "SELECT start, end_offset FROM hep_lost";

impl Version {
    /// The insert a writer prepares for a file of this version.
    pub(crate) const fn insert(self) -> &'static str {
        match self {
            Self::V1 => INSERT_V1,
            Self::V2 => INSERT_V2,
            // The same row; version 4 adds its call ranges (`ADD_CALL_RANGE`).
            Self::V3 | Self::V4 | Self::V5 => INSERT_V3,
            Self::V6 | Self::V7 => INSERT_V6,
        }
    }

    const fn create(self) -> &'static str {
        match self {
            Self::V1 => CREATE_V1,
            Self::V2 => CREATE_V2,
            Self::V3 => CREATE_V3,
            Self::V4 | Self::V5 => CREATE_V4,
            Self::V6 => CREATE_V6,
            Self::V7 => CREATE_V7,
        }
    }
}

/// Opens (creating if needed) a partition for writing: WAL journal (readers never wait
/// for the writer), `synchronous = NORMAL` (a commit is not an fsync; a power cut may lose
/// the last commits, never the file), checkpoints left to the checkpointer thread, a large page cache (128 MiB, so that the indexes of
/// a busy hour stay in memory). A new file gets the schema of [`SCHEMA_VERSION`]; an
/// existing one keeps its own, which is returned.
///
/// # Errors
/// The file cannot be opened or created, or is not a store partition of a version this
/// build knows.
pub(crate) fn open_for_write(path: &Path) -> Result<(Connection, Version), StoreError> {
    open_for_write_creating(path, Version::V7)
}

/// [`open_for_write`], creating a new file with the schema of `new` (tests create
/// version-1 files with it, as earlier builds did).
pub(crate) fn open_for_write_creating(
    path: &Path,
    new: Version,
) -> Result<(Connection, Version), StoreError> {
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
            "PRAGMA page_size = {PAGE_SIZE}; BEGIN; {} \
             PRAGMA application_id = {APPLICATION_ID}; \
             PRAGMA user_version = {}; COMMIT;",
            new.create(),
            new.number()
        ))
        .map_err(sql)?;
    }
    let version = read_version(&conn, path)?;
    // No checkpoints in the writer's commits: the checkpointer thread runs them
    // (`checkpoint`).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA cache_size = -131072;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(sql)?;
    Ok((conn, version))
}

/// The schema version of an open partition.
///
/// # Errors
/// SQLite fails, or the version is not one this build knows.
pub(crate) fn read_version(conn: &Connection, path: &Path) -> Result<Version, StoreError> {
    let n: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::sqlite(path, e))?;
    Version::of(n).ok_or_else(|| {
        StoreError::foreign(
            path,
            format!("schema version {n}: this hep-server reads versions 1 to {SCHEMA_VERSION}"),
        )
    })
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
    conn.pragma_update(None, "mmap_size", READ_MMAP_BYTES)
        .map_err(|e| StoreError::sqlite(path, e))?;
    Ok(conn)
}

/// Bytes of a partition a search reads through a memory map (SQLite's own bound: it
/// takes no more). A search's pages change with every commit of the writer, so its page
/// cache starts empty at each one; mapped, a page is read where the kernel keeps it
/// instead of copied in by a `pread` (2.6 to 2.2 ms of CPU for a user search in a 10 M
/// store).
const READ_MMAP_BYTES: i64 = 0x7fff_0000;

/// Whether the database has no table at all (a file SQLite has just created).
fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n == 0)
}
