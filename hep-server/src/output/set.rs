//! The running outputs, and how a reload changes them.
//!
//! Each output is a queue and a worker (a thread for files and stdout, a task for
//! relays; `null` counts inline). [`Outputs::reconfigure`] starts the outputs a new
//! configuration adds and gives the fan-out of the new set; the caller publishes it
//! (see [`crate::switch`]) and only then closes the outputs it no longer uses
//! ([`Retired::close`]): a retired output's queue is closed to new messages, what is
//! in it (and any slot already reserved in it) is written, then its worker ends. So a
//! message accepted before the switch is written by the old set, one accepted after by
//! the new set, and none is lost in between.
//!
//! An output is kept, not restarted, when the new configuration has the same spec (and
//! for a relay the same `hep_async*`, `hep_send_timeout` and `[relay_tls]`): a kept
//! `json:` or `pcap:` file is not truncated, a kept relay keeps its connection.
//!
//! Counters are kept by output name (its spec) for the whole run: an output that is
//! removed keeps its counters at their final values (in the metrics, with
//! `hep_output_active` 0, and in the exit summary), one that comes back or is restarted
//! continues them.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use hep_transport::sender::ClientTls;
use hep_transport::{HepDestination, HepSender, SenderConfig, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::OutputSpec;
use super::fanout::{Fanout, OutputQueue, OutputStats, Queued};
use super::pcap::PcapFileWriter;
use super::spool::{self, Spool, SpoolStats};
use super::writer::{self, Format};
use crate::config::{Config, RelayTlsConfig, resolved_path};
use crate::metrics::Registry;
use crate::relay_mark::RelayEncoder;
use crate::stats::RelayCollect;
use crate::store::StoreStats;
use crate::store::writer::{self as store_writer, StoreWriter};

/// The outputs of a run: those in use, and the counters of every output it has had.
pub(crate) struct Outputs {
    running: Vec<Running>,
    stats: Vec<Arc<OutputStats>>,
    relays: Vec<Arc<RelayCollect>>,
    stores: Vec<Arc<StoreStats>>,
    registry: Registry,
    /// `[limits] output_queue`: fixed for the run.
    capacity: usize,
}

/// What makes two outputs the same one.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    spec: String,
    relay: Option<RelaySettings>,
}

/// The settings a relay's sender is built with.
#[derive(Debug, Clone, PartialEq)]
struct RelaySettings {
    hep_async: bool,
    hep_send_timeout: u64,
    hep_async_max_postponed_chunks: usize,
    hep_async_local_connect_timeout: u64,
    hep_async_local_write_timeout: u64,
    relay_tls: Option<RelayTlsConfig>,
}

impl RelaySettings {
    fn of(config: &Config) -> Self {
        Self {
            hep_async: config.hep_async,
            hep_send_timeout: config.hep_send_timeout,
            hep_async_max_postponed_chunks: config.hep_async_max_postponed_chunks,
            hep_async_local_connect_timeout: config.hep_async_local_connect_timeout,
            hep_async_local_write_timeout: config.hep_async_local_write_timeout,
            relay_tls: config.relay_tls.clone(),
        }
    }
}

/// One output in use.
struct Running {
    key: Key,
    spec: OutputSpec,
    stats: Arc<OutputStats>,
    /// `None` for `null`.
    queue: Option<OutputQueue>,
    close: CancellationToken,
    worker: Worker,
}

