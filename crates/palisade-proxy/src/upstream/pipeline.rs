//! An upstream's policies in the order a request meets them: one list, built once when a
//! config loads, whose order is the design.
//!
//! ```text
//!  route's faults ─▶ certain refusal ─▶ throttle ─▶ rate limit (own or fleet) ─▶ body read
//!    ─▶ shedding ─▶ adaptive limit ─▶ bulkhead ─▶ total timeout ─▶ retry ─▶ hedge
//!    ─▶ upstream breaker ─▶ balancer (endpoint breakers, health) ─▶ per-try timeout ─▶ upstream
//! ```
//!
//! Why this order, outermost first:
//! - **Faults and the certain refusal** need no waiting: they are decided before the
//!   request's future exists (see `forward`), and a request they answer spends nothing
//!   below. The refusal is the breakers' verdict when it is certain without a call (held
//!   open, or open with their open time not over); resilience4j orders its breaker outside
//!   the limiters for the same reason.
//! - **Throttle and rate limit** cost nothing to ask and hold nothing. A fleet limit
//!   (`scope = "fleet"`) costs one Redis round trip (none in lease mode while it holds
//!   tokens), bounded by `[fleet] timeout`, and is still asked before any slot is taken.
//! - **Body read**: a replayable body is read here, bounded by the listener's body
//!   timeout, *before* any scarce slot is taken, so a client trickling its upload holds no
//!   slot meanwhile. A request switching protocols (`Upgrade`) leaves here for its tunnel.
//! - **Shedding, adaptive limit, bulkhead**: the scarce slots. The bulkhead's is held until
//!   the relayed response body ends (a slow download is still a busy upstream connection).
//! - **Total timeout** around the retries, so the caller's budget bounds them all; **retry**
//!   within its budget; **hedge** (charged to the same budget) only for requests that may
//!   be repeated; an **upstream-wide breaker** (`scope = "upstream"`) judges every attempt.
//! - **Balancer**: picks an endpoint whose breaker and health take the request (the
//!   per-endpoint breaker), another than the last attempt's when it can; **per-try timeout**
//!   (fixed or learned from latency) bounds one attempt.
//!
//! The list has two halves, as the library has two kinds of policy: the [`Admission`]
//! steps, run one after the other (each either lets the request on, holding what it took,
//! or refuses it), and the [`Calls`], a library [`palisade::Pipeline`] nested around each
//! attempt. Adding a policy is one entry in one of them; `/admin/state` prints each
//! upstream's [`order`](Pipeline::order), and a test holds it to this doc.

use std::future::Future;

use std::time::Duration;

use palisade::policy::adaptive_concurrency::{
    AdaptiveConcurrency, AdaptiveConcurrencyBuilder, LimitPermit,
};
use palisade::policy::adaptive_timeout::{AdaptiveTimeout, AdaptiveTimeoutBuilder};
use palisade::policy::bulkhead::{Bulkhead, BulkheadBuilder, OwnedBulkheadPermit};
use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade::policy::hedge::{Hedge, HedgeBuilder};
use palisade::policy::rate_limit::{RateLimiter, RateLimiterBuilder};
use palisade::policy::retry::{Retry, RetryBuilder};
use palisade::policy::shed::{LoadShedder, LoadShedderBuilder, ShedPermit};
use palisade::policy::throttle::{AdaptiveThrottle, AdaptiveThrottleBuilder};
use palisade::policy::timeout::{Timeout, TimeoutBuilder, TimeoutConfig};
use palisade::settings::Settings;
use palisade::{Classify, ConfigError, Error, Outcome, Policy};
use palisade_fleet::{Admit, Counting, FleetRetryBudget, SharedRateLimit, SharedRateLimitBuilder};
use palisade_http::classify::{HttpClassifier, TransportError};

use super::balance::EndpointLimits;
use super::fleet::UpstreamFleet;
use crate::config;
use crate::config::LimitScope;
use crate::config::load::{RateLimitPolicy, UpstreamPolicies};
use crate::respond::Reason;

