//! A SIP summary: the start line and the few headers a collector indexes, filters on and
//! shows. Most HEP payloads are SIP; this is the one reading of them that every crate of
//! the workspace uses (a callback's method filter, the collector's store, its `stdout`
//! line and ladders), so that they cannot disagree on what an `OPTIONS` is.
//!
//! [`SipSummary::parse`] reads the request or status line, then the header section up to
//! the first empty line (never the body), picking out Call-ID, CSeq, From and To (user and
//! tag) and the top Via's branch (long and compact forms, any case). [`StartLine::parse`]
//! reads the first line alone, for a filter that needs only the method; [`header`] finds
//! any other header by name. None of them allocates: every value is borrowed from the
//! payload, so they are meant to run on every message. Decoding is no IO and no clock,
//! as for the rest of this crate; the functions never panic, on any input (fuzzed: target
//! `sip`).
//!
//! It is a summary, not a validating parser: it takes the first occurrence of each
//! header, ignores folded continuation lines, and accepts `\n` as well as `\r\n` line
//! ends. A value that is not UTF-8 reads as absent.
//!
//! ```
//! use hep_proto::sip::{SipSummary, StartLine};
//!
//! let msg = b"INVITE sip:bob@example.com SIP/2.0\r\n\
//!             v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\r\n\
//!             f: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
//!             t: <sip:bob@example.com>\r\n\
//!             i: 1-2345@127.0.0.1\r\n\
//!             CSeq: 1 INVITE\r\n\r\nv=0\r\n";
//! let sip = SipSummary::parse(msg).unwrap();
//! assert_eq!(sip.start, StartLine::Request { method: "INVITE", uri: "sip:bob@example.com" });
//! assert_eq!(sip.call_id, Some("1-2345@127.0.0.1"));
//! assert_eq!(sip.from.unwrap().user, Some("alice"));
//! assert_eq!(sip.from.unwrap().tag, Some("a1"));
//! assert_eq!(sip.to.unwrap().tag, None);
//! assert_eq!(sip.cseq.unwrap().seq, 1);
//! assert_eq!(sip.via_branch, Some("z9hG4bK-1"));
//! ```

/// The start line of a SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::exhaustive_enums)] // A SIP message starts with one or the other (RFC 3261 7).
pub enum StartLine<'a> {
    /// `METHOD Request-URI SIP/2.0`.
    Request {
        /// The method, e.g. `INVITE`.
        method: &'a str,
        /// The Request-URI.
        uri: &'a str,
    },
    /// `SIP/2.0 CODE Reason`.
    Response {
        /// The status code, 100..=699.
        code: u16,
        /// The reason phrase (may be empty).
        reason: &'a str,
    },
}

/// The parts of a From or To header value a collector looks things up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NameAddr<'a> {
    /// The user part of the URI (`alice` in `sip:alice@example.com`, the number of a
    /// `tel:` URI); `None` when the URI has no user part.
    pub user: Option<&'a str>,
    /// The `tag` parameter.
    pub tag: Option<&'a str>,
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub seq: u32,
    /// The method, e.g. `INVITE`.
    pub method: &'a str,
}

/// What a collector wants to know about a SIP message; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipSummary<'a> {
    /// The start line as it was, without its line end.
    pub first_line: &'a str,
    /// The start line, parsed.
    pub start: StartLine<'a>,
    /// Call-ID (`Call-ID` or `i`).
    pub call_id: Option<&'a str>,
    /// CSeq.
    pub cseq: Option<CSeq<'a>>,
    /// From (`From` or `f`).
    pub from: Option<NameAddr<'a>>,
    /// To (`To` or `t`).
    pub to: Option<NameAddr<'a>>,
    /// The `branch` parameter of the first Via (`Via` or `v`): with the CSeq, what tells
    /// a transaction and its retransmissions (RFC 3261 17.2.3).
    pub via_branch: Option<&'a str>,
}

/// A header the summary picks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    CallId,
    From,
    To,
    CSeq,
    Via,
}

