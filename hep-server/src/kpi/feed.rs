//! The fan-out's hand-over to the tracker ([`KpiFeed`]): what the tracker reads of each
//! message is copied into a batch, and batches, not messages, cross to its thread.
//!
//! # Why batches of copies
//! The first feed sent every message as an `Arc<Received>` through a bounded channel of
//! 65,536. Under callgrind (docs/KPI.md, "Cost") the listener then paid, per message, an
//! allocation for the `Arc`, a channel send, and the freeing of all of it later on the
//! tracker's thread; and the messages parked in the queue held on to the listener's
//! 64 KiB read buffers, so that every read went to a fresh buffer instead of the one
//! the frame codec reclaims. Now the listener copies the few fields and the payload
//! the tracker reads (about 600 bytes of a SIP message, already in its cache) into the
//! batch under way, and hands the batch over when it is full: one channel operation,
//! and at most one wake-up of the tracker, per [`BATCH_MESSAGES`] messages. Messages the
//! tracker never reads (neither SIP nor a QoS report) are not copied.
//!
//! # Order and delay
//! There is one batch under way for all listeners, behind a lock, so the tracker reads
//! the messages in the order the listeners took them, as it did through one channel: a
//! call's request and its answer that came in on two connections are not swapped. The
//! lock is taken once per message and held for the copy.
//!
//! A batch that does not fill is taken by the tracker itself after [`GATHER_WAIT`]
//! without a full one (`FeedReader::next`): at low rates a message reaches the tracker
//! within that delay, at high rates within the time a batch takes to fill.
//!
//! # Bounds
//! At most [`QUEUED_BATCHES`] full batches wait for the tracker ([`FEED_CAPACITY`]
//! messages); a batch that finds them all taken is emptied and its messages counted in
//! `hep_sip_kpi_lagged_total`: the fan-out never waits. While they are all taken, a
//! message is counted there at once, not copied: a tracker that cannot keep up costs the
//! listeners a counter, not the copies it will not read. A batch holds at most
//! [`BATCH_MESSAGES`] messages and about [`BATCH_BYTES`] of their bytes (it is handed
//! over once past that), so the queue holds at most 64 MiB, and about 40 MiB of SIP
//! messages of 600 bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use hep_proto::{HepMessage, ProtoType};

use crate::sync::lock;

/// Messages in a full batch: the tracker is handed (and woken for) this many at once.
pub(crate) const BATCH_MESSAGES: usize = 256;

/// Bytes (payloads and correlation ids) past which a batch is handed over, whatever its
/// count: a stream of large messages does not make batches of 16 MiB.
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

/// Messages waiting for the tracker, at most: about a third of a second at 200,000
/// messages a second, room for a scrape or an expiry sweep to pause the tracker.
pub const FEED_CAPACITY: usize = 65_536;

/// Full batches waiting for the tracker, at most.
pub(crate) const QUEUED_BATCHES: usize = FEED_CAPACITY / BATCH_MESSAGES;

/// How long the tracker waits for a full batch before it takes the one under way: the
/// longest a message waits in a batch that does not fill.
pub(crate) const GATHER_WAIT: Duration = Duration::from_millis(10);

/// Emptied batches kept for reuse, so that a steady stream allocates none.
const SPARE_BATCHES: usize = 4;

/// A spare batch whose bytes grew past this is freed, not kept.
const SPARE_MAX_BYTES: usize = 2 * BATCH_BYTES;

/// Room the bytes of a new batch start with: 256 SIP messages of 512 bytes.
const NEW_BATCH_BYTES: usize = BATCH_MESSAGES * 512;

/// One message as the tracker reads it: a copy from the live feed, or a stored message
/// ([`Seen::of`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub(crate) proto_type: Option<ProtoType>,
    pub(crate) capture_id: Option<u32>,
    pub(crate) src: Option<SocketAddr>,
    pub(crate) dst: Option<SocketAddr>,
    pub(crate) ts_sec: Option<u32>,
    pub(crate) ts_usec: Option<u32>,
    pub(crate) correlation_id: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

impl<'a> Seen<'a> {
    /// What the tracker reads of `msg`.
    pub(crate) fn of(msg: &'a HepMessage) -> Self {
        Self {
            proto_type: msg.proto_type,
            capture_id: msg.capture_id,
            src: msg.src(),
            dst: msg.dst(),
            ts_sec: msg.ts_sec,
            ts_usec: msg.ts_usec,
            correlation_id: msg.correlation_id.as_deref(),
            payload: msg.payload.bytes(),
        }
    }

