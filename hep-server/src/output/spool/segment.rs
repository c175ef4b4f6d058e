//! One segment file: a header, then length-prefixed records, each with a CRC32.
//!
//! ```text
//! header  (16 bytes): b"HEPSPOOL" | version u32 LE (1) | reserved u32 (0)
//! record:             length u32 LE | crc32 u32 LE (of the payload) | payload
//! ```
//!
//! Segments are only appended to, and named by a 20-digit id (`00000000000000000007.seg`)
//! so that they sort in the order they were written.

use std::fs::File;
use std::io::{self, BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use super::SpoolError;
use crate::read::read_full;

/// First bytes of every segment.
pub(super) const MAGIC: &[u8; 8] = b"HEPSPOOL";
/// The format this code writes and reads.
pub(super) const VERSION: u32 = 1;
/// Header length: records start here.
pub(super) const HEADER_LEN: u64 = 16;
/// Length and CRC in front of each payload.
pub(super) const RECORD_HEADER_LEN: u64 = 8;
/// A longer record is corrupt: a HEP message is at most 65,535 bytes on a stream, and a
/// re-encoded one is not much longer.
pub(super) const MAX_RECORD_LEN: u32 = 1 << 20;

/// The file name of segment `id`.
pub(super) fn file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The id of a segment file name, `None` for any other name.
pub(super) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of a new segment.
pub(super) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends one record carrying `payload` to `out`.
pub(super) fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads and checks the header of the segment at `path`.
///
/// # Errors
/// [`SpoolError::Foreign`] when the file is not a spool segment (too short, other magic),
/// [`SpoolError::Version`] for a segment of another format version.
pub(super) fn check_header(path: &Path, file: &mut impl Read) -> Result<(), SpoolError> {
    let mut h = [0; HEADER_LEN as usize];
    match file.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            return Err(SpoolError::Foreign(path.to_owned()));
        }
        Err(e) => return Err(SpoolError::io(path, e)),
    }
    if &h[..8] != MAGIC {
        return Err(SpoolError::Foreign(path.to_owned()));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != VERSION {
        return Err(SpoolError::Version {
            path: path.to_owned(),
            version,
        });
    }
    Ok(())
}

/// What reading one record found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// A whole record whose CRC matches.
    Valid(Vec<u8>),
    /// Nothing more: the end of the file is exactly here.
    End,
    /// The file ends inside the record (a write cut short by a crash).
    Torn,
    /// A length beyond [`MAX_RECORD_LEN`] or a payload whose CRC does not match.
    Corrupt,
}

/// Reads the record at the reader's position.
///
/// # Errors
/// IO errors other than the end of the file.
pub(super) fn read_record(r: &mut impl Read) -> io::Result<Record> {
    let mut h = [0; RECORD_HEADER_LEN as usize];
    match read_full(r, &mut h)? {
        0 => return Ok(Record::End),
        n if n < h.len() => return Ok(Record::Torn),
        _ => {}
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_RECORD_LEN {
        return Ok(Record::Corrupt);
    }
    let mut payload = vec![0; len as usize];
    if read_full(r, &mut payload)? < payload.len() {
        return Ok(Record::Torn);
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(Record::Corrupt);
    }
    Ok(Record::Valid(payload))
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    /// Bytes of the header and the valid records: where the next record goes.
    pub(super) valid_len: u64,
    /// Valid records.
    pub(super) records: u64,
    /// Valid records that start at or after the `from` offset given to [`scan`].
    pub(super) records_from: u64,
    /// What ended the valid records early, if anything did.
    pub(super) damage: Option<Damage>,
}

/// Why a segment's valid records end before the file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Damage {
    /// The last record is incomplete.
    TornTail,
    /// A record is corrupt; it and everything after it is lost.
    Corrupt,
}

