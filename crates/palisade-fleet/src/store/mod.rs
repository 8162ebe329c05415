//! The connection to Redis that every fleet policy shares.
//!
//! A [`RedisStore`] is one multiplexed connection, to one server (`url`) or to a Redis
//! Cluster (`nodes`): many tasks' calls are pipelined on it, and a lost connection is
//! reopened on a later call. Every call passes the store's circuit breaker, then runs
//! under a Palisade [`Timeout`] (so it also ends at the caller's deadline), and every
//! failure becomes one [`FleetError`]: `Timeout`, `Unavailable`, `Malformed` or
//! `CircuitOpen`. The store never retries a call: a retry would spend the request's
//! budget on a Redis that is already late, and the caller's fallback is the better
//! answer.
//!
//! **The breaker** ([`RedisStore::breaker`], named `fleet.redis`, one per store and
//! shared by its clones): after 3 calls in a row that timed out or found Redis
//! unavailable it opens, and for 250 ms every call answers
//! [`FleetError::CircuitOpen`] at once — no socket work, no waiting for a timeout that
//! is sure to fire. Then one call probes Redis: an answer closes the breaker, a failure
//! opens it for another 250 ms (never longer: a fleet is back on Redis within about
//! 250 ms of Redis answering again). A malformed answer is not a failure: Redis answered.
//! The caller's own deadline running out is not one either. Both numbers are
//! [`StoreBreakerConfig`]'s.
//!
//! [`RedisStore::connect`] waits for the connection; [`RedisStore::start`] returns at
//! once and connects in the background, so that a process starts while Redis is down
//! (its calls fail fast with `Unavailable`, then `CircuitOpen`, until Redis answers).
//!
//! Cheap to clone; clones share the connection and the breaker.

mod classify;
mod config;
mod connection;

pub use config::{DEFAULT_TIMEOUT, MAX_NODES, StoreBreakerConfig, StoreConfig};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use palisade::policy::circuit_breaker::{CircuitBreaker, Rejected};
use palisade::policy::timeout::{Timeout, TimeoutConfig};
use palisade::{ConfigError, Error, Outcome, Policy};
use redis::{RedisError, Script, Value};
use tokio::sync::{OnceCell, watch};

use crate::error::FleetError;
use classify::classify;
use connection::{Connection, Connector};

/// The name of the store's timeout and breaker, in errors and metrics.
pub const STORE_POLICY_NAME: &str = "fleet.redis";

/// A shared connection to Redis (one server or a cluster), behind a circuit breaker;
/// see the [module docs](self).
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    timeout: Timeout,
    breaker: CircuitBreaker,
    /// The breaker's open time: the `retry_after` of a refusal that carries none (a
    /// breaker held open by an operator).
    open_for: Duration,
}

/// The connection, once there is one. Set once; from then on it reconnects by itself.
struct Link {
    connection: OnceCell<Connection>,
    /// True once the first connect attempt ended, either way.
    attempted: watch::Sender<bool>,
}

/// One call's answer, and what it says about Redis's health (for the breaker).
type Attempt = (Result<Value, FleetError>, Outcome);

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout.after())
            .field("connected", &self.is_connected())
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

/// The longest pause between two attempts of [`RedisStore::start`]'s background
/// connect.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(2);

// === impl RedisStore ===

impl RedisStore {
    /// Validates `config` and connects, within `connect_timeout`.
    ///
    /// # Errors
    /// [`FleetError::Config`] for an invalid config (nothing is tried);
    /// [`FleetError::Timeout`] or [`FleetError::Unavailable`] when Redis cannot be
    /// reached.
    pub async fn connect(config: &StoreConfig) -> Result<Self, FleetError> {
        let (store, connector) = Self::unconnected(config)?;
        let connection = connector.open(config.connect_timeout).await?;
        // Nobody else can have set it: the store is not shared yet.
        let _ = store.link.connection.set(connection);
        store.link.attempted.send_replace(true);
        Ok(store)
    }

