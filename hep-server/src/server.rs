//! The collector: listeners -> callback stack -> outputs, until shutdown.
//!
//! ```text
//!  hep_udp ─┐            ┌──────────── Switch (the current stack) ─────────────┐
//!  hep_tcp ─┼─ Received ─┤ [auth] [filter] [rate limit] ... ─> fan-out ─┬─ queue ─ stdout / json / pcap (thread)
//!  hep_tls ─┘            │                                             ├─ queue ─ relay (task, HepSender)
//!   (UDP: OverloadDrop; TCP/TLS: backpressure)                         └─ null (counted inline)
//! ```
//!
//! Shutdown is a parameter (mini-redis): when it completes, listeners stop accepting and
//! finish what they hold, the queues drain, outputs flush and close, and the final
//! counters are returned.
//!
//! # Reload
//!
//! [`run_with_reloads`] also takes configurations to switch to (the binary sends one per
//! SIGHUP). What can change safely changes: the callbacks and the outputs. A reload is
//! all or nothing: the new outputs are started first (a file that cannot be created
//! refuses the reload, and the running configuration stays), then the new stack is
//! published to every listener through the [`Switch`], then the outputs no longer
//! configured are closed: each writes what it had been given, so nothing accepted is
//! lost (see the `output::set` module). Listeners, `[limits]`, `[tls]`, `[metrics]` and
//! `[log]` need a restart: a reload that changes them says so and keeps the running
//! values. Every outcome is logged (`reloaded FILE: outputs [...], callbacks [...]`, or
//! why not) and counted (`hep_config_reloads_total{result}`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use hep_proto::DecodeOptions;
use hep_transport::layer::overload::OverloadDrop;
use hep_transport::{Listener, ListenerConfig, ListenerStats, TlsConfig, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Layer as _;

use crate::callbacks::CallbackSet;
use crate::config::Config;
use crate::drops::{self, DropWatch};
use crate::fd_limit;
use crate::log::TARGET;
use crate::metrics::{self, Registry};
use crate::output::fanout::Fanout;
use crate::output::set::{Outputs, Retired};
use crate::stats::{CallbackCollect, ListenerCollect, ReloadCollect, Summary};
use crate::switch::{Publisher, Switch};

/// A configuration to switch to, read again (on SIGHUP).
#[derive(Debug)]
pub struct Reload {
    /// The file it was read from, for the log.
    pub source: PathBuf,
    /// The configuration, or why it could not be read (naming the file, line and key).
    pub config: anyhow::Result<Config>,
}

/// The service stack the listeners call: the callbacks, then the fan-out to the outputs.
type Stack = hep_callbacks::CallbackChain<Fanout>;

/// Runs the collector described by `config` until `shutdown` completes.
///
/// # Errors
/// Set-up failures (a port in use, an unwritable output file, unreadable TLS files), each
/// naming what failed. Once running, bad input and failing outputs are counted, not errors.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with_reloads(config, shutdown, reloads).await
}

