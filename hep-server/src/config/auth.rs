//! `[auth]`: the key agents must send (chunk 0x000e), shared or per capture id.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{ConfigError, Source};

/// `[auth]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    key: Option<String>,
    keys: Option<Spanned<BTreeMap<String, String>>>,
    strip: Option<bool>,
}

/// Auth key check (`[auth]`). The keys are secrets: `check-config` (whose output ends up
/// in tickets and chats) and `Debug` show that a key is set, never the key.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// The shared key (or the fallback when `keys` is set).
    #[serde(serialize_with = "redact_key")]
    pub key: Option<String>,
    /// Keys per capture id (TOML keys are strings; each is checked to be a number).
    #[serde(serialize_with = "redact_keys")]
    pub keys: BTreeMap<String, String>,
    /// Remove the key from accepted messages before any output sees them (default
    /// true); `false` keeps it, so that relays forward it (and `json:`, `stdout` and the
    /// store keep it too). Without `[auth]` keys are removed all the same
    /// ([`Config::strip_auth_key`](super::Config::strip_auth_key)).
    pub strip: bool,
}

/// What is shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

fn redact_key<S: serde::Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(_) => s.serialize_some(REDACTED),
        None => s.serialize_none(),
    }
}

fn redact_keys<S: serde::Serializer>(
    keys: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(keys.keys().map(|id| (id, REDACTED)))
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("key", &self.key.as_ref().map(|_| REDACTED))
            .field(
                "keys",
                &self
                    .keys
                    .keys()
                    .map(|id| (id, REDACTED))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("strip", &self.strip)
            .finish()
    }
}

impl AuthConfig {
    /// The per-capture-id keys with their ids as numbers.
    pub fn keys_by_id(&self) -> BTreeMap<u32, String> {
        // Checked to parse when the configuration was resolved.
        self.keys
            .iter()
            .filter_map(|(id, k)| Some((id.parse().ok()?, k.clone())))
            .collect()
    }
}

/// `[auth]`, with a key of some kind and every capture id a number.
pub(super) fn resolve(raw: RawAuth, src: &Source<'_>) -> Result<AuthConfig, ConfigError> {
    let mut keys = BTreeMap::new();
    if let Some(map) = &raw.keys {
        for (id, key) in map.get_ref() {
            id.parse::<u32>().map_err(|_| {
                src.error(
                    map.span(),
                    format!("key `auth.keys`: `{id}` is not a capture id (a number)"),
                )
            })?;
            keys.insert(id.clone(), key.clone());
        }
    }
    if raw.key.is_none() && keys.is_empty() {
        return Err(
            src.error_in_file("section [auth]: set `key` (shared) and/or `keys` (per capture id)")
        );
    }
    Ok(AuthConfig {
        key: raw.key,
        keys,
        strip: raw.strip.unwrap_or(true),
    })
}
