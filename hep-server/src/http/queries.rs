//! The threads the API's store queries run on: [`MAX_STORE_QUERIES`](super::MAX_STORE_QUERIES)
//! of their own, at nice [`QUERY_NICE`].
//!
//! A query is CPU work (SQLite, decoding the messages it reads back). On a small machine
//! the same cores run the capture: the listeners, the fan-out and the store's writer. At
//! the process's priority, 20 clients asking back to back took the cores from the writer:
//! the store then took 67,769 of the 100,000 msg/s asked (`docs/BENCHMARKS.md`, issue 16).
//! At nice 5 the capture goes first when the cores are short, and the queries get the
//! rest (the writer needs a fraction of a core at that rate); nothing changes on an idle
//! machine.
//!
//! The threads are the pool's own, not tokio's blocking pool: a nice value stays with a
//! thread, and an unprivileged process cannot raise it back, so a blocking thread lowered
//! for a query would stay low for whatever tokio runs on it next. Queued queries wait in
//! a channel of at most [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) (there are never more
//! requests); one whose request went away meanwhile (its timeout) is not run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use super::error::ApiError;

/// The nice value of the query threads (the process's is 0 unless started otherwise;
/// the KPI tracker's is 10).
pub const QUERY_NICE: i32 = 5;

/// A query to run, and where its answer goes.
type Job = Box<dyn FnOnce() + Send>;

/// The query threads; dropping the last clone lets them finish what is queued and end.
#[derive(Debug, Clone)]
pub(crate) struct QueryPool {
    jobs: SyncSender<Job>,
}

impl QueryPool {
    /// Starts `threads` query threads with a queue of `queue` queries.
    ///
    /// # Errors
    /// A thread cannot be started.
    pub(crate) fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, queued) = sync_channel::<Job>(queue);
        let queued = Arc::new(Mutex::new(queued));
        for i in 0..threads.max(1) {
            let queued = Arc::clone(&queued);
            std::thread::Builder::new()
                .name(format!("http-query-{i}"))
                .spawn(move || serve(&queued))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a query thread and gives its answer; not run when the caller stops
    /// waiting first.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _gone = tx.send(f());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many store queries waiting",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal("the store query threads are gone"));
            }
        }
        rx.await
            .map_err(|_| ApiError::internal("a store query failed (it panicked)"))?
    }
}

/// A query thread: lowers its priority, then runs queries until the pool is dropped.
fn serve(queued: &Mutex<Receiver<Job>>) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), QUERY_NICE) {
        tracing::debug!(error = %e, "http: the store queries' priority stays the process's");
    }
    loop {
        let job = queued.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        // A panic is a bug: its request gets `internal` (the answer's sender is dropped),
        // the thread goes on.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("http: a store query panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread (Linux: field 19 of its `stat`).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("reads stat");
        let after_name = stat.rsplit_once(')').expect("a stat line").1;
        after_name
            .split_whitespace()
            .nth(16)
            .expect("field 19")
            .parse()
            .expect("a number")
    }

    #[tokio::test]
    async fn queries_run_on_threads_at_their_nice_and_a_panic_is_an_error() {
        let pool = QueryPool::start(2, 4).expect("starts");
        let nice = pool.run(|| Ok(own_nice())).await.expect("answers");
        assert_eq!(nice, QUERY_NICE.max(own_nice()));
        assert_ne!(own_nice(), QUERY_NICE, "the caller's thread is left alone");
        let err = pool
            .run(|| -> Result<(), ApiError> { panic!("a bug") })
            .await
            .expect_err("a panic is an error");
        assert_eq!(err.code, "internal");
        // The thread went on.
        assert_eq!(pool.run(|| Ok(7)).await.expect("answers"), 7);
    }

    #[tokio::test]
    async fn over_the_queue_a_query_is_refused() {
        use std::future::Future as _;
        use std::task::{Context, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        let pool = QueryPool::start(1, 1).expect("starts");
        // The one thread busy...
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let mut busy = Box::pin(pool.run(move || {
            started.send(()).expect("the test waits");
            Ok(held.recv().is_ok())
        }));
        assert!(busy.as_mut().poll(&mut cx).is_pending());
        running
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the query runs");
        // ... the queue's one place taken: the next is refused at once.
        let mut queued = Box::pin(pool.run(|| Ok(1)));
        assert!(queued.as_mut().poll(&mut cx).is_pending());
        let refused = pool.run(|| Ok(2)).await.expect_err("refused");
        assert_eq!((refused.status.as_u16(), refused.code), (503, "overloaded"));
        hold.send(()).expect("the query waits");
        assert!(busy.await.expect("answers"));
        assert_eq!(queued.await.expect("answers"), 1);
    }
}
