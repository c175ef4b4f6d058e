//! Malformed input gets an error that names what was wrong (hep-protocol.md f and its
//! list of negative vectors).

use bytes::{BufMut, Bytes, BytesMut};
use hep_proto::{DecodeError, DecodeOptions, HepMessage};
use hep_testkit::vectors;

fn decode(bytes: &[u8]) -> Result<HepMessage, DecodeError> {
    HepMessage::decode(Bytes::copy_from_slice(bytes))
}

/// HEP3 + total length + the given chunks (vendor, type, declared length, data).
fn v3(chunks: &[(u16, u16, u16, &[u8])]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_slice(b"HEP3");
    b.put_u16(0);
    for (v, t, l, d) in chunks {
        b.put_u16(*v);
        b.put_u16(*t);
        b.put_u16(*l);
        b.put_slice(d);
    }
    let total = b.len() as u16;
    b[4..6].copy_from_slice(&total.to_be_bytes());
    b.to_vec()
}

const PAYLOAD: (u16, u16, u16, &[u8]) = (0, 0x0f, 9, b"SIP");

#[test]
fn total_length_0_5_and_beyond_the_datagram() {
    assert_eq!(
        decode(b"HEP3\x00\x00"),
        Err(DecodeError::TotalLengthTooSmall(0))
    );
    assert_eq!(
        decode(b"HEP3\x00\x05"),
        Err(DecodeError::TotalLengthTooSmall(5))
    );
    let mut w = v3(&[PAYLOAD]);
    w[5] += 1;
    assert_eq!(
        decode(&w),
        Err(DecodeError::TotalLengthExceedsData {
            total: 16,
            available: 15
        })
    );
}

#[test]
fn total_length_7_leaves_a_truncated_chunk_header() {
    let mut w = v3(&[PAYLOAD]);
    w[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        decode(&w),
        Err(DecodeError::ChunkHeaderTruncated {
            offset: 6,
            remaining: 1
        })
    );
}

#[test]
fn a_tail_after_the_total_length_is_ignored() {
    let mut w = v3(&[PAYLOAD]);
    w.extend_from_slice(b"trailing");
    assert_eq!(decode(&w).unwrap().payload.bytes(), "SIP");
}

#[test]
fn chunk_length_0_5_and_past_the_end() {
    for len in [0u16, 5] {
        assert_eq!(
            decode(&v3(&[(0, 0x0f, len, b"")])),
            Err(DecodeError::ChunkLengthTooSmall {
                vendor: 0,
                chunk_type: 0x0f,
                len,
                offset: 6
            })
        );
    }
    assert_eq!(
        decode(&v3(&[(0, 0x0f, 100, b"SIP")])),
        Err(DecodeError::ChunkOverrun {
            vendor: 0,
            chunk_type: 0x0f,
            len: 100,
            remaining: 9,
            offset: 6
        })
    );
}

#[test]
fn fixed_size_chunks_must_have_their_exact_size() {
    assert_eq!(
        decode(&v3(&[(0, 1, 8, &[0, 2]), PAYLOAD])),
        Err(DecodeError::ChunkSize {
            chunk_type: 1,
            len: 8,
            expected: 7
        })
    );
    assert_eq!(
        decode(&v3(&[(0, 0x0c, 8, &[0, 1]), PAYLOAD])),
        Err(DecodeError::ChunkSize {
            chunk_type: 0x0c,
            len: 8,
            expected: 10
        })
    );
    // A known fixed-size type without a field of its own (MOS) is checked too.
    assert_eq!(
        decode(&v3(&[(0, 0x20, 7, &[1]), PAYLOAD])),
        Err(DecodeError::ChunkSize {
            chunk_type: 0x20,
            len: 7,
            expected: 8
        })
    );
}

