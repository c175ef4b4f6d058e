//! The future of a send.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep, sleep_until};

use super::error::SendError;

pub(crate) type Completion = oneshot::Sender<Result<(), SendError>>;

pin_project! {
    /// The future returned by [`HepSender::send`](super::HepSender::send) and
    /// `Service::call`.
    ///
    /// The message is already sent or queued when `call` returns: dropping this future
    /// does **not** cancel it. The future tells what happened:
    ///
    /// - `Ok(())`: written to the socket; or, in async mode (`hep_async`), still queued
    ///   when the local bound ran out (`hep_async_local_write_timeout` on an established
    ///   connection, `hep_async_local_connect_timeout` while connecting): the message
    ///   stays queued and its fate shows in the counters only.
    /// - `Err(SendError)`: dropped, and counted under [`SendError::reason`].
    ///
    /// Polling it again after it completed returns `Ok(())`.
    #[must_use = "the message is sent either way; the future only reports the outcome"]
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Done { result: Option<Result<(), SendError>> },
        Waiting {
            rx: oneshot::Receiver<Result<(), SendError>>,
            #[pin]
            deadline: Option<Sleep>,
            closed: Option<SendError>,
        },
    }
}

impl ResponseFuture {
    pub(crate) const fn done(result: Result<(), SendError>) -> Self {
        Self {
            state: State::Done {
                result: Some(result),
            },
        }
    }

    /// Waits for `rx`, at most until `deadline` (then `Ok`). `closed` is reported if the
    /// completion is lost (the sender side dropped without an answer).
    pub(crate) fn waiting(
        rx: oneshot::Receiver<Result<(), SendError>>,
        deadline: Option<Instant>,
        closed: SendError,
    ) -> Self {
        Self {
            state: State::Waiting {
                rx,
                deadline: deadline.map(sleep_until),
                closed: Some(closed),
            },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Done { result } => Poll::Ready(result.take().unwrap_or(Ok(()))),
            StateProj::Waiting {
                rx,
                deadline,
                closed,
            } => {
                if let Poll::Ready(r) = Pin::new(rx).poll(cx) {
                    return Poll::Ready(match r {
                        Ok(r) => r,
                        Err(_) => closed.take().map_or(Ok(()), Err),
                    });
                }
                match deadline.as_pin_mut() {
                    Some(d) => {
                        ready!(d.poll(cx));
                        Poll::Ready(Ok(()))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
