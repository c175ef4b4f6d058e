//! `[http]`: the HTTP API and page, and `[http.tokens]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::http::{HttpConfig, HttpTls};

/// `[http]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    tokens: Option<Spanned<BTreeMap<String, Vec<u32>>>>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// `[http]` (its defaults without it: on, `127.0.0.1:9080`, no tokens).
pub(super) fn resolve(raw: Option<RawHttp>, src: &Source<'_>) -> Result<HttpConfig, ConfigError> {
    let d = HttpConfig::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let listen = match raw.listen {
        None => d.listen,
        Some(l) => l.get_ref().parse::<SocketAddr>().map_err(|_| {
            src.error(
                l.span(),
                "key `http.listen`: expected IP:PORT, e.g. 127.0.0.1:9080 (to turn the API \
                 off: enabled = false)",
            )
        })?,
    };
    let mut tokens = BTreeMap::new();
    if let Some(map) = raw.tokens {
        let span = map.span();
        for (token, ids) in map.into_inner() {
            if token.len() < 16 || token.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(src.error(
                    span,
                    "key `http.tokens`: a token is 16 to any number of printable ASCII \
                     characters without spaces (e.g. `openssl rand -hex 24`)",
                ));
            }
            if ids.is_empty() {
                return Err(src.error(
                    span,
                    "key `http.tokens`: a token names the capture ids it may read, e.g. \
                     \"TOKEN\" = [1, 2]",
                ));
            }
            tokens.insert(token, ids);
        }
    }
    let tls = match (raw.cert_file, raw.key_file) {
        (None, None) => None,
        (Some(cert_file), Some(key_file)) => Some(HttpTls {
            cert_file,
            key_file,
        }),
        _ => {
            return Err(src.error_in_file(
                "section [http]: HTTPS needs both `cert_file` and `key_file` (PEM)",
            ));
        }
    };
    Ok(HttpConfig {
        enabled: raw.enabled.unwrap_or(true),
        listen,
        tokens,
        tls,
    })
}
