//! `null`: counts and discards (benchmarks). No queue and no worker: the fan-out counts
//! each message as delivered as it passes.

use super::{Context, Opened};

/// The counters of a `null` output.
pub(crate) fn open(cx: &mut Context<'_>) -> Opened {
    Opened::inline(cx.counters.output(cx.name, true))
}
