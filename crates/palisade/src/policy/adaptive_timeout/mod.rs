//! Adaptive timeout: a timeout that follows the dependency's own recent latency.
//!
//! A static timeout is a guess: too short and a healthy dependency's tail is cut off,
//! too long and a hung call holds its caller for nothing. An [`AdaptiveTimeout`] sets
//! the timeout of each call to
//!
//! ```text
//! clamp(factor × percentile(latencies over the window), min, max)
//! ```
//!
//! and uses the static `fallback` (by default `max`) while the window holds fewer than
//! `min_samples` latencies. The percentile is read from a lock-free
//! latency histogram (`window::LatencyWindow`) of sliding sub-windows, within 1/32 of the exact
//! value, and recomputed at most once per hundredth of the window (every 300 ms by
//! default), so a call pays two atomic loads for it.
//!
//! # What is measured
//!
//! * a call the [classifier](crate::outcome) calls a **success**: its latency;
//! * a call this timeout (or one inside it) **cut off**: the time it ran, a lower bound
//!   of its latency. Without these, a dependency slowing down beyond the current timeout
//!   would leave only timeouts and no samples, and every call would fail until the old
//!   samples left the window. With them, once more than `1 − percentile` of the window
//!   timed out, the percentile *is* the timeout, and the next refresh raises the timeout
//!   by `factor`: it climbs to the new latency in a few refreshes.
//! * failures and ignored outcomes are **not** measured: a refused connection answers
//!   fast and would pull the timeout down when the dependency is in trouble; a call cut
//!   off by the caller's deadline says nothing about the dependency.
//!
//! # Timing out
//!
//! Each call is handed to a [`Timeout`] of the current duration, so it behaves exactly
//! as one: the operation is dropped when the time is up ([`Error::Timeout`] and
//! [`Event::TimedOut`](crate::events::Event::TimedOut), with the duration used), the
//! call's [deadline](crate::deadline) wins when it is earlier (`DeadlineExceeded`, the
//! operation not even started when no time is left), and the operation runs in a
//! deadline scope of its own. The `Timeout` is rebuilt only when the duration changes
//! and is shared through a read-mostly lock: a call takes a read lock to clone it (one
//! reference-count increment); only a refresh that changes the duration writes.
//!
//! The current timeout is exported as the gauge `palisade_adaptive_timeout_seconds`.
//!
//! ```
//! use std::time::Duration;
//! use palisade::{Policy, policy::adaptive_timeout::AdaptiveTimeout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let timeout = AdaptiveTimeout::builder()
//!     .bounds(Duration::from_millis(5), Duration::from_secs(1))
//!     .min_samples(20)
//!     .build()
//!     .unwrap();
//! assert_eq!(timeout.current(), Duration::from_secs(1), "the fallback: nothing is known yet");
//! for _ in 0..100 {
//!     timeout.call(|| async {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         Ok::<_, std::io::Error>(())
//!     }).await.unwrap();
//! }
//! // 1.5 × p99 of 10 ms calls.
//! let now = timeout.current();
//! assert!(now > Duration::from_millis(14) && now < Duration::from_millis(16), "{now:?}");
//! # }
//! ```

mod config;
mod layer;

pub(crate) use config::open_unit;
pub use config::{AdaptiveTimeoutBuilder, AdaptiveTimeoutConfig};
pub use layer::{AdaptiveTimeoutLayer, AdaptiveTimeoutService};

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::clock::{Clock, Nanos};
use crate::events::{Emitter, Listener, names};
use crate::outcome::{Classify, classify_result};
use crate::policy::Policy;
use crate::policy::timeout::Timeout;
use crate::window::PercentileTracker;
use crate::{Error, Name};

/// Sub-windows of the latency window: it slides in sixths.
const SUB_WINDOWS: usize = 6;

/// A timeout set from a percentile of recent latencies; see the [module docs](self).
/// Clones share the window and the current timeout.
#[derive(Clone)]
pub struct AdaptiveTimeout {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    factor: f64,
    min: Duration,
    max: Duration,
    fallback: Duration,
    latencies: PercentileTracker,
    clock: Clock,
    emitter: Emitter,
    /// A `Timeout` of the current duration; replaced when the duration changes.
    current: RwLock<Timeout>,
    gauge: metrics::Gauge,
}

