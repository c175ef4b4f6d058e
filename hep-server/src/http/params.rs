//! The query parameters of the API, checked: every bad value is an error naming the
//! parameter and what was expected; an unknown parameter is an error too (a typo must
//! not widen a search silently).
//!
//! - `since`, `until`: capture time, as the CLI takes it ([`parse_instant`]): RFC 3339
//!   (`2026-11-26T05:21:49Z`), Unix seconds with a fraction (`1795670509.25`), a date, or
//!   a span ago (`-15m`, `-2h`, `1d`).
//! - `limit`: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`].
//! - `capture_id`: a number (what the token allows, if any, bounds it further).
//! - `node`: a HEP node name (chunk 0x0013), exactly; 1 to [`MAX_NODE_BYTES`] bytes, no
//!   control characters.
//! - `q`: free text over the SIP messages, 1 to
//!   [`MAX_TEXT_BYTES`](crate::store::text::MAX_TEXT_BYTES) bytes, no control characters;
//!   read message by message within the window and the other filters, at most
//!   [`MAX_TEXT_SCAN`](crate::store::text::MAX_TEXT_SCAN) messages (the answer's
//!   `text_scan` says how many and whether it stopped there).
//! - `cursor`: the `next` of the previous page.
//!
//! The bounds of a call search: without `call_id` and `since` the window is the last
//! [`DEFAULT_WINDOW_HOURS`] hours; without `call_id` a window may span
//! [`MAX_WINDOW_DAYS`] days at most (else `too_broad`). A Call-ID is looked up by its
//! index in every partition, so a search by Call-ID has no default window.

use crate::time::parse_instant;

use super::error::ApiError;

/// Calls (or messages) a page holds by default.
pub const DEFAULT_LIMIT: usize = 100;
/// The most a page holds.
pub const MAX_LIMIT: usize = 1_000;
/// The window of a search without `call_id` and `since`, hours before `until` (or now).
pub const DEFAULT_WINDOW_HOURS: i64 = 24;
/// The longest window of a search without `call_id`, days.
pub const MAX_WINDOW_DAYS: i64 = 31;
/// The longest node name taken, in bytes.
pub const MAX_NODE_BYTES: usize = 128;

/// The parameters of `GET /api/v1/calls`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallSearch {
    /// `call_id`.
    pub call_id: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `method`: a method or a status code.
    pub method: Option<String>,
    /// `since`, us (the default window filled in).
    pub since_usec: Option<i64>,
    /// `until`, us.
    pub until_usec: Option<i64>,
    /// `capture_id`.
    pub capture_id: Option<u32>,
    /// `node`.
    pub node: Option<String>,
    /// `q`: free text.
    pub text: Option<String>,
    /// `limit`.
    pub limit: usize,
    /// `cursor`.
    pub cursor: Option<i64>,
}

/// The names `GET /api/v1/calls` takes.
const CALL_SEARCH: &[&str] = &[
    "call_id",
    "user",
    "method",
    "since",
    "until",
    "capture_id",
    "node",
    "q",
    "limit",
    "cursor",
];