#[test]
fn a_vendor_chunk_never_overwrites_a_generic_field() {
    let msg = decode(&v3(&[
        (0, 3, 10, &[10, 0, 0, 1]),
        (9, 3, 10, &[6, 6, 6, 6]),
        PAYLOAD,
    ]))
    .unwrap();
    assert_eq!(msg.src_ip, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(msg.chunks.len(), 1);
    assert_eq!((msg.chunks[0].vendor, msg.chunks[0].chunk_type), (9, 3));
    assert_eq!(msg.chunks[0].data, [6, 6, 6, 6][..]);
    // A vendor payload chunk is not the payload either.
    assert_eq!(
        decode(&v3(&[(3, 0x0f, 9, b"SIP")])),
        Err(DecodeError::MissingPayload)
    );
}

#[test]
fn a_payload_chunk_is_required_but_may_be_empty() {
    assert_eq!(
        decode(&v3(&[(0, 2, 7, &[17])])),
        Err(DecodeError::MissingPayload)
    );
    assert_eq!(
        decode(&v3(&[(0, 0x0f, 6, b"")])).unwrap().payload.bytes(),
        ""
    );
}

#[test]
fn family_must_agree_with_the_addresses() {
    let v6 = [0u8; 16];
    assert_eq!(
        decode(&v3(&[(0, 1, 7, &[2]), (0, 5, 22, &v6), PAYLOAD])),
        Err(DecodeError::FamilyMismatch)
    );
    assert_eq!(
        decode(&v3(&[(0, 3, 10, &[1, 2, 3, 4]), (0, 6, 22, &v6), PAYLOAD])),
        Err(DecodeError::FamilyMismatch)
    );
    assert_eq!(
        decode(&v3(&[(0, 1, 7, &[7]), PAYLOAD])),
        Err(DecodeError::UnknownFamilyValue(7))
    );
}

#[test]
fn a_gzip_bomb_is_rejected_at_the_cap() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'A'; 1 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let wire = v3(&[(0, 0x10, 6 + bomb.len() as u16, &bomb)]);
    let opts = DecodeOptions::default().with_max_inflated_len(4096);
    assert_eq!(
        opts.decode(&Bytes::from(wire.clone())),
        Err(DecodeError::InflatedTooLarge { max: 4096 })
    );
    // With a cap above its size it inflates.
    let opts = DecodeOptions::default().with_max_inflated_len(2 << 20);
    assert_eq!(
        opts.decode(&Bytes::from(wire))
            .unwrap()
            .payload
            .bytes()
            .len(),
        1 << 20
    );
}

#[test]
fn v1_v2_truncations_and_bad_headers() {
    // v2/IPv6 in 20 bytes (OpenSIPS reads past the datagram here).
    let mut w = vec![2, 40, 10, 17, 0x13, 0xc4, 0x13, 0xc4];
    w.resize(20, 0);
    assert_eq!(decode(&w), Err(DecodeError::TooShort { len: 20, min: 52 }));
    // v1 with family 7 (OpenSIPS "succeeds" with version 0 here).
    assert_eq!(
        decode(&[1, 16, 7, 17, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'x']),
        Err(DecodeError::UnknownFamily {
            version: 1,
            family: 7
        })
    );
    // v1 IPv4 claiming an IPv6 header length.
    assert_eq!(
        decode(&[1, 40, 2, 17, 0, 0, 0, 0]),
        Err(DecodeError::HeaderLength {
            version: 1,
            family: 2,
            found: 40,
            expected: 16
        })
    );
    assert_eq!(
        decode(&[1, 16, 2]),
        Err(DecodeError::TooShort { len: 3, min: 8 })
    );
    // Every truncation of a real v2 vector is an error, none a panic.
    let v2 = vectors::read("kamailio/v2-udp-0001.hep");
    for n in 0..28 {
        assert!(decode(&v2[..n]).is_err(), "{n} bytes");
    }
    assert!(decode(&v2[..28]).unwrap().payload.bytes().is_empty());
}

#[test]
fn eep1_and_garbage_are_not_hep() {
    assert_eq!(
        decode(b"EEP1\x00\x10"),
        Err(DecodeError::UnknownVersion(*b"EEP1"))
    );
    assert_eq!(decode(b""), Err(DecodeError::UnknownVersion([0; 4])));
    assert_eq!(
        decode(b"GET / HTTP/1.1"),
        Err(DecodeError::UnknownVersion(*b"GET "))
    );
}

#[test]
fn eep3_is_hep3_unless_refused() {
    let mut w = v3(&[PAYLOAD]);
    w[..4].copy_from_slice(b"EEP3");
    assert!(decode(&w).is_ok());
    let strict = DecodeOptions::default().with_accept_eep3(false);
    assert_eq!(
        strict.decode(&Bytes::from(w)),
        Err(DecodeError::UnknownVersion(*b"EEP3"))
    );
}

#[test]
fn every_truncation_of_every_v3_vector_is_an_error_not_a_panic() {
    for set in ["v3-udp-", "v3-udp-hlog-authkey-"] {
        for (name, bytes) in vectors::kamailio(set) {
            for n in 0..bytes.len() {
                assert!(decode(&bytes[..n]).is_err(), "{name} cut at {n}");
            }
        }
    }
}
