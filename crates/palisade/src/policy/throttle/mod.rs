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
//! `K` throttles harder.
//!
//! The per-call path is three atomic operations and no clock read: a load of the cached
//! probability, a roll of the dice, and an add to a running total. Every 64th call reads
//! the clock and recomputes the probability from the running totals minus the oldest
//! snapshot still inside the window; once per bucket width it also takes a new snapshot
//! (at most `buckets + 1` are kept). The window is therefore exact to one bucket, and the
//! probability at most 63 calls old.
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

pub use config::{AdaptiveThrottleBuilder, ThrottleConfig};

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::{Classify, Health, classify_result};
use crate::policy::Policy;
use crate::random::Dice;
use crate::{Error, Name};

/// Client-side adaptive throttling; clones share the window. See the [module docs](self).
#[derive(Clone)]
pub struct AdaptiveThrottle {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    k: f64,
    max_rejection: f64,
    clock: Clock,
    dice: Dice,
    emitter: Emitter,
    rejected: metrics::Counter,
    /// Every request ever counted.
    requests: AtomicU64,
    /// Every accept ever counted.
    accepts: AtomicU64,
    /// The rejection probability, as `f64` bits.
    probability: AtomicU64,
    /// Clock time at which the window moves on next.
    next_roll: AtomicU64,
    /// Width of one bucket, in nanoseconds.
    width: u64,
    /// Snapshots of (time, requests, accepts), oldest first; at most `buckets + 1`.
    snapshots: Mutex<VecDeque<(u64, u64, u64)>>,
    buckets: usize,
}

/// How often (in calls) the clock is read to see whether the window must move on.
const CLOCK_EVERY: u64 = 64;

impl AdaptiveThrottle {
    /// A throttle on tokio's clock.
    pub fn new(config: ThrottleConfig) -> Result<Self, ConfigError> {
        AdaptiveThrottleBuilder::from_config(config).build()
    }

    /// A builder from the default config.
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder::default()
    }

    /// A throttle on `clock`, reporting to `listener`.
    pub(crate) fn from_parts(
        config: ThrottleConfig,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Name = config.name.as_str().into();
        let width = crate::clock::duration_to_nanos(config.window / config.buckets).max(1);
        let start = clock.now();
        Ok(Self {
            shared: Arc::new(Shared {
                requests: AtomicU64::new(0),
                accepts: AtomicU64::new(0),
                probability: AtomicU64::new(0f64.to_bits()),
                next_roll: AtomicU64::new(start.saturating_add(width)),
                width,
                snapshots: Mutex::new(VecDeque::from([(start, 0, 0)])),
                buckets: config.buckets as usize,
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

    /// The probability that the next call is rejected locally (brought up to date).
    pub fn rejection_probability(&self) -> f64 {
        self.shared.roll_window(self.shared.clock.now(), true, 0);
        f64::from_bits(self.shared.probability.load(Ordering::Relaxed))
    }

    /// Decides one call: `true` to send it. Counts it as a request either way.
    #[inline]
    pub fn admit(&self) -> bool {
        let shared = &self.shared;
        let p = f64::from_bits(shared.probability.load(Ordering::Relaxed));
        let send = p <= 0.0 || shared.dice.roll() >= p;
        let count = shared.requests.fetch_add(1, Ordering::Relaxed);
        if count % CLOCK_EVERY == 0 {
            // This call's own outcome is not known yet: leave it out, as a per-call
            // decision made before counting it would.
            shared.roll_window(shared.clock.now(), true, 1);
        }
        if !send {
            shared.throttled(p);
        }
        send
    }

    /// Records that the backend accepted a call.
    #[inline]
    pub fn accepted(&self) {
        self.shared.accepts.fetch_add(1, Ordering::Relaxed);
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

impl Shared {
    /// Takes a snapshot when a bucket width has passed, and recomputes the probability
    /// over the window (only when a snapshot is due, unless `force`).
    fn roll_window(&self, now: u64, force: bool, pending: u64) {
        if !force && now < self.next_roll.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut snapshots) = self.snapshots.try_lock() else {
            return;
        };
        let requests = self
            .requests
            .load(Ordering::Relaxed)
            .saturating_sub(pending);
        let accepts = self.accepts.load(Ordering::Relaxed);
        if now >= self.next_roll.load(Ordering::Relaxed) {
            snapshots.push_back((now, requests, accepts));
            self.next_roll
                .store(now.saturating_add(self.width), Ordering::Relaxed);
        }
        // Keep only snapshots inside the window (and one at its start).
        let horizon = now.saturating_sub(self.width.saturating_mul(self.buckets as u64));
        while snapshots.len() > 1 && snapshots.get(1).is_some_and(|s| s.0 <= horizon) {
            snapshots.pop_front();
        }
        let (_, old_requests, old_accepts) = snapshots.front().copied().unwrap_or((now, 0, 0));
        let p = probability(
            requests.saturating_sub(old_requests),
            accepts.saturating_sub(old_accepts),
            self.k,
            self.max_rejection,
        );
        self.probability.store(p.to_bits(), Ordering::Relaxed);
    }

    #[cold]
    fn throttled(&self, p: f64) {
        self.rejected.increment(1);
        if self.emitter.is_listening() {
            self.emitter.emit(Event::Throttled {
                name: self.name.clone(),
                probability: p,
            });
        }
    }
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

impl AdaptiveThrottle {
    /// This policy as a tower layer (through [`PolicyLayer`](crate::layer::PolicyLayer)),
    /// with the default classifier.
    pub fn layer(&self) -> crate::layer::PolicyLayer<Self, crate::DefaultClassifier> {
        self.layer_with(crate::DefaultClassifier)
    }

    /// This policy as a tower layer classifying responses with `classifier`.
    pub fn layer_with<C>(&self, classifier: C) -> crate::layer::PolicyLayer<Self, C> {
        crate::layer::PolicyLayer::new(self.clone(), classifier)
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
