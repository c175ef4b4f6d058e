//! Decoding HEPv1, HEPv2 and HEPv3 from a buffer, zero-copy and panic-free.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::chunk::{CHUNK_HEADER_LEN, ChunkType};
use crate::compress::inflate;
use crate::{AddressFamily, Chunk, DecodeError, HepMessage, HepVersion, Payload, ProtoType};

/// `HEP3`, the HEPv3 magic.
pub const HEP3_MAGIC: [u8; 4] = *b"HEP3";
/// `EEP3`, the spec's alternative HEPv3 magic.
pub const EEP3_MAGIC: [u8; 4] = *b"EEP3";
/// Length of the HEPv3 control header: magic (4) + total length (2).
pub const HEP3_HEADER_LEN: usize = 6;
/// The default cap on an inflated compressed payload (chunk 0x0010).
pub const DEFAULT_MAX_INFLATED_LEN: usize = 256 * 1024;

/// How to decode: limits for untrusted input.
///
/// ```
/// use bytes::Bytes;
/// use hep_proto::DecodeOptions;
///
/// let opts = DecodeOptions::default().with_max_inflated_len(64 * 1024);
/// let spec_example = Bytes::from_static(include_bytes!("../../hep-testkit/testdata/spec/hep3-spec-example.hep"));
/// assert_eq!(opts.max_inflated_len(), 64 * 1024);
/// let msg = opts.decode(&spec_example).unwrap();
/// assert_eq!(msg.payload.bytes(), "INVITE sip:bob");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    max_inflated_len: usize,
    accept_eep3: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_inflated_len: DEFAULT_MAX_INFLATED_LEN,
            accept_eep3: true,
        }
    }
}

impl DecodeOptions {
    /// These options with a cap on what a compressed payload may inflate to; more is
    /// rejected as [`DecodeError::InflatedTooLarge`] without inflating further (default
    /// 256 KiB).
    ///
    /// # Note
    /// A 65 KB gzip stream can inflate to gigabytes: keep this cap small on collectors
    /// that accept traffic from untrusted networks.
    #[must_use]
    pub const fn with_max_inflated_len(mut self, max: usize) -> Self {
        self.max_inflated_len = max;
        self
    }

    /// These options accepting the spec's alternative magic `EEP3` as HEPv3, or not
    /// (default: accepted).
    #[must_use]
    pub const fn with_accept_eep3(mut self, accept: bool) -> Self {
        self.accept_eep3 = accept;
        self
    }

    /// The inflate cap in force.
    pub const fn max_inflated_len(&self) -> usize {
        self.max_inflated_len
    }

    /// Whether `EEP3` is accepted.
    pub const fn accept_eep3(&self) -> bool {
        self.accept_eep3
    }

    /// Whether `magic` starts a HEPv3 message under these options.
    pub fn is_v3_magic(&self, magic: &[u8]) -> bool {
        magic == HEP3_MAGIC || (self.accept_eep3 && magic == EEP3_MAGIC)
    }

    /// Decodes one message of any version; the version is told by the first bytes.
    ///
    /// HEPv3 bytes after the total length are ignored (a UDP datagram may carry a tail,
    /// as OpenSIPS and Wireshark tolerate). HEPv1/v2 payloads run to the end of `buf`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first thing found wrong.
    pub fn decode(&self, buf: &Bytes) -> Result<HepMessage, DecodeError> {
        match buf.first() {
            Some(1 | 2) => decode_v12(buf),
            _ if buf.len() >= 4 && self.is_v3_magic(&buf[..4]) => self.decode_v3(buf),
            _ => Err(unknown_version(buf)),
        }
    }