    /// The capture time, µs since the epoch, if the message has one.
    pub(crate) fn capture_us(&self) -> Option<u64> {
        self.ts_sec
            .map(|s| u64::from(s) * 1_000_000 + u64::from(self.ts_usec.unwrap_or(0)))
    }
}

/// Whether the tracker reads messages of this type: SIP (HEPv1 and v2 carry no type,
/// their payload is SIP or does not parse as SIP) and the QoS reports.
pub(crate) fn tracked_type(t: Option<ProtoType>) -> bool {
    matches!(
        t,
        None | Some(ProtoType::Sip | ProtoType::Rtcp | ProtoType::MosShort)
    )
}

/// A [`Seen`] without its bytes, which follow each other in [`Batch::bytes`]. The
/// message's own fields, copied as they are (the addresses are put together by the
/// tracker): the fan-out's part is a copy and no more.
#[derive(Debug, Clone, Copy)]
struct Fields {
    src_ip: Option<IpAddr>,
    dst_ip: Option<IpAddr>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    proto_type: Option<ProtoType>,
    capture_id: Option<u32>,
    ts_sec: Option<u32>,
    ts_usec: Option<u32>,
    /// The correlation id's length, if there is one; its bytes come first.
    correlation_len: Option<u32>,
    payload_len: u32,
}

/// Messages copied for the tracker, in the order they were taken.
#[derive(Debug)]
pub(crate) struct Batch {
    fields: Vec<Fields>,
    /// Each message's correlation id then its payload, one message after the other.
    bytes: Vec<u8>,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            fields: Vec::with_capacity(BATCH_MESSAGES),
            bytes: Vec::with_capacity(NEW_BATCH_BYTES),
        }
    }
}

impl Batch {
    /// Copies what the tracker reads of `msg`.
    #[inline]
    fn push(&mut self, msg: &HepMessage) {
        let correlation = msg.correlation_id.as_deref();
        let payload = msg.payload.bytes();
        if let Some(c) = correlation {
            self.bytes.extend_from_slice(c);
        }
        self.bytes.extend_from_slice(payload);
        self.fields.push(Fields {
            src_ip: msg.src_ip,
            dst_ip: msg.dst_ip,
            src_port: msg.src_port,
            dst_port: msg.dst_port,
            proto_type: msg.proto_type,
            capture_id: msg.capture_id,
            ts_sec: msg.ts_sec,
            ts_usec: msg.ts_usec,
            // A HEP chunk is at most 65,535 bytes, a v1/v2 payload a datagram.
            correlation_len: correlation.map(|c| u32::try_from(c.len()).unwrap_or(u32::MAX)),
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        });
    }

    /// Messages in the batch.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn is_full(&self) -> bool {
        self.fields.len() >= BATCH_MESSAGES || self.bytes.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.fields.clear();
        self.bytes.clear();
    }

    /// The messages, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Seen<'_>> {
        let mut at = 0;
        self.fields.iter().map(move |f| {
            let mut take = |len: u32| {
                let start = at;
                at += len as usize;
                &self.bytes[start..at]
            };
            let correlation_id = f.correlation_len.map(&mut take);
            let payload = take(f.payload_len);
            // As `HepMessage::src` and `dst` put them together.
            let addr = |ip: Option<IpAddr>, port: Option<u16>| {
                Some(SocketAddr::new(ip?, port.unwrap_or(0)))
            };
            Seen {
                proto_type: f.proto_type,
                capture_id: f.capture_id,
                src: addr(f.src_ip, f.src_port),
                dst: addr(f.dst_ip, f.dst_port),
                ts_sec: f.ts_sec,
                ts_usec: f.ts_usec,
                correlation_id,
                payload,
            }
        })
    }
}

/// The fan-out's end of the tracker's feed: [`offer`](Self::offer) never waits; messages
/// the full queue cannot take are counted as the tracker's lag. Its clones share one
/// batch under way (the module `kpi::feed` says why).
#[derive(Debug, Clone)]
pub struct KpiFeed {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    gathering: Mutex<Gathering>,
    /// Messages the tracker missed (the queue was full).
    lagged: Arc<AtomicU64>,
    /// Full batches in the queue, and how many it holds.
    queued: AtomicUsize,
    capacity: usize,
}

