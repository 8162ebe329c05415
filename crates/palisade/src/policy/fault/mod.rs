//! Fault injection: chaos in-process, switched on and off at run time.
//!
//! A [`FaultInjection`] answers a share of calls (`error_rate`) with an injected outcome —
//! an error, or a chosen value — without running them, delays a share (`latency_rate`)
//! by `latency` before running them, and degrades a share (`degrade_rate`): runs them,
//! then hands their result to be degraded. At most `max_concurrent` injected faults are
//! in progress at once. It is off by default, and when off a call costs one relaxed
//! atomic load: leave it compiled into production pipelines and switch it on for a game
//! day with [`enable`](FaultInjection::enable), [`set_rates`](FaultInjection::set_rates)
//! and [`set_degrade_rate`](FaultInjection::set_degrade_rate).
//!
//! A call gets at most one fault. The dice are rolled in order — outcome, then latency,
//! then degradation — and the first that comes up (with a free slot) is the call's: with
//! several rates set, the share of the later kinds is their rate among the calls the
//! earlier kinds left (`latency_rate × (1 − error_rate)`, and so on).
//!
//! A caller that must decide before it has a future to wrap (the sidecar, which answers
//! an injected abort without building the request's future) asks
//! [`roll`](FaultInjection::roll) for the same decision `call` makes, and holds the
//! [`FaultSlot`] it gets while the fault is in progress. A degradation is what the caller
//! makes of it, and lasts as long as the caller says: the sidecar, for one, slows or cuts
//! the response body and holds the slot until that body ends. With `call`, the
//! degradation is the builder's [`degrade`](FaultInjectionBuilder::degrade) hook, applied
//! to a successful value (a failed call is left as it is: there is nothing to degrade).
//!
//! ```
//! use palisade::{Error, Policy};
//! use palisade::policy::fault::{FaultConfig, FaultInjection};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let chaos = FaultInjection::<u32, &str>::builder(FaultConfig { error_rate: 1.0, ..Default::default() })
//!     .inject(|| Err(Error::Inner("injected")))
//!     .build()
//!     .unwrap();
//! assert_eq!(chaos.call(|| async { Ok(1) }).await.unwrap(), 1, "off by default");
//! chaos.enable();
//! assert!(matches!(chaos.call(|| async { Ok(1) }).await, Err(Error::Inner("injected"))));
//!
//! // The call runs, and its value is degraded: a reply cut short.
//! let degrading = FaultInjection::<String, &str>::builder(FaultConfig {
//!     enabled: true,
//!     degrade_rate: 1.0,
//!     ..Default::default()
//! })
//! .degrade(|mut reply| {
//!     reply.truncate(2);
//!     Ok(reply)
//! })
//! .build()
//! .unwrap();
//! assert_eq!(degrading.call(|| async { Ok("hello".to_owned()) }).await.unwrap(), "he");
//! # }
//! ```

mod config;

pub use config::FaultConfig;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::ConfigError;
use crate::either::Either;
use crate::events::{Emitter, Event, Listener, names};
use crate::outcome::Classify;
use crate::policy::Policy;
use crate::random::Dice;
use crate::{Error, Name};

type Injector<T, E> = Arc<dyn Fn() -> Result<T, Error<E>> + Send + Sync>;
type Degrader<T, E> = Arc<dyn Fn(T) -> Result<T, Error<E>> + Send + Sync>;

/// In-process fault injection; clones share the switch, rates and dice.
pub struct FaultInjection<T, E> {
    shared: Arc<Shared<T, E>>,
}

struct Shared<T, E> {
    name: Name,
    enabled: AtomicBool,
    error_rate: AtomicU64,
    latency_rate: AtomicU64,
    latency_nanos: AtomicU64,
    degrade_rate: AtomicU64,
    max_concurrent: usize,
    /// Injected faults in progress; shared with their [`FaultSlot`]s.
    active: Arc<AtomicUsize>,
    dice: Dice,
    inject: Option<Injector<T, E>>,
    degrade: Option<Degrader<T, E>>,
    emitter: Emitter,
    injected_errors: metrics::Counter,
    injected_delays: metrics::Counter,
    injected_degradations: metrics::Counter,
}

/// Builds a [`FaultInjection`].
pub struct FaultInjectionBuilder<T, E> {
    config: FaultConfig,
    inject: Option<Injector<T, E>>,
    degrade: Option<Degrader<T, E>>,
    listener: Option<Listener>,
}

impl<T, E> FaultInjectionBuilder<T, E> {
    /// What an injected fault answers: an error, or a chosen value.
    pub fn inject(
        mut self,
        inject: impl Fn() -> Result<T, Error<E>> + Send + Sync + 'static,
    ) -> Self {
        self.inject = Some(Arc::new(inject));
        self
    }

