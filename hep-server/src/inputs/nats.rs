//! `nats:URL[,URL...];stream=HEP;subject=hep;partitions=A-B[;positions=FILE]`: a
//! cluster's consumer. Each partition of the range is read through an ephemeral consumer
//! of its own, made to start where this node's outputs left off; its messages go
//! through the same callback stack and outputs as a listener's.
//!
//! # Where it reads from
//! The node keeps its own position in each partition ([`Positions`]: the last stream
//! sequence its outputs have, saved every second to the positions file), not the
//! servers: nats-server 2.9's durable consumers skipped messages after a leader change
//! (see [`crate::nats::positions`]). A partition's consumer lives on one server, in
//! memory, with no acknowledgements; when it is lost (its server down, two idle
//! heartbeats missed), skips a delivery, or fails, a new one is made from the sequence
//! after the last message read, and at start from the one after the saved position. The
//! stream keeps every message `max_age`, read or not, so one that was not read is
//! still there to read.
//!
//! # When a message counts as done
//! After the stack took a message, the input notes each running output's mark: what the
//! output has taken in so far (queued and finished; read in that order, so the mark is
//! never early). Once an output has finished (delivered, or dropped and counted) as many
//! as its mark, it has this message too, as its queue is first in, first out. Messages
//! are done in the order they came, and the position moves past them. So a `kill -9`
//! loses nothing the stream holds: what came after the saved position is read again, and
//! the store keeps one copy of each message (it skips a message whose key it holds,
//! counted in `hep_store_duplicates_total`).
//!
//! A message without the edge's headers, or whose bytes are not HEP, is passed over and
//! counted (`hep_dropped_total{stage="input",reason="nats_invalid"}`): it could never be
//! read.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull, stream};
use futures_util::StreamExt as _;
use hep_proto::{HepMessage, Received};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt as _};

use crate::nats::positions::Positions;
use crate::nats::stats::ConsumerStats;
use crate::nats::stream as nats_stream;
use crate::nats::{Envelope, NatsInputSpec};
use crate::outputs::progress::{Marks, Progress};
use crate::sync::lock;

/// Messages asked for in one pull.
const PULL_BATCH: usize = 256;
/// How often a server with a pull of ours waiting says it is there; two missed and the
/// partition's consumer is made again.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a server keeps a partition's consumer nobody pulls from (this node crashed,
/// or its outputs held it back that long: then a new one is made).
const INACTIVE: Duration = Duration::from_secs(60);
/// Messages on their way from the partitions' readers to the stack.
const HANDOFF: usize = 1024;
/// How often the outputs' progress is read to move the positions past what they have.
const DONE_EVERY: Duration = Duration::from_millis(10);
/// How often moved positions are saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Pause before a partition's reader tries again after an error.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// After the stop, how long the input waits for the outputs to have what it took.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A message read from partition `.0` at stream sequence `.1`.
type Read = (u32, u64, jetstream::Message);

/// Messages the stack took and the outputs may not have yet, in order: the outputs'
/// marks after it, its partition and sequence, and the edge's receive time (none for a
/// message passed over).
struct InFlight {
    queue: VecDeque<(Marks, u32, u64, Option<i64>)>,
    positions: Arc<Mutex<Positions>>,
    /// Whether the positions moved since they were last saved.
    moved: bool,
    /// When a failed save was last logged (once a minute while they fail).
    save_failed: Option<Instant>,
}