impl Shared {
    /// A batch has left the queue for the tracker.
    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The batch under way, and where it goes. Batches are sent only under this lock, so
/// that the tracker can tell whether the batch under way is the oldest it has not read.
#[derive(Debug)]
struct Gathering {
    batch: Batch,
    spares: Vec<Batch>,
    tx: mpsc::SyncSender<Batch>,
}

impl Gathering {
    /// Sends the batch under way and starts another; a batch the queue cannot take is
    /// counted in `lagged` and emptied for reuse.
    fn hand_over(&mut self, shared: &Shared) {
        let next = self.spares.pop().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        // Counted before the send: the tracker may take it at once.
        shared.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::TrySendError::Full(mut b) | mpsc::TrySendError::Disconnected(mut b)) =
            self.tx.try_send(full)
        {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            shared.lagged.fetch_add(b.len() as u64, Ordering::Relaxed);
            b.clear();
            self.keep_spare(b);
        }
    }

    fn keep_spare(&mut self, b: Batch) {
        if self.spares.len() < SPARE_BATCHES && b.bytes.capacity() <= SPARE_MAX_BYTES {
            self.spares.push(b);
        }
    }
}

impl KpiFeed {
    /// A feed of at most `queued` full batches, and its reading end for the tracker.
    pub(crate) fn channel(queued: usize) -> (Self, FeedReader) {
        let (tx, rx) = mpsc::sync_channel(queued);
        let shared = Arc::new(Shared {
            gathering: Mutex::new(Gathering {
                batch: Batch::default(),
                spares: Vec::new(),
                tx,
            }),
            lagged: Arc::new(AtomicU64::new(0)),
            queued: AtomicUsize::new(0),
            capacity: queued,
        });
        (
            Self {
                shared: Arc::clone(&shared),
            },
            FeedReader { rx, shared },
        )
    }

    /// The counter of messages the tracker missed.
    pub(crate) fn lagged(&self) -> &Arc<AtomicU64> {
        &self.shared.lagged
    }

    /// Offers one message to the tracker: copied if the tracker reads its type, counted
    /// as lagged while the queue is full.
    #[inline]
    pub fn offer(&self, msg: &HepMessage) {
        if !tracked_type(msg.proto_type) {
            return;
        }
        let shared = &*self.shared;
        if shared.queued.load(Ordering::Relaxed) >= shared.capacity {
            shared.lagged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut g = lock(&shared.gathering);
        g.batch.push(msg);
        if g.batch.is_full() {
            g.hand_over(shared);
        }
    }
}

/// The tracker's end of the feed.
#[derive(Debug)]
pub(crate) struct FeedReader {
    rx: mpsc::Receiver<Batch>,
    shared: Arc<Shared>,
}

impl FeedReader {
    /// The oldest batch not read yet: a full one as soon as there is one, else, after
    /// `wait`, the one under way; `None` when nothing came.
    pub(crate) fn next(&self, wait: Duration) -> Option<Batch> {
        match self.rx.recv_timeout(wait) {
            Ok(b) => {
                self.shared.taken();
                Some(b)
            }
            Err(_) => self.take_gathered(),
        }
    }

    /// The oldest batch not read yet, without waiting (the one under way last).
    pub(crate) fn take_gathered(&self) -> Option<Batch> {
        let mut g = lock(&self.shared.gathering);
        // A batch handed over since the wait ended is older than the one under way.
        if let Ok(b) = self.rx.try_recv() {
            self.shared.taken();
            return Some(b);
        }
        if g.batch.is_empty() {
            return None;
        }
        let next = g.spares.pop().unwrap_or_default();
        Some(std::mem::replace(&mut g.batch, next))
    }

