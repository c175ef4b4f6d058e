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
pub(crate) const RECORD_HEADER_LEN: u64 = 8;
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
    /// The file ends inside the record (a write cut short by a crash, or a damaged
    /// length).
    Torn,
    /// A length of 0 or beyond [`MAX_RECORD_LEN`], or a payload whose CRC does not match.
    Corrupt,
}

/// Whether a record's length field can be one the spool wrote. The spool never writes
/// an empty record (a HEP message is never empty), so that a run of zero bytes (what a
/// power cut can leave at the end of a file that grew) is not read as empty records
/// whose CRC, that of nothing, is 0.
const fn plausible_len(len: u32) -> bool {
    len > 0 && len <= MAX_RECORD_LEN
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
    if !plausible_len(len) {
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

/// A run of bytes of a segment that holds no valid record: found damaged, and skipped up
/// to the next offset where a whole record verifies (its length is plausible and its
/// payload has its CRC), or to the end of the segment's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Damage {
    /// Where the first damaged record starts.
    pub(super) start: u64,
    /// Where the next valid record starts, or the end of the data.
    pub(super) end: u64,
    /// Records the span held, when their length fields are intact: following them from
    /// `start` lands exactly on `end`. `None` when a length was damaged too; see
    /// [`Damage::records`].
    pub(super) counted: Option<u64>,
    /// Whether the span runs to the end of the data (no valid record after it).
    pub(super) tail: bool,
}

impl Damage {
    /// Bytes lost.
    pub(super) const fn bytes(&self) -> u64 {
        self.end - self.start
    }

    /// Records lost: counted when the lengths were intact, else estimated from the bytes
    /// lost and `mean`, the mean length of the segment's valid records (header
    /// included), at least 1.
    pub(super) fn records(&self, mean: u64) -> u64 {
        self.counted
            .unwrap_or_else(|| ((self.bytes() + mean / 2) / mean.max(1)).max(1))
    }
}

/// The mean record length (header included) assumed for an estimate when a damaged
/// segment has no valid record to measure: a short SIP request in HEP3.
pub(super) const ASSUMED_RECORD_LEN: u64 = 512;

/// The most payload bytes one resynchronisation checks against CRCs before it gives up
/// and counts the rest of the segment as lost: a span of garbage full of plausible
/// lengths cannot make the scan of one segment take longer than about a second.
pub(super) const RESYNC_CRC_BUDGET: u64 = 1 << 30;

/// A segment file read through a buffer that slides forward, for checking records in
/// place and searching for the next valid one.
pub(super) struct Window {
    file: File,
    /// Bytes of the file from `base` on.
    buf: Vec<u8>,
    base: u64,
}

impl Window {
    /// The segment at `path`.
    ///
    /// # Errors
    /// Opening it failed.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            buf: Vec::new(),
            base: 0,
        })
    }

    /// The file's length now.
    pub(super) fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Up to `n` bytes at `off`: fewer only where the file ends.
    fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let have_end = self.base + self.buf.len() as u64;
        if off < self.base || off > have_end {
            self.buf.clear();
            self.base = off;
        } else if off + n as u64 > have_end {
            // Keep only what is still ahead, then read on.
            self.buf.drain(..(off - self.base) as usize);
            self.base = off;
        }
        if (self.buf.len()) < n + (off - self.base) as usize {
            let at = self.base + self.buf.len() as u64;
            self.file.seek(SeekFrom::Start(at))?;
            let old = self.buf.len();
            let want = n.max(1 << 16);
            self.buf.resize(old + want, 0);
            let got = read_full(&mut self.file, &mut self.buf[old..])?;
            self.buf.truncate(old + got);
        }
        let from = (off - self.base) as usize;
        let to = (from + n).min(self.buf.len());
        Ok(&self.buf[from.min(to)..to])
    }

    /// The header of the record at `off`, if the data (ending at `end`) holds one whose
    /// length is plausible: (length, crc).
    fn header(&mut self, off: u64, end: u64) -> io::Result<Option<(u32, u32)>> {
        if end.saturating_sub(off) < RECORD_HEADER_LEN {
            return Ok(None);
        }
        let h = self.get(off, RECORD_HEADER_LEN as usize)?;
        if h.len() < RECORD_HEADER_LEN as usize {
            return Ok(None);
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        Ok(plausible_len(len).then_some((len, crc)))
    }

    /// Checks the record at `off` of data ending at `end`: `Ok(Some(length))` with the
    /// record's whole length (header included) if it is valid, `Ok(None)` if it is not
    /// (`off == end` is the end, not damage: the caller tells them apart).
    fn check(&mut self, off: u64, end: u64) -> io::Result<Option<u64>> {
        let Some((len, crc)) = self.header(off, end)? else {
            return Ok(None);
        };
        let whole = RECORD_HEADER_LEN + u64::from(len);
        if off + whole > end {
            return Ok(None);
        }
        let payload = self.get(off + RECORD_HEADER_LEN, len as usize)?;
        Ok((payload.len() == len as usize && crc32fast::hash(payload) == crc).then_some(whole))
    }

    /// The damage starting at `start` (a record that does not verify) in data ending at
    /// `end`: searches every later offset for the next record that verifies.
    ///
    /// # Errors
    /// An IO error reading the file.
    pub(super) fn damage_at(&mut self, start: u64, end: u64) -> io::Result<Damage> {
        let mut budget = RESYNC_CRC_BUDGET;
        let mut next = None;
        let mut off = start + 1;
        while off + RECORD_HEADER_LEN < end {
            if let Some((len, _)) = self.header(off, end)? {
                let len = u64::from(len);
                if off + RECORD_HEADER_LEN + len <= end {
                    if len > budget {
                        break;
                    }
                    budget -= len;
                    if self.check(off, end)?.is_some() {
                        next = Some(off);
                        break;
                    }
                }
            }
            off += 1;
        }
        let span_end = next.unwrap_or(end);
        Ok(Damage {
            start,
            end: span_end,
            counted: self.count_records(start, span_end)?,
            tail: next.is_none(),
        })
    }

    /// How many records lie between `start` and `end` following their length fields, if
    /// that lands exactly on `end`.
    fn count_records(&mut self, start: u64, end: u64) -> io::Result<Option<u64>> {
        let (mut off, mut n) = (start, 0);
        while off < end {
            let Some((len, _)) = self.header(off, end)? else {
                return Ok(None);
            };
            off += RECORD_HEADER_LEN + u64::from(len);
            n += 1;
        }
        Ok((off == end).then_some(n))
    }
}