/// A step that decides whether a request may start (see the module's doc).
pub(crate) enum Admission {
    /// Client-side throttling: refuses what the upstream would likely refuse.
    Throttle(AdaptiveThrottle),
    /// The upstream's rate limit, this sidecar's.
    RateLimit(RateLimiter),
    /// The upstream's rate limit, the fleet's (`scope = "fleet"`).
    FleetRateLimit(SharedRateLimit),
    /// The request body is read here, before any slot is taken.
    ReadBody,
    /// Criticality-aware load shedding.
    Shed(LoadShedder),
    /// The adaptive concurrency limit.
    AdaptiveLimit(AdaptiveConcurrency),
    /// The concurrency limit, held until the response body ends.
    Bulkhead(Bulkhead),
}

/// The policies nested around each attempt, outermost first (see [`Calls::execute`]).
pub(crate) struct Calls {
    /// The whole request's time limit.
    total: Timeout,
    /// Retries, within their budget.
    retry: Retry,
    /// A second attempt of a slow request that may be repeated.
    hedge: Option<Hedge>,
    /// The upstream-wide breaker (`scope = "upstream"`).
    breaker: Option<CircuitBreaker>,
}

/// One attempt's time limit: fixed, or learned from recent latencies.
#[derive(Clone)]
pub(crate) enum PerTry {
    /// `[upstream.timeout] per_try`.
    Fixed(Timeout),
    /// `[upstream.timeout.adaptive]`.
    Adaptive(AdaptiveTimeout),
}

/// An upstream's policies, in order (see the module's doc).
pub struct Pipeline {
    /// The steps before the call, in order.
    pub(crate) admission: Vec<Admission>,
    /// The policies around each attempt.
    pub(crate) calls: Calls,
    /// Around each attempt's exchange, once the balancer picked its endpoint.
    pub(crate) per_try: PerTry,
    /// Whether the balancer's endpoints each have a breaker.
    endpoint_breakers: bool,
    /// Each endpoint has its own adaptive limit, which the balancer consults.
    endpoint_limits: bool,
    /// The retries' budget when it is the fleet's (the retry and the hedge hold it too).
    fleet_budget: Option<FleetRetryBudget>,
}

/// What a request's admission steps took, held while it runs.
#[derive(Default)]
pub(crate) struct Held<'u> {
    /// A load shedder's slot.
    pub(crate) shed: Option<ShedPermit<'u>>,
    /// An adaptive limiter's slot, which learns from the request's outcome.
    pub(crate) limit: Option<LimitPermit<'u>>,
    /// A bulkhead's slot, held until the relayed response body ends.
    pub(crate) slot: Option<OwnedBulkheadPermit>,
}

/// An admission step's refusal.
pub(crate) struct Refused {
    /// Why, as the answer says.
    pub(crate) reason: Reason,
    /// When to come back, if the step knows.
    pub(crate) retry_after: Option<Duration>,
}

// === impl Admission ===

impl Admission {
    /// The step's name, as `/admin/state` prints it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Throttle(_) => "throttle",
            Self::RateLimit(_) => "rate_limit",
            Self::FleetRateLimit(_) => "fleet_rate_limit",
            Self::ReadBody => "read_body",
            Self::Shed(_) => "load_shedding",
            Self::AdaptiveLimit(_) => "adaptive_concurrency",
            Self::Bulkhead(_) => "bulkhead",
        }
    }

    /// Runs the step for a request (in the current criticality scope), keeping in `held`
    /// what it took. The body read is the request path's: here it lets the request on.
    pub(crate) async fn admit<'u>(&'u self, held: &mut Held<'u>) -> Result<(), Refused> {
        let refused = |reason, retry_after| Refused {
            reason,
            retry_after,
        };
        match self {
            Self::Throttle(throttle) => {
                if !throttle.admit() {
                    return Err(refused(Reason::Throttled, None));
                }
            }
            Self::RateLimit(limiter) => {
                if let Err(after) = limiter.check() {
                    return Err(refused(Reason::RateLimited, Some(after)));
                }
            }
            Self::FleetRateLimit(limit) => {
                if let Admit::Refused {
                    retry_after,
                    counting,
                } = limit.acquire(None).await
                {
                    return Err(refused(fleet_refusal(counting), Some(retry_after)));
                }
            }
            Self::ReadBody => {}
            Self::Shed(shedder) => {
                let class = palisade::criticality::current();
                match shedder.acquire::<TransportError>(class).await {
                    Ok(permit) => held.shed = Some(permit),
                    Err(_) => return Err(refused(Reason::Shed, None)),
                }
            }
            Self::AdaptiveLimit(limiter) => match limiter.acquire::<TransportError>().await {
                Ok(permit) => held.limit = Some(permit),
                Err(_) => return Err(refused(Reason::BulkheadFull, None)),
            },
            Self::Bulkhead(bulkhead) => match bulkhead.acquire_owned::<TransportError>().await {
                Ok(permit) => held.slot = Some(permit),
                Err(_) => return Err(refused(Reason::BulkheadFull, None)),
            },
        }
        Ok(())
    }
}

