//! What the store keeps of one message: the indexed summary and the HEP bytes, built
//! for a whole batch at a time ([`Batch`]), on the thread that fills the batch while the
//! writer inserts the one before.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use hep_proto::HepVersion;
use hep_transport::{Received, Transport};

use super::config::StoreConfig;
use super::link::Correlation;
use super::schema::text_hash;
use crate::formats::hep::wire_bytes;
use hep_proto::sip::SipSummary;

/// A piece of a batch's text: its place in [`Batch`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Text {
    start: usize,
    end: usize,
}

/// The values of one `messages` row; its text is kept in its batch's [`Batch`].
#[derive(Debug)]
pub(crate) struct Row {
    /// The start of its partition (by receive time), seconds since the Unix epoch.
    pub(crate) partition: i64,
    /// Capture time, us (receive time for HEPv1, which has none).
    pub(crate) ts: i64,
    pub(crate) recv_ts: i64,
    pub(crate) proto_type: Option<u8>,
    pub(crate) capture_id: Option<u32>,
    pub(crate) src: Option<Text>,
    pub(crate) dst: Option<Text>,
    pub(crate) call_id: Option<Text>,
    pub(crate) method: Option<Text>,
    pub(crate) status: Option<u16>,
    pub(crate) cseq: Option<u32>,
    pub(crate) from_user: Option<Text>,
    pub(crate) from_tag: Option<Text>,
    pub(crate) to_user: Option<Text>,
    pub(crate) to_tag: Option<Text>,
    pub(crate) correlation_id: Option<Text>,
    /// The HEP node name (chunk 0x0013; not UTF-8: replaced characters).
    pub(crate) node: Option<Text>,
    /// `text_hash` of the Call-ID and of the correlation id (computed here, off the
    /// writer's thread).
    pub(crate) call_hash: Option<i64>,
    pub(crate) correlation_hash: Option<i64>,
    /// How it reached us (written as text; see [`RecvText`]).
    pub(crate) transport: Transport,
    pub(crate) peer: SocketAddr,
    pub(crate) listener: SocketAddr,
    /// The HEP bytes: as received, or re-encoded when a callback changed the message
    /// (so that what is stored is what the outputs saw, e.g. without a stripped key).
    pub(crate) hep: Bytes,
    /// For a message another collector received first (a cluster's edge), its
    /// [`delivery_key`]: a store holds each such message once.
    pub(crate) key: Option<i64>,
}

/// What the rows of a batch depend on besides its messages: the store's settings.
#[derive(Debug, Clone)]
pub(crate) struct RowPlan {
    /// Partition length, seconds.
    span: i64,
    /// Capture and receive time further apart than this are counted, us (`None`: not
    /// checked).
    clock_skew: Option<i64>,
    /// What links a message to another leg.
    correlation: Correlation,
}

impl RowPlan {
    /// The plan of a store configured by `config`.
    pub(crate) fn of(config: &StoreConfig) -> Self {
        Self {
            span: i64::from(config.partition_minutes) * 60,
            clock_skew: (config.clock_skew_warn_secs > 0).then(|| {
                i64::try_from(config.clock_skew_warn_secs).unwrap_or(i64::MAX / 2) * 1_000_000
            }),
            correlation: config.correlation.clone(),
        }
    }

    /// Partition length, seconds.
    pub(crate) const fn span(&self) -> i64 {
        self.span
    }
}

/// A batch of messages to write ([`Store::write`](super::Store::write)), as the rows
/// they are stored as: each message's indexed summary and HEP bytes, and when it was
/// received.
///
/// Owned (no borrow of the batch's messages), so that a batch's rows are built on one
/// thread and inserted on another. The text of all rows goes into one buffer: no
/// allocation per row or per field.
#[derive(Debug)]
pub struct Batch {
    plan: RowPlan,
    rows: Vec<Row>,
    text: String,
    /// Messages of the batch.
    pub(crate) taken: u64,
    /// Changed messages that did not encode again.
    pub(crate) failed: u64,
    /// Messages whose capture time is further from their receive time than the plan's
    /// skew (stored all the same).
    pub(crate) skewed: u64,
    /// The last of them: its agent and by how much its time was off (capture minus
    /// receive time), us.
    pub(crate) last_skew: Option<(SocketAddr, i64)>,
}

