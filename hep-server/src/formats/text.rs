//! The one-line, human-readable form of a HEP message (`decode --format text`, and the
//! `stdout` output).
//!
//! ```text
//! 2026-11-26T05:21:49.909050Z cid=2001 127.0.0.1:5061 -> 127.0.0.1:5060 -/udp sip | INVITE sip:service@127.0.0.1:5060 SIP/2.0 | Call-ID: 1-12345@127.0.0.1
//! 2026-11-26T05:22:06.313320Z cid=2001 127.0.0.1:5060 -> 127.0.0.1:9060 udp/udp log | kamailio hlog: INVITE from 127.0.0.1:5061
//! ```
//!
//! Fields, separated by spaces, `-` when unknown: the capture time in UTC (ISO-8601 with
//! microseconds), the capture id, source `->` destination, the transport the HEP message
//! arrived on and the IP protocol of the captured packet (`tcp/udp`: SIP over UDP, sent
//! to us over TCP), the protocol type. After ` | `: for SIP (or a HEPv1/v2 payload that
//! reads as SIP) the request or status line and the Call-ID; for anything else the first
//! line of the payload, cut at [`MAX_PREVIEW`] bytes. Control characters, backslashes
//! and bytes that are not UTF-8 are escaped (`\r`, `\\`, `\xff`), so a line is always one
//! line of valid UTF-8.

use std::fmt::{self, Write as _};

use hep_proto::{HepMessage, ProtoType, ip_proto};
use hep_transport::RecvInfo;

use crate::time::UtcTimestamp;
use hep_proto::sip::{SipSummary, split_line};

/// The longest payload preview shown for non-SIP payloads, in bytes.
pub const MAX_PREVIEW: usize = 160;

/// A message as one line of text; see the [module docs](self). Its `Display` writes the
/// line without a trailing newline and allocates nothing.
///
/// ```
/// use hep_proto::{HepMessage, ProtoType};
/// use hep_server::formats::text::TextLine;
///
/// let msg = HepMessage::builder()
///     .src("10.0.0.1:5060".parse().unwrap())
///     .dst("10.0.0.2:5060".parse().unwrap())
///     .timestamp(1_700_000_000, 5)
///     .capture_id(7)
///     .proto_type(ProtoType::Sip)
///     .payload("SIP/2.0 200 OK\r\ni: abc@h\r\n\r\n")
///     .build();
/// assert_eq!(
///     TextLine::new(&msg, None).to_string(),
///     "2023-11-14T22:13:20.000005Z cid=7 10.0.0.1:5060 -> 10.0.0.2:5060 -/udp sip | SIP/2.0 200 OK | Call-ID: abc@h"
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TextLine<'a> {
    msg: &'a HepMessage,
    recv: Option<&'a RecvInfo>,
}

impl<'a> TextLine<'a> {
    /// The line for `msg`, received as `recv` (if known).
    pub const fn new(msg: &'a HepMessage, recv: Option<&'a RecvInfo>) -> Self {
        Self { msg, recv }
    }
}

impl fmt::Display for TextLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.msg;
        match (m.ts_sec, m.ts_usec) {
            (Some(s), us) => write!(f, "{}", UtcTimestamp::new(s.into(), us.unwrap_or(0)))?,
            (None, _) => f.write_char('-')?,
        }
        f.write_str(" cid=")?;
        opt(f, m.capture_id)?;
        f.write_char(' ')?;
        write!(f, "{} -> {}", Endpoint::src(m), Endpoint::dst(m))?;
        f.write_char(' ')?;
        match self.recv {
            Some(r) => f.write_str(r.transport.as_str())?,
            None => f.write_char('-')?,
        }
        f.write_char('/')?;
        match m.ip_proto {
            Some(p) => match ip_proto::name(p) {
                Some(name) => f.write_str(name)?,
                None => write!(f, "{p}")?,
            },
            None => f.write_char('-')?,
        }
        f.write_char(' ')?;
        opt(f, m.proto_type)?;
        f.write_str(" |")?;

        let payload = m.payload.bytes();
        let may_be_sip = matches!(m.proto_type, None | Some(ProtoType::Sip));
        if let Some(sip) = may_be_sip.then(|| SipSummary::parse(payload)).flatten() {
            f.write_char(' ')?;
            escaped(f, sip.first_line.as_bytes())?;
            if let Some(id) = sip.call_id {
                f.write_str(" | Call-ID: ")?;
                escaped(f, id.as_bytes())?;
            }
            return Ok(());
        }
        let (first, rest) = split_line(payload);
        if first.is_empty() {
            return Ok(());
        }
        f.write_char(' ')?;
        let cut = first.len() > MAX_PREVIEW;
        let shown = if cut {
            // Back off to a character boundary rather than split a UTF-8 sequence.
            let mut end = MAX_PREVIEW;
            while end > MAX_PREVIEW - 3 && first[end] & 0xc0 == 0x80 {
                end -= 1;
            }
            &first[..end]
        } else {
            first
        };
        escaped(f, shown)?;
        if cut || !rest.is_empty() {
            f.write_str(" ...")?;
        }
        Ok(())
    }
}

