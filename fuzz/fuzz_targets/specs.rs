//! Any text as a listen spec, a destination (hep_id or relay syntax), an output spec (a
//! cluster's edge `nats:` included) or an input spec: an error, or a value whose printed
//! form parses back to the same value. Any bytes as an edge's spool record: an error, or
//! an envelope that writes back to a record reading the same.
#![no_main]

use hep_server::nats::{Envelope, NatsInputSpec};
use hep_server::outputs::OutputSpec;
use hep_transport::{HepDestination, ListenOn, ListenSpec};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Envelope::from_record(data.to_vec().into()) {
        assert_eq!(Envelope::from_record(e.to_record()).expect("record round trip"), e);
    }
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
    if let Ok(input) = NatsInputSpec::parse(text) {
        assert_eq!(NatsInputSpec::parse(&input.to_string()).expect("input spec round trip"), input);
    }
    if let Ok(out) = text.parse::<OutputSpec>() {
        assert_eq!(out.to_string().parse::<OutputSpec>().expect("output spec round trip"), out);
    }
});