/// As [`run`], switching to each configuration `reloads` gives (see the
/// [module docs](self#reload)).
///
/// # Errors
/// As [`run`]; a reload that fails is logged and counted, not an error.
pub async fn run_with_reloads(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Reload>,
) -> anyhow::Result<Summary> {
    let registry = Registry::new();

    // Outputs first: a listener must have somewhere to hand messages.
    let mut outputs = Outputs::new(registry.clone(), config.limits.output_queue);
    let first = outputs.reconfigure(&config)?;

    // The callback stack: cheap refusals first.
    let (callbacks, _) = CallbackSet::default().rebuild(&config);
    let (chain, callback_stats) = callbacks.chain();
    // Registered even without callbacks: `hep_skipped_total` is always exposed.
    let callback_collect = Arc::new(CallbackCollect::new(callback_stats));
    registry.register(Arc::clone(&callback_collect) as _);
    let reload_collect = Arc::new(ReloadCollect::default());
    registry.register(Arc::clone(&reload_collect) as _);
    let (stack, publisher) = Switch::new(chain.layer(first.fanout));
    // Every drop counter of the registry, outputs a reload adds included.
    let drop_watch = Arc::new(DropWatch::new(
        registry.clone(),
        Some(Arc::clone(&callback_collect)),
        drops::INTERVAL,
    ));

    let mut summary = Summary {
        callbacks: Some(Arc::clone(&callback_collect)),
        drops: Some(Arc::clone(&drop_watch)),
        ..Summary::default()
    };
    let started = async {
        // Listeners: bind all before running any, so a port in use is reported up front.
        let listener_config = listener_config(&config)?;
        let mut listeners = Vec::new();
        for listen in config.listen_specs() {
            let stats = Arc::new(ListenerStats::new());
            let own = listener_config.clone().with_allow(listen.allow.clone());
            let listener = Listener::bind_with_stats(listen.spec, own, Arc::clone(&stats))
                .await
                .with_context(|| format!("listen `{listen}`"))?;
            // Labelled with the bound address: `hep_udp:127.0.0.1:0` names no listener.
            let collect = Arc::new(ListenerCollect::new(listener.spec(), Arc::clone(&stats)));
            registry.register(Arc::clone(&collect) as _);
            summary.listeners.push(collect);
            listeners.push(listener);
        }
        let metrics = match &config.metrics {
            Some(m) => {
                let l = metrics::bind(m.listen)
                    .await
                    .with_context(|| format!("metrics endpoint {}", m.listen))?;
                let addr = l.local_addr().unwrap_or(m.listen);
                Some((l, addr))
            }
            None => None,
        };
        anyhow::Ok((listeners, metrics))
    };
    let (listeners, metrics_listener) = match started.await {
        Ok(started) => started,
        Err(e) => {
            for o in outputs.retire_all() {
                o.close().await;
            }
            return Err(e);
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // The metrics stay up while the outputs drain, so that the drain can be watched.
    let (metrics_stop_tx, metrics_stop_rx) = tokio::sync::watch::channel(false);

    let metrics_stopped = move || {
        let mut rx = metrics_stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let metrics_task = metrics_listener.map(|(l, addr)| {
        tracing::info!(target: TARGET, %addr, "metrics on http://{addr}/metrics");
        tokio::spawn(metrics::serve(l, registry.clone(), metrics_stopped()))
    });
    // Drop warnings until the outputs are drained too (the caller says the rest at exit).
    let drop_task = tokio::spawn(Arc::clone(&drop_watch).run(metrics_stopped()));

    let mut running = JoinSet::new();
    for listener in listeners {
        let spec = listener.spec();
        let mut note = match listener.recv_buffer_size() {
            Some(n) => format!(
                " (receive buffer {} KiB as granted by the kernel)",
                n / 1024
            ),
            None => String::new(),
        };
        if let Some(allow) = listener.allow() {
            note.push_str(&format!(" (agents from {allow} only)"));
        }
        let bound = format!("{}:{}", spec.transport.scheme(), listener.local_addr());
        tracing::info!(target: TARGET, listener = %bound, "listening on {bound}{note}");
        let stop = stopped();
        if spec.transport == Transport::Udp {
            // UDP cannot push back: what the stack is not ready for is dropped and counted.
            let service = OverloadDrop::new(stack.clone(), Arc::clone(listener.stats()));
            running.spawn(async move { (spec, listener.run(service, stop).await) });
        } else {
            let service = stack.clone();
            running.spawn(async move { (spec, listener.run(service, stop).await) });
        }
    }
    let outputs_list = config.outputs.join(", ");
    tracing::info!(target: TARGET, outputs = %outputs_list, "writing to {outputs_list}");
    drop(stack);

    let mut live = Live {
        config,
        outputs,
        callbacks,
        publisher,
        callback_collect,
        reload_collect,
        retiring: JoinSet::new(),
        give_up: CancellationToken::new(),
    };
    tokio::pin!(shutdown);
    let mut reloads_open = true;
    loop {
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!(target: TARGET, "shutting down: draining listeners and outputs");
                break;
            }
            Some(done) = running.join_next() => {
                // A listener ended on its own: report it and stop the rest.
                if let Ok((spec, Err(e))) = done {
                    tracing::error!(listener = %spec, error = %e, "listener failed");
                }
                break;
            }
            reload = reloads.recv(), if reloads_open => match reload {
                Some(reload) => live.reload(reload),
                None => reloads_open = false,
            },
        }
    }
    // The deadline of everything from here on (`[limits] shutdown_timeout_ms`).
    let timeout = live.config.limits.shutdown_timeout();
    if let Some(timeout) = timeout {
        let give_up = live.give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            give_up.cancel();
        });
    }
    let _ = stop_tx.send(true);
    // The listeners finish the frames they are reading within their grace (at most half
    // the deadline), counting what they drop.
    loop {
        tokio::select! {
            done = running.join_next() => match done {
                Some(Ok((spec, Err(e)))) => {
                    tracing::error!(listener = %spec, error = %e, "listener failed while stopping");
                }
                Some(_) => {}
                None => break,
            },
            () = live.give_up.cancelled() => {
                tracing::error!("shutdown deadline: listeners still running; stopping them");
                running.abort_all();
                while running.join_next().await.is_some() {}
                break;
            }
        }
    }
    // The listeners are done: close every output, which drains its queue, and wait for
    // those a reload retired; at the deadline, each gives up and counts what it still had.
    for o in live.outputs.retire_all() {
        live.retiring
            .spawn(o.close_until(live.give_up.clone().cancelled_owned()));
    }
    let mut lost = 0;
    while let Some(done) = live.retiring.join_next().await {
        lost += done.unwrap_or(0);
    }
    let _ = metrics_stop_tx.send(true);
    if let Some(m) = metrics_task {
        let _ = m.await;
    }
    let _ = drop_task.await;
    if lost > 0 {
        let timeout = timeout.unwrap_or_default().as_millis();
        tracing::warn!(
            target: TARGET,
            lost,
            timeout_ms = timeout,
            "the shutdown deadline ({timeout} ms) passed: {lost} accepted messages still \
             queued in outputs were not delivered (hep_dropped_total{{stage=\"shutdown\",reason=\"deadline\"}})",
        );
    }
    (summary.outputs, summary.relays) = live.outputs.counters();
    Ok(summary)
}

