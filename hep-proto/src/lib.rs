//! sans-IO
