//! Composition: several policies as one, in the order you name them.
//!
//! The builder's order is the nesting order, **outermost first**, as in Polly and
//! Failsafe. The recommended order, and why:
//!
//! ```text
//!  call ─▶ Fallback ─▶ Timeout(total) ─▶ RateLimiter ─▶ Retry ─▶ CircuitBreaker ─▶ Bulkhead ─▶ Timeout(per try) ─▶ operation
//!           │            │                 │              │          │                  │            │
//!           │            │                 │              │          │                  │            └ each attempt is bounded
//!           │            │                 │              │          │                  └ attempts hold a slot only while running
//!           │            │                 │              │          └ every attempt is judged; an open breaker stops retries
//!           │            │                 │              └ retries what is retryable, within budget and deadline
//!           │            │                 └ limits calls, not attempts (put it inside Retry to limit attempts)
//!           │            └ the caller's whole budget, and the deadline for everything inside
//!           └ the answer when everything above gave up
//! ```
//!
//! A pipeline runs plain async code through [`Pipeline::call`] (it implements
//! [`Policy`]) and wraps tower services through [`Pipeline::layer`]; both run the same
//! policy objects, so they share state with every other use of those policies, and both
//! classify outcomes with the pipeline's one classifier
//! ([`PipelineBuilder::classifier`]), so that a retry and a breaker never disagree about
//! what a result says.
//!
//! ```
//! use std::time::Duration;
//! use palisade::{Pipeline, Policy};
//! use palisade::policy::{bulkhead::Bulkhead, circuit_breaker::CircuitBreaker, retry::Retry, timeout::Timeout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let pipeline = Pipeline::builder()
//!     .push(Timeout::new(Duration::from_secs(2)))
//!     .push(Retry::builder().build().unwrap())
//!     .push(CircuitBreaker::with_defaults("db"))
//!     .push(Bulkhead::builder().name("db").build().unwrap())
//!     .push(Timeout::new(Duration::from_millis(300)))
//!     .build();
//! assert_eq!(pipeline.call(|| async { Ok::<_, std::io::Error>(1) }).await.unwrap(), 1);
//! # }
//! ```

mod layer;
mod observe;
mod stack;

pub use layer::{IntoLayer, PipelineLayer};
pub use stack::{Append, Identity, Stack};

use std::fmt;
use std::future::Future;

use crate::Error;
use crate::outcome::{Classify, DefaultClassifier};
use crate::policy::Policy;
use observe::Observer;

/// Policies nested in builder order, with the classifier they share.
#[derive(Clone, Debug)]
pub struct Pipeline<P, C = DefaultClassifier> {
    policies: P,
    classifier: C,
    observer: Option<Observer>,
}

/// Builds a [`Pipeline`]; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct PipelineBuilder<P, C = DefaultClassifier> {
    policies: P,
    classifier: C,
    observer: Option<Observer>,
}

impl Pipeline<Identity> {
    /// An empty builder.
    pub fn builder() -> PipelineBuilder<Identity> {
        PipelineBuilder {
            policies: Identity,
            classifier: DefaultClassifier,
            observer: None,
        }
    }
}

impl<P, C> PipelineBuilder<P, C> {
    /// Adds `policy` inside every policy added before it.
    pub fn push<Q>(self, policy: Q) -> PipelineBuilder<P::Output, C>
    where
        P: Append<Q>,
    {
        PipelineBuilder {
            policies: self.policies.append(policy),
            classifier: self.classifier,
            observer: self.observer,
        }
    }

    /// Classifies results with `classifier` (for every policy of the pipeline).
    pub fn classifier<C2>(self, classifier: C2) -> PipelineBuilder<P, C2> {
        PipelineBuilder {
            policies: self.policies,
            classifier,
            observer: self.observer,
        }
    }

    /// Records `palisade_calls_total{policy=name, outcome}` and
    /// `palisade_call_duration_seconds{policy=name}` for every call. Off by default: it
    /// reads the clock twice per call.
    pub fn metrics(mut self, name: &str) -> Self {
        self.observer = Some(Observer::new(name));
        self
    }

    /// The pipeline.
    pub fn build(self) -> Pipeline<P, C> {
        Pipeline {
            policies: self.policies,
            classifier: self.classifier,
            observer: self.observer,
        }
    }
}

impl<P, C> Pipeline<P, C> {
    /// The nested policies.
    pub fn policies(&self) -> &P {
        &self.policies
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }
}

/// A pipeline is one policy. Its own classifier is the one [`call`](Policy::call) uses,
/// as [`layer`](Pipeline::layer) does; [`call_with`](Policy::call_with) and
/// [`execute`](Policy::execute) use the classifier they are given (so a pipeline nested
/// in another is classified by the outer one).
impl<T, E, P, C> Policy<T, E> for Pipeline<P, C>
where
    T: Send,
    E: Send + fmt::Debug,
    P: Policy<T, E>,
    C: Classify<T, E> + Clone + 'static,
{
    fn call<F, Fut>(&self, operation: F) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        self.call_with(&self.classifier, operation)
    }

    async fn execute<C2, F, Fut>(&self, classifier: &C2, operation: F) -> Result<T, Error<E>>
    where
        C2: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        match &self.observer {
            None => self.policies.execute(classifier, operation).await,
            Some(observer) => {
                let started = observer.start();
                let result = self.policies.execute(classifier, operation).await;
                observer.finish(started, classifier, &result);
                result
            }
        }
    }
}
