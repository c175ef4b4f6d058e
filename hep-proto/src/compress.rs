//! Chunk 0x0010: gzip (OpenSIPS) or zlib (captagent) payloads, inflated under a cap.

use std::io::Read;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::{GzDecoder, GzEncoder, ZlibDecoder};

use crate::DecodeError;

/// Inflates a gzip or zlib stream, told apart by its first bytes, reading at most `max`
/// bytes of output: a stream that would inflate further is rejected, not inflated.
pub(crate) fn inflate(data: &[u8], max: usize) -> Result<Bytes, DecodeError> {
    let magic = [
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ];
    // Reading one byte past the cap tells "exactly max" from "more than max".
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    // Start small: the cap bounds the growth, the input size hints the need.
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max));
    let read = if magic == [0x1f, 0x8b] {
        GzDecoder::new(data).take(limit).read_to_end(&mut out)
    } else if is_zlib_header(magic) {
        ZlibDecoder::new(data).take(limit).read_to_end(&mut out)
    } else {
        return Err(DecodeError::UnknownCompression(magic));
    };
    read.map_err(|_| DecodeError::CorruptCompression)?;
    if out.len() > max {
        return Err(DecodeError::InflatedTooLarge { max });
    }
    Ok(out.into())
}

/// RFC 1950: method 8 (deflate), window <= 32 KiB, and the check bits make the first
/// two bytes a multiple of 31.
fn is_zlib_header([cmf, flg]: [u8; 2]) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

/// Gzip-compresses a payload for chunk 0x0010, as OpenSIPS's `compressed_payload` does
/// (gzip container, level 0-9).
///
/// ```
/// use hep_proto::{HepMessage, HepVersion, gzip_payload};
///
/// let mut msg = HepMessage::builder().payload("INVITE sip:bob").build();
/// msg.payload = gzip_payload(b"INVITE sip:bob".as_slice(), 6);
/// let back = HepMessage::decode(msg.encode(HepVersion::V3).unwrap()).unwrap();
/// assert!(back.payload.is_compressed());
/// assert_eq!(back.payload.bytes(), "INVITE sip:bob");
/// ```
pub fn gzip_payload(payload: impl Into<Bytes>, level: u32) -> crate::Payload {
    let inflated: Bytes = payload.into();
    let mut compressed = Vec::with_capacity(inflated.len() / 2 + 32);
    // Reading from an in-memory slice through the encoder cannot fail.
    let _ =
        GzEncoder::new(&inflated[..], Compression::new(level.min(9))).read_to_end(&mut compressed);
    crate::Payload::Compressed {
        compressed: compressed.into(),
        inflated,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{GzEncoder, ZlibEncoder};

    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_gzip_and_zlib() {
        let text = b"SIP/2.0 401 Unauthorized\r\n\r\n".repeat(10);
        assert_eq!(inflate(&gz(&text), 1 << 20).unwrap(), text);
        assert_eq!(inflate(&zlib(&text), 1 << 20).unwrap(), text);
    }

    #[test]
    fn output_of_exactly_the_cap_is_accepted_one_more_is_rejected() {
        let text = vec![b'a'; 1000];
        assert_eq!(inflate(&gz(&text), 1000).unwrap().len(), 1000);
        assert_eq!(
            inflate(&gz(&text), 999),
            Err(DecodeError::InflatedTooLarge { max: 999 })
        );
    }

    #[test]
    fn a_bomb_is_rejected_without_inflating_it() {
        // 64 MiB of zeros compresses to about 64 KB; the cap stops it at 64 KiB + 1.
        let bomb = gz(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 70_000);
        assert_eq!(
            inflate(&bomb, 64 << 10),
            Err(DecodeError::InflatedTooLarge { max: 64 << 10 })
        );
    }

    #[test]
    fn garbage_and_truncation_are_named() {
        assert_eq!(
            inflate(b"SIP/2.0", 100),
            Err(DecodeError::UnknownCompression(*b"SI"))
        );
        assert_eq!(
            inflate(b"", 100),
            Err(DecodeError::UnknownCompression([0, 0]))
        );
        let z = gz(b"hello hello hello");
        assert_eq!(
            inflate(&z[..z.len() / 2], 100),
            Err(DecodeError::CorruptCompression)
        );
    }
}
