//! Writing a store: [`Store`] writes each [`Batch`] in one transaction per partition, with
//! a prepared insert (the batch's rows are built beforehand, on the thread that fills
//! it).
//!
//! WAL checkpoints run on a thread of their own, the checkpointer's
//! (`super::checkpoint`). Before each batch the free space of the filesystem is checked:
//! below `[store] min_free_mb` the batch is dropped and counted (`reason="disk_low"`),
//! the disk is never filled. Retention runs at start, when a new partition is created and
//! every 10 seconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hep_transport::RateLimitedWarn;
use rusqlite::{Connection, Statement};

use super::StoreError;
use super::checkpoint::{Checkpointer, WAL_MAX_BYTES, WAL_RESTART_BYTES};
use super::config::StoreConfig;
use super::hepfile::HepFile;
use super::partition::{self, LOCK_FILE, Partition};
use super::retention::{self, Aged, Limits};
use super::row::{Batch, RecvText, Row, RowPlan};
use super::schema::{self, RowIds, Version};
use crate::time::now_usec;

/// Retention runs at least this often.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// At most one line this often about agents' clocks.
const SKEW_WARN_EVERY: Duration = Duration::from_secs(10);
/// Partitions kept open for writing: the current one and the one before (a batch across
/// the end of a span).
const MAX_OPEN: usize = 2;

/// What a store reports besides what it wrote ([`Written`]): its gauges (partitions and
/// bytes on disk), the partitions retention removed, and the messages whose agent's clock
/// is off.
#[derive(Debug)]
pub struct StoreStats {
    name: String,
    partitions: AtomicU64,
    bytes: AtomicU64,
    removed: AtomicU64,
    clock_skew: AtomicU64,
    duplicates: AtomicU64,
    /// Microseconds the writer spent in transactions (inserts and commits).
    writing_us: AtomicU64,
    /// Microseconds the writer waited for checkpoints before a transaction.
    checkpoint_wait_us: AtomicU64,
}

impl StoreStats {
    /// Counters of the store named `name` in logs and thread names (the output's spec).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            partitions: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            clock_skew: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            writing_us: AtomicU64::new(0),
            checkpoint_wait_us: AtomicU64::new(0),
        }
    }

    /// Microseconds the writer spent in its transactions (inserts and commits): how busy the
    /// one thread every message's insert goes through is.
    pub fn writing_micros(&self) -> u64 {
        self.writing_us.load(Ordering::Relaxed)
    }

    /// Microseconds the writer waited for the checkpointer before a transaction, so that the
    /// WAL could start over.
    pub fn checkpoint_wait_micros(&self) -> u64 {
        self.checkpoint_wait_us.load(Ordering::Relaxed)
    }

    /// Messages from another collector that the store already held (redeliveries of a
    /// cluster's stream), not stored again.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages stored whose capture time was further from their receive time than
    /// `[store] clock_skew_warn_secs`.
    pub fn clock_skewed(&self) -> u64 {
        self.clock_skew.load(Ordering::Relaxed)
    }

    /// Partition files in the store.
    pub fn partitions(&self) -> u64 {
        self.partitions.load(Ordering::Relaxed)
    }

    /// Bytes the store's files take on disk, as of the last retention pass.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Partition files retention deleted (age or size).
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }
}

/// An open store directory, written by one thread at a time, one [`Batch`] at a time.
///
/// Dropped in the order of the fields: the checkpointer's thread ends, then the
/// connections close (the last one checkpoints and deletes the WAL), then the lock goes.
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    /// Copies the WAL into the partition files after commits.
    checkpointer: Checkpointer,
    /// Open connections and their row ids, least recently used first.
    open: Vec<Open>,
    /// Every partition on disk, by (start, span).
    partitions: BTreeMap<(i64, i64), Partition>,
    /// What the batch being written gathers (kept between batches for its capacity).
    scratch: Scratch,
    stats: Arc<StoreStats>,
    last_retention: Instant,
    /// Why the last batch was refused, for a log line on each change.
    disk_low: bool,
    /// At most a line every [`SKEW_WARN_EVERY`] about agents' clocks, and the messages
    /// counted since the last one.
    skew_warn: RateLimitedWarn,
    skewed_since_warn: u64,
    /// Held for the writer's life: a second collector on the same directory is refused.
    _lock: File,
}

