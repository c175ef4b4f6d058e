//! hep-proto integration tests: one binary, one module per subject.

mod negative;
mod properties;
mod vectors;
