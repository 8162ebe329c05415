//! Adaptive concurrency: a concurrency limit that finds itself.
//!
//! Static limits are wrong the day after they are set. An [`AdaptiveConcurrency`] limiter
//! watches every call's round-trip time and outcome and moves its limit with one of
//! three algorithms (AIMD, Vegas, Gradient2 — see [`algorithm`] for how each works and
//! which pitfall of the original each fixes), between `min_limit` and `max_limit`.
//!
//! The limit is enforced by a [`Bulkhead`](crate::policy::bulkhead::Bulkhead) whose limit
//! the algorithm moves: admission is the bulkhead's single compare-and-swap, and beyond
//! the limit a call is rejected at once or waits in the bulkhead's bounded queue. Samples
//! update the algorithm under a lock taken with `try_lock`: a sample that finds it busy
//! is skipped rather than waited for, so no call ever blocks on the algorithm.
//!
//! **Partitions** reserve a share of the limit per [criticality](crate::criticality)
//! class: a class may always use its reserved share (while the total is under the limit),
//! and other classes may not eat into another's unused reservation.
//!
//! ```
//! use palisade::Policy;
//! use palisade::policy::adaptive_concurrency::{AdaptiveConcurrency, AdaptiveConcurrencyConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limiter = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig::default()).unwrap();
//! assert_eq!(limiter.limit(), 20);
//! limiter.call(|| async { Ok::<_, std::io::Error>(()) }).await.unwrap();
//! # }
//! ```

pub mod algorithm;
mod config;

pub use algorithm::{AlgorithmConfig, Sample};
pub use config::{AdaptiveConcurrencyBuilder, AdaptiveConcurrencyConfig, PartitionConfig};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use algorithm::Algorithm;

use crate::clock::{Clock, Nanos};
use crate::config::ConfigError;
use crate::criticality::{self, Criticality};
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::{Classify, Health, Outcome, classify_result};
use crate::policy::Policy;
use crate::policy::bulkhead::{Bulkhead, BulkheadBuilder, BulkheadPermit, OwnedBulkheadPermit};
use crate::{Error, Name};

/// An adaptive concurrency limiter; clones share the limit. See the [module docs](self).
#[derive(Clone)]
pub struct AdaptiveConcurrency {
    shared: Arc<Shared>,
}

struct Shared {
    name: Name,
    bulkhead: Bulkhead,
    state: std::sync::Mutex<State>,
    min_limit: f64,
    max_limit: f64,
    partitions: Box<[Partition]>,
    clock: Clock,
    emitter: Emitter,
    limit_gauge: metrics::Gauge,
}

struct State {
    algorithm: Algorithm,
    limit: f64,
}

struct Partition {
    criticality: Criticality,
    share: f64,
    in_flight: AtomicUsize,
}

/// A call admitted by the limiter; report its outcome with [`record`](Self::record).
#[must_use = "the permit reports the call's outcome with `record`"]
pub struct LimitPermit<'a> {
    shared: &'a Shared,
    _slot: BulkheadPermit<'a>,
    started: Nanos,
    in_flight: usize,
    partition: Option<usize>,
}

/// Like [`LimitPermit`], owning a handle to its limiter: for a call that outlives a
/// borrow of it (a sidecar's attempt at one endpoint, held beside the endpoint).
#[must_use = "the permit reports the call's outcome with `record_round_trip`"]
pub struct OwnedLimitPermit {
    limiter: AdaptiveConcurrency,
    _slot: OwnedBulkheadPermit,
    in_flight: usize,
    partition: Option<usize>,
}

// === impl AdaptiveConcurrency ===

impl AdaptiveConcurrency {
    /// A limiter on tokio's clock.
    pub fn new(config: AdaptiveConcurrencyConfig) -> Result<Self, ConfigError> {
        AdaptiveConcurrencyBuilder::from_config(config).build()
    }

    /// A builder from the default config.
    pub fn builder() -> AdaptiveConcurrencyBuilder {
        AdaptiveConcurrencyBuilder::default()
    }

