//! The side file of a version-3 or -4 partition: the HEP bytes of its messages, appended one
//! batch at a time, which the rows point into (`hep_offset`, `hep_len`).
//!
//! Why a file of its own: about 600 of a row's 700 bytes are the HEP message. In the
//! SQLite file they were packed into B-tree pages, written into the WAL at commit and a
//! second time into the database at the checkpoint. Here they are written once, with one
//! `write` a batch, and read back with positioned reads.
//!
//! `hep-20261126T090000Z-3600s.hep` beside `hep-20261126T090000Z-3600s.db`: a 16-byte
//! header ([`MAGIC`], the format version as a big-endian `u32`, 4 bytes zero), then the
//! messages' bytes one after the other, nothing between them. A file that does not start
//! with the header is not ours and is never written.
//!
//! # Durability
//! The same as the rows' (WAL, `synchronous = NORMAL`): a batch's bytes are written
//! before its transaction commits (a committed row never points past what was written),
//! and the checkpointer syncs the file before it copies the WAL into the database (so a
//! checkpointed row's bytes are on disk). After a power cut the file may hold bytes
//! no row points to (the writer appends after them), or be shorter than the last commits
//! say: the partition records the end the committed rows point into (`hep_file`), the
//! writer appends after that end, never into bytes a surviving row points to, and records
//! the range lost (`hep_lost`); a row pointing there or past the file's end is reported
//! by a search, which goes on with the others.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::StoreError;
use crate::read::read_full;

/// The first 8 bytes of a side file.
pub const MAGIC: [u8; 8] = *b"HEPSBYTE";
/// The format version in the header.
pub const FORMAT: u32 = 1;
/// Length of the header; the first message's bytes start here.
pub const HEADER_LEN: u64 = 16;
/// No HEP message is longer (its length field is 16 bits): a longer `hep_len` is damage.
pub const MAX_MESSAGE: u64 = 65_535;

/// The header of a new side file.
fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_be_bytes());
    h
}

/// The side file of the partition `db` (`.db` replaced by `.hep`).
///
/// ```
/// use std::path::Path;
/// use hep_server::store::hepfile::path_of;
/// assert_eq!(
///     path_of(Path::new("/s/hep-20261126T090000Z-3600s.db")),
///     Path::new("/s/hep-20261126T090000Z-3600s.hep")
/// );
/// ```
pub fn path_of(db: &Path) -> PathBuf {
    db.with_extension("hep")
}

/// Checks that `path` starts with the header of a side file of a format this build
/// reads. An empty file (created, never written) passes.
///
/// # Errors
/// [`StoreError::Foreign`] saying what is wrong; IO errors.
pub fn check(path: &Path) -> Result<(), StoreError> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    check_open(&mut f, path)
}

fn check_open(f: &mut File, path: &Path) -> Result<(), StoreError> {
    let mut h = [0u8; HEADER_LEN as usize];
    let n = read_full(f, &mut h).map_err(|e| StoreError::io(path, e))?;
    if n == 0 {
        return Ok(());
    }
    if n < h.len() || h[..8] != MAGIC {
        return Err(StoreError::foreign(
            path,
            "not a side file of a hep-server partition (expected the header HEPSBYTE; \
             corrupt, or another program's file)",
        ));
    }
    let format = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if format != FORMAT {
        return Err(StoreError::foreign(
            path,
            format!("side file format {format}: this hep-server reads format {FORMAT}"),
        ));
    }
    Ok(())
}

/// A side file open for appending, written by the store thread.
#[derive(Debug)]
pub(crate) struct HepFile {
    path: PathBuf,
    file: File,
    /// Where the next bytes go: the file's end as this writer knows it.
    end: u64,
}

impl HepFile {
    /// Opens (creating it, with its header) the side file of the partition `db`; the
    /// next bytes go after both the file's end and `committed_end`, the end the
    /// partition's committed rows point into. That is larger after a crash that lost the
    /// file's tail: the gap (returned, for the partition to record as lost) becomes a
    /// hole with the next write, and no old row points at new bytes.
    ///
    /// # Errors
    /// The file is not a side file ([`StoreError::Foreign`], the file is left as it is),
    /// or cannot be opened or written.
    pub(crate) fn open(
        db: &Path,
        committed_end: u64,
    ) -> Result<(Self, Option<(u64, u64)>), StoreError> {
        let path = path_of(db);
        let io = |e| StoreError::io(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        check_open(&mut file, &path)?;
        let mut len = file.metadata().map_err(io)?.len();
        if len == 0 {
            file.write_all_at(&header(), 0).map_err(io)?;
            len = HEADER_LEN;
        }
        let end = len.max(committed_end);
        let lost = (end > len).then(|| {
            tracing::warn!(
                file = %path.display(),
                len,
                committed_end,
                "store: the side file is shorter than its partition's rows say (a crash lost its tail); those messages are reported by searches, new ones go after them"
            );
            (len, end)
        });
        Ok((Self { path, file, end }, lost))
    }

    /// Where the next appended bytes start.
    pub(crate) const fn end(&self) -> u64 {
        self.end
    }

    /// Appends `bytes` (a batch's messages, one after the other) with one write.
    ///
    /// # Errors
    /// The write failed; the end is then read again from the file.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        match self.file.write_all_at(bytes, self.end) {
            Ok(()) => {
                self.end += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Part of it may be written: later bytes go after whatever is there.
                if let Ok(m) = self.file.metadata() {
                    self.end = self.end.max(m.len());
                }
                Err(StoreError::io(&self.path, e))
            }
        }
    }

    /// Flushes the file's data to the disk.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

