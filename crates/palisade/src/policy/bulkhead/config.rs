//! Configuration of the [`Bulkhead`](super::Bulkhead).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Bulkhead;
use crate::clock::Clock;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range, positive_duration};
use crate::events::{Event, Listener};

/// Settings of a [`Bulkhead`]. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `max_concurrent` | `64` | enough for a pooled dependency; small enough that one slow dependency cannot take every worker |
/// | `max_queue` | `64` | absorbs a burst of one more full round of calls |
/// | `queue_timeout` | `100ms` | a queued caller waits briefly or gets a fast "full" |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Name used in errors, events and metrics.
    pub name: String,
    /// Calls running at once, 1 to 1,000,000 (1 to 1,024 for a blocking bulkhead).
    pub max_concurrent: usize,
    /// Calls waiting for a slot, 0 to 1,000,000. A call finding the queue full is
    /// rejected at once.
    pub max_queue: usize,
    /// Longest wait in the queue; more than 0 when `max_queue` is not 0.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            max_concurrent: 64,
            max_queue: 64,
            queue_timeout: Duration::from_millis(100),
        }
    }
}

impl BulkheadConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("max_concurrent", self.max_concurrent, 1, 1_000_000)?;
        in_range("max_queue", self.max_queue, 0, 1_000_000)?;
        if self.max_queue > 0 {
            positive_duration("queue_timeout", self.queue_timeout, ONE_DAY)?;
        }
        Ok(())
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<Bulkhead, ConfigError> {
        BulkheadBuilder {
            config: self.clone(),
            ..BulkheadBuilder::default()
        }
        .build()
    }
}

/// Builds a [`Bulkhead`]; defaults as in [`BulkheadConfig`].
#[derive(Clone, Default)]
pub struct BulkheadBuilder {
    pub(super) config: BulkheadConfig,
    pub(super) listener: Option<Listener>,
    pub(super) clock: Option<Clock>,
}

impl BulkheadBuilder {
    /// Starts from a config.
    pub fn from_config(config: BulkheadConfig) -> Self {
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

    /// Sets the number of calls running at once.
    pub fn max_concurrent(mut self, max: usize) -> Self {
        self.config.max_concurrent = max;
        self
    }

    /// Sets the queue's length and its timeout (length 0: no queue).
    pub fn queue(mut self, max: usize, timeout: Duration) -> Self {
        self.config.max_queue = max;
        self.config.queue_timeout = timeout;
        self
    }

    /// Uses `clock` for wait-time measurement.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event::BulkheadRejected`] on every rejection.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        self.config.validate()?;
        Ok(Bulkhead::from_builder(self))
    }
}

crate::settings::settings_method!(BulkheadBuilder);
