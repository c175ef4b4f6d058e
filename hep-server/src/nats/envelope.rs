//! A message on its way through the stream: its HEP bytes and what the edge knew of its
//! reception, the partition it belongs to and the key that names it.
//!
//! On the stream a message is the HEP bytes as the payload, and these headers:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | the message's key, 16 hex digits: JetStream drops a copy a retry makes |
//! | `Hep-Received` | when the edge received it, microseconds since the Unix epoch |
//! | `Hep-Transport` | `udp`, `tcp` or `tls`: how the agent sent it to the edge |
//! | `Hep-Peer` | the agent's address |
//! | `Hep-Listener` | the edge listener's address |
//!
//! In an edge's spool it is one record: a version byte, then the same fields in a fixed
//! binary layout ([`Envelope::to_record`]).
//!
//! # The partition
//! `text_hash` (FNV-1a 64, the store's) of the SIP Call-ID, else of the HEP correlation
//! id (chunk 0x0011), else of the source and destination addresses in a fixed order,
//! modulo the partitions. So every message of a call (and an RTCP report that names the
//! call as its correlation id) lands on the one consumer that reads its partition.
//!
//! # The key
//! [`delivery_key`]: 64 bits that name one message as the edge received it. The edge
//! sends it as `Nats-Msg-Id`; a consumer's store keeps the keys of what it stored and
//! skips a message whose key it holds (a redelivery).

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hep_proto::sip::SipSummary;
use hep_proto::{HepVersion, Received, RecvInfo, Transport};

use crate::store::delivery_key;
use crate::store::schema::text_hash;
use crate::time::usec_of;

/// The headers the edge sets (besides `Nats-Msg-Id`).
pub const HEADER_RECEIVED: &str = "Hep-Received";
/// How the agent sent the message to the edge.
pub const HEADER_TRANSPORT: &str = "Hep-Transport";
/// The agent's address.
pub const HEADER_PEER: &str = "Hep-Peer";
/// The edge listener's address.
pub const HEADER_LISTENER: &str = "Hep-Listener";

/// The spool record's layout version.
const RECORD_VERSION: u8 = 1;

/// One message as the edge publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Its partition.
    pub partition: u32,
    /// Its key (`Nats-Msg-Id`).
    pub key: u64,
    /// When the edge received it, us since the Unix epoch.
    pub received_usec: i64,
    /// How, and from where, the edge received it.
    pub transport: Transport,
    /// The agent.
    pub peer: SocketAddr,
    /// The edge's listener.
    pub listener: SocketAddr,
    /// The HEP bytes: as received, or encoded again when a callback changed the message.
    pub hep: Bytes,
}

