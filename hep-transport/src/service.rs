//! [`HepService`]: the one name for what a listener hands its messages to.

use tower::Service;

#[cfg(doc)]
use crate::Listener;
use crate::{BoxError, Received};

/// A `tower::Service` a listener can run: it takes each [`Received`] message, answers
/// `()`, fails with anything that converts into a [`BoxError`], and can be cloned and
/// moved to other tasks along with its future.
///
/// A trait alias: every type with those bounds implements it (there is nothing to
/// implement by hand), so that [`Listener::run`], [`serve`](crate::serve) and a program's
/// own functions write one bound instead of four:
///
/// ```
/// use std::convert::Infallible;
/// use hep_transport::{HepService, Received};
///
/// /// The service stack of every listener of this program.
/// fn stack() -> impl HepService {
///     tower::service_fn(|msg: Received| async move {
///         let _ = msg.info.peer;
///         Ok::<_, Infallible>(())
///     })
/// }
///
/// fn takes_any<S: HepService>(service: S) -> S {
///     service
/// }
/// let _ = takes_any(stack());
/// ```
///
/// # Why each bound
/// - `Response = ()`: a listener has nobody to hand an answer to.
/// - `Error: Into<BoxError>`: a failed message is counted and logged
///   (`dropped{reason="service_error"}`), whatever the error type.
/// - `Clone`: the listener clones the service for each UDP socket's worker and each
///   TCP/TLS connection (see [`Listener::run`]).
/// - `Send + 'static`, `Future: Send + 'static`: each clone runs in a task of its own.
pub trait HepService:
    Service<Received, Response = (), Error: Into<BoxError>, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> HepService for S where
    S: Service<Received, Response = (), Error: Into<BoxError>, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}