enum Worker {
    Inline,
    /// Completes when the writer thread has ended.
    Thread(tokio::sync::oneshot::Receiver<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// An output the running configuration no longer has; see [`Retired::close`].
pub(crate) struct Retired(Running);

impl Retired {
    /// Closes the output's queue to new messages, lets its worker write what the queue
    /// holds (and what was reserved in it), and waits until the worker is done.
    pub(crate) async fn close(self) {
        self.close_until(std::future::pending()).await;
    }

    /// As [`close`](Self::close), giving up when `give_up` completes first (the shutdown
    /// deadline): a relay's task is stopped, a file writer's thread is left to the
    /// process's exit, and what is still queued is counted lost
    /// ([`OutputStats::abandon`]). Returns how many messages were lost that way.
    pub(crate) async fn close_until(self, give_up: impl Future<Output = ()>) -> u64 {
        let r = self.0;
        r.close.cancel();
        tokio::pin!(give_up);
        let finished = match r.worker {
            Worker::Inline => true,
            Worker::Thread(finished) => {
                tokio::select! {
                    _ = finished => true,
                    () = &mut give_up => false,
                }
            }
            Worker::Task(mut t) => {
                tokio::select! {
                    _ = &mut t => true,
                    () = &mut give_up => {
                        // Stop it before counting, so that the count is final.
                        t.abort();
                        let _ = t.await;
                        false
                    }
                }
            }
        };
        if finished {
            tracing::debug!(output = %r.spec, "output closed");
            return 0;
        }
        let lost = r.stats.abandon();
        tracing::warn!(
            output = %r.spec,
            lost,
            "shutdown deadline: gave up on the output; the messages still queued are lost"
        );
        lost
    }

    /// The output's spec.
    pub(crate) fn spec(&self) -> &OutputSpec {
        &self.0.spec
    }
}

/// What [`Outputs::reconfigure`] did.
pub(crate) struct Reconfigured {
    /// The fan-out to the new set, to publish.
    pub(crate) fanout: Fanout,
    /// Outputs to close once the new fan-out is published.
    pub(crate) retired: Vec<Retired>,
    /// For the log.
    pub(crate) changes: Changes,
}

/// What a reconfiguration did to each output, for the log.
#[derive(Debug, Default)]
pub(crate) struct Changes(Vec<(String, Change)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Unchanged,
    Added,
    Restarted,
    Removed,
}

impl fmt::Display for Changes {
    /// `json:/a, json:/b (added), stdout (removed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (spec, change)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(spec)?;
            match change {
                Change::Unchanged => {}
                Change::Added => f.write_str(" (added)")?,
                Change::Restarted => f.write_str(" (restarted: relay settings changed)")?,
                Change::Removed => f.write_str(" (removed)")?,
            }
        }
        Ok(())
    }
}

impl Outputs {
    /// No outputs yet; each output's counters go to `registry` when it first starts.
    pub(crate) fn new(registry: Registry, capacity: usize) -> Self {
        Self {
            running: Vec::new(),
            stats: Vec::new(),
            relays: Vec::new(),
            stores: Vec::new(),
            registry,
            capacity,
        }
    }

