//! Any datagram: decode never panics; what decodes re-encodes and decodes the same.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hep_proto::fuzzing::datagram(data));
