//! What the run tells systemd (`Type=notify`, the `sd_notify` protocol), when it was
//! started with `$NOTIFY_SOCKET` set: `READY=1` once every listener is bound and
//! serving (so that units ordered after this one find the ports open), `RELOADING=1`
//! then `READY=1` around a reload (SIGHUP), `STOPPING=1` when a stop begins, a `STATUS=`
//! line with each, and `WATCHDOG=1` every half `WatchdogSec` when the unit sets one
//! (`$WATCHDOG_USEC`): sent by a task of the runtime, so a runtime that stops scheduling
//! tasks gets the service restarted. Without `$NOTIFY_SOCKET` (not under systemd) nothing
//! is sent.
//!
//! A notification that cannot be sent is logged at `warn` (the service manager would
//! then time the start out, and the log says why) and the run goes on.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager ($NOTIFY_SOCKET): {e}");
    }
}

/// Listeners bound and serving.
pub(super) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins (`READY=1` follows through [`ready`] whatever its outcome: the
/// running configuration serves either way). `MONOTONIC_USEC` is what systemd 253 and
/// later ask beside `RELOADING=1`.
pub(super) fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// A stop begins: the listeners stop and the outputs drain.
pub(super) fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining listeners and outputs"),
    ]);
}

/// The watchdog's pings, every half of the unit's `WatchdogSec`, until `until`; `None`
/// when the unit has no watchdog (or it is another process's: `$WATCHDOG_PID`).
pub(super) fn watchdog(until: impl Future<Output = ()>) -> Option<impl Future<Output = ()>> {
    let every = sd_notify::watchdog_enabled()?.checked_div(2)?;
    let every = every.max(Duration::from_millis(10));
    Some(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = ticks.tick() => notify(&[NotifyState::Watchdog]),
                () = &mut until => break,
            }
        }
    })
}
