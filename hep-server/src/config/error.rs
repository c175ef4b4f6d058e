//! Configuration errors, for a person: the file, the line and column, the key, what was
//! expected.

use std::ops::Range;
use std::path::Path;

/// A configuration error, for a person: where, which key, what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    location: String,
    message: String,
}

impl ConfigError {
    /// An error at byte range `span` of `text`, the contents of `file` (`file:line:col`),
    /// or at the file as a whole.
    pub(super) fn at(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let location = match span {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{}:{line}:{col}", file.display())
            }
            None => file.display().to_string(),
        };
        Self {
            location,
            message: message.into(),
        }
    }
}

/// The file being read: where its errors are located.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source<'a> {
    /// The file's path, for messages.
    pub(super) path: &'a Path,
    /// Its contents.
    pub(super) text: &'a str,
}

impl Source<'_> {
    /// An error at byte range `span` of the file.
    pub(super) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.text, Some(span), message)
    }

    /// An error about the file as a whole.
    pub(super) fn error_in_file(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.text, None, message)
    }

    /// An error at the first `[section]` header of the file, or the file as a whole.
    pub(super) fn error_at_section(
        &self,
        section: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let header = format!("[{section}]");
        let at = self.text.find(&header);
        ConfigError::at(
            self.path,
            self.text,
            at.map(|a| a..a + header.len()),
            message,
        )
    }
}

/// The `[section]` (or `[[section]]`) header in force on the line of byte `at` of `text`.
pub(super) fn section_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    if !text.is_char_boundary(at) {
        return None;
    }
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[..end].lines().filter_map(header).next_back()
}

/// The name of a `[name]` or `[[name]]` line.
fn header(line: &str) -> Option<String> {
    let l = line.split('#').next().unwrap_or_default().trim();
    let name = l.strip_prefix('[')?.strip_suffix(']')?;
    Some(
        name.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned(),
    )
}

/// The dotted name of the key whose value holds byte `at` of `text` (`filter.proto_types`):
/// the key of that line, or for a value that spans lines (an array), of the nearest line
/// above that starts with `key =`. A best effort, for error messages.
pub(super) fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    if !text.is_char_boundary(at) {
        return None;
    }
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let mut key = None;
    for line in std::iter::once(&text[line_start..at]).chain(text[..line_start].lines().rev()) {
        if header(line).is_some() {
            break;
        }
        if let Some((k, _)) = line.split_once('=')
            && is_key(k.trim())
        {
            key = Some(k.trim().to_owned());
            break;
        }
    }
    let key = key?;
    Some(match section_at(text, at) {
        Some(section) => format!("{section}.{key}"),
        None => key,
    })
}
