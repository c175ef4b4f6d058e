//! The store's checkpointer: a thread beside the writer that copies committed WAL frames
//! into their partition file, so that the writer thread does not.
//!
//! In WAL mode each page is written twice: into the WAL at commit, and into the database
//! file at a checkpoint. SQLite runs the checkpoint in the committing connection by
//! default, which was an eighth of the store thread's cycles (and all of its `fsync`s).
//! The writer's connections run with `wal_autocheckpoint = 0` and ask this thread after
//! each commit instead; it opens the partition, runs a `PASSIVE` checkpoint (which never
//! waits for the writer or for searches) and closes it.
//!
//! The WAL starts over from its beginning only when a transaction begins after a
//! checkpoint copied all of it; without that it grows, as a checkpoint never catches up
//! with a busy writer. Waiting for each checkpoint to end before the next transaction
//! would bound it to one batch, but puts the checkpoint's copy and `fsync`s on the
//! writer's path: with a batch's checkpoint as long as half its insert, the writer waited
//! a third of the time. So checkpoints run beside the writer's next transactions, and the
//! writer waits ([`Checkpointer::wait_idle`]) only once the last checkpoint found more
//! than [`WAL_RESTART_BYTES`] in the WAL: it then starts over, having copied batches
//! that often changed the same index pages once. Before
//! each checkpoint it syncs the partition's side file of HEP bytes (schema versions 3 to 5), so
//! that no row reaches the database file before the bytes it points to reach the disk
//! (the `fsync`s stay off the writer's path, as the checkpoint's own do). If the
//! checkpointer falls behind anyway, the writer checkpoints itself once the WAL passes
//! [`WAL_MAX_BYTES`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::hepfile;
use crate::sync;

/// Past this size of a partition's WAL the writer checkpoints (and truncates it) itself.
pub(crate) const WAL_MAX_BYTES: u64 = 1 << 30;

/// Past this size of the WAL (as the last checkpoint found it) the writer waits for the
/// checkpoints to end before its next transaction, which then writes the WAL from its
/// start again.
///
/// Each wait costs the writer one checkpoint's copy and `fsync`s, so the WAL holds many
/// transactions between two. In a partition of 10 M messages a batch changes index
/// pages all over (users, call ranges), tens of MB of WAL a commit at 100,000 msg/s. At
/// 64 MiB the writer waited before about every transaction, 25-35 % of its time with 16
/// KiB pages; at 512 MiB, 5-9 % with 4 KiB pages (`hep_store_checkpoint_wait_seconds_total`).
/// Searches do not pay for the size: a reader looks up only the frames no checkpoint
/// has copied yet.
pub(crate) const WAL_RESTART_BYTES: u64 = 512 << 20;

/// The writer waits at most this long for a checkpoint before it writes anyway.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// What the thread is asked to do and is doing.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// Partitions to checkpoint (each once, whatever the number of requests).
    wanted: Vec<PathBuf>,
    /// A checkpoint is running.
    running: bool,
    /// The writer is gone: the thread ends once `wanted` is done.
    closed: bool,
    /// The largest WAL the last checkpoints found, bytes.
    wal_bytes: u64,
}

#[derive(Debug, Default)]
struct Shared {
    work: Mutex<Work>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Work> {
        sync::lock(&self.work)
    }
}

