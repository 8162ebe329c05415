//! Timeout: cancel an operation that runs too long.
//!
//! A [`Timeout`] drops (and so cancels) the operation's future when its time is up and
//! returns [`Error::Timeout`]. It also honours the call's [deadline](crate::deadline): it
//! fires at whichever comes first, its own duration or the deadline, and answers
//! [`Error::DeadlineExceeded`] at once, without starting the operation, when no time is
//! left. Inside, it opens a deadline scope of its own, so a *total* timeout placed outside
//! a retry stops the retry from starting attempts that cannot finish, and shortens every
//! per-attempt timeout placed inside the retry.
//!
//! ```
//! use std::time::Duration;
//! use palisade::{Error, Policy, policy::timeout::Timeout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let timeout = Timeout::new(Duration::from_millis(50));
//! let slow = timeout.call(|| async {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Ok::<_, std::io::Error>(())
//! }).await;
//! assert!(matches!(slow, Err(Error::Timeout { .. })));
//! # }
//! ```

mod config;
mod future;
mod layer;

pub use config::{TimeoutBuilder, TimeoutConfig};
pub use future::TimeoutFuture;

pub use layer::{TimeoutLayer, TimeoutService};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::events::{Emitter, Event, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::{Error, Name, deadline};

/// Cancels operations that outlive a duration or the call's deadline.
#[derive(Clone)]
pub struct Timeout {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    after: Duration,
    emitter: Emitter,
    fired: metrics::Counter,
}

/// What bounds one run: the policy's own timeout or the call's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The policy's duration is the nearer limit.
    Own(Instant),
    /// The call's deadline is the nearer limit.
    Deadline(Instant),
}

// === impl Timeout ===

impl Timeout {
    /// A timeout of `after` named `"default"`. Never panics: a zero duration times out
    /// every call that does not finish on its first poll, and a duration too large for
    /// the clock means "a year".
    pub fn new(after: Duration) -> Self {
        Self::from_parts(
            crate::config::DEFAULT_NAME.into(),
            after,
            Emitter::default(),
        )
    }

    /// A builder; see [`TimeoutConfig`] for the defaults.
    pub fn builder() -> TimeoutBuilder {
        TimeoutBuilder::default()
    }

    pub(crate) fn from_parts(name: Name, after: Duration, emitter: Emitter) -> Self {
        let fired = metrics::counter!(names::TIMEOUTS_TOTAL, "policy" => name.to_string());
        Self {
            shared: Arc::new(Shared {
                name,
                after,
                emitter,
                fired,
            }),
        }
    }

    /// The configured duration.
    pub fn after(&self) -> Duration {
        self.shared.after
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The instant this run must end by, and which limit sets it.
    #[inline]
    pub(crate) fn limit(&self) -> Limit {
        let own = crate::clock::instant_after(Instant::now(), self.shared.after);
        match deadline::current() {
            Some(deadline) if deadline <= own => Limit::Deadline(deadline),
            _ => Limit::Own(own),
        }
    }

    /// The error for a run that hit `limit`, reported as an event.
    pub(crate) fn expired<E>(&self, limit: Limit) -> Error<E> {
        match limit {
            Limit::Deadline(_) => Error::DeadlineExceeded,
            Limit::Own(_) => {
                self.shared.fired.increment(1);
                if self.shared.emitter.is_listening() {
                    self.shared.emitter.emit(Event::TimedOut {
                        name: self.shared.name.clone(),
                        after: self.shared.after,
                    });
                }
                Error::Timeout {
                    after: self.shared.after,
                }
            }
        }
    }
}

impl Limit {
    /// The instant the run must end by.
    #[inline]
    pub(crate) fn at(self) -> Instant {
        match self {
            Limit::Own(at) | Limit::Deadline(at) => at,
        }
    }

    /// True if it is the call's deadline and it has already passed.
    #[inline]
    pub(crate) fn spent(self) -> bool {
        matches!(self, Limit::Deadline(at) if at <= Instant::now())
    }
}

impl<T, E> Policy<T, E> for Timeout
where
    T: Send,
    E: Send + fmt::Debug,
{
    async fn execute<C, F, Fut>(&self, _classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        let limit = self.limit();
        if limit.spent() {
            return Err(Error::DeadlineExceeded);
        }
        match TimeoutFuture::new(operation(), limit).await {
            Ok(result) => result,
            Err(limit) => Err(self.expired(limit)),
        }
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("name", &self.shared.name)
            .field("after", &self.shared.after)
            .finish()
    }
}

#[cfg(test)]
mod tests;