    /// Makes the outputs those of `config`: keeps the ones it still has, starts the ones
    /// it adds. Nothing changes on error (what was started for it is stopped).
    ///
    /// # Errors
    /// An output that cannot start (a file that cannot be created, relay TLS files that
    /// cannot be read), outputs that conflict ([`Config::check_outputs`]: also checked
    /// here for the specs of the command line and the listeners a reload keeps), or a new
    /// file output writing a file that a running one writes.
    pub(crate) fn reconfigure(&mut self, config: &Config) -> anyhow::Result<Reconfigured> {
        config.check_outputs()?;
        let settings = RelaySettings::of(config);
        let wanted: Vec<(OutputSpec, Key)> = config
            .output_specs()
            .into_iter()
            .map(|spec| {
                let relay = match &spec {
                    // A spooling relay is never restarted by a reload: two instances
                    // must not write one spool. Its settings change with a restart.
                    OutputSpec::Relay { spool: Some(_), .. } => None,
                    OutputSpec::Relay { dest, .. } if dest.transport() == Transport::Tls => {
                        Some(settings.clone())
                    }
                    // `[relay_tls]` does not concern it.
                    OutputSpec::Relay { .. } => Some(RelaySettings {
                        relay_tls: None,
                        ..settings.clone()
                    }),
                    _ => None,
                };
                let key = Key {
                    spec: spec.to_string(),
                    relay,
                };
                (spec, key)
            })
            .collect();

        // Which running output each wanted one is, if any.
        let mut taken = vec![false; self.running.len()];
        let plan: Vec<Option<usize>> = wanted
            .iter()
            .map(|(_, key)| {
                let i =
                    (0..self.running.len()).find(|&i| !taken[i] && self.running[i].key == *key)?;
                taken[i] = true;
                Some(i)
            })
            .collect();

        // A new file output must not truncate a file a running output writes, nor a new
        // spooling relay open a spool a running one writes.
        for ((spec, _), _) in wanted.iter().zip(&plan).filter(|(_, p)| p.is_none()) {
            if let Some(path) = file_of(spec)
                && let Some(other) = self
                    .running
                    .iter()
                    .find(|r| file_of(&r.spec).is_some_and(|p| same_file(p, path)))
            {
                anyhow::bail!(
                    "output `{spec}`: {} is being written by output `{}` (remove that one \
                     in one reload and add this one in the next)",
                    path.display(),
                    other.spec
                );
            }
        }

        // Start the new outputs; on error stop those started.
        let tls = if plan.iter().zip(&wanted).any(|(p, (spec, _))| {
            p.is_none()
                && spec
                    .relay_destination()
                    .is_some_and(|d| d.transport() == Transport::Tls)
        }) {
            relay_tls(config)?
        } else {
            None
        };
        let mut started: Vec<Option<Running>> = Vec::with_capacity(wanted.len());
        for ((spec, key), p) in wanted.iter().zip(&plan) {
            if p.is_some() {
                started.push(None);
                continue;
            }
            match self.start(spec, key, config, tls.as_ref()) {
                Ok(r) => started.push(Some(r)),
                Err(e) => {
                    for r in started.into_iter().flatten() {
                        // Nothing was sent to it: the worker ends at once.
                        r.close.cancel();
                    }
                    return Err(e);
                }
            }
        }

        // Commit: the new running list, in the configuration's order.
        let mut old: Vec<Option<Running>> = std::mem::take(&mut self.running)
            .into_iter()
            .map(Some)
            .collect();
        let mut changes = Changes::default();
        for ((p, new), (spec, _)) in plan.iter().zip(started).zip(&wanted) {
            let name = spec.to_string();
            let running = match (p, new) {
                (Some(i), _) => {
                    changes.0.push((name, Change::Unchanged));
                    old[*i].take().expect("each running output is taken once")
                }
                (None, Some(new)) => {
                    let restarted = old.iter().flatten().any(|r| r.key.spec == new.key.spec);
                    let change = if restarted {
                        Change::Restarted
                    } else {
                        Change::Added
                    };
                    changes.0.push((name, change));
                    new
                }
                (None, None) => unreachable!("every output not kept was started"),
            };
            self.running.push(running);
        }
        let retired: Vec<Retired> = old.into_iter().flatten().map(Retired).collect();
        for r in &retired {
            if !self.running.iter().any(|n| n.key.spec == r.0.key.spec) {
                changes.0.push((r.0.key.spec.clone(), Change::Removed));
            }
        }
        for s in &self.stats {
            s.set_active(self.running.iter().any(|r| r.key.spec == s.name()));
        }
        Ok(Reconfigured {
            fanout: self.fanout(),
            retired,
            changes,
        })
    }

    /// The fan-out to the running outputs.
    fn fanout(&self) -> Fanout {
        let queues = self
            .running
            .iter()
            .filter_map(|r| r.queue.clone())
            .collect();
        let null = self
            .running
            .iter()
            .filter(|r| r.queue.is_none())
            .map(|r| Arc::clone(&r.stats))
            .collect();
        Fanout::new(queues, null)
    }

    /// The outputs in use, to close at shutdown.
    pub(crate) fn retire_all(&mut self) -> Vec<Retired> {
        std::mem::take(&mut self.running)
            .into_iter()
            .map(Retired)
            .collect()
    }

    /// The counters of every output the run has had: all of them, and the relays'.
    pub(crate) fn counters(&self) -> (Vec<Arc<OutputStats>>, Vec<Arc<RelayCollect>>) {
        (self.stats.clone(), self.relays.clone())
    }

    /// The counters named `name`, created (and registered, unless a relay's) on first use.
    fn stats_for(&mut self, name: String, relay: bool) -> Arc<OutputStats> {
        if let Some(s) = self.stats.iter().find(|s| s.name() == name) {
            s.set_active(true);
            return Arc::clone(s);
        }
        let s = Arc::new(OutputStats::new(name));
        if !relay {
            // A relay's are collected with its sender's (`RelayCollect`).
            self.registry.register(Arc::clone(&s) as _);
        }
        self.stats.push(Arc::clone(&s));
        s
    }

