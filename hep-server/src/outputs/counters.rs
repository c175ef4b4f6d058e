//! The counters of every output a run has had, by output name (its spec): an output that a
//! reload removes keeps its counters at their final values (in the metrics, with
//! `hep_output_active` 0, and in the exit summary), one that comes back or is restarted
//! continues them.

use std::any::Any;
use std::sync::Arc;

use super::queue::OutputStats;
use crate::telemetry::metrics::{Collect, Registry};

/// Counters by output name; each is registered for the metrics when first created.
pub(crate) struct Counters {
    registry: Registry,
    /// The queue counters of every output.
    outputs: Vec<Arc<OutputStats>>,
    /// Counters of a kind's own (a store's gauges, a relay's senders), by output name.
    kinds: Vec<(String, Arc<dyn Any + Send + Sync>)>,
}

impl Counters {
    /// No counters yet; they go to `registry` as they are created.
    pub(crate) fn new(registry: Registry) -> Self {
        Self {
            registry,
            outputs: Vec::new(),
            kinds: Vec::new(),
        }
    }

    /// The queue counters of the output `name`, created on first use (and registered
    /// unless `registered` is false: a kind that collects them with its own); marked
    /// active.
    pub(crate) fn output(&mut self, name: &str, registered: bool) -> Arc<OutputStats> {
        if let Some(s) = self.outputs.iter().find(|s| s.name() == name) {
            s.set_active(true);
            return Arc::clone(s);
        }
        let s = Arc::new(OutputStats::new(name));
        if registered {
            self.registry.register(Arc::clone(&s) as _);
        }
        self.outputs.push(Arc::clone(&s));
        s
    }

    /// The counters of type `T` of the output `name`, made by `new` (and registered) on
    /// first use.
    pub(crate) fn kind<T: Collect + 'static>(
        &mut self,
        name: &str,
        new: impl FnOnce() -> T,
    ) -> Arc<T> {
        let found = self
            .kinds
            .iter()
            .filter(|(n, _)| n == name)
            .find_map(|(_, k)| Arc::clone(k).downcast::<T>().ok());
        if let Some(k) = found {
            return k;
        }
        let k = Arc::new(new());
        self.registry.register(Arc::clone(&k) as _);
        self.kinds.push((name.to_owned(), Arc::clone(&k) as _));
        k
    }

    /// The queue counters of every output the run has had.
    pub(crate) fn outputs(&self) -> &[Arc<OutputStats>] {
        &self.outputs
    }

    /// Every counter of type `T`, in the order they were created.
    pub(crate) fn all<T: Send + Sync + 'static>(&self) -> Vec<Arc<T>> {
        self.kinds
            .iter()
            .filter_map(|(_, k)| Arc::clone(k).downcast::<T>().ok())
            .collect()
    }
}
