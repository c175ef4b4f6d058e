//! A reload (SIGHUP): the callbacks and the outputs switched to a new configuration, all
//! or nothing; see the [`server`](super) module docs.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer as _;

use super::Stack;
use super::switch::Publisher;
use crate::aliases::SharedAliases;
use crate::callbacks::CallbackSet;
use crate::config::{Config, Written};
use crate::outputs::set::{Outputs, Reconfigured, Retired};
use crate::telemetry::stats::{CallbackCollect, ReloadCollect};

/// A configuration to switch to, read again (on SIGHUP).
#[derive(Debug)]
pub struct Reload {
    /// The file it was read from, for the log.
    pub source: PathBuf,
    /// The configuration, or why it could not be read (naming the file, line and key).
    pub config: anyhow::Result<Config>,
}

/// Makes the outputs those of `config`, once they are checked to work together.
///
/// # Errors
/// Outputs that conflict, or one that cannot start; nothing changed then.
pub(super) fn reconfigure(outputs: &mut Outputs, config: &Config) -> anyhow::Result<Reconfigured> {
    config.check_outputs()?;
    outputs.reconfigure(
        config.outputs.iter().map(Written::value),
        &config.output_settings(),
    )
}

/// What a reload may change, as running.
pub(super) struct Live {
    /// The running configuration (a reload's, with the restart-only keys of the start).
    pub(super) config: Config,
    pub(super) outputs: Outputs,
    pub(super) callbacks: CallbackSet,
    pub(super) publisher: Publisher<Stack>,
    pub(super) callback_collect: Arc<CallbackCollect>,
    pub(super) reload_collect: Arc<ReloadCollect>,
    /// Where the outputs a reload removes drain.
    pub(super) draining: TaskTracker,
    /// Cancelled when the shutdown deadline passes: draining outputs give up.
    pub(super) deadline: CancellationToken,
    /// The live view's feed, handed to every fan-out.
    pub(super) live_feed: Option<tokio::sync::broadcast::Sender<Arc<hep_transport::Received>>>,
    /// The SIP KPIs' queue, handed to every fan-out.
    pub(super) kpi_feed: Option<crate::kpi::KpiFeed>,
    /// `[aliases]` as the HTTP API reads them.
    pub(super) aliases: SharedAliases,
}

impl Live {
    /// Switches to `reload`'s configuration (`true`), or logs why not and changes
    /// nothing (`false`).
    pub(super) fn reload(&mut self, reload: Reload) -> bool {
        let file = reload.source.display();
        let refuse = |e: &anyhow::Error| {
            self.reload_collect.failed();
            tracing::error!("reload of {file} failed, the running configuration stays: {e:#}");
            false
        };
        let new = match reload.config {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        let restart = self.config.restart_only_changes(&new);
        let new = self.config.reloaded(new);
        let outputs = match reconfigure(&mut self.outputs, &new) {
            Ok(o) => o,
            Err(e) => return refuse(&e),
        };
        let (callbacks, callback_changes) = self.callbacks.rebuild(&new);
        let (chain, stats) = callbacks.chain();
        self.callback_collect.extend(stats);
        // Publish first, then close what is no longer used (see `Switch`).
        self.publisher.publish(
            chain.layer(
                outputs
                    .fanout
                    .with_live(self.live_feed.clone())
                    .with_kpi(self.kpi_feed.clone()),
            ),
        );
        self.callbacks = callbacks;
        let aliases = if new.aliases == self.config.aliases {
            "aliases unchanged"
        } else {
            self.aliases.set(new.aliases.clone());
            "aliases replaced"
        };
        self.config = new;
        self.reload_collect.succeeded();
        tracing::info!(
            "reloaded {file}: outputs [{}], callbacks [{callback_changes}], {aliases}",
            outputs.changes
        );
        if !restart.is_empty() {
            tracing::warn!(
                "{file}: {} changed, which needs a restart: the running values stay",
                restart.join(", ")
            );
        }
        for old in outputs.retired {
            self.draining
                .spawn(retire(old, self.deadline.clone().cancelled_owned()));
        }
        true
    }
}

/// Closes an output a reload removed (or restarted), once it has written what it had
/// (or at the shutdown deadline, counting what it had not).
async fn retire(old: Retired, give_up: impl Future<Output = ()>) {
    let spec = old.spec().to_string();
    let lost = old.close_until(give_up).await;
    if lost == 0 {
        tracing::info!(output = %spec, "output closed after the reload: its queue is written");
    }
}