    /// HEPv3: the chunk walk ([`walk_v3`]), then the message built once, in place, from
    /// the places the walk recorded.
    fn decode_v3(&self, buf: &Bytes) -> Result<HepMessage, DecodeError> {
        let mut rare = Rare {
            opts: self,
            buf,
            chunks: Vec::new(),
            inflated: None,
        };
        let mut walk = Walk::EMPTY;
        let end = walk_v3(buf, &mut rare, &mut walk)?;
        // Read in place, field by field (a copy of the arrays would stall on forwarding).
        let (at, family) = (&walk.at, walk.family);
        let data = &buf[..end];
        let Rare {
            chunks, inflated, ..
        } = rare;

        // The payload chunk that came last, as in OpenSIPS (the walk saw one of them).
        let (plain, compressed) = (at[0x0f], at[0x10]);
        let payload = if plain > compressed {
            Payload::Plain(slice_of(buf, plain))
        } else {
            Payload::Compressed {
                inflated: inflated.unwrap_or_default(),
                compressed: slice_of(buf, compressed),
            }
        };
        let src_ip = match (value::<4>(data, at[0x03]), value::<16>(data, at[0x05])) {
            (Some(a), _) => Some(IpAddr::V4(Ipv4Addr::from(a))),
            (None, a) => a.map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        };
        let dst_ip = match (value::<4>(data, at[0x04]), value::<16>(data, at[0x06])) {
            (Some(a), _) => Some(IpAddr::V4(Ipv4Addr::from(a))),
            (None, a) => a.map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        };
        // Absent in most traffic: one test for the three.
        let (auth_key, correlation_id, node_name) = if at[0x0e] | at[0x11] | at[0x13] == 0 {
            (None, None, None)
        } else {
            (
                octets(buf, at[0x0e]),
                octets(buf, at[0x11]),
                octets(buf, at[0x13]),
            )
        };
        Ok(HepMessage {
            version: Some(HepVersion::V3),
            family,
            ip_proto: value::<1>(data, at[0x02]).map(|[v]| v),
            src_ip,
            dst_ip,
            src_port: value(data, at[0x07]).map(u16::from_be_bytes),
            dst_port: value(data, at[0x08]).map(u16::from_be_bytes),
            ts_sec: value(data, at[0x09]).map(u32::from_be_bytes),
            ts_usec: value(data, at[0x0a]).map(u32::from_be_bytes),
            proto_type: value::<1>(data, at[0x0b]).map(|[v]| ProtoType::from_id(v)),
            capture_id: value(data, at[0x0c]).map(u32::from_be_bytes),
            auth_key,
            correlation_id,
            vlan: value(data, at[0x12]).map(u16::from_be_bytes),
            node_name,
            payload,
            chunks,
        })
    }
}

/// The value of a fixed-size field recorded at `at` (0: absent).
#[inline(always)]
pub(crate) fn value<const N: usize>(data: &[u8], at: u16) -> Option<[u8; N]> {
    let at = usize::from(at);
    if at == 0 {
        return None;
    }
    data.get(at..at + N).and_then(|v| v.try_into().ok())
}

/// The bytes of an octets field recorded at `at` (0: absent).
#[inline(never)]
fn octets(buf: &Bytes, at: u16) -> Option<Bytes> {
    (at != 0).then(|| slice_of(buf, at))
}

/// The value of the chunk whose value the walk recorded at `at` (not 0).
fn slice_of(buf: &Bytes, at: u16) -> Bytes {
    let at = usize::from(at);
    buf.slice(at..at + value_len(buf, at))
}

/// The length of the chunk value at `at`, read from the chunk's header just before it
/// (the walk checked it: at least the header's 6 bytes, within the message).
#[inline]
pub(crate) fn value_len(data: &[u8], at: usize) -> usize {
    match data.get(at.wrapping_sub(2)..at) {
        Some(&[hi, lo]) => {
            usize::from(u16::from_be_bytes([hi, lo])).saturating_sub(CHUNK_HEADER_LEN)
        }
        _ => 0,
    }
}