    fn start(
        &mut self,
        spec: &OutputSpec,
        key: &Key,
        config: &Config,
        tls: Option<&ClientTls>,
    ) -> anyhow::Result<Running> {
        let close = CancellationToken::new();
        let running = |stats, queue, worker| Running {
            key: key.clone(),
            spec: spec.clone(),
            stats,
            queue,
            close: close.clone(),
            worker,
        };
        match spec {
            OutputSpec::Null => {
                let stats = self.stats_for(key.spec.clone(), false);
                Ok(running(stats, None, Worker::Inline))
            }
            OutputSpec::Relay { dest, spool } => {
                let mut sender_cfg = sender_config(config, tls);
                if spool.is_some() {
                    // Each write's outcome decides what is sent again; there is no
                    // cooldown, the spool holds the messages while the destination is down.
                    sender_cfg.hep_async = false;
                    sender_cfg.max_retries = 0;
                    sender_cfg.fence_on_connection_end = true;
                    // What a break costs in resends is what the destination can have
                    // missed, measured on the connection.
                    sender_cfg.measure_unconfirmed = true;
                    // A closed connection costs a resend of the replay window: a write
                    // that is merely slow must not close it (see docs/CONFIG.md).
                    sender_cfg.hep_send_timeout =
                        sender_cfg.hep_send_timeout.max(sender_cfg.stall_timeout);
                }
                let sender = HepSender::new(dest.clone(), sender_cfg)
                    .with_context(|| format!("output `{spec}`"))?;
                let stats = self.stats_for(key.spec.clone(), true);
                let collect = match self.relays.iter().find(|r| r.output().name() == key.spec) {
                    Some(r) => {
                        r.add_sender(Arc::clone(sender.stats()));
                        Arc::clone(r)
                    }
                    None => {
                        let collect = Arc::new(RelayCollect::new(
                            Arc::clone(&stats),
                            Arc::clone(sender.stats()),
                            spool.as_ref().map(|_| Arc::new(SpoolStats::default())),
                        ));
                        self.registry.register(Arc::clone(&collect) as _);
                        self.relays.push(Arc::clone(&collect));
                        collect
                    }
                };
                let (queue, rx) = OutputQueue::new(self.capacity, Arc::clone(&stats));
                let task = match spool {
                    None => tokio::spawn(relay(
                        dest.clone(),
                        sender,
                        rx,
                        Arc::clone(&stats),
                        close.clone(),
                    )),
                    Some(dir) => {
                        let spool_stats = collect.spool_or_new();
                        let opened = Spool::open(dir, config.spool, spool_stats)
                            .with_context(|| format!("output `{spec}`: spool"))?;
                        tokio::spawn(spool::relay(
                            dest.clone(),
                            sender,
                            rx,
                            Arc::clone(&stats),
                            opened,
                            close.clone(),
                        ))
                    }
                };
                Ok(running(stats, Some(queue), Worker::Task(task)))
            }
            OutputSpec::Store(dir) => {
                let stats = self.stats_for(key.spec.clone(), false);
                let store_stats = match self.stores.iter().find(|s| s.name() == key.spec) {
                    Some(s) => Arc::clone(s),
                    None => {
                        let s = Arc::new(StoreStats::new(key.spec.clone()));
                        self.registry.register(Arc::clone(&s) as _);
                        self.stores.push(Arc::clone(&s));
                        s
                    }
                };
                let store = StoreWriter::open(dir, config.store.clone(), store_stats)
                    .with_context(|| format!("output `{spec}`"))?;
                let (queue, rx) = OutputQueue::new(self.capacity, Arc::clone(&stats));
                let thread = store_writer::spawn(store, rx, Arc::clone(&stats), close.clone())
                    .with_context(|| format!("output `{spec}`: thread"))?;
                Ok(running(stats, Some(queue), Worker::Thread(thread)))
            }
            OutputSpec::Stdout | OutputSpec::Json(_) | OutputSpec::Pcap(_) => {
                let format = match spec {
                    OutputSpec::Json(path) => Format::json(path.as_deref())
                        .with_context(|| format!("output `{spec}`: cannot create the file"))?,
                    OutputSpec::Pcap(path) => Format::Pcap(
                        PcapFileWriter::create(path)
                            .with_context(|| format!("output `{spec}`: cannot create the file"))?,
                    ),
                    _ => Format::text_stdout(),
                };
                let stats = self.stats_for(key.spec.clone(), false);
                let (queue, rx) = OutputQueue::new(self.capacity, Arc::clone(&stats));
                let thread = writer::spawn(format, rx, Arc::clone(&stats), close.clone())
                    .with_context(|| format!("output `{spec}`: thread"))?;
                Ok(running(stats, Some(queue), Worker::Thread(thread)))
            }
        }
    }
}

