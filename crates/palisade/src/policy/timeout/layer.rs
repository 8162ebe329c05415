//! The [`Timeout`] as a tower middleware.

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
    /// The response future of [`TimeoutService`].
    #[project = ResponseProj]
    #[allow(missing_docs)] // variants are documented; fields are internal
    pub enum ResponseFuture<F, E> {
        /// The inner call is running under its limit.
        Running {
            #[pin]
            inner: TimeoutFuture<F>,
            timeout: Timeout,
        },
        /// No time was left to start the call.
        Expired { error: Option<Error<E>> },
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
    type Future = ResponseFuture<S::Future, <S::Error as IntoPolicyError>::Inner>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        let Some(limit) = self.timeout.limit() else {
            return ResponseFuture::Expired {
                error: Some(Error::DeadlineExceeded),
            };
        };
        ResponseFuture::Running {
            inner: TimeoutFuture::new(self.inner.call(request), limit),
            timeout: self.timeout.clone(),
        }
    }
}

// === impl ResponseFuture ===

impl<F, T, E, I> Future for ResponseFuture<F, I>
where
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
{
    type Output = Result<T, Error<I>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Running { mut inner, timeout } => match ready!(inner.as_mut().poll(cx)) {
                Ok(result) => Poll::Ready(timeout.settle(
                    result.map_err(IntoPolicyError::into_policy_error),
                    inner.limit(),
                )),
                Err(limit) => Poll::Ready(Err(timeout.expired(limit))),
            },
            ResponseProj::Expired { error } => {
                Poll::Ready(Err(error.take().unwrap_or(Error::DeadlineExceeded)))
            }
        }
    }
}
