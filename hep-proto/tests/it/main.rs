//! hep-proto integration tests: one binary, one module per subject.

mod datagram;
mod negative;
mod peers;
mod properties;
mod readme;
mod sip_reference;
mod vectors;
