//! What links a message to another leg of its call: the id the store keeps in a row's
//! `correlation_id` column ([`Correlation::link`]), from the message alone, on the insert
//! path (one scan of the header section for all the headers looked for, allocating
//! nothing unless a `Session-ID` is found).
//!
//! In order, the first found:
//! 1. the HEP correlation id (chunk 0x0011) when it names something other than the
//!    message's own Call-ID (agents often repeat the Call-ID there);
//! 2. each configured header ([`Correlation::headers`], `X-CID` by default), its value or
//!    what its regex captures (a B2BUA that writes `X-Orig-CID: <id>;foo`);
//! 3. RFC 7989 `Session-ID` ([`Correlation::session_id`]): the session's key
//!    `session:UUID`, UUID the smaller of its local and remote UUIDs that is not the
//!    null one. Both UUIDs are the same on every leg of a session (intermediaries pass
//!    the header on), the initial INVITE carries only the caller's (remote null), later
//!    messages both: every leg's messages share one of at most two keys, and the legs of
//!    one session meet in [`super::legs`].
//! 4. else the correlation chunk when it repeats the Call-ID (it links a message without
//!    a Call-ID, such as RTCP, to its call).

use std::borrow::Cow;

use hep_proto::HepMessage;
use hep_proto::sip::{self, SipSummary};

use serde::Serialize;

/// Headers `[correlation] headers` may name at most: each costs a scan of every SIP
/// message's header section on the store's insert path.
pub const MAX_LINK_HEADERS: usize = 8;

/// The prefix of a `Session-ID` key: never a leg itself, a meeting point of legs.
pub const SESSION_KEY_PREFIX: &str = "session:";

/// How the store links the legs of a call (`[correlation]`; see `docs/CONFIG.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Correlation {
    /// Headers naming the Call-ID of another leg, tried in order (default: `X-CID`).
    pub headers: Vec<LinkHeader>,
    /// Whether legs sharing an RFC 7989 `Session-ID` are linked (default: yes).
    pub session_id: bool,
}

impl Default for Correlation {
    fn default() -> Self {
        Self {
            headers: vec![LinkHeader {
                name: "X-CID".to_owned(),
                regex: None,
            }],
            session_id: true,
        }
    }
}

/// A header naming another leg's Call-ID. Written as the configuration takes it: its
/// name alone, or `{ name, regex }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkHeader {
    /// Its name (any case when matched).
    pub name: String,
    /// What extracts the Call-ID from its value: the first capture group (or the whole
    /// match without one); `None`: the whole value.
    pub regex: Option<Pattern>,
}

/// A compiled regex, compared and written by its source.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    /// Compiles `source`.
    ///
    /// # Errors
    /// The regex does not compile (the message says why).
    pub fn new(source: &str) -> Result<Self, String> {
        regex::Regex::new(source)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// The first capture group of the first match in `value` (the whole match without a
    /// group); `None` without a match or when it is empty.
    pub fn extract<'a>(&self, value: &'a str) -> Option<&'a str> {
        let c = self.0.captures(value)?;
        c.get(1)
            .or_else(|| c.get(0))
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl Serialize for LinkHeader {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        match &self.regex {
            None => s.serialize_str(&self.name),
            Some(regex) => {
                let mut t = s.serialize_struct("LinkHeader", 2)?;
                t.serialize_field("name", &self.name)?;
                t.serialize_field("regex", regex)?;
                t.end()
            }
        }
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl Correlation {
    /// The id linking `msg` (whose SIP summary is `sip` when it is SIP, its payload
    /// `payload`) to another leg, as in the [module docs](self).
    ///
    /// ```
    /// use hep_proto::HepMessage;
    /// use hep_proto::sip::SipSummary;
    /// use hep_server::store::{Correlation, LinkHeader, Pattern};
    /// let rules = Correlation {
    ///     headers: vec![LinkHeader {
    ///         name: "X-Orig-CID".into(),
    ///         regex: Some(Pattern::new("^([^;]+)").unwrap()),
    ///     }],
    ///     session_id: true,
    /// };
    /// let sip = b"INVITE sip:b@h SIP/2.0\r\nCall-ID: b-leg\r\nX-Orig-CID: a-leg;foo\r\n\r\n";
    /// let msg = HepMessage::default();
    /// let summary = SipSummary::parse(sip);
    /// assert_eq!(rules.link(&msg, summary.as_ref(), sip).as_deref(), Some("a-leg"));
    /// ```
    pub fn link<'a>(
        &self,
        msg: &'a HepMessage,
        sip: Option<&SipSummary<'a>>,
        payload: &'a [u8],
    ) -> Option<Cow<'a, str>> {
        let call_id = sip.and_then(|s| s.call_id);
        let chunk = msg
            .correlation_id
            .as_deref()
            .and_then(|c| std::str::from_utf8(c).ok())
            .filter(|c| !c.is_empty());
        if let Some(c) = chunk
            && Some(c) != call_id
        {
            return Some(Cow::Borrowed(c));
        }
        if sip.is_some() {
            // One pass over the header section for every name (the configured ones, at
            // most MAX_LINK_HEADERS, then Session-ID).
            let mut names = [""; MAX_LINK_HEADERS + 1];
            let mut n = 0;
            for h in self.headers.iter().take(MAX_LINK_HEADERS) {
                names[n] = &h.name;
                n += 1;
            }
            if self.session_id {
                names[n] = "Session-ID";
                n += 1;
            }
            let values: [Option<&str>; MAX_LINK_HEADERS + 1] = first_values(payload, &names[..n]);
            for (h, value) in self.headers.iter().zip(values) {
                let Some(value) = value else {
                    continue;
                };
                let id = match &h.regex {
                    Some(p) => p.extract(value),
                    None => Some(value),
                };
                if let Some(id) = id.filter(|id| Some(*id) != call_id) {
                    return Some(Cow::Borrowed(id));
                }
            }
            if self.session_id
                && let Some(key) = values[n - 1].and_then(session_key)
            {
                return Some(Cow::Owned(key));
            }
        }
        chunk.map(Cow::Borrowed)
    }
}

