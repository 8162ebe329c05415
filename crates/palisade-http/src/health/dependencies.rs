//! Ready-made checks of the dependencies services use most, each behind a feature:
//! PostgreSQL through `tokio-postgres` (`postgres`) or an `sqlx` pool (`sqlx`), and Redis
//! (`redis`). Each runs one round trip (`SELECT 1`, `PING`) and reports the failure's own
//! words; give each a timeout in the registry (a check that outlives it has failed).
//!
//! The `tokio-postgres` and Redis checks open a connection per run (so a restarted server
//! is seen as soon as it is back, with no stale connection to notice first); the registry's
//! TTL bounds how often that happens. The `sqlx` check borrows from the service's own pool:
//! the readiness it reports is the pool's.

#[cfg(any(feature = "postgres", feature = "sqlx", feature = "redis"))]
use std::future::Future;
#[cfg(any(feature = "postgres", feature = "sqlx", feature = "redis"))]
use std::pin::Pin;

#[cfg(any(feature = "postgres", feature = "sqlx", feature = "redis"))]
use super::Status;

/// A check's future, boxed.
#[cfg(any(feature = "postgres", feature = "sqlx", feature = "redis"))]
type Checking = Pin<Box<dyn Future<Output = Status> + Send>>;

/// PostgreSQL answers `SELECT 1` on a new connection made with `config` (no TLS: a
/// sidecar-local or in-cluster server; the connection's own timeouts apply).
#[cfg(feature = "postgres")]
pub fn postgres_check(
    config: tokio_postgres::Config,
) -> impl Fn() -> Checking + Send + Sync + 'static {
    move || {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = match config.connect(tokio_postgres::NoTls).await {
                Ok(connected) => connected,
                Err(error) => return Status::Failed(format!("cannot connect: {error}")),
            };
            let driving = tokio::spawn(connection);
            let status = match client.simple_query("SELECT 1").await {
                Ok(_) => Status::Ok,
                Err(error) => Status::Failed(format!("SELECT 1: {error}")),
            };
            drop(client);
            driving.abort();
            status
        })
    }
}

/// An `sqlx` PostgreSQL pool runs `SELECT 1`.
#[cfg(feature = "sqlx")]
pub fn sqlx_check(pool: sqlx::PgPool) -> impl Fn() -> Checking + Send + Sync + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            match sqlx::query("SELECT 1").execute(&pool).await {
                Ok(_) => Status::Ok,
                Err(error) => Status::Failed(format!("SELECT 1: {error}")),
            }
        })
    }
}

/// Redis answers `PING` with `PONG` on a new connection from `client`.
#[cfg(feature = "redis")]
pub fn redis_check(client: redis::Client) -> impl Fn() -> Checking + Send + Sync + 'static {
    move || {
        let client = client.clone();
        Box::pin(async move {
            let mut connection = match client.get_multiplexed_async_connection().await {
                Ok(connection) => connection,
                Err(error) => return Status::Failed(format!("cannot connect: {error}")),
            };
            match redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
            {
                Ok(pong) if pong == "PONG" => Status::Ok,
                Ok(other) => Status::Failed(format!("PING answered {other:?}")),
                Err(error) => Status::Failed(format!("PING: {error}")),
            }
        })
    }
}
