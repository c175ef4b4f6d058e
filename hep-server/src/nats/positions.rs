//! How far a consumer's outputs have read each partition of the stream: kept by the
//! consumer, in a file of its own, not by the NATS servers.
//!
//! # Why not the servers' durable consumers
//! A durable consumer keeps its position in the cluster, replicated with Raft. In
//! nats-server 2.9 that position can move past messages it never delivered: in the
//! cluster proof, messages stored while a partition's consumer had no leader (a node
//! killed, or every node restarting) were skipped by the next leader and never read,
//! though every replica of the stream held them (6 of 21,000 in one run; in a CI run, 1
//! after a node's kill and 17 of the 3,500 an edge spooled while every node was down).
//! The same shape is reported of later servers (nats-io/nats-server#8036, 2.12). So the
//! consumer reads each partition through an ephemeral consumer (on one server, in
//! memory, no acknowledgements) made to start at a sequence it chose, and makes a new one
//! from its own position whenever the old one is lost or skips: what it has not read is
//! still in the stream (it keeps messages by age), so nothing the servers forget can cost
//! a message.
//!
//! # The file
//! ```text
//! # hep-server NATS input positions: the last stream sequence each partition's outputs have
//! stream HEP
//! 0 1207
//! 1 1311
//! ```
//! The stream's name, then one line per partition. Written atomically (a temporary
//! file, synced, renamed), so a crash leaves the old or the new positions; the old ones
//! only mean reading again what the store already holds (it keeps one copy,
//! `hep_store_duplicates_total`).
//!
//! A stream made again (deleted, or lost with the servers' disks) numbers its messages
//! from 1 again. A position past its last message is seen, and the partition is read
//! from its start (`hep_nats_rewinds_total`); one that its new messages have already
//! passed is not, so whoever makes the stream again removes the positions files too
//! (docs/SCALE-OUT.md). The servers' creation time of the stream cannot tell: nats-server
//! 2.9 gives a stream a new one when the whole cluster restarts.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A positions file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PositionsError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A line that is not what the file holds.
    #[error("{path}, line {line}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// What was wrong.
        reason: String,
    },
}

/// The last stream sequence each partition's outputs have, for one stream.
///
/// ```
/// use hep_server::nats::positions::Positions;
/// let file = std::env::temp_dir().join(format!("doc-{}.positions", std::process::id()));
/// let mut p = Positions::load(&file, "HEP").unwrap(); // no file yet: none
/// assert_eq!(p.done(3), None);
/// p.advance(3, 1_207);
/// p.advance(3, 1_100); // a position never goes back
/// p.save(&file).unwrap();
/// assert_eq!(Positions::load(&file, "HEP").unwrap().done(3), Some(1_207));
/// # std::fs::remove_file(&file).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    stream: String,
    done: BTreeMap<u32, u64>,
}

const HEADER: &str =
    "# hep-server NATS input positions: the last stream sequence each partition's outputs have";

impl Positions {
    /// No positions yet, for `stream`.
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            ..Self::default()
        }
    }

    /// The positions in `path`: none yet if there is no such file, or if it was written
    /// for another stream name (then `stream`'s are empty).
    ///
    /// # Errors
    /// The file cannot be read, or a line is not what it should be (named).
    pub fn load(path: &Path, stream: &str) -> Result<Self, PositionsError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Self::new(stream)),
            Err(source) => {
                return Err(PositionsError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let invalid = |line: usize, reason: String| PositionsError::Invalid {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut p = Self::new(stream);
        let mut named = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (a, b, extra) = (words.next(), words.next(), words.next());
            match (a, b, extra) {
                (Some("stream"), Some(name), None) if named.is_none() => {
                    named = Some(name.to_owned());
                }
                (Some(k), Some(seq), None) if named.is_some() => {
                    let k = k
                        .parse()
                        .map_err(|_| invalid(n, format!("`{k}` is not a partition number")))?;
                    let seq = seq
                        .parse()
                        .map_err(|_| invalid(n, format!("`{seq}` is not a stream sequence")))?;
                    p.done.insert(k, seq);
                }
                _ if named.is_none() => {
                    return Err(invalid(n, "expected `stream NAME` first".into()));
                }
                _ => return Err(invalid(n, "expected `PARTITION SEQUENCE`".into())),
            }
        }
        if named.as_deref() != Some(stream) {
            return Ok(Self::new(stream));
        }
        Ok(p)
    }

    /// Writes them to `path`, atomically: a crash leaves the old file or the new one.
    ///
    /// # Errors
    /// An IO error; the previous file is then still in place.
    pub fn save(&self, path: &Path) -> Result<(), PositionsError> {
        let mut text = format!("{HEADER}\nstream {}\n", self.stream);
        for (k, seq) in &self.done {
            text.push_str(&format!("{k} {seq}\n"));
        }
        crate::durable::replace(path, text.as_bytes(), &mut fs::OpenOptions::new()).map_err(
            |source| PositionsError::Io {
                path: path.to_owned(),
                source,
            },
        )
    }

    /// The last sequence partition `k`'s outputs have, if any.
    pub fn done(&self, k: u32) -> Option<u64> {
        self.done.get(&k).copied()
    }

    /// Partition `k`'s outputs have the message at `sequence` (and every one before).
    pub fn advance(&mut self, k: u32, sequence: u64) {
        let d = self.done.entry(k).or_default();
        *d = (*d).max(sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn saved_positions_load_back_and_only_move_forward() {
        let dir = TempDir::new("positions");
        let path = dir.path().join("nats-HEP-0-3.positions");
        let loaded = Positions::load(&path, "HEP").unwrap();
        assert_eq!(loaded, Positions::new("HEP"), "no file: no positions");
        let mut p = Positions::new("HEP");
        p.advance(0, 12);
        p.advance(0, 9);
        p.advance(3, 40);
        p.save(&path).unwrap();
        let back = Positions::load(&path, "HEP").unwrap();
        assert_eq!(back, p);
        assert_eq!(
            (back.done(0), back.done(3), back.done(1)),
            (Some(12), Some(40), None)
        );
        assert!(!dir.path().join("nats-HEP-0-3.positions.tmp").exists());
        // Another stream's positions are not this one's.
        assert_eq!(
            Positions::load(&path, "CAP").unwrap(),
            Positions::new("CAP")
        );
    }

    #[test]
    fn a_damaged_file_is_refused_naming_its_line() {
        let dir = TempDir::new("positions-bad");
        let path = dir.path().join("p.positions");
        for (text, want) in [
            ("0 12\n", "line 1: expected `stream NAME` first"),
            ("stream HEP 5\n", "line 1: expected `stream NAME` first"),
            (
                "# c\nstream HEP\n0 12\nzero 3\n",
                "line 4: `zero` is not a partition",
            ),
            (
                "stream HEP\n0 -1\n",
                "line 2: `-1` is not a stream sequence",
            ),
            (
                "stream HEP\n0 1 2\n",
                "line 2: expected `PARTITION SEQUENCE`",
            ),
        ] {
            fs::write(&path, text).unwrap();
            let e = Positions::load(&path, "HEP").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("p.positions"), "{e}");
        }
    }
}