    /// Validates `config` and returns at once, connecting in the background (retrying
    /// with a backoff of up to 2 s, a warning logged per failed attempt) until Redis
    /// answers: a process must start even when Redis is down. Until then every call
    /// fails at once with [`FleetError::Unavailable`] (and, once the breaker has opened,
    /// [`FleetError::CircuitOpen`]). Needs a tokio runtime.
    ///
    /// # Errors
    /// [`FleetError::Config`] for an invalid config.
    pub fn start(config: &StoreConfig) -> Result<Self, FleetError> {
        let (store, connector) = Self::unconnected(config)?;
        let weak = Arc::downgrade(&store.link);
        let connect_timeout = config.connect_timeout;
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                let attempt = connector.open(connect_timeout).await;
                // Every store dropped: nobody needs the connection.
                let Some(link) = weak.upgrade() else { return };
                link.attempted.send_replace(true);
                match attempt {
                    Ok(connection) => {
                        let _ = link.connection.set(connection);
                        tracing::info!("fleet store: connected to redis");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "fleet store: redis not reachable yet"),
                }
                drop(link);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
            }
        });
        Ok(store)
    }

    /// A store for `config` with no connection yet, and what opens one.
    fn unconnected(config: &StoreConfig) -> Result<(Self, Connector), FleetError> {
        config.validate()?;
        let connector = Connector::new(config.target()?, config.connect_timeout)?;
        let timeout = TimeoutConfig {
            name: STORE_POLICY_NAME.to_owned(),
            after: config.timeout,
        }
        .build()?;
        let breaker = breaker(&config.breaker)?;
        let store = Self {
            link: Arc::new(Link {
                connection: OnceCell::new(),
                attempted: watch::Sender::new(false),
            }),
            timeout,
            breaker,
            open_for: config.breaker.open_for,
        };
        Ok((store, connector))
    }

    /// Waits until the first connect attempt ended, connected or not: at most
    /// `connect_timeout` after [`start`](Self::start). A policy that cannot decide
    /// without the fleet waits for it, so that a process joining a healthy fleet counts
    /// on the fleet from its first call rather than on a fallback.
    pub async fn first_attempt(&self) {
        let mut attempted = self.link.attempted.subscribe();
        // Err only if the sender is gone, and the store holds it.
        let _ = attempted.wait_for(|done| *done).await;
    }

    /// True once a connection was opened (it may be lost since; calls then say so).
    pub fn is_connected(&self) -> bool {
        self.link.connection.initialized()
    }

    /// False while the breaker refuses calls for certain (open, its open time not over,
    /// or held open): a call now would answer [`FleetError::CircuitOpen`] without asking
    /// Redis. True otherwise, including when the next call would be the probe. One
    /// atomic load when the breaker is closed.
    pub fn is_available(&self) -> bool {
        self.breaker.would_refuse().is_none()
    }

    /// The store's circuit breaker (`fleet.redis`), for its state, a snapshot or an
    /// operator's `force_open`/`reset`. Shared by every clone of this store.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.after()
    }

    /// Evaluates `script` (EVALSHA, loading it on `NOSCRIPT`, on every node of a
    /// cluster) with `keys` and `args`, through the breaker and under the timeout.
    pub(crate) async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[u64],
    ) -> Result<Value, FleetError> {
        self.call(|mut connection| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key.as_str());
            }
            for arg in args {
                invocation.arg(*arg);
            }
            async move { invocation.invoke_async::<Value>(&mut connection).await }
        })
        .await
    }

    /// Sends one command through the breaker and under the timeout, and returns the raw
    /// answer (for tests and tools: `PTTL`, `PING`, `INFO`). On a cluster the command
    /// goes to its first key's node, or to a random node without keys (as the `redis`
    /// crate routes it; `DBSIZE` and the like are summed over the primaries).
    pub async fn command(&self, command: &redis::Cmd) -> Result<Value, FleetError> {
        self.call(
            |mut connection| async move { command.query_async::<Value>(&mut connection).await },
        )
        .await
    }

    /// Runs `request` on (a handle of) the connection, through the breaker and under
    /// the timeout; without a connection yet, answers [`FleetError::Unavailable`].
    async fn call<F, Fut>(&self, request: F) -> Result<Value, FleetError>
    where
        F: Fn(Connection) -> Fut + Send + Sync,
        Fut: Future<Output = Result<Value, RedisError>> + Send,
    {
        self.guarded(async {
            match self.connection() {
                Ok(connection) => self.timed(|| request(connection.clone())).await,
                Err(e) => judged(e),
            }
        })
        .await
    }

    fn connection(&self) -> Result<&Connection, FleetError> {
        self.link
            .connection
            .get()
            .ok_or_else(|| FleetError::Unavailable {
                reason: "not connected to redis yet".to_owned(),
            })
    }

    /// Runs `attempt` if the breaker admits a call, and tells the breaker how it went;
    /// answers [`FleetError::CircuitOpen`] at once (`attempt` dropped unpolled, so
    /// nothing of it runs) if not.
    async fn guarded<A>(&self, attempt: A) -> Result<Value, FleetError>
    where
        A: Future<Output = Attempt>,
    {
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => return Err(self.refusal(rejected)),
        };
        let (answer, outcome) = attempt.await;
        permit.record(&outcome);
        answer
    }

    #[cold]
    fn refusal(&self, rejected: Rejected) -> FleetError {
        FleetError::CircuitOpen {
            retry_after: rejected.retry_after.unwrap_or(self.open_for),
        }
    }

    /// Runs one call under the timeout and sorts its failure.
    async fn timed<F, Fut>(&self, call: F) -> Attempt
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<Value, RedisError>> + Send,
    {
        let after = self.timeout.after();
        match self.timeout.call(call).await {
            Ok(value) => (Ok(value), Outcome::success()),
            Err(Error::Inner(e)) => judged(classify(&e, after)),
            Err(Error::Timeout { after }) => judged(FleetError::Timeout { after }),
            // The caller's deadline ran out first: a timeout for the caller, but nothing
            // learnt about Redis.
            Err(Error::DeadlineExceeded) => {
                (Err(FleetError::Timeout { after }), Outcome::ignored())
            }
            Err(other) => judged(FleetError::Unavailable {
                reason: other.to_string(),
            }),
        }
    }
}

/// `error` as an attempt: a failure of Redis for the breaker if it timed out or was
/// unavailable; an answer (Redis is up) otherwise.
fn judged(error: FleetError) -> Attempt {
    let outcome = match error {
        FleetError::Timeout { .. } | FleetError::Unavailable { .. } => Outcome::failure(),
        _ => Outcome::success(),
    };
    (Err(error), outcome)
}

/// The store's breaker: `failures` in a row open it for `open_for`, fixed (no growth, no
/// jitter), then one probe decides.
fn breaker(config: &StoreBreakerConfig) -> Result<CircuitBreaker, ConfigError> {
    CircuitBreaker::builder()
        .name(STORE_POLICY_NAME)
        .consecutive_failures(config.failures)
        .open_for(config.open_for, config.open_for, 1.0, 0.0)
        .half_open(1, 1, 1)
        .build()
        .map_err(|e| e.within("breaker"))
}

#[cfg(test)]
mod tests;
