//! Decode/encode cost per message, for the messages capture agents actually send.
//!
//! `cargo bench -p hep-proto --bench codec` (or `cargo xtask bench`). The 608-byte
//! Kamailio v3 INVITE is the packet `docs/limits.md` measured the C chunk walk with.

#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented function"
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hep_proto::{ChunkOrder, HepFrameCodec, HepMessage, HepVersion, HepView};
use tokio_util::codec::Decoder;

fn vector(name: &str) -> Bytes {
    let path = format!(
        "{}/../hep-testkit/testdata/kamailio/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (label, file) in [
        ("v3_invite_608B", "v3-udp-0001.hep"),
        ("v3_authkey_log", "v3-udp-hlog-authkey-0002.hep"),
        ("v2_invite", "v2-udp-0001.hep"),
        ("v1_invite", "v1-udp-0001.hep"),
    ] {
        let wire = vector(file);
        g.throughput(Throughput::Elements(1));
        g.bench_function(label, |b| {
            b.iter(|| HepMessage::decode(black_box(&wire).clone()).map(|m| m.capture_id))
        });
    }
    g.finish();
}

/// The borrowed reading: the same checks, no message built (see `HepView`).
fn view(c: &mut Criterion) {
    let mut g = c.benchmark_group("view");
    for (label, file) in [
        ("v3_invite_608B", "v3-udp-0001.hep"),
        ("v3_authkey_log", "v3-udp-hlog-authkey-0002.hep"),
        ("v2_invite", "v2-udp-0001.hep"),
    ] {
        let wire = vector(file);
        g.throughput(Throughput::Elements(1));
        g.bench_function(label, |b| {
            b.iter(|| HepView::parse(black_box(&wire)).map(|v| v.capture_id()))
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for (label, file, version) in [
        ("v3_invite_608B", "v3-udp-0001.hep", HepVersion::V3),
        ("v2_invite", "v2-udp-0001.hep", HepVersion::V2),
    ] {
        let msg = HepMessage::decode(vector(file)).expect("vector decodes");
        g.throughput(Throughput::Elements(1));
        g.bench_function(label, |b| {
            b.iter(|| {
                buf.clear();
                black_box(&msg)
                    .encode_to(version, ChunkOrder::Generic, &mut buf)
                    .map(|()| buf.len())
            })
        });
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    // The Kamailio TCP capture repeated to ~64 KiB: framing plus decode per frame.
    let one = vector("v3-tcp-stream.bin");
    let frames_per_copy = 12;
    let copies = 64 * 1024 / one.len();
    let stream: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * copies)
        .collect();
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements((frames_per_copy * copies) as u64));
    g.bench_function("frame_and_decode_kamailio_tcp", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut codec = HepFrameCodec::new();
            let mut n = 0;
            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                n += usize::from(HepMessage::decode(frame).is_ok());
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, decode, view, encode, stream);
criterion_main!(benches);
