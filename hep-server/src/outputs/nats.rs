//! `nats:URL[,URL...];stream=HEP;subject=hep;partitions=P[;window=W][;spool=DIR]`: the
//! cluster's edge. Every message is published on `<subject>.<k>` (its partition, see
//! [`crate::nats::envelope`]) with a `Nats-Msg-Id`, and counted delivered once the stream
//! has acknowledged it.
//!
//! One task: it takes messages off the queue into a backlog, keeps up to `window`
//! publishes in flight from the backlog, and takes their acknowledgements in order. The
//! backlog is
//! - with `spool=DIR`, the disk spool a relay has ([`super::relay::spool`]): every
//!   message is appended to it and published from it, so what the servers have not
//!   acknowledged survives a restart of the edge, and an outage of every server costs
//!   disk, not messages (up to the spool's `max_bytes`, then counted as `spool_full`);
//! - without, memory: at most `window` messages past the queue, so while the servers are
//!   down the output's queue fills and the listeners count what it cannot take.
//!
//! A publish that fails or is not acknowledged within `nats::stream::API_TIMEOUT` (a leader election
//! takes 4-9 s) stops the round: every publish in flight from it on is sent again, in
//! order, with the same `Nats-Msg-Id`, after a short pause; JetStream drops the copies it
//! already had (counted in `hep_nats_publish_duplicates_total`). So a message is stored
//! once in the stream, and the acknowledgements give the delivered position, as for a
//! spooling relay.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, publish::PublishAck};
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use super::queue::{OutputStats, Queued};
use super::relay::RelayCollect;
use super::relay::spool::{Pos, Spool};
use super::{Context, Opened, Output, Worker};
use crate::nats::stats::{EdgeStats, SequenceWatch};
use crate::nats::stream as nats_stream;
use crate::nats::{Envelope, NatsOutputSpec, StreamSpec};
use crate::time::now_usec;

/// Pause after a failed round before publishing again (the client's reconnects pace the
/// rest).
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Messages taken off the queue per turn.
const TAKE_BATCH: usize = 1024;
/// How long the edge goes on publishing after the stop while the servers make no
/// progress; what is left stays in the spool (or is counted lost at the deadline).
const CLOSE_STALL: Duration = Duration::from_secs(2);

/// An edge ready to start.
struct Edge {
    spec: NatsOutputSpec,
    name: String,
    stats: Arc<EdgeStats>,
    spool: Option<Spool>,
}

/// Opens the edge output: its counters and, with `spool=DIR`, its spool. Connecting is
/// the task's (the servers may be down at start).
///
/// # Errors
/// The spool cannot be opened.
pub(crate) fn open(spec: &NatsOutputSpec, cx: &mut Context<'_>) -> anyhow::Result<Opened> {
    let name = cx.name;
    let edge = cx.counters.kind(name, || EdgeStats::new(name));
    let (stats, spool) = match &spec.spool {
        // The spool's counters and drops, as a spooling relay's.
        Some(dir) => {
            let stats = cx.counters.output(name, false);
            let collect = cx
                .counters
                .kind(name, || RelayCollect::new(Arc::clone(&stats)));
            let spool = Spool::open(dir, cx.settings.spool, collect.spool_or_new())
                .with_context(|| format!("output `{name}`: spool"))?;
            (stats, Some(spool))
        }
        None => (cx.counters.output(name, true), None),
    };
    Ok(Opened::queued(
        stats,
        Edge {
            spec: spec.clone(),
            name: name.to_owned(),
            stats: edge,
            spool,
        },
    ))
}

impl Output for Edge {
    fn start(
        self: Box<Self>,
        queue: Receiver<Queued>,
        stats: Arc<OutputStats>,
        close: CancellationToken,
    ) -> std::io::Result<Worker> {
        Ok(Worker::Task(tokio::spawn(self.run(queue, stats, close))))
    }
}

/// Where the messages wait between the queue and the stream.
enum Backlog {
    /// Not yet published, oldest first.
    Memory(VecDeque<Envelope>),
    /// The spool, read from its read position.
    Spool(Box<Spool>),
}

/// A publish awaiting its acknowledgement.
struct InFlight {
    /// Its place in the spool (start, end), if spooled.
    pos: Option<(Pos, Pos)>,
    envelope: Envelope,
    sent: Instant,
    ack: AckFuture,
}

