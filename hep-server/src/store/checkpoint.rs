//! The store's checkpointer: a thread beside the writer that copies committed WAL frames
//! into their partition file, so that the writer thread does not.
//!
//! In WAL mode each page is written twice: into the WAL at commit, and into the database
//! file at a checkpoint. SQLite runs the checkpoint in the committing connection by
//! default, which was an eighth of the store thread's cycles (and all of its `fsync`s).
//! The writer's connections run with `wal_autocheckpoint = 0` and ask this thread after
//! each commit instead; it opens the partition, runs a `PASSIVE` checkpoint (which never
//! waits for the writer or for searches) and closes it. The WAL then starts over at the
//! writer's next transaction, as with SQLite's own checkpoints. If the checkpointer falls
//! behind, the writer checkpoints itself once the WAL passes [`WAL_MAX_BYTES`], so the
//! WAL stays bounded whatever happens here.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

/// Past this size of a partition's WAL the writer checkpoints (and truncates it) itself.
pub(crate) const WAL_MAX_BYTES: u64 = 256 << 20;

/// Requests waiting at most: one a partition open for writing (see the writer).
const QUEUE: usize = 2;

/// The checkpointer thread and the way to it; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    requests: Option<SyncSender<PathBuf>>,
    /// Held by the thread while it checkpoints, and by retention while it deletes files:
    /// a file is never deleted under a checkpoint.
    files: Arc<Mutex<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, named after the store output (`ckpt store:DIR`).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn spawn(name: &str) -> std::io::Result<Self> {
        let (requests, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let files = Arc::new(Mutex::new(()));
        let held = Arc::clone(&files);
        let thread = std::thread::Builder::new()
            .name(format!("ckpt {name}"))
            .spawn(move || run(&rx, &held))?;
        Ok(Self {
            requests: Some(requests),
            files,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint of the partition at `path`. When requests are already
    /// waiting it is skipped: the next checkpoint of the file copies every frame
    /// committed by then.
    pub(crate) fn request(&self, path: &Path) {
        if let Some(tx) = &self.requests {
            match tx.try_send(path.to_path_buf()) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    tracing::warn!(
                        "store: the checkpointer thread is gone; the writer checkpoints when the WAL is large"
                    );
                }
            }
        }
    }

    /// Waits for a running checkpoint to end and holds off the next one while the guard
    /// lives (retention deletes files under it).
    pub(crate) fn pause(&self) -> MutexGuard<'_, ()> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: one checkpoint per request until the writer is gone.
fn run(rx: &Receiver<PathBuf>, files: &Mutex<()>) {
    while let Ok(path) = rx.recv() {
        let _files = files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = checkpoint(&path) {
            tracing::warn!(partition = %path.display(), error = %e, "store: checkpoint failed; the writer checkpoints when the WAL is large");
        }
    }
}

/// A `PASSIVE` checkpoint of the partition at `path`, on a connection of its own.
///
/// The file is opened without `CREATE`: one deleted meanwhile is not made again.
fn checkpoint(path: &Path) -> rusqlite::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let (busy, log, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    tracing::debug!(partition = %path.display(), busy, log, copied, "store: checkpoint");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::spool::tests::TempDir;

    #[test]
    fn a_requested_checkpoint_copies_the_wal_into_the_file() {
        let dir = TempDir::new("ckpt-copies");
        let path = dir.path().join("db");
        let writer = Connection::open(&path).expect("open");
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(100000));",
            )
            .expect("write");
        let file_len = || std::fs::metadata(&path).expect("the file").len();
        assert!(file_len() < 100_000, "the rows are in the WAL only");
        let ckpt = Checkpointer::spawn("test").expect("the thread");
        ckpt.request(&path);
        drop(ckpt); // joins the thread after the request
        assert!(
            file_len() >= 100_000,
            "the checkpoint copied them into the file"
        );
        let n: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("read");
        assert_eq!(n, 1);
    }

    #[test]
    fn a_deleted_partition_is_not_created_again() {
        let dir = TempDir::new("ckpt-deleted");
        let path = dir.path().join("gone.db");
        let ckpt = Checkpointer::spawn("test").expect("the thread");
        ckpt.request(&path);
        drop(ckpt);
        assert!(!path.exists());
    }
}
