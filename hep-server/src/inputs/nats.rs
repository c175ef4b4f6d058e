//! `nats:URL[,URL...];stream=HEP;subject=hep;partitions=A-B`: a cluster's consumer. Each
//! partition of the range is read through a durable pull consumer of its own (`p<k>`,
//! explicit acks; the stream keeps messages by age, so an ack moves only the consumer),
//! its messages go through the same callback stack and outputs as a listener's, and each
//! is acknowledged only once every output has it (for a store: committed).
//!
//! # When a message is acknowledged
//! After the stack took a message, the input notes each running output's mark: what the
//! output has taken in so far (queued and finished; read in that order, so the mark is
//! never early). Once an output has finished (delivered, or dropped and counted) as many
//! as its mark, it has this message too, as its queue is first in, first out. Messages
//! are acknowledged in the order they came. So a `kill -9` loses nothing the stream
//! holds: what was not acknowledged is delivered again, and the store keeps one copy of
//! each message (it skips a message whose key it holds, counted in
//! `hep_store_duplicates_total`).
//!
//! A message without the edge's headers, or whose bytes are not HEP, is acknowledged and
//! counted (`hep_dropped_total{stage="input",reason="nats_invalid"}`): it could never be
//! read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt as _;
use hep_proto::{HepMessage, Received};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt as _};

use crate::nats::stats::ConsumerStats;
use crate::nats::stream as nats_stream;
use crate::nats::{Envelope, NatsInputSpec};
use crate::outputs::progress::{Marks, Progress};

/// Messages a partition's consumer may have delivered and not had acknowledged: what
/// the outputs' queues may hold of it, and so what a crash sends again.
const MAX_ACK_PENDING: i64 = 20_000;
/// How long JetStream waits for an acknowledgement before it delivers a message again
/// (a store's batch commits in well under a second; a slow disk gets this much).
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages asked for in one pull.
const PULL_BATCH: usize = 256;
/// Messages on their way from the partitions' readers to the stack.
const HANDOFF: usize = 1024;
/// How often the outputs' progress is read to acknowledge what they have.
const ACK_EVERY: Duration = Duration::from_millis(10);
/// Pause before a partition's reader tries again after an error.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// After the stop, how long the input waits for the outputs to have what it took.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Reads `spec`'s partitions into `stack` until `stop`.
pub(crate) async fn run<S>(
    spec: NatsInputSpec,
    name: String,
    mut stack: S,
    progress: Progress,
    stats: Arc<ConsumerStats>,
    stop: CancellationToken,
) where
    S: Service<Received, Response = ()> + Send,
    S::Future: Send,
{
    let js = match nats_stream::connect(&spec.stream, &format!("hep-server consumer {name}")).await
    {
        Ok(js) => js,
        Err(e) => {
            tracing::error!(input = %name, error = %e, "nats input: cannot connect");
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<(u32, jetstream::Message)>(HANDOFF);
    let readers = CancellationToken::new();
    let seen = Arc::new(AtomicBool::new(false));
    for k in spec.partitions.clone() {
        tokio::spawn(read_partition(
            js.clone(),
            spec.clone(),
            k,
            tx.clone(),
            Arc::clone(&stats),
            Arc::clone(&seen),
            readers.clone(),
        ));
    }
    drop(tx);
    let _stop_readers = readers.clone().drop_guard();
    let mut pending: VecDeque<(Marks, jetstream::Message, i64)> = VecDeque::new();
    let mut tick = tokio::time::interval(ACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = None::<std::time::Instant>;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => ack_done(&mut pending, &progress, &stats).await,
            m = rx.recv() => {
                let Some((k, msg)) = m else { break };
                stats.received.fetch_add(1, Relaxed);
                if let Ok(info) = msg.info() {
                    if info.delivered > 1 {
                        stats.redelivered.fetch_add(1, Relaxed);
                    }
                    stats.set_pending(k, info.pending);
                }
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
                            warned = Some(std::time::Instant::now());
                        }
                        let _ = msg.ack_with(AckKind::Ack).await;
                        continue;
                    }
                };
                // Back pressure: the stack is ready when every output's queue has room.
                let Ok(ready) = stack.ready().await else { break };
                let _ = ready.call(received).await;
                pending.push_back((progress.marks(), msg, at));
            }
        }
    }
    // Stopping: no more reading; what the outputs finish in the grace is acknowledged,
    // the rest is delivered again to the next run.
    readers.cancel();
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        tick.tick().await;
        ack_done(&mut pending, &progress, &stats).await;
    }
}

/// Acknowledges, in order, the messages every output has.
async fn ack_done(
    pending: &mut VecDeque<(Marks, jetstream::Message, i64)>,
    progress: &Progress,
    stats: &ConsumerStats,
) {
    if pending.is_empty() {
        return;
    }
    let now = crate::time::usec_of(SystemTime::now());
    while let Some((marks, _, _)) = pending.front_mut() {
        if !progress.reached(marks) {
            break;
        }
        let (_, msg, at) = pending.pop_front().expect("just seen");
        if msg.ack().await.is_ok() {
            stats.acked.fetch_add(1, Relaxed);
        }
        stats
            .edge_to_store
            .observe(Duration::from_micros(now.saturating_sub(at).max(0) as u64));
    }
}

/// One partition's reader: makes sure of its durable consumer and hands its messages
/// over, again after any error, until `stop`.
async fn read_partition(
    js: jetstream::Context,
    spec: NatsInputSpec,
    k: u32,
    tx: mpsc::Sender<(u32, jetstream::Message)>,
    stats: Arc<ConsumerStats>,
    seen: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut warned = None::<std::time::Instant>;
    let mut warn = |what: &str, e: &dyn std::fmt::Display| {
        if warned.is_none_or(|w: std::time::Instant| w.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(partition = k, error = %e, "nats input: {what}; trying again");
            warned = Some(std::time::Instant::now());
        }
    };
    while !stop.is_cancelled() {
        let messages = async {
            // The first reader to see the stream may make it; none after (see
            // `nats::stream::ensure`).
            let stream = nats_stream::ensure(&js, &spec.stream, !seen.load(Relaxed)).await?;
            seen.store(true, Relaxed);
            let consumer = stream
                .get_or_create_consumer(
                    &format!("p{k}"),
                    pull::Config {
                        durable_name: Some(format!("p{k}")),
                        filter_subject: spec.stream.partition_subject(k),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: ACK_WAIT,
                        max_ack_pending: MAX_ACK_PENDING,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("consumer p{k}: {e}"))?;
            let info = consumer.cached_info();
            stats.set_pending(k, info.num_pending);
            consumer
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("consumer p{k}: {e}"))
        };
        let mut messages = tokio::select! {
            () = stop.cancelled() => return,
            m = messages => match m {
                Ok(m) => m,
                Err(e) => {
                    warn("the partition's consumer is not available", &e);
                    pause(&stop).await;
                    continue;
                }
            },
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                n = messages.next() => n,
            };
            match next {
                Some(Ok(m)) => {
                    if tx.send((k, m)).await.is_err() {
                        return;
                    }
                }
                // Missed heartbeats while a server is away: the stream goes on.
                Some(Err(e)) => warn("reading the partition failed", &e),
                None => break,
            }
        }
        pause(&stop).await;
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(RETRY_PAUSE) => {}
    }
}
