//! The [`CircuitBreaker`] as a tower middleware.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{CircuitBreaker, OwnedPermit};
use crate::Error;
use crate::error::IntoPolicyError;
use crate::outcome::{Classify, DefaultClassifier, classify_result};

/// Applies a [`CircuitBreaker`] to a service, classifying responses with `C`.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: CircuitBreaker,
    classifier: C,
}

/// A service guarded by a [`CircuitBreaker`].
#[derive(Clone, Debug)]
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
}

pin_project! {
    /// The response future of [`CircuitBreakerService`].
    #[project = ResponseProj]
    #[allow(missing_docs)] // variants are documented; fields are internal
    pub enum ResponseFuture<F, C, I> {
        /// The call was admitted and runs.
        Running {
            #[pin]
            inner: F,
            permit: Option<OwnedPermit>,
            classifier: C,
        },
        /// The breaker refused the call.
        Rejected { error: Option<Error<I>> },
    }
}

impl CircuitBreaker {
    /// This breaker as a tower layer, with the default classifier.
    pub fn layer(&self) -> CircuitBreakerLayer {
        self.layer_with(DefaultClassifier)
    }

    /// This breaker as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C: Clone>(&self, classifier: C) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer {
            breaker: self.clone(),
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: IntoPolicyError,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner> + Clone,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = ResponseFuture<S::Future, C, <S::Error as IntoPolicyError>::Inner>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => ResponseFuture::Running {
                inner: self.inner.call(request),
                permit: Some(permit),
                classifier: self.classifier.clone(),
            },
            Err(rejected) => ResponseFuture::Rejected {
                error: Some(self.breaker.rejection(rejected)),
            },
        }
    }
}

impl<F, C, T, E, I> Future for ResponseFuture<F, C, I>
where
    F: Future<Output = Result<T, E>>,
    E: IntoPolicyError<Inner = I>,
    C: Classify<T, I>,
{
    type Output = Result<T, Error<I>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Running {
                inner,
                permit,
                classifier,
            } => {
                let result = ready!(inner.poll(cx)).map_err(IntoPolicyError::into_policy_error);
                if let Some(permit) = permit.take() {
                    permit.record(&classify_result(classifier, &result));
                }
                Poll::Ready(result)
            }
            ResponseProj::Rejected { error } => {
                Poll::Ready(Err(error.take().unwrap_or(Error::DeadlineExceeded)))
            }
        }
    }
}