/// The file (or spool directory) an output writes, if any.
fn file_of(spec: &OutputSpec) -> Option<&Path> {
    match spec {
        OutputSpec::Json(Some(p))
        | OutputSpec::Pcap(p)
        | OutputSpec::Store(p)
        | OutputSpec::Relay { spool: Some(p), .. } => Some(p),
        _ => None,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || resolved_path(a) == resolved_path(b)
}

/// The client side of `relay:hep_tls:` outputs, from `[relay_tls]`.
pub(crate) fn relay_tls(config: &Config) -> anyhow::Result<Option<ClientTls>> {
    let Some(t) = &config.relay_tls else {
        let tls_relay = config.output_specs().into_iter().find(|o| {
            o.relay_destination()
                .is_some_and(|d| d.transport() == Transport::Tls)
        });
        if let Some(o) = tls_relay {
            anyhow::bail!(
                "output `{o}`: a hep_tls relay needs a [relay_tls] section with `ca_file` \
                 (the CA that signed the collector's certificate)"
            );
        }
        return Ok(None);
    };
    let mut b = ClientTls::builder().ca_file(&t.ca_file);
    if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
        b = b.client_cert_files(cert, key);
    }
    if let Some(name) = &t.server_name {
        b = b.server_name(name.clone());
    }
    Ok(Some(b.build().context("[relay_tls]")?))
}

fn sender_config(config: &Config, tls: Option<&ClientTls>) -> SenderConfig {
    let mut s = SenderConfig::default();
    s.tls = tls.cloned();
    s.hep_async = config.hep_async;
    s.hep_async_local_connect_timeout = Config::ms(config.hep_async_local_connect_timeout);
    s.hep_async_local_write_timeout = Config::ms(config.hep_async_local_write_timeout);
    s.hep_async_max_postponed_chunks = config.hep_async_max_postponed_chunks;
    s.hep_send_timeout = Config::ms(config.hep_send_timeout);
    s
}

/// The most messages a relay takes off its queue at once: when the destination keeps
/// up, one vectored write of them all (about 150 KB of SIP).
const RELAY_RUN: usize = 256;

