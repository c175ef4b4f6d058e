//! The disk spool of a relay output (`relay:...;spool=DIR`): a write-ahead log the relay
//! sends from.
//!
//! # Why every message goes through the spool
//!
//! A spooling relay appends **every** message to the spool and sends only what it reads
//! back from it, in order. Spilling to disk only while the destination is down would
//! need a hand-over between the in-memory path and the disk path at every outage (the
//! spooled backlog first, new messages held back until it is drained, and the two paths'
//! positions agreed); with one path there is nothing to hand over and no way to reorder.
//! What it costs is one buffered `write` per batch of messages and an `fsync` per
//! [`SpoolConfig::sync_interval_ms`]; the data is read back from the page cache. The
//! periodic `fsync`s run on the relay's task in `block_in_place` (the runtime moves the
//! worker's other tasks elsewhere meanwhile); the relay's queue absorbs the pause.
//!
//! # On disk
//!
//! A directory of append-only segment files (`segment.rs`: a header with a magic and a
//! version, then records of `length | crc32 | payload`), and a `cursor` file (`cursor.rs`)
//! with the position to resume from, replaced atomically. On open the segments are
//! checked record by record. A record that does not verify starts a damaged span that
//! ends at the next offset where a whole record verifies (records are framed and CRC'd,
//! so the search resynchronises), or at the end of the file: a span in the middle is
//! skipped when reading, a damaged tail is cut off. Each span is logged, and the
//! messages it held that were not yet sent are counted as `spool_corrupt` (through
//! their length fields where those are intact, else estimated from its bytes; see
//! [`SpoolStats::dropped_corrupt`]). A file with a segment's name that is not a segment,
//! or a cursor that is not one, is refused with an error naming it.
//!
//! # Bounds
//!
//! - [`SpoolConfig::max_bytes`]: over it, the oldest whole segments are deleted and the
//!   messages in them not yet sent are counted as dropped (`spool_full`).
//! - [`SpoolConfig::sync_interval_ms`] and [`SpoolConfig::sync_messages`]: what a power cut
//!   or a kernel crash can lose. A `kill -9` loses nothing written to the spool (it is in
//!   the page cache); it loses the messages still in the relay's in-memory queue.
//!
//! # Delivery contract: at-least-once, duplicates bounded and counted
//!
//! A write the kernel accepted is not a message the destination received: when the
//! destination dies, what sits in the socket buffers of both ends is lost, and HEP has no
//! acknowledgement to tell. So the relay keeps a replay window of written messages: those
//! the destination may not have read, as the sender measures on the connection
//! ([`HepSender::unconfirmed_bytes`](hep_transport::HepSender::unconfirmed_bytes): the
//! bytes its kernel has not acknowledged, and an allowance for its receive buffer from
//! the windows it advertised) plus a margin for its application's read buffer, and at
//! most the last [`SpoolConfig::replay_bytes`] (all of those where nothing is measured).
//! After a failed write (or a restart: the window's start is the stored resume position)
//! it resumes sending from the start of that window. Messages sent again that had been
//! written before are counted as replayed (`hep_relay_replayed_total`): per failure at
//! most the window plus the messages in flight (`hep_async_max_postponed_chunks`). After
//! a `kill -9`, the messages sent in the last sync interval may be sent again without
//! being counted (the cursor saying they were sent was not yet on disk). Loss: none, as
//! long as what the destination lost in its buffers fits in the window.

mod config;
mod cursor;
mod segment;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

pub use config::SpoolConfig;
pub use stats::SpoolStats;

use cursor::Cursor;
pub(crate) use segment::RECORD_HEADER_LEN;
use segment::{Damage, HEADER_LEN, Record};

/// A place in the spool: a segment and a byte offset in it. Later places compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    segment: u64,
    offset: u64,
}

impl Pos {
    pub(crate) const fn new(segment: u64, offset: u64) -> Self {
        Self { segment, offset }
    }