/// A publish's acknowledgement.
type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

impl Backlog {
    /// The next message to publish.
    fn next(&mut self, stats: &OutputStats) -> Option<(Option<(Pos, Pos)>, Envelope)> {
        match self {
            Self::Memory(q) => q.pop_front().map(|e| (None, e)),
            Self::Spool(s) => loop {
                let entry = match s.next() {
                    Ok(Some(e)) => e,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(error = %e, "nats edge: reading the spool failed");
                        return None;
                    }
                };
                match Envelope::from_record(entry.bytes) {
                    Ok(env) => return Some((Some((entry.start, entry.end)), env)),
                    Err(e) => {
                        // Framed and CRC'd: only a record of another build gets here.
                        tracing::warn!(error = %e, "nats edge: a spool record it cannot read; dropped");
                        stats.add_failed(1);
                        s.delivered(entry.end);
                    }
                }
            },
        }
    }

    /// Whether nothing is left to publish or to be acknowledged (a spool's gauge counts
    /// what it holds that was not acknowledged).
    fn is_empty(&self) -> bool {
        match self {
            Self::Memory(q) => q.is_empty(),
            Self::Spool(s) => s.stats().messages() == 0,
        }
    }

    /// The oldest publish in flight was acknowledged; `next` is the spool place of the
    /// one after it, if any.
    fn acked(&mut self, pos: Option<(Pos, Pos)>, next: Option<(Pos, Pos)>, stats: &OutputStats) {
        match (self, pos) {
            (Self::Spool(s), Some((_, end))) => {
                s.delivered(end);
                s.set_resume(next.map_or(end, |(start, _)| start));
                stats.add_delivered(1);
            }
            _ => {
                stats.record_written(1, 1);
            }
        }
    }

    /// After a failure: `again` (what was in flight, oldest first) is published again.
    fn rewind(&mut self, again: Vec<InFlight>) {
        match self {
            Self::Memory(q) => {
                for f in again.into_iter().rev() {
                    q.push_front(f.envelope);
                }
            }
            Self::Spool(s) => {
                if let Some((start, _)) = again.first().and_then(|f| f.pos) {
                    s.rewind(start);
                }
            }
        }
    }
}

