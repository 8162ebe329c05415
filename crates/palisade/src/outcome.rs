//! Outcome classification: one answer, used by every policy, to "what did this call say
//! about the dependency, and may it be tried again?".
//!
//! A [`Classify`] implementation looks at a successful value or an error and returns an
//! [`Outcome`]:
//!
//! * its [`Health`]: a [`Success`](Health::Success) or a [`Failure`](Health::Failure)
//!   counts towards a circuit breaker's window; an [`Ignored`](Health::Ignored) outcome
//!   (a client error such as HTTP 404, or a cancelled call) says nothing about the
//!   dependency and is left out;
//! * its [`RetryAdvice`]: whether a retry may help, optionally after a delay the
//!   dependency asked for (HTTP `Retry-After`).
//!
//! The [`DefaultClassifier`] treats every `Ok` as a success and every `Err` as a retryable
//! failure. Rejections made by Palisade itself ([`Error`](crate::Error) variants other
//! than `Inner`) are classified by [`classify_rejection`] so that, say, an inner
//! bulkhead's "full" never trips an outer circuit breaker.
//!
//! ```
//! use palisade::outcome::{Classify, Outcome};
//!
//! #[derive(Debug)]
//! enum DbError { NotFound, Overloaded { retry_after_ms: u64 }, Broken }
//!
//! struct DbClassifier;
//! impl<T> Classify<T, DbError> for DbClassifier {
//!     fn classify_err(&self, error: &DbError) -> Outcome {
//!         match error {
//!             DbError::NotFound => Outcome::ignored(),
//!             DbError::Overloaded { retry_after_ms } => Outcome::failure()
//!                 .retry_after(std::time::Duration::from_millis(*retry_after_ms)),
//!             DbError::Broken => Outcome::failure(),
//!         }
//!     }
//! }
//! let o = <DbClassifier as Classify<(), _>>::classify_err(&DbClassifier, &DbError::NotFound);
//! assert!(o.is_ignored() && !o.is_retryable());
//! ```

use std::time::Duration;

use crate::Error;

/// What a call said about the health of the dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// The dependency did its job.
    Success,
    /// The dependency failed; counts against it.
    Failure,
    /// Says nothing about the dependency (client error, cancellation); not counted.
    Ignored,
}

/// Whether trying again may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryAdvice {
    /// Do not retry.
    Never,
    /// A retry may succeed; use the policy's backoff.
    Retry,
    /// A retry may succeed after at least this delay (e.g. HTTP `Retry-After`).
    RetryAfter(Duration),
}

/// The classification of one call: its [`Health`] and its [`RetryAdvice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// What the call said about the dependency.
    pub health: Health,
    /// Whether a retry may help.
    pub retry: RetryAdvice,
}

/// Decides the [`Outcome`] of results of type `Result<T, E>`.
///
/// Both methods have defaults: `Ok` is a success, `Err` a retryable failure.
pub trait Classify<T, E>: Send + Sync {
    /// Classifies a successful value (an HTTP 503 response may be `Ok` but a failure).
    fn classify_ok(&self, _value: &T) -> Outcome {
        Outcome::success()
    }

    /// Classifies an error returned by the protected operation.
    fn classify_err(&self, _error: &E) -> Outcome {
        Outcome::failure().retryable()
    }

    /// Classifies one of Palisade's own errors seen by an outer policy. The default is
    /// [`classify_rejection`]; override it to, say, make a timeout non-retryable for a
    /// request that must not be sent twice.
    fn classify_rejection(&self, error: &Error<E>) -> Outcome {
        classify_rejection(error)
    }
}

/// `Ok` is a success; `Err` is a retryable failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<T, E> Classify<T, E> for DefaultClassifier {}

/// A classifier built from a closure over errors; `Ok` is always a success.
///
/// ```
/// use palisade::outcome::{errors, Classify, Outcome};
/// let c = errors(|e: &std::io::Error| match e.kind() {
///     std::io::ErrorKind::NotFound => Outcome::ignored(),
///     _ => Outcome::failure().retryable(),
/// });
/// let o = <_ as Classify<(), _>>::classify_err(&c, &std::io::Error::other("boom"));
/// assert!(o.is_failure());
/// ```
pub fn errors<E, F>(classify: F) -> ErrorClassifier<F>
where
    F: Fn(&E) -> Outcome + Send + Sync,
{
    ErrorClassifier(classify)
}

/// See [`errors`].
#[derive(Clone, Copy, Debug)]
pub struct ErrorClassifier<F>(F);

impl<T, E, F> Classify<T, E> for ErrorClassifier<F>
where
    F: Fn(&E) -> Outcome + Send + Sync,
{
    fn classify_err(&self, error: &E) -> Outcome {
        (self.0)(error)
    }
}

/// A classifier built from two closures: one for values, one for errors.
pub fn results<T, E, FO, FE>(classify_ok: FO, classify_err: FE) -> ResultClassifier<FO, FE>
where
    FO: Fn(&T) -> Outcome + Send + Sync,
    FE: Fn(&E) -> Outcome + Send + Sync,
{
    ResultClassifier {
        classify_ok,
        classify_err,
    }
}

/// See [`results`].
#[derive(Clone, Copy, Debug)]
pub struct ResultClassifier<FO, FE> {
    classify_ok: FO,
    classify_err: FE,
}

impl<T, E, FO, FE> Classify<T, E> for ResultClassifier<FO, FE>
where
    FO: Fn(&T) -> Outcome + Send + Sync,
    FE: Fn(&E) -> Outcome + Send + Sync,
{
    fn classify_ok(&self, value: &T) -> Outcome {
        (self.classify_ok)(value)
    }
    fn classify_err(&self, error: &E) -> Outcome {
        (self.classify_err)(error)
    }
}