/// Where each field of a HEPv3 message is, as the chunk walk found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Walk {
    /// Per generic field type: the offset of the last such chunk's value (0 = absent: no
    /// value starts before byte 12). Offsets fit u16: the total length does. A value's
    /// length is not recorded: its chunk header, just before it, has it
    /// ([`value_len`]); one store a chunk instead of two, and a smaller view.
    pub(crate) at: [u16; FIELD_TYPES],
    /// The family chunk's value, checked against the address chunks.
    pub(crate) family: Option<AddressFamily>,
}

impl Walk {
    /// Nothing found yet: what a walk starts from.
    pub(crate) const EMPTY: Self = Self {
        at: [0; FIELD_TYPES],
        family: None,
    };
}

/// What a chunk walk does with the chunks off its fast path: the chunks that are kept
/// raw, and the compressed payload (0x0010).
pub(crate) trait RareChunks {
    /// A chunk that is not a plain field (`vendor_type` is vendor and type together),
    /// with its value at `range`. For 0x0010 it records the value's offset in `place` as
    /// the walk records fields.
    fn chunk(
        &mut self,
        vendor_type: u32,
        len: u16,
        range: std::ops::Range<usize>,
        place: &mut u16,
    ) -> Result<(), DecodeError>;
}

/// The HEPv3 chunk walk: checks the header, the total length and every chunk, and
/// records where each field's value is; gives the message's total length.
///
/// Written for the collector's hot path (profiles in `docs/BENCHMARKS.md`). The walk
/// records, for each generic chunk type with a field (0x01-0x13 but 0x0d), where the
/// last such chunk's value starts and how long it is; a table gives the exact size of
/// the fixed-size ones, checked on the spot. The loop has no jump per chunk type and
/// keeps no field in registers (about 20 instructions a chunk; its speed is the latency
/// of reading the next chunk's length). Callers read the fields from the recorded
/// places. Every rule of the straightforward walk holds (the unit tests compare the two
/// on mutated vectors): the first bad chunk in wire order is the error, the last chunk
/// of a type wins (value offsets grow in wire order, which also tells which of 0x000f
/// and 0x0010 came last), vendor chunks and types without a field go to `rare`, and
/// the family must agree with the addresses.
#[inline(always)]
pub(crate) fn walk_v3(
    buf: &[u8],
    rare: &mut impl RareChunks,
    walk: &mut Walk,
) -> Result<usize, DecodeError> {
    let Some(&[_, _, _, _, hi, lo]) = buf.get(..HEP3_HEADER_LEN) else {
        return Err(DecodeError::TooShort {
            len: buf.len(),
            min: HEP3_HEADER_LEN,
        });
    };
    let total = u16::from_be_bytes([hi, lo]);
    let end = usize::from(total);
    if end < HEP3_HEADER_LEN {
        return Err(DecodeError::TotalLengthTooSmall(total));
    }
    // Everything past the total length is ignored; `data` cannot be overrun.
    let Some(data) = buf.get(..end) else {
        return Err(DecodeError::TotalLengthExceedsData {
            total,
            available: buf.len(),
        });
    };

    let at = &mut walk.at;
    let mut off = HEP3_HEADER_LEN;
    while off + CHUNK_HEADER_LEN <= end {
        let Some(&[v0, v1, t0, t1, l0, l1]) = data.get(off..off + CHUNK_HEADER_LEN) else {
            break; // Not reached: the loop condition is this bound.
        };
        // Vendor and type together: generic chunks are the values below 0x10000.
        let vendor_type = u32::from_be_bytes([v0, v1, t0, t1]);
        let len = u16::from_be_bytes([l0, l1]);
        // The next offset depends on nothing but this length: the walk's speed is this
        // chain (load, byte swap, add), so the checks stay off it.
        let start = off + CHUNK_HEADER_LEN;
        let next = off + usize::from(len);
        if next < start || next > end {
            return Err(chunk_length_error(vendor_type, len, off, end - off));
        }
        let body_len = len - CHUNK_HEADER_LEN as u16;
        off = next;
        // A vendor chunk never sets a generic field (OpenSIPS lets vendor chunks with
        // types 1-12 overwrite them; we keep them verbatim instead).
        if vendor_type < FIELD_TYPES as u32 && FAST_FIELDS & (1 << vendor_type) != 0 {
            let t = vendor_type as usize;
            if (body_len ^ FIXED_SIZE[t]) & SIZE_CHECKED[t] != 0 {
                return Err(size_error(
                    t as u16,
                    usize::from(body_len),
                    usize::from(FIXED_SIZE[t]),
                ));
            }
            at[t] = start as u16;
        } else {
            rare.chunk(vendor_type, len, start..off, &mut at[0x10])?;
        }
    }
    if off != end {
        return Err(DecodeError::ChunkHeaderTruncated {
            offset: off,
            remaining: end - off,
        });
    }
    if at[0x0f] == 0 && at[0x10] == 0 {
        return Err(DecodeError::MissingPayload);
    }
    let seen_v4 = at[0x03] | at[0x04] != 0;
    let seen_v6 = at[0x05] | at[0x06] != 0;
    let family = check_family(value::<1>(data, at[0x01]).map(|[v]| v), seen_v4, seen_v6)?;
    walk.family = family;
    Ok(end)
}