impl<'a> StartLine<'a> {
    /// The start line of a SIP message: its first line, if it is a SIP request line or
    /// status line.
    ///
    /// ```
    /// use hep_proto::sip::StartLine;
    /// assert_eq!(
    ///     StartLine::parse(b"OPTIONS sip:a@b SIP/2.0\r\n"),
    ///     Some(StartLine::Request { method: "OPTIONS", uri: "sip:a@b" })
    /// );
    /// assert_eq!(
    ///     StartLine::parse(b"SIP/2.0 200 OK\r\n"),
    ///     Some(StartLine::Response { code: 200, reason: "OK" })
    /// );
    /// assert_eq!(StartLine::parse(b"OPTIONS is not SIP\r\n"), None);
    /// ```
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let (first, _) = split_line(payload);
        parse_start_line(std::str::from_utf8(first).ok()?)
    }

    /// The method of a request.
    pub const fn method(&self) -> Option<&'a str> {
        match *self {
            Self::Request { method, .. } => Some(method),
            Self::Response { .. } => None,
        }
    }
}

impl<'a> SipSummary<'a> {
    /// Reads a SIP message's start line and headers; `None` when the first line is
    /// neither a SIP request line nor a SIP status line.
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let (first, mut rest) = split_line(payload);
        let first_line = std::str::from_utf8(first).ok()?;
        let start = parse_start_line(first_line)?;
        let mut summary = Self {
            first_line,
            start,
            call_id: None,
            cseq: None,
            from: None,
            to: None,
            via_branch: None,
        };
        let mut via_seen = false;
        while !rest.is_empty() {
            let (line, next) = split_line(rest);
            rest = next;
            if line.is_empty() {
                break; // end of the header section
            }
            if matches!(line[0], b' ' | b'\t') {
                continue; // folded continuation of the previous header
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            // The name first: only the values taken are checked for UTF-8 (most of the
            // cost of a header line that is not wanted).
            let Some(wanted) = summary.wanted(trim(&line[..colon]), via_seen) else {
                continue;
            };
            let Some(value) = std::str::from_utf8(trim(&line[colon + 1..])).ok() else {
                continue;
            };
            summary.take(wanted, value, &mut via_seen);
            if summary.is_complete(via_seen) {
                break;
            }
        }
        Some(summary)
    }

    /// The method: the request's, or for a response the one its CSeq names.
    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => self.cseq.map(|c| c.method),
        }
    }

    /// The status code of a response.
    pub const fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Request { .. } => None,
            StartLine::Response { code, .. } => Some(code),
        }
    }

    /// Whether this is a request.
    pub const fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Which of the summary's headers `name` is, if it is one not taken yet; `via_seen`
    /// tells whether a Via came before (only the first one's branch is kept).
    fn wanted(&self, name: &[u8], via_seen: bool) -> Option<Wanted> {
        let wanted = match name {
            [c] => match c.to_ascii_lowercase() {
                b'i' => Wanted::CallId,
                b'f' => Wanted::From,
                b't' => Wanted::To,
                b'v' => Wanted::Via,
                _ => return None,
            },
            _ if name.eq_ignore_ascii_case(b"call-id") => Wanted::CallId,
            _ if name.eq_ignore_ascii_case(b"from") => Wanted::From,
            _ if name.eq_ignore_ascii_case(b"to") => Wanted::To,
            _ if name.eq_ignore_ascii_case(b"cseq") => Wanted::CSeq,
            _ if name.eq_ignore_ascii_case(b"via") => Wanted::Via,
            _ => return None,
        };
        let free = match wanted {
            Wanted::CallId => self.call_id.is_none(),
            Wanted::From => self.from.is_none(),
            Wanted::To => self.to.is_none(),
            Wanted::CSeq => self.cseq.is_none(),
            Wanted::Via => !via_seen,
        };
        free.then_some(wanted)
    }

    /// Takes the `value` of a header [`wanted`](Self::wanted) found free.
    fn take(&mut self, wanted: Wanted, value: &'a str, via_seen: &mut bool) {
        match wanted {
            Wanted::CallId => self.call_id = Some(value).filter(|v| !v.is_empty()),
            Wanted::From => self.from = Some(parse_name_addr(value)),
            Wanted::To => self.to = Some(parse_name_addr(value)),
            Wanted::CSeq => self.cseq = parse_cseq(value),
            Wanted::Via => {
                *via_seen = true;
                // The first Via of the header (a header may list several, comma-separated).
                let first = before_byte(value, b',');
                self.via_branch =
                    split_once_byte(first, b';').and_then(|(_, p)| param(p, "branch"));
            }
        }
    }

    const fn is_complete(&self, via_seen: bool) -> bool {
        self.call_id.is_some()
            && self.cseq.is_some()
            && self.from.is_some()
            && self.to.is_some()
            && via_seen
    }
}

