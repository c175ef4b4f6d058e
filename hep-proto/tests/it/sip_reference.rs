//! The SIP summary against the straightforward reading it replaced (the `str` methods
//! with `char` patterns, every header value checked for UTF-8): the byte loops that made
//! it cheaper for the KPI tracker must give the same summary of any input.

use hep_proto::sip::{CSeq, NameAddr, SipSummary, StartLine};
use proptest::prelude::*;

/// `SipSummary::parse` as it was before its byte loops (hep-proto 2026-12-07, 9d32f79).
fn reference(payload: &[u8]) -> Option<SipSummary<'_>> {
    Reference::parse(payload).map(|r| r.0)
}

struct Reference<'a>(SipSummary<'a>);

impl<'a> Reference<'a> {
    fn parse(payload: &'a [u8]) -> Option<Self> {
        let (first, mut rest) = split_line(payload);
        let first_line = std::str::from_utf8(first).ok()?;
        let start = parse_start_line(first_line)?;
        let mut summary = SipSummary {
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
            let name = trim(&line[..colon]);
            let Some(value) = std::str::from_utf8(trim(&line[colon + 1..])).ok() else {
                continue;
            };
            take_header(&mut summary, name, value, &mut via_seen);
            if is_complete(&summary, via_seen) {
                break;
            }
        }
        Some(Reference(summary))
    }
}

fn take_header<'a>(s: &mut SipSummary<'a>, name: &[u8], value: &'a str, via_seen: &mut bool) {
    let is = |long: &str, short: &str| {
        name.eq_ignore_ascii_case(long.as_bytes()) || name.eq_ignore_ascii_case(short.as_bytes())
    };
    if s.call_id.is_none() && is("call-id", "i") {
        s.call_id = Some(value).filter(|v| !v.is_empty());
    } else if s.from.is_none() && is("from", "f") {
        s.from = Some(parse_name_addr(value));
    } else if s.to.is_none() && is("to", "t") {
        s.to = Some(parse_name_addr(value));
    } else if s.cseq.is_none() && name.eq_ignore_ascii_case(b"cseq") {
        s.cseq = parse_cseq(value);
    } else if !*via_seen && is("via", "v") {
        *via_seen = true;
        // The first Via of the header (a header may list several, comma-separated).
        let first = value.split(',').next().unwrap_or(value);
        s.via_branch = first.split_once(';').and_then(|(_, p)| param(p, "branch"));
    }
}

fn is_complete(s: &SipSummary<'_>, via_seen: bool) -> bool {
    s.call_id.is_some() && s.cseq.is_some() && s.from.is_some() && s.to.is_some() && via_seen
}

fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
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

fn parse_start_line(line: &str) -> Option<StartLine<'_>> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // SIP/2.0 SP Status-Code SP Reason-Phrase
        let (_version, rest) = rest.split_once(' ')?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
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
    let (method, rest) = line.split_once(' ')?;
    let (uri, version) = rest.split_once(' ')?;
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
    let (seq, method) = value.split_once([' ', '\t'])?;
    Some(CSeq {
        seq: seq.parse().ok()?,
        method: method.trim_matches([' ', '\t']),
    })
}

/// `"Display" <uri>;params`, `<uri>;params` or `uri;params` (where the parameters belong
/// to the header, RFC 3261 20.10).
fn parse_name_addr(value: &str) -> NameAddr<'_> {
    // Skip a quoted display name: it may contain `<`.
    let mut search_from = 0;
    if value.starts_with('"') {
        let mut escaped = false;
        for (i, c) in value.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    search_from = i + 1;
                    break;
                }
                _ => {}
            }
        }
    }
    let tail = &value[search_from..];
    let (uri, params) = match tail.find('<') {
        Some(lt) => {
            let inner = &tail[lt + 1..];
            match inner.find('>') {
                Some(gt) => (&inner[..gt], &inner[gt + 1..]),
                None => (inner, ""),
            }
        }
        None => match value.find(';') {
            Some(semi) => (&value[..semi], &value[semi..]),
            None => (value, ""),
        },
    };
    NameAddr {
        user: uri_user(uri.trim()),
        tag: param(params, "tag"),
    }
}

