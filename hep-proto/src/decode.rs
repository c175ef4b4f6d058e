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
/// let opts = DecodeOptions::default().max_inflated_len(64 * 1024);
/// let spec_example = Bytes::from_static(include_bytes!("../../hep-testkit/testdata/spec/hep3-spec-example.hep"));
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
    /// Caps what a compressed payload may inflate to; more is rejected as
    /// [`DecodeError::InflatedTooLarge`] without inflating further (default 256 KiB).
    ///
    /// # Note
    /// A 65 KB gzip stream can inflate to gigabytes: keep this cap small on collectors
    /// that accept traffic from untrusted networks.
    #[must_use]
    pub const fn max_inflated_len(mut self, max: usize) -> Self {
        self.max_inflated_len = max;
        self
    }

    /// Whether the spec's alternative magic `EEP3` is accepted as HEPv3 (default: yes).
    #[must_use]
    pub const fn accept_eep3(mut self, accept: bool) -> Self {
        self.accept_eep3 = accept;
        self
    }

    /// The inflate cap in force.
    pub const fn get_max_inflated_len(&self) -> usize {
        self.max_inflated_len
    }

    /// Whether `EEP3` is accepted.
    pub const fn get_accept_eep3(&self) -> bool {
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
            _ => {
                let mut head = [0u8; 4];
                let n = buf.len().min(4);
                head[..n].copy_from_slice(&buf[..n]);
                Err(DecodeError::UnknownVersion(head))
            }
        }
    }

    fn decode_v3(&self, buf: &Bytes) -> Result<HepMessage, DecodeError> {
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
                        inflated: inflate(body, self.max_inflated_len)?,
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

/// The value of a fixed-size chunk, or the size error naming it.
#[inline]
fn fixed<const N: usize>(ty: u16, body: &[u8]) -> Result<[u8; N], DecodeError> {
    body.try_into().map_err(|_| DecodeError::ChunkSize {
        chunk_type: ty,
        // Both fit in u16: `body` came from a chunk whose u16 length covered it.
        len: u16::try_from(body.len() + CHUNK_HEADER_LEN).unwrap_or(u16::MAX),
        expected: u16::try_from(N + CHUNK_HEADER_LEN).unwrap_or(u16::MAX),
    })
}

/// HEPv1/v2: the 8-byte `hep_hdr`, the address block, for v2 the 12-byte little-endian
/// time block, then the payload to the end of the datagram.
fn decode_v12(buf: &Bytes) -> Result<HepMessage, DecodeError> {
    let Some(&[v, hp_l, hp_f, hp_p, s0, s1, d0, d1]) = buf.get(..8) else {
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
        ip_proto: Some(hp_p),
        src_ip: Some(src_ip),
        dst_ip: Some(dst_ip),
        src_port: Some(u16::from_be_bytes([s0, s1])),
        dst_port: Some(u16::from_be_bytes([d0, d1])),
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
