//! Configuration of the [`AdaptiveTimeout`](super::AdaptiveTimeout) policy.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AdaptiveTimeout;
use crate::clock::Clock;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range, positive_duration};
use crate::events::{Event, Listener};

/// Settings of an [`AdaptiveTimeout`].
///
/// | field | default | why |
/// |---|---|---|
/// | `name` | `"default"` | labels events and metrics |
/// | `percentile` | `0.99` | the timeout sits above all but the slowest 1% of answers |
/// | `factor` | `1.5` | headroom over the percentile, so ordinary jitter does not time out |
/// | `min` | `20ms` | a very fast dependency still gets time for a scheduling hiccup or a GC pause |
/// | `max` | `2s` | a slow spell never makes callers wait longer than a static timeout would |
/// | `window` | `30s` | enough calls for a stable p99 at modest traffic, recent enough to follow a change within half a minute |
/// | `min_samples` | `100` | a p99 of fewer calls is the maximum of a handful, mostly noise |
/// | `fallback` | `max` | until there are enough samples, nothing is known: be as lenient as allowed |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveTimeoutConfig {
    /// Name used in events and metrics.
    pub name: String,
    /// The latency percentile the timeout follows: greater than 0, less than 1.
    pub percentile: f64,
    /// The timeout is `factor ×` the percentile (before clamping): 1 to 100.
    pub factor: f64,
    /// The shortest timeout: more than 0, at most `max`.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// The longest timeout: at least `min`, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// How long a latency counts: 1 s to 1 day.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Samples in the window before the percentile is used: 1 to 1,000,000.
    pub min_samples: u32,
    /// The timeout while samples are too few; `max` when absent. More than 0, at most
    /// 1 day.
    #[serde(with = "humantime_serde")]
    pub fallback: Option<Duration>,
}

impl Default for AdaptiveTimeoutConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            percentile: 0.99,
            factor: 1.5,
            min: Duration::from_millis(20),
            max: Duration::from_secs(2),
            window: Duration::from_secs(30),
            min_samples: 100,
            fallback: None,
        }
    }
}

impl AdaptiveTimeoutConfig {
    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        open_unit("percentile", self.percentile)?;
        in_range("factor", self.factor, 1.0, 100.0)?;
        positive_duration("max", self.max, ONE_DAY)?;
        positive_duration("min", self.min, self.max).map_err(|_| {
            ConfigError::new(
                "min",
                format!("{:?} is out of range", self.min),
                format!("more than 0 and at most max ({:?})", self.max),
            )
        })?;
        if self.window < Duration::from_secs(1) || self.window > ONE_DAY {
            return Err(ConfigError::new(
                "window",
                format!("{:?} is out of range", self.window),
                "1s to 1 day",
            ));
        }
        in_range("min_samples", self.min_samples, 1, 1_000_000)?;
        if let Some(fallback) = self.fallback {
            positive_duration("fallback", fallback, ONE_DAY)?;
        }
        Ok(())
    }

    /// The timeout used while samples are too few.
    pub fn fallback(&self) -> Duration {
        self.fallback.unwrap_or(self.max)
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<AdaptiveTimeout, ConfigError> {
        AdaptiveTimeoutBuilder::from_config(self.clone()).build()
    }
}

/// Checks `0 < value < 1`, the range of a percentile.
pub(crate) fn open_unit(field: &str, value: f64) -> Result<(), ConfigError> {
    if !(value > 0.0 && value < 1.0) {
        return Err(ConfigError::new(
            field,
            format!("{value} is out of range"),
            "greater than 0 and less than 1",
        ));
    }
    Ok(())
}

/// Builds an [`AdaptiveTimeout`]; defaults as in [`AdaptiveTimeoutConfig`].
#[derive(Clone, Default)]
pub struct AdaptiveTimeoutBuilder {
    config: AdaptiveTimeoutConfig,
    clock: Option<Clock>,
    listener: Option<Listener>,
}

impl AdaptiveTimeoutBuilder {
    /// Starts from a config.
    pub fn from_config(config: AdaptiveTimeoutConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Sets the name used in events and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the latency percentile the timeout follows.
    pub fn percentile(mut self, percentile: f64) -> Self {
        self.config.percentile = percentile;
        self
    }

    /// Sets the multiple of the percentile.
    pub fn factor(mut self, factor: f64) -> Self {
        self.config.factor = factor;
        self
    }

    /// Sets the shortest and the longest timeout.
    pub fn bounds(mut self, min: Duration, max: Duration) -> Self {
        self.config.min = min;
        self.config.max = max;
        self
    }

    /// Sets how long a latency counts.
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// Sets the samples needed before the percentile is used.
    pub fn min_samples(mut self, samples: u32) -> Self {
        self.config.min_samples = samples;
        self
    }

    /// Sets the timeout used while samples are too few.
    pub fn fallback(mut self, fallback: Duration) -> Self {
        self.config.fallback = Some(fallback);
        self
    }

    /// Measures latencies on `clock` (tokio's by default).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event::TimedOut`] whenever the timeout fires.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<AdaptiveTimeout, ConfigError> {
        self.config.validate()?;
        Ok(AdaptiveTimeout::from_parts(
            &self.config,
            self.clock.unwrap_or_default(),
            self.listener,
        ))
    }
}

crate::settings::settings_method!(AdaptiveTimeoutBuilder);
