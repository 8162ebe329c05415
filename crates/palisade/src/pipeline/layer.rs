//! A pipeline as one tower layer: each policy's layer, nested in builder order.

use tower_layer::Layer;

use super::Pipeline;
use super::stack::{Identity, Stack};
use crate::policy::bulkhead::{Bulkhead, BulkheadLayer};
use crate::policy::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use crate::policy::fallback::{Fallback, FallbackLayer};
use crate::policy::rate_limit::{RateLimitLayer, RateLimiter};
use crate::policy::retry::{Retry, RetryLayer};
use crate::policy::timeout::{Timeout, TimeoutLayer};

/// A policy that has a tower layer; `C` is the pipeline's classifier, given to the
/// layers that classify (breaker, retry).
pub trait IntoLayer<C> {
    /// The tower layer.
    type Layer;
    /// Builds the layer, sharing this policy's state.
    fn to_layer(&self, classifier: &C) -> Self::Layer;
}

impl<C> IntoLayer<C> for Identity {
    type Layer = tower_layer::Identity;
    fn to_layer(&self, _: &C) -> Self::Layer {
        tower_layer::Identity::new()
    }
}

impl<C, Outer: IntoLayer<C>, Inner: IntoLayer<C>> IntoLayer<C> for Stack<Outer, Inner> {
    type Layer = tower_layer::Stack<Inner::Layer, Outer::Layer>;
    fn to_layer(&self, classifier: &C) -> Self::Layer {
        tower_layer::Stack::new(
            self.inner.to_layer(classifier),
            self.outer.to_layer(classifier),
        )
    }
}

impl<C> IntoLayer<C> for Timeout {
    type Layer = TimeoutLayer;
    fn to_layer(&self, _: &C) -> Self::Layer {
        self.layer()
    }
}

impl<C: Clone> IntoLayer<C> for Retry {
    type Layer = RetryLayer<C>;
    fn to_layer(&self, classifier: &C) -> Self::Layer {
        self.layer_with(classifier.clone())
    }
}

impl<C: Clone> IntoLayer<C> for CircuitBreaker {
    type Layer = CircuitBreakerLayer<C>;
    fn to_layer(&self, classifier: &C) -> Self::Layer {
        self.layer_with(classifier.clone())
    }
}

impl<C> IntoLayer<C> for Bulkhead {
    type Layer = BulkheadLayer;
    fn to_layer(&self, _: &C) -> Self::Layer {
        self.layer()
    }
}

impl<C> IntoLayer<C> for RateLimiter {
    type Layer = RateLimitLayer;
    fn to_layer(&self, _: &C) -> Self::Layer {
        self.layer()
    }
}

impl<C, T, E> IntoLayer<C> for Fallback<T, E> {
    type Layer = FallbackLayer<T, E>;
    fn to_layer(&self, _: &C) -> Self::Layer {
        self.layer()
    }
}

macro_rules! single_attempt_layer {
    ($($policy:ty $(, $g:ident)*;)*) => {$(
        impl<Cl: Clone, $($g),*> IntoLayer<Cl> for $policy {
            type Layer = crate::layer::PolicyLayer<Self, Cl>;
            fn to_layer(&self, classifier: &Cl) -> Self::Layer {
                crate::layer::PolicyLayer::new(self.clone(), classifier.clone())
            }
        }
    )*};
}

single_attempt_layer! {
    crate::policy::adaptive_concurrency::AdaptiveConcurrency;
    crate::policy::shed::LoadShedder;
    crate::policy::throttle::AdaptiveThrottle;
    crate::policy::fault::FaultInjection<T, E>, T, E;
}

/// A [`Pipeline`] as one tower layer: the same policies, the same order, shared state.
#[derive(Clone, Debug)]
pub struct PipelineLayer<L> {
    layers: L,
}

impl<P: IntoLayer<C>, C> Pipeline<P, C> {
    /// This pipeline as a tower layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::Pipeline;
    /// use palisade::policy::{bulkhead::Bulkhead, timeout::Timeout};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .push(Timeout::new(Duration::from_secs(1)))
    ///     .push(Bulkhead::builder().build().unwrap())
    ///     .build();
    /// let svc = pipeline.layer().layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) }));
    /// assert_eq!(svc.oneshot(21).await.unwrap(), 42);
    /// # }
    /// ```
    pub fn layer(&self) -> PipelineLayer<P::Layer> {
        PipelineLayer {
            layers: self.policies.to_layer(&self.classifier),
        }
    }
}

impl<S, L: Layer<S>> Layer<S> for PipelineLayer<L> {
    type Service = L::Service;
    fn layer(&self, inner: S) -> Self::Service {
        self.layers.layer(inner)
    }
}
