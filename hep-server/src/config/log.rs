//! `[log]`: the level and the format of the log lines.

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::telemetry::log::{self, LogConfig, LogFormat};

/// `[log]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
}

/// `[log]` (text at `info` without it), its level checked.
pub(super) fn resolve(raw: Option<RawLog>, src: &Source<'_>) -> Result<LogConfig, ConfigError> {
    let Some(l) = raw else {
        return Ok(LogConfig::default());
    };
    let format = match l.format.as_ref().map(|f| f.get_ref().as_str()) {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            let span = l.format.as_ref().map_or(0..0, Spanned::span);
            return Err(src.error(
                span,
                format!("key `log.format`: expected \"text\" or \"json\", found \"{other}\""),
            ));
        }
    };
    let level = match l.level {
        None => "info".to_owned(),
        Some(level) => {
            // Not only a filter's syntax: a word that is not a level would
            // silence everything (see the `log` module).
            log::check_level(level.get_ref())
                .map_err(|e| src.error(level.span(), format!("key `log.level`: {e}")))?;
            level.into_inner()
        }
    };
    Ok(LogConfig { format, level })
}
