//! Read connections to the partitions, kept open from one search to the next
//! ([`Readers`]).
//!
//! Opening a partition costs more than looking a call up in it: SQLite reads and parses
//! the schema of every new connection, and maps the WAL's index. A call list used to open
//! each partition of its window once for each of its steps (the extent, the calls, their
//! messages, each round of the leg walk): measured on a store of 3 million messages, 45 %
//! of the CPU of a `GET /api/v1/calls?call_id=` was preparing statements, most of it
//! reading the schema of fresh connections (see `docs/API.md`, "What a question costs").
//!
//! A [`Readers`] keeps the connections searches are done with, at most
//! [`MAX_IDLE_READERS`], and lends them to the next search of the same file, with their
//! statements prepared ([`Connection::prepare_cached`]) and their page cache as SQLite
//! left it (it drops it when the file changed). [`Readers::one_shot`] keeps none: each
//! loan is a fresh connection, closed when returned (`hep-server search`, one search a
//! process).
//!
//! A kept connection is lent only for the same file, its device and inode checked at
//! each loan: a partition deleted by retention and created again under its name is
//! opened afresh. The connections of files no longer in the directory are closed at the
//! next search's scan of the directory: a connection holds its file's space on
//! disk until it is closed.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

use super::StoreError;
use super::partition::Partition;
use super::schema::{self, Version};

/// Connections a [`Readers`] keeps between searches, at most. Each holds three file
/// descriptors (the partition, its `-wal` and `-shm`) and up to SQLite's default page
/// cache (2 MiB): 48 descriptors and 32 MiB at most. Past the bound the connection
/// returned longest ago is closed.
pub const MAX_IDLE_READERS: usize = 16;

/// Statements each kept connection keeps prepared (SQLite's statement cache per
/// connection): a search runs at most a few distinct ones per partition.
const STATEMENTS_KEPT: usize = 16;

/// The read connections searches lend each other; see the [module docs](self). Cloning
/// it shares the same connections.
///
/// ```
/// use hep_server::store::{Query, Readers};
/// let dir = std::env::temp_dir().join(format!("hep-readers-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let readers = Readers::new();
/// // The store of `hep-server run --output store:DIR`, searched twice: the second
/// // search reuses the connections of the first (an empty store here: none).
/// for _ in 0..2 {
///     let page = readers.calls(&dir, &Query::default(), None).unwrap();
///     assert!(page.calls.is_empty());
/// }
/// assert_eq!(readers.idle(), 0);
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Readers {
    /// `None`: one-shot, nothing kept.
    idle: Option<Arc<Mutex<VecDeque<Idle>>>>,
}

impl Default for Readers {
    fn default() -> Self {
        Self::new()
    }
}

/// A kept connection and the file it reads.
struct Idle {
    file: FileId,
    conn: Connection,
    version: Version,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("file", &self.file).finish()
    }
}

/// A file by its path and identity (device, inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> Result<Self, StoreError> {
        let m = std::fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

impl Readers {
    /// Readers that keep up to [`MAX_IDLE_READERS`] connections between searches.
    pub fn new() -> Self {
        Self {
            idle: Some(Arc::default()),
        }
    }

    /// Readers that keep nothing: every partition is opened for the search and closed
    /// after it.
    pub fn one_shot() -> Self {
        Self { idle: None }
    }

    /// A connection to `p` and its schema version: a kept one of the same file, else a
    /// new one; `None` for a file created but never written (no table yet). Returned to
    /// the kept ones when dropped.
    ///
    /// # Errors
    /// The file cannot be opened or read, or its schema version is unknown.
    pub(super) fn open(&self, p: &Partition) -> Result<Option<Reader>, StoreError> {
        let Some(idle) = &self.idle else {
            return Ok(open_new(&p.path)?.map(|(conn, version)| Reader {
                conn: Some(conn),
                version,
                home: None,
            }));
        };
        let file = FileId::of(&p.path)?;
        let kept = {
            let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.iter()
                .rposition(|i| i.file == file)
                .and_then(|at| idle.remove(at))
        };
        let (conn, version) = match kept {
            Some(Idle { conn, version, .. }) => (conn, version),
            None => match open_new(&p.path)? {
                Some((conn, version)) => {
                    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
                    (conn, version)
                }
                None => return Ok(None),
            },
        };
        Ok(Some(Reader {
            conn: Some(conn),
            version,
            home: Some((Arc::clone(idle), file)),
        }))
    }

    /// Closes the kept connections of every file but `listed` (the partitions the
    /// directory holds now), and of files deleted and created again under their name.
    pub(super) fn keep_only(&self, listed: &[Partition]) {
        let Some(idle) = &self.idle else {
            return;
        };
        let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|i| {
            listed.iter().any(|p| p.path == i.file.path)
                && FileId::of(&i.file.path).is_ok_and(|now| now == i.file)
        });
    }

    /// How many connections are kept now.
    pub fn idle(&self) -> usize {
        self.idle.as_ref().map_or(0, |i| {
            i.lock().unwrap_or_else(PoisonError::into_inner).len()
        })
    }
}

/// A connection lent by [`Readers`]: it derefs to the connection, and goes back to the
/// kept ones when dropped.
pub(super) struct Reader {
    conn: Option<Connection>,
    /// The schema version of its file.
    pub(super) version: Version,
    home: Option<(Arc<Mutex<VecDeque<Idle>>>, FileId)>,
}

impl std::ops::Deref for Reader {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lent connection is set until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let (Some(conn), Some((idle, file))) = (self.conn.take(), self.home.take()) else {
            return;
        };
        let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push_back(Idle {
            file,
            conn,
            version: self.version,
        });
        while idle.len() > MAX_IDLE_READERS {
            idle.pop_front();
        }
    }
}

/// A new read connection to `path` and its schema version; `None` for a file created
/// but never written (no table yet).
fn open_new(path: &Path) -> Result<Option<(Connection, Version)>, StoreError> {
    let conn = schema::open_for_read(path)?;
    let has_table = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'messages'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| StoreError::sqlite(path, e))?
        > 0;
    if !has_table {
        return Ok(None);
    }
    let version = schema::read_version(&conn, path)?;
    Ok(Some((conn, version)))
}
