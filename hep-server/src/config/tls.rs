//! `[tls]` and `[tls.clients]`: the certificate of `hep_tls` listeners, and which agent
//! certificate may send which capture ids.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hep_callbacks::ClientCaptureIds;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{ConfigError, Source};

/// `[tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    handshake_timeout_ms: Option<u64>,
    clients: Option<Spanned<BTreeMap<String, Vec<u32>>>>,
}

/// TLS listener settings (`[tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle: when set, agents must present a certificate it signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Handshake timeout, ms (default 5000).
    pub handshake_timeout_ms: u64,
    /// `[tls.clients]`: client certificate (DNS name or `sha256:` fingerprint) → the
    /// capture ids it may send. Empty: any certificate `client_ca_file` signed, any id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, Vec<u32>>,
}

impl TlsConfig {
    /// The `[tls.clients]` map as a check, if there is one.
    pub fn client_ids(&self) -> Option<ClientCaptureIds> {
        if self.clients.is_empty() {
            return None;
        }
        // Every key was checked when the configuration was resolved.
        self.clients
            .iter()
            .try_fold(ClientCaptureIds::new(), |ids, (key, capture_ids)| {
                ids.allow(key, capture_ids.iter().copied())
            })
            .ok()
    }
}

/// `[tls]`, with `[tls.clients]` checked.
pub(super) fn resolve(raw: RawTls, src: &Source<'_>) -> Result<TlsConfig, ConfigError> {
    let mut clients = BTreeMap::new();
    if let Some(map) = raw.clients {
        for (key, ids) in map.get_ref() {
            ClientCaptureIds::new()
                .allow(key, ids.iter().copied())
                .map_err(|e| src.error(map.span(), format!("section [tls.clients]: {e}")))?;
        }
        if !map.get_ref().is_empty() && raw.client_ca_file.is_none() {
            return Err(src.error(
                map.span(),
                "section [tls.clients]: needs `client_ca_file` in [tls] (agents must \
                 present a certificate for it to be mapped)",
            ));
        }
        clients = map.into_inner();
    }
    Ok(TlsConfig {
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        client_ca_file: raw.client_ca_file,
        handshake_timeout_ms: raw.handshake_timeout_ms.unwrap_or(5_000),
        clients,
    })
}
