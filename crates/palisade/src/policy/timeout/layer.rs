//! The [`Timeout`] as a tower middleware.
//!
//! Tower runs `call` synchronously, before the response future is polled and outside any
//! deadline scope that wraps it (`deadline::scope(at, svc.call(req))`, or the scope of a
//! timeout layer further out, whose response future polls this one). So `call` only
//! creates the inner service's future; the limit is taken on the first poll of the
//! response future, where the deadline in effect is known, as the call API does. With no
//! time left then, the inner future is never polled and the answer is
//! `DeadlineExceeded`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Timeout, TimeoutFuture};
use crate::Error;
use crate::error::IntoPolicyError;

/// Applies a [`Timeout`] to a service. Clones share the policy.
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    timeout: Timeout,
}

/// A service whose calls are cancelled after the [`Timeout`] or the call's deadline.
#[derive(Clone, Debug)]
pub struct TimeoutService<S> {
    inner: S,
    timeout: Timeout,
}

pin_project! {
    /// The response future of [`TimeoutService`]: the inner call, under its limit from
    /// the first poll.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TimeoutFuture<F>,
        timeout: Timeout,
        // The first poll found time left and set the limit.
        started: bool,
    }
}

// === impl TimeoutLayer ===

impl TimeoutLayer {
    /// A layer applying `timeout`.
    pub fn new(timeout: Timeout) -> Self {
        Self { timeout }
    }
}

impl Timeout {
    /// This policy as a tower layer.
    pub fn layer(&self) -> TimeoutLayer {
        TimeoutLayer::new(self.clone())
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            timeout: self.timeout.clone(),
        }
    }
}

// === impl TimeoutService ===

impl<S, Req> Service<Req> for TimeoutService<S>
where
    S: Service<Req>,
    S::Error: IntoPolicyError,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        // Not `self.timeout.limit()` here: the deadline in effect is the one where the
        // response future is polled (see the module docs).
        ResponseFuture {
            inner: TimeoutFuture::unstarted(self.inner.call(request)),
            timeout: self.timeout.clone(),
            started: false,
        }
    }
}

// === impl ResponseFuture ===

impl<F, T, E, I> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
{
    type Output = Result<T, Error<I>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.started {
            let Some(limit) = this.timeout.limit() else {
                // No time left: the inner future is dropped unpolled.
                return Poll::Ready(Err(Error::DeadlineExceeded));
            };
            this.inner.as_mut().start(limit);
            *this.started = true;
        }
        Poll::Ready(match ready!(this.inner.as_mut().poll(cx)) {
            Ok(result) => this.timeout.settle(
                result.map_err(IntoPolicyError::into_policy_error),
                this.inner.limit(),
            ),
            Err(limit) => Err(this.timeout.expired(limit)),
        })
    }
}