/// The value of the first header called `name` (any case) in a SIP message's header
/// section, trimmed; `None` when absent, empty or not UTF-8. For headers the
/// [`SipSummary`] does not pick out, such as `X-CID` (the other leg's Call-ID that some
/// B2BUAs add).
///
/// ```
/// use hep_proto::sip::header;
/// let msg = b"INVITE sip:b@h SIP/2.0\r\nx-cid:  leg-a@h \r\n\r\nX-CID: body";
/// assert_eq!(header(msg, "X-CID"), Some("leg-a@h"));
/// assert_eq!(header(msg, "Call-ID"), None);
/// ```
pub fn header<'a>(payload: &'a [u8], name: &str) -> Option<&'a str> {
    let (_, mut rest) = split_line(payload);
    while !rest.is_empty() {
        let (line, next) = split_line(rest);
        rest = next;
        if line.is_empty() {
            return None;
        }
        // Most lines are other headers: their first letter tells (the store looks for
        // `X-CID` in every SIP message). A folded continuation line starts with a blank.
        if !name
            .as_bytes()
            .first()
            .is_some_and(|f| line[0].eq_ignore_ascii_case(f))
        {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if trim(&line[..colon]).eq_ignore_ascii_case(name.as_bytes()) {
            return std::str::from_utf8(trim(&line[colon + 1..]))
                .ok()
                .filter(|v| !v.is_empty());
        }
    }
    None
}

/// The first line of `buf` without its `\n` or `\r\n`, and what follows it.
///
/// ```
/// use hep_proto::sip::split_line;
/// assert_eq!(split_line(b"a\r\nb"), (&b"a"[..], &b"b"[..]));
/// assert_eq!(split_line(b"a"), (&b"a"[..], &b""[..]));
/// ```
pub fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', buf) {
        Some(nl) => {
            let line = &buf[..nl];
            (line.strip_suffix(b"\r").unwrap_or(line), &buf[nl + 1..])
        }
        None => (buf.strip_suffix(b"\r").unwrap_or(buf), &[]),
    }
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

// The helpers below look for ASCII bytes in `&str`s with plain byte loops: the values
// are short (tens of bytes), where `str::find` and `split_once` with a `char` pattern cost
// several times more (a char searcher and a `memchr` call each; under callgrind, 2,850 of
// the 7,000 instructions a message the KPI tracker spent in this module). Cutting a `str`
// just before or after an ASCII byte always falls on a char boundary.

/// Where the ASCII byte `b` first is in `s`.
#[inline]
fn find_byte(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

/// `s` split around the first ASCII byte `b` (as `str::split_once(char)`).
#[inline]
fn split_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let at = find_byte(s, b)?;
    Some((&s[..at], &s[at + 1..]))
}

/// `s` up to the first ASCII byte `b`, or all of it (as `s.split(b).next()`).
#[inline]
fn before_byte(s: &str, b: u8) -> &str {
    find_byte(s, b).map_or(s, |at| &s[..at])
}

/// `s` without the blanks (space, tab) at either end.
fn trim_blanks(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// `str::trim` (Unicode white space), without its char-by-char walk when both ends are
/// ASCII and not white space, as they nearly always are.
#[inline]
fn trim_white(s: &str) -> &str {
    match s.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        [only] if only.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

fn parse_start_line(line: &str) -> Option<StartLine<'_>> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // SIP/2.0 SP Status-Code SP Reason-Phrase
        let (_version, rest) = split_once_byte(rest, b' ')?;
        let (code, reason) = split_once_byte(rest, b' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let code: u16 = code.parse().ok()?;
        if !(100..=699).contains(&code) {
            return None;
        }
        return Some(StartLine::Response { code, reason });
    }
    // Method SP Request-URI SP SIP/2.0
    let (method, rest) = split_once_byte(line, b' ')?;
    let (uri, version) = split_once_byte(rest, b' ')?;
    let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
    if method.is_empty() || !method.bytes().all(token) || uri.is_empty() {
        return None;
    }
    if !version.starts_with("SIP/") {
        return None;
    }
    Some(StartLine::Request { method, uri })
}

fn parse_cseq(value: &str) -> Option<CSeq<'_>> {
    let at = value.bytes().position(|b| matches!(b, b' ' | b'\t'))?;
    Some(CSeq {
        seq: value[..at].parse().ok()?,
        method: trim_blanks(&value[at + 1..]),
    })
}