/// Reads `spec`'s partitions into `stack` until `stop`, keeping the positions in
/// `positions_file` (in memory only without).
pub(crate) async fn run<S>(
    spec: NatsInputSpec,
    name: String,
    positions_file: Option<PathBuf>,
    mut stack: S,
    progress: Progress,
    stats: Arc<ConsumerStats>,
    stop: CancellationToken,
) where
    S: Service<Received, Response = ()> + Send,
    S::Future: Send,
{
    let loaded = match &positions_file {
        Some(file) => Positions::load(file, &spec.stream.stream).unwrap_or_else(|e| {
            tracing::error!(input = %name, error = %e, "nats input: the positions cannot be read; each partition is read from the stream's start (the store keeps one copy of what it has)");
            Positions::new(&spec.stream.stream)
        }),
        None => {
            tracing::warn!(input = %name, "nats input: no store and no `positions=FILE`: positions are kept in memory, and a restart reads each partition from the stream's start");
            Positions::new(&spec.stream.stream)
        }
    };
    let js = match nats_stream::connect(&spec.stream, &format!("hep-server consumer {name}")).await
    {
        Ok(js) => js,
        Err(e) => {
            tracing::error!(input = %name, error = %e, "nats input: cannot connect");
            return;
        }
    };
    let positions = Arc::new(Mutex::new(loaded));
    let (tx, mut rx) = mpsc::channel::<Read>(HANDOFF);
    let readers = CancellationToken::new();
    let seen = Arc::new(AtomicBool::new(false));
    for k in spec.partitions.clone() {
        tokio::spawn(
            Reader {
                js: js.clone(),
                spec: spec.clone(),
                k,
                positions: Arc::clone(&positions),
                tx: tx.clone(),
                stats: Arc::clone(&stats),
                seen: Arc::clone(&seen),
            }
            .run(readers.clone()),
        );
    }
    drop(tx);
    let _stop_readers = readers.clone().drop_guard();
    let mut in_flight = InFlight {
        queue: VecDeque::new(),
        positions,
        moved: false,
        save_failed: None,
    };
    let mut tick = tokio::time::interval(DONE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = Instant::now();
    let mut warned = None::<Instant>;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                in_flight.done(&progress, &stats);
                if saved.elapsed() >= SAVE_EVERY {
                    in_flight.save(positions_file.as_ref(), &name).await;
                    saved = Instant::now();
                }
            }
            m = rx.recv() => {
                let Some((k, seq, msg)) = m else { break };
                stats.received.fetch_add(1, Relaxed);
                let received = Envelope::from_stream(msg.headers.as_ref(), msg.payload.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|env| {
                        let m = HepMessage::decode(env.hep.clone()).map_err(|e| e.to_string())?;
                        Ok((Received::new(m, env.hep.clone(), env.recv_info()), env.received_usec))
                    });
                let (received, at) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        stats.invalid.fetch_add(1, Relaxed);
                        if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(10)) {
                            tracing::warn!(input = %name, partition = k, error = %e, "nats input: a message that is not an edge's HEP message; dropped (reason nats_invalid)");
                            warned = Some(Instant::now());
                        }
                        // Passed over: done once what came before it is.
                        in_flight.queue.push_back((progress.marks(), k, seq, None));
                        continue;
                    }
                };
                // Back pressure: the stack is ready when every output's queue has room.
                let Ok(ready) = stack.ready().await else { break };
                let _ = ready.call(received).await;
                in_flight.queue.push_back((progress.marks(), k, seq, Some(at)));
            }
        }
    }
    // Stopping: no more reading; what the outputs finish in the grace is done, and the
    // positions are saved.
    readers.cancel();
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while !in_flight.queue.is_empty() && tokio::time::Instant::now() < deadline {
        tick.tick().await;
        in_flight.done(&progress, &stats);
    }
    in_flight.save(positions_file.as_ref(), &name).await;
}

impl InFlight {
    /// Moves the positions past the messages every output has, in order.
    fn done(&mut self, progress: &Progress, stats: &ConsumerStats) {
        if self.queue.is_empty() {
            return;
        }
        let now = crate::time::usec_of(SystemTime::now());
        let mut positions = lock(&self.positions);
        while let Some((marks, _, _, _)) = self.queue.front_mut() {
            if !progress.reached(marks) {
                break;
            }
            let (_, k, seq, at) = self.queue.pop_front().expect("just seen");
            positions.advance(k, seq);
            self.moved = true;
            let Some(at) = at else { continue };
            stats.done.fetch_add(1, Relaxed);
            stats
                .edge_to_store
                .observe(Duration::from_micros(now.saturating_sub(at).max(0) as u64));
        }
    }

    /// Saves the positions if they moved (off the runtime's threads: it syncs a file).
    async fn save(&mut self, file: Option<&PathBuf>, name: &str) {
        let Some(file) = file.filter(|_| self.moved) else {
            return;
        };
        self.moved = false;
        let snapshot = lock(&self.positions).clone();
        let file = file.clone();
        let saved = tokio::task::spawn_blocking(move || snapshot.save(&file)).await;
        match saved {
            Ok(Err(e)) => {
                // Kept in memory; the next save tries again.
                self.moved = true;
                if self
                    .save_failed
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
                {
                    tracing::error!(input = %name, error = %e, "nats input: the positions cannot be saved; a restart would read again what came since the last save");
                    self.save_failed = Some(Instant::now());
                }
            }
            Ok(Ok(())) if self.save_failed.take().is_some() => {
                tracing::info!(input = %name, "nats input: the positions are saved again");
            }
            _ => {}
        }
    }
}

/// One partition's reader: makes its consumer and hands its messages over, again after
/// any loss or error, until it is stopped.
struct Reader {
    js: jetstream::Context,
    spec: NatsInputSpec,
    k: u32,
    positions: Arc<Mutex<Positions>>,
    tx: mpsc::Sender<Read>,
    stats: Arc<ConsumerStats>,
    seen: Arc<AtomicBool>,
}

