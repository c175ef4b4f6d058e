//! How far the running outputs have got: what an input that may count a message as done
//! only once every output has it (a cluster's consumer) waits on. See [`crate::inputs`].

use std::sync::{Arc, Mutex};

use super::queue::OutputStats;
use crate::sync::lock;

/// The running outputs' counters, replaced at each reconfiguration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress(Arc<Mutex<(u64, Vec<Arc<OutputStats>>)>>);

/// What each running output had taken in at one moment (see [`Progress::marks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marks {
    generation: u64,
    taken: Vec<u64>,
}

impl Progress {
    /// The outputs are now `running`.
    pub(crate) fn set(&self, running: Vec<Arc<OutputStats>>) {
        let mut p = lock(&self.0);
        p.0 += 1;
        p.1 = running;
    }

    /// What each output has taken in so far: queued (being written included) and
    /// finished, the queue read first, so that a message moving from one to the other
    /// meanwhile is counted twice rather than not at all: a mark is never early.
    pub(crate) fn marks(&self) -> Marks {
        taken(&lock(&self.0))
    }

    /// Whether every output has finished (delivered, or dropped and counted) as many
    /// messages as `marks` says it had taken: then it has what was handed to it before
    /// the marks were read, its queue being first in, first out. Marks of an earlier set
    /// of outputs are read again now (later marks: never early).
    pub(crate) fn reached(&self, marks: &mut Marks) -> bool {
        let p = lock(&self.0);
        if marks.generation != p.0 {
            *marks = taken(&p);
        }
        p.1.iter()
            .zip(&marks.taken)
            .all(|(s, mark)| finished(s) >= *mark)
    }
}

/// What each output of `p` has taken in so far (see [`Progress::marks`]).
fn taken(p: &(u64, Vec<Arc<OutputStats>>)) -> Marks {
    Marks {
        generation: p.0,
        taken: p
            .1
            .iter()
            .map(|s| {
                let queued = s.queued();
                queued + finished(s)
            })
            .collect(),
    }
}

/// Messages an output is done with: delivered, or dropped and counted.
fn finished(s: &OutputStats) -> u64 {
    s.delivered() + s.dropped()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_had_once_its_output_finished_what_was_taken_before_it() {
        let store = Arc::new(OutputStats::new("store:x"));
        let progress = Progress::default();
        progress.set(vec![Arc::clone(&store)]);
        // Two messages queued before ours, then ours.
        store.enqueued_for_tests(3);
        let mut ours = progress.marks();
        assert!(!progress.reached(&mut ours));
        store.record_written(2, 2);
        assert!(!progress.reached(&mut ours), "ours is still queued");
        store.record_written(1, 1);
        assert!(progress.reached(&mut ours));
        // A reload: marks of the old outputs are taken again against the new ones.
        let relay = Arc::new(OutputStats::new("relay:y"));
        relay.enqueued_for_tests(1);
        let mut before = ours.clone();
        progress.set(vec![Arc::clone(&store), Arc::clone(&relay)]);
        assert!(
            !progress.reached(&mut before),
            "the new output has one queued"
        );
        relay.record_written(1, 0);
        assert!(
            progress.reached(&mut before),
            "dropped and counted is finished"
        );
    }
}
