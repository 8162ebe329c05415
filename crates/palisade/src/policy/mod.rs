//! The resilience policies, one module per pattern, and the trait they share.
//!
//! | module | pattern |
//! |---|---|
//! | [`shed`] | under overload, drop the least critical work first; keep queues short |
//! | [`throttle`] | reject locally what an overloaded backend would refuse anyway |
//! | [`timeout`] | cancel an operation that takes too long; honour call deadlines |
//! | [`adaptive_concurrency`] | a concurrency limit that finds itself (AIMD, Vegas, Gradient2) |
//! | [`adaptive_timeout`] | a timeout set from a percentile of recent latencies |
//! | [`retry`] | try again with backoff and jitter, within a budget |
//! | [`circuit_breaker`] | stop calling a dependency that keeps failing |
//! | [`bulkhead`] | cap concurrent calls, with a bounded wait queue |
//! | [`rate_limit`] | cap the call rate (GCRA), per policy or per key |
//! | [`fallback`] | answer with a substitute when everything else gave up |
//! | [`fault`] | inject errors and latency, switched on at run time |
//! | [`hedge`] | send one more attempt of a slow idempotent call; take the first good answer |
//!
//! Every policy is `Clone`; clones share one state, so a policy can be handed to many
//! tasks or put in a router without a `Buffer`. Every policy implements [`Policy`]:
//! `policy.call(|| async { … })` for plain async code, and every policy has a tower
//! layer in [`crate::layer`]. [`Pipeline`](crate::Pipeline) composes several.

pub mod adaptive_concurrency;
pub mod adaptive_timeout;
pub mod bulkhead;
pub mod circuit_breaker;
pub mod fallback;
pub mod fault;
pub mod hedge;
pub mod rate_limit;
pub mod retry;
pub mod shed;
pub mod throttle;
pub mod timeout;

use std::fmt;
use std::future::Future;

use crate::Error;
use crate::outcome::{Classify, DefaultClassifier};

/// A resilience policy for operations yielding `Result<T, E>`.
///
/// `execute` is the one entry point the pipeline and the tower layers use: the operation
/// already returns `Result<T, Error<E>>`, so policies nest without nesting their errors.
/// [`call`](Policy::call) and [`call_with`](Policy::call_with) are the convenient forms for
/// operations returning their own `Result<T, E>`. Most policies implement `Policy<T, E>`
/// for every `T` and `E`; a [`Fallback`](fallback::Fallback) only for the value type it
/// produces.
pub trait Policy<T, E>: Clone + Send + Sync + 'static
where
    T: Send,
    E: Send + fmt::Debug,
{
    /// Runs `operation` (possibly several times, for retries) under this policy.
    fn execute<C, F, Fut>(
        &self,
        classifier: &C,
        operation: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send;

    /// Runs `operation` with the policy's own classifier: a [`Pipeline`](crate::Pipeline)'s
    /// (see [`PipelineBuilder::classifier`](crate::pipeline::PipelineBuilder::classifier)),
    /// else the [`DefaultClassifier`], for which every `Err` is a retryable failure.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade::{Policy, policy::timeout::Timeout};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let timeout = Timeout::new(Duration::from_millis(100));
    /// let answer = timeout.call(|| async { Ok::<_, std::io::Error>(42) }).await;
    /// assert_eq!(answer.unwrap(), 42);
    /// # }
    /// ```
    fn call<F, Fut>(&self, operation: F) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        self.call_with(&DefaultClassifier, operation)
    }

    /// Runs `operation`, classifying its results with `classifier`.
    fn call_with<C, F, Fut>(
        &self,
        classifier: &C,
        operation: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        self.execute(classifier, move || lift(operation()))
    }
}

/// Turns an operation's `Result<T, E>` into `Result<T, Error<E>>`.
pub(crate) async fn lift<T, E>(future: impl Future<Output = Result<T, E>>) -> Result<T, Error<E>> {
    future.await.map_err(Error::Inner)
}
