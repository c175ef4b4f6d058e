//! The collector: listeners -> callback stack -> outputs, until shutdown.
//!
//! - `listeners`: bound all at once, each run on a task;
//! - [`switch`]: the service the listeners hold, whose stack a reload replaces;
//! - `reload`: what a reload changes, and how ([`Reload`]);
//! - `shutdown`: the cancellation tree a stop goes down;
//! - `summary`: the counters summed up at exit ([`Summary`]);
//! - [`fd_limit`]: `[limits] max_connections` fitted to the open-files limit;
//! - `service_manager`: readiness, reloads, the stop and the watchdog told to systemd
//!   (`Type=notify`).
//!
//! ```text
//!  hep_udp ─┐            ┌──────────── Switch (the current stack) ─────────────┐
//!  hep_tcp ─┼─ Received ─┤ [auth] [filter] [rate limit] ... ─> fan-out ─┬─ queue ─ store (threads: rows, writer)
//!  hep_tls ─┘            │                                             ├─ queue ─ stdout / json / pcap (thread)
//!   (UDP: OverloadDrop; TCP/TLS: backpressure)                         ├─ queue ─ relay (task, HepSender)
//!                                                                      └─ null (counted inline)
//! ```
//!
//! Shutdown is a parameter (mini-redis): when it completes, listeners stop accepting and
//! finish what they hold, the queues drain, outputs flush and close, and the final
//! counters are returned (the `shutdown` module has the order, as a tree of cancellation
//! tokens).
//!
//! # Reload
//!
//! [`run_with_reloads`] also takes configurations to switch to (the binary sends one per
//! SIGHUP). What can change safely changes: the callbacks and the outputs. A reload is
//! all or nothing: the new outputs are started first (a file that cannot be created
//! refuses the reload, and the running configuration stays), then the new stack is
//! published to every listener through the [`Switch`], then the outputs no longer
//! configured are closed: each writes what it had been given, so nothing accepted is
//! lost (see the `outputs::set` module). Listeners, `[limits]`, `[tls]`, `[metrics]` and
//! `[log]` need a restart: a reload that changes them says so and keeps the running
//! values. Every outcome is logged (`reloaded FILE: outputs [...], callbacks [...]`, or
//! why not) and counted (`hep_config_reloads_total{result}`).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::Layer as _;

pub mod fd_limit;
mod listeners;
mod reload;
mod service_manager;
mod shutdown;
mod summary;
pub mod switch;

pub use reload::Reload;
pub use summary::Summary;

