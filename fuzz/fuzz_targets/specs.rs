//! Any text as a listen spec, a destination (hep_id or relay syntax) or an output spec:
//! an error, or a value whose printed form parses back to the same value.
#![no_main]

use hep_server::outputs::OutputSpec;
use hep_transport::{HepDestination, ListenOn, ListenSpec};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = text.parse::<ListenSpec>() {
        assert_eq!(spec.to_string().parse::<ListenSpec>().expect("listen spec round trip"), spec);
    }
    if let Ok(listen) = text.parse::<ListenOn>() {
        assert_eq!(listen.to_string().parse::<ListenOn>().expect("listen option round trip"), listen);
    }
    if let Ok(dest) = text.parse::<HepDestination>() {
        assert_eq!(dest.to_string().parse::<HepDestination>().expect("destination round trip"), dest);
    }
    if let Ok(out) = text.parse::<OutputSpec>() {
        assert_eq!(out.to_string().parse::<OutputSpec>().expect("output spec round trip"), out);
    }
});
