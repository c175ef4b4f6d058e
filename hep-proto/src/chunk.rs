//! HEPv3 chunks: the generic chunk types of the spec, and raw chunks kept verbatim.

use bytes::Bytes;

/// Vendor id 0: the generic chunks defined by the HEP3 specification.
pub const GENERIC_VENDOR: u16 = 0;

/// Length of a chunk header: vendor (u16), type (u16), length (u16).
pub const CHUNK_HEADER_LEN: usize = 6;

/// The shape of a generic chunk's value, which fixes its wire length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::exhaustive_enums,
    reason = "the spec's value shapes are a closed set"
)]
pub enum ChunkShape {
    /// One byte (7 bytes on the wire).
    U8,
    /// Two bytes, big-endian (8 on the wire).
    U16,
    /// Four bytes, big-endian (10 on the wire).
    U32,
    /// An IPv4 address (10 on the wire).
    Ipv4,
    /// An IPv6 address (22 on the wire).
    Ipv6,
    /// Any number of octets.
    Octets,
}

impl ChunkShape {
    /// The exact wire length (header included) of a fixed-size shape.
    pub const fn wire_len(self) -> Option<u16> {
        match self {
            Self::U8 => Some(7),
            Self::U16 => Some(8),
            Self::U32 | Self::Ipv4 => Some(10),
            Self::Ipv6 => Some(22),
            Self::Octets => None,
        }
    }
}

macro_rules! chunk_types {
    ($( $(#[$doc:meta])* $name:ident = $id:literal, $shape:ident; )*) => {
        /// The generic (vendor 0) chunk types of HEP3 spec rev 37, table b.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ChunkType {
            $( $(#[$doc])* $name, )*
        }

        impl ChunkType {
            /// The type id on the wire.
            pub const fn id(self) -> u16 {
                match self { $( Self::$name => $id, )* }
            }

            /// The named type for a generic type id, if the spec defines it.
            pub const fn from_id(id: u16) -> Option<Self> {
                match id { $( $id => Some(Self::$name), )* _ => None }
            }

            /// The value's shape, and so its required wire length.
            pub const fn shape(self) -> ChunkShape {
                match self { $( Self::$name => ChunkShape::$shape, )* }
            }
        }
    };
}

chunk_types! {
    /// 0x0001 IP protocol family (u8).
    IpFamily = 0x0001, U8;
    /// 0x0002 IP protocol id (u8).
    IpProto = 0x0002, U8;
    /// 0x0003 IPv4 source address.
    Ipv4Src = 0x0003, Ipv4;
    /// 0x0004 IPv4 destination address.
    Ipv4Dst = 0x0004, Ipv4;
    /// 0x0005 IPv6 source address.
    Ipv6Src = 0x0005, Ipv6;
    /// 0x0006 IPv6 destination address.
    Ipv6Dst = 0x0006, Ipv6;
    /// 0x0007 source port (u16).
    SrcPort = 0x0007, U16;
    /// 0x0008 destination port (u16).
    DstPort = 0x0008, U16;
    /// 0x0009 timestamp, seconds (u32).
    TsSec = 0x0009, U32;
    /// 0x000a timestamp, microseconds offset (u32).
    TsUsec = 0x000a, U32;
    /// 0x000b protocol type (u8).
    ProtoType = 0x000b, U8;
    /// 0x000c capture agent id (u32).
    CaptureId = 0x000c, U32;
    /// 0x000d keep-alive timer, seconds (u16).
    KeepAlive = 0x000d, U16;
    /// 0x000e authentication key (octets).
    AuthKey = 0x000e, Octets;
    /// 0x000f captured payload (octets).
    Payload = 0x000f, Octets;
    /// 0x0010 compressed payload, gzip or zlib (octets).
    CompressedPayload = 0x0010, Octets;
    /// 0x0011 internal correlation id (octets).
    CorrelationId = 0x0011, Octets;
    /// 0x0012 VLAN id (u16).
    Vlan = 0x0012, U16;
    /// 0x0013 capture agent name / group id (octets).
    NodeName = 0x0013, Octets;
    /// 0x0014 source MAC.
    SrcMac = 0x0014, Octets;
    /// 0x0015 destination MAC.
    DstMac = 0x0015, Octets;
    /// 0x0016 Ethernet type (u16).
    EthernetType = 0x0016, U16;
    /// 0x0017 TCP flags (u8).
    TcpFlags = 0x0017, U8;
    /// 0x0018 IP TOS (u8).
    IpTos = 0x0018, U8;
    /// 0x0020 MOS value (u16).
    Mos = 0x0020, U16;
    /// 0x0021 R-factor (u16).
    RFactor = 0x0021, U16;
    /// 0x0022 GEO location (octets).
    GeoLocation = 0x0022, Octets;
    /// 0x0023 jitter (u32).
    Jitter = 0x0023, U32;
    /// 0x0024 transaction type: call, registration (octets).
    TransactionType = 0x0024, Octets;
    /// 0x0025 payload JSON keys (octets).
    PayloadJsonKeys = 0x0025, Octets;
    /// 0x0026 tags' values (octets).
    TagValues = 0x0026, Octets;
    /// 0x0027 type of tag (u16).
    TagType = 0x0027, U16;
    /// 0x0028 event type: 1 recording, 2 recording LI (u16).
    EventType = 0x0028, U16;
    /// 0x0029 group id (octets).
    GroupId = 0x0029, Octets;
}

/// A chunk kept as it was on the wire: vendor chunks, generic chunks without a field of
/// their own in [`HepMessage`](crate::HepMessage), and unknown types.
///
/// Its data is a zero-copy slice of the received buffer and is re-encoded unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Vendor id (0 = generic).
    pub vendor: u16,
    /// Chunk type id.
    pub chunk_type: u16,
    /// The value, without the 6-byte chunk header.
    pub data: Bytes,
}

impl Chunk {
    /// A new chunk.
    pub fn new(vendor: u16, chunk_type: u16, data: impl Into<Bytes>) -> Self {
        Self {
            vendor,
            chunk_type,
            data: data.into(),
        }
    }

    /// The spec's name for this chunk, when it is a generic chunk the spec defines.
    pub const fn kind(&self) -> Option<ChunkType> {
        if self.vendor == GENERIC_VENDOR {
            ChunkType::from_id(self.chunk_type)
        } else {
            None
        }
    }

    /// The value as an unsigned integer, when the data is 1, 2 or 4 bytes long.
    ///
    /// ```
    /// # use hep_proto::Chunk;
    /// assert_eq!(Chunk::new(0, 0x20, vec![0x01, 0xb8]).as_uint(), Some(440));
    /// assert_eq!(Chunk::new(0, 0x22, &b"lat"[..]).as_uint(), None);
    /// ```
    pub fn as_uint(&self) -> Option<u32> {
        match *self.data {
            [a] => Some(a.into()),
            [a, b] => Some(u16::from_be_bytes([a, b]).into()),
            [a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// Wire length including the 6-byte header.
    pub fn wire_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_type_round_trips_its_id() {
        for id in 0..=0x40u16 {
            if let Some(t) = ChunkType::from_id(id) {
                assert_eq!(t.id(), id);
            }
        }
    }

    #[test]
    fn vendor_chunks_have_no_generic_kind() {
        assert_eq!(
            Chunk::new(0, 3, vec![0; 4]).kind(),
            Some(ChunkType::Ipv4Src)
        );
        assert_eq!(Chunk::new(9, 3, vec![0; 4]).kind(), None);
    }
}
