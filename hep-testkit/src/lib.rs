//! Test support for the HEP workspace.
