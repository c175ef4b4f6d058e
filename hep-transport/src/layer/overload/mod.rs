//! Drop (and count) requests a service is not ready for, instead of waiting.
//!
//! A UDP sender cannot be slowed down. If the UDP listener waited for a busy service,
//! datagrams would pile up in the kernel's receive buffer and overflow it, uncounted.
//! [`OverloadDrop`] is always ready: when the inner service is not ready, the request is
//! dropped at once, counted as `dropped{reason="overload"}` in the listener's
//! [`ListenerStats`] and reported in a rate-limited warning, and the listener reads on.
//!
//! Like tower's `LoadShed` it makes `poll_ready` always `Ready`; unlike `LoadShed` it
//! answers a shed request with `Ok(())` (a datagram has nobody to send an error to) and
//! counts it. There is no error type: dropping is the expected outcome under overload.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use hep_transport::{ListenerDropReason, ListenerStats};
//! use hep_transport::layer::overload::OverloadDropLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Infallible> {
//! let stats = Arc::new(ListenerStats::new());
//! let mut svc = ServiceBuilder::new()
//!     .layer(OverloadDropLayer::new(stats.clone()))
//!     .concurrency_limit(1)
//!     .service(tower::service_fn(|_: &str| std::future::pending::<Result<(), Infallible>>()));
//!
//! let busy = svc.ready().await?.call("taken"); // holds the only slot, never completes
//! svc.ready().await?.call("dropped").await?; // not waited for: dropped and counted
//! assert_eq!(stats.dropped(ListenerDropReason::Overload), 1);
//! # drop(busy);
//! # Ok(())
//! # }
//! ```
//!
//! See [`layer`](crate::layer#order) for where it goes in a stack.

pub mod future;
mod layer;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use self::future::ResponseFuture;
pub use self::layer::OverloadDropLayer;
use crate::{ListenerDropReason, ListenerStats, RateLimitedWarn};

/// Drops requests its inner service is not ready for (see the [module docs](self)).
///
/// # Order
/// Put it outside (before) the queue whose fullness means overload, usually a
/// `tower::buffer::Buffer`: `ServiceBuilder::new().layer(OverloadDropLayer::new(stats))
/// .buffer(8192)`. Inside the buffer it would never see the overload (see
/// [`layer`](crate::layer#order)).
pub struct OverloadDrop<S> {
    inner: S,
    stats: Arc<ListenerStats>,
    warn: Arc<RateLimitedWarn>,
    /// Whether the last `poll_ready` found the inner service ready: `call` consumes it.
    is_ready: bool,
}

// ===== impl OverloadDrop =====

impl<S> OverloadDrop<S> {
    /// Wraps `inner`, counting drops into `stats`.
    pub fn new(inner: S, stats: Arc<ListenerStats>) -> Self {
        Self::with_warn(inner, stats, Arc::new(RateLimitedWarn::per_second()))
    }

    pub(crate) fn with_warn(
        inner: S,
        stats: Arc<ListenerStats>,
        warn: Arc<RateLimitedWarn>,
    ) -> Self {
        Self {
            inner,
            stats,
            warn,
            is_ready: false,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Request> Service<Request> for OverloadDrop<S>
where
    S: Service<Request, Response = ()>,
{
    type Response = ();
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Record whether the inner service can take a request now, but never make the
        // caller wait: that is the point of this layer. An error still fails the service.
        self.is_ready = match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => false,
        };
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if std::mem::take(&mut self.is_ready) {
            return ResponseFuture::called(self.inner.call(req));
        }
        drop(req);
        self.stats.record_dropped(ListenerDropReason::Overload, 1);
        if let Some(suppressed) = self.warn.check() {
            tracing::warn!(
                dropped = suppressed + 1,
                "overload: the service is not keeping up; dropping datagrams"
            );
        }
        ResponseFuture::dropped()
    }
}

impl<S: Clone> Clone for OverloadDrop<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            stats: self.stats.clone(),
            warn: self.warn.clone(),
            // Readiness belongs to the instance that polled it.
            is_ready: false,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for OverloadDrop<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadDrop")
            .field("inner", &self.inner)
            .field("is_ready", &self.is_ready)
            .finish_non_exhaustive()
    }
}
