//! `[aliases]`: names for addresses, resolved into [`Aliases`].

use std::collections::BTreeMap;

use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::aliases::Aliases;

/// `[aliases]` as written: `"IP[:PORT]" = "name"` or `"NET/PREFIX" = "name"`.
pub(super) type RawAliases = BTreeMap<String, Spanned<toml::Value>>;

/// `[aliases]` (none without it). Errors name the key and what is wrong with it, at the
/// line of its value.
pub(super) fn resolve(raw: Option<RawAliases>, src: &Source<'_>) -> Result<Aliases, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Aliases::default());
    };
    let mut entries = Vec::with_capacity(raw.len());
    let mut spans = BTreeMap::new();
    for (key, value) in &raw {
        let Some(name) = value.get_ref().as_str() else {
            return Err(src.error(
                value.span(),
                format!(
                    "key `aliases.\"{key}\"`: expected a name in quotes, e.g. \"{key}\" = \"proxy\""
                ),
            ));
        };
        spans.insert(key.as_str(), value.span());
        entries.push((key.as_str(), name));
    }
    Aliases::new(entries).map_err(|e| {
        let message = format!("section [aliases]: {e}");
        match spans.get(e.key()) {
            Some(span) => src.error(span.clone(), message),
            None => src.error_at_section("aliases", message),
        }
    })
}