impl Reader {
    async fn run(self, stop: CancellationToken) {
        let k = self.k;
        let mut warned = None::<Instant>;
        let mut warn = |what: &str, e: &dyn std::fmt::Display| {
            if warned.is_none_or(|w: Instant| w.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(partition = k, error = %e, "nats input: {what}; trying again");
                warned = Some(Instant::now());
            }
        };
        // The sequence to read from next; `None` before the stream was seen, and
        // `Some(None)` for the partition's start.
        let mut next: Option<Option<u64>> = None;
        let mut made = 0_u64;
        while !stop.is_cancelled() {
            let opened = tokio::select! {
                () = stop.cancelled() => return,
                o = self.open(&mut next) => o,
            };
            let (stream, consumer, mut messages) = match opened {
                Ok(o) => o,
                Err(e) => {
                    warn("the partition's consumer cannot be made", &e);
                    pause(&stop).await;
                    continue;
                }
            };
            made += 1;
            if made > 1 {
                self.stats.restarts.fetch_add(1, Relaxed);
            }
            let mut delivered = 0;
            let why = loop {
                let n = tokio::select! {
                    () = stop.cancelled() => return,
                    n = messages.next() => n,
                };
                let m = match n {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => break e.to_string(),
                    None => break "the server ended it".to_owned(),
                };
                let Ok(info) = m.info() else {
                    break "a message without its delivery info".to_owned();
                };
                // Each delivery of the consumer is numbered: one missing is a message
                // skipped, read again by a new consumer.
                if info.consumer_sequence != delivered + 1 {
                    break format!("delivery {} came after {delivered}", info.consumer_sequence);
                }
                delivered = info.consumer_sequence;
                let seq = info.stream_sequence;
                self.stats.set_pending(k, info.pending);
                next = Some(Some(seq + 1));
                if self.tx.send((k, seq, m)).await.is_err() {
                    return;
                }
            };
            warn("the partition's consumer was lost", &why);
            // Not left to the servers' clean-up: it holds their memory meanwhile.
            let _ = tokio::time::timeout(RETRY_PAUSE, stream.delete_consumer(&consumer)).await;
            pause(&stop).await;
        }
    }

    /// Makes the partition's consumer, from `next` (the first time, from the saved
    /// position); the stream, the consumer's name and its messages.
    async fn open(
        &self,
        next: &mut Option<Option<u64>>,
    ) -> anyhow::Result<(stream::Stream, String, pull::Stream)> {
        let (k, name) = (self.k, &self.spec.stream.stream);
        // The first reader to see the stream may make it; none after (see
        // `nats::stream::ensure`).
        let stream =
            nats_stream::ensure(&self.js, &self.spec.stream, !self.seen.load(Relaxed)).await?;
        self.seen.store(true, Relaxed);
        let info = stream.cached_info();
        if nats_stream::removes_on_ack(info.config.retention) {
            anyhow::bail!(
                "stream `{name}` removes messages once acknowledged (a work queue made by an \
                 older hep-server), and this one reads only a stream that keeps them by age: \
                 read it to the end with the older hep-server, then make it again \
                 (docs/SCALE-OUT.md, \"The stream\")"
            );
        }
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let from = match *next {
            Some(from) => from,
            None => {
                let done = lock(&self.positions).done(k);
                let done = match done {
                    Some(d) => Some(d),
                    None => self.take_durable(&stream).await,
                };
                done.map(|d| d + 1)
            }
        };
        let from = match from {
            // Past the stream's end: it was made again, or lost messages it had stored
            // (a server's disk), and numbers new ones where those were.
            Some(n) if n > last + 1 => {
                tracing::error!(stream = %name, partition = k, position = n - 1, last, "nats input: the stream ends before this partition's position: it was made again or lost messages; the partition is read again from its start");
                self.stats.rewinds.fetch_add(1, Relaxed);
                None
            }
            Some(n) if n < first => {
                tracing::error!(stream = %name, partition = k, from = n, first, "nats input: messages after this partition's position were removed (max_age) before they were read");
                Some(n)
            }
            other => other,
        };
        *next = Some(from);
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: self.spec.stream.partition_subject(k),
                deliver_policy: match from {
                    Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
                    None => DeliverPolicy::All,
                },
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: INACTIVE,
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("partition {k}: {e}"))?;
        let info = consumer.cached_info();
        self.stats.set_pending(k, info.num_pending);
        let consumer_name = info.name.clone();
        let messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(HEARTBEAT)
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("partition {k}: {e}"))?;
        Ok((stream, consumer_name, messages))
    }

    /// The position of the durable consumer `p<k>` an older hep-server read this
    /// partition with, which is then removed (it costs the servers a Raft group each).
    async fn take_durable(&self, stream: &stream::Stream) -> Option<u64> {
        let durable = format!("p{}", self.k);
        let info = stream.consumer_info(&durable).await.ok()?;
        let done = info.ack_floor.stream_sequence;
        match stream.delete_consumer(&durable).await {
            Ok(_) => tracing::info!(
                partition = self.k,
                position = done,
                "nats input: read on from where the durable consumer {durable} of an older hep-server was; it is removed"
            ),
            Err(e) => {
                tracing::warn!(partition = self.k, error = %e, "nats input: read on from where the durable consumer {durable} of an older hep-server was; it could not be removed (`nats consumer rm`)")
            }
        }
        Some(done)
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(RETRY_PAUSE) => {}
    }
}
