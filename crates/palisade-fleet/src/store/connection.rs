//! The connection itself: to one server (the `redis` crate's `ConnectionManager`) or to
//! a Redis Cluster (its async `ClusterConnection`), opened the same way and used the
//! same way (both are a `redis::aio::ConnectionLike`, so a command or a script runs on
//! either unchanged).
//!
//! Both are multiplexed: many tasks' calls share the sockets, pipelined. Both reconnect
//! by themselves after a loss. A cluster connection holds one socket per node, routes
//! each command by its first key's slot (every key of one fleet scope shares a hash tag,
//! so one slot), follows `MOVED` and `ASK` redirects, refreshes its slot map after a
//! `MOVED`, and sends `SCRIPT LOAD` to every node when a node answers `NOSCRIPT`.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::classify::classify;
use super::config::Target;
use crate::error::FleetError;

/// An open connection; cheap to clone, clones share it.
#[derive(Clone)]
pub(super) enum Connection {
    /// One server.
    Server(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// What opens a [`Connection`]: the client and its settings.
#[derive(Clone)]
pub(super) enum Connector {
    /// One server.
    Server {
        /// The server's client.
        client: redis::Client,
        /// The reconnect settings.
        manager: ConnectionManagerConfig,
    },
    /// A Redis Cluster.
    Cluster(ClusterClient),
}

// === impl Connector ===

impl Connector {
    /// The connector for `target`, with `connect_timeout` for every socket it opens.
    pub(super) fn new(target: Target, connect_timeout: Duration) -> Result<Self, FleetError> {
        match target {
            Target::Server(client) => Ok(Connector::Server {
                client,
                manager: ConnectionManagerConfig::new()
                    .set_connection_timeout(connect_timeout)
                    // One attempt per reconnect, no backoff of its own: a call that
                    // finds the connection lost starts a new attempt and fails at once,
                    // and the breaker's probe (every open_for) is the retry. With the
                    // client's own retries a probe waited on their backoff and timed
                    // out, and a fleet came back 1.6 s after Redis instead of 0.5 s.
                    .set_number_of_retries(0),
            }),
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes)
                    .connection_timeout(connect_timeout)
                    // A redirect (`MOVED`, `ASK`) or a reconnect is a retry inside the
                    // client: a few, waiting 1 to 100 ms, all within the call's own
                    // timeout (which ends them: the store itself never retries).
                    .retries(3)
                    .min_retry_wait(1)
                    .max_retry_wait(100)
                    .build()
                    .map_err(|e| {
                        FleetError::Config(palisade::ConfigError::new(
                            "nodes",
                            format!("the nodes do not make one cluster client ({e})"),
                            "the same user, password and protocol on every node",
                        ))
                    })?;
                Ok(Connector::Cluster(client))
            }
        }
    }

    /// Opens the connection within `connect_timeout`.
    pub(super) async fn open(&self, connect_timeout: Duration) -> Result<Connection, FleetError> {
        let opened = match self {
            Connector::Server { client, manager } => {
                let connect = ConnectionManager::new_with_config(client.clone(), manager.clone());
                tokio::time::timeout(connect_timeout, connect)
                    .await
                    .map(|r| r.map(Connection::Server))
            }
            Connector::Cluster(client) => {
                tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map(|r| r.map(Connection::Cluster))
            }
        };
        match opened {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(classify(&e, connect_timeout)),
            Err(_) => Err(FleetError::Timeout {
                after: connect_timeout,
            }),
        }
    }
}

// === impl Connection ===

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
