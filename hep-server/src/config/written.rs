//! A value parsed from text the operator wrote, kept with that text.

use std::fmt;
use std::ops::Deref;

use serde::{Serialize, Serializer};

/// A spec as the operator wrote it (in the file or on the command line) and as parsed,
/// once, when it was read: the value for the server, the text for messages and
/// `check-config` (`relay:hep_tcp:homer`, not its resolved
/// `relay:hep_tcp:homer:5656;version=3`).
///
/// It dereferences to the value:
///
/// ```
/// use hep_server::config::Written;
/// use hep_transport::ListenOn;
///
/// let l = Written::parse("hep_udp:10.0.0.1", |s| ListenOn::parse_with_default_port(s, 9060))?;
/// assert_eq!(l.spec.addr.port(), 9060);
/// assert_eq!(l.text(), "hep_udp:10.0.0.1");
/// assert_eq!(l, "hep_udp:10.0.0.1");
/// // A value built in code is written as it displays.
/// let l = Written::from(l.value().clone());
/// assert_eq!(l.text(), "hep_udp:10.0.0.1:9060");
/// # Ok::<(), hep_transport::SpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written<T> {
    text: String,
    value: T,
}

impl<T> Written<T> {
    /// `text` parsed by `parse`.
    ///
    /// # Errors
    /// What `parse` returns.
    pub fn parse<E>(text: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<Self, E> {
        Ok(Self {
            value: parse(text)?,
            text: text.to_owned(),
        })
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value parsed from it.
    pub const fn value(&self) -> &T {
        &self.value
    }

    /// The value, without the text.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T: fmt::Display> From<T> for Written<T> {
    /// A value built in code, written as it displays.
    fn from(value: T) -> Self {
        Self {
            text: value.to_string(),
            value,
        }
    }
}

impl<T> Deref for Written<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> fmt::Display for Written<T> {
    /// The text as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<T> PartialEq<str> for Written<T> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl<T> PartialEq<&str> for Written<T> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<T> Serialize for Written<T> {
    /// The text as written: what `check-config` prints reads back the same.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