/// `"Display" <uri>;params`, `<uri>;params` or `uri;params` (where the parameters belong
/// to the header, RFC 3261 20.10).
fn parse_name_addr(value: &str) -> NameAddr<'_> {
    // Skip a quoted display name: it may contain `<`.
    let mut search_from = 0;
    if value.starts_with('"') {
        let mut escaped = false;
        for (i, c) in value.bytes().enumerate().skip(1) {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    search_from = i + 1;
                    break;
                }
                _ => {}
            }
        }
    }
    let tail = &value[search_from..];
    let (uri, params) = match find_byte(tail, b'<') {
        Some(lt) => {
            let inner = &tail[lt + 1..];
            match find_byte(inner, b'>') {
                Some(gt) => (&inner[..gt], &inner[gt + 1..]),
                None => (inner, ""),
            }
        }
        None => match find_byte(value, b';') {
            Some(semi) => (&value[..semi], &value[semi..]),
            None => (value, ""),
        },
    };
    NameAddr {
        user: uri_user(trim_white(uri)),
        tag: param(params, "tag"),
    }
}

/// The user part of a `sip:`, `sips:` or `tel:` URI.
fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = split_once_byte(uri, b':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = before_byte(rest, b';');
        return Some(number).filter(|n| !n.is_empty());
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (userinfo, _host) = split_once_byte(rest, b'@')?;
    // user:password@host
    let user = before_byte(userinfo, b':');
    Some(user).filter(|u| !u.is_empty())
}

