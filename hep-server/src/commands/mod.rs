//! The subcommands' implementations, one module each (the binary dispatches to them).

pub mod decode;
pub mod generate;
pub mod search;
pub mod search_peers;
pub mod send;
