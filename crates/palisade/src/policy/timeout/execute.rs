//! The future of [`Timeout::execute`](super::Timeout): the operation started in place on
//! the first poll.
//!
//! Written by hand rather than as an `async fn`: an `async fn` builds the operation's
//! future, wraps it, and then moves the whole into its own state before polling it (for
//! a pipeline, several hundred bytes copied twice per call). Here the operation's future
//! is created where it will be polled.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::{Timeout, TimeoutFuture};
use crate::Error;

pin_project! {
    /// One call through a [`Timeout`].
    pub(crate) struct Execute<'t, F, Fut> {
        timeout: &'t Timeout,
        operation: F,
        // The operation under its limit; `None` until the first poll.
        #[pin]
        running: Option<TimeoutFuture<Fut>>,
    }
}

impl<'t, F, Fut> Execute<'t, F, Fut> {
    /// The call, started on its first poll.
    #[inline(always)]
    pub(crate) fn new(timeout: &'t Timeout, operation: F) -> Self {
        Execute {
            timeout,
            operation,
            running: None,
        }
    }
}

impl<F, Fut, T, E> Future for Execute<'_, F, Fut>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Error<E>>>,
    E: fmt::Debug,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.running.is_none() {
            let Some(limit) = this.timeout.limit() else {
                return Poll::Ready(Err(Error::DeadlineExceeded));
            };
            let future = TimeoutFuture::new((this.operation)(), limit);
            this.running.set(Some(future));
        }
        match this.running.as_pin_mut() {
            Some(mut running) => Poll::Ready(match ready!(running.as_mut().poll(cx)) {
                Ok(result) => this.timeout.settle(result, running.limit()),
                Err(limit) => Err(this.timeout.expired(limit)),
            }),
            // Unreachable: set above.
            None => Poll::Ready(Err(Error::DeadlineExceeded)),
        }
    }
}
