//! A borrowed reading of one HEP message: checked like a decode, built of nothing.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::chunk::CHUNK_HEADER_LEN;
use crate::compress::inflate;
use crate::decode::{
    FAST_FIELDS, FIELD_TYPES, HEP3_HEADER_LEN, LayoutV12, RareChunks, Walk, check_kept_size,
    layout_v12, unknown_version, value, value_len, walk_v3,
};
use crate::{AddressFamily, DecodeError, DecodeOptions, HepVersion, ProtoType};

/// One HEP message of any version, read in place from a byte slice.
///
/// [`HepView::parse`] checks everything [`HepMessage::decode`](crate::HepMessage::decode)
/// checks (every length, the fixed chunk sizes, the family against the addresses, a
/// payload chunk present), with one exception: a compressed payload (chunk 0x0010) is
/// not inflated, so a corrupt or oversized one is only found by
/// [`inflated_payload`](Self::inflated_payload) (and one that a later payload chunk
/// replaces, never; [`DecodeError::is_compression`] tells these errors apart). Parsing records where each field is and
/// stops: it allocates nothing, copies nothing and touches no reference count, so it is
/// the fast way to look at a message (a filter, a counter, a router) that you may then
/// forward as the bytes you received. For a message you keep or change, decode a
/// [`HepMessage`](crate::HepMessage).
///
/// The accessors read the wire on each call; for HEPv1/v2 they give what the v1/v2
/// header carries (no protocol type; v1 has no time and no capture id).
///
/// ```
/// use hep_proto::{HepVersion, HepView, ProtoType};
///
/// let wire = include_bytes!("../../hep-testkit/testdata/kamailio/v3-udp-0001.hep");
/// let view = HepView::parse(wire)?;
/// assert_eq!(view.version(), HepVersion::V3);
/// assert_eq!(view.proto_type(), Some(ProtoType::Sip));
/// assert_eq!(view.capture_id(), Some(2001));
/// assert_eq!(view.src(), Some("127.0.0.1:5061".parse().unwrap()));
/// assert!(view.payload().wire_bytes().starts_with(b"INVITE sip:service@127.0.0.1:5060"));
/// # Ok::<(), hep_proto::DecodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HepView<'a> {
    /// The message: for HEPv3 up to its total length, for v1/v2 the whole datagram.
    data: &'a [u8],
    version: HepVersion,
    /// Where each field's value is. For v1/v2 the header fields are placed here too.
    walk: Walk,
}

/// The payload as it is on the wire: read in place, so a compressed payload is not
/// inflated (for the usable bytes, [`HepView::inflated_payload`], or decode and read
/// [`Payload::bytes`](crate::Payload::bytes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::exhaustive_enums,
    reason = "HEP3 has exactly two payload chunks"
)]
pub enum PayloadView<'a> {
    /// Chunk 0x000f (or the v1/v2 payload): the bytes as captured.
    Plain(&'a [u8]),
    /// Chunk 0x0010: the gzip or zlib stream, not inflated.
    Compressed(&'a [u8]),
}

impl<'a> PayloadView<'a> {
    /// The bytes on the wire: for a compressed payload, the compressed stream (as
    /// [`Payload::wire_bytes`](crate::Payload::wire_bytes)).
    pub const fn wire_bytes(&self) -> &'a [u8] {
        match self {
            Self::Plain(b) | Self::Compressed(b) => b,
        }
    }

    /// Whether it is the compressed chunk.
    pub const fn is_compressed(&self) -> bool {
        matches!(self, Self::Compressed(_))
    }
}

/// A chunk [`HepView`] has no accessor for, as [`HepView::chunks`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkView<'a> {
    /// Vendor id (0 for the spec's generic chunks).
    pub vendor: u16,
    /// Chunk type.
    pub chunk_type: u16,
    /// The value, without the 6-byte chunk header.
    pub data: &'a [u8],
}

