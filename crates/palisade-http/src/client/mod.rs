//! A resilient HTTP client: the sidecar's policies and HTTP rules around any HTTP client's
//! attempts.
//!
//! [`Resilience`] runs each call through, outermost first: the bulkhead (if configured),
//! the total timeout, the retry (with its budget), the hedge (if configured; charged to
//! the retry budget, only for requests that may be sent twice), the circuit breaker (one
//! per host by default, or one for all: `circuit_breaker.scope`) and the per-try timeout,
//! with an optional fallback answer — built from a [`ClientConfig`], whose sections and
//! keys are the sidecar's `[upstream]` ones. Its rules are the sidecar's
//! ([`HttpClassifier`]):
//!
//! - a 4xx is the caller's problem: not a failure, never retried (429 aside, after its
//!   `Retry-After`);
//! - 5xx, connect failures, resets and per-try timeouts fail, and are retried when listed
//!   in `retry.on` — and only for a request that may be sent twice: an idempotent method
//!   (`retry.methods`) or one carrying an `Idempotency-Key`, whose body can be replayed;
//! - `Retry-After` is honoured, capped by the retry's `max_retry_after`;
//! - inside a deadline scope (an inbound request's budget, see
//!   [`InboundDeadlineLayer`](crate::deadline::InboundDeadlineLayer)), every attempt is cut
//!   to the remaining budget and sends it on, minus `timeout.margin`, in
//!   `X-Request-Timeout`.
//!
//! Two integrations: [`ResilientLayer`], a tower layer over hyper-util's client or any
//! tower HTTP client service (bodies held for replay up to a bound), and, for reqwest
//! users, [`ResilientMiddleware`] (feature `reqwest`), a `reqwest-middleware` middleware.

mod config;
mod layer;
#[cfg(feature = "reqwest")]
mod reqwest;

use std::future::Future;
use std::time::Duration;

use http::{HeaderValue, Method};
use palisade::policy::bulkhead::{Bulkhead, BulkheadBuilder};
use palisade::policy::circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerRegistry,
};
use palisade::policy::hedge::{Hedge, HedgeBuilder};
use palisade::policy::retry::{Retry, RetryBuilder};
use palisade::policy::timeout::Timeout;
use palisade::{ConfigError, Error, Policy};

#[cfg(feature = "reqwest")]
pub use self::reqwest::ResilientMiddleware;
use crate::classify::{HttpClassifier, Replay, RetryOn, TransportError};
pub use config::{
    BreakerSection, ClientConfig, DEFAULT_RETRY_METHODS, DEFAULT_RETRY_ON, FallbackSection,
    RetrySection, TimeoutSection,
};
pub use layer::{
    DEFAULT_REPLAY_BYTES, ResilientLayer, ResilientService, ResponseFuture, TransportFailure,
};

/// The header carrying the budget sent on.
const X_REQUEST_TIMEOUT: &str = "x-request-timeout";
/// The header that makes any request replayable.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A client's policies and rules; see the [module docs](self). Cheap to share behind an
/// `Arc`; every call goes through the same breaker, bulkhead and retry budget.
#[derive(Debug)]
pub struct Resilience {
    bulkhead: Option<Bulkhead>,
    total: Timeout,
    retry: Retry,
    hedge: Option<Hedge>,
    breakers: Breakers,
    per_try: Timeout,
    fallback: Option<FallbackSection>,
    retry_on: RetryOn,
    methods: Vec<Method>,
    margin: Duration,
}

/// One attempt: sends the request once, given the budget to send on.
pub type Attempt<'a, T> = dyn Fn(Option<HeaderValue>) -> Attempted<'a, T> + Send + Sync + 'a;

/// An attempt's future.
pub type Attempted<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send + 'a>>;

/// A call's future through the policies, boxed.
pub type Executing<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, Error<TransportError>>> + Send + 'a>>;

/// Where breakers sit (`circuit_breaker.scope`).
#[derive(Debug)]
enum Breakers {
    /// One for every call.
    One(CircuitBreaker),
    /// One per host (URL authority), bounded.
    PerHost(CircuitBreakerRegistry<String>),
}

