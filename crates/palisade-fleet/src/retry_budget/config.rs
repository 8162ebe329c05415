//! Configuration of the [`FleetRetryBudget`](super::FleetRetryBudget).

use std::time::Duration;

use palisade::ConfigError;
use palisade::policy::retry::RetryBudgetConfig;
use serde::{Deserialize, Serialize};

/// Settings of a [`FleetRetryBudget`](super::FleetRetryBudget): the local budget's three
/// (for the whole fleet) and two of the exchange with Redis. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `ratio` | `0.2` | retries (and hedges) add at most 20% to the fleet's calls, as the local budget's |
/// | `min_per_second` | `10` | the fleet's one floor: a quiet upstream can still be retried, and adding instances does not add floors |
/// | `window` | `10s` | long enough to smooth bursts, short enough to recover quickly; whole seconds, the server's counting unit |
/// | `grant` | `1` | each instance holds this many tokens ahead, so a retry never waits for Redis; the fleet may exceed its bound by `instances × grant`, so keep it small |
/// | `flush_every` | `100ms` | calls reach the server at most this late (a tenth of a second of deposits on either side of a window), for one tiny script call per instance and interval |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetRetryBudgetConfig {
    /// Retries allowed per call of the fleet, 0 to 10.
    pub ratio: f64,
    /// Retries per second the whole fleet may make regardless of traffic, 0 to 1,000,000.
    pub min_per_second: u32,
    /// How long deposits and withdrawals count, 1 s to 10 min, in whole seconds.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Tokens an instance takes ahead of its retries, 1 to 1,000.
    pub grant: u32,
    /// Time between two exchanges with Redis (calls sent, grant topped up), 10 ms to 1 s.
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
}

impl Default for FleetRetryBudgetConfig {
    fn default() -> Self {
        let local = RetryBudgetConfig::default();
        Self {
            ratio: local.ratio,
            min_per_second: local.min_per_second,
            window: local.window,
            grant: 1,
            flush_every: Duration::from_millis(100),
        }
    }
}

impl FleetRetryBudgetConfig {
    /// Checks every field: the shared three as [`RetryBudgetConfig::validate`] does, the
    /// window in whole seconds too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.local_config(self.min_per_second).validate()?;
        if self.window.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "window",
                format!("{:?} is not whole seconds", self.window),
                "1s to 10min, in whole seconds",
            ));
        }
        if !(1..=1_000).contains(&self.grant) {
            return Err(ConfigError::new(
                "grant",
                format!("{} is out of range", self.grant),
                "1 to 1000",
            ));
        }
        if self.flush_every < Duration::from_millis(10) || self.flush_every > Duration::from_secs(1)
        {
            return Err(ConfigError::new(
                "flush_every",
                format!("{:?} is out of range", self.flush_every),
                "10ms to 1s",
            ));
        }
        Ok(())
    }

    /// A local budget's settings: these, with `min_per_second` replaced.
    pub(crate) fn local_config(&self, min_per_second: u32) -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio: self.ratio,
            min_per_second,
            window: self.window,
        }
    }

    /// The ratio in thousandths, as the local budget rounds it.
    pub(crate) fn ratio_milli(&self) -> u64 {
        (self.ratio * 1000.0).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: FleetRetryBudgetConfig) -> String {
        config.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid_and_the_local_budgets() {
        let config = FleetRetryBudgetConfig::default();
        config.validate().unwrap();
        assert_eq!(config.local_config(10), RetryBudgetConfig::default());
        assert_eq!((config.grant, config.ratio_milli()), (1, 200));
        assert_eq!(config.flush_every, Duration::from_millis(100));
    }

    #[test]
    fn bad_fields_are_named() {
        let base = FleetRetryBudgetConfig::default;
        for ratio in [-0.1, 10.5, f64::NAN] {
            assert_eq!(
                field_of(FleetRetryBudgetConfig { ratio, ..base() }),
                "ratio"
            );
        }
        let many = FleetRetryBudgetConfig {
            min_per_second: 1_000_001,
            ..base()
        };
        assert_eq!(field_of(many), "min_per_second");
        for window in [
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_millis(1500),
            Duration::from_secs(601),
        ] {
            assert_eq!(
                field_of(FleetRetryBudgetConfig { window, ..base() }),
                "window",
                "{window:?}"
            );
        }
        for grant in [0, 1001] {
            assert_eq!(
                field_of(FleetRetryBudgetConfig { grant, ..base() }),
                "grant"
            );
        }
        for flush_every in [Duration::from_millis(9), Duration::from_millis(1001)] {
            assert_eq!(
                field_of(FleetRetryBudgetConfig {
                    flush_every,
                    ..base()
                }),
                "flush_every"
            );
        }
        FleetRetryBudgetConfig {
            window: Duration::from_secs(600),
            grant: 1000,
            flush_every: Duration::from_secs(1),
            ..base()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn reads_from_toml() {
        let config: FleetRetryBudgetConfig =
            toml::from_str("ratio = 0.1\nwindow = \"30s\"\nflush_every = \"50ms\"").unwrap();
        assert_eq!(config.window, Duration::from_secs(30));
        assert_eq!(config.flush_every, Duration::from_millis(50));
        assert_eq!((config.min_per_second, config.grant), (10, 1));
        config.validate().unwrap();
        assert!(toml::from_str::<FleetRetryBudgetConfig>("grants = 2").is_err());
    }
}
