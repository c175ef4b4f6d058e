//! Encodes one decoded vector many times: a steady loop for profilers (callgrind, perf).
//!
//! `cargo run --release -p hep-proto --example encode_loop -- FILE [N]`

use bytes::{Bytes, BytesMut};
use hep_proto::{ChunkOrder, HepMessage};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "hep-testkit/testdata/kamailio/v3-udp-0001.hep".into());
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let wire = Bytes::from(std::fs::read(&path).expect("read the vector"));
    let msg = HepMessage::decode(wire).expect("the vector decodes");
    let version = msg.version.expect("decoded messages have a version");
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut bytes = 0usize;
    for _ in 0..n {
        buf.clear();
        if std::hint::black_box(&msg)
            .encode_to(version, ChunkOrder::Generic, &mut buf)
            .is_ok()
        {
            bytes += buf.len();
        }
    }
    println!("{bytes} bytes encoded in {n} messages");
}
