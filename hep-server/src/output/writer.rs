//! Outputs that write files or standard output: one thread each, batching writes and
//! flushing within about 100 ms of a message, so that `tail -f` and tests see it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::fanout::{OutputStats, Queued};
use super::pcap::PcapFileWriter;
use crate::record::write_json_line;
use crate::text::TextLine;

/// How long written data may sit in a buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Messages written between looks at the clock.
const BATCH: usize = 1024;

/// What a writer thread writes.
pub(crate) enum Format {
    /// One text line per message.
    Text(Box<dyn Write + Send>),
    /// One JSON record per line.
    Json(Box<dyn Write + Send>),
    /// Rebuilt packets.
    Pcap(PcapFileWriter),
}

impl Format {
    pub(crate) fn text_stdout() -> Self {
        Self::Text(Box::new(BufWriter::with_capacity(256 * 1024, io::stdout())))
    }

    pub(crate) fn json(path: Option<&Path>) -> io::Result<Self> {
        let w: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(BufWriter::with_capacity(256 * 1024, File::create(p)?)),
            None => Box::new(BufWriter::with_capacity(256 * 1024, io::stdout())),
        };
        Ok(Self::Json(w))
    }

    fn write(&mut self, m: &Queued) -> io::Result<()> {
        match self {
            Self::Text(w) => writeln!(w, "{}", TextLine::new(&m.message, Some(&m.info))),
            Self::Json(w) => write_json_line(w, &m.message, Some(&m.info)),
            Self::Pcap(p) => p.write(&m.message, SystemTime::now()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Text(w) | Self::Json(w) => w.flush(),
            Self::Pcap(p) => p.flush(),
        }
    }
}

/// Starts the writer thread; it ends when the queue is drained after every sender of
/// `rx` is gone, or after `close` (then no new message is queued; those queued or with a
/// slot reserved are still written). The receiver completes (with an error: its sender
/// is dropped) when the thread ends, panics included: waiting for it takes no blocking
/// thread, so a writer stuck in a write cannot hold up the runtime's shutdown.
pub(crate) fn spawn(
    mut format: Format,
    mut rx: Receiver<Queued>,
    stats: Arc<OutputStats>,
    close: CancellationToken,
) -> io::Result<oneshot::Receiver<()>> {
    let (finished, finished_rx) = oneshot::channel::<()>();
    // The thread waits for a message or `close` on the runtime's handle.
    let runtime = Handle::current();
    std::thread::Builder::new().name(format!("out {}", stats.name())).spawn(move || {
        let _finished = finished;
        let mut last_flush = Instant::now();
        let mut last_warn: Option<Instant> = None;
        let mut warn = |e: &io::Error, stats: &OutputStats| {
            if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!(output = stats.name(), error = %e, failed_so_far = stats.failed(), "output write failed");
                last_warn = Some(Instant::now());
            }
        };
        let mut closing = false;
        while let Some(first) = next(&mut rx, &close, &runtime, &mut closing) {
            let mut batch = 1;
            let mut written = u64::from(format.write(&first).map_err(|e| warn(&e, &stats)).is_ok());
            while batch < BATCH {
                let Ok(m) = rx.try_recv() else { break };
                batch += 1;
                written += u64::from(format.write(&m).map_err(|e| warn(&e, &stats)).is_ok());
            }
            if !stats.record_written(batch as u64, written) {
                // The shutdown deadline gave up on this output and counted the rest.
                return;
            }
            if rx.is_empty() || last_flush.elapsed() >= FLUSH_EVERY {
                if let Err(e) = format.flush() {
                    warn(&e, &stats);
                }
                last_flush = Instant::now();
            }
        }
        if let Err(e) = format.flush() {
            warn(&e, &stats);
        }
    })
    .map(|_detached| finished_rx)
}

/// The next message, waiting; `None` once the queue is closed and drained.
pub(crate) fn next(
    rx: &mut Receiver<Queued>,
    close: &CancellationToken,
    runtime: &Handle,
    closing: &mut bool,
) -> Option<Queued> {
    loop {
        if *closing {
            return rx.blocking_recv();
        }
        let next = runtime.block_on(async {
            tokio::select! {
                biased;
                m = rx.recv() => Some(m),
                () = close.cancelled() => None,
            }
        });
        match next {
            Some(m) => return m,
            None => {
                rx.close();
                *closing = true;
            }
        }
    }
}
