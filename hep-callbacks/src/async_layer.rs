//! An async `tower::Service` as a callback.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use hep_proto::Received;
use tower::{BoxError, Layer, Service};

use crate::callback::{CallbackStats, Verdict};

/// Runs an async service as a callback: it gets the message and answers with the
/// (possibly changed) message and a [`Verdict`].
///
/// ```
/// use hep_callbacks::{AsyncCallbackLayer, Verdict};
/// use hep_proto::Received;
/// use tower::{ServiceBuilder, service_fn};
///
/// // e.g. a lookup in an external system before deciding.
/// let check = service_fn(|r: Received| async move {
///     let verdict = if r.message.capture_id == Some(666) { Verdict::Skip } else { Verdict::Continue };
///     Ok::<_, std::convert::Infallible>((r, verdict))
/// });
/// let svc = ServiceBuilder::new()
///     .layer(AsyncCallbackLayer::new("lookup", check))
///     .service(service_fn(|_r: Received| async { Ok::<(), std::convert::Infallible>(()) }));
/// # drop(svc);
/// ```
#[derive(Clone)]
pub struct AsyncCallbackLayer<C> {
    callback: C,
    stats: Arc<CallbackStats>,
}

impl<C> AsyncCallbackLayer<C> {
    /// A layer running `callback`, named `name` in logs and metrics.
    pub fn new(name: &'static str, callback: C) -> Self {
        Self {
            callback,
            stats: Arc::new(CallbackStats::new(name, &[])),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<CallbackStats> {
        Arc::clone(&self.stats)
    }
}

impl<C: Clone, S> Layer<S> for AsyncCallbackLayer<C> {
    type Service = AsyncCallback<C, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncCallback {
            callback: self.callback.clone(),
            stats: Arc::clone(&self.stats),
            inner,
        }
    }
}

/// The service [`AsyncCallbackLayer`] builds. Errors of either service are boxed.
///
/// Ready when both the callback and the inner service are: the inner service's
/// backpressure (a full output queue, a concurrency limit) holds the listener back before
/// the callback runs, as it would without the callback.
#[derive(Clone)]
pub struct AsyncCallback<C, S> {
    callback: C,
    stats: Arc<CallbackStats>,
    inner: S,
}

impl<C, S> AsyncCallback<C, S> {
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

impl<C, S> Service<Received> for AsyncCallback<C, S>
where
    C: Service<Received, Response = (Received, Verdict)> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    S: Service<Received, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The message will reach the inner service after the callback has answered; the
        // inner service's readiness is reserved now, so that its backpressure is ours.
        // (A stopped message drops the reservation with the instance that held it.)
        ready!(self.inner.poll_ready(cx)).map_err(Into::<BoxError>::into)?;
        self.callback.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Received) -> Self::Future {
        // Both services were made ready in poll_ready: the future takes those instances,
        // and leaves clones here, to be made ready before the next call (tower's note on
        // cloning a ready service: a clone is not ready).
        let mut callback = take_ready(&mut self.callback);
        let mut inner = take_ready(&mut self.inner);
        let stats = Arc::clone(&self.stats);
        Box::pin(async move {
            let (req, verdict) = callback.call(req).await.map_err(Into::into)?;
            if stats.record(verdict, &req.info) {
                inner.call(req).await.map_err(Into::into)
            } else {
                Ok(())
            }
        })
    }
}

/// The ready service in `slot`, replaced by a clone of it.
fn take_ready<T: Clone>(slot: &mut T) -> T {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}