use crate::aliases::SharedAliases;
use crate::callbacks::CallbackSet;
use crate::config::{Config, Written};
use crate::http;
use crate::outputs::fanout::Fanout;
use crate::outputs::set::Outputs;
use crate::telemetry::drops::{self, DropWatch};
use crate::telemetry::log::TARGET;
use crate::telemetry::metrics::{self, Registry};
use crate::telemetry::stats::{CallbackCollect, ReloadCollect};
use reload::Live;
use shutdown::Shutdown;
use switch::Switch;

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
    stop: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Reload>,
) -> anyhow::Result<Summary> {
    let registry = Registry::new();
    let shutdown = Shutdown::new();

    // Outputs first: a listener must have somewhere to hand messages.
    let mut outputs = Outputs::new(
        registry.clone(),
        config.limits.output_queue,
        shutdown.outputs.clone(),
    );
    let first = reload::reconfigure(&mut outputs, &config)?;

    // The callback stack: cheap refusals first.
    let (callbacks, _) = CallbackSet::default().rebuild(&config);
    let (chain, callback_stats) = callbacks.chain();
    // Registered even without callbacks: `hep_skipped_total` is always exposed.
    let callback_collect = Arc::new(CallbackCollect::new(callback_stats));
    registry.register(Arc::clone(&callback_collect) as _);
    let reload_collect = Arc::new(ReloadCollect::default());
    registry.register(Arc::clone(&reload_collect) as _);
    // The live view's feed (`GET /api/v1/live`), when the API is on.
    let live_feed = config
        .http
        .enabled
        .then(|| tokio::sync::broadcast::channel(http::LIVE_CAPACITY).0);
    // The SIP KPIs' feed, when they are on: offered every message, never waited for.
    let (kpi_feed, kpi_rx) = match config.kpi.enabled {
        true => {
            let (feed, rx) = crate::kpi::KpiFeed::channel(crate::kpi::QUEUED_BATCHES);
            (Some(feed), Some(rx))
        }
        false => (None, None),
    };
    // `[aliases]` for the API's ladders, replaced by a reload.
    let aliases = SharedAliases::new(config.aliases.clone());
    let (stack, publisher) = Switch::new(
        chain.layer(
            first
                .fanout
                .with_live(live_feed.clone())
                .with_kpi(kpi_feed.clone()),
        ),
    );
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
        // An input's positions file, where it must be written, before anything is bound.
        crate::inputs::check_positions(&config.inputs, config.store_dir())?;
        // Listeners: bind all before running any, so a port in use is reported up front.
        let (listeners, collects) = listeners::bind(&config, &registry).await?;
        summary.listeners = collects;
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
        // The API reads the store the outputs write (as `search` does, from its files).
        let store = config.store_dir().map(std::path::Path::to_path_buf);
        let http = http::bind(
            &config.http,
            store,
            live_feed.clone(),
            aliases.clone(),
            &config.cluster,
            &config.kpi,
            &registry,
        )
        .await?;
        anyhow::Ok((listeners, metrics, http))
    };
    let (listeners, metrics_listener, http_server) = match started.await {
        Ok(started) => started,
        Err(e) => {
            for o in outputs.retire_all() {
                o.close().await;
            }
            return Err(e);
        }
    };

    // The metrics stay up while the outputs drain, so that the drain can be watched.
    if let Some((l, addr)) = metrics_listener {
        tracing::info!(target: TARGET, %addr, "metrics on http://{addr}/metrics");
        let until = shutdown.run().clone().cancelled_owned();
        shutdown
            .watching
            .spawn(metrics::serve(l, registry.clone(), until));
    }
    // The KPIs follow their queue until the outputs are drained (what the listeners took
    // last is counted too).
    if let (Some(feed), Some(rx)) = (&kpi_feed, kpi_rx) {
        let task = crate::kpi::KpiTask::new(&config.kpi, &config.aliases, feed, rx);
        registry.register(Arc::clone(&task.metrics) as _);
        let until = shutdown.run().clone();
        // A thread of its own, not the blocking pool's: it lowers its own priority.
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        let started = std::thread::Builder::new()
            .name("hep-kpi".into())
            .spawn(move || {
                task.run(&until);
                let _ = done.send(());
            });
        match started {
            // A panic in the tracker ends the KPIs, not the run; it is in the log.
            Ok(_) => {
                shutdown.watching.spawn(async move {
                    let _ = ended.await;
                });
            }
            Err(e) => {
                tracing::error!(target: TARGET, error = %e, "kpi: cannot start the tracker's thread; no SIP KPIs")
            }
        }
    }
    // Drop warnings until the outputs are drained too (the caller says the rest at exit).
    let until = shutdown.run().clone().cancelled_owned();
    shutdown.watching.spawn(Arc::clone(&drop_watch).run(until));

    // The API stops with the listeners: nothing new is asked, what is being answered is
    // answered (within its request timeout, and the deadline).
    if let Some(server) = http_server {
        let addr = server.local_addr();
        let scheme = server.scheme();
        tracing::info!(target: TARGET, %addr, "http listening on {addr} ({scheme}://{addr}/)");
        let until = shutdown.listeners.clone().cancelled_owned();
        let deadline = shutdown.deadline.clone();
        shutdown.listening.spawn(async move {
            tokio::select! {
                () = server.serve(until) => {}
                () = deadline.cancelled() => {}
            }
        });
    }
    // A listener that ends on its own stops the run.
    let listener_ended = CancellationToken::new();
    listeners::spawn(listeners, &stack, &shutdown, &listener_ended);
    // Inputs stop with the listeners; their positions move as the outputs have what
    // they took.
    crate::inputs::spawn(
        &config.inputs,
        config.store_dir(),
        &stack,
        &outputs.progress(),
        &registry,
        &shutdown.listening,
        &shutdown.listeners,
    );
    let outputs_list = config
        .outputs
        .iter()
        .map(Written::text)
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(target: TARGET, outputs = %outputs_list, "writing to {outputs_list}");
    drop(stack);
    // Every listener is bound and serving: what systemd waits for (`Type=notify`).
    service_manager::ready(&format!("writing to {outputs_list}"));
    // Until the process ends: a drain is watched too.
    if let Some(pings) = service_manager::watchdog(shutdown.run().clone().cancelled_owned()) {
        shutdown.watching.spawn(pings);
    }

    let mut live = Live {
        config,
        outputs,
        callbacks,
        publisher,
        callback_collect,
        reload_collect,
        draining: shutdown.draining.clone(),
        deadline: shutdown.deadline.clone(),
        live_feed,
        kpi_feed,
        aliases,
    };
    tokio::pin!(stop);
    let mut reloads_open = true;
    loop {
        tokio::select! {
            () = &mut stop => {
                tracing::info!(target: TARGET, "shutting down: draining listeners and outputs");
                service_manager::stopping();
                break;
            }
            // Reported by its task, if it failed.
            () = listener_ended.cancelled() => {
                service_manager::stopping();
                break;
            }
            reload = reloads.recv(), if reloads_open => match reload {
                Some(reload) => {
                    service_manager::reloading();
                    let file = reload.source.display().to_string();
                    let status = if live.reload(reload) {
                        format!("reloaded {file}")
                    } else {
                        format!("reload of {file} refused, the running configuration stays")
                    };
                    service_manager::ready(&status);
                }
                None => reloads_open = false,
            },
        }
    }
    // The deadline of everything from here on (`[limits] shutdown_timeout_ms`).
    let timeout = live.config.limits.shutdown_timeout();
    shutdown.begin(timeout);
    // The listeners finish the frames they are reading within their grace (at most half
    // the deadline), counting what they drop.
    shutdown.listeners_done().await;
    // The listeners are done: close every output, which drains its queue, and wait for
    // those a reload retired; at the deadline, each gives up and counts what it still had.
    for o in live.outputs.retire_all() {
        shutdown
            .draining
            .spawn(o.close_until(shutdown.deadline.clone().cancelled_owned()));
    }
    shutdown.outputs_done().await;
    shutdown.finish().await;
    (summary.outputs, summary.relays) = live.outputs.counters();
    let lost = summary.lost_at_deadline();
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
    Ok(summary)
}
