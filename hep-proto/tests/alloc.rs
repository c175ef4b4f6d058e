//! Zero heap allocations per decode, counted.
//!
//! `allocation-counter` installs a counting global allocator (a wrapper around `System`)
//! in the binary that links it, and `measure` counts what the current thread allocates
//! inside a closure; other test threads do not disturb the count. Because it replaces
//! the global allocator, this file is its own test binary rather than a module of
//! `tests/it`. It counts `realloc` as an allocation too (its `GlobalAlloc` keeps the
//! default `realloc`, which allocates, copies and frees).

use allocation_counter::measure;
use bytes::{Bytes, BytesMut};
use hep_proto::{ChunkOrder, DecodeOptions, HepCodec, HepMessage, HepVersion, HepView};
use hep_testkit::vectors;
use tokio_util::codec::Decoder;

/// A vector in a `Bytes` that is already shared, as a receive buffer is.
fn shared(name: &str) -> Bytes {
    let wire = Bytes::from(vectors::read(&format!("kamailio/{name}")));
    // A `Bytes` made from a `Vec` is not yet reference-counted: its first clone promotes
    // it to a shared buffer, and that allocates once (the shared header), whoever clones
    // it. Decoding slices the input, so clone once here, before measuring, to count
    // decoding alone. (A `Bytes` frozen from a receive `BytesMut` after a split is
    // already shared.)
    drop(wire.clone());
    wire
}

/// The counter sees allocations, so the zeros below are not vacuous; and the first
/// clone of a `Vec`-backed `Bytes` is the one allocation `shared` keeps out of them.
#[test]
fn the_counter_counts() {
    let info = measure(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8))));
    assert_eq!(info.count_total, 1);

    let wire = Bytes::from(vectors::read("kamailio/v3-udp-0001.hep"));
    let info = measure(|| drop(wire.clone()));
    assert_eq!(info.count_total, 1, "first clone promotes to shared");
    let info = measure(|| drop(wire.clone()));
    assert_eq!(info.count_total, 0, "later clones only count references");
}

fn assert_decode_allocates_nothing(name: &str, version: HepVersion) {
    let wire = shared(name);
    let opts = DecodeOptions::default();
    let mut decoded = None;
    let info = measure(|| decoded = Some(opts.decode(&wire)));
    assert_eq!(
        info.count_total, 0,
        "{name}: allocations in DecodeOptions::decode"
    );
    let msg = decoded.take().unwrap().unwrap();
    assert_eq!(msg.version, Some(version));
    assert!(!msg.payload.bytes().is_empty());

    let info = measure(|| decoded = Some(HepMessage::decode(wire.clone())));
    assert_eq!(
        info.count_total, 0,
        "{name}: allocations in HepMessage::decode"
    );
    assert_eq!(decoded.unwrap().unwrap(), msg);
}

#[test]
fn decode_v3_allocates_nothing() {
    assert_decode_allocates_nothing("v3-udp-0001.hep", HepVersion::V3);
}

#[test]
fn decode_v2_allocates_nothing() {
    assert_decode_allocates_nothing("v2-udp-0001.hep", HepVersion::V2);
}

#[test]
fn decode_v1_allocates_nothing() {
    assert_decode_allocates_nothing("v1-udp-0001.hep", HepVersion::V1);
}

/// The auth key and correlation id chunks are slices too.
#[test]
fn decode_v3_with_auth_key_and_correlation_id_allocates_nothing() {
    let wire = shared("v3-udp-hlog-authkey-0002.hep");
    let mut decoded = None;
    let info = measure(|| decoded = Some(HepMessage::decode(wire.clone())));
    assert_eq!(info.count_total, 0);
    let msg = decoded.unwrap().unwrap();
    assert!(msg.auth_key.is_some() && msg.correlation_id.is_some());
}

/// A view reads in place: no allocation, whatever the version or chunks.
#[test]
fn a_view_allocates_nothing() {
    for name in [
        "v3-udp-0001.hep",
        "v3-udp-hlog-authkey-0002.hep",
        "v2-udp-0001.hep",
        "v1-udp-0001.hep",
    ] {
        let wire = vectors::read(&format!("kamailio/{name}"));
        let mut read = None;
        let info = measure(|| {
            read = Some(
                HepView::parse(&wire).map(|v| (v.capture_id(), v.payload().wire_bytes().len())),
            )
        });
        assert_eq!(info.count_total, 0, "{name}");
        let (_, payload_len) = read.unwrap().unwrap();
        assert!(payload_len > 0, "{name}");
    }
}

/// Encoding into a buffer with exactly `encoded_len` bytes of room allocates nothing.
fn assert_encode_allocates_nothing(version: HepVersion) {
    let msg = HepMessage::decode(shared("v3-udp-0001.hep")).unwrap();
    let len = msg.encoded_len(version).unwrap();
    let mut dst = BytesMut::with_capacity(len);
    let mut result = None;
    let info = measure(|| result = Some(msg.encode_to(version, ChunkOrder::default(), &mut dst)));
    assert_eq!(info.count_total, 0, "{version:?}");
    result.unwrap().unwrap();
    assert_eq!(dst.len(), len);
}

#[test]
fn encode_v3_into_a_reserved_buffer_allocates_nothing() {
    assert_encode_allocates_nothing(HepVersion::V3);
}

#[test]
fn encode_v2_into_a_reserved_buffer_allocates_nothing() {
    assert_encode_allocates_nothing(HepVersion::V2);
}

#[test]
fn encode_v1_into_a_reserved_buffer_allocates_nothing() {
    assert_encode_allocates_nothing(HepVersion::V1);
}

/// The stream codec: a receive buffer is promoted to shared once, by its first split
/// (one allocation per buffer, not per message); after that no frame allocates.
#[test]
fn stream_decode_allocates_once_per_buffer_not_per_frame() {
    let mut buf = BytesMut::from(&vectors::read("kamailio/v3-tcp-stream.bin")[..]);
    let mut codec = HepCodec::new();
    let mut first = None;
    let info = measure(|| first = Some(codec.decode(&mut buf)));
    assert!(first.unwrap().unwrap().is_some());
    assert!(info.count_total <= 1, "first frame: {info:?}");

    let mut frames = 1;
    let mut kept = Vec::with_capacity(16);
    let info = measure(|| {
        while let Some(msg) = codec.decode(&mut buf).unwrap() {
            kept.push(msg);
            frames += 1;
        }
    });
    assert_eq!(info.count_total, 0, "frames 2..{frames}");
    assert_eq!(frames, 12);
}