impl Batch {
    /// No rows yet.
    pub(super) fn new(plan: RowPlan) -> Self {
        Self {
            plan,
            rows: Vec::new(),
            text: String::new(),
            taken: 0,
            failed: 0,
            skewed: 0,
            last_skew: None,
        }
    }

    /// Messages added.
    pub fn len(&self) -> u64 {
        self.taken
    }

    /// Whether no message was added.
    pub fn is_empty(&self) -> bool {
        self.taken == 0
    }

    /// This batch, leaving an empty one for the same store in its place.
    #[must_use]
    pub fn take(&mut self) -> Self {
        std::mem::replace(self, Self::new(self.plan.clone()))
    }

    /// Adds `m`, received at `received_usec` (us since the Unix epoch; the partition it
    /// goes to follows this time). A message a callback changed is encoded again; one
    /// that cannot be is counted as failed.
    pub fn add(&mut self, m: &Received, received_usec: i64) {
        self.taken += 1;
        // A message that reached us through another collector keeps its receive time:
        // its partition, and so its duplicate check, do not depend on when it came.
        let received_usec = m
            .info
            .received_at
            .map_or(received_usec, crate::time::usec_of);
        let Some(r) = self.row(m, received_usec) else {
            self.failed += 1;
            return;
        };
        let skew = r.ts.saturating_sub(r.recv_ts);
        if self
            .plan
            .clock_skew
            .is_some_and(|max| skew.unsigned_abs() > max.unsigned_abs())
        {
            self.skewed += 1;
            self.last_skew = Some((r.peer, skew));
        }
        self.rows.push(r);
    }

    /// Puts the rows in partition order (within one, they keep the batch's order).
    pub(crate) fn sort(&mut self) {
        self.rows.sort_by_key(|r| r.partition);
    }

    /// The rows of each partition the batch touches, in the order of [`sort`](Self::sort)
    /// (one partition; two for a batch across the end of a span).
    pub(crate) fn by_partition(&self) -> impl Iterator<Item = &[Row]> {
        self.rows.chunk_by(|a, b| a.partition == b.partition)
    }

    /// The text of `t`.
    pub(crate) fn text(&self, t: Option<Text>) -> Option<&str> {
        t.map(|t| &self.text[t.start..t.end])
    }

    /// The row of `m`, received at `recv_ts` (us); `None` when a changed message cannot be
    /// encoded again.
    fn row(&mut self, m: &Received, recv_ts: i64) -> Option<Row> {
        let span = self.plan.span;
        let msg = &m.message;
        // As received unless changed; a changed message in its own version if it can
        // be, else in HEPv3.
        let hep = wire_bytes(m, msg.version.unwrap_or(HepVersion::V3))
            .or_else(|_| msg.encode(HepVersion::V3))
            .ok()?;
        let ts = match msg.ts_sec {
            Some(s) => i64::from(s) * 1_000_000 + i64::from(msg.ts_usec.unwrap_or(0)),
            None => recv_ts,
        };
        let payload = msg.payload.bytes();
        let sip = SipSummary::parse(payload);
        let from = sip.and_then(|s| s.from);
        let to = sip.and_then(|s| s.to);
        let call_id = sip.and_then(|s| s.call_id);
        let correlation_id = self.plan.correlation.link(msg, sip.as_ref(), payload);
        let correlation_id = correlation_id.as_deref();
        Some(Row {
            // Receive time, which only the collector's clock decides: an agent's clock
            // (or a forged timestamp) cannot open partitions or place rows in old ones.
            partition: recv_ts.div_euclid(1_000_000).div_euclid(span) * span,
            ts,
            recv_ts,
            proto_type: msg.proto_type.map(|t| t.id()),
            capture_id: msg.capture_id,
            src: self.addr(msg.src_ip, msg.src_port),
            dst: self.addr(msg.dst_ip, msg.dst_port),
            call_id: self.push(call_id),
            method: self.push(sip.and_then(|s| s.method())),
            status: sip.and_then(|s| s.status()),
            cseq: sip.and_then(|s| s.cseq).map(|c| c.seq),
            from_user: self.push(from.and_then(|f| f.user)),
            from_tag: self.push(from.and_then(|f| f.tag)),
            to_user: self.push(to.and_then(|t| t.user)),
            to_tag: self.push(to.and_then(|t| t.tag)),
            correlation_id: self.push(correlation_id),
            node: self.push(
                msg.node_name
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .as_deref(),
            ),
            call_hash: call_id.map(text_hash),
            correlation_hash: correlation_id.map(text_hash),
            transport: m.info.transport,
            peer: m.info.peer,
            listener: m.info.listener,
            key: m
                .info
                .received_at
                .map(|_| delivery_key(&m.wire, recv_ts, m.info.peer) as i64),
            hep,
        })
    }

