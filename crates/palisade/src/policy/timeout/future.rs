//! The future that races an operation against its time limit.
//!
//! The operation runs inside a [deadline scope](crate::deadline) and is polled first; the
//! timer (a tokio `Sleep`) is created only if the operation is still pending after a
//! poll. An operation that completes on its first poll therefore never touches the timer
//! wheel, the runtime handle or the clock — the common case for cached or in-memory
//! work. When it first waits, its limit is fixed to an instant (one clock read, or the
//! reading of a timeout inside that fixed its own in the same poll; see `cover`) and the
//! scope it runs in carries that instant from then on. While a nearer timer inside the
//! operation wakes the task first (a per-try timeout inside a total one), no timer is
//! armed at all (see `cover`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::Limit;
use super::cover::{self, Cover};
use crate::deadline::{self, Deadline, Scoped};

pin_project! {
    /// Resolves to `Ok(output)`, or `Err(limit)` when the limit passed first.
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: Scoped<F>,
        #[pin]
        sleep: Option<Sleep>,
        limit: Limit,
        // The last poll was pending and reported a timer (see `cover`).
        reported: bool,
    }

    impl<F> PinnedDrop for TimeoutFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if this.reported {
                cover::withdraw();
            }
        }
    }
}

// === impl TimeoutFuture ===

impl<F: Future> TimeoutFuture<F> {
    /// Runs `future` until `limit`.
    #[inline]
    pub(crate) fn new(future: F, limit: Limit) -> Self {
        Self {
            inner: deadline::scoped_by(limit.deadline(), future),
            sleep: None,
            limit,
            reported: false,
        }
    }

    /// Runs `future` until a limit given by [`start`](Self::start) on the first poll:
    /// for a future made before it runs (a tower response future), whose limit depends
    /// on the deadline in effect where it is first polled.
    #[inline]
    pub(crate) fn unstarted(future: F) -> Self {
        Self {
            inner: deadline::scoped_later(future),
            sleep: None,
            // Replaced before the first poll.
            limit: Limit::Own(Deadline::within(Duration::ZERO)),
            reported: false,
        }
    }

    /// Sets the limit of a future made by [`unstarted`](Self::unstarted), before its
    /// first poll: `limit` is [`Timeout::limit`](super::Timeout) where it is polled, so
    /// its deadline is already the earlier of the timeout's own and the one in effect.
    #[inline]
    pub(crate) fn start(self: Pin<&mut Self>, limit: Limit) {
        let this = self.project();
        *this.limit = limit;
        deadline::set(this.inner, limit.deadline());
    }

    /// The limit of the run: fixed to an instant once the operation has waited.
    #[inline]
    pub(crate) fn limit(&self) -> Limit {
        self.limit
    }
}

impl<F: Future> Future for TimeoutFuture<F> {
    type Output = Result<F::Output, Limit>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let before = cover::begin();
        let polled = this.inner.as_mut().poll(cx);
        let inside = cover::reported();
        if let Poll::Ready(output) = polled {
            *this.reported = false;
            cover::end(before, Cover::None, inside.now);
            return Poll::Ready(Ok(output));
        }
        let mut now = inside.now;
        if !this.limit.deadline().is_fixed() {
            // From the clock reading of the timeouts inside, if one fixed its budget in
            // this poll: a budget inherited from this one is then fixed alike (see `cover`).
            let reading = *now.get_or_insert_with(Instant::now);
            let limit = this.limit.fixed_at(reading);
            *this.limit = limit;
            deadline::fix(this.inner.as_mut(), limit.deadline().instant());
        }
        let at = this.limit.deadline().instant();
        if this.sleep.is_none() {
            if inside.timer.covers(at) {
                // A timer inside wakes the task first: none of our own yet.
                *this.reported = true;
                cover::end(before, inside.timer, now);
                return Poll::Pending;
            }
            this.sleep.set(Some(tokio::time::sleep_until(at)));
        }
        let elapsed = match this.sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx).is_ready(),
            None => false,
        };
        if elapsed {
            *this.reported = false;
            cover::end(before, Cover::None, now);
            return Poll::Ready(Err(*this.limit));
        }
        *this.reported = true;
        cover::end(before, Cover::At(at), now);
        Poll::Pending
    }
}
