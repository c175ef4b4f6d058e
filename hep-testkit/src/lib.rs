//! Test support for the HEP workspace: golden vectors captured from independent
//! implementations, hex helpers and proptest strategies.
//!
//! The vectors live in `hep-testkit/testdata/` (see its READMEs): Kamailio 5.6 siptrace
//! output for HEPv1, v2 and v3 over UDP and TCP, hep-js encodings, and the HEP3 spec
//! example.

pub mod strategy;
pub mod vectors;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Decodes a hex string, ignoring whitespace. Panics on bad hex: test input only.
///
/// ```
/// assert_eq!(hep_testkit::hex("48 45 50 33"), b"HEP3");
/// ```
pub fn hex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test vector hex")
}