impl Edge {
    async fn run(
        self: Box<Self>,
        mut queue: Receiver<Queued>,
        stats: Arc<OutputStats>,
        close: CancellationToken,
    ) {
        let Self {
            spec,
            name,
            stats: edge,
            spool,
        } = *self;
        let mut backlog = match spool {
            Some(s) => Backlog::Spool(Box::new(s)),
            None => Backlog::Memory(VecDeque::new()),
        };
        let js = match nats_stream::connect(&spec.stream, &format!("hep-server edge {name}")).await
        {
            Ok(js) => js,
            Err(e) => {
                // Only a malformed URL gets here; the spec was checked at start.
                tracing::error!(output = %name, error = %e, "nats edge: cannot connect");
                return;
            }
        };
        // The stream is made sure of in a task of its own: the servers may take seconds
        // to answer (an election), and meanwhile the queue must still be drained.
        let mut ensuring = Some(tokio::spawn(ensure(js.clone(), spec.stream.clone(), true)));
        // Once seen, the stream is never made again (see `nats::stream::ensure`).
        let mut seen_stream = false;
        let mut stream_ready = false;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut queue_open = true;
        let mut closing = false;
        let mut last_progress = Instant::now();
        let mut pause_until: Option<tokio::time::Instant> = None;
        // Syncs the spool; also what wakes the loop when nothing else can.
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warn = Warn::default();
        let mut sequences = SequenceWatch::default();
        let mut warn_order = Warn::default();
        loop {
            // 1. The queue into the backlog: all of it into a spool, a window's worth into
            //    memory (the queue is the buffer then).
            let room = match &backlog {
                Backlog::Spool(_) => TAKE_BATCH,
                Backlog::Memory(q) => spec.window.saturating_sub(q.len() + in_flight.len()),
            };
            let mut took = 0;
            while took < room && queue_open {
                match queue.try_recv() {
                    Ok(m) => {
                        took += 1;
                        take(&m, &spec, &mut backlog, &stats);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => queue_open = false,
                }
            }
            if took > 0 {
                spooled_batch(&mut backlog, took, &stats, &name);
            }
            // 2. Publishes up to the window.
            if stream_ready && pause_until.is_none() {
                while in_flight.len() < spec.window {
                    let Some((pos, envelope)) = backlog.next(&stats) else {
                        break;
                    };
                    let sent = Instant::now();
                    let ack: AckFuture = match publish(&js, &spec, &envelope).await {
                        Ok(ack) => Box::pin(ack.into_future()),
                        // Settled in order with the rest: this one and all after it again.
                        Err(e) => Box::pin(async move { Err(e) }),
                    };
                    in_flight.push_back(InFlight {
                        pos,
                        envelope,
                        sent,
                        ack,
                    });
                }
            }
            edge.in_flight.store(in_flight.len() as u64, Relaxed);
            let idle = in_flight.is_empty() && backlog.is_empty();
            if !queue_open && idle {
                break;
            }
            if closing && last_progress.elapsed() > CLOSE_STALL {
                tracing::warn!(output = %name, "nats edge: the servers take nothing; stopping with messages left");
                break;
            }
            // 3. Wait for an acknowledgement, the queue, the stream, a pause's end or the
            //    stop.
            let can_take = queue_open
                && match &backlog {
                    Backlog::Spool(_) => true,
                    Backlog::Memory(q) => q.len() + in_flight.len() < spec.window,
                };
            tokio::select! {
                biased;
                r = async { in_flight.front_mut().expect("some in flight").ack.as_mut().await }, if !in_flight.is_empty() => {
                    let done = in_flight.pop_front().expect("just awaited");
                    match r {
                        Ok(ack) => {
                            last_progress = Instant::now();
                            edge.ack.observe(done.sent.elapsed());
                            edge.published.fetch_add(1, Relaxed);
                            if ack.duplicate {
                                edge.duplicates.fetch_add(1, Relaxed);
                            }
                            if let Some(highest) = sequences.ack(ack.sequence, ack.duplicate) {
                                edge.sequence_regressions.fetch_add(1, Relaxed);
                                warn_order.once_per(Duration::from_secs(10), || tracing::error!(
                                    output = %name, sequence = ack.sequence, highest,
                                    "nats edge: the stream acknowledged a new message at a sequence it had given before: it lost its order (a replica that missed messages leads it), and consumers may never read such messages (hep_nats_sequence_regressions_total)"
                                ));
                            }
                            let next = in_flight.front().and_then(|f| f.pos);
                            backlog.acked(done.pos, next, &stats);
                        }
                        Err(e) => {
                            warn.once_per(Duration::from_secs(10), || tracing::warn!(
                                output = %name, error = %e, in_flight = in_flight.len() + 1,
                                "nats edge: a publish was not acknowledged; sending again from it"
                            ));
                            if matches!(e.kind(), PublishErrorKind::StreamNotFound) && ensuring.is_none() {
                                stream_ready = false;
                                ensuring = Some(tokio::spawn(ensure(js.clone(), spec.stream.clone(), !seen_stream)));
                            }
                            let mut again = vec![done];
                            again.extend(in_flight.drain(..));
                            edge.retries.fetch_add(again.len() as u64, Relaxed);
                            backlog.rewind(again);
                            pause_until = Some(tokio::time::Instant::now() + RETRY_PAUSE);
                        }
                    }
                }
                r = async { ensuring.as_mut().expect("ensuring").await }, if ensuring.is_some() => {
                    ensuring = None;
                    match r {
                        Ok(Ok(())) => {
                            stream_ready = true;
                            seen_stream = true;
                        }
                        Ok(Err(e)) => {
                            warn.once_per(Duration::from_secs(10), || tracing::warn!(
                                output = %name, error = %e,
                                "nats edge: the stream is not available; holding messages"
                            ));
                            let (js, stream, may_create) = (js.clone(), spec.stream.clone(), !seen_stream);
                            ensuring = Some(tokio::spawn(async move {
                                tokio::time::sleep(RETRY_PAUSE).await;
                                ensure(js, stream, may_create).await
                            }));
                        }
                        Err(e) => {
                            tracing::error!(output = %name, error = %e, "nats edge: its stream task failed");
                            break;
                        }
                    }
                }
                () = sleep_until(pause_until), if pause_until.is_some() => pause_until = None,
                m = queue.recv(), if can_take => match m {
                    Some(m) => {
                        take(&m, &spec, &mut backlog, &stats);
                        spooled_batch(&mut backlog, 1, &stats, &name);
                    }
                    None => queue_open = false,
                },
                () = close.cancelled(), if !closing => {
                    closing = true;
                    last_progress = Instant::now();
                    queue.close();
                }
                _ = tick.tick() => {
                    if let Backlog::Spool(s) = &mut backlog
                        && let Err(e) = tokio::task::block_in_place(|| s.sync())
                    {
                        tracing::warn!(output = %name, error = %e, "nats edge: syncing the spool failed");
                    }
                }
            }
        }
        // Stopped with messages left (the servers took nothing for a while): what the
        // queue still holds joins the backlog, then a spool keeps it all for the next
        // start, and memory counts it lost.
        let mut left = 0;
        while let Ok(m) = queue.try_recv() {
            left += 1;
            take(&m, &spec, &mut backlog, &stats);
        }
        match &mut backlog {
            Backlog::Spool(s) => {
                stats.dequeued(left);
                if let Err(e) = tokio::task::block_in_place(|| s.flush().and_then(|()| s.sync())) {
                    tracing::warn!(output = %name, error = %e, "nats edge: syncing the spool failed");
                }
            }
            Backlog::Memory(q) => {
                let lost = (q.len() + in_flight.len()) as u64;
                if lost > 0 {
                    stats.record_batch(lost, 0, &[("nats_unavailable", lost)]);
                    tracing::warn!(output = %name, lost, "nats edge: stopped with messages no server acknowledged (hep_dropped_total{{reason=\"nats_unavailable\"}}); a spool (;spool=DIR) would keep them");
                }
            }
        }
        edge.in_flight.store(0, Relaxed);
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t).await;
    }
}

