//! The `hep-server` collector binary.
fn main() {}