    /// How a degraded call's successful value is degraded by [`call`](Policy::call): a
    /// poorer value, or an error. A caller that acts on [`roll`](FaultInjection::roll)
    /// itself degrades the result its own way, and may set `Ok` here.
    pub fn degrade(
        mut self,
        degrade: impl Fn(T) -> Result<T, Error<E>> + Send + Sync + 'static,
    ) -> Self {
        self.degrade = Some(Arc::new(degrade));
        self
    }

    /// Receives an [`Event::FaultInjected`] for every fault.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds. An `error_rate` above 0 needs [`inject`](Self::inject), a
    /// `degrade_rate` above 0 needs [`degrade`](Self::degrade).
    pub fn build(self) -> Result<FaultInjection<T, E>, ConfigError> {
        let config = self.config;
        config.validate()?;
        if config.error_rate > 0.0 && self.inject.is_none() {
            return Err(ConfigError::new(
                "error_rate",
                "is above 0 but nothing to inject is set",
                "0, or set inject(..)",
            ));
        }
        if config.degrade_rate > 0.0 && self.degrade.is_none() {
            return Err(no_degradation("0, or set degrade(..)"));
        }
        let name: Name = config.name.as_str().into();
        let counter = |kind: &'static str| metrics::counter!(names::FAULTS_INJECTED_TOTAL, "policy" => name.to_string(), "kind" => kind);
        Ok(FaultInjection {
            shared: Arc::new(Shared {
                injected_errors: counter("outcome"),
                injected_delays: counter("latency"),
                injected_degradations: counter(DEGRADE),
                enabled: AtomicBool::new(config.enabled),
                error_rate: AtomicU64::new(config.error_rate.to_bits()),
                latency_rate: AtomicU64::new(config.latency_rate.to_bits()),
                latency_nanos: AtomicU64::new(crate::clock::duration_to_nanos(config.latency)),
                degrade_rate: AtomicU64::new(config.degrade_rate.to_bits()),
                max_concurrent: config.max_concurrent,
                active: Arc::new(AtomicUsize::new(0)),
                dice: Dice::new(config.seed),
                inject: self.inject,
                degrade: self.degrade,
                emitter: Emitter::new(self.listener),
                name,
            }),
        })
    }
}

// === impl FaultInjection ===

impl<T, E> FaultInjection<T, E> {
    /// A builder from `config`.
    pub fn builder(config: FaultConfig) -> FaultInjectionBuilder<T, E> {
        FaultInjectionBuilder {
            config,
            inject: None,
            degrade: None,
            listener: None,
        }
    }

    /// Starts injecting.
    pub fn enable(&self) {
        self.shared.enabled.store(true, Ordering::Relaxed);
    }

    /// Stops injecting (faults in progress finish).
    pub fn disable(&self) {
        self.shared.enabled.store(false, Ordering::Relaxed);
    }

    /// Whether faults are being injected.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// Changes the rates and the delay at run time.
    pub fn set_rates(
        &self,
        error_rate: f64,
        latency_rate: f64,
        latency: Duration,
    ) -> Result<(), ConfigError> {
        let check = FaultConfig {
            error_rate,
            latency_rate,
            latency,
            ..FaultConfig::default()
        };
        check.validate()?;
        if error_rate > 0.0 && self.shared.inject.is_none() {
            return Err(ConfigError::new(
                "error_rate",
                "is above 0 but nothing to inject is set",
                "0",
            ));
        }
        self.shared
            .error_rate
            .store(error_rate.to_bits(), Ordering::Relaxed);
        self.shared
            .latency_rate
            .store(latency_rate.to_bits(), Ordering::Relaxed);
        self.shared
            .latency_nanos
            .store(crate::clock::duration_to_nanos(latency), Ordering::Relaxed);
        Ok(())
    }

