//! The decoded HEP message.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::{AddressFamily, Chunk, ChunkType, HepVersion, ProtoType};

/// The captured payload, plain or as received in a compressed chunk (0x0010).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(
    clippy::exhaustive_enums,
    reason = "HEP3 has exactly two payload chunks"
)]
pub enum Payload {
    /// Chunk 0x000f (or the v1/v2 payload): the bytes as captured.
    Plain(Bytes),
    /// Chunk 0x0010: the gzip or zlib stream as received, and what it inflated to.
    ///
    /// Encoding writes `compressed` back unchanged, so a relay forwards what it got.
    /// To change the payload, replace the whole value with [`Payload::Plain`].
    Compressed {
        /// The compressed bytes exactly as on the wire.
        compressed: Bytes,
        /// The inflated payload.
        inflated: Bytes,
    },
}

impl Payload {
    /// The usable payload: the plain bytes, or the inflated ones (what a SIP parser or
    /// a filter reads).
    ///
    /// ```
    /// use hep_proto::Payload;
    ///
    /// let p = Payload::Compressed { compressed: "(zlib stream)".into(), inflated: "OPTIONS".into() };
    /// assert_eq!(p.bytes(), "OPTIONS");
    /// assert_eq!(p.wire_bytes(), "(zlib stream)");
    /// ```
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::Plain(b) => b,
            Self::Compressed { inflated, .. } => inflated,
        }
    }

    /// The payload as on the wire: the plain bytes, or the compressed stream as received
    /// (what encoding writes back, and what [`PayloadView::wire_bytes`](crate::PayloadView::wire_bytes)
    /// reads in place).
    pub fn wire_bytes(&self) -> &Bytes {
        match self {
            Self::Plain(b) => b,
            Self::Compressed { compressed, .. } => compressed,
        }
    }

    /// Whether it arrived compressed.
    pub const fn is_compressed(&self) -> bool {
        matches!(self, Self::Compressed { .. })
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::Plain(Bytes::new())
    }
}

/// One HEP message of any version.
///
/// The fields are those the JSON record of the collector shows; a field is `None` when
/// its chunk was absent (HEPv1 has no time, HEPv1/v2 no protocol type). Every other
/// chunk, vendor chunks included, is kept in [`chunks`](Self::chunks) in wire order and
/// written back unchanged; typed accessors such as [`mos`](Self::mos) read the known ones.
///
/// Byte fields are zero-copy slices of the buffer the message was decoded from.
///
/// ```
/// use hep_proto::{HepMessage, HepVersion, ProtoType};
///
/// let msg = HepMessage::builder()
///     .src("10.0.0.1:5060".parse().unwrap())
///     .dst("10.0.0.2:5060".parse().unwrap())
///     .timestamp(1_700_000_000, 42)
///     .proto_type(ProtoType::Sip)
///     .capture_id(2001)
///     .payload("OPTIONS sip:x SIP/2.0\r\n\r\n")
///     .build();
/// let wire = msg.encode(HepVersion::V3).unwrap();
/// let back = HepMessage::decode(wire).unwrap();
/// assert_eq!(back.capture_id, Some(2001));
/// assert_eq!(back.payload.bytes(), "OPTIONS sip:x SIP/2.0\r\n\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HepMessage {
    /// The version it was decoded from (or will be encoded as by default).
    pub version: Option<HepVersion>,
    /// Address family (chunk 0x0001, or `hp_f`).
    pub family: Option<AddressFamily>,
    /// IP protocol (chunk 0x0002, or `hp_p`): see [`ip_proto`](crate::ip_proto).
    pub ip_proto: Option<u8>,
    /// Source address (chunk 0x0003/0x0005).
    pub src_ip: Option<IpAddr>,
    /// Destination address (chunk 0x0004/0x0006).
    pub dst_ip: Option<IpAddr>,
    /// Source port (chunk 0x0007).
    pub src_port: Option<u16>,
    /// Destination port (chunk 0x0008).
    pub dst_port: Option<u16>,
    /// Capture time, seconds since the epoch (chunk 0x0009, or the v2 time block).
    pub ts_sec: Option<u32>,
    /// Capture time, microseconds (chunk 0x000a, or the v2 time block).
    pub ts_usec: Option<u32>,
    /// What the payload is (chunk 0x000b).
    pub proto_type: Option<ProtoType>,
    /// Capture agent id (chunk 0x000c, or the 16-bit v2 `captid`).
    pub capture_id: Option<u32>,
    /// Authentication key (chunk 0x000e).
    pub auth_key: Option<Bytes>,
    /// Correlation id (chunk 0x0011), e.g. a Call-ID.
    pub correlation_id: Option<Bytes>,
    /// VLAN id (chunk 0x0012).
    pub vlan: Option<u16>,
    /// Capture agent name / node name (chunk 0x0013).
    pub node_name: Option<Bytes>,
    /// The captured payload (chunk 0x000f or 0x0010).
    pub payload: Payload,
    /// Every other chunk, in wire order.
    pub chunks: Vec<Chunk>,
}

