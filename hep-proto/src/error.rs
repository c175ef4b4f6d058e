//! Typed, allocation-free errors for decoding and encoding.

/// Why a HEP message could not be decoded.
///
/// Every variant names what was wrong and where, so that a collector can log it for a
/// person and count it by [`label`](Self::label) for metrics. The type is `Copy` and
/// never allocates: decoding hostile input must not cost more than rejecting it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the smallest header of the detected version.
    #[error("message too short: {len} bytes, need at least {min}")]
    TooShort {
        /// Bytes available.
        len: usize,
        /// Bytes the header needs.
        min: usize,
    },
    /// Neither `HEP3`/`EEP3` nor a v1/v2 header (first byte 1 or 2).
    #[error("not HEP: first bytes {0:02x?} are neither HEP3/EEP3 nor a v1/v2 header")]
    UnknownVersion([u8; 4]),
    /// A v1/v2 header whose address family is neither `AF_INET` (2) nor `AF_INET6` (10).
    #[error("HEPv{version} header has unknown address family {family} (expected 2 or 10)")]
    UnknownFamily {
        /// Header version, 1 or 2.
        version: u8,
        /// The family byte found.
        family: u8,
    },
    /// A v1/v2 header length (`hp_l`) that does not match its family.
    #[error(
        "HEPv{version} header length {found} does not match family {family} (expected {expected})"
    )]
    HeaderLength {
        /// Header version, 1 or 2.
        version: u8,
        /// The family byte.
        family: u8,
        /// `hp_l` as found.
        found: u8,
        /// `hp_l` the family requires (16 or 40).
        expected: u8,
    },
    /// A v3 total length below the 6-byte control header.
    #[error("HEP3 total length {0} is below the 6-byte header")]
    TotalLengthTooSmall(u16),
    /// A v3 total length larger than the bytes received.
    #[error("HEP3 total length {total} exceeds the {available} bytes received")]
    TotalLengthExceedsData {
        /// Total length from the header.
        total: u16,
        /// Bytes actually available.
        available: usize,
    },
    /// Fewer than 6 bytes left where a chunk header should start.
    #[error("chunk header truncated at offset {offset}: {remaining} bytes left, need 6")]
    ChunkHeaderTruncated {
        /// Offset of the would-be chunk from the start of the message.
        offset: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A chunk whose length field is below its own 6-byte header.
    #[error(
        "chunk {vendor:#06x}/{chunk_type:#06x} at offset {offset} has length {len}, below the 6-byte header"
    )]
    ChunkLengthTooSmall {
        /// Vendor id.
        vendor: u16,
        /// Chunk type.
        chunk_type: u16,
        /// Length field.
        len: u16,
        /// Offset of the chunk.
        offset: usize,
    },
    /// A chunk that runs past the end of the message.
    #[error(
        "chunk {vendor:#06x}/{chunk_type:#06x} at offset {offset} has length {len} but only {remaining} bytes remain"
    )]
    ChunkOverrun {
        /// Vendor id.
        vendor: u16,
        /// Chunk type.
        chunk_type: u16,
        /// Length field.
        len: u16,
        /// Bytes left from the chunk's start.
        remaining: usize,
        /// Offset of the chunk.
        offset: usize,
    },
    /// A fixed-size generic chunk with the wrong length.
    #[error("chunk type {chunk_type:#06x} has length {len}, expected exactly {expected}")]
    ChunkSize {
        /// Chunk type.
        chunk_type: u16,
        /// Length field.
        len: u16,
        /// Required length (header included).
        expected: u16,
    },
    /// A family chunk (0x0001) whose value is not a known IPv4/IPv6 family.
    #[error("address family chunk has unknown value {0} (expected 2 or 10)")]
    UnknownFamilyValue(u8),
    /// The family chunk and the address chunks disagree, or IPv4 and IPv6 addresses are mixed.
    #[error("address family and address chunks disagree (IPv4 and IPv6 mixed)")]
    FamilyMismatch,
    /// A v3 message without a payload chunk (0x000f or 0x0010).
    #[error("HEP3 message has no payload chunk (0x000f or 0x0010)")]
    MissingPayload,
    /// Chunk 0x0010 holds neither a gzip nor a zlib stream.
    #[error("compressed payload is neither gzip nor zlib (first bytes {0:02x?})")]
    UnknownCompression([u8; 2]),
    /// Chunk 0x0010 holds a corrupt gzip/zlib stream.
    #[error("compressed payload is corrupt: the gzip/zlib stream does not inflate")]
    CorruptCompression,
    /// Chunk 0x0010 inflates past the configured cap (a decompression bomb).
    #[error("compressed payload inflates past the {max}-byte cap")]
    InflatedTooLarge {
        /// The cap in force.
        max: usize,
    },
    /// A stream frame that does not start with `HEP3`.
    #[error("stream frame does not start with HEP3 (found {0:02x?})")]
    BadMagic([u8; 4]),
    /// A stream frame longer than the configured maximum.
    #[error("stream frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLong {
        /// Frame length from the header.
        len: usize,
        /// Maximum in force.
        max: usize,
    },
}