impl CallSearch {
    /// Checks `pairs` (the decoded query string) at `now_usec`.
    ///
    /// # Errors
    /// `bad_parameter` naming the first bad parameter, `too_broad` for a window too long.
    ///
    /// ```
    /// use hep_server::http::params::CallSearch;
    /// let q = |s: &[(&str, &str)]| {
    ///     let pairs: Vec<(String, String)> =
    ///         s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ///     CallSearch::parse(&pairs, 1_795_670_509_000_000)
    /// };
    /// let ok = q(&[("user", "alice"), ("since", "-2h"), ("limit", "5")]).unwrap();
    /// assert_eq!((ok.limit, ok.since_usec), (5, Some(1_795_663_309_000_000)));
    /// let err = q(&[("limit", "0")]).unwrap_err();
    /// assert!(err.message.contains("limit"), "{}", err.message);
    /// assert!(q(&[("since", "yesterday")]).unwrap_err().message.starts_with("since:"));
    /// assert_eq!(q(&[("colour", "red")]).unwrap_err().code, "bad_parameter");
    /// ```
    pub fn parse(pairs: &[(String, String)], now_usec: i64) -> Result<Self, ApiError> {
        check_names(pairs, CALL_SEARCH)?;
        let mut s = Self {
            call_id: text(pairs, "call_id")?,
            user: text(pairs, "user")?,
            method: text(pairs, "method")?,
            since_usec: time(pairs, "since", now_usec)?,
            until_usec: time(pairs, "until", now_usec)?,
            capture_id: number(pairs, "capture_id")?,
            node: bounded_text(pairs, "node", MAX_NODE_BYTES)?,
            text: bounded_text(pairs, "q", crate::store::text::MAX_TEXT_BYTES)?,
            limit: limit(pairs)?,
            cursor: number(pairs, "cursor")?,
        };
        if let Some(m) = &s.method
            && !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ApiError::bad_parameter(format!(
                "method: `{m}` is not a SIP method (INVITE) or a status code (486)"
            )));
        }
        if let (Some(a), Some(b)) = (s.since_usec, s.until_usec)
            && a >= b
        {
            return Err(ApiError::bad_parameter(
                "since, until: `since` must be before `until`",
            ));
        }
        if s.call_id.is_none() {
            let until = s.until_usec.unwrap_or(now_usec);
            let since = *s
                .since_usec
                .get_or_insert(until - DEFAULT_WINDOW_HOURS * 3_600_000_000);
            if until.saturating_sub(since) > MAX_WINDOW_DAYS * 86_400_000_000 {
                return Err(ApiError::too_broad(format!(
                    "since, until: a search without call_id may span {MAX_WINDOW_DAYS} days \
                     at most; narrow the window or search by call_id"
                )));
            }
        }
        Ok(s)
    }
}

/// The parameters of the call detail and its exports: `since`, `until` (optional
/// bounds), and for `text` the `format` (`lines` or `ladder`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallDetail {
    /// `since`, us.
    pub since_usec: Option<i64>,
    /// `until`, us.
    pub until_usec: Option<i64>,
    /// `format=ladder` (text export only).
    pub ladder: bool,
}

impl CallDetail {
    /// Checks `pairs` at `now_usec`; `format` is taken when `text` is set.
    ///
    /// # Errors
    /// `bad_parameter` naming the bad parameter.
    pub fn parse(pairs: &[(String, String)], now_usec: i64, text: bool) -> Result<Self, ApiError> {
        let names: &[&str] = if text {
            &["since", "until", "format"]
        } else {
            &["since", "until"]
        };
        check_names(pairs, names)?;
        let ladder = match value(pairs, "format")? {
            None | Some("lines") => false,
            Some("ladder") => true,
            Some(other) => {
                return Err(ApiError::bad_parameter(format!(
                    "format: expected `lines` or `ladder`, found `{other}`"
                )));
            }
        };
        Ok(Self {
            since_usec: time(pairs, "since", now_usec)?,
            until_usec: time(pairs, "until", now_usec)?,
            ladder,
        })
    }
}

/// Refuses a parameter not in `known`.
fn check_names(pairs: &[(String, String)], known: &[&str]) -> Result<(), ApiError> {
    for (k, _) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::bad_parameter(format!(
                "{}: no such parameter (expected one of {})",
                shown(k),
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// The value of `name`, if given once; twice is an error.
fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad_parameter(format!("{name}: given twice")));
    }
    Ok(first.map(String::as_str))
}

