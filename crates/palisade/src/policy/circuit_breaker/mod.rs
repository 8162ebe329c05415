//! Circuit breaker: stop calling a dependency that keeps failing, and probe it back.
//!
//! ```text
//!            failure rate, slow-call rate or
//!            consecutive failures crossed          open time over:
//!   ┌────────┐ ─────────────────────────▶ ┌──────┐ next call (or timer) ┌───────────┐
//!   │ Closed │                            │ Open │ ───────────────────▶ │ Half-open │
//!   └────────┘ ◀───────────────┐          └──────┘ ◀────────────────── └───────────┘
//!                              │     any probe fails, or an outstanding   │
//!                              └── probe unanswered past max_half_open ──┘
//!                         enough probes succeed
//! ```
//!
//! * **Windows**: the last *N* calls ([`WindowKind::Count`]), the last *N* seconds in
//!   buckets ([`WindowKind::Time`]) or *N* failures in a row
//!   ([`WindowKind::Consecutive`]); rate windows judge nothing before `minimum_calls`.
//!   Slow calls (at least `slow_call_duration`) have their own rate threshold.
//! * **Open time** grows only while failures go on: `open_for × open_backoff^n`, capped
//!   at `max_open_for`, spread by `open_jitter`, where `n` counts each `half_open_calls`
//!   probes failed in a row (a period ends at its first failed probe, so one failed
//!   period is one sample). Once a probe has succeeded since the breaker last closed (the
//!   dependency serves again, at least in part), every open time until it closes is
//!   `open_for`: a gray or recovering dependency is let back within `open_for` of its
//!   recovery. A close starts over.
//! * **Half-open** admits at most `half_open_calls` probes per period, at most
//!   `half_open_concurrency` at once; `half_open_successes` successes close it, any
//!   failure reopens it, and probes that go unanswered for `max_half_open` reopen it
//!   (counted only while a probe is outstanding: a quiet half-open state waits for
//!   traffic, so sparse successful probes still close it). A cancelled probe gives its
//!   slot back.
//! * **Judging**: rate windows are judged after every recorded call once they hold
//!   `minimum_calls`, not only when a failure enters (as resilience4j does).
//! * **Open → half-open** happens on the first call after the open time; the optional
//!   [`spawn_timer`](CircuitBreaker::spawn_timer) makes an idle breaker move (and report)
//!   on time as well.
//! * **Operators** can [`force_open`](CircuitBreaker::force_open),
//!   [`force_closed`](CircuitBreaker::force_closed) and [`reset`](CircuitBreaker::reset);
//!   [`BreakerMode::MetricsOnly`] runs the machine without ever rejecting.
//! * **Refusing before asking**: [`refuse_early`](CircuitBreaker::refuse_early) says
//!   whether a call would be refused now for certain (held open, or open with its open
//!   time not over) without admitting one, so a caller spends nothing (a rate-limit token,
//!   a bulkhead slot) on a call the breaker would refuse; see `refusal.rs`.
//! * **Hot path**: a closed breaker admits with one atomic load and records a success
//!   with one compare-and-swap, no lock and no allocation.
//!
//! ```
//! use std::time::Duration;
//! use palisade::{Error, Policy};
//! use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let breaker = CircuitBreaker::builder()
//!     .name("payments")
//!     .consecutive_failures(3)
//!     .open_for(Duration::from_secs(5), Duration::from_secs(60), 2.0, 0.0)
//!     .build()
//!     .unwrap();
//!
//! for _ in 0..3 {
//!     let _ = breaker.call(|| async { Err::<(), _>("down") }).await;
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let refused = breaker.call(|| async { Ok::<_, &str>(()) }).await;
//! assert!(matches!(refused, Err(Error::CircuitOpen { retry_after: Some(_), .. })));
//! # }
//! ```

mod config;
mod layer;
mod machine;
mod permit;
mod refusal;
mod registry;
mod state;
mod window;

pub use config::{BreakerMode, CircuitBreakerBuilder, CircuitBreakerConfig, WindowKind};
pub use layer::{CircuitBreakerLayer, CircuitBreakerService};
pub use machine::Rejected;
pub use permit::{OwnedPermit, Permit};
pub use registry::CircuitBreakerRegistry;
pub use state::CircuitState;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::events::Emitter;
use crate::outcome::{Classify, classify_result};
use crate::policy::Policy;
use crate::{Error, Name};
use machine::Shared;

/// A circuit breaker; clones share one state. See the [module docs](self).
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

/// A breaker's state and window at one moment, for dashboards and admin APIs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CircuitBreakerSnapshot {
    /// The breaker's name.
    pub name: String,
    /// Its state.
    pub state: CircuitState,
    /// Calls in the window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// Failures ÷ calls (0 with no calls).
    pub failure_rate: f64,
    /// Trips in a row without closing in between.
    pub consecutive_trips: u32,
    /// Time until an open breaker admits a probe.
    #[serde(with = "humantime_serde")]
    pub retry_after: Option<Duration>,
    /// How long it has been in its state.
    #[serde(with = "humantime_serde")]
    pub in_state_for: Duration,
}

