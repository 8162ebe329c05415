//! `[fleet]` and the fleet-scoped parts of an upstream: limits and budgets shared by
//! every sidecar of a service through one Redis (see docs/FLEET.md).
//!
//! The sidecar only declares them; the policies are `palisade-fleet`'s.

use std::time::Duration;

use palisade_fleet::{MembershipConfig, Mode, OnStoreDown, StoreConfig};
use serde::{Deserialize, Serialize};

/// `[fleet]`: the Redis that fleet-scoped limits and budgets share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// One server (`"redis://host:port"`) or the nodes of a Redis Cluster (a list).
    pub redis: RedisAddress,
    /// The longest one Redis call may take; beyond it the request is decided by the
    /// limit's `on_store_down`. Default 5 ms.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The longest connecting may take. Default 1 s.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How often each sidecar says it is alive (the count a local share divides by).
    /// Default 500 ms.
    #[serde(default = "defaults::heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a heartbeat counts. Default 1.5 s.
    #[serde(default = "defaults::heartbeat_expiry", with = "humantime_serde")]
    pub heartbeat_expiry: Duration,
}

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RedisAddress {
    /// A standalone server.
    Server(String),
    /// The nodes of a cluster (any of them; the client learns the rest).
    Cluster(Vec<String>),
}

/// Whose limit or budget: this sidecar's, or the fleet's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Counted in this process alone.
    #[default]
    Instance,
    /// Counted in `[fleet]`'s Redis, for every sidecar sharing it.
    Fleet,
}

/// `[upstream.rate_limit]`: where it is counted, plus the library's rate-limit keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitSection {
    /// `instance` (default) or `fleet`.
    #[serde(default)]
    pub scope: Scope,
    /// Fleet only: `exact` (one Redis call per request, the default) or `lease`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Fleet only: what decides while Redis fails: `local_share` (the default), `open`
    /// or `closed`.
    #[serde(default)]
    pub on_store_down: Option<OnStoreDown>,
    /// Fleet lease mode only: the share of a second's limit leased ahead, fleet-wide.
    #[serde(default)]
    pub lease_fraction: Option<f64>,
    /// Every other key: [`palisade::policy::rate_limit::RateLimitConfig`]'s.
    #[serde(flatten)]
    pub policy: toml::Table,
}

// === impl FleetSection ===

impl FleetSection {
    /// The store's settings.
    pub(crate) fn store_config(&self) -> StoreConfig {
        let base = match &self.redis {
            RedisAddress::Server(url) => StoreConfig::new(url.clone()),
            RedisAddress::Cluster(nodes) => StoreConfig::cluster(nodes.clone()),
        };
        base.timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
    }

    /// The heartbeats' settings.
    pub(crate) fn membership(&self) -> MembershipConfig {
        MembershipConfig {
            interval: self.heartbeat,
            expire_after: self.heartbeat_expiry,
        }
    }
}

pub(crate) mod defaults {
    use std::time::Duration;

    pub(crate) fn timeout() -> Duration {
        palisade_fleet::store::DEFAULT_TIMEOUT
    }

    pub(crate) fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }

    pub(crate) fn heartbeat() -> Duration {
        Duration::from_millis(500)
    }

    pub(crate) fn heartbeat_expiry() -> Duration {
        Duration::from_millis(1500)
    }
}