/// Hosts whose breakers are remembered at most (closed ones are forgotten first).
const MAX_HOSTS: usize = 1024;

/// What a call is: where it goes, its method and whether it carries an `Idempotency-Key`
/// (the replay rule reads them), and whether its body can be sent again.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// Its URL's authority (`host:port`), for a breaker per host.
    pub authority: &'a str,
    /// The request's method.
    pub method: &'a Method,
    /// Whether it carries an `Idempotency-Key` (then it may be sent twice whatever its
    /// method).
    pub idempotency_key: bool,
    /// Whether its body is held whole (it can be sent again).
    pub body_replayable: bool,
}

// === impl Resilience ===

impl Resilience {
    /// The policies `config` describes, named `name` in events and metrics. Refused: a
    /// key of a section that its policy refuses, naming it (`retry.max_attempts`, …).
    pub fn new(name: &str, config: &ClientConfig) -> Result<Self, ConfigError> {
        let retry_on = RetryOn::parse(&config.retry.on).map_err(|e| {
            ConfigError::new(
                "retry.on",
                e.0,
                "connect-failure, reset, timeout, or a 5xx/429 status",
            )
        })?;
        let methods = config
            .retry
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.as_bytes()).map_err(|_| {
                    ConfigError::new("retry.methods", format!("{m:?}"), "HTTP methods")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let retry = RetryBuilder::from_config(library("retry", &config.retry.policy)?)
            .name(name)
            .build()
            .map_err(|e| prefixed("retry", e))?;
        let template = CircuitBreakerBuilder::from_config(library(
            "circuit_breaker",
            &config.circuit_breaker.policy,
        )?)
        .name(name);
        let breakers = match config.circuit_breaker.scope.as_deref() {
            None | Some("endpoint") => Breakers::PerHost(
                CircuitBreakerRegistry::new(template, MAX_HOSTS)
                    .map_err(|e| prefixed("circuit_breaker", e))?,
            ),
            Some("upstream") => Breakers::One(
                template
                    .build()
                    .map_err(|e| prefixed("circuit_breaker", e))?,
            ),
            Some(other) => {
                return Err(ConfigError::new(
                    "circuit_breaker.scope",
                    format!("{other:?}"),
                    "\"endpoint\" (one per host) or \"upstream\" (one for all)",
                ));
            }
        };
        let hedge = match &config.hedge {
            Some(c) => {
                let builder = HedgeBuilder::from_config(c.clone()).name(name);
                // Hedges are charged to the retries' budget, as the sidecar's.
                let builder = match retry.budget() {
                    Some(budget) => builder.budget(budget.clone()),
                    None => builder,
                };
                Some(builder.build().map_err(|e| prefixed("hedge", e))?)
            }
            None => None,
        };
        if let Some(fallback) = &config.fallback {
            if !(200..=599).contains(&fallback.status) {
                return Err(ConfigError::new(
                    "fallback.status",
                    fallback.status.to_string(),
                    "a final HTTP status, 200 to 599",
                ));
            }
        }
        let bulkhead = match &config.bulkhead {
            Some(c) => Some(
                BulkheadBuilder::from_config(c.clone())
                    .name(name)
                    .build()
                    .map_err(|e| prefixed("bulkhead", e))?,
            ),
            None => None,
        };
        let timeouts = &config.timeout;
        if timeouts.per_try.is_zero() || timeouts.per_try > timeouts.total {
            return Err(ConfigError::new(
                "timeout.per_try",
                format!("{:?}", timeouts.per_try),
                "more than 0 and at most timeout.total",
            ));
        }
        Ok(Self {
            bulkhead,
            total: Timeout::builder()
                .name(name)
                .after(timeouts.total)
                .build()?,
            retry,
            hedge,
            breakers,
            per_try: Timeout::builder()
                .name(name)
                .after(timeouts.per_try)
                .build()?,
            fallback: config.fallback.clone(),
            retry_on,
            methods,
            margin: timeouts.margin,
        })
    }

    /// The breaker that calls to `authority` go through (the one breaker, with scope
    /// `"upstream"`): for a readiness check, `health::breaker_check`.
    pub fn breaker(&self, authority: &str) -> CircuitBreaker {
        match &self.breakers {
            Breakers::One(breaker) => breaker.clone(),
            Breakers::PerHost(registry) => registry.get(&authority.to_owned()),
        }
    }

    /// The answer to give instead of an error, when configured.
    pub fn fallback(&self) -> Option<&FallbackSection> {
        self.fallback.as_ref()
    }

    /// Runs `call` through the policies: `attempt` sends it once, given the budget to
    /// send on (`X-Request-Timeout`'s value, when a deadline scope is active), and is
    /// called again for each retry.
    ///
    /// `T` is the client's response (an `http::Response`, or reqwest's), judged by the
    /// sidecar's [`HttpClassifier`].
    pub fn execute<'a, T>(&'a self, call: Call<'a>, attempt: &'a Attempt<'a, T>) -> Executing<'a, T>
    where
        T: Send + 'a,
        HttpClassifier: palisade::outcome::Classify<T, TransportError>,
    {
        let keyed = call.idempotency_key;
        let replay = Replay::of(call.method, keyed, call.body_replayable, &self.methods);
        let classifier = HttpClassifier::new(self.retry_on.clone(), replay);
        let breaker = self.breaker(call.authority);
        Box::pin(async move {
            let classifier = &classifier;
            let once = || self.once(classifier, attempt);
            let run = self.run(classifier, &breaker, once);
            if replay == Replay::Safe && self.hedge.is_some() {
                palisade::policy::hedge::idempotent(run).await
            } else {
                run.await
            }
        })
    }

    /// One attempt under the per-try timeout, given the budget left to send on; boxed (as
    /// the sidecar's `Attempt::once`), so the policies above see one future type.
    fn once<'s, 'a: 's, T>(
        &'s self,
        classifier: &'s HttpClassifier,
        attempt: &'s Attempt<'a, T>,
    ) -> Executing<'s, T>
    where
        T: Send + 'a,
        HttpClassifier: palisade::outcome::Classify<T, TransportError>,
    {
        let budget = palisade::deadline::remaining().map(|remaining| {
            let left = crate::deadline::outbound_budget(remaining, self.margin);
            HeaderValue::from(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        });
        Box::pin(self.per_try.execute(classifier, move || {
            let sent = attempt(budget.clone());
            async move { sent.await.map_err(Error::Inner) }
        }))
    }

    /// The policies around `attempt`, outermost first. Nested by hand, as the sidecar's
    /// `Calls` are: a generic `Pipeline` of borrowed futures trips rustc's `Send`
    /// inference inside a boxed future.
    async fn run<T, C, F, Fut>(
        &self,
        classifier: &C,
        breaker: &CircuitBreaker,
        attempt: F,
    ) -> Result<T, Error<TransportError>>
    where
        T: Send,
        C: palisade::outcome::Classify<T, TransportError> + ?Sized,
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, Error<TransportError>>> + Send,
    {
        let attempt = &attempt;
        // The bulkhead's slot is held for the whole call (taken here rather than as one
        // more level of nesting, which rustc's `Send` inference does not see through).
        let _slot = match &self.bulkhead {
            Some(bulkhead) => Some(bulkhead.acquire::<TransportError>().await?),
            None => None,
        };
        self.total
            .execute(classifier, move || {
                self.retry.execute(classifier, move || {
                    self.hedge
                        .execute(classifier, move || breaker.execute(classifier, attempt))
                })
            })
            .await
    }
}

/// The header name for the budget sent on.
pub fn budget_header() -> http::HeaderName {
    http::HeaderName::from_static(X_REQUEST_TIMEOUT)
}

/// A library config from a section's other keys, its errors named with the section.
fn library<T: serde::de::DeserializeOwned>(
    section: &str,
    keys: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, ConfigError> {
    serde_json::from_value(serde_json::Value::Object(keys.clone()))
        .map_err(|e| ConfigError::new(section, e.to_string(), "the library's keys for it"))
}

fn prefixed(section: &str, mut error: ConfigError) -> ConfigError {
    error.field = format!("{section}.{}", error.field);
    error
}
