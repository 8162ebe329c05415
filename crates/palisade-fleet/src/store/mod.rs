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
//! [`RedisStore::connect`] waits for the connection; [`RedisStore::start`] returns at
//! once and connects in the background, so that a process starts while Redis is down
//! (its calls fail fast with `Unavailable` until Redis answers).
//!
//! Cheap to clone; clones share the connection.

mod config;

pub use config::{DEFAULT_TIMEOUT, StoreConfig};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use palisade::policy::timeout::{Timeout, TimeoutConfig};
use palisade::{Error, Policy};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, Value};
use tokio::sync::OnceCell;

use crate::error::FleetError;

/// A shared connection to one Redis server; see the [module docs](self).
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    timeout: Timeout,
}

/// The connection, once there is one. Set once; from then on the `ConnectionManager`
/// reconnects by itself.
struct Link {
    connection: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout.after())
            .field("connected", &self.is_connected())
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
        let (client, manager, timeout) = parts(config)?;
        let connection = open(client, manager, config.connect_timeout).await?;
        Ok(Self {
            link: Arc::new(Link {
                connection: OnceCell::new_with(Some(connection)),
            }),
            timeout,
        })
    }

    /// Validates `config` and returns at once, connecting in the background (retrying
    /// with a backoff of up to 2 s, a warning logged per failed attempt) until Redis
    /// answers: a process must start even when Redis is down. Until then every call
    /// fails at once with [`FleetError::Unavailable`]. Needs a tokio runtime.
    ///
    /// # Errors
    /// [`FleetError::Config`] for an invalid config.
    pub fn start(config: &StoreConfig) -> Result<Self, FleetError> {
        let (client, manager, timeout) = parts(config)?;
        let link = Arc::new(Link {
            connection: OnceCell::new(),
        });
        let weak = Arc::downgrade(&link);
        let connect_timeout = config.connect_timeout;
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                let attempt = open(client.clone(), manager.clone(), connect_timeout).await;
                // Every store dropped: nobody needs the connection.
                let Some(link) = weak.upgrade() else { return };
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
        Ok(Self { link, timeout })
    }

    /// True once a connection was opened (it may be lost since; calls then say so).
    pub fn is_connected(&self) -> bool {
        self.link.connection.initialized()
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
        let connection = self.connection()?;
        self.run(|| {
            let mut connection = connection.clone();
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

    /// Sends one command under the timeout and returns the raw answer (for tests and
    /// tools: `PTTL`, `PING`, `INFO`).
    pub async fn command(&self, command: &redis::Cmd) -> Result<Value, FleetError> {
        let connection = self.connection()?;
        self.run(|| {
            let mut connection = connection.clone();
            async move { command.query_async::<Value>(&mut connection).await }
        })
        .await
    }

    fn connection(&self) -> Result<&ConnectionManager, FleetError> {
        self.link
            .connection
            .get()
            .ok_or_else(|| FleetError::Unavailable {
                reason: "not connected to redis yet".to_owned(),
            })
    }

    /// Runs one call under the timeout and sorts its failure.
    async fn run<F, Fut>(&self, call: F) -> Result<Value, FleetError>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<Value, RedisError>> + Send,
    {
        let after = self.timeout.after();
        match self.timeout.call(call).await {
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

/// The client, the connection manager's settings and the per-call timeout of `config`.
fn parts(
    config: &StoreConfig,
) -> Result<(redis::Client, ConnectionManagerConfig, Timeout), FleetError> {
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
    Ok((client, manager, timeout))
}

/// Opens the connection within `connect_timeout`.
async fn open(
    client: redis::Client,
    manager: ConnectionManagerConfig,
    connect_timeout: Duration,
) -> Result<ConnectionManager, FleetError> {
    let connect = ConnectionManager::new_with_config(client, manager);
    match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(classify(&e, connect_timeout)),
        Err(_) => Err(FleetError::Timeout {
            after: connect_timeout,
        }),
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