/// Why a stream message or a spool record is not an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A header the edge always sets is missing or unreadable.
    #[error("header `{0}` is missing or not valid")]
    Header(&'static str),
    /// A spool record that is not one of this layout.
    #[error("spool record: {0}")]
    Record(&'static str),
}

/// The partition of `m` among `partitions` (see the [module docs](self#the-partition)).
///
/// ```
/// use hep_proto::HepMessage;
/// use hep_server::nats::partition_of;
/// let invite = HepMessage::builder()
///     .payload(&b"INVITE sip:b@x SIP/2.0\r\nCall-ID: 1-2@h\r\nCSeq: 1 INVITE\r\n\r\n"[..])
///     .build();
/// let bye = HepMessage::builder()
///     .payload(&b"BYE sip:b@x SIP/2.0\r\ni: 1-2@h\r\nCSeq: 2 BYE\r\n\r\n"[..])
///     .build();
/// let rtcp = HepMessage::builder().correlation_id(&b"1-2@h"[..]).payload(&b"{}"[..]).build();
/// assert_eq!(partition_of(&invite, 64), partition_of(&bye, 64));
/// assert_eq!(partition_of(&invite, 64), partition_of(&rtcp, 64), "RTCP goes with its call");
/// ```
pub fn partition_of(m: &hep_proto::HepMessage, partitions: u32) -> u32 {
    let call_id = SipSummary::parse(m.payload.bytes()).and_then(|s| s.call_id);
    let hash = match (call_id, &m.correlation_id) {
        (Some(id), _) => text_hash(id),
        (None, Some(c)) => text_hash(&String::from_utf8_lossy(c)),
        (None, None) => {
            // Both directions of a flow together: the smaller address first.
            let (a, b) = (m.src(), m.dst());
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            text_hash(&format!("{a:?}-{b:?}"))
        }
    };
    (hash as u64 % u64::from(partitions.max(1))) as u32
}

impl Envelope {
    /// The envelope of `m`, received by this edge at `received_usec` (unless it came
    /// through another edge, whose time it keeps); `None` when a message a callback
    /// changed cannot be encoded again (counted as failed by the caller).
    pub fn of(m: &Received, received_usec: i64, partitions: u32) -> Option<Self> {
        let hep = if m.modified {
            m.message.encode(HepVersion::V3).ok()?
        } else {
            m.wire.clone()
        };
        let received_usec = m.info.received_at.map_or(received_usec, usec_of);
        Some(Self {
            partition: partition_of(&m.message, partitions),
            key: delivery_key(&hep, received_usec, m.info.peer),
            received_usec,
            transport: m.info.transport,
            peer: m.info.peer,
            listener: m.info.listener,
            hep,
        })
    }

    /// `Nats-Msg-Id`.
    pub fn message_id(&self) -> String {
        format!("{:016x}", self.key)
    }

    /// The headers it is published with.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", self.message_id().as_str());
        h.insert(HEADER_RECEIVED, self.received_usec.to_string().as_str());
        h.insert(HEADER_TRANSPORT, self.transport.as_str());
        h.insert(HEADER_PEER, self.peer.to_string().as_str());
        h.insert(HEADER_LISTENER, self.listener.to_string().as_str());
        h
    }

    /// The receive info a consumer gives the message: the edge's.
    pub fn recv_info(&self) -> RecvInfo {
        let at = UNIX_EPOCH + Duration::from_micros(self.received_usec.max(0) as u64);
        RecvInfo::new(self.transport, self.peer, self.listener).with_received_at(at)
    }

    /// Reads a message a consumer got from the stream.
    ///
    /// # Errors
    /// A header the edge always sets is missing or unreadable.
    pub fn from_stream(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Self, EnvelopeError> {
        fn get<T: std::str::FromStr>(
            h: Option<&HeaderMap>,
            name: &'static str,
        ) -> Result<T, EnvelopeError> {
            h.and_then(|h| h.get(name))
                .and_then(|v| v.as_str().parse().ok())
                .ok_or(EnvelopeError::Header(name))
        }
        let received_usec: i64 = get(headers, HEADER_RECEIVED)?;
        let transport = headers
            .and_then(|h| h.get(HEADER_TRANSPORT))
            .and_then(|v| Transport::parse(v.as_str()))
            .ok_or(EnvelopeError::Header(HEADER_TRANSPORT))?;
        let peer: SocketAddr = get(headers, HEADER_PEER)?;
        let listener: SocketAddr = get(headers, HEADER_LISTENER)?;
        let key = headers
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|v| u64::from_str_radix(v.as_str(), 16).ok())
            .ok_or(EnvelopeError::Header("Nats-Msg-Id"))?;
        Ok(Self {
            partition: 0,
            key,
            received_usec,
            transport,
            peer,
            listener,
            hep: payload,
        })
    }

    /// The spool record: `version | partition u32 | key u64 | received i64 | transport
    /// u8 | peer | listener | HEP bytes`, addresses as a length byte and their text, all
    /// integers big-endian.
    pub fn to_record(&self) -> Bytes {
        let peer = self.peer.to_string();
        let listener = self.listener.to_string();
        let mut b = BytesMut::with_capacity(24 + peer.len() + listener.len() + self.hep.len());
        b.put_u8(RECORD_VERSION);
        b.put_u32(self.partition);
        b.put_u64(self.key);
        b.put_i64(self.received_usec);
        b.put_u8(match self.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
        });
        for a in [&peer, &listener] {
            b.put_u8(a.len() as u8);
            b.put_slice(a.as_bytes());
        }
        b.put_slice(&self.hep);
        b.freeze()
    }

    /// Reads a spool record back.
    ///
    /// # Errors
    /// A record of another layout, or cut short.
    pub fn from_record(mut r: Bytes) -> Result<Self, EnvelopeError> {
        const SHORT: EnvelopeError = EnvelopeError::Record("cut short");
        if r.remaining() < 22 {
            return Err(SHORT);
        }
        if r.get_u8() != RECORD_VERSION {
            return Err(EnvelopeError::Record("unknown layout version"));
        }
        let partition = r.get_u32();
        let key = r.get_u64();
        let received_usec = r.get_i64();
        let transport = match r.get_u8() {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => return Err(EnvelopeError::Record("unknown transport")),
        };
        let mut addr = || -> Result<SocketAddr, EnvelopeError> {
            if !r.has_remaining() {
                return Err(SHORT);
            }
            let n = usize::from(r.get_u8());
            if r.remaining() < n {
                return Err(SHORT);
            }
            let text = r.split_to(n);
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(EnvelopeError::Record("bad address"))
        };
        let peer = addr()?;
        let listener = addr()?;
        Ok(Self {
            partition,
            key,
            received_usec,
            transport,
            peer,
            listener,
            hep: r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            partition: 17,
            key: 0x0123_4567_89ab_cdef,
            received_usec: 1_795_651_200_123_456,
            transport: Transport::Tls,
            peer: "[2001:db8::1]:5060".parse().unwrap(),
            listener: "10.0.0.9:9061".parse().unwrap(),
            hep: Bytes::from_static(b"HEP3 bytes"),
        }
    }

    #[test]
    fn a_spool_record_reads_back_whole_and_a_damaged_one_is_refused() {
        let e = envelope();
        let record = e.to_record();
        assert_eq!(Envelope::from_record(record.clone()).unwrap(), e);
        for cut in [0, 10, 25, 30] {
            assert!(
                Envelope::from_record(record.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut other = record.to_vec();
        other[0] = 9;
        assert_eq!(
            Envelope::from_record(other.into()).unwrap_err(),
            EnvelopeError::Record("unknown layout version")
        );
    }

    #[test]
    fn the_headers_give_the_consumer_the_edges_reception() {
        let e = envelope();
        let back = Envelope::from_stream(Some(&e.headers()), e.hep.clone()).unwrap();
        assert_eq!(
            back,
            Envelope {
                partition: 0,
                ..e.clone()
            }
        );
        let info = back.recv_info();
        assert_eq!(info.peer, e.peer);
        assert_eq!(usec_of(info.received_at.unwrap()), e.received_usec);
        let mut h = e.headers();
        h.insert(HEADER_PEER, "not an address");
        assert_eq!(
            Envelope::from_stream(Some(&h), e.hep.clone()).unwrap_err(),
            EnvelopeError::Header(HEADER_PEER)
        );
        assert!(Envelope::from_stream(None, e.hep).is_err());
    }
}
