//! The collector: listeners -> callback stack -> outputs, until shutdown.
//!
//! ```text
//!  hep_udp ─┐                                                   ┌─ queue ─ stdout / json / pcap (thread)
//!  hep_tcp ─┼─ Received ─> [auth] [filter] [rate limit] ─> ... ─┼─ queue ─ relay (task, HepSender)
//!  hep_tls ─┘   (UDP: OverloadDrop; TCP/TLS: backpressure)      └─ null (counted inline)
//! ```
//!
//! Shutdown is a parameter (mini-redis): when it completes, listeners stop accepting and
//! finish what they hold, the queues drain, outputs flush and close, and the final
//! counters are returned.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context as _;
use hep_callbacks::{AuthKeyCheck, CallbackStats, Dedup, Filter, HepCallbacks, RateLimit, Rewrite};
use hep_proto::DecodeOptions;
use hep_transport::layer::overload::OverloadDrop;
use hep_transport::sender::ClientTls;
use hep_transport::{
    HepDestination, HepSender, Listener, ListenerConfig, ListenerStats, SenderConfig, TlsConfig,
    Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tower::{Layer as _, Service as _, ServiceExt as _};

use crate::config::Config;
use crate::metrics::{self, Registry};
use crate::output::OutputSpec;
use crate::output::fanout::{Fanout, OutputQueue, OutputStats, Queued};
use crate::output::pcap::PcapFileWriter;
use crate::output::writer::{self, Format};
use crate::stats::{CallbackCollect, ListenerCollect, RelayCollect, Summary};

/// Runs the collector described by `config` until `shutdown` completes.
///
/// # Errors
/// Set-up failures (a port in use, an unwritable output file, unreadable TLS files), each
/// naming what failed. Once running, bad input and failing outputs are counted, not errors.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    let mut registry = Registry::new();
    let mut summary = Summary::default();

    // Outputs first: a listener must have somewhere to hand messages.
    let mut queues = Vec::new();
    let mut null = Vec::new();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut relays = JoinSet::new();
    let relay_tls = relay_tls(&config)?;
    for spec in config.output_specs() {
        let stats = Arc::new(OutputStats::new(spec.to_string()));
        summary.outputs.push(Arc::clone(&stats));
        let capacity = config.limits.output_queue;
        match &spec {
            OutputSpec::Null => {
                registry.register(Arc::clone(&stats) as _);
                null.push(stats);
            }
            OutputSpec::Relay(dest) => {
                let sender =
                    HepSender::new(dest.clone(), sender_config(&config, relay_tls.as_ref()))
                        .with_context(|| format!("output `{spec}`"))?;
                let collect = Arc::new(RelayCollect::new(
                    Arc::clone(&stats),
                    Arc::clone(sender.stats()),
                ));
                registry.register(Arc::clone(&collect) as _);
                summary.relays.push(collect);
                let (queue, rx) = OutputQueue::new(capacity, Arc::clone(&stats));
                queues.push(queue);
                relays.spawn(relay(dest.clone(), sender, rx, stats));
            }
            OutputSpec::Stdout | OutputSpec::Json(_) | OutputSpec::Pcap(_) => {
                registry.register(Arc::clone(&stats) as _);
                let format = match &spec {
                    OutputSpec::Stdout => Format::text_stdout(),
                    OutputSpec::Json(path) => Format::json(path.as_deref())
                        .with_context(|| format!("output `{spec}`: cannot create the file"))?,
                    OutputSpec::Pcap(path) => Format::Pcap(
                        PcapFileWriter::create(path)
                            .with_context(|| format!("output `{spec}`: cannot create the file"))?,
                    ),
                    _ => unreachable!("matched above"),
                };
                let (queue, rx) = OutputQueue::new(capacity, Arc::clone(&stats));
                queues.push(queue);
                threads.push(
                    writer::spawn(format, rx, stats)
                        .with_context(|| format!("output `{spec}`: thread"))?,
                );
            }
        }
    }
    let fanout = Fanout::new(queues, null);

    // The callback stack: cheap refusals first.
    let callbacks = callbacks(&config);
    let callback_stats: Vec<Arc<CallbackStats>> = callbacks.stats();
    // Registered even without callbacks: `hep_skipped_total` is always exposed.
    let collect = Arc::new(CallbackCollect(callback_stats));
    registry.register(Arc::clone(&collect) as _);
    summary.callbacks = Some(collect);
    let stack = callbacks.layer(fanout);

    // Listeners: bind all before running any, so a port in use is reported up front.
    let listener_config = listener_config(&config)?;
    let mut listeners = Vec::new();
    for spec in config.listen_specs() {
        let stats = Arc::new(ListenerStats::new());
        let listener = Listener::bind_with_stats(spec, listener_config.clone(), Arc::clone(&stats))
            .await
            .with_context(|| format!("listen `{spec}`"))?;
        // Labelled with the bound address: `hep_udp:127.0.0.1:0` names no listener.
        let collect = Arc::new(ListenerCollect::new(listener.spec(), Arc::clone(&stats)));
        registry.register(Arc::clone(&collect) as _);
        summary.listeners.push(collect);
        listeners.push(listener);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let metrics_task = match &config.metrics {
        Some(m) => {
            let l = metrics::bind(m.listen)
                .await
                .with_context(|| format!("metrics endpoint {}", m.listen))?;
            let addr = l.local_addr().unwrap_or(m.listen);
            eprintln!("hep-server: metrics on http://{addr}/metrics");
            Some(tokio::spawn(metrics::serve(l, registry.clone(), stopped())))
        }
        None => None,
    };

    let mut running = JoinSet::new();
    for listener in listeners {
        let spec = listener.spec();
        let note = match listener.recv_buffer_size() {
            Some(n) => format!(
                " (receive buffer {} KiB as granted by the kernel)",
                n / 1024
            ),
            None => String::new(),
        };
        eprintln!(
            "hep-server: listening on {}:{}{note}",
            spec.transport.scheme(),
            listener.local_addr()
        );
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
    eprintln!(
        "hep-server: writing to {}",
        config
            .outputs
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(stack);

    tokio::select! {
        () = shutdown => {
            eprintln!("hep-server: shutting down: draining listeners and outputs");
        }
        Some(done) = running.join_next() => {
            // A listener ended on its own: report it and stop the rest.
            if let Ok((spec, Err(e))) = done {
                tracing::error!(listener = %spec, error = %e, "listener failed");
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = running.join_next().await {
        if let Ok((spec, Err(e))) = done {
            tracing::error!(listener = %spec, error = %e, "listener failed while stopping");
        }
    }
    // Every service clone is gone with the listeners: queues close, outputs drain.
    while relays.join_next().await.is_some() {}
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    if let Some(m) = metrics_task {
        let _ = m.await;
    }
    Ok(summary)
}

fn listener_config(config: &Config) -> anyhow::Result<ListenerConfig> {
    let mut l = ListenerConfig::default();
    l.decode = DecodeOptions::default().max_inflated_len(config.limits.max_inflated_len);
    l.udp.recv_buffer_size = config.limits.udp_recv_buffer;
    l.tcp.max_msg_chunks = config.hep_max_msg_chunks;
    l.tcp.idle_timeout = Config::ms(config.limits.idle_timeout_ms);
    l.tcp.frame_timeout = Config::ms(config.limits.frame_timeout_ms);
    l.tcp.max_frame_length = config.limits.max_frame_length;
    l.tcp.max_connections = config.limits.max_connections;
    let wants_tls = config
        .listen_specs()
        .iter()
        .any(|s| s.transport == Transport::Tls);
    match (&config.tls, wants_tls) {
        (Some(t), _) => {
            let tls =
                TlsConfig::from_pem_files(&t.cert_file, &t.key_file, t.client_ca_file.as_deref())?
                    .with_handshake_timeout(Config::ms(t.handshake_timeout_ms));
            l = l.with_tls(tls);
        }
        (None, true) => {
            anyhow::bail!("a hep_tls listener needs a [tls] section with cert_file and key_file")
        }
        (None, false) => {}
    }
    Ok(l)
}

/// The client side of `relay:hep_tls:` outputs, from `[relay_tls]`.
fn relay_tls(config: &Config) -> anyhow::Result<Option<ClientTls>> {
    let Some(t) = &config.relay_tls else {
        let tls_relay = config
            .output_specs()
            .into_iter()
            .find(|o| matches!(o, OutputSpec::Relay(d) if d.transport() == Transport::Tls));
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

fn callbacks(config: &Config) -> HepCallbacks {
    let mut chain = HepCallbacks::new();
    if let Some(a) = &config.auth {
        let check = if a.keys.is_empty() {
            AuthKeyCheck::shared(a.key.clone().unwrap_or_default())
        } else {
            let keys = a
                .keys_by_id()
                .into_iter()
                .map(|(id, k)| (id, k.into()))
                .collect();
            AuthKeyCheck::per_capture_id(keys, a.key.clone().map(Into::into))
        };
        chain = chain.register(check.strip_key(a.strip));
    }
    if let Some(f) = &config.filter {
        let mut filter = Filter::new();
        if let Some(t) = f.proto_type_values() {
            filter = filter.proto_types(t.iter().copied());
        }
        if let Some(ids) = &f.capture_ids {
            filter = filter.capture_ids(ids.iter().copied());
        }
        if let Some(n) = f.agent_net_values() {
            filter = filter.agent_networks(n.iter().copied());
        }
        if let Some(n) = f.source_net_values() {
            filter = filter.source_networks(n.iter().copied());
        }
        if let Some(m) = &f.allow_sip_methods {
            filter = filter.allow_sip_methods(m);
        }
        chain = chain.register(filter.deny_sip_methods(&f.deny_sip_methods));
    }
    if let Some(r) = &config.rate_limit {
        chain = chain.register(RateLimit::new(r.rate, r.burst));
    }
    if let Some(r) = &config.rewrite {
        let mut rw = Rewrite::new();
        if let Some(id) = r.capture_id {
            rw = rw.capture_id(id);
        }
        if let Some(n) = &r.node_name {
            rw = rw.node_name(n.clone());
        }
        chain = chain.register(rw);
    }
    if let Some(d) = &config.dedup {
        chain = chain.register(
            Dedup::new(Config::ms(d.window_ms))
                .capture_id_aware(d.capture_id_aware)
                .max_entries(d.max_entries),
        );
    }
    chain
}

/// Forwards queued messages: the received bytes when nothing changed them and the
/// destination speaks their version, else the message re-encoded.
async fn relay(
    dest: HepDestination,
    mut sender: HepSender,
    mut rx: mpsc::Receiver<Queued>,
    stats: Arc<OutputStats>,
) {
    let version = dest.version();
    while let Some(m) = rx.recv().await {
        stats.dequeued(1);
        let bytes = if !m.modified && m.message.version == Some(version) {
            m.wire.clone()
        } else {
            match m.message.encode(version) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(output = %dest, error = %e, "cannot encode for the relay");
                    stats.add_failed(1);
                    continue;
                }
            }
        };
        // Sync mode: waits for a free slot (backpressure into our queue). Async mode:
        // always ready; the sender queues, and counts what it has to drop.
        match sender.ready().await {
            Ok(s) => {
                let _ = s.call(bytes).await;
            }
            Err(_) => stats.add_failed(1),
        }
    }
    sender.close().await;
}
