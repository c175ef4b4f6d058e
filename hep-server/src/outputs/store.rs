//! `store:DIR`: the output adapter of the capture store ([`crate::store`]).
//!
//! Two threads drain the queue. The rows thread takes messages off it and adds them,
//! each with the time it is taken as its receive time, to a [`Batch`] (the rows are
//! built there); the writer thread hands each batch to [`Store::write`], one transaction
//! per partition, while the next batch is being built. So the writer's thread, which
//! every message's insert goes through, does nothing else. At most two batches are out of
//! the queue (one built, one being written); until the writer records them they count as
//! queued.
//!
//! A batch is what arrived while the writer wrote the one before, up to `[store]
//! batch_size` messages (one commit for all of them): a message at a time when traffic is
//! light, so that it is searchable within milliseconds, large batches under load
//! ([`build_batches`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use anyhow::Context as _;
use tokio::runtime::Handle;
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::queue::{self, OutputStats, Queued};
use super::{Context, Opened, Output, Worker};
use crate::store::{Batch, Store, StoreStats};
use crate::telemetry::metrics::{Collect, Kind, Samples};
use crate::time::now_usec;

/// Opens the store in `dir` (creating it) with the `[store]` settings.
///
/// # Errors
/// The store cannot be opened (see [`Store::open`]).
pub(crate) fn open(dir: &Path, cx: &mut Context<'_>) -> anyhow::Result<Opened> {
    let name = cx.name;
    let stats = cx.counters.output(name, true);
    let store_stats = cx.counters.kind(name, || StoreStats::new(name));
    let store = Store::open(dir, cx.settings.store.clone(), store_stats)
        .with_context(|| format!("output `{name}`"))?;
    Ok(Opened::queued(stats, store))
}

impl Output for Store {
    /// Starts the writer and the rows thread; the writer's ends when the queue is drained
    /// after every sender of `queue` is gone, or after `close`; after the shutdown
    /// deadline abandoned the output, it counts nothing more and stops.
    fn start(
        self: Box<Self>,
        mut queue: Receiver<Queued>,
        stats: Arc<OutputStats>,
        close: CancellationToken,
    ) -> std::io::Result<Worker> {
        let (finished, finished_rx) = oneshot::channel::<()>();
        let runtime = Handle::current();
        let batch_size = self.config().batch_size.max(1);
        let batch = self.batch();
        // A rendezvous: a batch is handed over when the writer is done with the one before.
        let (built, to_write) = std::sync::mpsc::sync_channel::<Batch>(0);
        let name = stats.name().to_owned();
        std::thread::Builder::new()
            .name(format!("out {name}"))
            .spawn(move || {
                let _finished = finished;
                // Dropped before `_finished` (locals go in reverse order): the connections'
                // last checkpoint is done before the process may exit.
                let mut store = self;
                for batch in to_write {
                    let taken = batch.len();
                    let w = store.write(batch);
                    // A duplicate is one the store holds: delivered (its input may acknowledge it).
                    let recorded = stats.record_batch(
                        taken,
                        w.stored + w.duplicates,
                        &[("disk_low", w.disk_low)],
                    );
                    if !recorded {
                        return;
                    }
                }
            })?;
        // If this one cannot start, the writer sees no sender and ends.
        std::thread::Builder::new()
            .name(format!("rows {name}"))
            .spawn(move || {
                build_batches(&mut queue, &built, batch, batch_size, &close, &runtime);
            })?;
        Ok(Worker::Thread(finished_rx))
    }
}

/// The rows thread: takes messages off the queue into `batch`, handing it to the writer
/// as soon as it is free (`built` is a rendezvous), with what was queued by then (up to
/// `batch_size`).
///
/// So a batch is what arrived while the writer wrote the one before: one message at a
/// time when traffic is light (searchable within milliseconds), large batches when it
/// is heavy. A commit writes each page it changed, and an index's pages are changed all
/// over (keyed by hashes and users), so larger batches write fewer pages a message: the
/// batches grow with the load and with the indexes.
fn build_batches(
    rx: &mut Receiver<Queued>,
    built: &SyncSender<Batch>,
    mut batch: Batch,
    batch_size: usize,
    close: &CancellationToken,
    runtime: &Handle,
) {
    let mut closing = false;
    loop {
        let m = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) if !batch.is_empty() => {
                // Nothing more queued: the batch goes when the writer is free.
                if built.send(batch.take()).is_err() {
                    return; // The writer stopped: the deadline abandoned the output.
                }
                continue;
            }
            Err(_) => match queue::blocking_next(rx, close, runtime, &mut closing) {
                Some(m) => m,
                None => return,
            },
        };
        batch.add(&m, now_usec());
        let full = batch.len() >= batch_size as u64;
        if full || batch.len().is_multiple_of(HAND_OVER_EVERY) {
            let ready = batch.take();
            let handed = if full {
                built.send(ready).map_err(|_| ())
            } else {
                // The writer is free: the batch goes now; busy: it grows.
                built.try_send(ready).or_else(|e| match e {
                    TrySendError::Full(ready) => {
                        batch = ready;
                        Ok(())
                    }
                    TrySendError::Disconnected(_) => Err(()),
                })
            };
            if handed.is_err() {
                return;
            }
        }
    }
}