    const fn start(segment: u64) -> Self {
        Self::new(segment, HEADER_LEN)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// A spool that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// Reading or writing a file of the spool failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file named like a spool file that is not one: the directory is not (only) a
    /// spool; nothing is overwritten.
    #[error(
        "{}: not a hep-server spool segment or cursor (wrong magic); is the spool \
         directory shared with something else?",
        .0.display()
    )]
    Foreign(PathBuf),
    /// A spool file of a format version this build does not read.
    #[error("{}: spool format version {version}, this build reads version 1", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// The cursor file's CRC does not match.
    #[error(
        "{}: the spool cursor is damaged (CRC mismatch); remove it to resend the whole spool",
        .0.display()
    )]
    CorruptCursor(PathBuf),
}

impl SpoolError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes written to the file (header and whole records).
    len: u64,
    /// Valid records.
    records: u64,
    /// Damaged spans found in it, skipped when reading (in order).
    damage: Vec<Damage>,
}

impl Segment {
    const fn new(id: u64) -> Self {
        Self {
            id,
            len: HEADER_LEN,
            records: 0,
            damage: Vec::new(),
        }
    }

    /// The mean length of its valid records, headers included.
    fn mean_record_len(&self) -> u64 {
        let damaged: u64 = self.damage.iter().map(Damage::bytes).sum();
        match (self.len - HEADER_LEN).saturating_sub(damaged) / self.records.max(1) {
            0 => segment::ASSUMED_RECORD_LEN,
            mean => mean,
        }
    }

    /// The end of the damaged span `offset` lies in, if it lies in one.
    fn skip(&self, offset: u64) -> Option<u64> {
        self.damage
            .iter()
            .find(|d| d.start <= offset && offset < d.end)
            .map(|d| d.end)
    }
}

/// A record read back from the spool.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Where it starts.
    pub(crate) start: Pos,
    /// Where the next one starts.
    pub(crate) end: Pos,
    /// The encoded HEP message.
    pub(crate) bytes: Bytes,
}

