//! Where messages come from besides the listeners: a cluster's consumer
//! (`input nats:...`, [`nats`]), reading what the edges published to a NATS JetStream
//! stream into the same callback stack and outputs as a listener.
//!
//! An input counts a message as read from its source only once every output has it
//! ([`Progress`](crate::outputs::progress::Progress)); inputs are started with the
//! listeners, stop with them, and change with a restart (a reload keeps them).

pub(crate) mod nats;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Written;
use crate::nats::NatsInputSpec;
use crate::nats::stats::ConsumerStats;
use crate::outputs::progress::Progress;
use crate::telemetry::log::TARGET;
use crate::telemetry::metrics::Registry;

/// Makes sure each input's positions file can be written (it is saved every second), so
/// that one in a directory that does not exist or is not writable is refused at start,
/// naming it. A file that is not positions is left to the input, which says so and reads
/// its partitions from the stream's start.
///
/// # Errors
/// The first positions file that cannot be read or written, with its input; two inputs
/// with one positions file.
pub(crate) fn check_positions(
    inputs: &[Written<NatsInputSpec>],
    store_dir: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use crate::nats::positions::{Positions, PositionsError};
    let mut files: Vec<(std::path::PathBuf, &str)> = Vec::new();
    for input in inputs {
        let spec = input.value();
        let Some(file) = spec.positions_file(store_dir) else {
            continue;
        };
        // Two inputs of one stream name and range on two clusters: one file by default.
        if let Some((_, other)) = files.iter().find(|(f, _)| *f == file) {
            anyhow::bail!(
                "inputs `{other}` and `{}` would keep their positions in one file, {}: give \
                 one of them `;positions=FILE`",
                input.text(),
                file.display()
            );
        }
        files.push((file.clone(), input.text()));
        let checked = match Positions::load(&file, &spec.stream.stream) {
            Ok(p) => p.save(&file),
            Err(PositionsError::Invalid { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        checked.map_err(|e| {
            anyhow::anyhow!(
                "input `{}`: its positions file cannot be written: {e}",
                input.text()
            )
        })?;
    }
    Ok(())
}

/// Starts each input of `inputs` on a task of `tasks`, calling a clone of `stack`, until
/// `stop`; their positions are kept in `store_dir` unless their specs say where.
pub(crate) fn spawn<S>(
    inputs: &[Written<NatsInputSpec>],
    store_dir: Option<&std::path::Path>,
    stack: &S,
    progress: &Progress,
    registry: &Registry,
    tasks: &tokio_util::task::TaskTracker,
    stop: &CancellationToken,
) where
    S: tower::Service<hep_proto::Received, Response = ()> + Clone + Send + 'static,
    S::Future: Send,
{
    for input in inputs {
        let name = input.text().to_owned();
        let stats = Arc::new(ConsumerStats::new(name.clone()));
        registry.register(Arc::clone(&stats) as _);
        let spec = input.value().clone();
        let positions = spec.positions_file(store_dir);
        let kept = positions
            .as_ref()
            .map_or_else(|| "in memory".to_owned(), |f| f.display().to_string());
        tracing::info!(target: TARGET, input = %name, "reading partitions {}-{} of stream {}, positions in {kept}", spec.partitions.start(), spec.partitions.end(), spec.stream.stream);
        tasks.spawn(nats::run(
            spec,
            name,
            positions,
            stack.clone(),
            progress.clone(),
            stats,
            stop.clone(),
        ));
    }
}