/// How often the rows thread looks whether the writer is free, in messages added.
const HAND_OVER_EVERY: u64 = 64;

impl Collect for StoreStats {
    fn collect(&self, out: &mut Samples) {
        let o = [("output", self.name())];
        out.declare(
            "hep_store_partitions",
            "Partition files in the store.",
            Kind::Gauge,
        );
        out.sample("hep_store_partitions", &o, self.partitions());
        out.declare(
            "hep_store_bytes",
            "Bytes the store's files take on disk (as of the last retention pass).",
            Kind::Gauge,
        );
        out.sample("hep_store_bytes", &o, self.bytes());
        out.declare(
            "hep_store_partitions_removed_total",
            "Partition files deleted by retention (age or size).",
            Kind::Counter,
        );
        out.sample("hep_store_partitions_removed_total", &o, self.removed());
        out.declare(
            "hep_store_clock_skew_total",
            "Messages stored whose capture time was further from their receive time than \
             [store] clock_skew_warn_secs (the agent's clock is off, or a capture is replayed).",
            Kind::Counter,
        );
        out.sample("hep_store_clock_skew_total", &o, self.clock_skewed());
        out.declare(
            "hep_store_duplicates_total",
            "Messages from a cluster's stream the store already held (redeliveries), not stored again.",
            Kind::Counter,
        );
        out.sample("hep_store_duplicates_total", &o, self.duplicates());
        out.declare(
            "hep_store_writing_seconds_total",
            "Seconds the store's writer thread spent in transactions (inserts and commits); \
             its rate is how busy the one thread every insert goes through is.",
            Kind::Counter,
        );
        out.sample_micros("hep_store_writing_seconds_total", &o, self.writing_micros());
        out.declare(
            "hep_store_checkpoint_wait_seconds_total",
            "Seconds the store's writer waited for WAL checkpoints before a transaction.",
            Kind::Counter,
        );
        out.sample_micros(
            "hep_store_checkpoint_wait_seconds_total",
            &o,
            self.checkpoint_wait_micros(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hep_proto::{HepMessage, HepVersion, ProtoType};
    use hep_transport::{Received, RecvInfo, Transport};

    use super::*;
    use crate::store::StoreConfig;
    use crate::testing::TempDir;

    fn invite(i: u32) -> Queued {
        let payload = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: queued-{i}\r\nCSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let message = HepMessage::builder()
            .src("10.0.0.1:5060".parse().expect("addr"))
            .dst("10.0.0.2:5060".parse().expect("addr"))
            .timestamp(1_795_687_200 + i, 0)
            .proto_type(ProtoType::Sip)
            .payload(payload.into_bytes())
            .build();
        let wire = message.encode(HepVersion::V3).expect("encodes");
        let at: SocketAddr = "127.0.0.1:5656".parse().expect("addr");
        Arc::new(Received::new(
            message,
            wire,
            RecvInfo::new(Transport::Tcp, at, at),
        ))
    }

    /// The rows thread over a queue of `queued` messages, with a writer that takes a
    /// batch only once the rows thread has taken all it will take into it (so that the
    /// writer is busy meanwhile): the sizes of the batches handed over.
    fn batches_of(queued: u32, batch_size: usize) -> Vec<u64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let (tx, mut rx) = tokio::sync::mpsc::channel(queued as usize);
        for i in 0..queued {
            tx.try_send(invite(i)).expect("room");
        }
        let (built, to_write) = std::sync::mpsc::sync_channel(0);
        let dir = TempDir::new("store-plan");
        let config = StoreConfig {
            max_age_hours: 0,
            max_size_mb: 0,
            min_free_mb: 0,
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), config, Arc::new(StoreStats::new("store:test")))
            .expect("opens");
        let batch = store.batch();
        let close = CancellationToken::new();
        let handle = runtime.handle().clone();
        let rows = std::thread::spawn(move || {
            build_batches(&mut rx, &built, batch, batch_size, &close, &handle);
        });
        let mut sizes = Vec::new();
        let mut left = queued as usize;
        while left > 0 {
            // The rows thread takes up to a batch off the queue, then waits for the writer.
            let expect_left = left.saturating_sub(batch_size);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while tx.max_capacity() - tx.capacity() > expect_left {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the rows thread is stuck"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let batch: Batch = to_write.recv().expect("a batch");
            sizes.push(batch.len());
            left -= batch.len() as usize;
        }
        drop(tx); // The queue closes: the rows thread ends.
        rows.join().expect("the rows thread");
        assert!(to_write.recv().is_err(), "no batch after the last message");
        sizes
    }

    #[test]
    fn a_batch_is_what_was_queued_while_the_writer_was_busy_up_to_the_batch_size() {
        assert_eq!(
            batches_of(300, 1_000),
            [300],
            "all that was queued, at once"
        );
        assert_eq!(
            batches_of(300, 128),
            [128, 128, 44],
            "at most the batch size"
        );
        assert_eq!(batches_of(1, 128), [1], "a lone message goes on its own");
    }
}
