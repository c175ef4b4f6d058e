//! A service whose inner stack can be replaced while listeners hold clones of it: how a
//! reload (SIGHUP) reaches every listener and connection without restarting them.
//!
//! [`Switch::new`] gives the service and a [`Publisher`]. Each listener (and each TCP
//! connection or UDP worker) holds a clone of the [`Switch`]; each clone keeps its own
//! copy of the stack it last used, so the hot path costs one atomic load per readiness
//! check and no allocation. [`Publisher::publish`] installs a new stack; every clone takes
//! it at its next `poll_ready`.
//!
//! # Readiness across a switch
//!
//! `poll_ready` may reserve capacity in the stack (the fan-out reserves a slot in every
//! output's queue), and `call` must use that reservation. So a clone changes stacks only
//! inside `poll_ready`, never between a `Ready` and its `call`:
//!
//! 1. if a newer stack was published, drop the old copy (releasing whatever it had
//!    reserved) and take the new one;
//! 2. poll the copy's readiness;
//! 3. if it is `Ready` but a newer stack was published meanwhile, go back to 1: the old
//!    stack may have answered `Ready` only because its outputs were already closing;
//! 4. `call` then goes to the very copy that said `Ready`, even if a newer stack is
//!    published in between.
//!
//! Why step 4 loses nothing: an output is retired only after the stack without it was
//! published, by closing its queue's receiver ([`tokio::sync::mpsc::Receiver::close`]).
//! A slot reserved before the close is still honoured (the message is queued and the
//! output writes it before it stops); a reservation attempted after the close fails, and
//! then step 3 sees the newer stack (it was published before the close) and retries there.
//!
//! A clone that gets no message keeps its old copy (an idle TCP connection, say): that
//! costs memory only, since it touches the old copy again only to replace it.

use std::task::{Context, Poll};

use tokio::sync::watch;
use tower::Service;

/// The service listeners hold; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Switch<S> {
    current: S,
    published: watch::Receiver<S>,
}

/// Installs new stacks for every clone of a [`Switch`].
#[derive(Debug)]
pub struct Publisher<S> {
    tx: watch::Sender<S>,
}

impl<S: Clone> Switch<S> {
    /// A switch starting on `stack`, and the handle that replaces it.
    pub fn new(stack: S) -> (Self, Publisher<S>) {
        let (tx, mut published) = watch::channel(stack);
        let current = published.borrow_and_update().clone();
        (Self { current, published }, Publisher { tx })
    }

    /// Whether a stack newer than this clone's copy was published.
    fn stale(&self) -> bool {
        // One atomic load; once the publisher is gone, its last stack may still be new.
        self.published
            .has_changed()
            .unwrap_or_else(|_| self.published.borrow().has_changed())
    }

    fn take_newest(&mut self) {
        self.current = self.published.borrow_and_update().clone();
    }
}

impl<S: Clone> Publisher<S> {
    /// Makes `stack` the one every clone uses from its next `poll_ready` on.
    pub fn publish(&self, stack: S) {
        // `send_replace` stores the value even when no clone is listening.
        drop(self.tx.send_replace(stack));
    }
}

impl<S, R> Service<R> for Switch<S>
where
    S: Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            if self.stale() {
                self.take_newest();
            }
            match self.current.poll_ready(cx) {
                Poll::Ready(Ok(())) if self.stale() => {}
                other => return other,
            }
        }
    }

    fn call(&mut self, req: R) -> S::Future {
        self.current.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use tokio::sync::mpsc;
    use tokio_util::sync::PollSender;
    use tower::ServiceExt as _;

    use super::*;

    /// A queue-backed stack, like the fan-out: `poll_ready` reserves, `call` sends.
    #[derive(Clone)]
    struct Queue(PollSender<u32>);

    impl Service<u32> for Queue {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            // Closed counts as ready, as in the fan-out (whose `call` counts the loss).
            let _ = std::task::ready!(self.0.poll_reserve(cx));
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u32) -> Self::Future {
            let _ = self.0.send_item(n);
            std::future::ready(Ok(()))
        }
    }

    fn queue(capacity: usize) -> (Queue, mpsc::Receiver<u32>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Queue(PollSender::new(tx)), rx)
    }

    #[tokio::test]
    async fn a_call_goes_to_the_stack_that_was_ready() {
        let (a, mut a_rx) = queue(4);
        let (b, mut b_rx) = queue(4);
        let (mut switch, publisher) = Switch::new(a);
        switch.ready().await.unwrap();
        // Published between Ready and call: the reserved slot in `a` is used.
        publisher.publish(b);
        a_rx.close();
        switch.call(1).await.unwrap();
        switch.ready().await.unwrap().call(2).await.unwrap();
        assert_eq!(a_rx.try_recv(), Ok(1), "honoured after the close");
        assert!(a_rx.try_recv().is_err(), "closed and drained");
        assert_eq!(b_rx.try_recv(), Ok(2), "the next message");
    }

    #[tokio::test]
    async fn a_stack_closed_before_the_reservation_is_skipped() {
        let (a, mut a_rx) = queue(4);
        let (b, mut b_rx) = queue(4);
        let (switch, publisher) = Switch::new(a);
        // A clone that has not looked since: its copy of `a` is closed under it.
        let mut idle = switch.clone();
        drop(switch);
        publisher.publish(b);
        a_rx.close();
        idle.ready().await.unwrap().call(7).await.unwrap();
        assert!(a_rx.try_recv().is_err(), "nothing went to the closed stack");
        assert_eq!(b_rx.try_recv(), Ok(7));
    }

    /// A stack whose readiness check runs a hook first: the reload's publish and close
    /// land between the switch's staleness check and the reservation.
    #[derive(Clone)]
    struct Racy {
        queue: Queue,
        hook: Hook,
    }

    type Hook = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

    impl Service<u32> for Racy {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            self.queue.poll_ready(cx)
        }

        fn call(&mut self, n: u32) -> Self::Future {
            self.queue.call(n)
        }
    }

    #[tokio::test]
    async fn a_close_racing_the_reservation_is_retried_on_the_new_stack() {
        let (a, a_rx) = queue(4);
        let (b, mut b_rx) = queue(4);
        let a_rx = Arc::new(Mutex::new(a_rx));
        let hook = Hook::default();
        let (mut switch, publisher) = Switch::new(Racy {
            queue: a,
            hook: Arc::clone(&hook),
        });
        let rx = Arc::clone(&a_rx);
        let b = Racy {
            queue: b,
            hook: Hook::default(),
        };
        *hook.lock().unwrap() = Some(Box::new(move || {
            publisher.publish(b);
            rx.lock().unwrap().close();
        }));
        switch.ready().await.unwrap().call(7).await.unwrap();
        assert!(
            a_rx.lock().unwrap().try_recv().is_err(),
            "nothing went to the closed stack"
        );
        assert_eq!(b_rx.try_recv(), Ok(7), "the message took the new stack");
    }

    #[tokio::test]
    async fn a_clone_waiting_on_a_full_stack_moves_to_the_new_one() {
        let (a, _a_rx) = queue(1);
        let (b, mut b_rx) = queue(1);
        let (mut switch, publisher) = Switch::new(a);
        switch.ready().await.unwrap().call(1).await.unwrap(); // `a` is now full
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(switch.poll_ready(&mut cx).is_pending());
        publisher.publish(b);
        assert!(switch.poll_ready(&mut cx).is_ready());
        switch.call(2).await.unwrap();
        assert_eq!(b_rx.try_recv(), Ok(2));
    }
}
