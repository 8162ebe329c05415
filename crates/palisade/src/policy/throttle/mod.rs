//! Client-side adaptive throttling (Google SRE, "Handling Overload"): reject locally what
//! the backend would reject anyway.
//!
//! Over a sliding window the client counts `requests` (every call it wanted to make,
//! rejected locally or not) and `accepts` (calls the backend accepted: any outcome but a
//! *failure*, and not a local rejection such as an open breaker's, which never reached
//! the backend). When the backend starts refusing, each new call is rejected locally with
//! probability
//!
//! ```text
//! p = min(max_rejection, max(0, (requests − K·accepts) / (requests + 1)))
//! ```
//!
//! so the load that reaches an overloaded backend falls towards `K` times what it accepts,
//! without any coordination. `K = 2` (the default) keeps some headroom for recovery; lower
//! `K` throttles harder. Counts live in a lock-free [bucket ring](crate::window), and the
//! decision is a sum over the buckets and one roll of the dice: no lock.
//!
//! ```
//! use palisade::{Error, Policy};
//! use palisade::policy::throttle::{AdaptiveThrottle, ThrottleConfig};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let throttle = AdaptiveThrottle::new(ThrottleConfig { seed: Some(1), ..Default::default() }).unwrap();
//! for _ in 0..1000 {
//!     let _ = throttle.call(|| async { Err::<(), _>("overloaded") }).await;
//! }
//! assert!(throttle.rejection_probability() > 0.8, "a backend that refuses everything is mostly not called");
//! # }
//! ```

mod config;

pub use config::ThrottleConfig;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::{Classify, Health, classify_result};
use crate::policy::Policy;
use crate::random::Dice;
use crate::window::BucketRing;
use crate::{Error, Name};

/// Client-side adaptive throttling; clones share the window. See the [module docs](self).
#[derive(Clone)]
pub struct AdaptiveThrottle {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    /// `a` = requests, `b` = accepts.
    window: BucketRing,
    k: f64,
    max_rejection: f64,
    clock: Clock,
    dice: Dice,
    emitter: Emitter,
    rejected: metrics::Counter,
}

impl AdaptiveThrottle {
    /// A throttle on tokio's clock.
    pub fn new(config: ThrottleConfig) -> Result<Self, ConfigError> {
        Self::with(config, Clock::tokio(), None)
    }

    /// A throttle on `clock`, reporting to `listener`.
    pub fn with(
        config: ThrottleConfig,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Name = config.name.as_str().into();
        Ok(Self {
            shared: Arc::new(Shared {
                window: BucketRing::new(config.buckets as usize, config.window / config.buckets),
                k: config.k,
                max_rejection: config.max_rejection,
                clock,
                dice: Dice::new(config.seed),
                emitter: Emitter::new(listener),
                rejected: metrics::counter!(names::THROTTLED_TOTAL, "policy" => name.to_string()),
                name,
            }),
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The probability that the next call is rejected locally.
    pub fn rejection_probability(&self) -> f64 {
        let (requests, accepts) = self.shared.window.sum(self.shared.clock.now());
        probability(requests, accepts, self.shared.k, self.shared.max_rejection)
    }

    /// Decides one call: `true` to send it. Counts it as a request either way.
    #[inline]
    pub fn admit(&self) -> bool {
        let shared = &self.shared;
        let now = shared.clock.now();
        let (requests, accepts) = shared.window.sum(now);
        let p = probability(requests, accepts, shared.k, shared.max_rejection);
        let send = p <= 0.0 || shared.dice.roll() >= p;
        shared.window.add(now, 1, 0);
        if !send {
            shared.rejected.increment(1);
            if shared.emitter.is_listening() {
                shared.emitter.emit(Event::Throttled {
                    name: shared.name.clone(),
                    probability: p,
                });
            }
        }
        send
    }

    /// Records that the backend accepted a call.
    #[inline]
    pub fn accepted(&self) {
        self.shared.window.add(self.shared.clock.now(), 0, 1);
    }

    pub(crate) fn rejection<E>(&self) -> Error<E> {
        Error::Shed {
            name: self.shared.name.clone(),
        }
    }
}

/// Whether the backend accepted a call: any outcome but a failure, and not a local
/// rejection (an open breaker, a full bulkhead: the call never reached the backend).
pub fn backend_accepted<T, E, C>(classifier: &C, result: &Result<T, Error<E>>) -> bool
where
    C: Classify<T, E> + ?Sized,
{
    match result {
        Err(error) if error.is_rejection() => false,
        _ => classify_result(classifier, result).health != Health::Failure,
    }
}

/// `min(max, max(0, (requests − k·accepts) / (requests + 1)))`.
pub fn probability(requests: u64, accepts: u64, k: f64, max: f64) -> f64 {
    let p = (requests as f64 - k * accepts as f64) / (requests as f64 + 1.0);
    p.clamp(0.0, max)
}

impl<T, E> Policy<T, E> for AdaptiveThrottle
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
        if !self.admit() {
            return Err(self.rejection());
        }
        let result = operation().await;
        if backend_accepted(classifier, &result) {
            self.accepted();
        }
        result
    }
}

impl fmt::Debug for AdaptiveThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.shared.name)
            .field("k", &self.shared.k)
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
