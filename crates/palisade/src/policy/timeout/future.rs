//! The future that races an operation against its time limit.
//!
//! The operation runs inside a [deadline scope](crate::deadline) and is polled first; the
//! timer (a tokio `Sleep`) is created only if the operation is still pending after a
//! poll. An operation that completes on its first poll therefore never touches the timer
//! wheel, the runtime handle or the clock — the common case for cached or in-memory
//! work. When it first waits, its limit is fixed to an instant (one clock read) and the
//! scope it runs in carries that instant from then on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::Limit;
use crate::deadline::{self, Scoped};

pin_project! {
    /// Resolves to `Ok(output)`, or `Err(limit)` when the limit passed first.
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: Scoped<F>,
        #[pin]
        sleep: Option<Sleep>,
        limit: Limit,
    }
}

impl<F: Future> TimeoutFuture<F> {
    /// Runs `future` until `limit`.
    #[inline]
    pub(crate) fn new(future: F, limit: Limit) -> Self {
        Self {
            inner: deadline::scoped_by(limit.deadline(), future),
            sleep: None,
            limit,
        }
    }
}

impl<F: Future> Future for TimeoutFuture<F> {
    type Output = Result<F::Output, Limit>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.inner.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if this.sleep.is_none() {
            let limit = this.limit.fixed();
            let at = limit.deadline().instant();
            *this.limit = limit;
            deadline::fix(this.inner, at);
            this.sleep.set(Some(tokio::time::sleep_until(at)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => {
                ready!(sleep.poll(cx));
                Poll::Ready(Err(*this.limit))
            }
            None => Poll::Pending,
        }
    }
}