// === impl AdaptiveTimeout ===

impl AdaptiveTimeout {
    /// A builder; see [`AdaptiveTimeoutConfig`] for the defaults.
    pub fn builder() -> AdaptiveTimeoutBuilder {
        AdaptiveTimeoutBuilder::default()
    }

    pub(crate) fn from_parts(
        config: &AdaptiveTimeoutConfig,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Self {
        let name: Name = config.name.as_str().into();
        let emitter = Emitter::new(listener);
        let fallback = config.fallback();
        let gauge = metrics::gauge!(names::ADAPTIVE_TIMEOUT_SECONDS, "policy" => name.to_string());
        gauge.set(fallback.as_secs_f64());
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Timeout::from_parts(name.clone(), fallback, emitter.clone())),
                name,
                factor: config.factor,
                min: config.min,
                max: config.max,
                fallback,
                latencies: PercentileTracker::new(
                    config.window,
                    SUB_WINDOWS,
                    config.percentile,
                    u64::from(config.min_samples),
                ),
                clock,
                emitter,
                gauge,
            }),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The timeout the next call gets.
    pub fn current(&self) -> Duration {
        self.timeout().after()
    }

    /// The observed latency percentile, once the window holds `min_samples` (as of the
    /// last refresh).
    pub fn observed(&self) -> Option<Duration> {
        self.shared.latencies.get(self.shared.clock.now())
    }

    /// Latencies in the window now.
    pub fn samples(&self) -> u64 {
        self.shared.latencies.samples(self.shared.clock.now())
    }

    /// The `Timeout` for a call starting now.
    pub(crate) fn timeout(&self) -> Timeout {
        let target = self.target();
        let timeout = self
            .shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if timeout.after() == target {
            return timeout;
        }
        self.replace(target)
    }

    /// `clamp(factor × percentile, min, max)`, or the fallback.
    fn target(&self) -> Duration {
        let shared = &self.shared;
        match shared.latencies.get(shared.clock.now()) {
            None => shared.fallback,
            Some(percentile) => {
                Duration::try_from_secs_f64(percentile.as_secs_f64() * shared.factor)
                    .unwrap_or(shared.max)
                    .clamp(shared.min, shared.max)
            }
        }
    }

    #[cold]
    fn replace(&self, target: Duration) -> Timeout {
        let shared = &self.shared;
        let mut current = shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.after() != target {
            *current = Timeout::from_parts(shared.name.clone(), target, shared.emitter.clone());
            shared.gauge.set(target.as_secs_f64());
        }
        current.clone()
    }

    /// The clock reading a call starts at.
    pub(crate) fn start(&self) -> Nanos {
        self.shared.clock.now()
    }

    /// Records the latency of a call that started at `started`, if it is measured: a
    /// success, or a call cut off by a timeout.
    pub(crate) fn observe<T, E, C>(
        &self,
        classifier: &C,
        started: Nanos,
        result: &Result<T, Error<E>>,
    ) where
        C: Classify<T, E> + ?Sized,
    {
        let measured = match result {
            Err(Error::Timeout { .. }) => true,
            Err(Error::DeadlineExceeded) => false,
            other => classify_result(classifier, other).is_success(),
        };
        if measured {
            let now = self.shared.clock.now();
            let latency = Duration::from_nanos(now.saturating_sub(started));
            self.shared.latencies.record(now, latency);
        }
    }
}

impl<T, E> Policy<T, E> for AdaptiveTimeout
where
    T: Send,
    E: Send + fmt::Debug,
{
    async fn execute<C, F, Fut>(&self, classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        let timeout = self.timeout();
        let started = self.start();
        let result = timeout.execute(classifier, operation).await;
        self.observe(classifier, started, &result);
        result
    }
}

impl fmt::Debug for AdaptiveTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveTimeout")
            .field("name", &self.shared.name)
            .field("factor", &self.shared.factor)
            .field("min", &self.shared.min)
            .field("max", &self.shared.max)
            .field("fallback", &self.shared.fallback)
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