/// What a batch's insert gathers besides its rows.
#[derive(Default)]
struct Scratch {
    /// The HEP bytes (versions 3 to 5), appended to the side file in one write.
    hep_bytes: Vec<u8>,
    /// The Call-ID hash and row id of each message of the batch with a Call-ID (versions 4
    /// on: its call ranges).
    call_rows: Vec<(i64, i64)>,
    /// A range's offsets being written (version 7).
    offsets: String,
}

/// A partition open for writing.
struct Open {
    partition: Partition,
    /// The side file of the HEP bytes (versions 3 to 5; `None` for earlier versions, which keep
    /// them in the rows).
    hep: Option<HepFile>,
    conn: Connection,
    /// The file's schema: a file left by an earlier build gets rows of its version.
    version: Version,
    ids: RowIds,
    /// Whether `received_keys` is known to exist (made when the first message from
    /// another collector comes; a file fed by listeners only never has it).
    keys_table: bool,
}

impl Drop for Open {
    /// Closing the last connection checkpoints the WAL into the database: the bytes its
    /// rows point to go to the disk first.
    fn drop(&mut self) {
        if let Some(h) = &self.hep
            && let Err(e) = h.sync()
        {
            tracing::warn!(error = %e, "store: cannot sync the side file");
        }
    }
}

/// Adds each call's range of the batch to `call_ranges` (versions 4 on): its first and
/// last row id; from version 7 also the offsets of its rows from the first, to
/// `call_rows` in the order of their first rows (appended). `call_rows` (Call-ID hash,
/// row id) is sorted and emptied.
fn add_call_ranges(
    tx: &rusqlite::Transaction<'_>,
    version: Version,
    call_rows: &mut Vec<(i64, i64)>,
    offsets: &mut String,
) -> rusqlite::Result<()> {
    use std::fmt::Write as _;
    if call_rows.is_empty() {
        return Ok(());
    }
    call_rows.sort_unstable();
    let mut calls: Vec<&[(i64, i64)]> = call_rows.chunk_by(|a, b| a.0 == b.0).collect();
    let mut add = tx.prepare_cached(schema::ADD_CALL_RANGE)?;
    for call in &calls {
        add.execute([call[0].0, call[0].1, call[call.len() - 1].1])?;
    }
    if version.has_call_rows() {
        calls.sort_unstable_by_key(|call| call[0].1);
        let mut add = tx.prepare_cached(schema::ADD_CALL_ROWS)?;
        for call in calls {
            let first = call[0].1;
            offsets.clear();
            offsets.push('[');
            for (i, (_, id)) in call.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(offsets, "{comma}{}", id - first);
            }
            offsets.push(']');
            add.execute(rusqlite::params![first, offsets.as_str()])?;
        }
    }
    call_rows.clear();
    Ok(())
}

/// Adds the microseconds since `since` to `counter`.
fn add_micros(counter: &AtomicU64, since: Instant) {
    let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
    counter.fetch_add(us, Ordering::Relaxed);
}

/// Tries at most this many ids for one message (taken ones are skipped).
const MAX_ID_TRIES: u32 = 1 << 20;