/// What a reload may change, as running.
struct Live {
    /// The running configuration (a reload's, with the restart-only keys of the start).
    config: Config,
    outputs: Outputs,
    callbacks: CallbackSet,
    publisher: Publisher<Stack>,
    callback_collect: Arc<CallbackCollect>,
    reload_collect: Arc<ReloadCollect>,
    /// Outputs a reload removed, draining; each gives the messages it lost at the
    /// shutdown deadline.
    retiring: JoinSet<u64>,
    /// Cancelled when the shutdown deadline passes: draining outputs give up.
    give_up: CancellationToken,
}

impl Live {
    /// Switches to `reload`'s configuration, or logs why not and changes nothing.
    fn reload(&mut self, reload: Reload) {
        let file = reload.source.display();
        let refuse = |e: &anyhow::Error| {
            self.reload_collect.failed();
            tracing::error!("reload of {file} failed, the running configuration stays: {e:#}");
        };
        let new = match reload.config {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        let restart = self.config.restart_only_changes(&new);
        let new = self.config.reloaded(new);
        let outputs = match self.outputs.reconfigure(&new) {
            Ok(o) => o,
            Err(e) => return refuse(&e),
        };
        let (callbacks, callback_changes) = self.callbacks.rebuild(&new);
        let (chain, stats) = callbacks.chain();
        self.callback_collect.extend(stats);
        // Publish first, then close what is no longer used (see `Switch`).
        self.publisher.publish(chain.layer(outputs.fanout));
        self.callbacks = callbacks;
        self.config = new;
        self.reload_collect.succeeded();
        tracing::info!(
            "reloaded {file}: outputs [{}], callbacks [{callback_changes}]",
            outputs.changes
        );
        if !restart.is_empty() {
            tracing::warn!(
                "{file}: {} changed, which needs a restart: the running values stay",
                restart.join(", ")
            );
        }
        for old in outputs.retired {
            self.retiring
                .spawn(retire(old, self.give_up.clone().cancelled_owned()));
        }
    }
}

/// Closes an output a reload removed (or restarted), once it has written what it had
/// (or at the shutdown deadline, counting what it had not).
async fn retire(old: Retired, give_up: impl Future<Output = ()>) -> u64 {
    let spec = old.spec().to_string();
    let lost = old.close_until(give_up).await;
    if lost == 0 {
        tracing::info!(output = %spec, "output closed after the reload: its queue is written");
    }
    lost
}

fn listener_config(config: &Config) -> anyhow::Result<ListenerConfig> {
    let mut l = ListenerConfig::default();
    l.decode = DecodeOptions::default().with_max_inflated_len(config.limits.max_inflated_len);
    l.udp.recv_buffer_size = config.limits.udp_recv_buffer;
    l.tcp.max_msg_chunks = config.hep_max_msg_chunks;
    l.tcp.idle_timeout = Config::ms(config.limits.idle_timeout_ms);
    l.tcp.frame_timeout = Config::ms(config.limits.frame_timeout_ms);
    l.tcp.max_frame_length = config.limits.max_frame_length;
    let stream_listeners = config
        .listen_specs()
        .iter()
        .filter(|l| l.spec.transport != Transport::Udp)
        .count();
    l.tcp.max_connections =
        fd_limit::fitted_max_connections(config.limits.max_connections, stream_listeners);
    // Listeners get at most half the shutdown deadline, the outputs the rest.
    if let Some(timeout) = config.limits.shutdown_timeout() {
        l.shutdown_grace = l.shutdown_grace.min(timeout / 2);
    }
    let wants_tls = config
        .listen_specs()
        .iter()
        .any(|l| l.spec.transport == Transport::Tls);
    match (&config.tls, wants_tls) {
        (Some(t), _) => {
            let mut tls =
                TlsConfig::from_pem_files(&t.cert_file, &t.key_file, t.client_ca_file.as_deref())?
                    .with_handshake_timeout(Config::ms(t.handshake_timeout_ms));
            // `[tls.clients]`: a certificate it does not name is refused at the handshake;
            // the callback checks each message's capture id against it.
            if let Some(ids) = t.client_ids() {
                tls = tls.with_client_check(Arc::new(move |client| ids.knows(client)));
            }
            l = l.with_tls(tls);
        }
        (None, true) => {
            anyhow::bail!("a hep_tls listener needs a [tls] section with cert_file and key_file")
        }
        (None, false) => {}
    }
    Ok(l)
}
