//! Configuration of [`FaultInjection`](super::FaultInjection).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range};

/// Settings of fault injection. Off unless `enabled`.
///
/// | field | default | why |
/// |---|---|---|
/// | `enabled` | `false` | chaos is switched on deliberately, never by accident |
/// | `error_rate` | `0` | share of calls answered by the injected outcome instead of running |
/// | `latency_rate` | `0` | share of calls delayed by `latency` before running |
/// | `latency` | `0s` | the injected delay |
/// | `degrade_rate` | `0` | share of calls that run and whose result the caller degrades (a slowed or cut response body, say); the fault is in progress for as long as the degradation lasts |
/// | `max_concurrent` | `1000` | injected faults in progress at once; beyond it calls run untouched, so an experiment cannot pile up unbounded delayed calls |
/// | `seed` | random | reproducible experiments and tests |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Name used in events and metrics.
    pub name: String,
    /// Whether faults are injected at all.
    pub enabled: bool,
    /// Share of calls that get the injected outcome, 0 to 1.
    pub error_rate: f64,
    /// Share of calls delayed first, 0 to 1.
    pub latency_rate: f64,
    /// The injected delay, 0 to 1 day.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Share of calls that run and have their result degraded, 0 to 1.
    pub degrade_rate: f64,
    /// Injected faults in progress at once, 1 to 1,000,000.
    pub max_concurrent: usize,
    /// Seed of the dice.
    pub seed: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            enabled: false,
            error_rate: 0.0,
            latency_rate: 0.0,
            latency: Duration::ZERO,
            degrade_rate: 0.0,
            max_concurrent: 1000,
            seed: None,
        }
    }
}

impl FaultConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("error_rate", self.error_rate, 0.0, 1.0)?;
        in_range("latency_rate", self.latency_rate, 0.0, 1.0)?;
        in_range("degrade_rate", self.degrade_rate, 0.0, 1.0)?;
        if self.latency > ONE_DAY {
            return Err(ConfigError::new(
                "latency",
                format!("{:?} is out of range", self.latency),
                "0 to 1 day",
            ));
        }
        in_range("max_concurrent", self.max_concurrent, 1, 1_000_000)
    }
}