// === impl Held ===

impl Held<'_> {
    /// Tells the steps that learn from outcomes (the adaptive limit, the throttle) how the
    /// request went. `last_attempt`: its last attempt's round trip, which the adaptive
    /// limit learns from (the retries run inside the limit; their failed attempts and
    /// back-offs are not queueing at the upstream).
    pub(crate) fn settle<T>(
        &mut self,
        pipeline: &Pipeline,
        classifier: &HttpClassifier,
        result: &Result<T, Error<TransportError>>,
        (outcome, last_attempt): (&Outcome, Option<Duration>),
    ) where
        HttpClassifier: Classify<T, TransportError>,
    {
        if let Some(permit) = self.limit.take() {
            match last_attempt {
                Some(rtt) => permit.record_round_trip(outcome, rtt),
                None => permit.record(outcome),
            }
        }
        for step in &pipeline.admission {
            if let Admission::Throttle(throttle) = step {
                if palisade::policy::throttle::backend_accepted(classifier, result) {
                    throttle.accepted();
                }
            }
        }
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// Builds `upstream`'s policies from its validated configs, each named after the
    /// upstream and reading `settings`' clock. `breaker`: the upstream-wide breaker, when
    /// its scope is the upstream; `fleet`: the store and membership its fleet-scoped
    /// policies share, when it has any.
    pub(crate) fn build(
        upstream: &config::Upstream,
        policies: &UpstreamPolicies,
        settings: &Settings,
        breaker: Option<CircuitBreaker>,
        fleet: Option<&UpstreamFleet>,
        endpoint_limits: Option<EndpointLimits>,
    ) -> Result<Self, ConfigError> {
        let has_endpoint_limits = endpoint_limits.is_some();
        let fleet_budget = match (&policies.fleet_budget, fleet) {
            (Some(config), Some(fleet)) => Some(FleetRetryBudget::start(
                fleet.store.clone(),
                fleet.membership.clone(),
                &upstream.name,
                config,
            )?),
            _ => None,
        };
        let mut retry = RetryBuilder::from_config(policies.retry.clone()).settings(settings);
        if let Some(budget) = &fleet_budget {
            retry = retry.budget(budget.budget());
        }
        let retry = retry.build()?;
        let adaptive = policies
            .adaptive
            .as_ref()
            .filter(|a| a.scope == LimitScope::Upstream)
            .map(|a| {
                AdaptiveConcurrencyBuilder::from_config(a.config.clone())
                    .settings(settings)
                    .build()
            })
            .transpose()?;
        let mut admission = Vec::new();
        if let Some(c) = &upstream.throttle {
            let throttle = AdaptiveThrottleBuilder::from_config(c.clone()).settings(settings);
            admission.push(Admission::Throttle(throttle.build()?));
        }
        match (&policies.rate_limit, fleet) {
            (Some(RateLimitPolicy::Instance(c)), _) => {
                let limiter = RateLimiterBuilder::from_config(c.clone()).settings(settings);
                admission.push(Admission::RateLimit(limiter.build()?));
            }
            (Some(RateLimitPolicy::Fleet(c)), Some(fleet)) => {
                let limit = SharedRateLimitBuilder::from_config(c.clone())
                    .store(fleet.store.clone())
                    .membership(fleet.membership.clone());
                admission.push(Admission::FleetRateLimit(limit.build()?));
            }
            (Some(RateLimitPolicy::Fleet(_)), None) => {
                return Err(ConfigError::new(
                    "rate_limit.scope",
                    "\"fleet\" without a [fleet] section",
                    "add [fleet] redis = \"redis://host:6379\"",
                ));
            }
            (None, _) => {}
        }
        admission.push(Admission::ReadBody);
        if let Some(c) = &upstream.load_shedding {
            // With an adaptive limit too, shedding follows that limit; with limits per
            // endpoint, their sum.
            let mut shedder = LoadShedderBuilder::from_config(c.clone())
                .settings(settings)
                .following(adaptive.clone());
            if let Some(limits) = endpoint_limits {
                shedder = shedder.capacity_from(move || limits.capacity());
            }
            admission.push(Admission::Shed(shedder.build()?));
        }
        if let Some(limiter) = adaptive {
            admission.push(Admission::AdaptiveLimit(limiter));
        }
        if let Some(c) = &upstream.bulkhead {
            let bulkhead = BulkheadBuilder::from_config(c.clone()).settings(settings);
            admission.push(Admission::Bulkhead(bulkhead.build()?));
        }
        let calls = Calls {
            total: timeout(upstream.timeout.total, &settings.part("total"))?,
            hedge: hedge(upstream, settings, &retry)?,
            retry,
            breaker,
        };
        Ok(Self {
            admission,
            calls,
            per_try: PerTry::build(&upstream.timeout, &settings.part("per_try"))?,
            endpoint_breakers: upstream.circuit_breaker.scope == config::BreakerScope::Endpoint,
            endpoint_limits: has_endpoint_limits,
            fleet_budget,
        })
    }

    /// The policies' names in the order a request meets them, from the route's faults to
    /// the per-try timeout: what `/admin/state` prints.
    pub fn order(&self) -> Vec<&'static str> {
        let mut order = vec!["route_fault", "certain_refusal"];
        order.extend(self.admission.iter().map(Admission::name));
        order.extend(["total_timeout", "retry"]);
        if self.hedge().is_some() {
            order.push("hedge");
        }
        if self.breaker().is_some() {
            order.push("upstream_breaker");
        }
        order.push(if self.endpoint_breakers {
            "balancer_with_endpoint_breakers"
        } else {
            "balancer"
        });
        if self.endpoint_limits {
            order.push("endpoint_adaptive_limits");
        }
        order.push(match self.per_try {
            PerTry::Fixed(_) => "per_try_timeout",
            PerTry::Adaptive(_) => "adaptive_per_try_timeout",
        });
        order
    }

    /// The whole request's time limit.
    pub fn total(&self) -> &Timeout {
        &self.calls.total
    }

    /// The retries.
    pub fn retry(&self) -> &Retry {
        &self.calls.retry
    }

    /// The hedge, if the upstream hedges.
    pub fn hedge(&self) -> Option<&Hedge> {
        self.calls.hedge.as_ref()
    }

    /// The upstream-wide breaker (`scope = "upstream"`).
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.calls.breaker.as_ref()
    }

    /// The bulkhead, if the upstream has one.
    pub fn bulkhead(&self) -> Option<&Bulkhead> {
        self.admission.iter().find_map(|step| match step {
            Admission::Bulkhead(bulkhead) => Some(bulkhead),
            _ => None,
        })
    }

    /// The fleet's rate limit, if the upstream has one.
    pub fn fleet_rate_limit(&self) -> Option<&SharedRateLimit> {
        self.admission.iter().find_map(|step| match step {
            Admission::FleetRateLimit(limit) => Some(limit),
            _ => None,
        })
    }

    /// The fleet's retry budget, if the upstream's retries are charged to one.
    pub fn fleet_budget(&self) -> Option<&FleetRetryBudget> {
        self.fleet_budget.as_ref()
    }

    /// The rate limiter, if the upstream has one of its own.
    pub fn rate_limit(&self) -> Option<&RateLimiter> {
        self.admission.iter().find_map(|step| match step {
            Admission::RateLimit(limiter) => Some(limiter),
            _ => None,
        })
    }

    /// The adaptive concurrency limit, if the upstream has one.
    pub fn adaptive_limit(&self) -> Option<&AdaptiveConcurrency> {
        self.admission.iter().find_map(|step| match step {
            Admission::AdaptiveLimit(limiter) => Some(limiter),
            _ => None,
        })
    }

    /// The load shedder, if the upstream has one.
    pub fn shedder(&self) -> Option<&LoadShedder> {
        self.admission.iter().find_map(|step| match step {
            Admission::Shed(shedder) => Some(shedder),
            _ => None,
        })
    }
}

