//! An upstream: its endpoints and balancer, its policies (the library's, in the order
//! [`Pipeline`] declares), its client.

mod balance;
mod endpoint;
mod fleet;
mod health;
mod pipeline;
mod pool;
#[cfg(test)]
mod simulation;

pub(crate) use balance::{Balancer, EndpointLimits, Picked};
pub use endpoint::{CheckStatus, Endpoint, Role};
pub use fleet::FleetStore;
pub(crate) use pipeline::{Admission, Held, Pipeline};
pub(crate) use pool::{Connections, PooledBody, SendError};

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use palisade::clock::Clock;
use palisade::policy::adaptive_concurrency::AdaptiveConcurrencyBuilder;
use palisade::policy::circuit_breaker::{CircuitBreaker, CircuitBreakerBuilder};
use palisade::settings::Settings;
use palisade::{ConfigError, Error};
use palisade_http::classify::{RetryOn, TransportError};

use crate::config::load::UpstreamPolicies;
use crate::config::{BreakerScope, LimitScope};

/// An upstream, ready to serve.
pub struct Upstream {
    /// Its name.
    pub name: Arc<str>,
    pub(crate) balancer: Balancer,
    /// Its policies, in the order a request meets them.
    pub pipeline: Pipeline,
    /// Subtracted from the budget sent to the upstream.
    pub margin: Duration,
    /// Longest wait for the next piece of a relayed response body.
    pub body_idle: Duration,
    /// What is retried.
    pub retry_on: RetryOn,
    /// Methods that may be replayed.
    pub methods: Vec<Method>,
    /// Largest body kept for replay.
    pub replay_body_bytes: usize,
}

impl Upstream {
    /// Builds the upstream's endpoints and policies, all reading `clock` (see
    /// [`Runtime::build`]).
    ///
    /// [`Runtime::build`]: crate::runtime::Runtime::build
    pub(crate) fn build(
        config: &crate::config::Upstream,
        policies: &UpstreamPolicies,
        clock: &Clock,
        workers: usize,
        fleet: Option<&FleetStore>,
    ) -> Result<Self, ConfigError> {
        let name: Arc<str> = config.name.as_str().into();
        let settings = Settings::named(config.name.clone()).clock(clock.clone());
        let breaker_for = |settings: &Settings| {
            CircuitBreakerBuilder::from_config(policies.breaker.clone())
                .settings(settings)
                .build()
        };
        let scope = config.circuit_breaker.scope;
        // Each endpoint's own adaptive limit, when the limits are per endpoint.
        let endpoint_limit = policies
            .adaptive
            .as_ref()
            .filter(|a| a.scope == LimitScope::Endpoint);
        let endpoint = |address: &String, role: Role| -> Result<Arc<Endpoint>, ConfigError> {
            let breaker = match scope {
                BreakerScope::Endpoint => Some(breaker_for(&settings.part(address))?),
                BreakerScope::Upstream => None,
            };
            let endpoint = Endpoint::new(
                &config.name,
                address.clone(),
                role,
                breaker,
                Connections {
                    protocol: config.protocol,
                    connect_timeout: config.timeout.per_try,
                    workers,
                },
                clock.clone(),
            )?;
            Ok(Arc::new(match endpoint_limit {
                Some(adaptive) => endpoint.limited(
                    AdaptiveConcurrencyBuilder::from_config(adaptive.config.clone())
                        .settings(&settings.part(address))
                        .build()?,
                ),
                None => endpoint,
            }))
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
        let breaker = match scope {
            BreakerScope::Upstream => Some(breaker_for(&settings)?),
            BreakerScope::Endpoint => None,
        };
        let endpoint_limits = endpoint_limit.map(|_| EndpointLimits::new(&primaries, &backups));
        let fleet = match fleet {
            Some(store) if policies.uses_fleet() => Some(store.join(&config.name)?),
            _ => None,
        };
        Ok(Self {
            balancer: Balancer::new(
                name.clone(),
                config.balance,
                primaries,
                backups,
                clock.clone(),
            )
            .slow_start(config.slow_start),
            pipeline: Pipeline::build(
                config,
                policies,
                &settings,
                breaker,
                fleet.as_ref(),
                endpoint_limits,
            )?,
            margin: config.timeout.margin,
            body_idle: config.timeout.body_idle,
            retry_on: policies.retry_on.clone(),
            methods: policies.methods.clone(),
            replay_body_bytes: config.retry.replay_body_bytes,
            name,
        })
    }

    /// Every endpoint, primaries first.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.balancer.all()
    }

    /// True if at least one endpoint (primary or backup) can take requests now.
    pub fn has_available_endpoint(&self) -> bool {
        let breaker_open = self.pipeline.breaker().is_some_and(|b| {
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
        match self.pipeline.breaker() {
            Some(breaker) => breaker.refuse_early().map(|rejected| Error::CircuitOpen {
                name: breaker.name().clone(),
                retry_after: rejected.retry_after,
            }),
            None => self.balancer.refusal(),
        }
    }

    /// Every breaker of the upstream: its own, or its endpoints'.
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        match self.pipeline.breaker() {
            Some(b) => vec![b.clone()],
            None => self.endpoints().filter_map(|e| e.breaker.clone()).collect(),
        }
    }
}