/// A text value; empty counts as absent (an empty form field).
fn text(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ApiError> {
    Ok(value(pairs, name)?
        .filter(|v| !v.is_empty())
        .map(str::to_owned))
}

/// A text value of 1 to `max` bytes without control characters; empty counts as absent.
fn bounded_text(
    pairs: &[(String, String)],
    name: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    let Some(v) = text(pairs, name)? else {
        return Ok(None);
    };
    if v.len() > max {
        return Err(ApiError::bad_parameter(format!(
            "{name}: at most {max} bytes, found {}",
            v.len()
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad_parameter(format!(
            "{name}: `{}` holds control characters",
            shown(&v).escape_debug()
        )));
    }
    Ok(Some(v))
}

fn time(pairs: &[(String, String)], name: &str, now_usec: i64) -> Result<Option<i64>, ApiError> {
    match value(pairs, name)?.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_instant(v, now_usec)
            .map(Some)
            .map_err(|e| ApiError::bad_parameter(format!("{name}: {e}"))),
    }
}

fn number<T: std::str::FromStr>(
    pairs: &[(String, String)],
    name: &str,
) -> Result<Option<T>, ApiError> {
    match value(pairs, name)?.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::bad_parameter(format!("{name}: `{}` is not a valid number", shown(v)))
        }),
    }
}

fn limit(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    match value(pairs, "limit")?.filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_parameter(format!(
                "limit: expected 1 to {MAX_LIMIT}, found `{}`",
                shown(v)
            ))),
        },
    }
}

/// A value as shown in a message: at most 64 characters.
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(64).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_670_509_000_000;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn without_call_id_or_since_the_window_is_the_last_day() {
        let s = CallSearch::parse(&pairs(&[]), NOW).unwrap();
        assert_eq!(s.since_usec, Some(NOW - 86_400_000_000));
        assert_eq!(s.until_usec, None);
        assert_eq!(s.limit, DEFAULT_LIMIT);
        let by_call = CallSearch::parse(&pairs(&[("call_id", "a@b")]), NOW).unwrap();
        assert_eq!(by_call.since_usec, None, "a Call-ID is found by its index");
    }

    #[test]
    fn a_window_over_a_month_without_call_id_is_too_broad() {
        let e = CallSearch::parse(&pairs(&[("since", "-40d")]), NOW).unwrap_err();
        assert_eq!(e.code, "too_broad");
        assert!(CallSearch::parse(&pairs(&[("since", "-40d"), ("call_id", "x")]), NOW).is_ok());
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let (long_node, long_text) = ("n".repeat(129), "x".repeat(257));
        for (q, name) in [
            (&[("limit", "1001")][..], "limit"),
            (&[("limit", "x")][..], "limit"),
            (&[("until", "soon")][..], "until"),
            (&[("capture_id", "-1")][..], "capture_id"),
            (&[("cursor", "abc")][..], "cursor"),
            (&[("method", "IN VITE")][..], "method"),
            (&[("user", "a"), ("user", "b")][..], "user"),
            (&[("since", "-1h"), ("until", "-2h")][..], "since"),
            (&[("node", long_node.as_str())][..], "node"),
            (&[("node", "a\tb")][..], "node"),
            (&[("q", long_text.as_str())][..], "q"),
            (&[("q", "a\r\nb")][..], "q"),
        ] {
            let e = CallSearch::parse(&pairs(q), NOW).unwrap_err();
            assert_eq!(e.code, "bad_parameter", "{q:?}");
            assert!(e.message.starts_with(name), "{q:?}: {}", e.message);
        }
    }

    #[test]
    fn times_take_the_cli_forms() {
        let s = CallSearch::parse(
            &pairs(&[
                ("since", "1795670509.25"),
                ("until", "2026-11-26T05:22:49Z"),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(s.since_usec, Some(1_795_670_509_250_000));
        assert_eq!(s.until_usec, Some(1_795_670_569_000_000));
    }

    #[test]
    fn the_text_export_takes_a_format() {
        assert!(
            CallDetail::parse(&pairs(&[("format", "ladder")]), NOW, true)
                .unwrap()
                .ladder
        );
        let e = CallDetail::parse(&pairs(&[("format", "svg")]), NOW, true).unwrap_err();
        assert!(e.message.starts_with("format"));
        assert!(CallDetail::parse(&pairs(&[("format", "ladder")]), NOW, false).is_err());
    }
}
