//! [`ResponseFuture`] of [`OverloadDrop`](super::OverloadDrop).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

pin_project! {
    /// The inner service's response, or `Ok(())` at once for a dropped request.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            fut: F,
        },
        Dropped,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F) -> Self {
        Self {
            state: State::Called { fut },
        }
    }

    pub(crate) fn dropped() -> Self {
        Self {
            state: State::Dropped,
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<(), E>>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut } => fut.poll(cx),
            StateProj::Dropped => Poll::Ready(Ok(())),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "Called",
            State::Dropped => "Dropped",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
