//! Fallback: answer with a substitute when the operation, and every policy around it,
//! gave up.
//!
//! A [`Fallback<T, E>`] catches the errors it is told to — by kind ([`Trigger`]: circuit
//! open, bulkhead full, rate limited, timeout, retries exhausted, shed, deadline, or the
//! operation's own error) and optionally by a predicate — and returns instead:
//!
//! * a fixed value ([`FallbackBuilder::value`]), cloned for every use;
//! * the result of a closure given the error ([`FallbackBuilder::compute`]);
//! * the last good value, if it is younger than a maximum age
//!   ([`FallbackBuilder::last_good`]), else one of the above.
//!
//! Only the sources that copy a value ask for `T: Clone` (and a fixed value, shared by
//! every thread, for `T: Sync`): a computed fallback makes a fresh value each time, so it
//! works for any `T: Send`, such as an `http::Response` whose streaming body is neither
//! `Clone` nor `Sync` — through [`Policy::call`] and as a tower layer alike. The bounds
//! sit on those two builder methods only; the fallback keeps the clone function they
//! were given, so nothing else needs them.
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

/// Makes the substitute from the error: a closure, or the clone of a fixed value.
type Compute<T, E> = Arc<dyn Fn(&Error<E>) -> T + Send + Sync>;
type Predicate<E> = Arc<dyn Fn(&Error<E>) -> bool + Send + Sync>;
/// Copies a value to keep or to serve: `T::clone`, taken where `T: Clone` is known.
type CloneFn<T> = fn(&T) -> T;

/// A fallback for operations yielding `Result<T, E>`; clones share the last good value.
pub struct Fallback<T, E> {
    shared: Arc<Shared<T, E>>,
}

struct Shared<T, E> {
    /// The policy's name, for metrics and events.
    name: Name,
    /// A bit per [`Trigger`] this fallback replaces.
    triggers: u16,
    /// Narrows the triggers further, if set.
    predicate: Option<Predicate<E>>,
    /// Where the substitute comes from without a fresh last good value.
    source: Option<Compute<T, E>>,
    /// The last good value, if kept.
    last_good: Option<LastGood<T>>,
    /// Ages the last good value.
    clock: Clock,
    /// Reports each use.
    emitter: Emitter,
}

struct LastGood<T> {
    /// The oldest a last good value may be and still be served.
    max_age: Nanos,
    /// The last good value and when it was seen.
    slot: Mutex<Option<(T, Nanos)>>,
    /// `T::clone`, given by [`FallbackBuilder::last_good`].
    clone: CloneFn<T>,
}

/// Builds a [`Fallback`]. Triggers default to all of them.
pub struct FallbackBuilder<T, E> {
    /// See [`FallbackBuilder::name`].
    name: String,
    /// See [`FallbackBuilder::on`].
    triggers: u16,
    /// See [`FallbackBuilder::when`].
    predicate: Option<Predicate<E>>,
    /// See [`FallbackBuilder::value`] and [`FallbackBuilder::compute`].
    source: Option<Compute<T, E>>,
    /// See [`FallbackBuilder::last_good`]: the maximum age, and `T::clone`.
    last_good: Option<(Duration, CloneFn<T>)>,
    /// See [`FallbackBuilder::clock`].
    clock: Option<Clock>,
    /// See [`FallbackBuilder::on_event`].
    listener: Option<Listener>,
}

// === impl FallbackBuilder ===

impl<T, E> FallbackBuilder<T, E>
where
    T: Clone + Send + Sync + 'static,
{
    /// Answers with a clone of `value`.
    pub fn value(mut self, value: T) -> Self {
        self.source = Some(Arc::new(move |_: &Error<E>| value.clone()));
        self
    }
}

impl<T: Clone, E> FallbackBuilder<T, E> {
    /// Answers with the last successful value if it is younger than `max_age` (more
    /// than 0, at most 1 day), before trying `value` or `compute`. Each success is kept
    /// as a clone.
    pub fn last_good(mut self, max_age: Duration) -> Self {
        self.last_good = Some((max_age, T::clone));
        self
    }
}

impl<T, E> FallbackBuilder<T, E> {
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

    /// Answers with what `compute` makes of the error: a new value each time, so `T`
    /// need not be `Clone`.
    pub fn compute(mut self, compute: impl Fn(&Error<E>) -> T + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(compute));
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
        if self.source.is_none() && self.last_good.is_none() {
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
            Some((age, clone)) => {
                positive_duration("last_good", age, ONE_DAY)?;
                Some(LastGood {
                    max_age: duration_to_nanos(age),
                    slot: Mutex::new(None),
                    clone,
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

impl<T, E> Fallback<T, E> {
    /// A builder.
    pub fn builder() -> FallbackBuilder<T, E> {
        FallbackBuilder {
            name: DEFAULT_NAME.to_owned(),
            triggers: Trigger::ALL.iter().fold(0, |bits, t| bits | t.bit()),
            predicate: None,
            source: None,
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
            *last.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(((last.clone)(value), now));
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
        let substitute = self
            .fresh_last_good()
            .or_else(|| shared.source.as_ref().map(|compute| compute(&error)));
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
        (age <= last.max_age).then(|| (last.clone)(value))
    }
}

impl<T, E> Clone for Fallback<T, E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// Any `T: Send` will do: the fallback itself never clones a value unless
/// [`value`](FallbackBuilder::value) or [`last_good`](FallbackBuilder::last_good) made it
/// able to.
impl<T, E> Policy<T, E> for Fallback<T, E>
where
    T: Send + 'static,
    E: Send + fmt::Debug + 'static,
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
