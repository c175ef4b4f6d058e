//! What the store keeps of one message: the indexed summary and the HEP bytes.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use hep_proto::{HepMessage, HepVersion};
use hep_transport::{Received, RecvInfo};

use crate::sip::{self, SipSummary};

/// The values of one `messages` row, borrowed from the message where they can be.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    /// Capture time, us (receive time for HEPv1, which has none).
    pub(crate) ts: i64,
    pub(crate) recv_ts: i64,
    pub(crate) proto_type: Option<u8>,
    pub(crate) capture_id: Option<u32>,
    pub(crate) src: Option<String>,
    pub(crate) dst: Option<String>,
    pub(crate) sip: Option<SipSummary<'a>>,
    pub(crate) correlation_id: Option<&'a str>,
    /// How it reached us (written as text; see [`RecvText`]).
    pub(crate) recv: &'a RecvInfo,
    /// The HEP bytes: as received, or re-encoded when a callback changed the message
    /// (so that what is stored is what the outputs saw, e.g. without a stripped key).
    pub(crate) hep: Bytes,
}

impl<'a> Row<'a> {
    /// The row of `m`, received at `recv_ts` (us); `None` when a changed message cannot be
    /// encoded again.
    pub(crate) fn new(m: &'a Received, recv_ts: i64) -> Option<Self> {
        let msg = &m.message;
        let hep = if m.modified {
            let version = msg.version.unwrap_or(HepVersion::V3);
            msg.encode(version)
                .or_else(|_| msg.encode(HepVersion::V3))
                .ok()?
        } else {
            m.wire.clone()
        };
        let ts = match msg.ts_sec {
            Some(s) => i64::from(s) * 1_000_000 + i64::from(msg.ts_usec.unwrap_or(0)),
            None => recv_ts,
        };
        let payload = msg.payload.bytes();
        let sip = SipSummary::parse(payload);
        Some(Self {
            ts,
            recv_ts,
            proto_type: msg.proto_type.map(|t| t.id()),
            capture_id: msg.capture_id,
            src: addr(msg.src_ip, msg.src_port),
            dst: addr(msg.dst_ip, msg.dst_port),
            correlation_id: correlation_id(msg, sip.as_ref(), payload),
            sip,
            recv: &m.info,
            hep,
        })
    }
}

/// The id linking this message to another call: chunk 0x0011 when it names something
/// other than the message's own Call-ID (agents often repeat the Call-ID there), else
/// the `X-CID` header a B2BUA puts on its other leg.
fn correlation_id<'a>(
    msg: &'a HepMessage,
    sip: Option<&SipSummary<'a>>,
    payload: &'a [u8],
) -> Option<&'a str> {
    let call_id = sip.and_then(|s| s.call_id);
    let chunk = msg
        .correlation_id
        .as_deref()
        .and_then(|c| std::str::from_utf8(c).ok())
        .filter(|c| !c.is_empty());
    if let Some(c) = chunk
        && Some(c) != call_id
    {
        return Some(c);
    }
    let x_cid = sip.and_then(|_| sip::header(payload, "X-CID"));
    x_cid.or(chunk)
}

/// `IP:PORT` (`[IP]:PORT` for IPv6), the IP alone without a port, or `None`.
///
/// IPv4 is written by hand: `Display` of a socket address goes through the formatter's
/// padding machinery, a measurable share of the store thread's time for two per row.
fn addr(ip: Option<IpAddr>, port: Option<u16>) -> Option<String> {
    let ip = ip?;
    Some(match (ip, port) {
        (IpAddr::V4(v4), _) => {
            let mut s = String::with_capacity(21);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_decimal(&mut s, u32::from(octet));
            }
            if let Some(p) = port {
                s.push(':');
                push_decimal(&mut s, u32::from(p));
            }
            s
        }
        (_, Some(p)) => SocketAddr::new(ip, p).to_string(),
        (_, None) => {
            let mut s = String::with_capacity(40);
            let _ = write!(s, "{ip}");
            s
        }
    })
}

/// Appends `n` in decimal.
fn push_decimal(s: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(char::from(d));
    }
}

/// The text of the last receive info written: messages of one connection (and of one
/// agent over UDP) come in runs, so the addresses are formatted once per run.
#[derive(Debug, Default)]
pub(crate) struct RecvText {
    last: Option<(SocketAddr, SocketAddr, String, String)>,
}

impl RecvText {
    /// `(transport, peer, listener)` of `r` when they differ from those of the last call
    /// (or on the first); `None` when they are the same: a prepared insert keeps the
    /// values bound, so a run of one connection's messages binds them once.
    pub(crate) fn changed(&mut self, r: &RecvInfo) -> Option<(&'static str, &str, &str)> {
        if self
            .last
            .as_ref()
            .is_some_and(|(p, l, _, _)| (*p, *l) == (r.peer, r.listener))
        {
            return None;
        }
        Some(self.of(r))
    }

    /// `(transport, peer, listener)` of `r`.
    pub(crate) fn of(&mut self, r: &RecvInfo) -> (&'static str, &str, &str) {
        if self
            .last
            .as_ref()
            .is_none_or(|(p, l, _, _)| (*p, *l) != (r.peer, r.listener))
        {
            self.last = Some((
                r.peer,
                r.listener,
                r.peer.to_string(),
                r.listener.to_string(),
            ));
        }
        let (_, _, peer, listener) = self.last.as_ref().expect("just set");
        (r.transport.as_str(), peer, listener)
    }
}

#[cfg(test)]
mod tests {
    use super::addr;
    use std::net::IpAddr;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for (ip, port) in [
            ("10.0.0.1", Some(5060)),
            ("0.0.0.0", Some(0)),
            ("255.255.255.255", Some(65535)),
            ("192.168.100.7", None),
            ("::1", Some(5060)),
            ("2001:db8::7", None),
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            let expected = match port {
                Some(p) => std::net::SocketAddr::new(ip, p).to_string(),
                None => ip.to_string(),
            };
            assert_eq!(addr(Some(ip), port).as_deref(), Some(expected.as_str()));
        }
        assert_eq!(addr(None, Some(1)), None);
    }
}