/// What [`DecodeOptions::decode`] does off the fast path: keeps chunks and inflates a
/// compressed payload.
struct Rare<'a> {
    opts: &'a DecodeOptions,
    buf: &'a Bytes,
    chunks: Vec<Chunk>,
    inflated: Option<Bytes>,
}

impl RareChunks for Rare<'_> {
    /// A chunk that is not a plain field: kept raw, or (0x0010) inflated now so that its
    /// error comes in wire order.
    #[inline(never)]
    fn chunk(
        &mut self,
        vendor_type: u32,
        len: u16,
        range: std::ops::Range<usize>,
        at: &mut u16,
    ) -> Result<(), DecodeError> {
        if vendor_type == 0x10 {
            let body = self.buf.get(range.clone()).unwrap_or_default();
            self.inflated = Some(inflate(body, self.opts.max_inflated_len)?);
            // `range.start` fits u16: the message's total length does.
            *at = range.start as u16;
            return Ok(());
        }
        check_kept_size(vendor_type, len)?;
        let [v0, v1, t0, t1] = vendor_type.to_be_bytes();
        self.chunks.push(Chunk {
            vendor: u16::from_be_bytes([v0, v1]),
            chunk_type: u16::from_be_bytes([t0, t1]),
            data: self.buf.slice(range),
        });
        Ok(())
    }
}

/// Generic chunk types below this may have a field of their own.
pub(crate) const FIELD_TYPES: usize = 0x14;
/// The generic types with a field in [`HepMessage`] that the walk records inline:
/// 0x01-0x13 but 0x0d (keep-alive is kept as a raw chunk) and 0x10 (inflated off the
/// fast path).
pub(crate) const FAST_FIELDS: u32 = 0x000e_dffe;
/// The exact value size of each fixed-size field type.
const FIXED_SIZE: [u16; FIELD_TYPES] =
    [0, 1, 1, 4, 4, 16, 16, 2, 2, 4, 4, 1, 4, 0, 0, 0, 0, 0, 2, 0];
/// Which of [`FIXED_SIZE`] are checked: all bits for fixed-size types, none for octets.
const SIZE_CHECKED: [u16; FIELD_TYPES] = {
    let mut mask = [0u16; FIELD_TYPES];
    let mut t = 0;
    while t < FIELD_TYPES {
        if FIXED_SIZE[t] != 0 {
            mask[t] = u16::MAX;
        }
        t += 1;
    }
    mask
};

/// A chunk without a field of its own is kept raw (a vendor chunk, or a generic type
/// without a field); known fixed-size generic types are size-checked all the same.
#[inline(never)]
pub(crate) fn check_kept_size(vendor_type: u32, len: u16) -> Result<(), DecodeError> {
    let Ok(chunk_type) = u16::try_from(vendor_type) else {
        return Ok(());
    };
    match ChunkType::from_id(chunk_type).and_then(|k| k.shape().wire_len()) {
        Some(expected) if expected != len => Err(DecodeError::ChunkSize {
            chunk_type,
            len,
            expected,
        }),
        _ => Ok(()),
    }
}