impl<T, E, C: Classify<T, E>> Classify<T, E> for &C {
    fn classify_ok(&self, value: &T) -> Outcome {
        (**self).classify_ok(value)
    }
    fn classify_err(&self, error: &E) -> Outcome {
        (**self).classify_err(error)
    }
    fn classify_rejection(&self, error: &Error<E>) -> Outcome {
        (**self).classify_rejection(error)
    }
}

impl<T, E, C: Classify<T, E> + ?Sized> Classify<T, E> for std::sync::Arc<C> {
    fn classify_ok(&self, value: &T) -> Outcome {
        (**self).classify_ok(value)
    }
    fn classify_err(&self, error: &E) -> Outcome {
        (**self).classify_err(error)
    }
    fn classify_rejection(&self, error: &Error<E>) -> Outcome {
        (**self).classify_rejection(error)
    }
}

/// Classifies a result that may carry one of Palisade's own rejections.
#[inline]
pub fn classify_result<T, E, C>(classifier: &C, result: &Result<T, Error<E>>) -> Outcome
where
    C: Classify<T, E> + ?Sized,
{
    match result {
        Ok(value) => classifier.classify_ok(value),
        Err(Error::Inner(error)) => classifier.classify_err(error),
        Err(rejection) => classifier.classify_rejection(rejection),
    }
}

/// How Palisade's own errors count when an outer policy sees them.
///
/// | error | health | retry |
/// |---|---|---|
/// | `Timeout` | failure | yes |
/// | `CircuitOpen` | ignored | no: fail fast; the error carries `retry_after` for the caller |
/// | `BulkheadFull`, `Shed` | ignored | no |
/// | `RateLimited` | ignored | no (a local limit: retrying adds load) |
/// | `DeadlineExceeded` | failure | no (no time is left) |
/// | `RetriesExhausted` | failure | no |
///
/// Local rejections are *ignored* by breakers: they say nothing about the dependency.
pub fn classify_rejection<E>(error: &Error<E>) -> Outcome {
    match error {
        Error::Inner(_) => Outcome::failure().retryable(),
        Error::Timeout { .. } => Outcome::failure().retryable(),
        Error::CircuitOpen { .. }
        | Error::BulkheadFull { .. }
        | Error::Shed { .. }
        | Error::RateLimited { .. } => Outcome::ignored(),
        Error::DeadlineExceeded | Error::RetriesExhausted { .. } => Outcome::failure(),
    }
}

// === impl Outcome ===

impl Outcome {
    /// A success; never retried.
    pub const fn success() -> Self {
        Self {
            health: Health::Success,
            retry: RetryAdvice::Never,
        }
    }

    /// A failure, not retryable until [`retryable`](Self::retryable) says so.
    pub const fn failure() -> Self {
        Self {
            health: Health::Failure,
            retry: RetryAdvice::Never,
        }
    }

    /// An outcome that says nothing about the dependency; not retryable by default.
    pub const fn ignored() -> Self {
        Self {
            health: Health::Ignored,
            retry: RetryAdvice::Never,
        }
    }

    /// Marks the outcome as retryable with the policy's own backoff.
    pub const fn retryable(mut self) -> Self {
        self.retry = RetryAdvice::Retry;
        self
    }

    /// Marks the outcome as retryable after at least `delay` (a `Retry-After` hint).
    pub const fn retry_after(mut self, delay: Duration) -> Self {
        self.retry = RetryAdvice::RetryAfter(delay);
        self
    }

    /// True for [`Health::Success`].
    pub const fn is_success(&self) -> bool {
        matches!(self.health, Health::Success)
    }

    /// True for [`Health::Failure`].
    pub const fn is_failure(&self) -> bool {
        matches!(self.health, Health::Failure)
    }

    /// True for [`Health::Ignored`].
    pub const fn is_ignored(&self) -> bool {
        matches!(self.health, Health::Ignored)
    }

    /// True unless the advice is [`RetryAdvice::Never`].
    pub const fn is_retryable(&self) -> bool {
        !matches!(self.retry, RetryAdvice::Never)
    }

    /// The delay the dependency asked for, if any.
    pub const fn delay_hint(&self) -> Option<Duration> {
        match self.retry {
            RetryAdvice::RetryAfter(delay) => Some(delay),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classifier_counts_errors_as_retryable_failures() {
        let o = <DefaultClassifier as Classify<u8, &str>>::classify_err(&DefaultClassifier, &"x");
        assert!(o.is_failure() && o.is_retryable());
        let o = <DefaultClassifier as Classify<u8, &str>>::classify_ok(&DefaultClassifier, &1);
        assert!(o.is_success() && !o.is_retryable());
    }

    #[test]
    fn local_rejections_are_ignored_by_breakers() {
        let full: Error<()> = Error::BulkheadFull {
            name: "db".into(),
            active: 1,
            max: 1,
        };
        assert!(classify_rejection(&full).is_ignored());
        let timeout: Error<()> = Error::Timeout {
            after: Duration::from_millis(5),
        };
        let o = classify_rejection(&timeout);
        assert!(o.is_failure() && o.is_retryable());
    }

    #[test]
    fn retry_after_hint_is_kept() {
        let o = Outcome::failure().retry_after(Duration::from_secs(2));
        assert_eq!(o.delay_hint(), Some(Duration::from_secs(2)));
        assert!(o.is_retryable());
    }
}
