//! Rate limiting with GCRA: a token bucket in one atomic word.
//!
//! A [`RateLimiter`] admits `per_second` calls per second with bursts of up to `burst`
//! (see [`gcra`](self) for the algorithm). A call over the limit is rejected at once with
//! [`Error::RateLimited`] and the time after which it would be admitted — or, with a
//! `max_wait`, it reserves the next free slot within that wait and sleeps until then.
//!
//! [`KeyedRateLimiter`] keeps one limit per key (client, tenant, route) with per-key
//! quota overrides, quota changes at run time, and a hard bound, `max_keys`, on the keys
//! it remembers. Only idle keys (whose bucket is full again, and so carry no state) are
//! forgotten; while every remembered key is live, the keys it cannot remember share one
//! overflow state, so no key is ever given a fresh burst.
//!
//! ```
//! use palisade::{Error, Policy};
//! use palisade::policy::rate_limit::{Quota, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let limiter = RateLimiter::builder().quota(Quota::new(10.0, 2)).build().unwrap();
//! assert!(limiter.check().is_ok());
//! assert!(limiter.check().is_ok());
//! let refused = limiter.call(|| async { Ok::<_, std::io::Error>(()) }).await;
//! assert!(matches!(refused, Err(Error::RateLimited { .. })));
//! # }
//! ```

mod config;
mod gcra;
mod keyed;
mod layer;
mod quota;

pub use config::{RateLimitConfig, RateLimiterBuilder};
pub use keyed::{KeyedRateLimiter, KeyedRateLimiterBuilder};
pub use layer::{RateLimitLayer, RateLimitService};
pub use quota::Quota;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Nanos, duration_to_nanos};
use crate::config::ConfigError;
use crate::events::{Emitter, Event, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::sync::{AtomicU64, Ordering};
use crate::{Error, Name};
use gcra::{Cell, Decision};

/// A GCRA rate limiter; clones share one bucket. See the [module docs](self).
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    clock: Clock,
    tat: AtomicU64,
    cell: CellSlot,
    quota: std::sync::Mutex<Quota>,
    max_wait: Nanos,
    emitter: Emitter,
    counters: DecisionCounters,
}

/// A quota's cell in two atomics, so it can change at run time.
///
/// The two halves are stored separately: a check racing with a change may pair the new
/// interval with the old tolerance for that one decision, never anything else.
pub(crate) struct CellSlot {
    interval: AtomicU64,
    tolerance: AtomicU64,
}

/// Counters for `palisade_rate_limit_decisions_total`.
pub(crate) struct DecisionCounters {
    allowed: metrics::Counter,
    waited: metrics::Counter,
    limited: metrics::Counter,
}

// === impl RateLimiter ===

impl RateLimiter {
    /// A builder; see [`RateLimitConfig`] for the defaults.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    pub(super) fn from_builder(builder: RateLimiterBuilder) -> Self {
        let config = builder.config;
        let name: Name = config.name.as_str().into();
        let quota = config.quota();
        Self {
            shared: Arc::new(Shared {
                counters: DecisionCounters::new(&name),
                name,
                clock: builder.clock.unwrap_or_default(),
                tat: AtomicU64::new(0),
                cell: CellSlot::new(quota.cell()),
                quota: std::sync::Mutex::new(quota),
                max_wait: duration_to_nanos(config.max_wait),
                emitter: Emitter::new(builder.listener),
            }),
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// Admits one call now, or says after how long it would be admitted.
    #[inline]
    pub fn check(&self) -> Result<(), Duration> {
        let shared = &self.shared;
        match shared.check_fresh(0) {
            Decision::Allowed | Decision::AllowedAfter(_) => {
                shared.counters.allowed.increment(1);
                Ok(())
            }
            Decision::Limited(after) => {
                shared.limited(after);
                Err(after)
            }
        }
    }

    /// Admits one call, sleeping up to the configured `max_wait` for its turn.
    pub async fn acquire<E>(&self) -> Result<(), Error<E>> {
        match self.decide() {
            Decision::Allowed => Ok(()),
            Decision::AllowedAfter(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Decision::Limited(after) => Err(self.rejection(after)),
        }
    }

    /// The decision for one call under `max_wait`, counted.
    pub(crate) fn decide(&self) -> Decision {
        let shared = &self.shared;
        let decision = gcra::check(
            &shared.tat,
            shared.cell.load(),
            shared.clock.now(),
            shared.max_wait,
        );
        match decision {
            Decision::Allowed => shared.counters.allowed.increment(1),
            Decision::AllowedAfter(_) => shared.counters.waited.increment(1),
            Decision::Limited(after) => shared.limited(after),
        }
        decision
    }

    pub(crate) fn rejection<E>(&self, retry_after: Duration) -> Error<E> {
        Error::RateLimited {
            name: self.shared.name.clone(),
            retry_after,
        }
    }

    /// Replaces the quota; calls already admitted keep their slots.
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        quota.validate()?;
        self.shared.cell.store(quota.cell());
        *self.shared.quota.lock().unwrap_or_else(|e| e.into_inner()) = quota;
        Ok(())
    }

    /// The current quota.
    pub fn quota(&self) -> Quota {
        *self.shared.quota.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    /// Checks one call; before refusing, reads the clock again and checks once more, so
    /// that a thread preempted between its clock read and its compare-and-swap (its "now"
    /// gone stale by more than the tolerance) is not refused for being late.
    #[inline]
    fn check_fresh(&self, max_wait: Nanos) -> Decision {
        let cell = self.cell.load();
        match gcra::check(&self.tat, cell, self.clock.now(), max_wait) {
            Decision::Limited(_) => gcra::check(&self.tat, cell, self.clock.now(), max_wait),
            admitted => admitted,
        }
    }

    #[cold]
    fn limited(&self, after: Duration) {
        self.counters.limited.increment(1);
        if self.emitter.is_listening() {
            self.emitter.emit(Event::RateLimited {
                name: self.name.clone(),
                retry_after: after,
            });
        }
    }
}

impl<T, E> Policy<T, E> for RateLimiter
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
        self.acquire().await?;
        operation().await
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.name)
            .field("quota", &self.quota())
            .finish()
    }
}

// === impl CellSlot ===

impl CellSlot {
    pub(crate) fn new(cell: Cell) -> Self {
        Self {
            interval: AtomicU64::new(cell.interval),
            tolerance: AtomicU64::new(cell.tolerance),
        }
    }

    #[inline]
    pub(crate) fn load(&self) -> Cell {
        Cell {
            interval: self.interval.load(Ordering::Relaxed),
            tolerance: self.tolerance.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn store(&self, cell: Cell) {
        self.interval.store(cell.interval, Ordering::Relaxed);
        self.tolerance.store(cell.tolerance, Ordering::Relaxed);
    }
}

// === impl DecisionCounters ===

impl DecisionCounters {
    pub(crate) fn new(name: &Name) -> Self {
        let counter = |decision: &'static str| {
            metrics::counter!(
                names::RATE_LIMIT_DECISIONS_TOTAL,
                "policy" => name.to_string(),
                "decision" => decision
            )
        };
        Self {
            allowed: counter("allowed"),
            waited: counter("waited"),
            limited: counter("limited"),
        }
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
