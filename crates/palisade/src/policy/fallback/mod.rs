//! Fallback: answer with a substitute when the operation, and every policy around it,
//! gave up.
//!
//! A [`Fallback<T, E>`] catches the errors it is told to — by kind ([`Trigger`]: circuit
//! open, bulkhead full, rate limited, timeout, retries exhausted, shed, deadline, or the
//! operation's own error) and optionally by a predicate — and returns instead:
//!
//! * a fixed value ([`FallbackBuilder::value`]);
//! * the result of a closure given the error ([`FallbackBuilder::compute`]);
//! * the last good value, if it is younger than a maximum age
//!   ([`FallbackBuilder::last_good`]), else one of the above.
//!
//! Every use is counted (`palisade_fallbacks_total{reason}`) and reported as an event.
//! Keeping the last good value costs a lock and a clone per successful call; the other
//! sources cost nothing until they are used.
//!
//! ```
//! use palisade::{Error, Policy};
//! use palisade::policy::fallback::{Fallback, Trigger};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let fallback = Fallback::<Vec<u32>, std::io::Error>::builder()
//!     .on(&[Trigger::CircuitOpen, Trigger::Timeout])
//!     .value(Vec::new())
//!     .build()
//!     .unwrap();
//! let answer = fallback
//!     .execute(&palisade::DefaultClassifier, || async {
//!         Err(Error::Timeout { after: std::time::Duration::from_secs(1) })
//!     })
//!     .await;
//! assert_eq!(answer.unwrap(), Vec::<u32>::new());
//! # }
//! ```

mod layer;

pub use layer::{FallbackLayer, FallbackService};

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, positive_duration};
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::{Error, Name};

/// A kind of error a fallback can replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The operation's own error.
    Inner,
    /// A timeout fired.
    Timeout,
    /// A circuit breaker refused.
    CircuitOpen,
    /// A bulkhead was full.
    BulkheadFull,
    /// A rate limiter refused.
    RateLimited,
    /// A load shedder dropped the call.
    Shed,
    /// The deadline passed.
    DeadlineExceeded,
    /// A retry policy gave up.
    RetriesExhausted,
}

impl Trigger {
    /// Every trigger: the default.
    pub const ALL: [Trigger; 8] = [
        Trigger::Inner,
        Trigger::Timeout,
        Trigger::CircuitOpen,
        Trigger::BulkheadFull,
        Trigger::RateLimited,
        Trigger::Shed,
        Trigger::DeadlineExceeded,
        Trigger::RetriesExhausted,
    ];