    /// Appends `s` to the text.
    fn push(&mut self, s: Option<&str>) -> Option<Text> {
        let start = self.text.len();
        self.text.push_str(s?);
        Some(Text {
            start,
            end: self.text.len(),
        })
    }

    /// Appends `IP:PORT` (`[IP]:PORT` for IPv6), or the IP alone without a port.
    ///
    /// IPv4 is written by hand: `Display` of a socket address goes through the
    /// formatter's padding machinery, a measurable share of the store's time for two per
    /// row.
    fn addr(&mut self, ip: Option<IpAddr>, port: Option<u16>) -> Option<Text> {
        let ip = ip?;
        let start = self.text.len();
        let s = &mut self.text;
        match (ip, port) {
            (IpAddr::V4(v4), _) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        s.push('.');
                    }
                    push_decimal(s, u32::from(octet));
                }
                if let Some(p) = port {
                    s.push(':');
                    push_decimal(s, u32::from(p));
                }
            }
            (_, Some(p)) => {
                let _ = write!(s, "{}", SocketAddr::new(ip, p));
            }
            (_, None) => {
                let _ = write!(s, "{ip}");
            }
        }
        Some(Text {
            start,
            end: s.len(),
        })
    }
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
    /// `(transport, peer, listener)` of `r` when they differ from those of the row before
    /// (or on the first); `None` when they are the same: a prepared insert keeps the
    /// values bound, so a run of one connection's messages binds them once.
    pub(crate) fn changed(&mut self, r: &Row) -> Option<(&'static str, &str, &str)> {
        if self
            .last
            .as_ref()
            .is_some_and(|(p, l, _, _)| (*p, *l) == (r.peer, r.listener))
        {
            return None;
        }
        let (_, _, peer, listener) = self.last.insert((
            r.peer,
            r.listener,
            r.peer.to_string(),
            r.listener.to_string(),
        ));
        Some((r.transport.as_str(), peer, listener))
    }
}

/// The key that names one message as the collector that first received it did: the
/// CRC-32 of its HEP bytes (high half) and the CRC-32 of its receive time (us), the
/// agent's address and the bytes' length (low half). A cluster's edge sends it as
/// `Nats-Msg-Id`, and a consumer's store keeps the keys it stored (`received_keys`),
/// skipping a message whose key it holds: a redelivery leaves one row.
///
/// ```
/// use hep_server::store::delivery_key;
/// let agent = "10.0.0.1:5060".parse().unwrap();
/// assert_eq!(delivery_key(b"HEP3", 7, agent), delivery_key(b"HEP3", 7, agent));
/// assert_ne!(delivery_key(b"HEP3", 7, agent), delivery_key(b"HEP3", 8, agent));
/// assert_ne!(delivery_key(b"HEP3", 7, agent), delivery_key(b"HEP4", 7, agent));
/// let other = "10.0.0.1:5061".parse().unwrap();
/// assert_ne!(delivery_key(b"HEP3", 7, agent), delivery_key(b"HEP3", 7, other));
/// ```
pub fn delivery_key(hep: &[u8], received_usec: i64, peer: SocketAddr) -> u64 {
    let mut low = crc32fast::Hasher::new();
    low.update(&received_usec.to_le_bytes());
    // The address as bytes (no text made per message): IP octets, then the port.
    match peer.ip() {
        IpAddr::V4(ip) => low.update(&ip.octets()),
        IpAddr::V6(ip) => low.update(&ip.octets()),
    }
    low.update(&peer.port().to_be_bytes());
    low.update(&(hep.len() as u64).to_le_bytes());
    (u64::from(crc32fast::hash(hep)) << 32) | u64::from(low.finalize())
}

#[cfg(test)]
mod tests {
    use super::{Batch, RowPlan};
    use crate::store::StoreConfig;
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
            let mut rows = Batch::new(RowPlan::of(&StoreConfig::default()));
            let t = rows.addr(Some(ip), port);
            assert_eq!(rows.text(t), Some(expected.as_str()));
        }
        let mut rows = Batch::new(RowPlan::of(&StoreConfig::default()));
        assert_eq!(rows.addr(None, Some(1)), None);
    }
}