    /// Gives a read batch back for reuse.
    pub(crate) fn recycle(&self, mut batch: Batch) {
        batch.clear();
        lock(&self.shared.gathering).keep_spare(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(i: usize, correlation: Option<&str>) -> HepMessage {
        let b = HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .timestamp(1_800_000_000, u32::try_from(i).unwrap())
            .proto_type(ProtoType::Sip)
            .payload(format!("OPTIONS sip:{i}@h SIP/2.0\r\n\r\n"));
        match correlation {
            Some(c) => b.correlation_id(c.to_owned()).build(),
            None => b.build(),
        }
    }

    fn payloads(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|s| String::from_utf8(s.payload.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_gives_back_each_message_as_copied_in_order() {
        let (feed, reader) = KpiFeed::channel(4);
        feed.offer(&sip(1, Some("corr-1")));
        feed.offer(&sip(2, None));
        let b = reader.next(Duration::ZERO).expect("the batch under way");
        let seen: Vec<Seen<'_>> = b.iter().collect();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].correlation_id, Some(&b"corr-1"[..]));
        assert_eq!(seen[0].payload, b"OPTIONS sip:1@h SIP/2.0\r\n\r\n");
        assert_eq!(seen[0].capture_us(), Some(1_800_000_000_000_001));
        assert_eq!(seen[1].correlation_id, None);
        assert_eq!(seen[1].payload, b"OPTIONS sip:2@h SIP/2.0\r\n\r\n");
        assert_eq!(seen[1].src, Some("10.0.0.1:5060".parse().unwrap()));
        assert_eq!(seen[1].dst, Some("10.0.0.2:5060".parse().unwrap()));
        assert!(reader.next(Duration::ZERO).is_none(), "nothing left");
    }

    #[test]
    fn full_batches_come_first_and_in_order_then_the_one_under_way() {
        let (feed, reader) = KpiFeed::channel(4);
        for i in 0..BATCH_MESSAGES * 2 + 3 {
            feed.offer(&sip(i, None));
        }
        let mut order = Vec::new();
        while let Some(b) = reader.next(Duration::ZERO) {
            order.extend(payloads(&b));
            reader.recycle(b);
        }
        let expected: Vec<String> = (0..BATCH_MESSAGES * 2 + 3)
            .map(|i| format!("OPTIONS sip:{i}@h SIP/2.0\r\n\r\n"))
            .collect();
        assert_eq!(order, expected);
        assert_eq!(feed.lagged().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn while_the_queue_is_full_messages_are_counted_as_lagged_not_copied() {
        let (feed, reader) = KpiFeed::channel(1);
        // One full batch fills the queue; the next 300 find it full.
        for i in 0..BATCH_MESSAGES + 300 {
            feed.offer(&sip(i, None));
        }
        assert_eq!(feed.lagged().load(Ordering::Relaxed), 300);
        let first = reader.next(Duration::ZERO).unwrap();
        assert_eq!(first.len(), BATCH_MESSAGES);
        assert_eq!(payloads(&first)[0], "OPTIONS sip:0@h SIP/2.0\r\n\r\n");
        assert!(reader.next(Duration::ZERO).is_none(), "none was copied");
        // Taken: the queue has room, and the next messages are copied again.
        let resumed = BATCH_MESSAGES + 300;
        for i in resumed..resumed + 5 {
            feed.offer(&sip(i, None));
        }
        let rest = reader.next(Duration::ZERO).unwrap();
        assert_eq!(rest.len(), 5);
        assert_eq!(
            payloads(&rest)[0],
            format!("OPTIONS sip:{resumed}@h SIP/2.0\r\n\r\n")
        );
        assert_eq!(feed.lagged().load(Ordering::Relaxed), 300);
    }

    #[test]
    fn messages_the_tracker_does_not_read_are_not_copied_nor_counted() {
        let (feed, reader) = KpiFeed::channel(1);
        let log = HepMessage::builder()
            .proto_type(ProtoType::Other(100))
            .payload("a log line")
            .build();
        feed.offer(&log);
        let rtcp = HepMessage::builder()
            .proto_type(ProtoType::Rtcp)
            .payload("{}")
            .build();
        feed.offer(&rtcp);
        let b = reader.next(Duration::ZERO).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b.iter().next().unwrap().proto_type, Some(ProtoType::Rtcp));
    }

    #[test]
    fn large_messages_close_a_batch_by_its_bytes() {
        let (feed, reader) = KpiFeed::channel(4);
        let big = HepMessage::builder()
            .proto_type(ProtoType::Sip)
            .payload(vec![b'x'; 60_000])
            .build();
        for _ in 0..5 {
            feed.offer(&big);
        }
        // 5 x 60,000 bytes pass 256 KiB: the fifth closes the first batch.
        let b = reader.next(Duration::ZERO).unwrap();
        assert_eq!(b.len(), 5);
        assert!(reader.rx.try_recv().is_err());
    }
}
