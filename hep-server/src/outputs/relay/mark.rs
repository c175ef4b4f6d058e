//! The mark a relay adds to each message it forwards, so that a relay loop is seen and
//! counted instead of amplified.
//!
//! A relay whose messages come back to it (its own listener, or a collector that relays
//! to it again) would forward each of them again, for ever: 5 messages became 777,205 in
//! 2.5 s. So every `relay:` output (HEPv3) appends one chunk to what it sends, carrying
//! this process's instance id and a hop count, and the callback chain drops
//! (`LoopGuard`, counted as `hep_dropped_total{stage="relay_loop",reason}`) a message
//! that arrives carrying:
//!
//! - our own mark (`reason="loop"`): it went out through one of our relays and came
//!   back; it was delivered to our outputs the first time;
//! - [`MAX_HOPS`] hops or more (`reason="hop_limit"`): a loop between other collectors,
//!   or a chain longer than any real deployment has.
//!
//! The chunk (wire layout, big-endian):
//!
//! ```text
//! vendor 0x4852 ("HR") | type 0x524d ("RM") | length 15 | instance id u64 | hop u8
//! ```
//!
//! A vendor chunk, so that receivers that know the vendor id leave it alone (Kamailio
//! skips vendor chunks, OpenSIPS keeps them in its chunk list), with a type id far from
//! the spec's generic ones (0x0001 to 0x0029, and OpenSIPS's 0x0065): heplify-server
//! ignores the vendor id and would take a type it knows for a generic field.
//! hep-server keeps it, like every chunk it does not interpret (`chunks` in the JSON
//! record). The instance id is random per process; the hop count is one more than the
//! highest the message already carried (or than the number of marks). Marks of earlier
//! relays stay: a message that went A -> B -> A is recognised by A.
//!
//! A relay appends the chunk to the bytes it forwards (and fixes the total length): one
//! copy of the message, no re-encoding. HEPv1/v2 (`;version=1|2`) cannot carry it: such
//! relays are unmarked. A message within 15 bytes of the 65,535-byte HEP3 maximum is
//! forwarded unmarked.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut as _, Bytes, BytesMut};
use hep_callbacks::{HepCallback, Verdict};
use hep_proto::{Chunk, EncodeError, HepMessage, HepVersion};
use hep_transport::Received;

use crate::formats::hep::wire_bytes;

/// Vendor id of the mark: `HR`.
pub const MARK_VENDOR: u16 = 0x4852;
/// Chunk type of the mark: `RM`.
pub const MARK_TYPE: u16 = 0x524d;
/// Length of the mark's value: instance id (8) and hop count (1).
const MARK_DATA_LEN: usize = 9;
/// The mark's length on the wire, header included.
/// Bytes the mark adds to a relayed HEPv3 message (a chunk header and its data).
pub const MARK_LEN: usize = 6 + MARK_DATA_LEN;
/// A message that arrives having been relayed this many times is dropped
/// (`reason="hop_limit"`).
pub const MAX_HOPS: u8 = 8;
/// At most one warning about loops per this much time.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Bytes a relay reserves at once for marked messages: one allocation for many.
const BUFFER: usize = 64 * 1024;

/// This process's instance id, written in the marks of its relays: random, the same for
/// the whole run (reloads included).
pub fn instance_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        // RandomState's keys come from the operating system's random source.
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    })
}

/// The marks a message carries: `(instance id, hop)` of each.
fn marks(msg: &HepMessage) -> impl Iterator<Item = (u64, u8)> + '_ {
    msg.chunks.iter().filter_map(|c| {
        if c.vendor != MARK_VENDOR || c.chunk_type != MARK_TYPE {
            return None;
        }
        let [id @ .., hop] = <[u8; MARK_DATA_LEN]>::try_from(&c.data[..]).ok()?;
        Some((u64::from_be_bytes(id), hop))
    })
}

