//! An upstream: its endpoints and balancer, its policies (the library's), its client.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use palisade::clock::Clock;
use palisade::policy::adaptive_concurrency::AdaptiveConcurrency;
use palisade::policy::adaptive_timeout::{AdaptiveTimeout, AdaptiveTimeoutBuilder};
use palisade::policy::bulkhead::{Bulkhead, BulkheadBuilder};
use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder};
use palisade::policy::hedge::{Hedge, HedgeBuilder};
use palisade::policy::rate_limit::{RateLimiter, RateLimiterBuilder};
use palisade::policy::retry::{Retry, RetryBuilder};
use palisade::policy::shed::LoadShedder;
use palisade::policy::throttle::AdaptiveThrottle;
use palisade::policy::timeout::Timeout;
use palisade::{ConfigError, Error};
use palisade_http::classify::{RetryOn, TransportError};

use super::balance::Balancer;
use super::endpoint::{Endpoint, Role};
use super::health;
use crate::config::BreakerScope;
use crate::config::load::UpstreamPolicies;

/// An upstream, ready to serve.
pub struct Upstream {
    /// Its name.
    pub name: Arc<str>,
    pub(crate) balancer: Balancer,
    /// The whole request's time limit.
    pub total: Timeout,
    /// One attempt's time limit.
    pub per_try: Timeout,
    /// Subtracted from the budget sent to the upstream.
    pub margin: Duration,
    /// Longest wait for the next piece of a relayed response body.
    pub body_idle: Duration,
    /// Retries.
    pub retry: Retry,
    /// What is retried.
    pub retry_on: RetryOn,
    /// Methods that may be replayed.
    pub methods: Vec<Method>,
    /// Largest body kept for replay.
    pub replay_body_bytes: usize,
    /// One breaker for the whole upstream (scope = "upstream").
    pub breaker: Option<CircuitBreaker>,
    /// Concurrency limit.
    pub bulkhead: Option<Bulkhead>,
    /// Rate limit.
    pub rate_limit: Option<RateLimiter>,
    /// Adaptive concurrency limit.
    pub adaptive: Option<AdaptiveConcurrency>,
    /// Client-side throttling.
    pub throttle: Option<AdaptiveThrottle>,
    /// Criticality-aware load shedding.
    pub shedder: Option<LoadShedder>,
    /// Hedging of slow idempotent requests.
    pub hedge: Option<Hedge>,
    /// A per-try timeout learned from latency (replaces `per_try` when set).
    pub adaptive_timeout: Option<AdaptiveTimeout>,
}

