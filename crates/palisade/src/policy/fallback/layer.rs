//! The [`Fallback`] as a tower middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::Fallback;
use crate::Error;
use crate::error::IntoPolicyError;

/// Applies a [`Fallback`] to a service whose responses are `T`.
#[derive(Debug)]
pub struct FallbackLayer<T, E> {
    fallback: Fallback<T, E>,
}

/// A service whose covered errors become fallback responses.
#[derive(Debug)]
pub struct FallbackService<S, T, E> {
    inner: S,
    fallback: Fallback<T, E>,
}

pin_project! {
    /// The response future of [`FallbackService`].
    pub struct ResponseFuture<F, T, E> {
        #[pin]
        inner: F,
        fallback: Fallback<T, E>,
    }
}

impl<T, E> Clone for FallbackLayer<T, E> {
    fn clone(&self) -> Self {
        Self {
            fallback: self.fallback.clone(),
        }
    }
}

impl<S: Clone, T, E> Clone for FallbackService<S, T, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<T, E> Fallback<T, E> {
    /// This fallback as a tower layer.
    pub fn layer(&self) -> FallbackLayer<T, E> {
        FallbackLayer {
            fallback: self.clone(),
        }
    }
}

impl<S, T, E> Layer<S> for FallbackLayer<T, E> {
    type Service = FallbackService<S, T, E>;

    fn layer(&self, inner: S) -> Self::Service {
        FallbackService {
            inner,
            fallback: self.fallback.clone(),
        }
    }
}

impl<S, T, E, Req> Service<Req> for FallbackService<S, T, E>
where
    S: Service<Req, Response = T>,
    S::Error: IntoPolicyError<Inner = E>,
{
    type Response = T;
    type Error = Error<E>;
    type Future = ResponseFuture<S::Future, T, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            fallback: self.fallback.clone(),
        }
    }
}

impl<F, T, E, X> Future for ResponseFuture<F, T, E>
where
    F: Future<Output = Result<T, X>>,
    X: IntoPolicyError<Inner = E>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(IntoPolicyError::into_policy_error);
        Poll::Ready(this.fallback.apply(result))
    }
}
