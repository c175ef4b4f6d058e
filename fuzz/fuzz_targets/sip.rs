//! Any payload read as SIP: the summary never panics and borrows only from the input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hep_proto::fuzzing::sip(data));