/// Forwards queued messages: the received bytes when nothing changed them and the
/// destination speaks their version, else the message re-encoded; over HEPv3 with this
/// instance's relay mark appended ([`crate::relay_mark`]). Ends when the queue is drained
/// after every sender is gone or after `close`.
///
/// Runs of up to [`RELAY_RUN`] messages are taken from this output's queue and offered to
/// the sender ([`HepSender::offer_batch`]). Over plain TCP they are written at once from
/// this task while the socket takes them, one system call a run; what the socket does
/// not take waits in the sender's queue (`hep_async_max_postponed_chunks`, OpenSIPS's
/// postponed writes) and the rest of the run here, until the sender has room, for at most
/// `hep_async_local_write_timeout`; when it does not come in time, the rest of each run is
/// offered as sends are (what does not fit is dropped and counted) until the sender's
/// queue is empty again. So a destination that keeps up with bursts costs no message for
/// lack of room in the sender's queue, and one that stalls cannot hold up this output's
/// queue and with it the other outputs. Awaiting every message's write held a relay to
/// about 60,000 messages/s, and handing runs of 15 to the sender's writer task, within
/// its 32 pending messages, to 300,000 (`docs/BENCHMARKS.md`).
async fn relay(
    dest: HepDestination,
    sender: HepSender,
    mut rx: mpsc::Receiver<Queued>,
    stats: Arc<OutputStats>,
    close: CancellationToken,
) {
    let mut encoder = RelayEncoder::new(dest.version());
    let mut queued = Vec::with_capacity(RELAY_RUN);
    let mut run: Vec<Bytes> = Vec::with_capacity(RELAY_RUN);
    let mut offered = 0;
    // Room did not come in time, and the sender's queue has not been empty since.
    let mut behind = false;
    let mut closing = false;
    loop {
        if offered == run.len() {
            run.clear();
            offered = 0;
            let n = tokio::select! {
                biased;
                n = rx.recv_many(&mut queued, RELAY_RUN) => n,
                () = close.cancelled(), if !closing => {
                    // No new messages; those queued or reserved still come.
                    rx.close();
                    closing = true;
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            // Counted as dequeued once the sender takes them (below): until then they
            // are still this output's, and a shutdown deadline counts them lost.
            for m in queued.drain(..) {
                match encoder.encode(&m) {
                    Ok(b) => run.push(b),
                    Err(e) => {
                        tracing::debug!(output = %dest, error = %e, "cannot encode for the relay");
                        stats.add_failed(1);
                        stats.dequeued(1);
                    }
                }
            }
            continue;
        }
        // The destination caught up: the sender's queue is empty.
        behind = behind && sender.stats().queue_depth() > 0;
        // Outcomes (sent, dropped) are counted by the sender.
        let taken = sender.offer_batch(&run[offered..]);
        offered += taken;
        stats.dequeued(taken as u64);
        if offered < run.len() && (behind || !sender.room().await) {
            // No room within hep_async_local_write_timeout: the destination is not
            // keeping up. Until it empties the sender's queue, the rest of each run goes
            // as sends go, what does not fit dropped and counted (`queue_overflow`), with
            // no more waiting: waiting on every run would let one slow destination fill
            // this output's queue, and a full queue holds up every output (UDP datagrams
            // are then dropped for all of them).
            behind = true;
            sender.send_batch(&run[offered..]);
            stats.dequeued((run.len() - offered) as u64);
            offered = run.len();
        }
    }
    sender.close().await;
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::net::SocketAddr;
    use std::task::Poll;
    use std::time::Duration;

    use hep_proto::{HepMessage, HepVersion, ProtoType};
    use hep_transport::sender::SenderDropReason;
    use hep_transport::{Received, RecvInfo};
    use tokio::time::{Instant, sleep_until, timeout};
    use tower::Service as _;

    use super::*;

    fn received(i: u64) -> Received {
        let payload = format!(
            "OPTIONS sip:{i}@example.com SIP/2.0\r\nX-Pad: {}\r\n\r\n",
            "x".repeat(900)
        );
        let wire = HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .timestamp(1_700_000_000, 0)
            .proto_type(ProtoType::Sip)
            .payload(payload.into_bytes())
            .build()
            .encode(HepVersion::V3)
            .unwrap();
        let message = HepMessage::decode(wire.clone()).unwrap();
        let at: SocketAddr = "127.0.0.1:5656".parse().unwrap();
        Received::new(message, wire, RecvInfo::new(Transport::Udp, at, at))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_destination_does_not_hold_up_the_relays_queue() {
        // A destination that accepts and never reads. The relay may wait for room once
        // per connection (hep_async_local_write_timeout); after that it must drain its
        // queue as fast as messages come, dropping (and counting) what the destination
        // does not take: a relay that waited on every run would fill its queue, and a
        // full output queue makes the UDP listener drop messages for every output.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let dest: HepDestination = format!("hep_tcp:{addr}").parse().unwrap();
        let mut cfg = SenderConfig::default();
        cfg.send_buffer_size = Some(4096);
        cfg.max_retries = 0;
        let sender = HepSender::new(dest.clone(), cfg).unwrap();
        let stats = Arc::new(OutputStats::new("relay"));
        // 200 ms of the load below.
        let (queue, rx) = OutputQueue::new(8_000, Arc::clone(&stats));
        let task = tokio::spawn(relay(
            dest,
            sender.clone(),
            rx,
            Arc::clone(&stats),
            CancellationToken::new(),
        ));
        // 40,000 messages/s for 2 s, handed over as the UDP listener does (outside
        // tokio's cooperative budget, which would otherwise make a queue with room look
        // full): a message that finds the queue full is dropped (counted here).
        let mut fanout = Fanout::new(vec![queue], Vec::new());
        let count = 80_000u64;
        let full = tokio::task::unconstrained(async {
            let mut full = 0u64;
            let start = Instant::now();
            for i in 0..count {
                if i % 40 == 0 {
                    sleep_until(start + Duration::from_millis(i / 40)).await;
                }
                match poll_fn(|cx| Poll::Ready(fanout.poll_ready(cx))).await {
                    Poll::Ready(_) => {
                        fanout.call(received(i)).await.unwrap();
                    }
                    Poll::Pending => full += 1,
                }
            }
            full
        })
        .await;
        drop(fanout);
        timeout(Duration::from_secs(30), task)
            .await
            .expect("the relay never finished")
            .unwrap();
        holder.abort();
        assert_eq!(full, 0, "the relay's queue filled up");
        let s = sender.stats().snapshot();
        assert!(s.dropped(SenderDropReason::QueueOverflow) > 0, "{s:?}");
        assert_eq!(
            s.sent_messages + s.dropped_total() + s.queue_depth,
            count,
            "{s:?}"
        );
    }
}
