//! Typed events and the metric names every policy reports under.
//!
//! Each policy can be given a listener (`builder.on_event(|e| …)`) that receives an
//! [`Event`] on every state change, rejection, retry and fallback. Events are emitted on
//! the cold paths only: a successful call through a closed breaker emits nothing.
//! Every event is also logged through `tracing` at `debug` level.
//!
//! Metrics go through the [`metrics`] facade, so they cost nothing without a recorder.
//! Install the recorder (e.g. `metrics-exporter-prometheus`) *before* building policies:
//! policies register their metric handles when they are built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Name;
use crate::outcome::Outcome;
use crate::policy::bulkhead::BulkheadSnapshot;
use crate::policy::circuit_breaker::CircuitState;

/// Something a policy did that an operator may want to know about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A circuit breaker changed state.
    CircuitStateChanged {
        /// The breaker.
        name: Name,
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
    },
    /// A circuit breaker refused a call.
    CircuitRejected {
        /// The breaker.
        name: Name,
        /// Its state at the time.
        state: CircuitState,
    },
    /// A retry policy is about to try again.
    Retry {
        /// The retry policy.
        name: Name,
        /// The attempt that failed (1 for the first call).
        attempt: u32,
        /// The delay before the next attempt.
        delay: Duration,
        /// How the failed attempt was classified.
        outcome: Outcome,
        /// The failed attempt's error, formatted with `Debug`.
        error: String,
    },
    /// A retry was wanted but the shared retry budget had no room.
    RetryBudgetExhausted {
        /// The retry policy.
        name: Name,
    },
    /// A retry policy gave up.
    RetriesExhausted {
        /// The retry policy.
        name: Name,
        /// Attempts made.
        attempts: u32,
    },
    /// A bulkhead refused a call.
    BulkheadRejected {
        /// The bulkhead's counters when it refused.
        snapshot: BulkheadSnapshot,
        /// True if the call waited in the queue and ran out of time there.
        after_waiting: bool,
    },
    /// A rate limiter refused a call.
    RateLimited {
        /// The limiter.
        name: Name,
        /// When the call would have been admitted.
        retry_after: Duration,
    },
    /// A timeout fired and cancelled the operation.
    TimedOut {
        /// The timeout policy.
        name: Name,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// A load shedder dropped a call.
    Shed {
        /// The shedder.
        name: Name,
        /// The dropped call's class.
        criticality: crate::criticality::Criticality,
    },
    /// An adaptive concurrency limit moved.
    LimitChanged {
        /// The limiter.
        name: Name,
        /// The new limit.
        limit: usize,
    },
    /// Client-side throttling rejected a call locally.
    Throttled {
        /// The throttle.
        name: Name,
        /// The rejection probability at that moment.
        probability: f64,
    },
    /// Fault injection answered or delayed a call.
    FaultInjected {
        /// The fault injection policy.
        name: Name,
        /// `"outcome"`, `"latency"` or `"degrade"`.
        kind: &'static str,
    },
    /// A hedge sent a second attempt of a call that had not answered in time.
    Hedged {
        /// The hedge policy.
        name: Name,
        /// The delay after which the second attempt was sent.
        after: Duration,
    },
    /// A fallback produced the result instead of the operation.
    FallbackUsed {
        /// The fallback policy.
        name: Name,
        /// Why: the [`Error::reason`](crate::Error::reason) it replaced.
        reason: &'static str,
    },
}

/// A function that receives events.
pub type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// An optional listener, plus `tracing` output for every event.
#[derive(Clone, Default)]
pub(crate) struct Emitter {
    listener: Option<Listener>,
}

impl Emitter {
    pub(crate) fn new(listener: Option<Listener>) -> Self {
        Self { listener }
    }

    /// True when someone listens, so that costly payloads can be skipped otherwise.
    pub(crate) fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    #[cold]
    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(?event, "palisade event");
        if let Some(listener) = &self.listener {
            listener(&event);
        }
    }
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