    /// Changes the share of calls degraded at run time (the other rates are
    /// [`set_rates`](Self::set_rates)'s).
    pub fn set_degrade_rate(&self, degrade_rate: f64) -> Result<(), ConfigError> {
        let check = FaultConfig {
            degrade_rate,
            ..FaultConfig::default()
        };
        check.validate()?;
        if degrade_rate > 0.0 && self.shared.degrade.is_none() {
            return Err(no_degradation("0"));
        }
        self.shared
            .degrade_rate
            .store(degrade_rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// The policy's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }
}

/// The `kind` of a degradation, in events and metrics.
const DEGRADE: &str = "degrade";

/// The refusal of a `degrade_rate` with no degradation to apply.
fn no_degradation(allowed: &str) -> ConfigError {
    ConfigError::new(
        "degrade_rate",
        "is above 0 but no degradation is set",
        allowed,
    )
}

impl<T, E> Shared<T, E> {
    fn rate(cell: &AtomicU64) -> f64 {
        f64::from_bits(cell.load(Ordering::Relaxed))
    }

    /// Takes one of the `max_concurrent` fault slots.
    fn take_slot(&self) -> Option<FaultSlot> {
        let mut active = self.active.load(Ordering::Relaxed);
        loop {
            if active >= self.max_concurrent {
                return None;
            }
            match self.active.compare_exchange_weak(
                active,
                active + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(FaultSlot(self.active.clone())),
                Err(seen) => active = seen,
            }
        }
    }

    fn report(&self, kind: &'static str) {
        if self.emitter.is_listening() {
            self.emitter.emit(Event::FaultInjected {
                name: self.name.clone(),
                kind,
            });
        }
    }
}

/// What the dice decided for one call (see [`FaultInjection::roll`]).
#[derive(Debug)]
pub enum Injected {
    /// No fault: run the call as it is.
    None,
    /// Answer with the injected outcome instead of running the call.
    Outcome(FaultSlot),
    /// Wait `delay`, holding the slot, then run the call.
    Latency {
        /// The injected delay.
        delay: Duration,
        /// Counts the fault among those in progress until dropped.
        slot: FaultSlot,
    },
    /// Run the call, then degrade its result, holding the slot for as long as the
    /// degradation lasts (a response body being slowed, say).
    Degrade(FaultSlot),
}

/// One of the `max_concurrent` injected faults in progress, given back when dropped.
#[derive(Debug)]
pub struct FaultSlot(Arc<AtomicUsize>);

impl Drop for FaultSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T, E> Policy<T, E> for FaultInjection<T, E>
where
    T: Send + 'static,
    E: Send + fmt::Debug + 'static,
{
    /// Switched off, this returns the operation's own future: nothing is added to it.
    #[inline]
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
        if self.shared.enabled.load(Ordering::Relaxed) {
            Either::Right {
                future: self.inject_then(operation),
            }
        } else {
            Either::Left {
                future: operation(),
            }
        }
    }
}

impl<T, E> FaultInjection<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// Rolls the dice for one call, then runs it (unless an outcome was injected).
    async fn inject_then<F, Fut>(&self, operation: F) -> Result<T, Error<E>>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        match self.roll() {
            Injected::Outcome(_slot) => {
                if let Some(inject) = &self.shared.inject {
                    return inject();
                }
            }
            Injected::Latency { delay, slot } => {
                tokio::time::sleep(delay).await;
                drop(slot);
            }
            Injected::Degrade(_slot) => {
                let result = operation().await;
                return match (&self.shared.degrade, result) {
                    (Some(degrade), Ok(value)) => degrade(value),
                    (_, result) => result,
                };
            }
            Injected::None => {}
        }
        operation().await
    }
}

impl<T, E> FaultInjection<T, E> {
    /// Rolls the dice for one call: the decision [`call`](Policy::call) makes, for a
    /// caller that acts on it itself. Switched off, it is one relaxed load and
    /// [`Injected::None`]. A fault beyond `max_concurrent` in progress is not injected.
    pub fn roll(&self) -> Injected {
        let shared = &self.shared;
        if !shared.enabled.load(Ordering::Relaxed) {
            return Injected::None;
        }
        if shared.inject.is_some() && shared.dice.roll() < Shared::<T, E>::rate(&shared.error_rate)
        {
            if let Some(slot) = shared.take_slot() {
                shared.injected_errors.increment(1);
                shared.report("outcome");
                return Injected::Outcome(slot);
            }
        }
        if shared.dice.roll() < Shared::<T, E>::rate(&shared.latency_rate) {
            if let Some(slot) = shared.take_slot() {
                shared.injected_delays.increment(1);
                shared.report("latency");
                let delay = Duration::from_nanos(shared.latency_nanos.load(Ordering::Relaxed));
                return Injected::Latency { delay, slot };
            }
        }
        if shared.degrade.is_some()
            && shared.dice.roll() < Shared::<T, E>::rate(&shared.degrade_rate)
        {
            if let Some(slot) = shared.take_slot() {
                shared.injected_degradations.increment(1);
                shared.report(DEGRADE);
                return Injected::Degrade(slot);
            }
        }
        Injected::None
    }
}

impl<T, E> Clone for FaultInjection<T, E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T, E> fmt::Debug for FaultInjection<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjection")
            .field("name", &self.shared.name)
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl<T, E> FaultInjection<T, E> {
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