/// The error for bytes that start no known version: it shows their first four bytes.
#[cold]
pub(crate) fn unknown_version(buf: &[u8]) -> DecodeError {
    let mut head = [0u8; 4];
    let n = buf.len().min(4);
    head[..n].copy_from_slice(&buf[..n]);
    DecodeError::UnknownVersion(head)
}

/// The error for a chunk whose length is below its header or beyond the message.
#[cold]
#[inline(never)]
fn chunk_length_error(vendor_type: u32, len: u16, offset: usize, remaining: usize) -> DecodeError {
    let [v0, v1, t0, t1] = vendor_type.to_be_bytes();
    let (vendor, chunk_type) = (u16::from_be_bytes([v0, v1]), u16::from_be_bytes([t0, t1]));
    if usize::from(len) < CHUNK_HEADER_LEN {
        DecodeError::ChunkLengthTooSmall {
            vendor,
            chunk_type,
            len,
            offset,
        }
    } else {
        DecodeError::ChunkOverrun {
            vendor,
            chunk_type,
            len,
            remaining,
            offset,
        }
    }
}

/// The family chunk must name a known family, and agree with the address chunks.
fn check_family(
    raw: Option<u8>,
    seen_v4: bool,
    seen_v6: bool,
) -> Result<Option<AddressFamily>, DecodeError> {
    if seen_v4 && seen_v6 {
        return Err(DecodeError::FamilyMismatch);
    }
    let Some(raw) = raw else { return Ok(None) };
    let family = AddressFamily::from_wire(raw).ok_or(DecodeError::UnknownFamilyValue(raw))?;
    match family {
        AddressFamily::Ipv4 if seen_v6 => Err(DecodeError::FamilyMismatch),
        AddressFamily::Ipv6 if seen_v4 => Err(DecodeError::FamilyMismatch),
        _ => Ok(Some(family)),
    }
}

/// The error for a fixed-size chunk of the wrong size.
#[cold]
#[inline(never)]
fn size_error(ty: u16, body_len: usize, expected: usize) -> DecodeError {
    DecodeError::ChunkSize {
        chunk_type: ty,
        // Both fit in u16: `body` came from a chunk whose u16 length covered it.
        len: u16::try_from(body_len + CHUNK_HEADER_LEN).unwrap_or(u16::MAX),
        expected: u16::try_from(expected + CHUNK_HEADER_LEN).unwrap_or(u16::MAX),
    }
}

/// Where the parts of a HEPv1/v2 message are, once its header is checked.
pub(crate) struct LayoutV12 {
    pub(crate) version: HepVersion,
    pub(crate) family: AddressFamily,
    /// End of the address block: 16 (IPv4) or 40 (IPv6).
    pub(crate) addr_end: usize,
    /// Where the payload starts: `addr_end`, plus the 12-byte time block in v2.
    pub(crate) header_len: usize,
}

/// HEPv1/v2: the 8-byte `hep_hdr`, the address block, for v2 the 12-byte little-endian
/// time block, then the payload to the end of the datagram.
pub(crate) fn layout_v12(buf: &[u8]) -> Result<LayoutV12, DecodeError> {
    let Some(&[v, hp_l, hp_f, ..]) = buf.get(..8) else {
        return Err(DecodeError::TooShort {
            len: buf.len(),
            min: 8,
        });
    };
    let version = if v == 1 {
        HepVersion::V1
    } else {
        HepVersion::V2
    };
    let family = AddressFamily::from_wire(hp_f).ok_or(DecodeError::UnknownFamily {
        version: v,
        family: hp_f,
    })?;
    let expected = match family {
        AddressFamily::Ipv4 => 16,
        AddressFamily::Ipv6 => 40,
    };
    if hp_l != expected {
        return Err(DecodeError::HeaderLength {
            version: v,
            family: hp_f,
            found: hp_l,
            expected,
        });
    }
    let addr_end = usize::from(hp_l);
    let header_len = if version == HepVersion::V2 {
        addr_end + 12
    } else {
        addr_end
    };
    if buf.len() < header_len {
        return Err(DecodeError::TooShort {
            len: buf.len(),
            min: header_len,
        });
    }
    Ok(LayoutV12 {
        version,
        family,
        addr_end,
        header_len,
    })
}