/// What one batch came to: every message of it is stored, failed or refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written {
    /// Messages stored.
    pub stored: u64,
    /// Messages that could not be stored: a changed message that did not encode again,
    /// or a failed insert.
    pub failed: u64,
    /// Messages refused because the filesystem's free space was below `[store]
    /// min_free_mb`.
    pub disk_low: u64,
    /// Messages from another collector (a cluster's edge) that the store already held
    /// (a redelivery): not stored again.
    pub duplicates: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens `dir` (creating it), locks it, checks every file in it, and applies
    /// retention once.
    ///
    /// # Errors
    /// The directory cannot be created or locked (another process writes it), or holds a
    /// file that is not a partition of the store (named in the error).
    pub fn open(
        dir: &Path,
        config: StoreConfig,
        stats: Arc<StoreStats>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock = lock(dir)?;
        let partitions = partition::scan(dir)?
            .into_iter()
            .map(|p| ((p.start, p.span), p))
            .collect();
        let checkpointer = Checkpointer::spawn(stats.name()).map_err(|e| StoreError::io(dir, e))?;
        let mut w = Self {
            dir: dir.to_path_buf(),
            config,
            _lock: lock,
            partitions,
            scratch: Scratch::default(),
            open: Vec::new(),
            checkpointer,
            stats,
            last_retention: Instant::now(),
            disk_low: false,
            skew_warn: RateLimitedWarn::new(SKEW_WARN_EVERY),
            skewed_since_warn: 0,
        };
        w.retention(now_usec() / 1_000_000);
        Ok(w)
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// What the rows of a batch depend on.
    fn plan(&self) -> RowPlan {
        RowPlan::of(&self.config)
    }

    /// An empty batch for this store. It may be filled on another thread (its rows are
    /// built as messages are added), then given to [`write`](Self::write).
    pub fn batch(&self) -> Batch {
        Batch::new(self.plan())
    }

    /// Writes one batch (its rows built here), each message received at the time
    /// `received` gives it (us).
    #[cfg(test)]
    pub(crate) fn write_received<M: std::ops::Deref<Target = hep_transport::Received>>(
        &mut self,
        batch: &[M],
        received: impl Fn(&M) -> i64,
    ) -> Written {
        let mut rows = self.batch();
        for m in batch {
            rows.add(m, received(m));
        }
        self.write(rows)
    }

    /// Writes `rows`, one transaction per partition it touches (one; two for a batch
    /// across the end of a partition's span), and applies retention when it is due.
    pub fn write(&mut self, mut rows: Batch) -> Written {
        let mut out = Written {
            failed: rows.failed,
            ..Written::default()
        };
        self.clock_skew(&rows);
        if self.free_space_is_low() {
            out.disk_low = rows.taken - rows.failed;
            return out;
        }
        let span = self.plan().span();
        let mut created = false;
        rows.sort();
        for group in rows.by_partition() {
            let n = group.len() as u64;
            match self.insert(group[0].partition, span, &rows, group, &mut created) {
                Ok(duplicates) => {
                    out.stored += n - duplicates;
                    out.duplicates += duplicates;
                    self.stats
                        .duplicates
                        .fetch_add(duplicates, Ordering::Relaxed);
                }
                Err(e) => {
                    out.failed += n;
                    tracing::warn!(error = %e, messages = n, "store: write failed");
                }
            }
        }
        if created || self.last_retention.elapsed() >= RETENTION_EVERY {
            self.retention(now_usec() / 1_000_000);
        }
        out
    }

    /// Inserts `group`, rows of `all` in the partition starting at `start`.
    fn insert(
        &mut self,
        start: i64,
        span: i64,
        all: &Batch,
        group: &[Row],
        created: &mut bool,
    ) -> Result<u64, StoreError> {
        let p = Partition::holding(&self.dir, start, span);
        let path = p.path.clone();
        // For this transaction to write the WAL from its start again, the checkpoints of
        // the commits before (which ran while it was inserting) must be done.
        if self.checkpointer.wal_bytes() > WAL_RESTART_BYTES {
            let waited = Instant::now();
            self.checkpointer.wait_idle();
            add_micros(&self.stats.checkpoint_wait_us, waited);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.hep_bytes.clear();
        scratch.call_rows.clear();
        let writing = Instant::now();
        let done = self.insert_rows(p, all, group, created, &mut scratch);
        add_micros(&self.stats.writing_us, writing);
        self.scratch = scratch;
        let duplicates = done?;
        // After the commit: the checkpoint copies it into the file.
        let open = self.open.last_mut().expect("the connection just used");
        self.checkpointer.request(&path);
        let wal = open.partition.files()[1].clone();
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_MAX_BYTES) {
            // The checkpointer fell behind (or failed): bound the WAL here. The batch is
            // committed whatever this does; the rows' bytes go to the disk first.
            let synced = open.hep.as_ref().map_or(Ok(()), HepFile::sync);
            if let Err(e) = synced.and_then(|()| {
                open.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(|e| StoreError::sqlite(&path, e))
            }) {
                tracing::warn!(partition = %path.display(), error = %e, "store: checkpoint failed");
            }
        }
        Ok(duplicates)
    }

    /// Inserts `group` (rows of `all`) into the partition `p` in one transaction. For a
    /// file of version 3 or 4 their HEP bytes are gathered in the scratch's `hep_bytes`
    /// and appended to its side file with one write before the commit; for version 4
    /// each call's first and last row go into `call_ranges`.
    fn insert_rows(
        &mut self,
        p: Partition,
        all: &Batch,
        group: &[Row],
        created: &mut bool,
        scratch: &mut Scratch,
    ) -> Result<u64, StoreError> {
        let path = p.path.clone();
        let open = self.connection(p, created)?;
        let sql = |e| StoreError::sqlite(&path, e);
        let mut ids = open.ids;
        let version = open.version;
        let hep_start = open.hep.as_ref().map_or(0, HepFile::end);
        let Scratch {
            hep_bytes,
            call_rows,
            offsets,
        } = scratch;
        let mut duplicates = 0;
        let tx = open.conn.transaction().map_err(sql)?;
        {
            let mut insert = tx.prepare_cached(version.insert()).map_err(sql)?;
            let mut recv = RecvText::default();
            for r in group {
                if let Some(key) = r.key {
                    // Its key first: a message the store holds (a redelivery) stops here.
                    if !open.keys_table {
                        tx.execute_batch(schema::CREATE_RECEIVED_KEYS)
                            .map_err(sql)?;
                        open.keys_table = true;
                    }
                    let mut seen = tx.prepare_cached(schema::ADD_RECEIVED_KEY).map_err(sql)?;
                    if seen.execute([key]).map_err(sql)? == 0 {
                        duplicates += 1;
                        continue;
                    }
                }
                bind(&mut insert, version, all, r, recv.changed(r)).map_err(sql)?;
                if version.has_side_file() {
                    let offset = hep_start + hep_bytes.len() as u64;
                    insert.raw_bind_parameter(20, offset as i64).map_err(sql)?;
                    hep_bytes.extend_from_slice(&r.hep);
                }
                let mut id = ids.first(r.ts);
                let mut tries = 0;
                loop {
                    insert.raw_bind_parameter(1, id).map_err(sql)?;
                    let done = insert.raw_execute();
                    tries += 1;
                    match done {
                        Ok(_) => break,
                        // Taken (a late message, or rows of an earlier run): the next id.
                        Err(rusqlite::Error::SqliteFailure(e, _))
                            if e.code == rusqlite::ErrorCode::ConstraintViolation
                                && tries < MAX_ID_TRIES =>
                        {
                            id += 1;
                        }
                        Err(e) => return Err(sql(e)),
                    }
                }
                ids.stored(r.ts, id);
                if let Some(h) = r.call_hash.filter(|_| version.has_call_ranges()) {
                    call_rows.push((h, id));
                }
            }
        }
        add_call_ranges(&tx, version, call_rows, offsets).map_err(sql)?;
        if let Some(hep) = &mut open.hep {
            // Before the commit: a committed row never points past what was written.
            hep.append(hep_bytes)?;
            tx.execute(schema::SET_HEP_END, [hep.end() as i64])
                .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        // After the commit: a failed batch leaves the ids as they were.
        open.ids = ids;
        Ok(duplicates)
    }

    /// The open connection to `p`, opening (and creating) it if needed; it is then the
    /// last of `open`.
    fn connection(&mut self, p: Partition, created: &mut bool) -> Result<&mut Open, StoreError> {
        if let Some(i) = self.open.iter().position(|o| o.partition == p) {
            let o = self.open.remove(i);
            self.open.push(o);
        } else {
            let exists = p.path.exists();
            if exists {
                partition::check_header(&p.path)?;
            }
            let (conn, version) = schema::open_for_write(&p.path)?;
            let hep = if version.has_side_file() {
                let sql = |e| StoreError::sqlite(&p.path, e);
                let committed_end: i64 = conn
                    .query_row(schema::HEP_END, [], |r| r.get(0))
                    .map_err(sql)?;
                let (hep, lost) = HepFile::open(&p.path, committed_end.max(0) as u64)?;
                if let Some((from, to)) = lost {
                    // Recorded before anything is written after the gap.
                    conn.execute(schema::ADD_HEP_LOST, [from as i64, to as i64])
                        .map_err(sql)?;
                }
                Some(hep)
            } else {
                None
            };
            if !exists {
                *created = true;
                tracing::info!(partition = %p.path.display(), "store: new partition");
            }
            self.partitions.insert((p.start, p.span), p.clone());
            if self.open.len() >= MAX_OPEN {
                // Closing checkpoints the WAL into the file.
                self.open.remove(0);
            }
            self.open.push(Open {
                partition: p,
                hep,
                conn,
                version,
                ids: RowIds::default(),
                keys_table: false,
            });
        }
        Ok(self.open.last_mut().expect("just pushed"))
    }

    /// Deletes the partitions past the age or size limit; updates the gauges.
    fn retention(&mut self, now_secs: i64) {
        self.last_retention = Instant::now();
        let limits = Limits {
            max_age: (self.config.max_age_hours > 0)
                .then(|| self.config.max_age_hours as i64 * 3_600),
            max_bytes: (self.config.max_size_mb > 0).then_some(self.config.max_size_mb << 20),
        };
        // Oldest received first (not the names' order: see `Partition::received_until`).
        let mut aged: Vec<(Partition, Aged)> = self
            .partitions
            .values()
            .map(|p| {
                let age = Aged {
                    received_until: p.received_until(),
                    bytes: p.bytes(),
                };
                (p.clone(), age)
            })
            .collect();
        aged.sort_by_key(|(p, a)| (a.received_until, p.start));
        let sizes: Vec<Aged> = aged.iter().map(|(_, a)| *a).collect();
        let mut removed = 0u64;
        let doomed = retention::to_delete(&sizes, now_secs, limits);
        // No checkpoint runs while files are deleted (it would write into them).
        let _paused = (!doomed.is_empty()).then(|| self.checkpointer.pause());
        for i in doomed {
            let p = &aged[i].0;
            // Close it first: SQLite must not write a file we are deleting.
            self.open.retain(|o| o.partition != *p);
            let mut ok = true;
            for f in p.files() {
                match std::fs::remove_file(&f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        ok = false;
                        tracing::warn!(file = %f.display(), error = %e, "store: cannot delete an expired partition");
                    }
                }
            }
            if ok {
                tracing::info!(partition = %p.path.display(), "store: retention removed a partition");
                self.partitions.remove(&(p.start, p.span));
                removed += 1;
            }
        }
        self.stats.removed.fetch_add(removed, Ordering::Relaxed);
        self.stats
            .partitions
            .store(self.partitions.len() as u64, Ordering::Relaxed);
        let bytes: u64 = self.partitions.values().map(Partition::bytes).sum();
        self.stats.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Counts the batch's messages whose capture and receive times are too far apart, and
    /// says so (at most a line every [`SKEW_WARN_EVERY`]): they are stored all the same,
    /// by receive time, and found by their capture time.
    fn clock_skew(&mut self, rows: &Batch) {
        let Some((peer, skew_usec)) = rows.last_skew else {
            return;
        };
        self.stats
            .clock_skew
            .fetch_add(rows.skewed, Ordering::Relaxed);
        self.skewed_since_warn += rows.skewed;
        if self.skew_warn.check().is_some() {
            tracing::warn!(
                output = %self.stats.name(),
                reason = "clock_skew",
                peer = %peer,
                skew_secs = skew_usec / 1_000_000,
                messages = std::mem::take(&mut self.skewed_since_warn),
                max_skew_secs = self.config.clock_skew_warn_secs,
                "store: capture time far from receive time (an agent's clock is off, or a capture is replayed); stored by receive time, searched by capture time"
            );
        }
    }

    /// Whether the filesystem's free space is below `min_free_mb` (logged on each change).
    fn free_space_is_low(&mut self) -> bool {
        let floor = self.config.min_free_mb << 20;
        if floor == 0 {
            return false;
        }
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "store: cannot read the free space");
                return false;
            }
        };
        let low = free < floor;
        if low != self.disk_low {
            if low {
                tracing::error!(
                    dir = %self.dir.display(),
                    free_mb = free >> 20,
                    min_free_mb = self.config.min_free_mb,
                    "store: free space below the floor: messages are dropped (reason disk_low) until there is room"
                );
            } else {
                tracing::info!(dir = %self.dir.display(), "store: free space above the floor again: writing");
            }
            self.disk_low = low;
        }
        low
    }
}