impl DecodeError {
    /// Whether it is about a compressed payload (chunk 0x0010): the errors a
    /// [`HepView`](crate::HepView) leaves to
    /// [`inflated_payload`](crate::HepView::inflated_payload).
    ///
    /// ```
    /// use hep_proto::DecodeError;
    /// assert!(DecodeError::CorruptCompression.is_compression());
    /// assert!(!DecodeError::MissingPayload.is_compression());
    /// ```
    pub const fn is_compression(&self) -> bool {
        matches!(
            self,
            Self::UnknownCompression(_) | Self::CorruptCompression | Self::InflatedTooLarge { .. }
        )
    }

    /// A short, stable, snake_case name for metrics labels (`hep_rejected_total{reason=...}`).
    ///
    /// ```
    /// use hep_proto::DecodeError;
    /// assert_eq!(DecodeError::MissingPayload.label(), "missing_payload");
    /// ```
    pub const fn label(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::UnknownVersion(_) => "unknown_version",
            Self::UnknownFamily { .. } => "unknown_family",
            Self::HeaderLength { .. } => "bad_header_length",
            Self::TotalLengthTooSmall(_) => "total_length_too_small",
            Self::TotalLengthExceedsData { .. } => "total_length_exceeds_data",
            Self::ChunkHeaderTruncated { .. } => "chunk_header_truncated",
            Self::ChunkLengthTooSmall { .. } => "chunk_length_too_small",
            Self::ChunkOverrun { .. } => "chunk_overrun",
            Self::ChunkSize { .. } => "bad_chunk_size",
            Self::UnknownFamilyValue(_) => "unknown_family",
            Self::FamilyMismatch => "family_mismatch",
            Self::MissingPayload => "missing_payload",
            Self::UnknownCompression(_) => "unknown_compression",
            Self::CorruptCompression => "corrupt_compression",
            Self::InflatedTooLarge { .. } => "inflated_too_large",
            Self::BadMagic(_) => "bad_magic",
            Self::FrameTooLong { .. } => "frame_too_long",
        }
    }

    /// Every label [`label`](Self::label) can return, so that metrics can be
    /// pre-registered at zero.
    pub const LABELS: &'static [&'static str] = &[
        "too_short",
        "unknown_version",
        "unknown_family",
        "bad_header_length",
        "total_length_too_small",
        "total_length_exceeds_data",
        "chunk_header_truncated",
        "chunk_length_too_small",
        "chunk_overrun",
        "bad_chunk_size",
        "family_mismatch",
        "missing_payload",
        "unknown_compression",
        "corrupt_compression",
        "inflated_too_large",
        "bad_magic",
        "frame_too_long",
    ];
}

/// Why a HEP message could not be encoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded v3 message would exceed 65535 bytes (the u16 total length).
    #[error("encoded HEP3 message would be {0} bytes, above the 65535-byte limit")]
    TooLong(usize),
    /// One chunk's data would exceed 65529 bytes (the u16 chunk length).
    #[error("chunk {chunk_type:#06x} would carry {len} bytes, above the 65529-byte limit")]
    ChunkTooLong {
        /// Chunk type.
        chunk_type: u16,
        /// Data length.
        len: usize,
    },
    /// v1/v2 need both addresses and they must be of one family.
    #[error("HEPv1/v2 need a source and a destination address of the same family")]
    MissingAddresses,
    /// v2 carries the capture id in 16 bits.
    #[error("capture id {0} does not fit the 16-bit HEPv2 field")]
    CaptureIdTooLarge(u32),
    /// Source and destination addresses of different families.
    #[error("source and destination addresses are of different families")]
    FamilyMismatch,
}

/// Error of [`HepCodec`](crate::HepCodec) and [`HepFrameCodec`](crate::HepFrameCodec):
/// a malformed frame or an IO error from the underlying stream. Feature `codec`.
#[cfg(feature = "codec")]
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HepCodecError {
    /// The bytes are not valid HEP.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Reading or writing the stream failed.
    #[error("HEP stream IO error: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_listed() {
        let samples = [
            DecodeError::TooShort { len: 0, min: 1 },
            DecodeError::UnknownFamilyValue(3),
            DecodeError::FrameTooLong { len: 1, max: 0 },
        ];
        for e in samples {
            assert!(DecodeError::LABELS.contains(&e.label()), "{e:?}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let e = DecodeError::ChunkSize {
            chunk_type: 1,
            len: 8,
            expected: 7,
        };
        assert_eq!(
            e.to_string(),
            "chunk type 0x0001 has length 8, expected exactly 7"
        );
    }
}