/// Off the fast path of a view's walk: kept chunks are only size-checked, and the
/// compressed payload is recorded, not inflated.
struct Unkept;

impl RareChunks for Unkept {
    #[inline(never)]
    fn chunk(
        &mut self,
        vendor_type: u32,
        len: u16,
        range: std::ops::Range<usize>,
        at: &mut u16,
    ) -> Result<(), DecodeError> {
        if vendor_type == 0x10 {
            // `range.start` fits u16: the message's total length does.
            *at = range.start as u16;
            return Ok(());
        }
        check_kept_size(vendor_type, len)
    }
}

impl<'a> HepView<'a> {
    /// Reads one message of any version with [`DecodeOptions::default`].
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first thing found wrong.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        DecodeOptions::default().view(buf)
    }

    /// The version, told by the first bytes.
    #[inline]
    pub const fn version(&self) -> HepVersion {
        self.version
    }

    /// The message's bytes: for HEPv3 up to its total length (a datagram's tail is not
    /// part of it), for v1/v2 the whole datagram. Forward these to relay it unchanged.
    #[inline]
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Address family (chunk 0x0001, or `hp_f`).
    #[inline]
    pub const fn family(&self) -> Option<AddressFamily> {
        self.walk.family
    }

    /// IP protocol (chunk 0x0002, or `hp_p`).
    #[inline]
    pub fn ip_proto(&self) -> Option<u8> {
        self.fixed::<1>(0x02).map(|[v]| v)
    }

    /// Source address (chunk 0x0003/0x0005).
    #[inline]
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.ip(0x03, 0x05)
    }

    /// Destination address (chunk 0x0004/0x0006).
    #[inline]
    pub fn dst_ip(&self) -> Option<IpAddr> {
        self.ip(0x04, 0x06)
    }

    /// Source port (chunk 0x0007).
    #[inline]
    pub fn src_port(&self) -> Option<u16> {
        self.fixed(0x07).map(u16::from_be_bytes)
    }

    /// Destination port (chunk 0x0008).
    #[inline]
    pub fn dst_port(&self) -> Option<u16> {
        self.fixed(0x08).map(u16::from_be_bytes)
    }

    /// Source address and port, when the address is known (as
    /// [`HepMessage::src`](crate::HepMessage::src)).
    #[inline]
    pub fn src(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(
            self.src_ip()?,
            self.src_port().unwrap_or(0),
        ))
    }

    /// Destination address and port, when the address is known.
    #[inline]
    pub fn dst(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(
            self.dst_ip()?,
            self.dst_port().unwrap_or(0),
        ))
    }

    /// Capture time, seconds since the epoch (chunk 0x0009, or the v2 time block).
    #[inline]
    pub fn ts_sec(&self) -> Option<u32> {
        self.time(0x09)
    }

    /// Capture time, microseconds (chunk 0x000a, or the v2 time block).
    #[inline]
    pub fn ts_usec(&self) -> Option<u32> {
        self.time(0x0a)
    }

    /// What the payload is (chunk 0x000b).
    #[inline]
    pub fn proto_type(&self) -> Option<ProtoType> {
        self.fixed::<1>(0x0b).map(|[v]| ProtoType::from_id(v))
    }

    /// Capture agent id (chunk 0x000c, or the 16-bit v2 `captid`).
    #[inline]
    pub fn capture_id(&self) -> Option<u32> {
        match self.version {
            HepVersion::V3 => self.fixed(0x0c).map(u32::from_be_bytes),
            _ => self.fixed(0x0c).map(|v| u16::from_le_bytes(v).into()),
        }
    }

    /// Authentication key (chunk 0x000e).
    #[inline]
    pub fn auth_key(&self) -> Option<&'a [u8]> {
        self.octets(0x0e)
    }

    /// Correlation id (chunk 0x0011).
    #[inline]
    pub fn correlation_id(&self) -> Option<&'a [u8]> {
        self.octets(0x11)
    }

    /// VLAN id (chunk 0x0012).
    #[inline]
    pub fn vlan(&self) -> Option<u16> {
        self.fixed(0x12).map(u16::from_be_bytes)
    }

    /// Capture agent name / node name (chunk 0x0013).
    #[inline]
    pub fn node_name(&self) -> Option<&'a [u8]> {
        self.octets(0x13)
    }

    /// The payload chunk that came last (as in OpenSIPS), or the v1/v2 payload.
    #[inline]
    pub fn payload(&self) -> PayloadView<'a> {
        let (plain, compressed) = (self.walk.at[0x0f], self.walk.at[0x10]);
        if self.version != HepVersion::V3 {
            PayloadView::Plain(self.data.get(usize::from(plain)..).unwrap_or_default())
        } else if plain > compressed {
            PayloadView::Plain(self.octets(0x0f).unwrap_or_default())
        } else {
            PayloadView::Compressed(self.octets(0x10).unwrap_or_default())
        }
    }

    /// The usable payload: the plain bytes borrowed, or a compressed one inflated under
    /// `opts`' cap.
    ///
    /// # Errors
    /// [`DecodeError::UnknownCompression`], [`DecodeError::CorruptCompression`] or
    /// [`DecodeError::InflatedTooLarge`], as decoding would give.
    pub fn inflated_payload(&self, opts: &DecodeOptions) -> Result<Cow<'a, [u8]>, DecodeError> {
        match self.payload() {
            PayloadView::Plain(b) => Ok(Cow::Borrowed(b)),
            PayloadView::Compressed(z) => {
                inflate(z, opts.max_inflated_len()).map(|b| Cow::Owned(b.into()))
            }
        }
    }

    /// Every chunk without an accessor of its own (vendor chunks, keep-alive, MOS, the
    /// generic types without a field), in wire order, as
    /// [`HepMessage::chunks`](crate::HepMessage::chunks) keeps them; none for v1/v2.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkView<'a>> + 'a {
        let data = if self.version == HepVersion::V3 {
            self.data
        } else {
            &[]
        };
        let mut off = HEP3_HEADER_LEN;
        std::iter::from_fn(move || {
            // The walk checked every chunk header and length: this loop only skips.
            while let Some(&[v0, v1, t0, t1, l0, l1]) = data.get(off..off + CHUNK_HEADER_LEN) {
                let len = usize::from(u16::from_be_bytes([l0, l1])).max(CHUNK_HEADER_LEN);
                let value = data.get(off + CHUNK_HEADER_LEN..off + len)?;
                off += len;
                let vendor_type = u32::from_be_bytes([v0, v1, t0, t1]);
                let is_field = vendor_type < FIELD_TYPES as u32
                    && (FAST_FIELDS & (1 << vendor_type) != 0 || vendor_type == 0x10);
                if !is_field {
                    return Some(ChunkView {
                        vendor: u16::from_be_bytes([v0, v1]),
                        chunk_type: u16::from_be_bytes([t0, t1]),
                        data: value,
                    });
                }
            }
            None
        })
    }

    /// The value of fixed size `N` of field type `t`.
    #[inline]
    fn fixed<const N: usize>(&self, t: usize) -> Option<[u8; N]> {
        value(self.data, self.walk.at[t])
    }

    /// The value of octets field type `t`.
    #[inline]
    fn octets(&self, t: usize) -> Option<&'a [u8]> {
        let at = usize::from(self.walk.at[t]);
        (at != 0)
            .then(|| self.data.get(at..at + value_len(self.data, at)))
            .flatten()
    }

    /// The address of the IPv4 type `v4` or the IPv6 type `v6` (the walk made sure at
    /// most one family is present).
    #[inline]
    fn ip(&self, v4: usize, v6: usize) -> Option<IpAddr> {
        match (self.fixed::<4>(v4), self.fixed::<16>(v6)) {
            (Some(a), _) => Some(IpAddr::V4(Ipv4Addr::from(a))),
            (None, a) => a.map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        }
    }

    /// A time field: big-endian in a v3 chunk, little-endian in the v2 time block.
    #[inline]
    fn time(&self, t: usize) -> Option<u32> {
        let raw = self.fixed::<4>(t)?;
        Some(match self.version {
            HepVersion::V3 => u32::from_be_bytes(raw),
            _ => u32::from_le_bytes(raw),
        })
    }
}

