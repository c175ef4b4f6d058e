//! Partitions: one SQLite file per span of receive time, named after its start.
//!
//! `hep-20261126T090000Z-3600s.db` holds the messages received from 2026-11-26 09:00:00
//! UTC for 3600 seconds (whatever time their agents put in them: see [`super`], "Two
//! clocks"). The name tells retention what a file covers, so old data goes by deleting
//! whole files, never by `DELETE` of rows. Files of schema versions 1 to 4 were named
//! after their messages' capture time, which an agent chooses; retention takes such a
//! file's last write as its end when that is earlier ([`Partition::received_until`]). SQLite's `-wal`, `-shm` and
//! `-journal` files sit beside their partition, and so does (schema versions 3 to 5) the
//! side file of its HEP bytes, `hep-20261126T090000Z-3600s.hep` ([`super::hepfile`]);
//! `hep-store.lock` marks a directory in use. A cluster consumer keeps how far it has
//! read the stream beside the store it fills (`*.positions`, [`POSITIONS_SUFFIX`]), so the
//! two go together. Anything else in the directory is not ours: [`scan`] refuses it by name (or a side file by its header) instead of touching
//! it.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::StoreError;
use super::hepfile;
use super::schema::{APPLICATION_ID, SCHEMA_VERSION};
use crate::read::read_full;
use crate::time::{civil_from_days, days_from_civil};

/// The lock file of a store directory.
pub const LOCK_FILE: &str = "hep-store.lock";
/// How the files a NATS input keeps its positions in end (`crate::inputs`): left alone.
pub const POSITIONS_SUFFIX: &str = ".positions";
/// The suffixes SQLite adds to a database's name for its side files.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// One partition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Start of the covered receive time, Unix seconds.
    pub start: i64,
    /// Length of the covered time, seconds.
    pub span: i64,
    /// The database file.
    pub path: PathBuf,
}

impl Partition {
    /// The partition of `dir` holding receive time `ts_secs`, for partitions of `span`
    /// seconds (aligned on multiples of `span` since the epoch: hours on the hour, days
    /// at midnight UTC).
    pub fn holding(dir: &Path, ts_secs: i64, span: i64) -> Self {
        let start = ts_secs.div_euclid(span) * span;
        Self {
            start,
            span,
            path: dir.join(file_name(start, span)),
        }
    }

    /// End of the covered receive time (exclusive), Unix seconds.
    pub const fn end(&self) -> i64 {
        self.start.saturating_add(self.span)
    }

    /// The latest its messages can have been received, Unix seconds: the end of its span,
    /// or the last write of any of its files when that is earlier.
    ///
    /// Retention goes by this, not by the name alone: a file of schema versions 1 to 4 is
    /// named after its messages' capture time, which an agent chooses, so one named a
    /// year ahead by a wrong clock must not count as the newest data of the store (and
    /// have the current hour deleted for size). A copy of a store, whose files get the
    /// time of the copy, is kept by the names' ends as before.
    pub fn received_until(&self) -> i64 {
        let written = self
            .files()
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match written {
            // Received by the end of the second of the last write.
            Some(secs) => self.end().min(secs.saturating_add(1)),
            None => self.end(),
        }
    }

    /// Bytes on disk: the database, SQLite's files beside it and the HEP bytes' file.
    pub fn bytes(&self) -> u64 {
        self.files()
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The database file, SQLite's `-wal`, `-shm` and `-journal`, then the HEP bytes'
    /// file (`.hep`, versions 3 to 5); all but the first may not exist.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.path.clone()];
        for suffix in SIDE_FILES {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            files.push(p.into());
        }
        files.push(hepfile::path_of(&self.path));
        files
    }
}

