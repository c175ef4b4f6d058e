//! Decodes one vector many times: a steady loop for profilers (callgrind, perf).
//!
//! `cargo run --release -p hep-proto --example decode_loop -- FILE [N] [message|view|view-field]`
//! (`view` reads each with `HepView::parse` instead of decoding a `HepMessage`;
//! `view-field` reads one field of the view, as the criterion benchmark `view/*` does, so
//! the whole view is not copied out).

use bytes::Bytes;
use hep_proto::{HepMessage, HepView};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "hep-testkit/testdata/kamailio/v3-udp-0001.hep".into());
    let n: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mode = args.next().unwrap_or_default();
    let wire = Bytes::from(std::fs::read(&path).expect("read the vector"));
    let mut ok = 0usize;
    for _ in 0..n {
        let wire = std::hint::black_box(&wire);
        ok += usize::from(match mode.as_str() {
            // The whole view, as a caller would get it: unobserved, its stores would go.
            "view" => std::hint::black_box(HepView::parse(wire)).is_ok(),
            "view-field" => {
                std::hint::black_box(HepView::parse(wire).map(|v| v.capture_id())).is_ok()
            }
            _ => std::hint::black_box(HepMessage::decode(wire.clone())).is_ok(),
        });
    }
    println!("{ok} of {n} decoded");
}
