//! The relays' keys: `hep_async` (of the seed's top-level parameters, the one that needs
//! checking) and `[relay_tls]`.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::outputs::relay::RelayTlsConfig;

/// `[relay_tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelayTls {
    ca_file: PathBuf,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    server_name: Option<String>,
}

/// `hep_async`: `true`/`false`, or OpenSIPS's `1`/`0` (default true).
pub(super) fn hep_async(
    raw: Option<Spanned<toml::Value>>,
    src: &Source<'_>,
) -> Result<bool, ConfigError> {
    let Some(v) = raw else {
        return Ok(true);
    };
    match v.get_ref() {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::Integer(0) => Ok(false),
        toml::Value::Integer(1) => Ok(true),
        other => Err(src.error(
            v.span(),
            format!("key `hep_async`: expected true/false or 0/1, found {other}"),
        )),
    }
}

/// `[relay_tls]`, with both halves of a client certificate or neither.
pub(super) fn relay_tls(
    raw: Option<RawRelayTls>,
    src: &Source<'_>,
) -> Result<Option<RelayTlsConfig>, ConfigError> {
    let Some(t) = raw else {
        return Ok(None);
    };
    if let Some(set) = match (&t.cert_file, &t.key_file) {
        (Some(c), None) => Some(c),
        (None, Some(k)) => Some(k),
        _ => None,
    } {
        return Err(src.error(
            set.span(),
            "section [relay_tls]: set both `cert_file` and `key_file` (a client \
             certificate), or neither",
        ));
    }
    Ok(Some(RelayTlsConfig {
        ca_file: t.ca_file,
        cert_file: t.cert_file.map(Spanned::into_inner),
        key_file: t.key_file.map(Spanned::into_inner),
        server_name: t.server_name,
    }))
}
