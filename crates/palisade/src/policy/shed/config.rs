//! Configuration of the [`LoadShedder`](super::LoadShedder).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, DEFAULT_NAME, in_range, positive_duration};

/// Settings of criticality-aware load shedding.
///
/// | field | default | why |
/// |---|---|---|
/// | `max_concurrent` | `64` | calls served at once (or follow an adaptive limiter's limit) |
/// | `max_queue` | `256` | waiting calls; a newcomer finding it full displaces a lower class or is shed |
/// | `target` | `5ms` | CoDel's target queue delay: once waits stay above it for an `interval`, waiters older than `target` are shed |
/// | `interval` | `100ms` | CoDel's interval, and the longest any call waits when the queue is healthy |
/// | `adaptive_lifo` | `true` | under congestion serve the newest sheddable waiter first: its caller is still there (critical classes stay oldest first) |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShedConfig {
    /// Name used in errors, events and metrics.
    pub name: String,
    /// Calls served at once, 1 to 1,000,000.
    pub max_concurrent: usize,
    /// Calls waiting, 0 to 1,000,000.
    pub max_queue: usize,
    /// Target queue delay, more than 0 and at most `interval`.
    #[serde(with = "humantime_serde")]
    pub target: Duration,
    /// Measurement interval and healthy-queue timeout, more than 0 and at most 1 minute.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Serve newest first while congested.
    pub adaptive_lifo: bool,
}

impl Default for ShedConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            max_concurrent: 64,
            max_queue: 256,
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            adaptive_lifo: true,
        }
    }
}

impl ShedConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("max_concurrent", self.max_concurrent, 1, 1_000_000)?;
        in_range("max_queue", self.max_queue, 0, 1_000_000)?;
        positive_duration("interval", self.interval, Duration::from_secs(60))?;
        positive_duration("target", self.target, self.interval).map_err(|_| {
            ConfigError::new(
                "target",
                format!("{:?} is out of range", self.target),
                format!("more than 0 and at most interval ({:?})", self.interval),
            )
        })
    }
}

/// Builds a [`LoadShedder`](super::LoadShedder) step by step; see [`ShedConfig`] for defaults.
#[derive(Clone, Default)]
pub struct LoadShedderBuilder {
    config: ShedConfig,
    capacity: Option<super::Capacity>,
    clock: Option<crate::clock::Clock>,
    listener: Option<crate::events::Listener>,
}

// === impl LoadShedderBuilder ===

impl LoadShedderBuilder {
    /// Starts from a config.
    pub fn from_config(config: ShedConfig) -> Self {
        Self {
            config,
            capacity: None,
            clock: None,
            listener: None,
        }
    }

    /// Follows `limit`'s adaptive concurrency limit as its capacity instead of
    /// `max_concurrent` (default: its own fixed capacity).
    #[must_use]
    pub fn following(
        mut self,
        limit: Option<crate::policy::adaptive_concurrency::AdaptiveConcurrency>,
    ) -> Self {
        if let Some(limit) = limit {
            self.capacity = Some(super::Capacity::Following(limit));
        }
        self
    }

    /// Reads its capacity from `capacity` at every admission instead of
    /// `max_concurrent`: e.g. the sum of the adaptive limits of the endpoints a call may
    /// go to, so that calls wait here, where shedding acts, rather than at an endpoint.
    /// A capacity of 0 is read as 1, so calls keep flowing to learn from.
    #[must_use]
    pub fn capacity_from(mut self, capacity: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        self.capacity = Some(super::Capacity::Computed(std::sync::Arc::new(capacity)));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<super::LoadShedder, ConfigError> {
        let clock = self.clock.unwrap_or_else(crate::clock::Clock::tokio);
        super::LoadShedder::from_parts(self.config, self.capacity, clock, self.listener)
    }
}

crate::settings::builder_methods!(LoadShedderBuilder);
