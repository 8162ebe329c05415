//! The [`AdaptiveTimeout`] as a tower middleware.
//!
//! Each call is handed to the [`TimeoutService`] of the current duration, wrapped
//! around the inner service by reference, so the timer, the deadline handling and the
//! errors are the plain timeout's; this layer only adds the measurement when the call
//! ends. The inner service need not be `Clone`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::AdaptiveTimeout;
use crate::Error;
use crate::clock::Nanos;
use crate::error::IntoPolicyError;
use crate::outcome::{Classify, DefaultClassifier};
use crate::pipeline::IntoLayer;
use crate::policy::timeout::{TimeoutLayer, TimeoutService};

/// Applies an [`AdaptiveTimeout`] to a service, classifying responses with `C` to
/// decide which latencies count. Clones share the policy.
#[derive(Clone, Debug)]
pub struct AdaptiveTimeoutLayer<C = DefaultClassifier> {
    policy: AdaptiveTimeout,
    classifier: C,
}

/// A service whose calls are cancelled after the adaptive timeout or the call's
/// deadline.
#[derive(Clone, Debug)]
pub struct AdaptiveTimeoutService<S, C = DefaultClassifier> {
    inner: S,
    policy: AdaptiveTimeout,
    classifier: C,
}

pin_project! {
    /// The response future of [`AdaptiveTimeoutService`]: the plain timeout's future,
    /// measured when it ends.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        policy: AdaptiveTimeout,
        classifier: C,
        started: Nanos,
    }
}

impl AdaptiveTimeout {
    /// This policy as a tower layer, with the default classifier.
    pub fn layer(&self) -> AdaptiveTimeoutLayer {
        self.layer_with(DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C: Clone>(&self, classifier: C) -> AdaptiveTimeoutLayer<C> {
        AdaptiveTimeoutLayer {
            policy: self.clone(),
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveTimeoutLayer<C> {
    type Service = AdaptiveTimeoutService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveTimeoutService {
            inner,
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C: Clone> IntoLayer<C> for AdaptiveTimeout {
    type Layer = AdaptiveTimeoutLayer<C>;
    fn to_layer(&self, classifier: &C) -> Self::Layer {
        self.layer_with(classifier.clone())
    }
}

impl<S, C, Req> Service<Req> for AdaptiveTimeoutService<S, C>
where
    S: Service<Req>,
    S::Error: IntoPolicyError,
    C: Classify<S::Response, <S::Error as IntoPolicyError>::Inner> + Clone,
{
    type Response = S::Response;
    type Error = Error<<S::Error as IntoPolicyError>::Inner>;
    type Future = ResponseFuture<<TimeoutService<S> as Service<Req>>::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoPolicyError::into_policy_error)
    }

    #[inline(always)] // see `crate::layer`: built in place, not copied out
    fn call(&mut self, request: Req) -> Self::Future {
        let timeout = self.policy.timeout();
        let started = self.policy.start();
        // The plain timeout around the instance this service drove ready.
        let inner = TimeoutLayer::new(timeout)
            .layer(&mut self.inner)
            .call(request);
        ResponseFuture {
            inner,
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            started,
        }
    }
}

impl<F, C, T, I> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, Error<I>>>,
    C: Classify<T, I>,
{
    type Output = Result<T, Error<I>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        this.policy.observe(this.classifier, *this.started, &result);
        Poll::Ready(result)
    }
}