/// Syncs the side file of the partition `db`, if it has one (before a checkpoint copies
/// rows pointing into it into the database).
///
/// # Errors
/// The file exists but cannot be opened or synced.
pub(crate) fn sync(db: &Path) -> Result<(), StoreError> {
    let path = path_of(db);
    match File::open(&path) {
        Ok(f) => f.sync_data().map_err(|e| StoreError::io(&path, e)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// A side file open for reading by a search.
#[derive(Debug)]
pub(crate) struct Reader {
    path: PathBuf,
    /// `None`: the file is missing (every read is then reported).
    file: Option<File>,
    /// Ranges a crash lost (the partition's `hep_lost`): reads there are reported.
    lost: Vec<(u64, u64)>,
}

impl Reader {
    /// Opens the side file of the partition `db`, checking its header.
    ///
    /// # Errors
    /// The file is not a side file; a missing file is not an error here (its messages are
    /// reported one by one by [`Reader::read`]).
    pub(crate) fn open(db: &Path, lost: Vec<(u64, u64)>) -> Result<Self, StoreError> {
        let path = path_of(db);
        let file = match File::open(&path) {
            Ok(mut f) => {
                check_open(&mut f, &path)?;
                Some(f)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        Ok(Self { path, file, lost })
    }

    /// The `len` bytes at `offset`.
    ///
    /// # Errors
    /// [`StoreError::Foreign`] naming the file and the place when the file is missing,
    /// ends before them (a crash lost its tail) or the place is impossible.
    pub(crate) fn read(&self, offset: i64, len: i64) -> Result<Vec<u8>, StoreError> {
        let damaged = |what: String| {
            StoreError::foreign(
                &self.path,
                format!("{what}: the message's bytes (offset {offset}, {len} bytes) are lost"),
            )
        };
        let (Ok(offset), Ok(len)) = (u64::try_from(offset), u64::try_from(len)) else {
            return Err(damaged("a negative place".into()));
        };
        if offset < HEADER_LEN || len > MAX_MESSAGE {
            return Err(damaged("not a place of a message".into()));
        }
        if self
            .lost
            .iter()
            .any(|&(from, to)| offset < to && offset + len > from)
        {
            return Err(damaged("a crash lost them from the side file".into()));
        }
        let Some(file) = &self.file else {
            return Err(damaged("the side file is missing".into()));
        };
        let mut buf = vec![0u8; len as usize];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                Err(damaged("the side file ends before them".into()))
            }
            Err(e) => Err(StoreError::io(&self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn appended_bytes_are_read_back_at_their_offsets() {
        let dir = TempDir::new("hepfile-round-trip");
        let db = dir.path().join("hep-20261126T090000Z-3600s.db");
        let (mut w, lost) = HepFile::open(&db, 0).expect("opens");
        assert_eq!((w.end(), lost), (HEADER_LEN, None));
        w.append(b"firstsecond").expect("appends");
        let r = Reader::open(&db, Vec::new()).expect("opens");
        assert_eq!(r.read(16, 5).expect("reads"), b"first");
        assert_eq!(r.read(21, 6).expect("reads"), b"second");
        let past = r.read(21, 7).expect_err("past the end").to_string();
        assert!(
            past.contains("ends before them") && past.contains("offset 21"),
            "{past}"
        );
        let r = Reader::open(&db, vec![(23, 25)]).expect("opens");
        let lost = r.read(21, 6).expect_err("in a lost range").to_string();
        assert!(lost.contains("a crash lost them"), "{lost}");
    }

    #[test]
    fn a_reopened_file_appends_after_its_bytes_and_after_the_committed_end() {
        let dir = TempDir::new("hepfile-reopen");
        let db = dir.path().join("p.db");
        let (mut w, _) = HepFile::open(&db, 0).expect("opens");
        w.append(b"abc").expect("appends");
        drop(w);
        let (w, lost) = HepFile::open(&db, 0).expect("reopens");
        assert_eq!((w.end(), lost), (19, None));
        let (mut w, lost) = HepFile::open(&db, 100).expect("reopens");
        assert_eq!(
            (w.end(), lost),
            (100, Some((19, 100))),
            "rows say more was written than survived: new bytes go after their end"
        );
        w.append(b"d").expect("appends");
        assert_eq!(std::fs::metadata(path_of(&db)).expect("exists").len(), 101);
    }

    #[test]
    fn a_file_without_the_header_is_refused_and_left_alone() {
        let dir = TempDir::new("hepfile-foreign");
        let db = dir.path().join("p.db");
        let contents = b"somebody else's bytes, long enough for a header".to_vec();
        std::fs::write(path_of(&db), &contents).expect("writes");
        for e in [
            HepFile::open(&db, 0).map(|_| ()).expect_err("refused"),
            Reader::open(&db, Vec::new()).expect_err("refused"),
            check(&path_of(&db)).expect_err("refused"),
        ] {
            assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
            assert!(e.to_string().contains("HEPSBYTE"), "{e}");
        }
        assert_eq!(std::fs::read(path_of(&db)).expect("reads"), contents);
    }
}
