//! Properties over generated messages and bytes.

use bytes::{Bytes, BytesMut};
use hep_proto::{ChunkOrder, DecodeOptions, HepCodec, HepMessage, HepVersion};
use hep_testkit::strategy;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// decode(encode(m)) == m for every message v3 can carry, in both chunk orders.
    #[test]
    fn v3_round_trip(msg in strategy::v3_message(), spec_order in any::<bool>()) {
        let order = if spec_order { ChunkOrder::Spec } else { ChunkOrder::Generic };
        let mut wire = BytesMut::new();
        msg.encode_to(HepVersion::V3, order, &mut wire).unwrap();
        prop_assert_eq!(wire.len(), msg.encoded_len(HepVersion::V3).unwrap());
        prop_assert_eq!(HepMessage::decode(wire.freeze()).unwrap(), msg);
    }

    /// decode(encode(m)) == m for HEPv1 and HEPv2.
    #[test]
    fn v1_round_trip(msg in strategy::v12_message(HepVersion::V1)) {
        let wire = msg.encode(HepVersion::V1).unwrap();
        prop_assert_eq!(wire.len(), msg.encoded_len(HepVersion::V1).unwrap());
        prop_assert_eq!(HepMessage::decode(wire).unwrap(), msg);
    }

    #[test]
    fn v2_round_trip(msg in strategy::v12_message(HepVersion::V2)) {
        let wire = msg.encode(HepVersion::V2).unwrap();
        prop_assert_eq!(HepMessage::decode(wire).unwrap(), msg);
    }

    /// Arbitrary bytes never panic, whatever the first bytes claim.
    #[test]
    fn arbitrary_bytes_never_panic(prefix in prop_oneof![Just(&b"HEP3"[..]), Just(&b"\x01\x10\x02"[..]),
                                                          Just(&b"\x02\x28\x0a"[..]), Just(&b""[..])],
                                   rest in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut data = prefix.to_vec();
        data.extend(rest);
        let _ = DecodeOptions::default().decode(&Bytes::from(data));
    }

    /// Flipping any byte of a valid message gives a message or an error, never a panic.
    #[test]
    fn corrupted_messages_never_panic(msg in strategy::v3_message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = msg.encode(HepVersion::V3).unwrap().to_vec();
        let i = at.index(wire.len());
        wire[i] = byte;
        let _ = HepMessage::decode(wire);
    }

    /// A HEP3 stream decodes to the same messages whatever the split points of its
    /// bytes: 1..10 messages back to back, cut anywhere, fed to the codec piece by piece.
    #[test]
    fn stream_decodes_the_same_whatever_the_split_points(
        msgs in proptest::collection::vec(strategy::v3_message(), 1..10),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..32),
    ) {
        let mut codec = HepCodec::new();
        let mut wire = BytesMut::new();
        for msg in &msgs {
            codec.encode(msg, &mut wire).unwrap();
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        points.dedup();

        let mut buf = BytesMut::new();
        let mut got = vec![];
        for piece in points.windows(2) {
            buf.extend_from_slice(&wire[piece[0]..piece[1]]);
            while let Some(msg) = codec.decode(&mut buf).unwrap() {
                got.push(msg);
            }
        }
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        prop_assert_eq!(got, msgs);
    }
}
