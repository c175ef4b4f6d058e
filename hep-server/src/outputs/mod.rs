//! Where accepted messages go: the end of the service stack ([`fanout`]), each output's
//! bounded queue ([`queue`]), and one module per output kind.
//!
//! ```text
//!  callbacks ──> Fanout ──┬── queue ──> stdout     (thread: text lines)
//!                         ├── queue ──> json:PATH  (thread: JSON records)
//!                         ├── queue ──> pcap:PATH  (thread: rebuilt packets)
//!                         ├── queue ──> store:DIR  (threads: rows, writer -> crate::store)
//!                         ├── queue ──> relay:...  (task: HepSender; spool=DIR: disk first)
//!                         ├── queue ──> nats:...   (task: JetStream publishes; spool=DIR)
//!                         └── null                 (counted as it passes)
//! ```
//!
//! Every kind but `null` is an `Output`: opened from its spec (a file created, a
//! store or spool opened, a sender built), then started on the receiving end of its
//! queue, it writes what the queue brings, counts each message in its [`OutputStats`]
//! (and in counters of its own, kept across reloads by `counters::Counters`), and
//! drains the queue when it is closed. The running set, and how a reload changes it
//! without losing a message, is `set`.
//!
//! # Adding an output kind
//! Its module (`open`, and an `Output` for its worker), its spec's syntax in
//! [`OutputSpec`], and one line in `outputs::open`.

use std::sync::Arc;

use hep_transport::sender::ClientTls;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) mod conflict;
pub(crate) mod counters;
pub mod fanout;
mod json;
mod nats;
mod null;
mod pcap;
pub(crate) mod progress;
pub mod queue;
pub mod relay;
pub(crate) mod set;
mod spec;
mod stdout;
mod store;
mod writer;

pub use conflict::OutputConflict;
pub use spec::{OutputSpec, OutputSpecError};

use counters::Counters;
use queue::{OutputStats, Queued};
use relay::RelaySettings;
use relay::spool::SpoolConfig;

use crate::store::StoreConfig;

/// What outputs are started with besides their specs: the settings of their kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSettings {
    /// Relays: the seed's `hep_async*`, `hep_send_timeout`, and `[relay_tls]`.
    pub relay: RelaySettings,
    /// Spooling relays (`[spool]`).
    pub spool: SpoolConfig,
    /// Stores (`[store]`).
    pub store: StoreConfig,
}

/// An opened output's worker side: started with the receiving end of its queue.
pub(crate) trait Output: Send {
    /// Starts the worker (a thread or a task) that takes messages off `queue` and writes
    /// them, counting each in `stats` as delivered or failed once it leaves the queue.
    ///
    /// The worker drains: when `close` is cancelled it closes `queue` to new messages,
    /// writes what the queue holds (slots already reserved included) and ends; likewise
    /// once every sender of `queue` is gone. Once the shutdown deadline has abandoned
    /// the output ([`OutputStats::record_written`] returns `false`), it counts nothing
    /// more and stops.
    ///
    /// # Errors
    /// The worker's thread cannot be started.
    fn start(
        self: Box<Self>,
        queue: Receiver<Queued>,
        stats: Arc<OutputStats>,
        close: CancellationToken,
    ) -> std::io::Result<Worker>;
}

/// What closing an output waits for.
#[derive(Debug)]
pub(crate) enum Worker {
    /// Nothing: the output is counted as messages pass (`null`).
    Inline,
    /// A thread, which completes the receiver when it ends (panics included): waiting
    /// for it takes no blocking thread.
    Thread(oneshot::Receiver<()>),
    /// A task on the runtime, which the shutdown deadline may abort.
    Task(JoinHandle<()>),
}

/// An output opened from its spec, ready to start.
pub(crate) struct Opened {
    /// Its queue counters.
    pub(crate) stats: Arc<OutputStats>,
    /// Its worker side; `None` for an output counted inline (`null`), which has no queue.
    pub(crate) output: Option<Box<dyn Output>>,
}

impl Opened {
    /// An output with a queue and a worker.
    pub(crate) fn queued(stats: Arc<OutputStats>, output: impl Output + 'static) -> Self {
        Self {
            stats,
            output: Some(Box::new(output)),
        }
    }

    /// An output counted as messages pass, without a queue.
    pub(crate) fn inline(stats: Arc<OutputStats>) -> Self {
        Self {
            stats,
            output: None,
        }
    }
}

/// What opening an output takes besides its spec.
pub(crate) struct Context<'a> {
    /// The output's name (its spec, written out): its counters', threads' and logs'.
    pub(crate) name: &'a str,
    /// The settings of the kinds.
    pub(crate) settings: &'a OutputSettings,
    /// The TLS client of the `relay:hep_tls:` outputs being started, if any.
    pub(crate) tls: Option<&'a ClientTls>,
    /// Where its counters are kept across reloads.
    pub(crate) counters: &'a mut Counters,
}

/// Opens the output `spec`: the one list of output kinds.
///
/// # Errors
/// The output cannot be opened (naming it and what failed).
pub(crate) fn open(spec: &OutputSpec, cx: &mut Context<'_>) -> anyhow::Result<Opened> {
    match spec {
        OutputSpec::Stdout => Ok(stdout::open(cx)),
        OutputSpec::Json(path) => json::open(path.as_deref(), cx),
        OutputSpec::Pcap(path) => pcap::open(path, cx),
        OutputSpec::Relay { dest, spool } => relay::open(dest, spool.as_deref(), cx),
        OutputSpec::Store(dir) => store::open(dir, cx),
        OutputSpec::Null => Ok(null::open(cx)),
        OutputSpec::Nats(spec) => nats::open(spec, cx),
    }
}
