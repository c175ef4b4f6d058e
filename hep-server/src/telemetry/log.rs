//! Logging: `[log]` (level and format), and the lines the program says in its own name.
//!
//! Everything `hep-server` prints on stderr goes through `tracing`, so that with
//! `format = "json"` every line is a JSON object. The program's own lines (where it
//! listens, where it writes, that it shuts down, the exit summary, a fatal error) are
//! events of the target [`TARGET`]: in text mode they read as they always have,
//! `hep-server: listening on hep_udp:0.0.0.0:9060`, without timestamp or level; in JSON
//! mode they are objects like any other line (`"target":"hep-server"`), with their
//! figures as fields. They are shown whatever the level: they are the program's answer,
//! not diagnostics.
//!
//! `[log] level` is checked when the file is read: a word that is not a level (such as
//! `"warning"`) is refused, naming the accepted ones. (A `tracing` filter would take it
//! for a target name and silence everything else.) `RUST_LOG`, when set, takes precedence;
//! one that does not pass the same check is ignored with a warning.

use std::fmt::{self, Write as _};
use std::io;
use std::str::FromStr as _;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How logs are written (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `hep_transport=debug` (default `info`).
    pub level: String,
}

impl Default for LogConfig {
    /// Text lines at `info`.
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The target of the program's own lines (a name no module path can have).
pub const TARGET: &str = "hep-server";

/// The levels `[log] level` accepts, as the error names them.
pub const LEVELS: &str = "error, warn, info, debug, trace or off";

/// A `[log] level` (or `RUST_LOG`) that is not a level or a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// A word where a level belongs.
    #[error(
        "\"{word}\" is not a level: expected {LEVELS}, or a filter like \
         \"info,hep_transport=debug\"{}",
        hint(word)
    )]
    NotALevel {
        /// The word.
        word: String,
    },
    /// Not a filter at all.
    #[error("expected a level ({LEVELS}) or a filter like \"info,hep_transport=debug\": {0}")]
    Filter(String),
}

/// `; did you mean "warn"?` for the usual other spellings of a level.
fn hint(word: &str) -> String {
    let meant = match word.to_ascii_lowercase().as_str() {
        "warning" | "warnings" => "warn",
        "err" | "errors" | "fatal" | "critical" | "crit" => "error",
        "information" | "notice" => "info",
        "verbose" | "dbg" => "debug",
        "all" => "trace",
        "none" | "quiet" | "silent" => "off",
        _ => return String::new(),
    };
    format!("; did you mean \"{meant}\"?")
}

/// Checks a level or filter: each comma-separated directive is a level, or
/// `target=level`, or a span filter (`target[span]=level`). A bare word that is not a
/// level is refused: `tracing` would read it as a target to show at every level, and
/// hide everything else.
///
/// # Errors
/// The first directive that is not one, or the filter's own syntax error.
pub fn check_level(filter: &str) -> Result<(), LevelError> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.contains('[') => continue,
            None => directive,
        };
        if LevelFilter::from_str(level).is_err() {
            return Err(LevelError::NotALevel {
                word: level.to_owned(),
            });
        }
    }
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| LevelError::Filter(e.to_string()))
}

/// Sets up logging to stderr (stdout carries records) for the rest of the process:
/// text or JSON lines (`[log] format`), filtered by `RUST_LOG` when it is set and valid,
/// else by `[log] level`. The program's own lines ([`TARGET`]) pass any filter.
pub fn init(log: &LogConfig) {
    let from_env = std::env::var("RUST_LOG").ok().map(|env| {
        let checked = check_level(&env);
        (env, checked)
    });
    let level = match &from_env {
        Some((env, Ok(()))) => env.as_str(),
        _ => log.level.as_str(),
    };
    let own: Directive = format!("{TARGET}=info")
        .parse()
        .expect("a target=level directive");
    let filter = EnvFilter::try_new(level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(own);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match log.format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .event_format(OwnLines(tracing_subscriber::fmt::format()))
            .init(),
    }
    if let Some((env, Err(e))) = from_env {
        tracing::warn!("RUST_LOG={env:?} is ignored, [log] level applies: {e}");
    }
}

/// Text mode: the program's own lines as `hep-server: MESSAGE`, the others as `F` does.
struct OwnLines<F>(F);

impl<S, N, F> FormatEvent<S, N> for OwnLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.metadata().target() != TARGET {
            return self.0.format_event(ctx, writer, event);
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(writer, "{TARGET}: {}", message.0)
    }
}

/// The `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_pass() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,hep_transport=debug",
            "hep_server=trace",
            "info,hep_transport[listener]=debug",
            "",
        ] {
            assert_eq!(check_level(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn a_word_that_is_not_a_level_is_refused_with_a_hint() {
        let e = check_level("warning").unwrap_err().to_string();
        assert_eq!(
            e,
            "\"warning\" is not a level: expected error, warn, info, debug, trace or off, \
             or a filter like \"info,hep_transport=debug\"; did you mean \"warn\"?"
        );
        let e = check_level("info,hep_transport=loud")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("\"loud\" is not a level"), "{e}");
        assert!(!e.contains("did you mean"), "{e}");
        // A bare target would show that target only: not what `level` means.
        assert!(check_level("hep_transport").is_err());
        assert!(
            check_level("debug,verbose")
                .unwrap_err()
                .to_string()
                .contains("\"debug\"?")
        );
    }
}
