//! SIP text helpers: sipp message traces, a synthetic call to send, header lookups.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};

/// One message from a sipp `-trace_msg` file.
#[derive(Debug, Clone)]
pub(crate) struct Traced {
    /// Whether sipp sent it (else it received it).
    pub(crate) sent: bool,
    /// The exact bytes sipp sent or received.
    pub(crate) bytes: Vec<u8>,
}

/// Parses a sipp `-trace_msg -message_file FILE` trace.
///
/// Each entry is a separator line, then `UDP message sent (N bytes):` or
/// `UDP message received [N] bytes :`, an empty line, and exactly N bytes of message.
///
/// # Errors
/// Fails if the file cannot be read.
pub(crate) fn parse_sipp_trace(path: &Path) -> Result<Vec<Traced>> {
    let buf = fs::read(path).with_context(|| format!("reading sipp trace {}", path.display()))?;
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(at) = find(&buf[pos..], b" message ") {
        let line_start = pos + at;
        let line_end = find(&buf[line_start..], b"\n").map_or(buf.len(), |i| line_start + i);
        let line = String::from_utf8_lossy(&buf[line_start..line_end]).into_owned();
        pos = line_end;
        let sent = line.starts_with(" message sent");
        let digits: String = line
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        let (Ok(n), true) = (digits.parse::<usize>(), line.ends_with(':')) else {
            continue;
        };
        // The header line is followed by "\n\n", then the message.
        let start = line_end + 2;
        if start + n > buf.len() {
            break;
        }
        out.push(Traced {
            sent,
            bytes: buf[start..start + n].to_vec(),
        });
        pos = start + n;
    }
    Ok(out)
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of a SIP header (full or compact name), trimmed.
pub(crate) fn header<'a>(msg: &'a str, name: &str, compact: &str) -> Option<&'a str> {
    msg.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        let k = k.trim();
        (k.eq_ignore_ascii_case(name) || k.eq_ignore_ascii_case(compact)).then(|| v.trim())
    })
}

/// The Call-ID of a SIP message.
pub(crate) fn call_id(msg: &str) -> Option<&str> {
    header(msg, "Call-ID", "i")
}

/// A request's method, or a reply's status code and reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    /// `METHOD uri SIP/2.0`.
    Request(String),
    /// `SIP/2.0 CODE Reason`.
    Reply(u16, String),
}

/// Parses the first line of a SIP message.
pub(crate) fn start_line(msg: &str) -> Option<StartLine> {
    let first = msg.split("\r\n").next()?;
    if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        return Some(StartLine::Reply(code.parse().ok()?, reason.to_owned()));
    }
    let method = first.split(' ').next()?;
    (!method.is_empty()).then(|| StartLine::Request(method.to_owned()))
}

/// One message of a synthetic call, with the addresses to put in its HEP header.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    /// HEP source.
    pub(crate) src: SocketAddr,
    /// HEP destination.
    pub(crate) dst: SocketAddr,
    /// The SIP text.
    pub(crate) text: String,
}

impl Msg {
    /// The message's Call-ID.
    pub(crate) fn call_id(&self) -> &str {
        call_id(&self.text).unwrap_or_default()
    }

    /// The message's start line.
    pub(crate) fn start(&self) -> Option<StartLine> {
        start_line(&self.text)
    }
}

/// A complete call between `a` (caller) and `b`: INVITE, 180, 200, ACK, BYE, 200, with
/// Call-ID `call_id`. Each message carries `a`/`b` as its HEP addresses.
pub(crate) fn call(call_id: &str, a: SocketAddr, b: SocketAddr) -> Vec<Msg> {
    let tag = call_id.split('@').next().unwrap_or(call_id);
    let req = |method: &str, cseq: u32, to_tag: bool| {
        let to = if to_tag {
            format!(";tag={tag}-b")
        } else {
            String::new()
        };
        format!(
            "{method} sip:bob@{b} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {a};branch=z9hG4bK-{tag}-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@{a}>;tag={tag}-a\r\n\
             To: <sip:bob@{b}>{to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:alice@{a}>\r\n\
             User-Agent: hep-interop\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let reply = |code: u16, reason: &str, cseq: u32, method: &str| {
        format!(
            "SIP/2.0 {code} {reason}\r\n\
             Via: SIP/2.0/UDP {a};branch=z9hG4bK-{tag}-{cseq}\r\n\
             From: <sip:alice@{a}>;tag={tag}-a\r\n\
             To: <sip:bob@{b}>;tag={tag}-b\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:bob@{b}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let fwd = |text: String| Msg {
        src: a,
        dst: b,
        text,
    };
    let back = |text: String| Msg {
        src: b,
        dst: a,
        text,
    };
    vec![
        fwd(req("INVITE", 1, false)),
        back(reply(180, "Ringing", 1, "INVITE")),
        back(reply(200, "OK", 1, "INVITE")),
        fwd(req("ACK", 1, true)),
        fwd(req("BYE", 2, true)),
        back(reply(200, "OK", 2, "BYE")),
    ]
}

/// A Call-ID unique to this run and `label`.
pub(crate) fn unique_call_id(label: &str) -> String {
    let now = super::ours::now_micros();
    format!("{label}-{}-{now}@interop.test", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_traces_parse_exact_bytes() {
        let trace = b"----- 2026-11-26 07:27:50.449743\nUDP message sent (5 bytes):\n\nAB\r\nC\n\
            ----- 2026-11-26 07:27:50.461520\nUDP message received [3] bytes :\n\nxyz\n\n";
        let path = std::env::temp_dir().join(format!("xtask-sipp-{}.msg", std::process::id()));
        fs::write(&path, trace).unwrap();
        let got = parse_sipp_trace(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].sent && !got[1].sent);
        assert_eq!(got[0].bytes, b"AB\r\nC");
        assert_eq!(got[1].bytes, b"xyz");
    }

    #[test]
    fn synthetic_call_is_well_formed() {
        let a: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let b: SocketAddr = "[::1]:5080".parse().unwrap();
        let msgs = call("c1@x", a, b);
        assert_eq!(msgs.len(), 6);
        assert!(msgs.iter().all(|m| m.call_id() == "c1@x"));
        assert_eq!(msgs[0].start(), Some(StartLine::Request("INVITE".into())));
        assert_eq!(
            msgs[1].start(),
            Some(StartLine::Reply(180, "Ringing".into()))
        );
        assert!(
            msgs[0]
                .text
                .starts_with("INVITE sip:bob@[::1]:5080 SIP/2.0\r\n")
        );
        assert_eq!(header(&msgs[0].text, "cseq", "x"), Some("1 INVITE"));
    }
}
