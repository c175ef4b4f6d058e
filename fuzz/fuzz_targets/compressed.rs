//! Any bytes as a compressed payload chunk (0x0010): inflate never panics and honours its cap.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hep_proto::fuzzing::compressed(data));
