//! The running outputs, and how a reload changes them.
//!
//! Each output is a queue and a worker (a thread for files and stdout, a task for
//! relays; `null` counts inline). [`Outputs::reconfigure`] starts the outputs a new
//! configuration adds and gives the fan-out of the new set; the caller publishes it
//! (see [`crate::server::switch`]) and only then closes the outputs it no longer uses
//! ([`Retired::close`]): a retired output's queue is closed to new messages, what is
//! in it (and any slot already reserved in it) is written, then its worker ends. So a
//! message accepted before the switch is written by the old set, one accepted after by
//! the new set, and none is lost in between.
//!
//! An output is kept, not restarted, when the new configuration has the same spec (and
//! for a relay the same `hep_async*`, `hep_send_timeout` and `[relay_tls]`): a kept
//! `json:` or `pcap:` file is not truncated, a kept relay keeps its connection.
//!
//! Counters are kept by output name (its spec) for the whole run ([`Counters`]).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::conflict::resolved_path;
use super::counters::Counters;
use super::fanout::Fanout;
use super::progress::Progress;
use super::queue::{OutputQueue, OutputStats};
use super::relay::{self, RelayCollect, RelaySettings};
use super::{Context, OutputSettings, OutputSpec, Worker};
use crate::telemetry::metrics::Registry;

/// The outputs of a run: those in use, and the counters of every output it has had.
pub(crate) struct Outputs {
    running: Vec<Running>,
    counters: Counters,
    /// `[limits] output_queue`: fixed for the run.
    capacity: usize,
    /// The parent of every output's `close` token: cancelled, it closes them all.
    close: CancellationToken,
    /// The running outputs' counters, for the inputs.
    progress: Progress,
}