fn decode_v12(buf: &Bytes) -> Result<HepMessage, DecodeError> {
    let LayoutV12 {
        version,
        family,
        addr_end,
        header_len,
    } = layout_v12(buf)?;
    let (src_ip, dst_ip) = match family {
        AddressFamily::Ipv4 => (
            IpAddr::V4(Ipv4Addr::from(array::<4>(buf, 8))),
            IpAddr::V4(Ipv4Addr::from(array::<4>(buf, 12))),
        ),
        AddressFamily::Ipv6 => (
            IpAddr::V6(Ipv6Addr::from(array::<16>(buf, 8))),
            IpAddr::V6(Ipv6Addr::from(array::<16>(buf, 24))),
        ),
    };
    let mut msg = HepMessage {
        version: Some(version),
        family: Some(family),
        ip_proto: buf.get(3).copied(),
        src_ip: Some(src_ip),
        dst_ip: Some(dst_ip),
        src_port: Some(u16::from_be_bytes(array(buf, 4))),
        dst_port: Some(u16::from_be_bytes(array(buf, 6))),
        payload: Payload::Plain(buf.slice(header_len..)),
        ..HepMessage::default()
    };
    if version == HepVersion::V2 {
        // The C struct `hep_timehdr` in host (little-endian) order; 2 padding bytes follow.
        msg.ts_sec = Some(u32::from_le_bytes(array(buf, addr_end)));
        msg.ts_usec = Some(u32::from_le_bytes(array(buf, addr_end + 4)));
        msg.capture_id = Some(u16::from_le_bytes(array(buf, addr_end + 8)).into());
    }
    Ok(msg)
}

/// `N` bytes at `at`; the caller has checked the length, so a short read yields zeros
/// rather than a panic.
#[inline]
fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

impl HepMessage {
    /// Decodes one message of any version with [`DecodeOptions::default`].
    ///
    /// Accepts anything that converts into [`Bytes`]; pass a `Bytes` (or a clone of one)
    /// to keep decoding zero-copy.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first thing found wrong.
    pub fn decode(buf: impl Into<Bytes>) -> Result<Self, DecodeError> {
        DecodeOptions::default().decode(&buf.into())
    }
}

#[cfg(test)]
mod tests {
    //! The chunk walk against the straightforward one it replaced (kept here verbatim as
    //! the reference): same message or same error, on vectors and on mutated bytes.
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use bytes::Bytes;
    use proptest::prelude::*;

    use crate::chunk::{CHUNK_HEADER_LEN, ChunkType};
    use crate::compress::inflate;
    use crate::{Chunk, DecodeError, DecodeOptions, HepMessage, HepVersion, Payload, ProtoType};

    use super::{HEP3_HEADER_LEN, check_family, size_error};

    /// The value of a fixed-size chunk, or the size error naming it.
    fn fixed<const N: usize>(ty: u16, body: &[u8]) -> Result<[u8; N], DecodeError> {
        body.try_into().map_err(|_| size_error(ty, body.len(), N))
    }