    fn of<E>(error: &Error<E>) -> Trigger {
        match error {
            Error::Inner(_) => Trigger::Inner,
            Error::Timeout { .. } => Trigger::Timeout,
            Error::CircuitOpen { .. } => Trigger::CircuitOpen,
            Error::BulkheadFull { .. } => Trigger::BulkheadFull,
            Error::RateLimited { .. } => Trigger::RateLimited,
            Error::Shed { .. } => Trigger::Shed,
            Error::DeadlineExceeded => Trigger::DeadlineExceeded,
            Error::RetriesExhausted { .. } => Trigger::RetriesExhausted,
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

type Compute<T, E> = Arc<dyn Fn(&Error<E>) -> T + Send + Sync>;
type Predicate<E> = Arc<dyn Fn(&Error<E>) -> bool + Send + Sync>;

/// Where the substitute comes from when there is no fresh last good value.
enum Source<T, E> {
    Value(T),
    Compute(Compute<T, E>),
    Nothing,
}

/// A fallback for operations yielding `Result<T, E>`; clones share the last good value.
pub struct Fallback<T, E> {
    shared: Arc<Shared<T, E>>,
}

struct Shared<T, E> {
    name: Name,
    triggers: u16,
    predicate: Option<Predicate<E>>,
    source: Source<T, E>,
    last_good: Option<LastGood<T>>,
    clock: Clock,
    emitter: Emitter,
}

struct LastGood<T> {
    max_age: Nanos,
    slot: Mutex<Option<(T, Nanos)>>,
}

/// Builds a [`Fallback`]. Triggers default to all of them.
pub struct FallbackBuilder<T, E> {
    name: String,
    triggers: u16,
    predicate: Option<Predicate<E>>,
    source: Source<T, E>,
    last_good: Option<Duration>,
    clock: Option<Clock>,
    listener: Option<Listener>,
}

// === impl FallbackBuilder ===

impl<T, E> FallbackBuilder<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces only these kinds of error (default: all).
    pub fn on(mut self, triggers: &[Trigger]) -> Self {
        self.triggers = triggers.iter().fold(0, |bits, t| bits | t.bit());
        self
    }

    /// Replaces an error only if `predicate` also says so.
    pub fn when(mut self, predicate: impl Fn(&Error<E>) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Answers with a clone of `value`.
    pub fn value(mut self, value: T) -> Self {
        self.source = Source::Value(value);
        self
    }

    /// Answers with what `compute` makes of the error.
    pub fn compute(mut self, compute: impl Fn(&Error<E>) -> T + Send + Sync + 'static) -> Self {
        self.source = Source::Compute(Arc::new(compute));
        self
    }

    /// Answers with the last successful value if it is younger than `max_age` (more
    /// than 0, at most 1 day), before trying `value` or `compute`.
    pub fn last_good(mut self, max_age: Duration) -> Self {
        self.last_good = Some(max_age);
        self
    }

    /// Uses `clock` to age the last good value.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event::FallbackUsed`] on every use.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds: a fallback needs a value, a closure or a last good value.
    pub fn build(self) -> Result<Fallback<T, E>, ConfigError> {
        if matches!(self.source, Source::Nothing) && self.last_good.is_none() {
            return Err(ConfigError::new(
                "source",
                "no fallback value is set",
                "value(..), compute(..) or last_good(..)",
            ));
        }
        if self.triggers == 0 {
            return Err(ConfigError::new(
                "on",
                "no trigger is set",
                "at least one Trigger",
            ));
        }
        let last_good = match self.last_good {
            Some(age) => {
                positive_duration("last_good", age, ONE_DAY)?;
                Some(LastGood {
                    max_age: duration_to_nanos(age),
                    slot: Mutex::new(None),
                })
            }
            None => None,
        };
        Ok(Fallback {
            shared: Arc::new(Shared {
                name: self.name.as_str().into(),
                triggers: self.triggers,
                predicate: self.predicate,
                source: self.source,
                last_good,
                clock: self.clock.unwrap_or_default(),
                emitter: Emitter::new(self.listener),
            }),
        })
    }
}

// === impl Fallback ===

impl<T, E> Fallback<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A builder.
    pub fn builder() -> FallbackBuilder<T, E> {
        FallbackBuilder {
            name: DEFAULT_NAME.to_owned(),
            triggers: Trigger::ALL.iter().fold(0, |bits, t| bits | t.bit()),
            predicate: None,
            source: Source::Nothing,
            last_good: None,
            clock: None,
            listener: None,
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// Passes `result` through, or replaces an error this fallback covers.
    pub fn apply(&self, result: Result<T, Error<E>>) -> Result<T, Error<E>> {
        match result {
            Ok(value) => {
                self.remember(&value);
                Ok(value)
            }
            Err(error) => self.replace(error),
        }
    }

    #[inline]
    fn remember(&self, value: &T) {
        if let Some(last) = &self.shared.last_good {
            let now = self.shared.clock.now();
            *last.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((value.clone(), now));
        }
    }

    #[cold]
    fn replace(&self, error: Error<E>) -> Result<T, Error<E>> {
        let shared = &self.shared;
        let covered = shared.triggers & Trigger::of(&error).bit() != 0
            && shared.predicate.as_ref().is_none_or(|p| p(&error));
        if !covered {
            return Err(error);
        }
        let substitute = self.fresh_last_good().or_else(|| match &shared.source {
            Source::Value(value) => Some(value.clone()),
            Source::Compute(compute) => Some(compute(&error)),
            Source::Nothing => None,
        });
        match substitute {
            Some(value) => {
                let reason = error.reason();
                metrics::counter!(
                    names::FALLBACKS_TOTAL,
                    "policy" => shared.name.to_string(),
                    "reason" => reason
                )
                .increment(1);
                shared.emitter.emit(Event::FallbackUsed {
                    name: shared.name.clone(),
                    reason,
                });
                Ok(value)
            }
            None => Err(error),
        }
    }

    fn fresh_last_good(&self) -> Option<T> {
        let last = self.shared.last_good.as_ref()?;
        let slot = last.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (value, at) = slot.as_ref()?;
        let age = self.shared.clock.now().saturating_sub(*at);
        (age <= last.max_age).then(|| value.clone())
    }
}

impl<T, E> Clone for Fallback<T, E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T, E> Policy<T, E> for Fallback<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + fmt::Debug + 'static,
{
    async fn execute<C, F, Fut>(&self, _classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        self.apply(operation().await)
    }
}

impl<T, E> fmt::Debug for Fallback<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.shared.name)
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
