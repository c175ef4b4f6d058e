//! Callbacks as tower layers.

use std::sync::Arc;
use std::task::{Context, Poll};

use hep_transport::Received;
use tower::{Layer, Service};

use crate::callback::{CallbackStats, HepCallback};

/// Runs one callback before the inner service; see [`Callback`].
#[derive(Clone)]
pub struct CallbackLayer<C> {
    callback: Arc<C>,
    stats: Arc<CallbackStats>,
}

impl<C: HepCallback> CallbackLayer<C> {
    /// A layer running `callback`.
    pub fn new(callback: C) -> Self {
        let stats = Arc::new(CallbackStats::new(callback.name(), callback.reasons()));
        Self {
            callback: Arc::new(callback),
            stats,
        }
    }

    /// Its counters, shared with every service the layer builds.
    pub fn stats(&self) -> Arc<CallbackStats> {
        Arc::clone(&self.stats)
    }
}

impl<C, S> Layer<S> for CallbackLayer<C> {
    type Service = Callback<C, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Callback {
            callback: Arc::clone(&self.callback),
            stats: Arc::clone(&self.stats),
            inner,
        }
    }
}

/// A service that runs a callback, then calls the inner service unless the callback
/// said [`Skip`](crate::Verdict::Skip) or [`Reject`](crate::Verdict::Reject).
///
/// Readiness is the inner service's: a skipped message leaves the reserved readiness
/// for the next one.
#[derive(Clone)]
pub struct Callback<C, S> {
    callback: Arc<C>,
    stats: Arc<CallbackStats>,
    inner: S,
}

impl<C, S> Callback<C, S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<C, S> Service<Received> for Callback<C, S>
where
    C: HepCallback,
    S: Service<Received, Response = ()>,
{
    type Response = ();
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Received) -> Self::Future {
        let verdict = self.callback.call(&mut req);
        if self.stats.record(verdict, &req.info) {
            future::ResponseFuture::called(self.inner.call(req))
        } else {
            future::ResponseFuture::stopped()
        }
    }
}

/// A registered callback and its counters.
type Registered = (Box<dyn HepCallback>, Arc<CallbackStats>);

/// Several callbacks run in registration order as one layer: `register_hep_cb`.
///
/// The first callback that does not say [`Continue`](crate::Verdict::Continue) stops the
/// message; later callbacks and the inner service do not see it.
#[derive(Clone, Default)]
pub struct HepCallbacks {
    chain: Arc<Vec<Registered>>,
}

impl HepCallbacks {
    /// No callbacks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a callback after those already registered.
    ///
    /// # Panics
    /// If called after the layer was cloned or used (register everything first).
    #[must_use]
    pub fn register(mut self, callback: impl HepCallback) -> Self {
        let stats = Arc::new(CallbackStats::new(callback.name(), callback.reasons()));
        Arc::get_mut(&mut self.chain)
            .expect("register every callback before cloning or using the HepCallbacks layer")
            .push((Box::new(callback), stats));
        self
    }

    /// Counters of every registered callback, in order.
    pub fn stats(&self) -> Vec<Arc<CallbackStats>> {
        self.chain.iter().map(|(_, s)| Arc::clone(s)).collect()
    }

    /// Runs the chain; true when the message goes on.
    fn run(&self, req: &mut Received) -> bool {
        self.chain.iter().all(|(cb, stats)| {
            let verdict = cb.call(req);
            stats.record(verdict, &req.info)
        })
    }
}

impl<S> Layer<S> for HepCallbacks {
    type Service = Chain<S>;

    fn layer(&self, inner: S) -> Chain<S> {
        Chain {
            callbacks: self.clone(),
            inner,
        }
    }
}

/// The service [`HepCallbacks`] builds.
#[derive(Clone)]
pub struct Chain<S> {
    callbacks: HepCallbacks,
    inner: S,
}

impl<S> Service<Received> for Chain<S>
where
    S: Service<Received, Response = ()>,
{
    type Response = ();
    type Error = S::Error;
    type Future = future::ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Received) -> Self::Future {
        // No callbacks (the default): hand the message on without walking the empty
        // chain (callgrind of one TCP connection: 1,537 -> 1,515 instructions a message).
        if self.callbacks.chain.is_empty() {
            return future::ResponseFuture::called(self.inner.call(req));
        }
        if self.callbacks.run(&mut req) {
            future::ResponseFuture::called(self.inner.call(req))
        } else {
            future::ResponseFuture::stopped()
        }
    }
}

/// Response futures.
pub mod future {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pin_project_lite::pin_project! {
        /// The inner service's future, or an immediate `Ok(())` for a stopped message.
        pub struct ResponseFuture<F> {
            #[pin]
            inner: Option<F>,
        }
    }

    impl<F> ResponseFuture<F> {
        pub(crate) fn called(f: F) -> Self {
            Self { inner: Some(f) }
        }

        pub(crate) fn stopped() -> Self {
            Self { inner: None }
        }
    }

    impl<F, E> Future for ResponseFuture<F>
    where
        F: Future<Output = Result<(), E>>,
    {
        type Output = Result<(), E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project().inner.as_pin_mut() {
                Some(f) => f.poll(cx),
                None => Poll::Ready(Ok(())),
            }
        }
    }
}