/// The answer to a fleet limit's refusal: which counting refused says why.
fn fleet_refusal(counting: Counting) -> Reason {
    match counting {
        Counting::Shared | Counting::Open => Reason::FleetRateLimited,
        Counting::LocalShare => Reason::LocalShareRateLimited,
        Counting::Closed => Reason::FleetStoreDown,
    }
}

/// A timeout of `after` with `settings`.
fn timeout(after: std::time::Duration, settings: &Settings) -> Result<Timeout, ConfigError> {
    let config = TimeoutConfig {
        after,
        ..TimeoutConfig::default()
    };
    TimeoutBuilder::from_config(config)
        .settings(settings)
        .build()
}

/// The upstream's hedge, charged to the retries' budget when there is one. It hedges
/// only requests the request path marks idempotent (`palisade::policy::hedge::idempotent`),
/// whatever the config says: what may be sent twice is the sidecar's decision (`Replay`).
fn hedge(
    upstream: &config::Upstream,
    settings: &Settings,
    retry: &Retry,
) -> Result<Option<Hedge>, ConfigError> {
    let Some(config) = &upstream.hedge else {
        return Ok(None);
    };
    let builder = HedgeBuilder::from_config(config.clone())
        .settings(settings)
        .idempotent_only(true);
    let builder = match retry.budget() {
        Some(budget) => builder.budget(budget.clone()),
        None => builder,
    };
    builder.build().map(Some)
}