impl DecodeOptions {
    /// Reads one message of any version in place; see [`HepView`].
    ///
    /// `max_inflated_len` applies when the payload is inflated
    /// ([`HepView::inflated_payload`]), not here: a view does not inflate.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first thing found wrong.
    #[inline]
    pub fn view<'a>(&self, buf: &'a [u8]) -> Result<HepView<'a>, DecodeError> {
        match buf.first() {
            Some(1 | 2) => view_v12(buf),
            _ if buf.len() >= 4 && self.is_v3_magic(&buf[..4]) => {
                // Walked in place: a copy of the recorded places right after the walk's
                // 16-bit stores would stall on store forwarding.
                let mut view = HepView {
                    data: buf,
                    version: HepVersion::V3,
                    walk: Walk::EMPTY,
                };
                let end = walk_v3(buf, &mut Unkept, &mut view.walk)?;
                view.data = buf.get(..end).unwrap_or_default();
                Ok(view)
            }
            _ => Err(unknown_version(buf)),
        }
    }
}

/// A v1/v2 view: the header fields placed where a v3 walk would record them.
fn view_v12(buf: &[u8]) -> Result<HepView<'_>, DecodeError> {
    let LayoutV12 {
        version,
        family,
        addr_end,
        header_len,
    } = layout_v12(buf)?;
    let mut at = [0u16; FIELD_TYPES];
    // All below 64: the header is at most 52 bytes.
    let place = |at: &mut [u16; FIELD_TYPES], t: usize, offset: usize| at[t] = offset as u16;
    place(&mut at, 0x02, 3);
    place(&mut at, 0x07, 4);
    place(&mut at, 0x08, 6);
    let (src, dst) = match family {
        AddressFamily::Ipv4 => ((0x03, 8), (0x04, 12)),
        AddressFamily::Ipv6 => ((0x05, 8), (0x06, 24)),
    };
    place(&mut at, src.0, src.1);
    place(&mut at, dst.0, dst.1);
    if version == HepVersion::V2 {
        place(&mut at, 0x09, addr_end);
        place(&mut at, 0x0a, addr_end + 4);
        place(&mut at, 0x0c, addr_end + 8);
    }
    place(&mut at, 0x0f, header_len);
    Ok(HepView {
        data: buf,
        version,
        walk: Walk {
            at,
            family: Some(family),
        },
    })
}

