//! The embedded capture store: `store:DIR` keeps every message in SQLite files, one per
//! span of receive time, with its HEP bytes in a file beside each, and `hep-server
//! search` finds them again.
//!
//! Why SQLite: it is a library, not a server (nothing to install or run beside the
//! collector), its files are readable with the `sqlite3` shell, it is built into the
//! binary (`rusqlite` with SQLite bundled), and with WAL, `synchronous = NORMAL` and
//! large batched transactions one thread inserts a quarter of a million rows a second
//! (the rows built on a second one).
//!
//! # The store's API
//!
//! One narrow API for every part that writes or reads a store: the `store:` output
//! ([`crate::outputs`], which drains its queue into batches), `hep-server search`
//! ([`crate::commands::search`]), and the readers to come.
//! - [`Store::open`] a directory (with its [`StoreConfig`], `[store]`) for writing, one
//!   writer at a time (a lock file refuses a second collector);
//! - fill a [`Batch`] ([`Store::batch`]; on any thread) with received messages and their
//!   receive times, and [`Store::write`] it: [`Written`] says what became of each message;
//! - [`StoreStats`] reports the rest (partitions and bytes on disk, retention, agents'
//!   clocks);
//! - [`search`] reads any store with a [`Query`], for [`Results`]; [`calls()`] reads the
//!   calls matching a query a page at a time ([`Calls`], the HTTP API's call list), and
//!   [`message`] one message by its [`MessageId`] (unique across partitions).
//!
//! The store imports neither the outputs nor the configuration file: it is a component
//! of its own.
//!
//! # Inside
//! - [`partition`]: the files of a store directory, their names, the checks that refuse a
//!   foreign or corrupt file.
//! - [`schema`]: the table and indexes of a partition.
//! - [`hepfile`]: the file beside a partition that holds its messages' HEP bytes
//!   (schema versions 3 to 5).
//! - [`query`]: searches by Call-ID (with the other legs), user, method, node, time and
//!   capture ids; [`text`]: free text, read message by message within those, bounded; [`mod@calls`]: the same filters, grouped into calls, a page at a time.
//! - the writer (one transaction per partition and batch; the rows of a batch are built
//!   as it is filled), its checkpointer (a thread that copies the WAL into the partition
//!   files) and retention (whole partitions by age and size; a free-space floor) are
//!   internal.
//!
//! # Two clocks
//! A message carries its capture time, which its agent chooses; the collector knows when
//! it received it. The store's own bookkeeping follows the receive time: which partition
//! a message goes to ([`partition`]) and retention by age and size, so that no time an
//! agent writes (a replayed capture, a clock a week behind, a forged date in the year
//! 2100) loses a message, opens a file of its own or makes retention delete recent data.
//! Everything users see follows the capture time: the row id ([`schema::RowIds`]), the
//! order of results, and a search's time range ([`query`]), which finds a partition's
//! capture times from its smallest and largest row id, not from its name. Capture times
//! far from the receive time are counted (`hep_store_clock_skew_total`) and logged.
//!
//! A partition holds whatever capture times arrived in its span: a call's range in
//! `call_ranges` (versions 4 to 6) spans the ids between its first and last message of a
//! batch, so a call whose messages carry wildly different times makes its own search read
//! more of that partition; no other call's search is affected. From version 7 a range
//! lists its rows, and a search reads those only.
//!
//! # Schema
//! One table `messages` per file: `ts` and `recv_ts` (us), `proto_type`, `capture_id`,
//! `src`, `dst`, `call_id`, `method`, `status`, `cseq`, `from_user`, `from_tag`,
//! `to_user`, `to_tag`, `correlation_id`, `transport`, `peer`, `listener`, in versions 1
//! and 2 `hep` (the HEP bytes) and from version 3 on `hep_offset` and `hep_len` (where
//! they are in the side file), from version 2 on `call_id_hash` and
//! `correlation_hash`, and from version 6 on `node` (the HEP node name); indexed by Call-ID (from version 2 by its hash; from version 4 once
//! per call and batch, in the table `call_ranges`, which from version 7 lists the call's
//! rows there) and correlation id (from version 2 by
//! its hash), and by From and To user on initial requests; the row id is the capture
//! time. See [`schema`] for the versions.
//!
//! Why the HEP bytes are beside the database (from version 3): they are about 600 of a row's
//! 700 bytes, and through SQLite they were copied into the WAL at commit and again into
//! the database at the checkpoint, packed into B-tree pages. Appended to a file of their
//! own they are written once, with one `write` a batch; the checkpointer syncs that file
//! before it checkpoints, which keeps the durability of WAL with `synchronous = NORMAL`.
//! The store thread's CPU per message went from 3.4 to 3.1 µs, the checkpointer's from
//! 0.9 to 0.5 µs (docs/BENCHMARKS.md, "Issue 8, fourth follow-up").

use std::path::{Path, PathBuf};

pub mod calls;
pub(crate) mod checkpoint;
mod config;
pub mod hepfile;
pub mod legs;
pub mod link;
mod message_id;
pub mod partition;
pub mod query;
pub mod readers;
pub(crate) mod retention;
pub(crate) mod row;
pub mod schema;
mod search;
pub mod text;
pub(crate) mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_legs;
#[cfg(test)]
mod tests_readers;

pub use calls::{Call, Calls, calls};
pub use config::StoreConfig;
pub use link::{Correlation, LinkHeader, Pattern, session_key};
pub use message_id::{BadMessageId, MessageId};
pub use query::{Query, Results, Stored, message};
pub use readers::{MAX_IDLE_READERS, Readers};
pub use row::{Batch, delivery_key};
pub use search::search;
pub use text::TextScan;
pub use writer::{Store, StoreStats, Written};

/// Default directory of the store (relative to the working directory): where
/// `hep-server` with no arguments keeps what it captures, and where `search` looks.
pub const DEFAULT_DIR: &str = "hep-store";

/// A store error, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file that is not (or no longer) what the store expects; never overwritten.
    #[error("store: {}: {reason}", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// SQLite failed on a partition.
    #[error("store: {}: {source}", path.display())]
    Sqlite {
        /// The partition.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file or directory could not be read or written.
    #[error("store: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn foreign(path: &Path, reason: impl Into<String>) -> Self {
        Self::Foreign {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        // SQLite says "file is not a database" for a damaged or foreign file.
        if let rusqlite::Error::SqliteFailure(e, _) = &source
            && matches!(
                e.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            )
        {
            return Self::foreign(
                path,
                format!("{source}: the partition is damaged or not a hep-server store file"),
            );
        }
        Self::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
