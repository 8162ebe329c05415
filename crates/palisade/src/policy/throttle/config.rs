//! Configuration of [`AdaptiveThrottle`](super::AdaptiveThrottle).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, DEFAULT_NAME, in_range};

/// Settings of client-side throttling (defaults from Google SRE's book).
///
/// | field | default | why |
/// |---|---|---|
/// | `k` | `2.0` | send up to twice what the backend accepts: headroom to notice recovery |
/// | `window` | `2m` | long enough to be stable, short enough to follow the backend |
/// | `buckets` | `12` | 10 s buckets for the default window |
/// | `max_rejection` | `0.95` | a trickle always reaches the backend, so recovery is seen |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Name used in errors, events and metrics.
    pub name: String,
    /// Requests sent per accepted request before throttling starts, 1 to 100.
    pub k: f64,
    /// How long requests and accepts are counted, 1 s to 1 h.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Buckets of the window, 1 to 600.
    pub buckets: u32,
    /// Highest local rejection probability, 0 to 1.
    pub max_rejection: f64,
    /// Seed of the dice.
    pub seed: Option<u64>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 12,
            max_rejection: 0.95,
            seed: None,
        }
    }
}

impl ThrottleConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("k", self.k, 1.0, 100.0)?;
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "window",
                format!("{:?} is out of range", self.window),
                "1s to 1h",
            ));
        }
        in_range("buckets", self.buckets, 1, 600)?;
        in_range("max_rejection", self.max_rejection, 0.0, 1.0)
    }
}

/// Builds a [`AdaptiveThrottle`](super::AdaptiveThrottle) step by step; see [`ThrottleConfig`] for defaults.
#[derive(Clone, Default)]
pub struct AdaptiveThrottleBuilder {
    config: ThrottleConfig,
    clock: Option<crate::clock::Clock>,
    listener: Option<crate::events::Listener>,
}

// === impl AdaptiveThrottleBuilder ===

impl AdaptiveThrottleBuilder {
    /// Starts from a config.
    pub fn from_config(config: ThrottleConfig) -> Self {
        Self {
            config,
            clock: None,
            listener: None,
        }
    }

    /// Validates and builds.
    pub fn build(self) -> Result<super::AdaptiveThrottle, ConfigError> {
        let clock = self.clock.unwrap_or_else(crate::clock::Clock::tokio);
        super::AdaptiveThrottle::from_parts(self.config, clock, self.listener)
    }
}

crate::settings::builder_methods!(AdaptiveThrottleBuilder);
