//! Retry: try again, with backoff and jitter, only when it can help and only within
//! budget.
//!
//! A [`Retry`] re-runs an operation whose outcome the [classifier](crate::outcome) calls
//! *retryable*, up to `max_attempts` attempts, sleeping a [backoff](Backoff) between
//! them. It gives up early — returning [`Error::RetriesExhausted`] with the last error —
//! when:
//!
//! * the call's [deadline](crate::deadline) (or `max_elapsed`) would pass before the next
//!   attempt could start;
//! * the shared [`RetryBudget`] has no retry left, so that a fleet cannot multiply load
//!   on a dependency that is already down.
//!
//! A `Retry-After` hint carried by the outcome is honoured, up to `max_retry_after`.
//! Non-retryable outcomes (and Palisade's own rejections, such as an open circuit) are
//! returned at once and unchanged. A retryable *value* (an HTTP 503 response) that is
//! still retryable on the last attempt is returned as the value.
//!
//! Randomness comes from a small RNG created on the first retry, seeded from `seed` and
//! a per-call counter when a seed is set, so jitter is reproducible in tests; a call
//! that succeeds first time never touches it.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use palisade::{Policy, policy::retry::Retry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let retry = Retry::builder().max_attempts(3).seed(7).build().unwrap();
//! let calls = AtomicU32::new(0);
//! let answer = retry.call(|| async {
//!     if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err("flaky") } else { Ok("ok") }
//! }).await;
//! assert_eq!(answer.unwrap(), "ok");
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```

mod backoff;
mod budget;
mod config;
mod future;
mod layer;

pub use backoff::{Backoff, BackoffKind, BackoffState, Jitter};
pub use budget::{BudgetLedger, RetryBudget, RetryBudgetConfig};
pub use config::{RetryBuilder, RetryConfig};
pub use layer::{Replayable, RetryLayer, RetryService};

use future::Execute;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::{Classify, Outcome};
use crate::policy::Policy;
use crate::{Error, Name, deadline};

/// A retry policy; clones share its budget and counters. See the [module docs](self).
#[derive(Clone)]
pub struct Retry {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    max_attempts: u32,
    backoff: Backoff,
    max_retry_after: Duration,
    max_elapsed: Option<Nanos>,
    seed: Option<u64>,
    calls: AtomicU64,
    budget: Option<RetryBudget>,
    clock: Clock,
    emitter: Emitter,
    exhausted: metrics::Counter,
    budget_exhausted: metrics::Counter,
}

/// The state of one call's attempts.
pub(crate) struct Attempts {
    attempt: u32,
    backoff: BackoffState,
    rng: Option<SmallRng>,
    started: Nanos,
}

/// What to do after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Return this attempt's result as it is.
    Return,
    /// Give up: wrap this attempt's error in `RetriesExhausted`.
    GiveUp,
    /// Sleep this long, then try again.
    RetryAfter(Duration),
}

// === impl Retry ===

impl Retry {
    /// A builder; see [`RetryConfig`] for the defaults.
    pub fn builder() -> RetryBuilder {
        RetryBuilder::default()
    }

    pub(super) fn from_parts(
        config: RetryConfig,
        budget: Option<RetryBudget>,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Self {
        let name: Name = config.name.as_str().into();
        Self {
            shared: Arc::new(Shared {
                exhausted: metrics::counter!(names::RETRIES_EXHAUSTED_TOTAL, "policy" => name.to_string()),
                budget_exhausted: metrics::counter!(names::RETRY_BUDGET_EXHAUSTED_TOTAL, "policy" => name.to_string()),
                name,
                max_attempts: config.max_attempts,
                backoff: config.backoff(),
                max_retry_after: config.max_retry_after,
                max_elapsed: config.max_elapsed.map(duration_to_nanos),
                seed: config.seed,
                calls: AtomicU64::new(0),
                budget,
                clock,
                emitter: Emitter::new(listener),
            }),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The shared budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// Starts one call: deposits into the budget, and returns its start time when
    /// `max_elapsed` needs one (0 otherwise).
    #[inline(always)]
    pub(crate) fn start(&self) -> Nanos {
        let shared = &self.shared;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        if shared.max_elapsed.is_some() {
            shared.clock.now()
        } else {
            0
        }
    }

    /// Decides what follows an attempt classified as `outcome`. `describe` formats the
    /// attempt's error for events, and is only called when someone listens.
    #[inline]
    pub(crate) fn next(
        &self,
        attempts: &mut Attempts,
        outcome: &Outcome,
        describe: impl FnOnce() -> String,
    ) -> Next {
        if !outcome.is_retryable() || self.shared.max_attempts <= 1 {
            return Next::Return;
        }
        self.next_retry(attempts, outcome, describe)
    }

    #[cold]
    fn next_retry(
        &self,
        attempts: &mut Attempts,
        outcome: &Outcome,
        describe: impl FnOnce() -> String,
    ) -> Next {
        let shared = &self.shared;
        if attempts.attempt >= shared.max_attempts {
            return self.give_up(attempts);
        }
        let delay = self.delay(attempts, outcome);
        if !self.fits_in_time(attempts, delay) {
            return self.give_up(attempts);
        }
        if let Some(budget) = &shared.budget {
            if !budget.try_withdraw() {
                shared.budget_exhausted.increment(1);
                if shared.emitter.is_listening() {
                    shared.emitter.emit(Event::RetryBudgetExhausted {
                        name: shared.name.clone(),
                    });
                }
                return self.give_up(attempts);
            }
        }
        metrics::counter!(
            names::RETRY_ATTEMPTS_TOTAL,
            "policy" => shared.name.to_string(),
            "attempt" => attempts.attempt.to_string()
        )
        .increment(1);
        if shared.emitter.is_listening() {
            shared.emitter.emit(Event::Retry {
                name: shared.name.clone(),
                attempt: attempts.attempt,
                delay,
                outcome: *outcome,
                error: describe(),
            });
        }
        attempts.attempt += 1;
        Next::RetryAfter(delay)
    }

    /// The backoff delay, raised to a `Retry-After` hint (capped).
    fn delay(&self, attempts: &mut Attempts, outcome: &Outcome) -> Duration {
        let shared = &self.shared;
        let rng = attempts.rng.get_or_insert_with(|| {
            let call = shared.calls.fetch_add(1, Ordering::Relaxed);
            match shared.seed {
                Some(seed) => SmallRng::seed_from_u64(splitmix(seed ^ splitmix(call))),
                None => SmallRng::from_os_rng(),
            }
        });
        let backoff = shared
            .backoff
            .delay(attempts.attempt, &mut attempts.backoff, rng);
        match outcome.delay_hint() {
            Some(hint) => backoff.max(hint.min(shared.max_retry_after)),
            None => backoff,
        }
    }

    /// False if the next attempt would start after the deadline or `max_elapsed`.
    fn fits_in_time(&self, attempts: &Attempts, delay: Duration) -> bool {
        if let Some(left) = deadline::remaining() {
            if delay >= left {
                return false;
            }
        }
        if let Some(max) = self.shared.max_elapsed {
            let elapsed = self.shared.clock.now().saturating_sub(attempts.started);
            if elapsed.saturating_add(duration_to_nanos(delay)) > max {
                return false;
            }
        }
        true
    }

    fn give_up(&self, attempts: &Attempts) -> Next {
        self.shared.exhausted.increment(1);
        if self.shared.emitter.is_listening() {
            self.shared.emitter.emit(Event::RetriesExhausted {
                name: self.shared.name.clone(),
                attempts: attempts.attempt,
            });
        }
        Next::GiveUp
    }
}

impl Attempts {
    /// The state after a first attempt started at `started`.
    fn after_first(started: Nanos) -> Self {
        Attempts {
            attempt: 1,
            backoff: BackoffState::default(),
            rng: None,
            started,
        }
    }

    /// Attempts made so far (the first included).
    pub(crate) fn made(&self) -> u32 {
        self.attempt
    }
}

/// Wraps the last attempt's result after giving up.
pub(crate) fn exhausted<T, E>(attempts: u32, result: Result<T, Error<E>>) -> Result<T, Error<E>> {
    result.map_err(|last| Error::RetriesExhausted {
        attempts,
        last: Box::new(last),
    })
}

/// SplitMix64: spreads consecutive seeds over the whole space.
fn splitmix(x: u64) -> u64 {
    crate::random::mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

impl<T, E> Policy<T, E> for Retry
where
    T: Send,
    E: Send + fmt::Debug,
{
    #[inline(always)]
    fn execute<C, F, Fut>(
        &self,
        classifier: &C,
        operation: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + Send
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        Execute::new(self, classifier, operation)
    }
}

/// Formats an attempt's error for events.
pub(crate) fn describe<T, E: fmt::Debug>(result: &Result<T, Error<E>>) -> String {
    match result {
        Ok(_) => "retryable response".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .field("backoff", &self.shared.backoff)
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