/// The key of an RFC 7989 `Session-ID` value (`local-uuid[;remote=uuid][;...]`):
/// `session:` and the smaller of the two UUIDs that is not the null one, lower case;
/// `None` when the local UUID is not 32 hex digits or both are null.
///
/// ```
/// use hep_server::store::session_key;
/// let a = "ab30317f1a784dc48ff824d0d3715d86";
/// let b = "47755a9de7794ba387653f2099600ef2";
/// assert_eq!(session_key(a).as_deref(), Some("session:ab30317f1a784dc48ff824d0d3715d86"));
/// let null = "00000000000000000000000000000000";
/// assert_eq!(session_key(&format!("{a};remote={null}")), session_key(a));
/// assert_eq!(
///     session_key(&format!("{b};remote={a}")).as_deref(),
///     Some("session:47755a9de7794ba387653f2099600ef2"),
/// );
/// assert_eq!(session_key("not-a-uuid"), None);
/// ```
pub fn session_key(value: &str) -> Option<String> {
    let mut parts = value.split(';');
    let uuid = |s: &str| {
        let s = s.trim();
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
    };
    let local = uuid(parts.next()?)?;
    let remote = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("remote"))
        .and_then(|(_, v)| uuid(v));
    let null = |u: &String| u.bytes().all(|b| b == b'0');
    let key = [Some(local), remote]
        .into_iter()
        .flatten()
        .filter(|u| !null(u))
        .min()?;
    Some(format!("{SESSION_KEY_PREFIX}{key}"))
}

/// The headers a [`Correlation`] looks for: the values of the first header of each name
/// (any case), found in one pass over the header section (the store looks in every SIP
/// message; a pass per header cost a scan of the message each).
fn first_values<'a, const N: usize>(payload: &'a [u8], names: &[&str]) -> [Option<&'a str>; N] {
    let mut out = [None; N];
    let mut found = [false; N];
    let names = &names[..names.len().min(N)];
    let mut left = names.len();
    let (_, mut rest) = sip::split_line(payload);
    while left > 0 && !rest.is_empty() {
        let (line, next) = sip::split_line(rest);
        rest = next;
        let Some(&first) = line.first() else {
            break;
        };
        for (i, name) in names.iter().enumerate() {
            if found[i]
                || !name
                    .as_bytes()
                    .first()
                    .is_some_and(|f| f.eq_ignore_ascii_case(&first))
            {
                continue;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                break;
            };
            if trim(&line[..colon]).eq_ignore_ascii_case(name.as_bytes()) {
                found[i] = true;
                left -= 1;
                out[i] = std::str::from_utf8(trim(&line[colon + 1..]))
                    .ok()
                    .filter(|v| !v.is_empty());
            }
        }
    }
    out
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::first_values;

    #[test]
    fn one_pass_finds_the_first_of_each_header_in_the_header_section_only() {
        let msg = b"INVITE sip:b@h SIP/2.0\r\nsession-id:  ab \r\nX-CID: one\r\n\
                    X-Empty:\r\nX-CID: two\r\n\r\nX-Body: not a header";
        let [cid, sid, empty, body, absent]: [Option<&str>; 5] =
            first_values(msg, &["X-CID", "Session-ID", "X-Empty", "X-Body", "X-None"]);
        assert_eq!(
            (cid, sid),
            (Some("one"), Some("ab")),
            "any case, trimmed, first"
        );
        assert_eq!((empty, body, absent), (None, None, None));
        // More names than room: the extra ones are not looked for.
        let [only]: [Option<&str>; 1] = first_values(msg, &["Session-ID", "X-CID"]);
        assert_eq!(only, Some("ab"));
    }
}