/// Where a view of `wire` and its decode disagree, for the tests and the datagram fuzz
/// target: a view reads what `decoded` (the decode of `wire`) holds, or fails as it did;
/// only a compressed chunk's errors are decode's alone (a view does not inflate: it may
/// succeed, or fail on something later in the message), and inflating the view's
/// payload gives the decoded one.
#[cfg(any(test, fuzzing))]
pub(crate) fn view_disagreement(
    opts: &DecodeOptions,
    wire: &[u8],
    decoded: &Result<crate::HepMessage, DecodeError>,
) -> Option<String> {
    let (msg, view) = match (decoded, opts.view(wire)) {
        (Ok(msg), Ok(view)) => (msg, view),
        (Err(e), _) if e.is_compression() => return None,
        (Err(e), Err(v)) if *e == v => return None,
        (d, v) => return Some(format!("decode: {d:?}, view: {v:?}")),
    };
    let chunks: Vec<crate::Chunk> = view
        .chunks()
        .map(|c| crate::Chunk {
            vendor: c.vendor,
            chunk_type: c.chunk_type,
            data: bytes::Bytes::copy_from_slice(c.data),
        })
        .collect();
    let on_wire = match &msg.payload {
        crate::Payload::Plain(b) => (false, b),
        crate::Payload::Compressed { compressed, .. } => (true, compressed),
    };
    let inflated = view.inflated_payload(opts);
    let same = Some(view.version()) == msg.version
        && view.family() == msg.family
        && view.ip_proto() == msg.ip_proto
        && view.src_ip() == msg.src_ip
        && view.dst_ip() == msg.dst_ip
        && view.src_port() == msg.src_port
        && view.dst_port() == msg.dst_port
        && view.src() == msg.src()
        && view.dst() == msg.dst()
        && view.ts_sec() == msg.ts_sec
        && view.ts_usec() == msg.ts_usec
        && view.proto_type() == msg.proto_type
        && view.capture_id() == msg.capture_id
        && view.auth_key() == msg.auth_key.as_deref()
        && view.correlation_id() == msg.correlation_id.as_deref()
        && view.vlan() == msg.vlan
        && view.node_name() == msg.node_name.as_deref()
        && (view.payload().is_compressed(), view.payload().wire_bytes())
            == (on_wire.0, &on_wire.1[..])
        && inflated.as_deref().ok() == Some(&msg.payload.bytes()[..])
        && chunks == msg.chunks;
    (!same).then(|| format!("view {view:?} reads other values than {msg:?}"))
}