/// Binds the values of `r` (its text in `rows`) to a prepared insert of `version` (all
/// but the id, `?1`, and in versions 3 to 5 the offset of the HEP bytes, `?20`); the receive info's text only when
/// `recv` has it (it changed since the row before).
///
/// One call a parameter on the cached statement: no slice of trait objects built for each
/// row, and a bound value stays bound (SQLite keeps the bindings across executions).
fn bind(
    insert: &mut Statement<'_>,
    version: Version,
    rows: &Batch,
    r: &Row,
    recv: Option<(&str, &str, &str)>,
) -> rusqlite::Result<()> {
    insert.raw_bind_parameter(2, r.ts)?;
    insert.raw_bind_parameter(3, r.recv_ts)?;
    insert.raw_bind_parameter(4, r.proto_type)?;
    insert.raw_bind_parameter(5, r.capture_id)?;
    insert.raw_bind_parameter(6, rows.text(r.src))?;
    insert.raw_bind_parameter(7, rows.text(r.dst))?;
    insert.raw_bind_parameter(8, rows.text(r.call_id))?;
    insert.raw_bind_parameter(9, rows.text(r.method))?;
    insert.raw_bind_parameter(10, r.status)?;
    insert.raw_bind_parameter(11, r.cseq)?;
    insert.raw_bind_parameter(12, rows.text(r.from_user))?;
    insert.raw_bind_parameter(13, rows.text(r.from_tag))?;
    insert.raw_bind_parameter(14, rows.text(r.to_user))?;
    insert.raw_bind_parameter(15, rows.text(r.to_tag))?;
    insert.raw_bind_parameter(16, rows.text(r.correlation_id))?;
    // Bound again only when they change (still bound from the row before otherwise).
    if let Some((transport, peer, listener)) = recv {
        insert.raw_bind_parameter(17, transport)?;
        insert.raw_bind_parameter(18, peer)?;
        insert.raw_bind_parameter(19, listener)?;
    }
    match version {
        Version::V1 => insert.raw_bind_parameter(20, &r.hep[..])?,
        Version::V2 => {
            insert.raw_bind_parameter(20, &r.hep[..])?;
            insert.raw_bind_parameter(21, r.call_hash)?;
            insert.raw_bind_parameter(22, r.correlation_hash)?;
        }
        Version::V3 | Version::V4 | Version::V5 | Version::V6 | Version::V7 => {
            // `?20`, the offset in the side file, is bound by the caller.
            insert.raw_bind_parameter(21, r.hep.len() as i64)?;
            insert.raw_bind_parameter(22, r.call_hash)?;
            insert.raw_bind_parameter(23, r.correlation_hash)?;
            if version.has_node() {
                insert.raw_bind_parameter(24, rows.text(r.node))?;
            }
        }
    }
    Ok(())
}

/// Locks `dir/hep-store.lock` (an advisory lock, released when the process ends).
fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            StoreError::foreign(
                &path,
                "the store is in use by another hep-server (its lock is held); give each \
             collector its own directory",
            )
        },
    )?;
    Ok(file)
}
