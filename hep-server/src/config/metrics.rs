//! `[metrics]`: the Prometheus endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{ConfigError, Source};

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Spanned<String>,
}

/// Prometheus endpoint (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint serving `/metrics`.
    pub listen: SocketAddr,
}

/// `[metrics]`, its address parsed.
pub(super) fn resolve(raw: RawMetrics, src: &Source<'_>) -> Result<MetricsConfig, ConfigError> {
    let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        src.error(
            raw.listen.span(),
            "key `metrics.listen`: expected IP:PORT, e.g. 127.0.0.1:9096",
        )
    })?;
    Ok(MetricsConfig { listen })
}
