//! `relay:hep_udp|hep_tcp|hep_tls:HOST[:PORT][;version=N][;spool=DIR]`: the messages
//! forwarded to another collector through a [`HepSender`].
//!
//! What a relay sends for a message is decided in one place, `mark::RelayEncoder`:
//! the bytes it was received as, unless a callback changed the message or the
//! destination speaks another HEP version (then the message encoded again), with this
//! collector's relay mark appended over HEPv3 (the mark lets the loop check,
//! `mark::LoopGuard`, drop a message that comes back).
//!
//! Two tasks drain a relay's queue:
//! - without a spool, `plain`: runs of messages offered to the sender, which queues
//!   them per connection and drops (and counts) what a stalled destination does not take;
//! - with `;spool=DIR`, `spooling`: every message appended to the disk spool
//!   ([`spool`]) and sent from there in order, at least once, resent from a replay window
//!   after a break.
//!
//! A relay's counters are those of its queue, its senders (a reload that changes its
//! settings starts a new sender) and its spool, collected together ([`RelayCollect`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use hep_transport::sender::ClientTls;
use hep_transport::{HepDestination, HepSender, SenderConfig, Transport};
use serde::Serialize;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

use super::queue::{OutputStats, Queued};
use super::{Context, Opened, Output, OutputSpec, Worker};

pub mod mark;
mod plain;
pub mod spool;
mod spooling;
mod stats;

pub use stats::RelayCollect;

use spool::Spool;

/// The settings a relay's sender is built with: the seed's `hep_async*` parameters,
/// `hep_send_timeout` and `[relay_tls]`. A relay whose settings change in a reload is
/// restarted (a new sender); one whose settings stay keeps its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Connect and write without blocking (`hep_async`).
    pub hep_async: bool,
    /// Blocking write timeout with `hep_async = false`, ms (`hep_send_timeout`).
    pub hep_send_timeout: u64,
    /// Per-connection queue, in messages (`hep_async_max_postponed_chunks`).
    pub hep_async_max_postponed_chunks: usize,
    /// How long a connect may hold the caller, ms (`hep_async_local_connect_timeout`).
    pub hep_async_local_connect_timeout: u64,
    /// How long a write may block before the rest is queued, ms
    /// (`hep_async_local_write_timeout`).
    pub hep_async_local_write_timeout: u64,
    /// TLS client settings of `relay:hep_tls:` outputs.
    pub relay_tls: Option<RelayTlsConfig>,
}

/// TLS client settings of `relay:hep_tls:` outputs (`[relay_tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayTlsConfig {
    /// PEM CA bundle the collector's certificate must chain to (no system store).
    pub ca_file: PathBuf,
    /// PEM client certificate chain, presented when the collector asks (mTLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to send (SNI) and verify instead of the destination's host.
    pub server_name: Option<String>,
}

/// What makes two instances of the relay `spec` the same one: the settings its sender is
/// built with (`None` for any other output, and for a spooling relay, which a reload
/// never restarts: two instances must not write one spool; its settings change with a
/// restart of the collector).
pub(crate) fn restart_key(spec: &OutputSpec, settings: &RelaySettings) -> Option<RelaySettings> {
    match spec {
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
    }
}

/// The client side of the `relay:hep_tls:` outputs among `specs`, from `[relay_tls]`;
/// `None` when none of them is one.
///
/// # Errors
/// A TLS relay without `[relay_tls]`, or TLS files that cannot be read.
pub(crate) fn client_tls<'a>(
    mut specs: impl Iterator<Item = &'a OutputSpec>,
    settings: &RelaySettings,
) -> anyhow::Result<Option<ClientTls>> {
    let Some(tls_relay) = specs.find(|o| {
        o.relay_destination()
            .is_some_and(|d| d.transport() == Transport::Tls)
    }) else {
        return Ok(None);
    };
    let Some(t) = &settings.relay_tls else {
        anyhow::bail!(
            "output `{tls_relay}`: a hep_tls relay needs a [relay_tls] section with `ca_file` \
             (the CA that signed the collector's certificate)"
        );
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

fn sender_config(settings: &RelaySettings, tls: Option<&ClientTls>) -> SenderConfig {
    let ms = std::time::Duration::from_millis;
    let mut s = SenderConfig::default();
    s.tls = tls.cloned();
    s.hep_async = settings.hep_async;
    s.hep_async_local_connect_timeout = ms(settings.hep_async_local_connect_timeout);
    s.hep_async_local_write_timeout = ms(settings.hep_async_local_write_timeout);
    s.hep_async_max_postponed_chunks = settings.hep_async_max_postponed_chunks;
    s.hep_send_timeout = ms(settings.hep_send_timeout);
    s
}

/// A relay ready to start: its sender, and its spool if it has one.
struct Relay {
    dest: HepDestination,
    sender: HepSender,
    spool: Option<Spool>,
}

/// Opens the relay to `dest` (spooling in `spool`, if given): builds its sender, opens
/// its spool.
///
/// # Errors
/// The sender cannot be built, or the spool cannot be opened.
pub(crate) fn open(
    dest: &HepDestination,
    spool: Option<&Path>,
    cx: &mut Context<'_>,
) -> anyhow::Result<Opened> {
    let name = cx.name;
    let mut sender_cfg = sender_config(&cx.settings.relay, cx.tls);
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
        sender_cfg.hep_send_timeout = sender_cfg.hep_send_timeout.max(sender_cfg.stall_timeout);
    }
    let sender =
        HepSender::new(dest.clone(), sender_cfg).with_context(|| format!("output `{name}`"))?;
    // Collected with its sender's and its spool's (`RelayCollect`), not on their own.
    let stats = cx.counters.output(name, false);
    let collect = cx
        .counters
        .kind(name, || RelayCollect::new(Arc::clone(&stats)));
    collect.add_sender(Arc::clone(sender.stats()));
    let spool = match spool {
        None => None,
        Some(dir) => Some(
            Spool::open(dir, cx.settings.spool, collect.spool_or_new())
                .with_context(|| format!("output `{name}`: spool"))?,
        ),
    };
    Ok(Opened::queued(
        stats,
        Relay {
            dest: dest.clone(),
            sender,
            spool,
        },
    ))
}

impl Output for Relay {
    fn start(
        self: Box<Self>,
        queue: Receiver<Queued>,
        stats: Arc<OutputStats>,
        close: CancellationToken,
    ) -> std::io::Result<Worker> {
        let Self {
            dest,
            sender,
            spool,
        } = *self;
        let task = match spool {
            None => tokio::spawn(plain::forward(dest, sender, queue, stats, close)),
            Some(spool) => {
                tokio::spawn(spooling::forward(dest, sender, queue, stats, spool, close))
            }
        };
        Ok(Worker::Task(task))
    }
}