#[cfg(test)]
pub(crate) mod tests {
    //! The decode tests call [`view_agrees`] on every vector, mutated vectors and random
    //! chunk soups.

    use proptest::prelude::*;

    use crate::{DecodeError, DecodeOptions, HepMessage};

    /// See [`super::view_disagreement`].
    pub(crate) fn view_agrees(
        opts: &DecodeOptions,
        wire: &[u8],
        decoded: &Result<HepMessage, DecodeError>,
    ) -> Result<(), TestCaseError> {
        match super::view_disagreement(opts, wire, decoded) {
            None => Ok(()),
            Some(why) => Err(TestCaseError::fail(why)),
        }
    }
}

#[cfg(test)]
mod unit {
    #![allow(clippy::unwrap_used)]

    use crate::{DecodeError, DecodeOptions, HepMessage, HepVersion, HepView, gzip_payload};

    #[test]
    fn a_compressed_payload_is_checked_when_it_is_inflated() {
        let mut msg = HepMessage::builder().capture_id(7).build();
        msg.payload = gzip_payload(vec![b'A'; 100_000], 9);
        let wire = msg.encode(HepVersion::V3).unwrap();
        let opts = DecodeOptions::default().with_max_inflated_len(1000);
        assert_eq!(
            opts.decode(&wire),
            Err(DecodeError::InflatedTooLarge { max: 1000 })
        );

        let view = opts.view(&wire).unwrap();
        assert_eq!(view.capture_id(), Some(7));
        assert!(view.payload().is_compressed());
        assert_eq!(
            view.inflated_payload(&opts).unwrap_err(),
            DecodeError::InflatedTooLarge { max: 1000 }
        );
        let roomy = DecodeOptions::default();
        assert_eq!(view.inflated_payload(&roomy).unwrap().len(), 100_000);
    }

    #[test]
    fn a_view_is_the_message_without_a_datagram_tail() {
        let msg = HepMessage::builder().payload("OPTIONS").build();
        let mut wire = msg.encode(HepVersion::V3).unwrap().to_vec();
        let len = wire.len();
        wire.extend_from_slice(b"tail");
        let view = HepView::parse(&wire).unwrap();
        assert_eq!(view.as_bytes(), &wire[..len]);
        assert_eq!(view.payload().wire_bytes(), b"OPTIONS");
    }
}
