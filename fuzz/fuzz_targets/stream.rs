//! Any TCP byte stream, delivered in reads of varying size: framing never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hep_proto::fuzzing::stream(data));
