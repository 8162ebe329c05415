//! `[fleet]`'s Redis as a runtime holds it, and an upstream's share of it: the
//! heartbeats that count the sidecars sharing its limits.
//!
//! One [`FleetStore`] per runtime: one connection (pipelined) for every upstream's
//! fleet limit and budget. It starts connecting in the background, so a sidecar
//! starts while Redis is down; its fleet policies then decide by their
//! `on_store_down` until Redis answers.

use palisade::ConfigError;
use palisade_fleet::{Membership, MembershipConfig, RedisStore};

use crate::config::fleet::FleetSection;

/// `[fleet]`'s connection and heartbeat settings.
#[derive(Clone, Debug)]
pub struct FleetStore {
    store: RedisStore,
    heartbeat: MembershipConfig,
}

/// What an upstream's fleet policies share: the store and the upstream's membership
/// (the sidecars counting its limits, scope = the upstream's name).
#[derive(Clone, Debug)]
pub(crate) struct UpstreamFleet {
    pub(crate) store: RedisStore,
    pub(crate) membership: Membership,
}

// === impl FleetStore ===

impl FleetStore {
    /// Starts connecting to `section`'s Redis in the background (needs a tokio runtime).
    ///
    /// # Errors
    /// A [`ConfigError`] for settings the checks let through that still cannot work.
    pub fn start(section: &FleetSection) -> Result<Self, ConfigError> {
        let store = RedisStore::start(&section.store_config()).map_err(|e| {
            ConfigError::new("fleet.redis", e.to_string(), "a reachable redis:// URL")
        })?;
        Ok(Self {
            store,
            heartbeat: section.membership(),
        })
    }

    /// The connection.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Joins the sidecars sharing `upstream`'s fleet policies.
    pub(crate) fn join(&self, upstream: &str) -> Result<UpstreamFleet, ConfigError> {
        Ok(UpstreamFleet {
            store: self.store.clone(),
            membership: Membership::start(self.store.clone(), upstream, &self.heartbeat)?,
        })
    }
}
