//! The connection to Redis that every fleet policy shares.
//!
//! A [`RedisStore`] is one multiplexed connection (the `redis` crate's
//! `ConnectionManager`): many tasks' calls are pipelined on one socket, and a lost
//! connection is reopened on a later call. Every call runs under a Palisade
//! [`Timeout`] (so it also ends at the caller's deadline), and every failure becomes
//! one [`FleetError`]: `Timeout`, `Unavailable` or `Malformed`. The store never retries
//! a call: a retry would spend the request's budget on a Redis that is already late,
//! and the caller's fallback is the better answer.
//!
//! Cheap to clone; clones share the connection.

mod config;

pub use config::{DEFAULT_TIMEOUT, StoreConfig};

use std::time::Duration;

use palisade::policy::timeout::{Timeout, TimeoutConfig};
use palisade::{Error, Policy};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, Value};

use crate::error::FleetError;

/// A shared connection to one Redis server; see the [module docs](self).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Timeout,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout.after())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Validates `config` and connects, within `connect_timeout`.
    ///
    /// # Errors
    /// [`FleetError::Config`] for an invalid config (nothing is tried);
    /// [`FleetError::Timeout`] or [`FleetError::Unavailable`] when Redis cannot be
    /// reached.
    pub async fn connect(config: &StoreConfig) -> Result<Self, FleetError> {
        config.validate()?;
        let client = config.client()?;
        let timeout = TimeoutConfig {
            name: "fleet.redis".to_owned(),
            after: config.timeout,
        }
        .build()?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(config.connect_timeout)
            // Reconnect quickly and a few times; a call meanwhile fails with its timeout.
            .set_number_of_retries(2)
            .set_factor(10)
            .set_max_delay(200);
        let connect = ConnectionManager::new_with_config(client, manager);
        let connection = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(classify(&e, config.connect_timeout)),
            Err(_) => {
                return Err(FleetError::Timeout {
                    after: config.connect_timeout,
                });
            }
        };
        Ok(Self {
            connection,
            timeout,
        })
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.after()
    }

    /// Evaluates `script` (EVALSHA, loading it on `NOSCRIPT`) with `keys` and `args`,
    /// under the timeout.
    pub(crate) async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[u64],
    ) -> Result<Value, FleetError> {
        let after = self.timeout.after();
        let answer = self
            .timeout
            .call(|| {
                let mut connection = self.connection.clone();
                let mut invocation = script.prepare_invoke();
                for key in keys {
                    invocation.key(key.as_str());
                }
                for arg in args {
                    invocation.arg(*arg);
                }
                async move { invocation.invoke_async::<Value>(&mut connection).await }
            })
            .await;
        match answer {
            Ok(value) => Ok(value),
            Err(Error::Inner(e)) => Err(classify(&e, after)),
            Err(Error::Timeout { after }) => Err(FleetError::Timeout { after }),
            Err(Error::DeadlineExceeded) => Err(FleetError::Timeout { after }),
            Err(other) => Err(FleetError::Unavailable {
                reason: other.to_string(),
            }),
        }
    }

    /// Sends one command under the timeout and returns the raw answer (for tests and
    /// tools: `PTTL`, `PING`, `INFO`).
    pub async fn command(&self, command: &redis::Cmd) -> Result<Value, FleetError> {
        let after = self.timeout.after();
        let answer = self
            .timeout
            .call(|| {
                let mut connection = self.connection.clone();
                async move { command.query_async::<Value>(&mut connection).await }
            })
            .await;
        match answer {
            Ok(value) => Ok(value),
            Err(Error::Inner(e)) => Err(classify(&e, after)),
            Err(Error::Timeout { after }) => Err(FleetError::Timeout { after }),
            Err(Error::DeadlineExceeded) => Err(FleetError::Timeout { after }),
            Err(other) => Err(FleetError::Unavailable {
                reason: other.to_string(),
            }),
        }
    }
}

/// Sorts a client or server error into the three answers a caller acts on.
fn classify(e: &RedisError, after: Duration) -> FleetError {
    if e.is_timeout() {
        return FleetError::Timeout { after };
    }
    let unavailable = match e.kind() {
        ErrorKind::IoError
        | ErrorKind::BusyLoadingError
        | ErrorKind::TryAgain
        | ErrorKind::ClusterDown
        | ErrorKind::MasterDown
        | ErrorKind::ReadOnly
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig => true,
        ErrorKind::ExtensionError => matches!(e.code(), Some("OOM" | "BUSY" | "NOPERM")),
        _ => e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error(),
    };
    if unavailable {
        FleetError::Unavailable {
            reason: e.to_string(),
        }
    } else {
        FleetError::malformed(e.to_string())
    }
}
