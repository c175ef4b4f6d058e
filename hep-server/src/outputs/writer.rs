//! The worker of the outputs that write a file or standard output (`stdout`, `json:`,
//! `pcap:`): one thread each, batching writes and flushing within about 100 ms of a
//! message, so that `tail -f` and tests see it. The kinds differ only in their
//! [`Format`].

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hep_transport::{RateLimitedWarn, Received};
use tokio::runtime::Handle;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::queue::{self, OutputStats, Queued};
use super::{Output, Worker};

/// How long written data may sit in a buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Messages written between looks at the clock.
const BATCH: usize = 1024;

/// How a file output writes messages: the one thing its kinds differ in.
pub(crate) trait Format: Send + 'static {
    /// Writes `m` (into a buffer: [`flush`](Self::flush) writes it out).
    fn write(&mut self, m: &Received) -> io::Result<()>;

    /// Writes out what is buffered.
    fn flush(&mut self) -> io::Result<()>;
}

/// An output writing each message in format `F`, on a thread of its own.
pub(crate) struct FileOutput<F>(pub(crate) F);

impl<F: Format> Output for FileOutput<F> {
    /// Starts the writer thread; it ends when the queue is drained after every sender of
    /// `queue` is gone, or after `close` (then no new message is queued; those queued or
    /// with a slot reserved are still written). The worker completes when the thread
    /// ends, panics included: waiting for it takes no blocking thread, so a writer stuck
    /// in a write cannot hold up the runtime's shutdown.
    fn start(
        self: Box<Self>,
        mut queue: Receiver<Queued>,
        stats: Arc<OutputStats>,
        close: CancellationToken,
    ) -> io::Result<Worker> {
        let (finished, finished_rx) = oneshot::channel::<()>();
        let Self(mut format) = *self;
        // The thread waits for a message or `close` on the runtime's handle.
        let runtime = Handle::current();
        std::thread::Builder::new()
            .name(format!("out {}", stats.name()))
            .spawn(move || {
                let _finished = finished;
                write_all(&mut format, &mut queue, &stats, &close, &runtime);
            })
            .map(|_detached| Worker::Thread(finished_rx))
    }
}

/// The writer thread: writes what the queue brings until it is closed and drained, or
/// until the shutdown deadline abandoned the output.
fn write_all(
    format: &mut impl Format,
    rx: &mut Receiver<Queued>,
    stats: &OutputStats,
    close: &CancellationToken,
    runtime: &Handle,
) {
    let mut last_flush = Instant::now();
    let limit = RateLimitedWarn::per_second();
    let warn = |e: &io::Error, stats: &OutputStats| {
        if let Some(suppressed) = limit.check() {
            tracing::warn!(output = stats.name(), error = %e, failed_so_far = stats.failed(), suppressed, "output write failed");
        }
    };
    let mut closing = false;
    while let Some(first) = queue::blocking_next(rx, close, runtime, &mut closing) {
        let mut batch = 1;
        let mut written = u64::from(format.write(&first).map_err(|e| warn(&e, stats)).is_ok());
        while batch < BATCH {
            let Ok(m) = rx.try_recv() else { break };
            batch += 1;
            written += u64::from(format.write(&m).map_err(|e| warn(&e, stats)).is_ok());
        }
        if !stats.record_written(batch as u64, written) {
            // The shutdown deadline gave up on this output and counted the rest.
            return;
        }
        if rx.is_empty() || last_flush.elapsed() >= FLUSH_EVERY {
            if let Err(e) = format.flush() {
                warn(&e, stats);
            }
            last_flush = Instant::now();
        }
    }
    if let Err(e) = format.flush() {
        warn(&e, stats);
    }
}