/// The user part of a `sip:`, `sips:` or `tel:` URI.
fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or(rest);
        return Some(number).filter(|n| !n.is_empty());
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (userinfo, _host) = rest.split_once('@')?;
    // user:password@host
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    Some(user).filter(|u| !u.is_empty())
}

/// The value of the header parameter `name` in `;a=b;name=value`.
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = v.trim();
        let end = v.find([',', ' ', '\t']).unwrap_or(v.len());
        Some(&v[..end]).filter(|v| !v.is_empty())
    })
}

/// SIP-ish text: header lines drawn from the names and the tricky bits of values the
/// summary reads (display names with quotes and escapes, angle brackets, parameters,
/// compact forms, blanks, non-ASCII and non-UTF-8 bytes).
fn sipish() -> impl Strategy<Value = Vec<u8>> {
    let start = prop::sample::select(vec![
        "INVITE sip:bob@h SIP/2.0",
        "SIP/2.0 200 OK",
        "SIP/2.0 486",
        "BYE tel:+1;x SIP/2.0",
        "SIP/2.0 99 Low",
        "IN VITE x SIP/2.0",
        "ACK  SIP/2.0",
    ]);
    let name = prop::sample::select(vec![
        "Call-ID", "i", "I", "From", "f", "To", "t", "T", "CSeq", "cseq", "Via", "v", "V",
        "X-Other", " To", "Contact", "",
    ]);
    let piece = prop::sample::select(vec![
        ";tag=", ";branch=", "<sip:", "<sips:", "<tel:", "sip:", ">", "\"", "\\", "@", ":", ";",
        "=", ",", " ", "\t", "a", "1", "1 ", "INVITE", "z9", "\u{a0}", "\u{e9}", "\u{3000}",
    ]);
    let pieces = prop::collection::vec(
        prop_oneof![
            8 => piece.prop_map(|p: &str| p.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..3),
        ],
        0..9,
    )
    .prop_map(|parts| parts.concat());
    // A quoted display name (with escapes) before the address, as From and To have.
    let value = prop_oneof![
        pieces.clone(),
        (pieces.clone(), pieces)
            .prop_map(|(display, rest)| [&b"\""[..], &display, b"\" <", &rest].concat()),
    ];
    let line = (name, value, prop::sample::select(vec![":", ": ", " :", ""]))
        .prop_map(|(n, v, colon)| [n.as_bytes(), colon.as_bytes(), &v].concat());
    let end = prop::sample::select(vec!["\r\n", "\n"]);
    (
        start,
        prop::collection::vec((line, end.clone()), 0..10),
        end,
    )
        .prop_map(|(start, lines, end)| {
            let mut out = start.as_bytes().to_vec();
            out.extend_from_slice(end.as_bytes());
            for (l, e) in lines {
                out.extend_from_slice(&l);
                out.extend_from_slice(e.as_bytes());
            }
            out.extend_from_slice(b"\r\nCall-ID: body\r\n");
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_summary_equals_the_straightforward_reading_of_sipish_text(msg in sipish()) {
        prop_assert_eq!(SipSummary::parse(&msg), reference(&msg));
    }

    #[test]
    fn the_summary_equals_the_straightforward_reading_of_any_bytes(
        msg in prop::collection::vec(any::<u8>(), 0..200)
    ) {
        prop_assert_eq!(SipSummary::parse(&msg), reference(&msg));
    }
}

#[test]
fn the_reference_reads_the_messages_of_the_module_docs_alike() {
    let msg = b"INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-1\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=a1\r\nt: <sip:bob@example.com>\r\n\
i: 1-2345@127.0.0.1\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n";
    let s = SipSummary::parse(msg).unwrap();
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
            user: Some("alice"),
            tag: Some("a1")
        })
    );
    assert!(matches!(
        s.start,
        StartLine::Request {
            method: "INVITE",
            ..
        }
    ));
    assert_eq!(Some(s), reference(msg));
}