/// Reads a whole segment, checking its header and every record's CRC.
///
/// # Errors
/// A foreign file or another version (see [`check_header`]), or an IO error.
pub(super) fn scan(path: &Path, from: u64) -> Result<Scan, SpoolError> {
    let file = File::open(path).map_err(|e| SpoolError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    check_header(path, &mut r)?;
    let mut scan = Scan {
        valid_len: HEADER_LEN,
        records: 0,
        records_from: 0,
        damage: None,
    };
    loop {
        match read_record(&mut r).map_err(|e| SpoolError::io(path, e))? {
            Record::Valid(p) => {
                if scan.valid_len >= from {
                    scan.records_from += 1;
                }
                scan.records += 1;
                scan.valid_len += RECORD_HEADER_LEN + p.len() as u64;
            }
            Record::End => break,
            Record::Torn => {
                scan.damage = Some(Damage::TornTail);
                break;
            }
            Record::Corrupt => {
                scan.damage = Some(Damage::Corrupt);
                break;
            }
        }
    }
    Ok(scan)
}

/// A reader positioned at `offset` of the segment at `path`, its header checked.
///
/// # Errors
/// As [`check_header`], or an IO error.
pub(super) fn open_at(path: &Path, offset: u64) -> Result<BufReader<File>, SpoolError> {
    let file = File::open(path).map_err(|e| SpoolError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    check_header(path, &mut r)?;
    r.seek(SeekFrom::Start(offset.max(HEADER_LEN)))
        .map_err(|e| SpoolError::io(path, e))?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[&[u8]]) -> Vec<u8> {
        let mut v = header().to_vec();
        for r in records {
            encode_record(&mut v, r);
        }
        v
    }

    #[test]
    fn names_sort_in_writing_order_and_other_names_are_not_segments() {
        assert_eq!(file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert!(file_name(9) < file_name(10));
        for other in [
            "cursor",
            "7.seg",
            "0000000000000000000x.seg",
            "00000000000000000007",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn records_read_back_in_order_then_end() {
        let bytes = segment(&[b"one", b"", b"three"]);
        let mut r = &bytes[HEADER_LEN as usize..];
        assert_eq!(read_record(&mut r).unwrap(), Record::Valid(b"one".to_vec()));
        assert_eq!(read_record(&mut r).unwrap(), Record::Valid(Vec::new()));
        assert_eq!(
            read_record(&mut r).unwrap(),
            Record::Valid(b"three".to_vec())
        );
        assert_eq!(read_record(&mut r).unwrap(), Record::End);
    }

    #[test]
    fn a_record_cut_anywhere_is_torn() {
        let bytes = segment(&[b"payload"]);
        let body = &bytes[HEADER_LEN as usize..];
        for cut in 1..body.len() {
            let mut r = &body[..cut];
            assert_eq!(read_record(&mut r).unwrap(), Record::Torn, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_or_an_absurd_length_is_corrupt() {
        let bytes = segment(&[b"payload"]);
        let mut body = bytes[HEADER_LEN as usize..].to_vec();
        body[10] ^= 1;
        assert_eq!(read_record(&mut &body[..]).unwrap(), Record::Corrupt);
        let mut body = bytes[HEADER_LEN as usize..].to_vec();
        body[..4].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
        assert_eq!(read_record(&mut &body[..]).unwrap(), Record::Corrupt);
    }

    #[test]
    fn a_header_of_another_program_or_version_is_refused() {
        let p = Path::new("x.seg");
        assert!(check_header(p, &mut &header()[..]).is_ok());
        let e = check_header(p, &mut &b"GIF89a.........."[..]).unwrap_err();
        assert!(matches!(e, SpoolError::Foreign(_)), "{e}");
        assert!(
            e.to_string().contains("not a hep-server spool segment"),
            "{e}"
        );
        let e = check_header(p, &mut &b"HEPS"[..]).unwrap_err();
        assert!(matches!(e, SpoolError::Foreign(_)), "{e}");
        let mut v2 = header();
        v2[8] = 2;
        let e = check_header(p, &mut &v2[..]).unwrap_err();
        assert!(matches!(e, SpoolError::Version { version: 2, .. }), "{e}");
    }
}