    /// A limiter on `clock`, reporting limit changes to `listener`.
    pub(crate) fn from_parts(
        config: AdaptiveConcurrencyConfig,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let bulkhead = BulkheadBuilder::default()
            .name(config.name.clone())
            .max_concurrent(config.initial_limit as usize)
            .queue(config.max_queue, config.queue_timeout)
            .clock(clock.clone())
            .build()?;
        let name: Name = config.name.as_str().into();
        let limit_gauge = metrics::gauge!(names::CONCURRENCY_LIMIT, "policy" => name.to_string());
        limit_gauge.set(f64::from(config.initial_limit));
        Ok(Self {
            shared: Arc::new(Shared {
                name,
                bulkhead,
                state: std::sync::Mutex::new(State {
                    algorithm: Algorithm::new(&config.algorithm),
                    limit: f64::from(config.initial_limit),
                }),
                min_limit: f64::from(config.min_limit),
                max_limit: f64::from(config.max_limit),
                partitions: config
                    .partitions
                    .iter()
                    .map(|p| Partition {
                        criticality: p.criticality,
                        share: p.share,
                        in_flight: AtomicUsize::new(0),
                    })
                    .collect(),
                clock,
                emitter: Emitter::new(listener),
                limit_gauge,
            }),
        })
    }

    /// The limiter's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.shared.bulkhead.max_concurrent()
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.shared.bulkhead.active()
    }

    /// Admits a call of the current [criticality](crate::criticality) now, if it fits.
    #[inline]
    pub fn try_acquire(&self) -> Option<LimitPermit<'_>> {
        let shared = &self.shared;
        let partition = shared.admitted_partition()?;
        let (slot, in_flight) = shared.bulkhead.try_acquire_counted()?;
        Some(shared.permit(slot, in_flight, partition))
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle to the
    /// limiter. Its round trip is the caller's to measure
    /// ([`record_round_trip`](OwnedLimitPermit::record_round_trip)).
    pub fn try_acquire_owned(&self) -> Option<OwnedLimitPermit> {
        let shared = &self.shared;
        let partition = shared.admitted_partition()?;
        let slot = shared.bulkhead.try_acquire_owned()?;
        shared.enter(partition);
        Some(OwnedLimitPermit {
            limiter: self.clone(),
            _slot: slot,
            in_flight: shared.bulkhead.active(),
            partition,
        })
    }

    /// Admits a call, waiting in the queue if one is configured.
    pub async fn acquire<E>(&self) -> Result<LimitPermit<'_>, Error<E>> {
        if let Some(permit) = self.try_acquire() {
            return Ok(permit);
        }
        let shared = &self.shared;
        if !shared.partitions.is_empty() || shared.bulkhead.max_queue() == 0 {
            return Err(self.rejection());
        }
        let slot = shared.bulkhead.acquire::<E>().await?;
        let in_flight = shared.bulkhead.active();
        Ok(shared.permit(slot, in_flight, None))
    }

    fn rejection<E>(&self) -> Error<E> {
        Error::BulkheadFull {
            name: self.shared.name.clone(),
            active: self.shared.bulkhead.active(),
            max: self.limit(),
        }
    }
}

impl Shared {
    /// The current call's partition (`Some(None)`: none), or `None` when its class's
    /// reservations leave it no room.
    fn admitted_partition(&self) -> Option<Option<usize>> {
        let partition = self.partition_for(criticality::current());
        (self.partitions.is_empty() || self.partition_admits(partition)).then_some(partition)
    }