// === impl CircuitBreaker ===

impl CircuitBreaker {
    /// A builder; see [`CircuitBreakerConfig`] for every default.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }

    /// A breaker with every default, named `name`.
    pub fn with_defaults(name: &str) -> Self {
        let config = CircuitBreakerConfig {
            name: name.to_owned(),
            ..CircuitBreakerConfig::default()
        };
        Self::from_builder(CircuitBreakerBuilder::from_config(config))
    }

    pub(super) fn from_builder(builder: CircuitBreakerBuilder) -> Self {
        let clock = builder.clock.unwrap_or_default();
        let shared = Shared::new(&builder.config, clock, Emitter::new(builder.listener));
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// How long the breaker has been in its current state (since it was built, before
    /// its first transition): a balancer's slow start after a close, a dashboard's "open
    /// for 12 s".
    pub fn time_in_state(&self) -> Duration {
        self.shared.time_in_state()
    }

    /// The current state (as of the last call or timer tick).
    pub fn state(&self) -> CircuitState {
        self.shared.word().state()
    }

    /// Asks to make one call. Report its outcome through the permit.
    ///
    /// Always inlined: returned out of line, the `Result` is written with narrow stores
    /// and read back with wide loads, a store-forwarding stall that cost more than the
    /// admission itself (see `crate::layer`).
    #[inline(always)]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let (admission, generation) = self.shared.admit()?;
        Ok(Permit::new(&self.shared, admission, generation))
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle.
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejected> {
        let (admission, generation) = self.shared.admit()?;
        Ok(OwnedPermit::new(self, admission, generation))
    }

    /// Holds the breaker open until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.shared.force(CircuitState::ForcedOpen);
    }

    /// Holds the breaker closed (nothing trips) until [`reset`](Self::reset).
    pub fn force_closed(&self) {
        self.shared.force(CircuitState::ForcedClosed);
    }

    /// Ends an open breaker's open time now: the next call is a probe, and the probes
    /// decide as usual (a failed one opens it again, its open time grown as after any
    /// failed probe). For an outside sign that the dependency is back — an active health
    /// check passing again after it had failed, as Envoy un-ejects a host — which is
    /// worth more than the rest of a grown open time. Any other state is left as it is.
    pub fn probe_now(&self) {
        self.shared.end_open_time();
    }

    /// Returns to automatic operation, closed, with an empty window.
    pub fn reset(&self) {
        let target = match self.shared.mode {
            BreakerMode::Disabled => CircuitState::Disabled,
            _ => CircuitState::Closed,
        };
        self.shared.force(target);
    }

    /// The state and window now.
    pub fn snapshot(&self) -> CircuitBreakerSnapshot {
        let counts = self.shared.window_counts();
        let state = self.state();
        let retry_after = match state {
            CircuitState::Open => {
                let now = self.shared.clock.now();
                Some(Duration::from_nanos(
                    self.shared.open_until().saturating_sub(now),
                ))
            }
            _ => None,
        };
        CircuitBreakerSnapshot {
            name: self.shared.name.to_string(),
            state,
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_rate: if counts.calls == 0 {
                0.0
            } else {
                f64::from(counts.failures) / f64::from(counts.calls)
            },
            consecutive_trips: self.shared.consecutive_trips(),
            retry_after,
            in_state_for: self.shared.time_in_state(),
        }
    }

    /// Starts a task that moves the breaker from open to half-open when its open time
    /// ends (and back to open when probes go unanswered), even with no calls, so that
    /// idle breakers report the right state. It ends when the last handle is dropped.
    /// Needs a tokio runtime.
    pub fn spawn_timer(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let changes = self.shared.changed.clone();
        tokio::spawn(async move {
            loop {
                let changed = changes.clone().notified_owned();
                tokio::pin!(changed);
                changed.as_mut().enable();
                // Look at the breaker without keeping it alive while sleeping.
                let wake = {
                    let Some(shared) = weak.upgrade() else { return };
                    shared.tick().map(|at| shared.clock.to_tokio_instant(at))
                };
                let wake =
                    wake.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = &mut changed => {}
                }
            }
        })
    }

    /// The error for a rejection.
    pub(crate) fn rejection<E>(&self, rejected: Rejected) -> Error<E> {
        Error::CircuitOpen {
            name: self.shared.name.clone(),
            retry_after: rejected.retry_after,
        }
    }

    /// Whether recording needs the clock (time window or slow calls).
    pub fn reads_clock(&self) -> bool {
        self.shared.times_calls() || self.shared.window_needs_time()
    }
}

impl<T, E> Policy<T, E> for CircuitBreaker
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
        let permit = self.try_acquire().map_err(|r| self.rejection(r))?;
        let result = operation().await;
        permit.record(&classify_result(classifier, &result));
        result
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("name", &self.name).finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests;
