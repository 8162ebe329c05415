//! Configuration of the [`Timeout`](super::Timeout) policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Timeout;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, positive_duration};
use crate::events::{Emitter, Event, Listener};

/// Settings of a [`Timeout`].
///
/// | field | default | why |
/// |---|---|---|
/// | `name` | `"default"` | labels events and metrics |
/// | `after` | `1s` | long enough for a healthy dependency's tail, short enough that a hung call frees its caller well before a user gives up |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Name used in events and metrics.
    pub name: String,
    /// How long the operation may run before it is cancelled. More than 0, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            after: Duration::from_secs(1),
        }
    }
}

impl TimeoutConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive_duration("after", self.after, ONE_DAY)
    }

    /// Validates and builds the policy.
    pub fn build(&self) -> Result<Timeout, ConfigError> {
        self.build_with(None)
    }

    pub(crate) fn build_with(&self, listener: Option<Listener>) -> Result<Timeout, ConfigError> {
        self.validate()?;
        Ok(Timeout::from_parts(
            self.name.as_str().into(),
            self.after,
            Emitter::new(listener),
        ))
    }
}

/// Builds a [`Timeout`] step by step; see [`TimeoutConfig`] for defaults.
#[derive(Clone, Default)]
pub struct TimeoutBuilder {
    config: TimeoutConfig,
    listener: Option<Listener>,
}

impl TimeoutBuilder {
    /// Starts from a config.
    pub fn from_config(config: TimeoutConfig) -> Self {
        Self {
            config,
            listener: None,
        }
    }

    /// Takes the name and listener from `settings` (see
    /// [`Settings`](crate::settings::Settings)). A timeout waits on tokio's timer, which
    /// tokio's paused clock drives in tests; it reads no other clock.
    #[must_use]
    pub fn settings(mut self, settings: &crate::settings::Settings) -> Self {
        self.config.name.clone_from(&settings.name);
        if settings.listener.is_some() {
            self.listener.clone_from(&settings.listener);
        }
        self
    }

    /// Sets the name used in events and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the timeout.
    pub fn after(mut self, after: Duration) -> Self {
        self.config.after = after;
        self
    }

    /// Receives an [`Event::TimedOut`] whenever the timeout fires.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(std::sync::Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Timeout, ConfigError> {
        self.config.build_with(self.listener)
    }
}