/// Makes sure of the stream, for the edge's stream task.
async fn ensure(
    js: jetstream::Context,
    stream: StreamSpec,
    may_create: bool,
) -> anyhow::Result<()> {
    nats_stream::ensure(&js, &stream, may_create)
        .await
        .map(drop)
}

/// A warning logged at most once per interval (an outage would log one per retry).
#[derive(Default)]
struct Warn(Option<Instant>);

impl Warn {
    fn once_per(&mut self, every: Duration, log: impl FnOnce()) {
        if self.0.is_none_or(|t| t.elapsed() >= every) {
            log();
            self.0 = Some(Instant::now());
        }
    }
}

/// After `n` messages were taken off the queue: a spool writes them (one `write`), and
/// they leave the queue's count (a memory backlog's leave it when acknowledged).
fn spooled_batch(backlog: &mut Backlog, n: usize, stats: &OutputStats, name: &str) {
    if let Backlog::Spool(s) = backlog {
        if let Err(e) = s.flush() {
            tracing::warn!(output = %name, error = %e, "nats edge: appending to the spool failed");
        }
        stats.dequeued(n as u64);
    }
}

/// A message off the queue into the backlog.
fn take(m: &Queued, spec: &NatsOutputSpec, backlog: &mut Backlog, stats: &OutputStats) {
    let Some(env) = Envelope::of(m, now_usec(), spec.partitions) else {
        // A callback changed it into something that cannot be encoded.
        match backlog {
            Backlog::Memory(_) => {
                stats.record_written(1, 0);
            }
            Backlog::Spool(_) => stats.add_failed(1),
        }
        return;
    };
    match backlog {
        Backlog::Memory(q) => q.push_back(env),
        // A failed append is counted by the spool (`spool_write_failed`).
        Backlog::Spool(s) => {
            if let Err(e) = s.append(&env.to_record()) {
                tracing::warn!(error = %e, "nats edge: appending to the spool failed");
            }
        }
    }
}

/// Sends one publish; the future is its acknowledgement.
async fn publish(
    js: &jetstream::Context,
    spec: &NatsOutputSpec,
    env: &Envelope,
) -> Result<PublishAckFuture, PublishError> {
    js.publish_with_headers(
        spec.stream.partition_subject(env.partition),
        env.headers(),
        env.hep.clone(),
    )
    .await
}