/// An open spool: appends at the head segment, reads from the read position.
pub(crate) struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    /// Oldest first; the last one is the head, appended to.
    segments: VecDeque<Segment>,
    head: File,
    /// Encoded records not yet written to `head`.
    pending: Vec<u8>,
    pending_records: u64,
    /// Records written since the last `fsync`.
    unsynced: u64,
    read: Pos,
    reader: Option<(u64, BufReader<File>)>,
    cursor: Cursor,
    persisted: Option<Cursor>,
    stats: Arc<SpoolStats>,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("read", &self.read)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: checks every segment, cuts off a damaged
    /// tail, deletes segments wholly sent, and starts a new head segment.
    ///
    /// # Errors
    /// A foreign file, another format version, a damaged cursor, or an IO error.
    pub(crate) fn open(
        dir: &Path,
        config: SpoolConfig,
        stats: Arc<SpoolStats>,
    ) -> Result<Self, SpoolError> {
        private_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))? {
            let entry = entry.map_err(|e| SpoolError::io(dir, e))?;
            if let Some(id) = entry.file_name().to_str().and_then(segment::parse_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let saved = cursor::load(dir)?;
        let mut cur = saved.unwrap_or_else(|| {
            let first = Pos::start(ids.first().copied().unwrap_or(1));
            Cursor {
                resume: first,
                delivered: first,
            }
        });

        let mut segments = VecDeque::with_capacity(ids.len() + 1);
        let mut backlog = 0;
        for id in ids {
            let path = dir.join(segment::file_name(id));
            if id < cur.resume.segment {
                // Sent before the last cursor was stored; its deletion did not happen.
                fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
                continue;
            }
            let from = match id.cmp(&cur.delivered.segment) {
                std::cmp::Ordering::Less => u64::MAX,
                std::cmp::Ordering::Equal => cur.delivered.offset,
                std::cmp::Ordering::Greater => 0,
            };
            let scan = segment::scan(&path, from)?;
            let mean = scan.mean_record_len();
            for d in &scan.damage {
                stats.count_damage(d, mean, d.start >= from);
                let what = if d.tail {
                    "cutting off a damaged tail (a write cut short, or corrupt records)"
                } else {
                    "skipping corrupt records to the next valid one"
                };
                tracing::warn!(
                    segment = %path.display(),
                    offset = d.start,
                    bytes = d.bytes(),
                    records = d.records(mean),
                    counted = d.counted.is_some(),
                    unsent = d.start >= from,
                    "spool: {what}"
                );
            }
            if scan.valid_len
                < fs::metadata(&path)
                    .map_err(|e| SpoolError::io(&path, e))?
                    .len()
            {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| SpoolError::io(&path, e))?;
                f.set_len(scan.valid_len)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| SpoolError::io(&path, e))?;
            }
            backlog += scan.records_from;
            segments.push_back(Segment {
                id,
                len: scan.valid_len,
                records: scan.records,
                damage: scan.damage.into_iter().filter(|d| !d.tail).collect(),
            });
        }

        // A new head: records appended from now on come after every saved position.
        let head_id = segments
            .back()
            .map_or(0, |s| s.id)
            .max(cur.resume.segment)
            .max(cur.delivered.segment)
            + 1;
        let head = create_segment(dir, head_id)?;
        segments.push_back(Segment::new(head_id));

        // Positions in segments deleted by a full spool move to the next one.
        let first = Pos::start(segments[0].id);
        let clamp = |p: Pos| {
            if p < first {
                return first;
            }
            match segments.iter().find(|s| s.id == p.segment) {
                Some(s) if p.offset > s.len => Pos::new(s.id, s.len),
                Some(_) => p,
                None => segments
                    .iter()
                    .find(|s| s.id > p.segment)
                    .map_or(first, |s| Pos::start(s.id)),
            }
        };
        cur.resume = clamp(cur.resume);
        cur.delivered = clamp(cur.delivered).max(cur.resume);

        stats.messages.store(backlog, Ordering::Relaxed);
        stats
            .bytes
            .store(segments.iter().map(|s| s.len).sum(), Ordering::Relaxed);
        if backlog > 0 {
            tracing::info!(
                spool = %dir.display(),
                messages = backlog,
                resume = %cur.resume,
                "spool: resending what the last run did not send"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            config,
            segments,
            head,
            pending: Vec::with_capacity(1 << 16),
            pending_records: 0,
            unsynced: 0,
            read: cur.resume,
            reader: None,
            cursor: cur,
            persisted: saved,
            stats,
        })
    }

    /// The spool's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bounds.
    pub(crate) fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &Arc<SpoolStats> {
        &self.stats
    }

    /// Appends one message (written to the file at the next [`flush`](Self::flush)).
    ///
    /// # Errors
    /// Writing the segment or starting the next one failed.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<(), SpoolError> {
        segment::encode_record(&mut self.pending, payload);
        self.pending_records += 1;
        let head_len = self.segments.back().map_or(0, |s| s.len);
        if head_len + self.pending.len() as u64 >= self.config.segment_bytes {
            self.flush()?;
            self.roll()?;
        }
        Ok(())
    }

    /// Whether appended messages wait for an `fsync` that
    /// [`SpoolConfig::sync_messages`] asks for now.
    pub(crate) fn sync_due(&self) -> bool {
        self.unsynced + self.pending_records >= self.config.sync_messages
    }

    /// Writes the appended messages to the head segment (one `write`), then deletes the
    /// oldest segments while the spool is over `max_bytes`.
    ///
    /// # Errors
    /// The write failed.
    pub(crate) fn flush(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let head = self.segments.back_mut().expect("a spool always has a head");
        if let Err(e) = self.head.write_all(&self.pending) {
            let path = self.dir.join(segment::file_name(head.id));
            // The file may now end inside a record; the next open cuts it off. Start a
            // new segment so that later records are readable.
            self.stats
                .write_failed
                .fetch_add(self.pending_records, Ordering::Relaxed);
            self.pending.clear();
            self.pending_records = 0;
            let _ = self.roll();
            return Err(SpoolError::io(&path, e));
        }
        head.len += self.pending.len() as u64;
        head.records += self.pending_records;
        self.unsynced += self.pending_records;
        let (records, bytes) = (self.pending_records, self.pending.len() as u64);
        self.pending.clear();
        self.pending_records = 0;
        // The gauges take the new records only once the bound is kept again, so that
        // they never show a spool over its bound.
        let kept = self.keep_bound();
        self.stats.messages.fetch_add(records, Ordering::Relaxed);
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        kept
    }

    /// Deletes the oldest segments while the spool is over `max_bytes` (never the head).
    fn keep_bound(&mut self) -> Result<(), SpoolError> {
        let mut total: u64 = self.segments.iter().map(|s| s.len).sum();
        while total > self.config.max_bytes && self.segments.len() > 1 {
            total -= self.drop_oldest()?;
        }
        Ok(())
    }

    /// Makes what was appended durable (`fsync`), stores the cursor if it moved, and
    /// deletes the segments wholly before it.
    ///
    /// # Errors
    /// An IO error; the spool stays usable (the next sync tries again).
    pub(crate) fn sync(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        if self.unsynced > 0 {
            let id = self.segments.back().map_or(0, |s| s.id);
            self.head
                .sync_data()
                .map_err(|e| SpoolError::io(&self.dir.join(segment::file_name(id)), e))?;
            self.unsynced = 0;
        }
        if self.persisted != Some(self.cursor) {
            cursor::store(&self.dir, &self.cursor)?;
            self.persisted = Some(self.cursor);
        }
        // Segments before the stored resume position are sent: no longer needed.
        while self.segments.len() > 1 && self.segments[0].id < self.cursor.resume.segment {
            if let Some(s) = self.segments.pop_front() {
                self.remove(&s)?;
            }
        }
        Ok(())
    }

    /// The next record from the read position, `None` when every record was read.
    ///
    /// Damaged spans found when the spool was opened are skipped. A record found damaged
    /// here (the disk changed under the spool) is skipped to the next valid record,
    /// counted (`spool_corrupt`, if not yet delivered) and remembered, so that reading it
    /// again (a replay) does not count it twice.
    ///
    /// # Errors
    /// An IO error reading the segment.
    pub(crate) fn next(&mut self) -> Result<Option<Entry>, SpoolError> {
        loop {
            let Some(i) = self.segments.iter().position(|s| s.id >= self.read.segment) else {
                return Ok(None);
            };
            let seg = &self.segments[i];
            if seg.id != self.read.segment {
                self.read = Pos::start(seg.id);
                self.reader = None;
            }
            if let Some(end) = seg.skip(self.read.offset) {
                self.read.offset = end;
                self.reader = None;
            }
            if self.read.offset >= seg.len {
                if i + 1 == self.segments.len() {
                    return Ok(None);
                }
                self.read = Pos::start(self.segments[i + 1].id);
                self.reader = None;
                continue;
            }
            let id = seg.id;
            let path = self.dir.join(segment::file_name(id));
            let reader = match &mut self.reader {
                Some((rid, r)) if *rid == id => r,
                slot => {
                    &mut slot
                        .insert((id, segment::open_at(&path, self.read.offset)?))
                        .1
                }
            };
            match segment::read_record(reader).map_err(|e| SpoolError::io(&path, e))? {
                Record::Valid(payload)
                    if self.read.offset + RECORD_HEADER_LEN + payload.len() as u64 <= seg.len =>
                {
                    let start = self.read;
                    self.read.offset += RECORD_HEADER_LEN + payload.len() as u64;
                    return Ok(Some(Entry {
                        start,
                        end: self.read,
                        bytes: Bytes::from(payload),
                    }));
                }
                found => {
                    let d = segment::Window::open(&path)
                        .and_then(|mut w| w.damage_at(self.read.offset, seg.len))
                        .map_err(|e| SpoolError::io(&path, e))?;
                    let mean = seg.mean_record_len();
                    let unsent = self.read >= self.cursor.delivered;
                    self.stats.count_damage(&d, mean, unsent);
                    tracing::warn!(
                        segment = %path.display(),
                        offset = d.start,
                        ?found,
                        bytes = d.bytes(),
                        records = d.records(mean),
                        counted = d.counted.is_some(),
                        unsent,
                        "spool: damaged record; skipping to the next valid one"
                    );
                    if unsent {
                        let lost = d.records(mean);
                        let _ = self.stats.messages.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |n| Some(n.saturating_sub(lost)),
                        );
                    }
                    self.read.offset = d.end;
                    self.reader = None;
                    let seg = &mut self.segments[i];
                    seg.records = seg.records.saturating_sub(d.records(mean));
                    seg.damage.push(d);
                    seg.damage.sort_by_key(|d| d.start);
                }
            }
        }
    }

    /// Reads from `to` again (after a failed write: the replay window).
    pub(crate) fn rewind(&mut self, to: Pos) {
        self.read = to;
        self.reader = None;
    }

    /// The record ending at `end` was written to the destination.
    pub(crate) fn delivered(&mut self, end: Pos) {
        if end > self.cursor.delivered {
            self.cursor.delivered = end;
            let _ = self
                .stats
                .messages
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
    }

    /// The end of the last record known written.
    pub(crate) fn delivered_pos(&self) -> Pos {
        self.cursor.delivered
    }

    /// Where sending resumes after a failure or a restart.
    pub(crate) fn resume_pos(&self) -> Pos {
        self.cursor.resume
    }

    /// Where a restart resumes sending (stored at the next [`sync`](Self::sync)).
    pub(crate) fn set_resume(&mut self, pos: Pos) {
        self.cursor.resume = pos.max(Pos::start(self.segments[0].id));
    }

    /// Closes the head segment and starts the next one.
    fn roll(&mut self) -> Result<(), SpoolError> {
        let id = self.segments.back().map_or(0, |s| s.id);
        self.head
            .sync_data()
            .map_err(|e| SpoolError::io(&self.dir.join(segment::file_name(id)), e))?;
        self.unsynced = 0;
        self.head = create_segment(&self.dir, id + 1)?;
        self.segments.push_back(Segment::new(id + 1));
        self.stats.bytes.fetch_add(HEADER_LEN, Ordering::Relaxed);
        self.keep_bound()
    }

    /// Deletes the oldest segment because the spool is full; its bytes.
    fn drop_oldest(&mut self) -> Result<u64, SpoolError> {
        let Some(s) = self.segments.pop_front() else {
            return Ok(0);
        };
        let delivered = self.cursor.delivered;
        let unsent = match s.id.cmp(&delivered.segment) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Greater => s.records,
            std::cmp::Ordering::Equal => {
                let path = self.dir.join(segment::file_name(s.id));
                segment::scan(&path, delivered.offset)?.records_from
            }
        };
        self.remove(&s)?;
        self.stats.dropped_full.fetch_add(unsent, Ordering::Relaxed);
        let _ = self
            .stats
            .messages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(unsent))
            });
        tracing::warn!(
            spool = %self.dir.display(),
            segment = s.id,
            messages = unsent,
            "spool full (max_bytes {}): dropped the oldest segment",
            self.config.max_bytes
        );
        let first = Pos::start(self.segments[0].id);
        self.cursor.resume = self.cursor.resume.max(first);
        self.cursor.delivered = self.cursor.delivered.max(first);
        if self.read < first {
            self.rewind(first);
        }
        Ok(s.len)
    }

    fn remove(&self, s: &Segment) -> Result<(), SpoolError> {
        let path = self.dir.join(segment::file_name(s.id));
        fs::remove_file(&path).map_err(|e| SpoolError::io(&path, e))?;
        self.stats.bytes.fetch_sub(s.len, Ordering::Relaxed);
        Ok(())
    }
}

/// Creates segment `id` in `dir` with its header, durably.
fn create_segment(dir: &Path, id: u64) -> Result<File, SpoolError> {
    let path = dir.join(segment::file_name(id));
    let mut f = private_file(OpenOptions::new().append(true).create_new(true))
        .open(&path)
        .map_err(|e| SpoolError::io(&path, e))?;
    f.write_all(&segment::header())
        .and_then(|()| f.sync_data())
        .and_then(|()| crate::durable::sync_dir(dir))
        .map_err(|e| SpoolError::io(&path, e))?;
    Ok(f)
}

/// Creates `dir` (and its parents) if needed; a directory this creates is readable by
/// its owner only: it holds captured traffic (SECURITY.md).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// `options` creating files readable by their owner only.
pub(super) fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}
