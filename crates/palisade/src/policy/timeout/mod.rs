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
//! # Which error
//!
//! A deadline belongs to whoever set it. When a timeout's own duration runs out, it
//! returns [`Error::Timeout`], counts it in `palisade_timeouts_total` and emits
//! [`Event::TimedOut`] (so a [`Fallback`](crate::policy::fallback) on timeouts answers).
//! That holds also when a timeout inside it noticed first: a per-try timeout that took
//! the total timeout's remaining time as its deadline reports `DeadlineExceeded` to the
//! total one, as does one started when none of that time is left, and the total timeout,
//! whose own time is then spent, reports its own `Timeout` instead. Only a deadline
//! nearer than the timeout's own duration — the caller's ([`deadline::scope`]), or one
//! set inside the operation — is reported as `DeadlineExceeded`, with no event or
//! metric: the timeout did not fire.
//!
//! Both must see the same instant for this to hold: the first timeout to wait in a poll
//! reads the clock, and the ones around it fix their budgets from that reading (see
//! `cover`), so a budget is never fixed to two instants, however long the poll took.
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
mod cover;
mod execute;
mod future;
mod layer;

pub use config::{TimeoutBuilder, TimeoutConfig};
pub use future::TimeoutFuture;

use execute::Execute;

pub use layer::{TimeoutLayer, TimeoutService};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::instant_after;
use crate::deadline::{self, Deadline};
use crate::events::{Emitter, Event, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::{Error, Name};

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

/// What bounds one run: the policy's own timeout or the call's deadline, whichever ends
/// first. Either may still be a budget whose clock has not started (see
/// [`deadline`](crate::deadline#budgets-whose-clock-has-not-started)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The policy's duration is the nearer limit.
    Own(Deadline),
    /// The call's deadline is the nearer limit.
    Deadline(Deadline),
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

    /// What this run must end by, and which limit sets it; `None` if the call's deadline
    /// has no time left. Reads the clock (once) only if the call's deadline is already an
    /// instant.
    #[inline]
    pub(crate) fn limit(&self) -> Option<Limit> {
        let after = self.shared.after;
        let Some(outer) = deadline::current_deadline() else {
            return Some(Limit::Own(Deadline::within(after)));
        };
        let own = if outer.is_fixed() {
            // Against an instant the own limit must be one too; fixed now, it is not read
            // again when the run first waits.
            let now = Instant::now();
            if outer.instant() <= now {
                return None;
            }
            Deadline::at(instant_after(now, after))
        } else if outer.is_spent() {
            return None;
        } else {
            Deadline::within(after)
        };
        Some(if outer.no_later_than(own) {
            Limit::Deadline(outer)
        } else {
            Limit::Own(own)
        })
    }

    /// The result of a run whose operation ended under `limit`: the operation's own,
    /// unless it is a `DeadlineExceeded` for a deadline this timeout set.
    ///
    /// A timeout inside this one (a per-try timeout inside a total one) takes this
    /// timeout's time as its deadline when it is the nearer limit, and so may notice
    /// first that it ran out: it reports `DeadlineExceeded`, as it must for a deadline
    /// it did not set. So does one started when no time is left. The deadline is this
    /// timeout's own when its limit is its own duration and that has passed: the run
    /// then ended by this timeout's expiry, and is reported as such ([`Self::expired`]).
    /// A deadline nearer than this timeout's (the caller's, or one set inside the
    /// operation) passes through. Only the `DeadlineExceeded` error is looked at: the
    /// success path pays one comparison.
    #[inline(always)]
    pub(crate) fn settle<T, E>(
        &self,
        result: Result<T, Error<E>>,
        limit: Limit,
    ) -> Result<T, Error<E>> {
        match result {
            Err(Error::DeadlineExceeded) => Err(self.deadline_exceeded(limit)),
            result => result,
        }
    }

    /// [`Self::settle`] for a `DeadlineExceeded`.
    #[cold]
    #[inline(never)]
    fn deadline_exceeded<E>(&self, limit: Limit) -> Error<E> {
        match limit {
            // Fixed to an instant, the limit reads the clock here; a budget not yet
            // fixed (the operation never waited) has passed only if it was zero.
            Limit::Own(own) if own.is_spent() => self.expired(limit),
            Limit::Own(_) | Limit::Deadline(_) => Error::DeadlineExceeded,
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
    /// The deadline the run must end by.
    #[inline]
    pub(crate) fn deadline(self) -> Deadline {
        match self {
            Limit::Own(at) | Limit::Deadline(at) => at,
        }
    }

    /// The same limit, fixed to an instant (a budget counted from `now`).
    #[inline]
    pub(crate) fn fixed_at(self, now: Instant) -> Limit {
        match self {
            Limit::Own(at) => Limit::Own(at.fixed_at(now)),
            Limit::Deadline(at) => Limit::Deadline(at.fixed_at(now)),
        }
    }
}

impl<T, E> Policy<T, E> for Timeout
where
    T: Send,
    E: Send + fmt::Debug,
{
    #[inline(always)]
    fn execute<C, F, Fut>(
        &self,
        _classifier: &C,
        operation: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        Execute::new(self, operation)
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
