//! The listeners of a run: bound all at once before any runs (a port in use is reported
//! up front), then each run on a task until the stop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use hep_proto::DecodeOptions;
use hep_transport::layer::overload::OverloadDrop;
use hep_transport::{ListenSpec, Listener, ListenerConfig, ListenerStats, TlsConfig, Transport};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Stack;
use super::fd_limit;
use super::shutdown::Shutdown;
use super::switch::Switch;
use crate::config::{Config, Written};
use crate::telemetry::log::TARGET;
use crate::telemetry::metrics::Registry;
use crate::telemetry::stats::ListenerCollect;

/// Binds every listener of `config`, registering its counters; returns them with their
/// counters, for the exit summary.
///
/// # Errors
/// A listener that cannot be bound (a port in use), or TLS files that cannot be read.
pub(super) async fn bind(
    config: &Config,
    registry: &Registry,
) -> anyhow::Result<(Vec<Listener>, Vec<Arc<ListenerCollect>>)> {
    let listener_config = listener_config(config)?;
    let mut listeners = Vec::new();
    let mut collects = Vec::new();
    for listen in config.listen.iter().map(Written::value) {
        let stats = Arc::new(ListenerStats::new());
        let own = listener_config.clone().with_allow(listen.allow.clone());
        let listener = Listener::bind_with_stats(listen.spec, own, Arc::clone(&stats))
            .await
            .with_context(|| format!("listen `{listen}`"))?;
        // Labelled with the bound address: `hep_udp:127.0.0.1:0` names no listener.
        let collect = Arc::new(ListenerCollect::new(listener.spec(), Arc::clone(&stats)));
        registry.register(Arc::clone(&collect) as _);
        collects.push(collect);
        listeners.push(listener);
    }
    Ok((listeners, collects))
}

/// Runs each listener on a task of `shutdown.listening`, calling `stack`, until
/// `shutdown.listeners` is cancelled (at `shutdown.deadline`, the task drops it).
/// `ended` is cancelled when a listener's task ends: one that ends on its own stops the
/// run.
pub(super) fn spawn(
    listeners: Vec<Listener>,
    stack: &Switch<Stack>,
    shutdown: &Shutdown,
    ended: &CancellationToken,
) {
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
        let stop = shutdown.listeners.clone();
        let until = stop.clone().cancelled_owned();
        let watch = Watch {
            spec,
            stop,
            deadline: shutdown.deadline.clone(),
            _ended: ended.clone().drop_guard(),
        };
        if spec.transport == Transport::Udp {
            // UDP cannot push back: what the stack is not ready for is dropped and counted.
            let service = OverloadDrop::new(stack.clone(), Arc::clone(listener.stats()));
            shutdown
                .listening
                .spawn(watch.run(listener.run(service, until)));
        } else {
            shutdown
                .listening
                .spawn(watch.run(listener.run(stack.clone(), until)));
        }
    }
}

/// What a listener's task watches besides the listener.
struct Watch {
    spec: ListenSpec,
    /// Cancelled when the run stops (the listener was told to stop).
    stop: CancellationToken,
    /// Cancelled at the shutdown deadline: the listener is dropped.
    deadline: CancellationToken,
    /// Cancels the run's `ended` token when the task ends, however it ends.
    _ended: DropGuard,
}

impl Watch {
    /// Runs `listener` (a listener's `run`) until it ends or the deadline passes; logs
    /// why it failed, if it did.
    async fn run(self, listener: impl Future<Output = Result<(), impl fmt::Display>>) {
        let spec = self.spec;
        tokio::select! {
            result = listener => {
                if let Err(e) = result {
                    if self.stop.is_cancelled() {
                        tracing::error!(listener = %spec, error = %e, "listener failed while stopping");
                    } else {
                        tracing::error!(listener = %spec, error = %e, "listener failed");
                    }
                }
            }
            () = self.deadline.cancelled() => {}
        }
    }
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
        .listen
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
        .listen
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
