//! The one error type every policy returns.
//!
//! [`Error<E>`] wraps the protected operation's own error `E` in [`Error::Inner`] and adds
//! one variant per way a policy can refuse or give up, each with the facts a caller needs
//! to react (how long to wait, how full the bulkhead was, how many attempts were made).
//! Policies that nest pass inner rejections through unchanged, so a pipeline of five
//! policies still returns a flat `Error<E>`.
//!
//! An HTTP service answers them with statuses; `palisade_http::status` holds the one
//! mapping (this, with `RetriesExhausted` judged by its last error):
//!
//! ```
//! use palisade::Error;
//! fn react(e: &Error<std::io::Error>) -> &'static str {
//!     match e {
//!         Error::Inner(_) => "502",
//!         Error::RateLimited { .. } => "429",
//!         Error::CircuitOpen { .. } | Error::BulkheadFull { .. } | Error::Shed { .. } => "503",
//!         Error::Timeout { .. } | Error::DeadlineExceeded => "504",
//!         Error::RetriesExhausted { .. } => "502",
//!         _ => "500",
//!     }
//! }
//! # let _ = react;
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A policy's name, shared cheaply between the policy, its errors and its events.
pub type Name = Arc<str>;

/// The error returned by every Palisade policy around an operation failing with `E`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The operation itself failed.
    Inner(E),
    /// The operation took longer than its timeout and was cancelled.
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// A circuit breaker refused the call without trying it.
    CircuitOpen {
        /// The breaker's name.
        name: Name,
        /// When a call may be admitted again, if known.
        retry_after: Option<Duration>,
    },
    /// A bulkhead had no free slot and no room (or time) in its queue.
    BulkheadFull {
        /// The bulkhead's name.
        name: Name,
        /// Calls running when this one was refused.
        active: usize,
        /// The bulkhead's concurrency limit.
        max: usize,
    },
    /// A rate limiter refused the call.
    RateLimited {
        /// The limiter's name.
        name: Name,
        /// When the call would be admitted.
        retry_after: Duration,
    },
    /// A load shedder dropped the call to protect the service.
    Shed {
        /// The shedder's name.
        name: Name,
    },
    /// The call's deadline passed, or too little of it was left to start.
    DeadlineExceeded,
    /// A retry policy gave up.
    RetriesExhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        last: Box<Error<E>>,
    },
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Inner(e) => e.fmt(f),
            Error::Timeout { after } => write!(f, "timed out after {after:?}"),
            Error::CircuitOpen { name, .. } => write!(f, "circuit breaker '{name}' is open"),
            Error::BulkheadFull { name, active, max } => {
                write!(
                    f,
                    "bulkhead '{name}' is full ({active} of {max} slots in use)"
                )
            }
            Error::RateLimited { name, retry_after } => {
                write!(
                    f,
                    "rate limiter '{name}' refused the call; retry after {retry_after:?}"
                )
            }
            Error::Shed { name } => write!(f, "load shedder '{name}' dropped the call"),
            Error::DeadlineExceeded => f.write_str("deadline exceeded"),
            Error::RetriesExhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: ")?;
                last.fmt(f)
            }
        }
    }
}

/// The operation's error is shown by `Display`; `source` continues with *its* source,
/// so an error chain never repeats a message.
impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Inner(e) => e.source(),
            Error::RetriesExhausted { last, .. } => last.source(),
            _ => None,
        }
    }
}