/// The value of the header parameter `name` in `;a=b;name=value`: the first non-empty
/// one.
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = params;
    loop {
        let (p, next) = match split_once_byte(rest, b';') {
            Some((p, next)) => (p, Some(next)),
            None => (rest, None),
        };
        if let Some((k, v)) = split_once_byte(p, b'=')
            && trim_white(k).eq_ignore_ascii_case(name)
        {
            let v = trim_white(v);
            let end = v
                .bytes()
                .position(|b| matches!(b, b',' | b' ' | b'\t'))
                .unwrap_or(v.len());
            if end > 0 {
                return Some(&v[..end]);
            }
        }
        rest = next?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-4242@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 129\r\n\r\n\
v=0\r\nCall-ID: not-a-header@body\r\n";

    #[test]
    fn request_line_and_headers() {
        let s = SipSummary::parse(INVITE).unwrap();
        assert_eq!(s.first_line, "INVITE sip:service@127.0.0.1:5060 SIP/2.0");
        assert_eq!(
            s.start,
            StartLine::Request {
                method: "INVITE",
                uri: "sip:service@127.0.0.1:5060"
            }
        );
        assert_eq!(s.call_id, Some("1-4242@127.0.0.1"));
        assert_eq!(
            s.cseq,
            Some(CSeq {
                seq: 1,
                method: "INVITE"
            })
        );
        assert_eq!(
            s.from,
            Some(NameAddr {
                user: Some("sipp"),
                tag: Some("1SIPpTag001")
            })
        );
        assert_eq!(
            s.to,
            Some(NameAddr {
                user: Some("service"),
                tag: None
            })
        );
        assert_eq!(s.method(), Some("INVITE"));
        assert!(s.is_request());
        assert_eq!(s.status(), None);
        assert_eq!(s.via_branch, Some("z9hG4bK-1-0"));
    }

    #[test]
    fn the_branch_is_the_top_vias_only() {
        fn branch(msg: &[u8]) -> Option<&str> {
            SipSummary::parse(msg).unwrap().via_branch
        }
        // Two Vias in one header, then a second header: the first one's branch.
        let two = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;rport;branch=z9hG4bK-top ,\
SIP/2.0/UDP b;branch=z9hG4bK-b\r\nv: SIP/2.0/TCP c;branch=z9hG4bK-c\r\n\r\n";
        assert_eq!(branch(two), Some("z9hG4bK-top"));
        // A top Via without a branch (RFC 2543 agents): none, not the next Via's.
        let old =
            b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nVia: SIP/2.0/UDP b;branch=x\r\n\r\n";
        assert_eq!(branch(old), None);
        assert_eq!(branch(b"BYE sip:a@b SIP/2.0\r\n\r\n"), None);
    }

    #[test]
    fn the_start_line_alone_agrees_with_the_summary() {
        for msg in [
            INVITE,
            &b"SIP/2.0 486 Busy Here\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0",
            b"OPTIONS sip:a@b HTTP/1.1\r\n",
            b"SIP/2.0 99 Too Low\r\n",
            b"\xff\xfe",
        ] {
            assert_eq!(
                StartLine::parse(msg),
                SipSummary::parse(msg).map(|s| s.start),
                "{msg:?}"
            );
        }
        assert_eq!(
            StartLine::parse(INVITE).and_then(|s| s.method()),
            Some("INVITE")
        );
        assert_eq!(
            StartLine::parse(b"SIP/2.0 200 OK\r\n").and_then(|s| s.method()),
            None
        );
    }

    #[test]
    fn status_line_and_method_from_cseq() {
        let msg = b"SIP/2.0 180 Ringing\r\ncseq:  2   BYE \r\nCALL-ID:abc\r\n\r\n";
        let s = SipSummary::parse(msg).unwrap();
        assert_eq!(
            s.start,
            StartLine::Response {
                code: 180,
                reason: "Ringing"
            }
        );
        assert_eq!(s.status(), Some(180));
        assert_eq!(s.method(), Some("BYE"));
        assert_eq!(s.call_id, Some("abc"));
    }

    #[test]
    fn compact_headers_and_bare_newlines() {
        let msg = b"BYE sip:a@b SIP/2.0\ni: compact-id@host\nf: <sip:+4930123@gw;user=phone>;TAG=x9\nt: sip:bob@example.com;tag=y8\n\nbody";
        let s = SipSummary::parse(msg).unwrap();
        assert_eq!(s.call_id, Some("compact-id@host"));
        assert_eq!(s.from.unwrap().user, Some("+4930123"));
        assert_eq!(s.from.unwrap().tag, Some("x9"));
        // Without angle brackets the parameters are the header's.
        assert_eq!(s.to.unwrap().user, Some("bob"));
        assert_eq!(s.to.unwrap().tag, Some("y8"));
        assert_eq!(s.cseq, None);
    }

    #[test]
    fn display_names_tel_uris_and_passwords() {
        let a = parse_name_addr(r#""Bob <the \"boss\">" <sips:bob:secret@example.com>;tag=77"#);
        assert_eq!(
            a,
            NameAddr {
                user: Some("bob"),
                tag: Some("77")
            }
        );
        let a = parse_name_addr("<tel:+1-201-555-0123;phone-context=x>");
        assert_eq!(a.user, Some("+1-201-555-0123"));
        let a = parse_name_addr("<sip:example.com>;tag=1");
        assert_eq!(a.user, None);
        assert_eq!(a.tag, Some("1"));
        let a = parse_name_addr("<mailto:x@y>");
        assert_eq!(a.user, None);
    }

    #[test]
    fn the_body_is_never_read() {
        let s = SipSummary::parse(b"OPTIONS sip:x SIP/2.0\r\n\r\nCall-ID: body\r\n").unwrap();
        assert_eq!(s.call_id, None);
    }

    #[test]
    fn not_sip() {
        for msg in [
            &b""[..],
            b"hello world",
            b"kamailio hlog: INVITE from 127.0.0.1:5061",
            b"SIP/2.0 99 Too Low\r\n",
            b"SIP/2.0 2000 OK\r\n",
            b"INVITE sip:x HTTP/1.1\r\n",
            b"IN VITE sip:x SIP/2.0 extra\r\n",
            b"{\"json\": true}",
            b"\xff\xfe SIP/2.0\r\n",
        ] {
            assert_eq!(SipSummary::parse(msg), None, "{}", msg.escape_ascii());
        }
    }

    #[test]
    fn status_without_reason_and_non_utf8_header() {
        let s =
            SipSummary::parse(b"SIP/2.0 200\r\nCall-ID: \xff\xff\r\nTo: <sip:u@h>\r\n").unwrap();
        assert_eq!(
            s.start,
            StartLine::Response {
                code: 200,
                reason: ""
            }
        );
        assert_eq!(s.call_id, None);
        assert_eq!(s.to.unwrap().user, Some("u"));
    }

    #[test]
    fn first_occurrence_wins_and_folded_lines_are_skipped() {
        let msg = b"MESSAGE sip:x SIP/2.0\r\nCall-ID: one\r\n  folded: yes\r\ni: two\r\n\r\n";
        assert_eq!(SipSummary::parse(msg).unwrap().call_id, Some("one"));
    }
}
