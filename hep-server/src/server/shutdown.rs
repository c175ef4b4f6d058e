//! How a run stops: one cancellation tree, and the tasks it stops.
//!
//! ```text
//!  run ─────────── the metrics endpoint, the drop warnings: cancelled last, so
//!   │              that the drain can be watched
//!   ├─ listeners   stop accepting, finish the frames being read (at most half the
//!   │              deadline), count what they drop; the HTTP API stops accepting and
//!   │              answers the requests it has
//!   ├─ outputs     close every queue to new messages; each output writes what it
//!   │   └─ ...     holds (one child token per output: a reload closes one alone)
//!   └─ deadline    `[limits] shutdown_timeout_ms` after the stop began: listeners
//!                  still running are stopped, draining outputs give up and count
//!                  what they still had
//! ```
//!
//! The order is the data's: nothing new comes in, then what came in goes out, then the
//! counters stop being served. Each group of tasks is a [`TaskTracker`], waited for in
//! that order.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The cancellation tree of a run and its tasks; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Shutdown {
    /// The root: cancelled once everything else is done.
    run: CancellationToken,
    /// Cancelled first: the listeners stop.
    pub(crate) listeners: CancellationToken,
    /// Cancelled once the listeners are done: the outputs drain.
    pub(crate) outputs: CancellationToken,
    /// Cancelled when the deadline passes: what is still running gives up.
    pub(crate) deadline: CancellationToken,
    /// The listeners' tasks.
    pub(crate) listening: TaskTracker,
    /// Outputs closing: those a reload removed, and at the end all of them.
    pub(crate) draining: TaskTracker,
    /// The metrics endpoint, the drop warnings and the deadline's timer.
    pub(crate) watching: TaskTracker,
}

impl Shutdown {
    /// A tree with nothing cancelled.
    pub(crate) fn new() -> Self {
        let run = CancellationToken::new();
        Self {
            listeners: run.child_token(),
            outputs: run.child_token(),
            deadline: run.child_token(),
            run,
            listening: TaskTracker::new(),
            draining: TaskTracker::new(),
            watching: TaskTracker::new(),
        }
    }

    /// The root token: what the metrics endpoint and the drop warnings run until.
    pub(crate) fn run(&self) -> &CancellationToken {
        &self.run
    }

    /// Starts the stop: the deadline's timer (none for `None`), then the listeners'
    /// cancellation.
    pub(crate) fn begin(&self, deadline: Option<Duration>) {
        if let Some(after) = deadline {
            let (deadline, run) = (self.deadline.clone(), self.run.clone());
            self.watching.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(after) => deadline.cancel(),
                    () = run.cancelled() => {}
                }
            });
        }
        self.listeners.cancel();
    }

    /// Waits for the listeners' tasks to end; at the deadline they are told to stop (see
    /// [`listeners`](super::listeners)) and waited for again.
    pub(crate) async fn listeners_done(&self) {
        self.listening.close();
        tokio::select! {
            () = self.listening.wait() => {}
            () = self.deadline.cancelled() => {
                tracing::error!("shutdown deadline: listeners still running; stopping them");
                self.listening.wait().await;
            }
        }
    }

    /// Closes the outputs and waits for every one of them, those a reload retired
    /// included, to be drained (or given up at the deadline).
    pub(crate) async fn outputs_done(&self) {
        self.outputs.cancel();
        self.draining.close();
        self.draining.wait().await;
    }

    /// Cancels the root and waits for the tasks that ran until it.
    pub(crate) async fn finish(&self) {
        self.run.cancel();
        self.watching.close();
        self.watching.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stop_goes_down_the_tree_in_the_order_of_the_data() {
        let s = Shutdown::new();
        let output = s.outputs.child_token();
        s.begin(Some(Duration::from_secs(10)));
        // The listeners first; the outputs and the root later.
        assert!(s.listeners.is_cancelled());
        assert!(!output.is_cancelled() && !s.run().is_cancelled());
        s.listeners_done().await;
        s.outputs_done().await;
        assert!(output.is_cancelled(), "each output's token is a child");
        assert!(!s.deadline.is_cancelled(), "done before the deadline");
        s.finish().await;
        assert!(s.run().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_what_is_still_draining_gives_up() {
        let s = Shutdown::new();
        let deadline = s.deadline.clone();
        // An output that drains until the deadline.
        s.draining.spawn(async move { deadline.cancelled().await });
        s.begin(Some(Duration::from_secs(10)));
        s.listeners_done().await;
        let start = tokio::time::Instant::now();
        s.outputs_done().await;
        let waited = start.elapsed();
        assert!(
            (Duration::from_secs(10)..Duration::from_secs(11)).contains(&waited),
            "{waited:?}"
        );
        s.finish().await;
    }
}