fn opt(f: &mut fmt::Formatter<'_>, v: Option<impl fmt::Display>) -> fmt::Result {
    match v {
        Some(v) => write!(f, "{v}"),
        None => f.write_char('-'),
    }
}

/// An address and port as the text line shows them: `10.0.0.1:5060`, `[::1]:5060`, the
/// bare IP without a port, `-:5060` without an IP, `-` with neither.
///
/// ```
/// use hep_proto::HepMessage;
/// use hep_server::formats::text::Endpoint;
///
/// let msg = HepMessage::builder().src("[::1]:5060".parse().unwrap()).build();
/// assert_eq!(Endpoint::src(&msg).to_string(), "[::1]:5060");
/// assert_eq!(Endpoint::dst(&msg).to_string(), "-");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The IP address, if known.
    pub ip: Option<std::net::IpAddr>,
    /// The port, if known.
    pub port: Option<u16>,
}

impl Endpoint {
    /// The message's source.
    pub const fn src(msg: &HepMessage) -> Self {
        Self {
            ip: msg.src_ip,
            port: msg.src_port,
        }
    }

    /// The message's destination.
    pub const fn dst(msg: &HepMessage) -> Self {
        Self {
            ip: msg.dst_ip,
            port: msg.dst_port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (Some(ip), Some(port)) => write!(f, "{}", std::net::SocketAddr::new(ip, port)),
            (Some(ip), None) => write!(f, "{ip}"),
            (None, Some(port)) => write!(f, "-:{port}"),
            (None, None) => f.write_char('-'),
        }
    }
}

/// Writes `bytes` as text: UTF-8 as is, except control characters and `\`, which are
/// escaped like Rust's `escape_debug`, and bytes that are not UTF-8, written `\xNN`.
///
/// ```
/// use hep_server::formats::text::Escaped;
/// assert_eq!(Escaped(b"caf\xc3\xa9\r\n\xff\\").to_string(), r"café\r\n\xff\\");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escaped(f, self.0)
    }
}

fn escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            if c.is_control() || c == '\\' {
                f.write_str(&valid[start..i])?;
                match c {
                    '\r' => f.write_str("\\r")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\\' => f.write_str("\\\\")?,
                    c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                    c => write!(f, "\\u{{{:x}}}", c as u32)?,
                }
                start = i + c.len_utf8();
            }
        }
        f.write_str(&valid[start..])?;
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hep_proto::{HepVersion, Payload};
    use hep_transport::Transport;

    fn base() -> hep_proto::HepMessageBuilder {
        HepMessage::builder()
            .src("127.0.0.1:5061".parse().unwrap())
            .dst("127.0.0.1:5060".parse().unwrap())
    }

    #[test]
    fn v1_sip_without_time_or_type() {
        let mut msg = base()
            .payload("BYE sip:a@b SIP/2.0\r\nCall-ID: x@y\r\n\r\n")
            .build();
        msg.version = Some(HepVersion::V1);
        assert_eq!(
            TextLine::new(&msg, None).to_string(),
            "- cid=- 127.0.0.1:5061 -> 127.0.0.1:5060 -/udp - | BYE sip:a@b SIP/2.0 | Call-ID: x@y"
        );
    }

    #[test]
    fn log_payload_with_recv_info() {
        let msg = base()
            .timestamp(0, 1)
            .capture_id(2001)
            .proto_type(ProtoType::Log)
            .payload("kamailio hlog: INVITE from 127.0.0.1:5061")
            .build();
        let recv = RecvInfo::new(
            Transport::Tcp,
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:9060".parse().unwrap(),
        );
        assert_eq!(
            TextLine::new(&msg, Some(&recv)).to_string(),
            "1970-01-01T00:00:00.000001Z cid=2001 127.0.0.1:5061 -> 127.0.0.1:5060 tcp/udp log | kamailio hlog: INVITE from 127.0.0.1:5061"
        );
    }

    #[test]
    fn binary_payloads_are_escaped_and_cut() {
        let mut payload = b"\x80\x08\xff ok\t".to_vec();
        payload.extend(std::iter::repeat_n(b'a', 400));
        let msg = HepMessage {
            payload: Payload::Plain(Bytes::from(payload)),
            proto_type: Some(ProtoType::Rtp),
            ..HepMessage::default()
        };
        let line = TextLine::new(&msg, None).to_string();
        assert!(
            line.starts_with(r"- cid=- - -> - -/- rtp | \x80\x08\xff ok\taaa"),
            "{line}"
        );
        assert!(line.ends_with("aaa ..."), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn sip_typed_garbage_falls_back_to_the_first_line() {
        let msg = base()
            .proto_type(ProtoType::Sip)
            .payload("not sip\r\nsecond")
            .build();
        assert!(
            TextLine::new(&msg, None)
                .to_string()
                .ends_with(" sip | not sip ...")
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            Escaped(b"a\x00b\x7f\xe2\x9c").to_string(),
            r"a\x00b\x7f\xe2\x9c"
        );
        assert_eq!(Escaped("\u{85}✓".as_bytes()).to_string(), r"\x85✓");
    }
}