impl Upstream {
    /// Builds the upstream's policies, all reading `clock` (see [`Runtime::build`]).
    ///
    /// [`Runtime::build`]: super::Runtime::build
    pub(crate) fn build(
        config: &crate::config::Upstream,
        policies: &UpstreamPolicies,
        clock: &Clock,
    ) -> Result<Self, ConfigError> {
        let name: Arc<str> = config.name.as_str().into();
        let scope = config.circuit_breaker.scope;
        let breaker_for = |label: &str| -> Result<CircuitBreaker, ConfigError> {
            let mut breaker = policies.breaker.clone();
            breaker.name = label.to_owned();
            CircuitBreakerBuilder::from_config(breaker)
                .clock(clock.clone())
                .build()
        };
        let endpoint = |address: &String, role: Role| -> Result<Arc<Endpoint>, ConfigError> {
            let breaker = match scope {
                BreakerScope::Endpoint => Some(breaker_for(&format!("{}/{address}", config.name))?),
                BreakerScope::Upstream => None,
            };
            Ok(Arc::new(Endpoint::new(
                &config.name,
                address.clone(),
                role,
                breaker,
                config.protocol,
                config.timeout.per_try,
                clock.clone(),
            )?))
        };
        let primaries = config
            .endpoints
            .iter()
            .map(|a| endpoint(a, Role::Primary))
            .collect::<Result<Vec<_>, _>>()?;
        let backups = config
            .backup
            .iter()
            .map(|a| endpoint(a, Role::Backup))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(check) = &config.health_check {
            for e in primaries.iter().chain(backups.iter()) {
                health::spawn(e, check.clone());
            }
        }
        let mut retry_config = policies.retry.clone();
        retry_config.name = config.name.clone();
        let retry = RetryBuilder::from_config(retry_config)
            .clock(clock.clone())
            .build()?;
        let adaptive = config
            .adaptive_concurrency
            .as_ref()
            .map(|a| {
                let mut a = a.clone();
                a.name = config.name.clone();
                AdaptiveConcurrency::new(a)
            })
            .transpose()?;
        let throttle = config
            .throttle
            .as_ref()
            .map(|t| {
                let mut t = t.clone();
                t.name = config.name.clone();
                AdaptiveThrottle::new(t)
            })
            .transpose()?;
        let shedder = config
            .load_shedding
            .as_ref()
            .map(|s| {
                let mut s = s.clone();
                s.name = config.name.clone();
                // With an adaptive limit too, shedding follows that limit.
                LoadShedder::with(s, adaptive.clone(), clock.clone(), None)
            })
            .transpose()?;
        Ok(Self {
            balancer: Balancer::new(
                name.clone(),
                config.balance,
                primaries,
                backups,
                clock.clone(),
            )
            .slow_start(config.slow_start),
            total: Timeout::builder()
                .name(format!("{}/total", config.name))
                .after(config.timeout.total)
                .build()?,
            per_try: Timeout::builder()
                .name(format!("{}/per_try", config.name))
                .after(config.timeout.per_try)
                .build()?,
            margin: config.timeout.margin,
            body_idle: config.timeout.body_idle,
            retry: retry.clone(),
            retry_on: policies.retry_on.clone(),
            methods: policies.methods.clone(),
            replay_body_bytes: config.retry.replay_body_bytes,
            breaker: match scope {
                BreakerScope::Upstream => Some(breaker_for(&config.name)?),
                BreakerScope::Endpoint => None,
            },
            bulkhead: config
                .bulkhead
                .as_ref()
                .map(|b| {
                    BulkheadBuilder::from_config(b.clone())
                        .name(config.name.clone())
                        .clock(clock.clone())
                        .build()
                })
                .transpose()?,
            rate_limit: config
                .rate_limit
                .as_ref()
                .map(|r| {
                    RateLimiterBuilder::from_config(r.clone())
                        .name(config.name.clone())
                        .clock(clock.clone())
                        .build()
                })
                .transpose()?,
            hedge: config
                .hedge
                .as_ref()
                .map(|h| {
                    let mut h = h.clone();
                    h.name = config.name.clone();
                    // Hedges are charged to the retries' budget too, when there is one.
                    let builder = HedgeBuilder::from_config(h).clock(clock.clone());
                    match retry.budget() {
                        Some(budget) => builder.budget(budget.clone()).build(),
                        None => builder.build(),
                    }
                })
                .transpose()?,
            adaptive_timeout: config
                .timeout
                .adaptive
                .as_ref()
                .map(|a| {
                    let mut a = a.clone();
                    a.name = format!("{}/per_try", config.name);
                    a.fallback = a.fallback.or(Some(config.timeout.per_try));
                    AdaptiveTimeoutBuilder::from_config(a)
                        .clock(clock.clone())
                        .build()
                })
                .transpose()?,
            adaptive,
            throttle,
            shedder,
            name,
        })
    }

    /// Every endpoint, primaries first.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.balancer.all()
    }

    /// True if at least one endpoint (primary or backup) can take requests now.
    pub fn has_available_endpoint(&self) -> bool {
        let breaker_open = self.breaker.as_ref().is_some_and(|b| {
            matches!(
                b.state(),
                palisade::policy::circuit_breaker::CircuitState::ForcedOpen
            )
        });
        !breaker_open && self.endpoints().any(|e| e.is_available())
    }

    /// The refusal a request gets now for certain, found before it spends anything (a
    /// rate-limit token, a bulkhead slot, the read of its body): the upstream's breaker
    /// open, or, with a breaker per endpoint, no endpoint that can take it (see
    /// `Balancer::refusal`). `None`: the request goes on through the policies, which
    /// decide (a half-open breaker's probe among them).
    pub(crate) fn refusal(&self) -> Option<Error<TransportError>> {
        match &self.breaker {
            Some(breaker) => breaker.refuse_early().map(|rejected| Error::CircuitOpen {
                name: breaker.name().clone(),
                retry_after: rejected.retry_after,
            }),
            None => self.balancer.refusal(),
        }
    }

    /// Every breaker of the upstream: its own, or its endpoints'.
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        match &self.breaker {
            Some(b) => vec![b.clone()],
            None => self.endpoints().filter_map(|e| e.breaker.clone()).collect(),
        }
    }
}