/// How many times a message was relayed: the highest hop count of its marks, or their
/// number if that is more.
fn hops(msg: &HepMessage) -> u8 {
    let (mut highest, mut count) = (0u8, 0usize);
    for (_, hop) in marks(msg) {
        highest = highest.max(hop);
        count += 1;
    }
    highest.max(u8::try_from(count).unwrap_or(u8::MAX))
}

/// The mark chunk a relay of instance `id` adds to a message relayed `hop` times
/// (counting this one).
pub fn mark_chunk(id: u64, hop: u8) -> Chunk {
    let mut data = Vec::with_capacity(MARK_DATA_LEN);
    data.extend_from_slice(&id.to_be_bytes());
    data.push(hop);
    Chunk::new(MARK_VENDOR, MARK_TYPE, data)
}

/// Drops messages that carry this instance's relay mark (`loop`) or too many marks
/// (`hop_limit`); see the [module docs](self).
#[derive(Debug)]
pub(crate) struct LoopGuard {
    id: u64,
    start: Instant,
    /// When the last warning was logged, ms after `start`; `u64::MAX` before the first.
    warned_at: AtomicU64,
    /// Drops since the last warning.
    unwarned: AtomicU64,
}

impl Default for LoopGuard {
    /// The guard of this process's [`instance_id`].
    fn default() -> Self {
        Self::with_id(instance_id())
    }
}

impl LoopGuard {
    fn with_id(id: u64) -> Self {
        Self {
            id,
            start: Instant::now(),
            warned_at: AtomicU64::new(u64::MAX),
            unwarned: AtomicU64::new(0),
        }
    }

    fn reject(&self, r: &Received, reason: &'static str, hops: u8) -> Verdict {
        self.unwarned.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.warned_at.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let dropped = self.unwarned.swap(0, Ordering::Relaxed);
            tracing::warn!(
                reason,
                peer = %r.info.peer,
                hops,
                dropped,
                "relay loop: dropping messages that were relayed back here (a relay whose \
                 destination sends them on to this collector); hep_dropped_total\
                 {{stage=\"relay_loop\"}} counts them"
            );
        }
        Verdict::Reject(reason)
    }
}

impl HepCallback for LoopGuard {
    fn call(&self, r: &mut Received) -> Verdict {
        // Most messages carry no chunk beyond the fields.
        if r.message.chunks.is_empty() {
            return Verdict::Continue;
        }
        if marks(&r.message).any(|(id, _)| id == self.id) {
            let hops = hops(&r.message);
            return self.reject(r, "loop", hops);
        }
        let hops = hops(&r.message);
        if hops >= MAX_HOPS {
            return self.reject(r, "hop_limit", hops);
        }
        Verdict::Continue
    }

    fn name(&self) -> &'static str {
        "relay_loop"
    }

    fn reasons(&self) -> &'static [&'static str] {
        &["loop", "hop_limit"]
    }
}

/// What a relay sends for each message: the received bytes when nothing changed the
/// message and the destination speaks its version, else the message encoded again; for
/// HEPv3, with this instance's mark appended.
#[derive(Debug)]
pub(crate) struct RelayEncoder {
    version: HepVersion,
    id: u64,
    /// Where marked messages are written; each is split off as its own `Bytes`.
    buf: BytesMut,
}

impl RelayEncoder {
    /// The encoder of a relay to a destination speaking `version`.
    pub(crate) fn new(version: HepVersion) -> Self {
        Self::with_id(version, instance_id())
    }

    fn with_id(version: HepVersion, id: u64) -> Self {
        Self {
            version,
            id,
            buf: BytesMut::new(),
        }
    }

    /// The bytes to send for `m`.
    ///
    /// # Errors
    /// A changed message that cannot be encoded in the destination's version.
    pub(crate) fn encode(&mut self, m: &Received) -> Result<Bytes, EncodeError> {
        let frame = wire_bytes(m, self.version)?;
        if self.version != HepVersion::V3 {
            return Ok(frame);
        }
        let hop = hops(&m.message).saturating_add(1);
        Ok(self.marked(&frame, hop).unwrap_or(frame))
    }

