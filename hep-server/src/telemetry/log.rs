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
//! Under systemd, when stderr is the journal (`$JOURNAL_STREAM`), text lines carry no
//! timestamp (the journal stamps each line) and begin with the syslog priority of their
//! level (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug and trace), which the journal
//! records as the line's priority (`journalctl -p warning` shows warnings and errors).
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
    let mut filter = EnvFilter::try_new(level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(own);
    // The NATS client says "connected" at every (re)connect at info: the edge and the
    // consumer log what matters (an outage, once per 10 s) themselves.
    if !level.contains("async_nats") {
        filter = filter.add_directive("async_nats=warn".parse().expect("a target=level directive"));
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let journal = stderr_is_journal();
    match log.format {
        LogFormat::Json => logs.json().init(),
        // The journal stamps each line with its time, and reads its priority from a
        // `<N>` prefix (`SyslogLevelPrefix=`, on by default).
        LogFormat::Text if journal => logs
            .with_ansi(false)
            .event_format(OwnLines {
                inner: tracing_subscriber::fmt::format().without_time(),
                priority_prefix: true,
            })
            .init(),
        LogFormat::Text => logs
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .event_format(OwnLines {
                inner: tracing_subscriber::fmt::format(),
                priority_prefix: false,
            })
            .init(),
    }
    if let Some((env, Err(e))) = from_env {
        tracing::warn!("RUST_LOG={env:?} is ignored, [log] level applies: {e}");
    }
}

/// Whether stderr is connected to the systemd journal: `$JOURNAL_STREAM` (which systemd
/// sets for a service whose stderr goes there) names stderr's device and inode. A child
/// that inherited the variable but not the stream (stderr redirected) does not match.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(io::stderr()) else {
        return false;
    };
    journal_stream_is(&stream.to_string_lossy(), stat.st_dev, stat.st_ino)
}

/// `$JOURNAL_STREAM` (`DEVICE:INODE`, decimal) names this device and inode.
fn journal_stream_is(stream: &str, dev: u64, ino: u64) -> bool {
    stream
        .split_once(':')
        .is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

/// The syslog priority the journal reads from a line's `<N>` prefix.
fn syslog_priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// Text mode: the program's own lines as `hep-server: MESSAGE`, the others as `inner`
/// does; each after its `<N>` priority for the journal when `priority_prefix`.
struct OwnLines<F> {
    inner: F,
    priority_prefix: bool,
}

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
        if self.priority_prefix {
            write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        }
        if event.metadata().target() != TARGET {
            return self.inner.format_event(ctx, writer, event);
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
    fn the_journal_is_recognised_by_device_and_inode() {
        assert!(journal_stream_is("8:1234", 8, 1234));
        assert!(!journal_stream_is("8:1234", 8, 1235), "another stream");
        assert!(!journal_stream_is("9:1234", 8, 1234));
        assert!(!journal_stream_is("8", 8, 1234));
        assert!(!journal_stream_is("", 8, 1234));
    }

    #[test]
    fn levels_map_to_the_syslog_priorities_the_journal_reads() {
        use tracing::Level;
        let p: Vec<u8> = [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ]
        .iter()
        .map(syslog_priority)
        .collect();
        assert_eq!(p, [3, 4, 6, 7, 7]);
    }

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