/// The checkpointer thread and the way to it; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, named after the store output (`ckpt store:DIR`).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn spawn(name: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("ckpt {name}"))
            .spawn(move || run(&theirs))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint of the partition at `path`: one that starts after this call,
    /// so that it copies every frame committed by now.
    pub(crate) fn request(&self, path: &Path) {
        let mut work = self.shared.lock();
        if !work.wanted.iter().any(|p| p == path) {
            work.wanted.push(path.to_path_buf());
        }
        drop(work);
        self.shared.changed.notify_all();
    }

    /// The largest WAL the last checkpoints found, bytes: what the WAL held when they
    /// began (the writer may have added to it since).
    pub(crate) fn wal_bytes(&self) -> u64 {
        self.shared.lock().wal_bytes
    }

    /// Waits until every requested checkpoint is done (at most 10 s: a stuck checkpoint
    /// does not stop the writer, whose WAL bound then applies).
    pub(crate) fn wait_idle(&self) {
        let deadline = Instant::now() + MAX_WAIT;
        let mut work = self.shared.lock();
        while work.running || !work.wanted.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("store: a checkpoint takes longer than 10 s; writing on");
                return;
            }
            work = sync::wait_timeout(&self.shared.changed, work, left);
        }
    }

    /// Waits for a running checkpoint to end and holds off the next one while the guard
    /// lives (retention deletes files under it).
    pub(crate) fn pause(&self) -> MutexGuard<'_, Work> {
        let mut work = self.shared.lock();
        while work.running {
            work = sync::wait(&self.shared.changed, work);
        }
        work
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread: the requested checkpoints, until the writer is gone.
fn run(shared: &Shared) {
    let mut work = shared.lock();
    loop {
        if work.wanted.is_empty() {
            if work.closed {
                return;
            }
            work = sync::wait(&shared.changed, work);
            continue;
        }
        let wanted = std::mem::take(&mut work.wanted);
        work.running = true;
        drop(work);
        let mut wal_bytes = 0;
        for path in wanted {
            match checkpoint(&path) {
                Ok(bytes) => wal_bytes = wal_bytes.max(bytes),
                Err(e) => {
                    tracing::warn!(partition = %path.display(), error = %e, "store: checkpoint failed; the writer checkpoints when the WAL is large");
                }
            }
        }
        work = shared.lock();
        work.running = false;
        work.wal_bytes = wal_bytes;
        shared.changed.notify_all();
    }
}

/// A `PASSIVE` checkpoint of the partition at `path`, on a connection of its own, after
/// its side file of HEP bytes (versions 3 to 5) is synced: a row in the database file points to
/// bytes on the disk. Returns the size of the WAL it found, bytes.
///
/// The file is opened without `CREATE`: one deleted meanwhile is not made again.
fn checkpoint(path: &Path) -> Result<u64, StoreError> {
    if !path.exists() {
        return Ok(0);
    }
    hepfile::sync(path)?;
    let sql = |e| StoreError::sqlite(path, e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    let (busy, log, copied): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(sql)?;
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(sql)?;
    tracing::debug!(partition = %path.display(), busy, log, copied, "store: checkpoint");
    // Each frame of the WAL is a page and a 24-byte header.
    Ok((log.max(0) * (page_size + 24)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    /// A WAL database `dir/db` that checkpoints only when asked, with a table `t` and
    /// whatever `sql` writes then.
    fn wal_db(dir: &TempDir, sql: &str) -> (PathBuf, Connection) {
        let path = dir.path().join("db");
        let writer = Connection::open(&path).expect("open");
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x BLOB); {sql}"
            ))
            .expect("write");
        (path, writer)
    }

    #[test]
    fn a_requested_checkpoint_copies_the_wal_into_the_file() {
        let dir = TempDir::new("ckpt-copies");
        let (path, writer) = wal_db(&dir, "INSERT INTO t VALUES (zeroblob(100000));");
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
    fn after_wait_idle_the_next_transaction_starts_the_wal_over() {
        let dir = TempDir::new("ckpt-restart");
        let (path, writer) = wal_db(&dir, "");
        let wal = dir.path().join("db-wal");
        let wal_len = || std::fs::metadata(&wal).expect("the WAL").len();
        let ckpt = Checkpointer::spawn("test").expect("the thread");
        let mut lengths = Vec::new();
        for _ in 0..5 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(200000))", [])
                .expect("write");
            ckpt.request(&path);
            ckpt.wait_idle();
            lengths.push(wal_len());
        }
        // Each transaction found the WAL copied and wrote from its start again: the file
        // keeps the size of one transaction instead of growing by one each time.
        assert!(
            lengths.windows(2).all(|w| w[1] <= w[0]),
            "the WAL grew: {lengths:?}"
        );
    }

    #[test]
    fn a_checkpoint_reports_the_size_of_the_wal_it_found() {
        let dir = TempDir::new("ckpt-size");
        let (path, writer) = wal_db(&dir, "");
        let ckpt = Checkpointer::spawn("test").expect("the thread");
        assert_eq!(ckpt.wal_bytes(), 0, "no checkpoint yet");
        for _ in 0..3 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(200000))", [])
                .expect("write");
        }
        ckpt.request(&path);
        ckpt.wait_idle();
        let found = ckpt.wal_bytes();
        assert!(
            (600_000..1_000_000).contains(&found),
            "three rows of 200 kB and their pages: {found}"
        );
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