    pub(super) fn reference_v3(
        opts: &DecodeOptions,
        buf: &Bytes,
    ) -> Result<HepMessage, DecodeError> {
        let Some(&[_, _, _, _, hi, lo]) = buf.get(..HEP3_HEADER_LEN) else {
            return Err(DecodeError::TooShort {
                len: buf.len(),
                min: HEP3_HEADER_LEN,
            });
        };
        let total = u16::from_be_bytes([hi, lo]);
        let end = usize::from(total);
        if end < HEP3_HEADER_LEN {
            return Err(DecodeError::TotalLengthTooSmall(total));
        }
        if end > buf.len() {
            return Err(DecodeError::TotalLengthExceedsData {
                total,
                available: buf.len(),
            });
        }

        let mut msg = HepMessage {
            version: Some(HepVersion::V3),
            ..HepMessage::default()
        };
        let mut family_raw = None;
        let mut payload = None;
        let (mut seen_v4, mut seen_v6) = (false, false);
        // Everything past the total length is ignored; indexing `data` cannot overrun it.
        let data = &buf[..end];
        let mut off = HEP3_HEADER_LEN;
        while off < end {
            let remaining = end - off;
            let Some(&[v0, v1, t0, t1, l0, l1]) = data.get(off..off + CHUNK_HEADER_LEN) else {
                return Err(DecodeError::ChunkHeaderTruncated {
                    offset: off,
                    remaining,
                });
            };
            let (vendor, ty, len) = (
                u16::from_be_bytes([v0, v1]),
                u16::from_be_bytes([t0, t1]),
                u16::from_be_bytes([l0, l1]),
            );
            let chunk_len = usize::from(len);
            if chunk_len < CHUNK_HEADER_LEN {
                return Err(DecodeError::ChunkLengthTooSmall {
                    vendor,
                    chunk_type: ty,
                    len,
                    offset: off,
                });
            }
            if chunk_len > remaining {
                return Err(DecodeError::ChunkOverrun {
                    vendor,
                    chunk_type: ty,
                    len,
                    remaining,
                    offset: off,
                });
            }
            let start = off + CHUNK_HEADER_LEN;
            let stop = off + chunk_len;
            let body = &data[start..stop];
            off = stop;

            // A vendor chunk never sets a generic field (OpenSIPS lets vendor chunks with
            // types 1-12 overwrite them; we keep them verbatim instead).
            if vendor != 0 {
                msg.chunks.push(Chunk {
                    vendor,
                    chunk_type: ty,
                    data: buf.slice(start..stop),
                });
                continue;
            }
            match ty {
                0x0001 => family_raw = Some(fixed::<1>(ty, body)?[0]),
                0x0002 => msg.ip_proto = Some(fixed::<1>(ty, body)?[0]),
                0x0003 => {
                    msg.src_ip = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(ty, body)?)));
                    seen_v4 = true;
                }
                0x0004 => {
                    msg.dst_ip = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(ty, body)?)));
                    seen_v4 = true;
                }
                0x0005 => {
                    msg.src_ip = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(ty, body)?)));
                    seen_v6 = true;
                }
                0x0006 => {
                    msg.dst_ip = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(ty, body)?)));
                    seen_v6 = true;
                }
                0x0007 => msg.src_port = Some(u16::from_be_bytes(fixed(ty, body)?)),
                0x0008 => msg.dst_port = Some(u16::from_be_bytes(fixed(ty, body)?)),
                0x0009 => msg.ts_sec = Some(u32::from_be_bytes(fixed(ty, body)?)),
                0x000a => msg.ts_usec = Some(u32::from_be_bytes(fixed(ty, body)?)),
                0x000b => msg.proto_type = Some(ProtoType::from_id(fixed::<1>(ty, body)?[0])),
                0x000c => msg.capture_id = Some(u32::from_be_bytes(fixed(ty, body)?)),
                0x000e => msg.auth_key = Some(buf.slice(start..stop)),
                // A later payload chunk replaces an earlier one, as in OpenSIPS.
                0x000f => payload = Some(Payload::Plain(buf.slice(start..stop))),
                0x0010 => {
                    payload = Some(Payload::Compressed {
                        inflated: inflate(body, opts.max_inflated_len())?,
                        compressed: buf.slice(start..stop),
                    });
                }
                0x0011 => msg.correlation_id = Some(buf.slice(start..stop)),
                0x0012 => msg.vlan = Some(u16::from_be_bytes(fixed(ty, body)?)),
                0x0013 => msg.node_name = Some(buf.slice(start..stop)),
                _ => {
                    // Known fixed-size types are size-checked even though they are kept raw.
                    if let Some(expected) =
                        ChunkType::from_id(ty).and_then(|k| k.shape().wire_len())
                        && usize::from(expected) != chunk_len
                    {
                        return Err(DecodeError::ChunkSize {
                            chunk_type: ty,
                            len,
                            expected,
                        });
                    }
                    msg.chunks.push(Chunk {
                        vendor,
                        chunk_type: ty,
                        data: buf.slice(start..stop),
                    });
                }
            }
        }

        msg.payload = payload.ok_or(DecodeError::MissingPayload)?;
        msg.family = check_family(family_raw, seen_v4, seen_v6)?;
        Ok(msg)
    }

    fn same(wire: &[u8]) -> Result<(), TestCaseError> {
        let opts = DecodeOptions::default().with_max_inflated_len(4096);
        let buf = Bytes::copy_from_slice(wire);
        let ours = opts.decode(&buf);
        if buf.len() >= 4 && opts.is_v3_magic(&buf[..4]) {
            prop_assert_eq!(&ours, &reference_v3(&opts, &buf));
        }
        crate::view::tests::view_agrees(&opts, wire, &ours)
    }

    fn vectors() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../hep-testkit/testdata");
        let mut out = Vec::new();
        for sub in ["kamailio", "spec", "opensips"] {
            let Ok(entries) = std::fs::read_dir(format!("{dir}/{sub}")) else {
                continue;
            };
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "hep") {
                    out.push(std::fs::read(e.path()).unwrap());
                }
            }
        }
        assert!(out.len() > 10, "vectors found: {}", out.len());
        out
    }

    #[test]
    fn vectors_decode_as_the_reference_does() {
        for v in vectors() {
            same(&v).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn mutated_vectors_decode_as_the_reference_does(
            pick in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let all = vectors();
            let mut wire = all[pick.index(all.len())].clone();
            for (at, byte) in edits {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
            if truncate {
                wire.truncate(cut.index(wire.len() + 1));
            }
            same(&wire)?;
        }

        /// Random chunk sequences: generic types around 1-0x30 with sizes near the right
        /// ones, some vendor chunks, payloads present or not.
        #[test]
        fn chunk_soups_decode_as_the_reference_does(
            chunks in proptest::collection::vec(
                (
                    prop_oneof![4 => Just(0u16), 1 => any::<u16>()],
                    prop_oneof![Just(0x0fu16), 0u16..0x30],
                    prop_oneof![3 => Just(None), 1 => (0usize..20).prop_map(Some)],
                ),
                0..16,
            ),
            magic_eep3 in any::<bool>(),
            tail in 0usize..3,
        ) {
            let mut wire = Vec::new();
            wire.extend_from_slice(if magic_eep3 { b"EEP3" } else { b"HEP3" });
            wire.extend_from_slice(&[0, 0]);
            for (i, (vendor, ty, len)) in chunks.into_iter().enumerate() {
                // Mostly the right size for the type, sometimes any.
                let right = ChunkType::from_id(ty)
                    .and_then(|k| k.shape().wire_len())
                    .map_or(i % 7, |w| usize::from(w) - CHUNK_HEADER_LEN);
                let len = len.unwrap_or(right);
                wire.extend_from_slice(&vendor.to_be_bytes());
                wire.extend_from_slice(&ty.to_be_bytes());
                let chunk_len = u16::try_from(CHUNK_HEADER_LEN + len).unwrap();
                wire.extend_from_slice(&chunk_len.to_be_bytes());
                wire.extend((0..len).map(|j| (i * 31 + j) as u8));
            }
            let total = u16::try_from(wire.len()).unwrap();
            wire[4..6].copy_from_slice(&total.to_be_bytes());
            wire.extend(std::iter::repeat_n(0xee, tail));
            same(&wire)?;
        }
    }
}