impl<E> Error<E> {
    /// The operation's own error, if this is one (looking through `RetriesExhausted`).
    pub fn inner(&self) -> Option<&E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::RetriesExhausted { last, .. } => last.inner(),
            _ => None,
        }
    }

    /// Consumes the error, returning the operation's own error if there is one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::RetriesExhausted { last, .. } => last.into_inner(),
            _ => None,
        }
    }

    /// True if a Palisade policy refused the call without running it.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::CircuitOpen { .. }
                | Error::BulkheadFull { .. }
                | Error::RateLimited { .. }
                | Error::Shed { .. }
        )
    }

    /// How long the caller should wait before trying again, when a policy knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen { retry_after, .. } => *retry_after,
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A short, stable reason code (`"timeout"`, `"circuit-open"`, …) for logs,
    /// metrics labels and HTTP headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Inner(_) => "inner",
            Error::Timeout { .. } => "timeout",
            Error::CircuitOpen { .. } => "circuit-open",
            Error::BulkheadFull { .. } => "bulkhead-full",
            Error::RateLimited { .. } => "rate-limited",
            Error::Shed { .. } => "shed",
            Error::DeadlineExceeded => "deadline-exceeded",
            Error::RetriesExhausted { .. } => "retries-exhausted",
        }
    }

    /// Maps the operation's error type, keeping every rejection as it is.
    pub fn map_inner<F, E2>(self, f: F) -> Error<E2>
    where
        F: FnOnce(E) -> E2,
    {
        match self {
            Error::Inner(e) => Error::Inner(f(e)),
            Error::Timeout { after } => Error::Timeout { after },
            Error::CircuitOpen { name, retry_after } => Error::CircuitOpen { name, retry_after },
            Error::BulkheadFull { name, active, max } => Error::BulkheadFull { name, active, max },
            Error::RateLimited { name, retry_after } => Error::RateLimited { name, retry_after },
            Error::Shed { name } => Error::Shed { name },
            Error::DeadlineExceeded => Error::DeadlineExceeded,
            Error::RetriesExhausted { attempts, last } => Error::RetriesExhausted {
                attempts,
                last: Box::new(last.map_inner(f)),
            },
        }
    }
}

impl<E> From<E> for Error<E> {
    fn from(error: E) -> Self {
        Error::Inner(error)
    }
}

/// Errors a tower service may return below a Palisade layer.
///
/// Palisade's tower layers return `Error<Inner>`. When the wrapped service is itself a
/// Palisade service (its error already an `Error<E>`), the layers pass its rejections
/// through instead of nesting them, so a stack of layers keeps one flat error type and
/// outer policies classify inner rejections correctly. Services failing with
/// [`tower::BoxError`](BoxError), `std::io::Error` or `Infallible` work as they are; wrap
/// any other with [`LiftLayer`](crate::layer::LiftLayer).
pub trait IntoPolicyError {
    /// The operation's own error type.
    type Inner;
    /// Converts into Palisade's error.
    fn into_policy_error(self) -> Error<Self::Inner>;
}

/// A boxed error, as tower and hyper use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<E> IntoPolicyError for Error<E> {
    type Inner = E;
    fn into_policy_error(self) -> Error<E> {
        self
    }
}

impl IntoPolicyError for BoxError {
    type Inner = BoxError;
    fn into_policy_error(self) -> Error<BoxError> {
        Error::Inner(self)
    }
}

impl IntoPolicyError for std::io::Error {
    type Inner = std::io::Error;
    fn into_policy_error(self) -> Error<std::io::Error> {
        Error::Inner(self)
    }
}

impl IntoPolicyError for std::convert::Infallible {
    type Inner = std::convert::Infallible;
    fn into_policy_error(self) -> Error<std::convert::Infallible> {
        Error::Inner(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_is_found_through_retries_exhausted() {
        let e: Error<&str> = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(Error::Inner("boom")),
        };
        assert_eq!(e.inner(), Some(&"boom"));
        assert_eq!(e.reason(), "retries-exhausted");
        assert_eq!(e.to_string(), "gave up after 3 attempts: boom");
    }

    #[test]
    fn rejections_carry_retry_after() {
        let e: Error<()> = Error::RateLimited {
            name: "api".into(),
            retry_after: Duration::from_millis(40),
        };
        assert!(e.is_rejection());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(40)));
    }
}