// === impl Calls ===

impl Calls {
    /// Runs `attempt` under the total timeout, the retries, the hedge and the
    /// upstream-wide breaker, in that order, outermost first.
    ///
    /// Nested here rather than as a `palisade::Pipeline`: the pipeline's generic nesting
    /// of borrowed futures trips rustc's `Send` inference ("implementation of `Send` is not
    /// general enough") inside the sidecar's boxed request future; the order is the same.
    pub(crate) async fn execute<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        attempt: F,
    ) -> Result<T, Error<E>>
    where
        T: Send,
        E: Send + std::fmt::Debug,
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        let attempt = &attempt;
        self.total
            .execute(classifier, || {
                self.retry.execute(classifier, || {
                    self.hedge
                        .execute(classifier, || self.breaker.execute(classifier, attempt))
                })
            })
            .await
    }
}

// === impl PerTry ===

impl PerTry {
    fn build(timeouts: &config::TimeoutSection, settings: &Settings) -> Result<Self, ConfigError> {
        match &timeouts.adaptive {
            None => timeout(timeouts.per_try, settings).map(Self::Fixed),
            Some(adaptive) => {
                let mut adaptive = adaptive.clone();
                adaptive.fallback = adaptive.fallback.or(Some(timeouts.per_try));
                AdaptiveTimeoutBuilder::from_config(adaptive)
                    .settings(settings)
                    .build()
                    .map(Self::Adaptive)
            }
        }
    }
}

impl<T, E> Policy<T, E> for PerTry
where
    T: Send,
    E: Send + std::fmt::Debug,
{
    async fn execute<C, F, Fut>(&self, classifier: &C, operation: F) -> Result<T, Error<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<E>>> + Send,
    {
        match self {
            Self::Fixed(timeout) => timeout.execute(classifier, operation).await,
            Self::Adaptive(timeout) => timeout.execute(classifier, operation).await,
        }
    }
}
