//! Built-in callbacks, one file each.

pub(crate) mod auth;
pub(crate) mod client_ids;
pub(crate) mod dedup;
pub(crate) mod filter;
pub(crate) mod rate_limit;
pub(crate) mod rewrite;
