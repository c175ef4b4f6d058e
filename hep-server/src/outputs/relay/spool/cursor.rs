//! The persisted read position of a spool: where to resume sending after a restart.
//!
//! ```text
//! b"HEPSPCUR" | version u32 LE (1) | resume: segment u64, offset u64
//!             | delivered: segment u64, offset u64 | crc32 u32 LE (of all before)
//! ```
//!
//! Written atomically: a temporary file is written and synced, renamed over `cursor`, and
//! the directory is synced, so a crash leaves either the old or the new cursor.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::{Pos, SpoolError};

/// The file name of the cursor in a spool directory.
pub(super) const FILE: &str = "cursor";
const MAGIC: &[u8; 8] = b"HEPSPCUR";
const VERSION: u32 = 1;
const LEN: usize = 8 + 4 + 32 + 4;

/// The two positions a spool persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Cursor {
    /// Where sending resumes: the start of the replay window (see the module docs of
    /// [`super`]).
    pub(super) resume: Pos,
    /// The end of the last record known written to the destination; records between
    /// `resume` and here are sent again after a restart and counted as replayed.
    pub(super) delivered: Pos,
}

impl Cursor {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0; LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let fields = [
            self.resume.segment,
            self.resume.offset,
            self.delivered.segment,
            self.delivered.offset,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[12 + i * 8..20 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..LEN - 4]);
        b[LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(path: &Path, b: &[u8]) -> Result<Self, SpoolError> {
        if b.len() != LEN || &b[..8] != MAGIC {
            return Err(SpoolError::Foreign(path.to_owned()));
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != VERSION {
            return Err(SpoolError::Version {
                path: path.to_owned(),
                version,
            });
        }
        let crc = u32::from_le_bytes([b[LEN - 4], b[LEN - 3], b[LEN - 2], b[LEN - 1]]);
        if crc32fast::hash(&b[..LEN - 4]) != crc {
            return Err(SpoolError::CorruptCursor(path.to_owned()));
        }
        let field = |i: usize| {
            let mut v = [0; 8];
            v.copy_from_slice(&b[12 + i * 8..20 + i * 8]);
            u64::from_le_bytes(v)
        };
        Ok(Self {
            resume: Pos::new(field(0), field(1)),
            delivered: Pos::new(field(2), field(3)),
        })
    }
}

/// The cursor of the spool in `dir`, `None` if it has none yet.
///
/// # Errors
/// A file that is not a cursor, of another version or with a wrong CRC, or an IO error.
pub(super) fn load(dir: &Path) -> Result<Option<Cursor>, SpoolError> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(b) => Cursor::decode(&path, &b).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::io(&path, e)),
    }
}

/// Replaces the cursor of the spool in `dir`, atomically and durably.
///
/// # Errors
/// An IO error; the previous cursor is then still in place.
pub(super) fn store(dir: &Path, cursor: &Cursor) -> Result<(), SpoolError> {
    let path = dir.join(FILE);
    crate::durable::replace(
        &path,
        &cursor.encode(),
        super::private_file(&mut fs::OpenOptions::new()),
    )
    .map_err(|e| SpoolError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn a_stored_cursor_loads_back_and_replaces_the_previous_one() {
        let dir = TempDir::new("cursor-roundtrip");
        assert_eq!(load(dir.path()).unwrap(), None);
        let a = Cursor {
            resume: Pos::new(3, 16),
            delivered: Pos::new(4, 1_000),
        };
        store(dir.path(), &a).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(a));
        let b = Cursor {
            resume: Pos::new(4, 1_000),
            delivered: Pos::new(4, 1_000),
        };
        store(dir.path(), &b).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(b));
        assert!(!dir.path().join("cursor.tmp").exists());
    }

    #[test]
    fn a_damaged_or_foreign_cursor_is_an_error_not_a_guess() {
        let dir = TempDir::new("cursor-damaged");
        let c = Cursor {
            resume: Pos::new(1, 16),
            delivered: Pos::new(1, 16),
        };
        let mut b = c.encode();
        b[20] ^= 1;
        fs::write(dir.path().join(FILE), b).unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, SpoolError::CorruptCursor(_)), "{e}");
        fs::write(dir.path().join(FILE), b"resume=12\n").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, SpoolError::Foreign(_)), "{e}");
    }
}
