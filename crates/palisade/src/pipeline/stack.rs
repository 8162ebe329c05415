//! Type-level nesting of policies: `Stack<Outer, Inner>`, ending in `Identity`.

use std::fmt;
use std::future::Future;

use crate::Error;
use crate::outcome::Classify;
use crate::policy::Policy;

/// The end of a pipeline: runs the operation as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

/// `Outer` wrapped around `Inner`.
#[derive(Clone, Debug)]
pub struct Stack<Outer, Inner> {
    pub(crate) outer: Outer,
    pub(crate) inner: Inner,
}

/// Adds a policy at the innermost position (just around the operation).
pub trait Append<P> {
    /// The stack with `P` innermost.
    type Output;
    /// Appends `policy`.
    fn append(self, policy: P) -> Self::Output;
}

impl<P> Append<P> for Identity {
    type Output = Stack<P, Identity>;
    fn append(self, policy: P) -> Self::Output {
        Stack {
            outer: policy,
            inner: Identity,
        }
    }
}

impl<P, Outer, Inner: Append<P>> Append<P> for Stack<Outer, Inner> {
    type Output = Stack<Outer, Inner::Output>;
    fn append(self, policy: P) -> Self::Output {
        Stack {
            outer: self.outer,
            inner: self.inner.append(policy),
        }
    }
}

impl<T, E> Policy<T, E> for Identity
where
    T: Send,
    E: Send + fmt::Debug,
{
    #[inline]
    async fn execute<C, F, Fut>(&self, _classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        operation().await
    }
}

impl<T, E, Outer, Inner> Policy<T, E> for Stack<Outer, Inner>
where
    T: Send,
    E: Send + fmt::Debug,
    Outer: Policy<T, E>,
    Inner: Policy<T, E>,
{
    #[inline]
    async fn execute<C, F, Fut>(&self, classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        let inner = &self.inner;
        let operation = &operation;
        self.outer
            .execute(classifier, move || inner.execute(classifier, operation))
            .await
    }
}

/// A policy that may be absent: `Some(policy)` runs the operation under it, `None`
/// runs it as it is. So a pipeline built from a config, where each policy is switched on
/// or off, keeps one shape whatever is on.
impl<T, E, P> Policy<T, E> for Option<P>
where
    T: Send,
    E: Send + fmt::Debug,
    P: Policy<T, E>,
{
    #[inline]
    async fn execute<C, F, Fut>(&self, classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        match self {
            Some(policy) => policy.execute(classifier, operation).await,
            None => operation().await,
        }
    }
}