/// What makes two outputs the same one.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    spec: String,
    /// The settings a relay's sender is built with ([`relay::restart_key`]).
    relay: Option<RelaySettings>,
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
    /// No outputs yet; each output's counters go to `registry` when it first starts, each
    /// output's queue holds `capacity` messages, and cancelling `close` closes them all.
    pub(crate) fn new(registry: Registry, capacity: usize, close: CancellationToken) -> Self {
        Self {
            running: Vec::new(),
            counters: Counters::new(registry),
            capacity,
            close,
            progress: Progress::default(),
        }
    }

    /// How far the running outputs have got, kept current by every reconfiguration:
    /// what the inputs acknowledge by.
    pub(crate) fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Makes the outputs those of `specs`: keeps the ones it still has, starts the ones
    /// it adds. Nothing changes on error (what was started for it is stopped). The caller
    /// has checked that the outputs can run together
    /// ([`conflict`](super::conflict::conflict)).
    ///
    /// # Errors
    /// An output that cannot start (a file that cannot be created, relay TLS files that
    /// cannot be read), or a new file output writing a file that a running one writes.
    pub(crate) fn reconfigure<'a>(
        &mut self,
        specs: impl IntoIterator<Item = &'a OutputSpec>,
        settings: &OutputSettings,
    ) -> anyhow::Result<Reconfigured> {
        let wanted: Vec<(OutputSpec, Key)> = specs
            .into_iter()
            .map(|spec| {
                let key = Key {
                    spec: spec.to_string(),
                    relay: relay::restart_key(spec, &settings.relay),
                };
                (spec.clone(), key)
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
        let new = || {
            wanted
                .iter()
                .zip(&plan)
                .filter(|(_, p)| p.is_none())
                .map(|((spec, _), _)| spec)
        };

        // A new file output must not truncate a file a running output writes, nor a new
        // spooling relay open a spool a running one writes.
        for spec in new() {
            if let Some(path) = spec.path()
                && let Some(other) = self
                    .running
                    .iter()
                    .find(|r| r.spec.path().is_some_and(|p| same_file(p, path)))
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
        let tls = relay::client_tls(new(), &settings.relay)?;
        let mut started: Vec<Option<Running>> = Vec::with_capacity(wanted.len());
        for ((spec, key), p) in wanted.iter().zip(&plan) {
            if p.is_some() {
                started.push(None);
                continue;
            }
            let mut cx = Context {
                name: &key.spec,
                settings,
                tls: tls.as_ref(),
                counters: &mut self.counters,
            };
            match start(spec, key, &mut cx, self.capacity, self.close.child_token()) {
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
        for s in self.counters.outputs() {
            s.set_active(self.running.iter().any(|r| r.key.spec == s.name()));
        }
        self.progress
            .set(self.running.iter().map(|r| Arc::clone(&r.stats)).collect());
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
        (
            self.counters.outputs().to_vec(),
            self.counters.all::<RelayCollect>(),
        )
    }
}

/// Opens the output `spec` and starts its worker on a queue of `capacity` messages,
/// closed by `close`.
fn start(
    spec: &OutputSpec,
    key: &Key,
    cx: &mut Context<'_>,
    capacity: usize,
    close: CancellationToken,
) -> anyhow::Result<Running> {
    let opened = super::open(spec, cx)?;
    let (queue, worker) = match opened.output {
        None => (None, Worker::Inline),
        Some(output) => {
            let (queue, rx) = OutputQueue::new(capacity, Arc::clone(&opened.stats));
            let worker = output
                .start(rx, Arc::clone(&opened.stats), close.clone())
                .with_context(|| format!("output `{spec}`: thread"))?;
            (Some(queue), worker)
        }
    };
    Ok(Running {
        key: key.clone(),
        spec: spec.clone(),
        stats: opened.stats,
        queue,
        close,
        worker,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || resolved_path(a) == resolved_path(b)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hep_proto::{HepMessage, HepVersion, ProtoType};
    use hep_transport::{Received, RecvInfo, Transport};
    use tower::{Service as _, ServiceExt as _};

    use super::*;
    use crate::config::Config;
    use crate::testing::TempDir;

    fn received(i: u32) -> Received {
        let wire = HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .timestamp(1_700_000_000 + i, 0)
            .proto_type(ProtoType::Sip)
            .payload(format!("OPTIONS sip:{i}@example.com SIP/2.0\r\n\r\n").into_bytes())
            .build()
            .encode(HepVersion::V3)
            .unwrap();
        let at: SocketAddr = "127.0.0.1:5656".parse().unwrap();
        Received::new(
            HepMessage::decode(wire.clone()).unwrap(),
            wire,
            RecvInfo::new(Transport::Udp, at, at),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_output_gets_every_message_and_a_closed_one_writes_what_it_was_given() {
        let dir = TempDir::new("outputs-set");
        let file = dir.path().join("out.jsonl");
        let specs = [OutputSpec::Json(Some(file.clone())), OutputSpec::Null];
        let mut outputs = Outputs::new(Registry::new(), 64, CancellationToken::new());
        let set = outputs
            .reconfigure(&specs, &Config::default().output_settings())
            .unwrap();
        assert_eq!(
            set.changes.to_string(),
            format!("json:{} (added), null (added)", file.display())
        );
        let mut fanout = set.fanout;
        for i in 0..10 {
            fanout
                .ready()
                .await
                .unwrap()
                .call(received(i))
                .await
                .unwrap();
        }
        drop(fanout);
        for o in outputs.retire_all() {
            o.close().await;
        }
        let written = std::fs::read_to_string(&file).unwrap();
        assert_eq!(written.lines().count(), 10, "{written}");
        let (stats, relays) = outputs.counters();
        let delivered: Vec<u64> = stats.iter().map(|s| s.delivered()).collect();
        assert_eq!(delivered, [10, 10]);
        assert!(relays.is_empty());
    }

    #[tokio::test]
    async fn an_output_that_cannot_start_changes_nothing() {
        let dir = TempDir::new("outputs-refused");
        let mut outputs = Outputs::new(Registry::new(), 64, CancellationToken::new());
        let settings = Config::default().output_settings();
        outputs.reconfigure(&[OutputSpec::Null], &settings).unwrap();
        let bad = dir.path().join("missing").join("out.pcap");
        let e = outputs
            .reconfigure(&[OutputSpec::Null, OutputSpec::Pcap(bad)], &settings)
            .map(|_| ())
            .unwrap_err();
        assert!(format!("{e:#}").contains("cannot create the file"), "{e:#}");
        // Still the one output it had.
        assert_eq!(outputs.counters().0.len(), 1);
        assert_eq!(outputs.retire_all().len(), 1);
    }
}