impl HepMessage {
    /// A builder with every field absent; see [`HepMessageBuilder`].
    pub fn builder() -> HepMessageBuilder {
        HepMessageBuilder::default()
    }

    /// Source address and port, when both are known.
    pub fn src(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.src_ip?, self.src_port.unwrap_or(0)))
    }

    /// Destination address and port, when both are known.
    pub fn dst(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.dst_ip?, self.dst_port.unwrap_or(0)))
    }

    /// The first kept chunk of a generic type.
    pub fn chunk(&self, kind: ChunkType) -> Option<&Chunk> {
        self.chunks.iter().find(|c| c.kind() == Some(kind))
    }

    /// Keep-alive timer in seconds (chunk 0x000d).
    pub fn keep_alive(&self) -> Option<u16> {
        self.uint(ChunkType::KeepAlive)
            .and_then(|v| u16::try_from(v).ok())
    }

    /// MOS (chunk 0x0020).
    pub fn mos(&self) -> Option<u16> {
        self.uint(ChunkType::Mos)
            .and_then(|v| u16::try_from(v).ok())
    }

    /// R-factor (chunk 0x0021).
    pub fn r_factor(&self) -> Option<u16> {
        self.uint(ChunkType::RFactor)
            .and_then(|v| u16::try_from(v).ok())
    }

    /// Jitter (chunk 0x0023).
    pub fn jitter(&self) -> Option<u32> {
        self.uint(ChunkType::Jitter)
    }

    /// Group id (chunk 0x0029).
    pub fn group_id(&self) -> Option<&Bytes> {
        self.chunk(ChunkType::GroupId).map(|c| &c.data)
    }

    fn uint(&self, kind: ChunkType) -> Option<u32> {
        self.chunk(kind).and_then(Chunk::as_uint)
    }
}

/// Builds a [`HepMessage`] field by field: the Rust side of OpenSIPS's `pack_hep`.
///
/// Nothing is filled in implicitly (hep-proto reads no clock): set the timestamp from
/// your own clock.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct HepMessageBuilder {
    msg: HepMessage,
}

impl HepMessageBuilder {
    /// Source address and port; also sets the family.
    pub fn src(mut self, addr: SocketAddr) -> Self {
        self.msg.family = Some(family_of(addr.ip()));
        self.msg.src_ip = Some(addr.ip());
        self.msg.src_port = Some(addr.port());
        self
    }

    /// Destination address and port; also sets the family.
    pub fn dst(mut self, addr: SocketAddr) -> Self {
        self.msg.family = Some(family_of(addr.ip()));
        self.msg.dst_ip = Some(addr.ip());
        self.msg.dst_port = Some(addr.port());
        self
    }

    /// IP protocol of the captured packet (default: UDP).
    pub fn ip_proto(mut self, p: u8) -> Self {
        self.msg.ip_proto = Some(p);
        self
    }

    /// Capture time.
    pub fn timestamp(mut self, sec: u32, usec: u32) -> Self {
        self.msg.ts_sec = Some(sec);
        self.msg.ts_usec = Some(usec);
        self
    }

    /// What the payload is.
    pub fn proto_type(mut self, t: ProtoType) -> Self {
        self.msg.proto_type = Some(t);
        self
    }

    /// Capture agent id.
    pub fn capture_id(mut self, id: u32) -> Self {
        self.msg.capture_id = Some(id);
        self
    }

    /// Authentication key (chunk 0x000e).
    pub fn auth_key(mut self, key: impl Into<Bytes>) -> Self {
        self.msg.auth_key = Some(key.into());
        self
    }

    /// Correlation id (chunk 0x0011).
    pub fn correlation_id(mut self, id: impl Into<Bytes>) -> Self {
        self.msg.correlation_id = Some(id.into());
        self
    }

    /// Node name (chunk 0x0013).
    pub fn node_name(mut self, name: impl Into<Bytes>) -> Self {
        self.msg.node_name = Some(name.into());
        self
    }

    /// VLAN id (chunk 0x0012).
    pub fn vlan(mut self, vlan: u16) -> Self {
        self.msg.vlan = Some(vlan);
        self
    }

    /// An extra chunk, written after the known ones and before the payload.
    pub fn chunk(mut self, chunk: Chunk) -> Self {
        self.msg.chunks.push(chunk);
        self
    }

    /// The captured payload.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.msg.payload = Payload::Plain(payload.into());
        self
    }

    /// The message.
    pub fn build(mut self) -> HepMessage {
        self.msg.ip_proto.get_or_insert(crate::ip_proto::UDP);
        self.msg
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Ipv4,
        IpAddr::V6(_) => AddressFamily::Ipv6,
    }
}