    /// `frame` (HEPv3) with the mark appended and its total length fixed; `None` when
    /// the mark does not fit (or `frame` is not HEPv3).
    fn marked(&mut self, frame: &[u8], hop: u8) -> Option<Bytes> {
        let total = usize::from(u16::from_be_bytes([*frame.get(4)?, *frame.get(5)?]));
        let body = frame.get(6..total)?;
        let new_total = u16::try_from(total + MARK_LEN).ok()?;
        if self.buf.capacity() < total + MARK_LEN {
            self.buf.reserve(BUFFER.max(total + MARK_LEN));
        }
        self.buf.put_slice(&frame[..4]);
        self.buf.put_u16(new_total);
        self.buf.put_slice(body);
        self.buf.put_u16(MARK_VENDOR);
        self.buf.put_u16(MARK_TYPE);
        self.buf.put_u16(MARK_LEN as u16);
        self.buf.put_u64(self.id);
        self.buf.put_u8(hop);
        Some(self.buf.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use hep_proto::ProtoType;
    use hep_transport::{RecvInfo, Transport};

    use super::*;

    fn message() -> HepMessage {
        HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .timestamp(1_700_000_000, 1)
            .proto_type(ProtoType::Sip)
            .capture_id(2001)
            .payload("OPTIONS sip:x SIP/2.0\r\n\r\n")
            .build()
    }

    fn received(msg: &HepMessage) -> Received {
        let wire = msg.encode(HepVersion::V3).unwrap();
        let at = "127.0.0.1:9060".parse().unwrap();
        Received::new(
            HepMessage::decode(wire.clone()).unwrap(),
            wire,
            RecvInfo::new(Transport::Udp, at, at),
        )
    }

    /// `bytes` as the next collector receives them.
    fn arrive(bytes: Bytes) -> Received {
        let at = "127.0.0.1:9061".parse().unwrap();
        Received::new(
            HepMessage::decode(bytes.clone()).unwrap(),
            bytes,
            RecvInfo::new(Transport::Tcp, at, at),
        )
    }

    #[test]
    fn a_relay_appends_its_mark_to_the_received_bytes() {
        let r = received(&message());
        let mut relay = RelayEncoder::with_id(HepVersion::V3, 0x0102_0304_0506_0708);
        let sent = relay.encode(&r).unwrap();
        // The received bytes, then the mark; the total length covers both.
        assert_eq!(&sent[6..r.wire.len()], &r.wire[6..]);
        assert_eq!(
            &sent[r.wire.len()..],
            b"HRRM\x00\x0f\x01\x02\x03\x04\x05\x06\x07\x08\x01"
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([sent[4], sent[5]])),
            sent.len()
        );
        // Everything else decodes as before.
        let back = HepMessage::decode(sent).unwrap();
        assert_eq!(back.chunks, [mark_chunk(0x0102_0304_0506_0708, 1)]);
        assert_eq!(
            HepMessage {
                chunks: Vec::new(),
                ..back
            },
            r.message
        );
    }

    #[test]
    fn a_changed_message_is_encoded_again_and_marked() {
        let mut r = received(&message());
        r.message_mut().capture_id = Some(7);
        let sent = RelayEncoder::with_id(HepVersion::V3, 9).encode(&r).unwrap();
        let back = HepMessage::decode(sent).unwrap();
        assert_eq!(back.capture_id, Some(7));
        assert_eq!(back.chunks, [mark_chunk(9, 1)]);
        // HEPv2 has no chunks: sent unmarked.
        let v2 = RelayEncoder::with_id(HepVersion::V2, 9).encode(&r).unwrap();
        assert_eq!(
            HepMessage::decode(v2).unwrap().version,
            Some(HepVersion::V2)
        );
    }

    #[test]
    fn a_message_that_comes_back_is_dropped_as_a_loop() {
        let (a, b) = (LoopGuard::with_id(1), LoopGuard::with_id(2));
        let mut from_agent = received(&message());
        assert_eq!(a.call(&mut from_agent), Verdict::Continue);
        // A relays to B: B takes it, and relays it back to A, which drops it.
        let mut at_b = arrive(
            RelayEncoder::with_id(HepVersion::V3, 1)
                .encode(&from_agent)
                .unwrap(),
        );
        assert_eq!(b.call(&mut at_b), Verdict::Continue);
        let mut back_at_a = arrive(
            RelayEncoder::with_id(HepVersion::V3, 2)
                .encode(&at_b)
                .unwrap(),
        );
        assert_eq!(
            marks(&back_at_a.message).collect::<Vec<_>>(),
            [(1, 1), (2, 2)]
        );
        assert_eq!(a.call(&mut back_at_a), Verdict::Reject("loop"));
        // The same through a collector that re-encodes (a rewrite): the marks stay.
        at_b.message_mut().node_name = Some("b".into());
        let mut back_at_a = arrive(
            RelayEncoder::with_id(HepVersion::V3, 2)
                .encode(&at_b)
                .unwrap(),
        );
        assert_eq!(a.call(&mut back_at_a), Verdict::Reject("loop"));
    }

    #[test]
    fn a_message_relayed_max_hops_times_is_dropped() {
        let guard = LoopGuard::with_id(0);
        let mut r = received(&message());
        for id in 1..=u64::from(MAX_HOPS) {
            assert_eq!(
                guard.call(&mut r),
                Verdict::Continue,
                "after {} hops",
                id - 1
            );
            r = arrive(
                RelayEncoder::with_id(HepVersion::V3, id)
                    .encode(&r)
                    .unwrap(),
            );
        }
        assert_eq!(hops(&r.message), MAX_HOPS);
        assert_eq!(guard.call(&mut r), Verdict::Reject("hop_limit"));
        // A single mark claiming as many hops counts the same.
        let mut msg = message();
        msg.chunks.push(mark_chunk(5, MAX_HOPS));
        assert_eq!(
            guard.call(&mut received(&msg)),
            Verdict::Reject("hop_limit")
        );
        // A chunk of our vendor and type with another length is not a mark.
        let mut msg = message();
        msg.chunks
            .push(Chunk::new(MARK_VENDOR, MARK_TYPE, vec![0; 4]));
        assert_eq!(guard.call(&mut received(&msg)), Verdict::Continue);
    }

    #[test]
    fn a_message_too_long_for_the_mark_is_sent_unmarked() {
        let mut msg = message();
        msg.payload = hep_proto::Payload::Plain(Bytes::new());
        let fields = msg.encode(HepVersion::V3).unwrap().len();
        // 5 bytes short of the maximum.
        msg.payload = hep_proto::Payload::Plain(vec![b'x'; 65_535 - 5 - fields].into());
        assert_eq!(msg.encode(HepVersion::V3).unwrap().len(), 65_530);
        let r = received(&msg);
        assert_eq!(
            RelayEncoder::with_id(HepVersion::V3, 1).encode(&r).unwrap(),
            r.wire
        );
    }

    #[test]
    fn marked_messages_share_the_relays_buffer_but_not_their_bytes() {
        let mut relay = RelayEncoder::with_id(HepVersion::V3, 1);
        let r = received(&message());
        let first = relay.encode(&r).unwrap();
        let second = relay.encode(&r).unwrap();
        assert_eq!(first, second);
        assert_ne!(first.as_ptr(), second.as_ptr());
    }

    #[test]
    fn the_instance_id_is_the_same_for_the_whole_run() {
        assert_eq!(instance_id(), instance_id());
    }
}
