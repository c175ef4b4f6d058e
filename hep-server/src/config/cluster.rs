//! `[cluster]`: the other nodes that searches ask (docs/SCALE-OUT.md).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::cluster::{ClusterConfig, MAX_PEERS, MAX_TIMEOUT_MS, Peer};

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    name: Option<Spanned<String>>,
    peers: Option<Vec<Spanned<String>>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    timeout_ms: Option<Spanned<u64>>,
}

/// `[cluster]` (without it: no peers, searches are this node's own).
pub(super) fn resolve(
    raw: Option<RawCluster>,
    src: &Source<'_>,
) -> Result<ClusterConfig, ConfigError> {
    let d = ClusterConfig::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let name = match raw.name {
        None => d.name,
        Some(n) => {
            let v = n.get_ref();
            if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
                return Err(src.error(
                    n.span(),
                    "key `cluster.name`: expected 1 to 128 bytes without control characters",
                ));
            }
            Some(n.into_inner())
        }
    };
    let mut peers: Vec<Peer> = Vec::new();
    let written = raw.peers.unwrap_or_default();
    if written.len() > MAX_PEERS {
        return Err(src.error_in_file(format!(
            "key `cluster.peers`: at most {MAX_PEERS} peers, found {}",
            written.len()
        )));
    }
    for p in written {
        let peer: Peer = p
            .get_ref()
            .parse()
            .map_err(|e| src.error(p.span(), format!("key `cluster.peers`: {e}")))?;
        if peers.contains(&peer) {
            return Err(src.error(
                p.span(),
                format!("key `cluster.peers`: `{peer}` is listed twice"),
            ));
        }
        peers.push(peer);
    }
    let (token, token_file) = match (raw.token, raw.token_file) {
        (Some(_), Some(f)) => {
            return Err(src.error(
                f.span(),
                "key `cluster.token_file`: give `token` or `token_file`, not both",
            ));
        }
        (Some(t), None) => (
            Some(check_token(t.get_ref(), t.span(), "token", src)?),
            None,
        ),
        (None, Some(f)) => {
            let path = f.get_ref();
            let text = std::fs::read_to_string(path).map_err(|e| {
                src.error(
                    f.span(),
                    format!(
                        "key `cluster.token_file`: cannot read {}: {e}",
                        path.display()
                    ),
                )
            })?;
            let token = check_token(text.trim(), f.span(), "token_file", src)?;
            (Some(token), Some(f.into_inner()))
        }
        (None, None) => (None, None),
    };
    let timeout_ms = match raw.timeout_ms {
        None => d.timeout_ms,
        Some(t) if (1..=MAX_TIMEOUT_MS).contains(t.get_ref()) => t.into_inner(),
        Some(t) => {
            return Err(src.error(
                t.span(),
                format!(
                    "key `cluster.timeout_ms`: expected 1 to {MAX_TIMEOUT_MS} ms (below the \
                     API's own 10 s request timeout), found {}",
                    t.get_ref()
                ),
            ));
        }
    };
    Ok(ClusterConfig {
        name,
        peers,
        token,
        token_file,
        timeout_ms,
    })
}

/// A token as `[http.tokens]` takes them: 16 or more printable ASCII characters.
fn check_token(
    token: &str,
    span: std::ops::Range<usize>,
    key: &str,
    src: &Source<'_>,
) -> Result<String, ConfigError> {
    if token.len() < 16 || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(src.error(
            span,
            format!(
                "key `cluster.{key}`: a token is 16 or more printable ASCII characters \
                 without spaces, as the peers' [http.tokens] take them"
            ),
        ));
    }
    Ok(token.to_owned())
}
