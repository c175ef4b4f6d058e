//! `[rewrite]`: the capture id and node name written into accepted messages.

use serde::{Deserialize, Serialize};

/// `[rewrite]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRewrite {
    capture_id: Option<u32>,
    node_name: Option<String>,
}

/// Rewrite (`[rewrite]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RewriteConfig {
    /// Capture id to set.
    pub capture_id: Option<u32>,
    /// Node name to set.
    pub node_name: Option<String>,
}

/// `[rewrite]`.
pub(super) fn resolve(raw: RawRewrite) -> RewriteConfig {
    RewriteConfig {
        capture_id: raw.capture_id,
        node_name: raw.node_name,
    }
}