/// Metric names. All are prefixed `palisade_`; every metric has a `policy` label with the
/// policy's name.
pub mod names {
    /// Counter: calls by `outcome` (success, failure, ignored, rejected) — pipelines with
    /// metrics enabled.
    pub const CALLS_TOTAL: &str = "palisade_calls_total";
    /// Histogram: call latency in seconds — pipelines with metrics enabled.
    pub const CALL_DURATION_SECONDS: &str = "palisade_call_duration_seconds";
    /// Counter: retries, labelled by `attempt` (the attempt that failed).
    pub const RETRY_ATTEMPTS_TOTAL: &str = "palisade_retry_attempts_total";
    /// Counter: retries refused by the retry budget.
    pub const RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "palisade_retry_budget_exhausted_total";
    /// Counter: calls that ran out of retries.
    pub const RETRIES_EXHAUSTED_TOTAL: &str = "palisade_retries_exhausted_total";
    /// Gauge: breaker state, numbered by
    /// [`CircuitState`](crate::policy::circuit_breaker::CircuitState)'s discriminants:
    /// 0 closed, 1 open, 2 half-open, 3 forced-open, 4 forced-closed, 5 disabled.
    pub const CIRCUIT_STATE: &str = "palisade_circuit_state";
    /// Counter: breaker transitions, labelled `from` and `to`.
    pub const CIRCUIT_TRANSITIONS_TOTAL: &str = "palisade_circuit_transitions_total";
    /// Counter: calls a breaker refused.
    pub const CIRCUIT_REJECTED_TOTAL: &str = "palisade_circuit_rejected_total";
    /// Gauge: calls running inside a bulkhead.
    pub const BULKHEAD_ACTIVE: &str = "palisade_bulkhead_active";
    /// Gauge: calls waiting in a bulkhead's queue.
    pub const BULKHEAD_QUEUED: &str = "palisade_bulkhead_queued";
    /// Counter: calls a bulkhead refused.
    pub const BULKHEAD_REJECTED_TOTAL: &str = "palisade_bulkhead_rejected_total";
    /// Histogram: seconds a call waited in a bulkhead's queue before it ran.
    pub const BULKHEAD_WAIT_SECONDS: &str = "palisade_bulkhead_wait_seconds";
    /// Counter: rate limiter decisions, labelled `decision` (allowed, waited, limited).
    pub const RATE_LIMIT_DECISIONS_TOTAL: &str = "palisade_rate_limit_decisions_total";
    /// Counter: timeouts that fired (adaptive timeouts included).
    pub const TIMEOUTS_TOTAL: &str = "palisade_timeouts_total";
    /// Counter: calls shed, labelled `criticality`.
    pub const SHED_TOTAL: &str = "palisade_shed_total";
    /// Gauge: an adaptive concurrency limiter's limit.
    pub const CONCURRENCY_LIMIT: &str = "palisade_concurrency_limit";
    /// Counter: calls rejected locally by client-side throttling.
    pub const THROTTLED_TOTAL: &str = "palisade_throttled_total";
    /// Counter: faults injected, labelled `kind` (outcome, latency).
    pub const FAULTS_INJECTED_TOTAL: &str = "palisade_faults_injected_total";
    /// Gauge: the timeout an adaptive timeout gives the next call, in seconds.
    pub const ADAPTIVE_TIMEOUT_SECONDS: &str = "palisade_adaptive_timeout_seconds";
    /// Counter: second attempts sent by hedges.
    pub const HEDGES_TOTAL: &str = "palisade_hedges_total";
    /// Counter: hedges wanted but refused by the hedge's cap or its shared budget.
    pub const HEDGES_REFUSED_TOTAL: &str = "palisade_hedges_refused_total";
    /// Counter: fallbacks used, labelled `reason`.
    pub const FALLBACKS_TOTAL: &str = "palisade_fallbacks_total";
}
