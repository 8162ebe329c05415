//! The future of [`Retry::execute`](super::Retry): the first attempt inline, the retry
//! state boxed and built only when a retry is wanted.
//!
//! Written by hand rather than as an `async fn`: an `async fn` keeps the first
//! attempt's result in its own state (it may be needed by a later retry) and copies it
//! out again when it returns. Here the first attempt's output is classified where it
//! lands and handed straight back, so a call that succeeds first time costs the
//! attempt, one classification and two branches.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{Attempts, Next, Retry, describe, exhausted};
use crate::Error;
use crate::clock::Nanos;
use crate::outcome::{Classify, Outcome, classify_result};

pin_project! {
    /// One call through a [`Retry`]: attempts, and the sleeps between them.
    pub(crate) struct Execute<'r, 'c, C: ?Sized, F, Fut> {
        retry: &'r Retry,
        classifier: &'c C,
        operation: F,
        // When the call started, if `max_elapsed` needs it (0 otherwise).
        started: Nanos,
        // The attempt running now; `None` while sleeping between attempts.
        #[pin]
        attempt: Option<Fut>,
        // Everything only a retry needs, allocated on the first retry.
        cold: Option<Pin<Box<Cold>>>,
    }
}

pin_project! {
    /// The state of a call that has been retried.
    pub(crate) struct Cold {
        attempts: Attempts,
        #[pin]
        sleep: Sleep,
    }
}

// === impl Execute ===

impl<'r, 'c, C: ?Sized, F, Fut> Execute<'r, 'c, C, F, Fut>
where
    F: Fn() -> Fut,
{
    /// Starts the call: deposits into the budget and creates the first attempt. (Created
    /// here rather than on the first poll: measured, building it in the caller's frame
    /// lets the compiler place it where the caller keeps this future.)
    #[inline(always)]
    pub(crate) fn new(retry: &'r Retry, classifier: &'c C, operation: F) -> Self {
        let started = retry.start();
        let attempt = Some(operation());
        Execute {
            retry,
            classifier,
            operation,
            started,
            attempt,
            cold: None,
        }
    }
}

impl<C, F, Fut, T, E> Future for Execute<'_, '_, C, F, Fut>
where
    C: Classify<T, E> + ?Sized,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Error<E>>>,
    E: fmt::Debug,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(attempt) = this.attempt.as_mut().as_pin_mut() {
                let result = ready!(attempt.poll(cx));
                let outcome = classify_result(*this.classifier, &result);
                if !outcome.is_retryable() {
                    return Poll::Ready(result);
                }
                this.attempt.set(None);
                if let Some(done) =
                    Cold::settle(this.cold, *this.started, this.retry, &outcome, result)
                {
                    return Poll::Ready(done);
                }
            }
            // Between attempts: `cold` exists once an attempt was retried.
            if let Some(cold) = this.cold.as_mut() {
                ready!(cold.as_mut().poll_sleep(cx));
            }
            this.attempt.set(Some((this.operation)()));
        }
    }
}

// === impl Cold ===

impl Cold {
    /// The retry state after a first attempt started at `started`; boxed, allocated once
    /// per retried call.
    #[cold]
    fn after_first(started: Nanos) -> Pin<Box<Cold>> {
        Box::pin(Cold {
            attempts: Attempts::after_first(started),
            sleep: tokio::time::sleep(Duration::ZERO),
        })
    }

    /// After a retryable attempt: the call's final result, or `None` to retry once the
    /// sleep now set is over. Creates the retry state on the first retry.
    pub(crate) fn settle<T, E: fmt::Debug>(
        cold: &mut Option<Pin<Box<Cold>>>,
        started: Nanos,
        retry: &Retry,
        outcome: &Outcome,
        result: Result<T, Error<E>>,
    ) -> Option<Result<T, Error<E>>> {
        let cold = cold.get_or_insert_with(|| Cold::after_first(started));
        match cold.as_mut().next(retry, outcome, &result) {
            Next::Return => Some(result),
            Next::GiveUp => Some(exhausted(cold.made(), result)),
            Next::RetryAfter(_) => None,
        }
    }

    /// Decides what follows a retryable attempt; on a retry, sets the sleep before the
    /// next one.
    fn next<T, E: fmt::Debug>(
        self: Pin<&mut Self>,
        retry: &Retry,
        outcome: &Outcome,
        result: &Result<T, Error<E>>,
    ) -> Next {
        let this = self.project();
        let next = retry.next(this.attempts, outcome, || describe(result));
        if let Next::RetryAfter(delay) = next {
            this.sleep.reset(tokio::time::Instant::now() + delay);
        }
        next
    }

    /// Waits out the sleep set by the last [`next`](Self::next).
    pub(crate) fn poll_sleep(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }

    /// Attempts made so far.
    fn made(&self) -> u32 {
        self.attempts.made()
    }
}