    /// A call of `partition` was admitted.
    fn enter(&self, partition: Option<usize>) {
        if let Some(index) = partition {
            self.partitions[index]
                .in_flight
                .fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A call of `partition` ended.
    fn leave(&self, partition: Option<usize>) {
        if let Some(index) = partition {
            self.partitions[index]
                .in_flight
                .fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A call admitted with `in_flight` calls running ended with `outcome` after `rtt`: a
    /// failure is a drop (an overload signal); an ignored outcome gives no sample.
    fn finished(&self, in_flight: usize, outcome: &Outcome, rtt: Duration) {
        if outcome.health == Health::Ignored {
            return;
        }
        self.sample(&Sample {
            rtt,
            in_flight,
            dropped: outcome.health == Health::Failure,
        });
    }

    fn permit<'a>(
        &'a self,
        slot: BulkheadPermit<'a>,
        in_flight: usize,
        partition: Option<usize>,
    ) -> LimitPermit<'a> {
        self.enter(partition);
        LimitPermit {
            shared: self,
            _slot: slot,
            started: self.clock.now(),
            in_flight,
            partition,
        }
    }

    fn partition_for(&self, criticality: Criticality) -> Option<usize> {
        if self.partitions.is_empty() {
            return None;
        }
        self.partitions
            .iter()
            .position(|p| p.criticality == criticality)
    }

    /// Within its class's reservation, or leaving every other class's unused reservation
    /// free. A class without a partition (`index` = `None`) has no reservation.
    fn partition_admits(&self, index: Option<usize>) -> bool {
        let limit = self.bulkhead.max_concurrent() as f64;
        let reserved = |p: &Partition| (limit * p.share).floor() as usize;
        if let Some(mine) = index.map(|i| &self.partitions[i]) {
            if mine.in_flight.load(Ordering::Acquire) < reserved(mine) {
                return true;
            }
        }
        let held_back: usize = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != index)
            .map(|(_, p)| reserved(p).saturating_sub(p.in_flight.load(Ordering::Acquire)))
            .sum();
        self.bulkhead.active() + held_back < limit as usize
    }

    /// Feeds one sample to the algorithm, unless another thread is doing so right now.
    fn sample(&self, sample: &Sample) {
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let before = state.limit;
        let next = state
            .algorithm
            .update(before, sample, self.clock.now())
            .clamp(self.min_limit, self.max_limit);
        state.limit = if next.is_finite() { next } else { before };
        let rounded = state.limit.round() as usize;
        drop(state);
        if rounded != self.bulkhead.max_concurrent() {
            self.bulkhead.set_max_concurrent(rounded);
            self.limit_gauge.set(rounded as f64);
            if self.emitter.is_listening() {
                self.emitter.emit(Event::LimitChanged {
                    name: self.name.clone(),
                    limit: rounded,
                });
            }
        }
    }
}

// === impl LimitPermit ===

impl LimitPermit<'_> {
    /// Reports the call's outcome: a failure is a drop (an overload signal); an ignored
    /// outcome gives no sample. Its round trip is the time since the permit was taken.
    pub fn record(self, outcome: &Outcome) {
        let rtt = self.shared.clock.elapsed_since(self.started);
        self.record_round_trip(outcome, rtt);
    }

    /// Reports the call's outcome with the round trip the caller measured. A limit that
    /// holds calls retried inside it is given the last attempt's: the whole call's time
    /// counts failed attempts and back-offs, which are not queueing at the dependency.
    pub fn record_round_trip(self, outcome: &Outcome, rtt: Duration) {
        self.shared.finished(self.in_flight, outcome, rtt);
    }
}

impl Drop for LimitPermit<'_> {
    fn drop(&mut self) {
        self.shared.leave(self.partition);
    }
}

// === impl OwnedLimitPermit ===

impl OwnedLimitPermit {
    /// Reports the call's outcome and its round trip, as
    /// [`LimitPermit::record_round_trip`]. Dropped without it, the call gives no sample.
    pub fn record_round_trip(self, outcome: &Outcome, rtt: Duration) {
        self.limiter.shared.finished(self.in_flight, outcome, rtt);
    }
}

impl Drop for OwnedLimitPermit {
    fn drop(&mut self) {
        self.limiter.shared.leave(self.partition);
    }
}

impl<T, E> Policy<T, E> for AdaptiveConcurrency
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
        let permit = self.acquire().await?;
        let result = operation().await;
        permit.record(&classify_result(classifier, &result));
        result
    }
}

impl fmt::Debug for AdaptiveConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveConcurrency")
            .field("name", &self.shared.name)
            .field("limit", &self.limit())
            .finish()
    }
}

impl AdaptiveConcurrency {
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