/// `hep-20261126T090000Z-3600s.db`.
///
/// ```
/// use hep_server::store::partition::{file_name, parse_file_name};
/// assert_eq!(file_name(1_795_651_200, 3600), "hep-20261126T000000Z-3600s.db");
/// assert_eq!(parse_file_name("hep-20261126T000000Z-3600s.db"), Some((1_795_651_200, 3600)));
/// ```
pub fn file_name(start: i64, span: i64) -> String {
    let (y, m, d) = civil_from_days(start.div_euclid(86_400));
    let sod = start.rem_euclid(86_400);
    format!(
        "hep-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{span}s.db",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}

/// The start and span of a partition file name; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("hep-")?.strip_suffix("s.db")?;
    let (stamp, span) = rest.split_once("Z-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if stamp.len() != 15 || stamp.as_bytes()[8] != b'T' || !digits(span) {
        return None;
    }
    let (date, time) = (&stamp[..8], &stamp[9..]);
    if !digits(date) || !digits(time) {
        return None;
    }
    let n = |s: &str| s.parse::<i64>().ok();
    let (y, m, d) = (n(&date[..4])?, n(&date[4..6])?, n(&date[6..])?);
    let (hh, mm, ss) = (n(&time[..2])?, n(&time[2..4])?, n(&time[4..])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let span = n(span).filter(|&s| s > 0)?;
    let start = days_from_civil(y, m as u32, d as u32) * 86_400 + hh * 3_600 + mm * 60 + ss;
    Some((start, span))
}

/// The partitions in `dir`, oldest first, each checked to be a store database of a
/// schema this build reads.
///
/// # Errors
/// [`StoreError::Foreign`] naming the first file that is not a partition, its side file
/// (a `.hep` file also needs its header) or the lock (a foreign file is never touched);
/// IO errors reading the directory.
pub fn scan(dir: &Path) -> Result<Vec<Partition>, StoreError> {
    let io = |e| StoreError::io(dir, e);
    let mut partitions = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(StoreError::foreign(&path, "its name is not UTF-8"));
        };
        // A dedicated filesystem mounted on the directory brings this one.
        if name == LOCK_FILE
            || (name == "lost+found" && path.is_dir())
            || name.ends_with(POSITIONS_SUFFIX)
            || name.ends_with(&format!("{POSITIONS_SUFFIX}.tmp"))
        {
            continue;
        }
        if let Some(main) = SIDE_FILES.iter().find_map(|s| name.strip_suffix(s))
            && parse_file_name(main).is_some()
        {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".hep")
            && parse_file_name(&format!("{stem}.db")).is_some()
        {
            hepfile::check(&path)?;
            continue;
        }
        let Some((start, span)) = parse_file_name(name) else {
            return Err(StoreError::foreign(
                &path,
                "this is not a partition of the store (expected names like \
                 hep-20261126T090000Z-3600s.db, their -wal/-shm and .hep files, \
                 hep-store.lock and a NATS input's .positions)",
            ));
        };
        if !entry.file_type().map_err(io)?.is_file() {
            return Err(StoreError::foreign(
                &path,
                "a partition name, but not a file",
            ));
        }
        check_header(&path)?;
        partitions.push(Partition { start, span, path });
    }
    partitions.sort_by_key(|p| (p.start, p.span));
    Ok(partitions)
}

/// Checks the 100-byte SQLite header: the magic, our application id, a schema version
/// we read. An empty file (created, never written) passes.
///
/// # Errors
/// [`StoreError::Foreign`] saying what the file is instead.
pub fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut header = [0u8; 100];
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let n = read_full(&mut f, &mut header).map_err(|e| StoreError::io(path, e))?;
    if n == 0 {
        return Ok(());
    }
    if n < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Err(StoreError::foreign(
            path,
            "not an SQLite database (corrupt, or another program's file); expected a \
             hep-server store partition",
        ));
    }
    let be = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (app, version) = (be(68), be(60));
    if app != APPLICATION_ID {
        return Err(StoreError::foreign(
            path,
            format!(
                "an SQLite database of another application (application_id {app:#010x}, \
                 a hep-server partition has {APPLICATION_ID:#010x})"
            ),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::foreign(
            path,
            format!(
                "written by a newer hep-server (schema version {version}; this one reads up \
                 to {SCHEMA_VERSION})"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_inputs_positions_beside_the_store_are_left_alone_and_other_files_refused() {
        let dir = crate::testing::TempDir::new("partition-positions");
        for name in ["nats-HEP-0-31.positions", "nats-HEP-0-31.positions.tmp"] {
            std::fs::write(dir.path().join(name), "stream HEP\n").unwrap();
        }
        assert_eq!(scan(dir.path()).unwrap(), Vec::new());
        std::fs::write(dir.path().join("positions"), "").unwrap();
        let e = scan(dir.path()).unwrap_err().to_string();
        assert!(e.contains("NATS input's .positions"), "{e}");
    }

    #[test]
    fn names_round_trip_and_align_on_the_span() {
        let p = Partition::holding(Path::new("/s"), 1_795_670_509, 3_600);
        assert_eq!(p.start, 1_795_669_200);
        assert_eq!(p.path, Path::new("/s/hep-20261126T050000Z-3600s.db"));
        assert_eq!(p.end(), 1_795_672_800);
        let day = Partition::holding(Path::new("/s"), 1_795_670_509, 86_400);
        assert_eq!(
            file_name(day.start, day.span),
            "hep-20261126T000000Z-86400s.db"
        );
        for (start, span) in [(0, 60), (-3_600, 3_600), (4_102_444_800, 86_400)] {
            assert_eq!(
                parse_file_name(&file_name(start, span)),
                Some((start, span))
            );
        }
    }

    #[test]
    fn other_names_are_not_partitions() {
        for name in [
            "hep-20261126T050000Z-3600s.db-wal",
            "hep-20261126T050000Z-3600s.hep",
            "hep-20261126T050000Z-0s.db",
            "hep-20261326T050000Z-3600s.db",
            "hep-20261126T250000Z-3600s.db",
            "hep-2026112T050000Z-3600s.db",
            "notes.txt",
            "hep-20261126T050000Z-3600.db",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }
}