/// What [`scan`] found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scan {
    /// Where the segment's data ends: the end of the file, or the start of a damaged
    /// tail (cut off by the caller).
    pub(super) valid_len: u64,
    /// Valid records.
    pub(super) records: u64,
    /// Bytes of the valid records, headers included.
    pub(super) record_bytes: u64,
    /// Valid records that start at or after the `from` offset given to [`scan`].
    pub(super) records_from: u64,
    /// The damaged spans, in order; only the last can be a tail.
    pub(super) damage: Vec<Damage>,
}

impl Scan {
    /// The mean length of the valid records (for estimates of damaged spans).
    pub(super) fn mean_record_len(&self) -> u64 {
        self.record_bytes
            .checked_div(self.records)
            .unwrap_or(ASSUMED_RECORD_LEN)
    }
}

/// Reads a whole segment, checking its header and every record's CRC; after a record
/// that does not verify, goes on at the next one that does.
///
/// # Errors
/// A foreign file or another version (see [`check_header`]), or an IO error.
pub(super) fn scan(path: &Path, from: u64) -> Result<Scan, SpoolError> {
    let io = |e| SpoolError::io(path, e);
    let mut w = Window::open(path).map_err(io)?;
    let end = w.file_len().map_err(io)?;
    let mut h = w.get(0, HEADER_LEN as usize).map_err(io)?;
    check_header(path, &mut h)?;
    let mut scan = Scan {
        valid_len: end,
        records: 0,
        record_bytes: 0,
        records_from: 0,
        damage: Vec::new(),
    };
    let mut off = HEADER_LEN;
    while off < end {
        if let Some(len) = w.check(off, end).map_err(io)? {
            if off >= from {
                scan.records_from += 1;
            }
            scan.records += 1;
            scan.record_bytes += len;
            off += len;
            continue;
        }
        let d = w.damage_at(off, end).map_err(io)?;
        off = d.end;
        if d.tail {
            scan.valid_len = d.start;
        }
        scan.damage.push(d);
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
        let bytes = segment(&[b"one", b"two", b"three"]);
        let mut r = &bytes[HEADER_LEN as usize..];
        assert_eq!(read_record(&mut r).unwrap(), Record::Valid(b"one".to_vec()));
        assert_eq!(read_record(&mut r).unwrap(), Record::Valid(b"two".to_vec()));
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
        // Zeros (a power cut's unwritten blocks) are not an empty record.
        assert_eq!(read_record(&mut &[0; 8][..]).unwrap(), Record::Corrupt);
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
