//! Configuration of the [`RateLimiter`](super::RateLimiter).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Quota, RateLimiter};
use crate::clock::Clock;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY};
use crate::events::{Event, Listener};

/// Settings of a [`RateLimiter`]. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `per_second` | `1000` | a placeholder: set it to what the dependency can take |
/// | `burst` | `100` | a tenth of a second of traffic may arrive at once |
/// | `max_wait` | `0s` | reject at once with `retry_after`; waiting hides overload from callers |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Name used in errors, events and metrics.
    pub name: String,
    /// Sustained calls per second (see [`Quota::per_second`]).
    pub per_second: f64,
    /// Calls admitted at once (see [`Quota::burst`]).
    pub burst: u32,
    /// A call that would be admitted within this wait sleeps instead of being rejected;
    /// 0 to 1 day.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let quota = Quota::default();
        Self {
            name: DEFAULT_NAME.to_owned(),
            per_second: quota.per_second,
            burst: quota.burst,
            max_wait: Duration::ZERO,
        }
    }
}

impl RateLimitConfig {
    /// The quota part.
    pub fn quota(&self) -> Quota {
        Quota::new(self.per_second, self.burst)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.quota().validate()?;
        if self.max_wait > ONE_DAY {
            return Err(ConfigError::new(
                "max_wait",
                format!("{:?} is out of range", self.max_wait),
                "0 to 1 day",
            ));
        }
        Ok(())
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<RateLimiter, ConfigError> {
        RateLimiterBuilder {
            config: self.clone(),
            ..RateLimiterBuilder::default()
        }
        .build()
    }
}

/// Builds a [`RateLimiter`]; defaults as in [`RateLimitConfig`].
#[derive(Clone, Default)]
pub struct RateLimiterBuilder {
    pub(super) config: RateLimitConfig,
    pub(super) listener: Option<Listener>,
    pub(super) clock: Option<Clock>,
}

impl RateLimiterBuilder {
    /// Starts from a config.
    pub fn from_config(config: RateLimitConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the quota.
    pub fn quota(mut self, quota: Quota) -> Self {
        self.config.per_second = quota.per_second;
        self.config.burst = quota.burst;
        self
    }

    /// Lets calls wait up to `max_wait` for their turn instead of being rejected.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = max_wait;
        self
    }

    /// Uses `clock` instead of tokio's.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event::RateLimited`] on every rejection.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        self.config.validate()?;
        Ok(RateLimiter::from_builder(self))
    }
}

crate::settings::settings_method!(RateLimiterBuilder);
