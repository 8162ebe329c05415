//! Configuration of the [`Hedge`](super::Hedge) policy.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Hedge;
use crate::clock::Clock;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range};
use crate::events::{Event, Listener};
use crate::policy::adaptive_timeout::open_unit;
use crate::policy::retry::{RetryBudget, RetryBudgetConfig};

/// Settings of a [`Hedge`].
///
/// | field | default | why |
/// |---|---|---|
/// | `name` | `"default"` | labels events and metrics |
/// | `delay` | `100ms` | the fixed delay, and the delay while learning: slow for most RPCs, so hedging starts cautiously |
/// | `learn` | `true` | the delay follows the dependency instead of a guess |
/// | `percentile` | `0.95` | hedge the slowest 5% ("The Tail at Scale"): about 5% extra load for most of the tail |
/// | `min_samples` | `100` | a p95 of fewer calls is mostly noise |
/// | `window` | `30s` | recent enough to follow a change, long enough for a stable p95; also the cap's window |
/// | `max_extra_load` | `0.1` | hedges add at most 10% to the calls, even when every call is slow |
/// | `idempotent_only` | `true` | sending a request twice is safe only when the caller says so |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// Name used in events and metrics.
    pub name: String,
    /// The hedge delay when not learning, and while learning has too few samples:
    /// 0 to 1 day (0 sends both attempts at once).
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Learn the delay from this policy's first-attempt latencies.
    pub learn: bool,
    /// The learned delay is this percentile of first-attempt latency: greater than 0,
    /// less than 1.
    pub percentile: f64,
    /// Latencies in the window before the learned delay is used: 1 to 1,000,000.
    pub min_samples: u32,
    /// How long a latency, a call and a hedge count: 1 s to 10 min.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Hedges allowed per hedge-eligible call over the window: 0 to 1.
    pub max_extra_load: f64,
    /// Hedge only calls marked idempotent (see [`idempotent`](super::idempotent)).
    pub idempotent_only: bool,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            delay: Duration::from_millis(100),
            learn: true,
            percentile: 0.95,
            min_samples: 100,
            window: Duration::from_secs(30),
            max_extra_load: 0.1,
            idempotent_only: true,
        }
    }
}

impl HedgeConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.delay > ONE_DAY {
            return Err(ConfigError::new(
                "delay",
                format!("{:?} is out of range", self.delay),
                "0 to 1 day",
            ));
        }
        open_unit("percentile", self.percentile)?;
        in_range("min_samples", self.min_samples, 1, 1_000_000)?;
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "window",
                format!("{:?} is out of range", self.window),
                "1s to 10min",
            ));
        }
        in_range("max_extra_load", self.max_extra_load, 0.0, 1.0)
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<Hedge, ConfigError> {
        HedgeBuilder::from_config(self.clone()).build()
    }
}

/// Builds a [`Hedge`]; defaults as in [`HedgeConfig`].
#[derive(Clone, Default)]
pub struct HedgeBuilder {
    config: HedgeConfig,
    budget: Option<RetryBudget>,
    clock: Option<Clock>,
    listener: Option<Listener>,
}

impl HedgeBuilder {
    /// Starts from a config.
    pub fn from_config(config: HedgeConfig) -> Self {
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

    /// Sets the fixed delay (also used while learning has too few samples).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.config.delay = delay;
        self
    }

    /// Learns the delay from first-attempt latencies, or not.
    pub fn learn(mut self, learn: bool) -> Self {
        self.config.learn = learn;
        self
    }

    /// Sets the percentile the learned delay follows.
    pub fn percentile(mut self, percentile: f64) -> Self {
        self.config.percentile = percentile;
        self
    }

    /// Sets the samples needed before the learned delay is used.
    pub fn min_samples(mut self, samples: u32) -> Self {
        self.config.min_samples = samples;
        self
    }

    /// Sets how long latencies, calls and hedges count.
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// Sets the hedges allowed per hedge-eligible call.
    pub fn max_extra_load(mut self, ratio: f64) -> Self {
        self.config.max_extra_load = ratio;
        self
    }

    /// Hedges only calls marked idempotent (`true`), or every call.
    pub fn idempotent_only(mut self, only: bool) -> Self {
        self.config.idempotent_only = only;
        self
    }

    /// Charges hedges to `budget` too, which retries may share. The hedge withdraws
    /// from it but does not deposit: the retry policy sharing it does.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Measures latencies and counts the cap on `clock` (tokio's by default).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event::Hedged`] for every hedge sent.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Hedge, ConfigError> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_default();
        let cap = RetryBudget::with_clock(
            &RetryBudgetConfig {
                ratio: self.config.max_extra_load,
                min_per_second: 0,
                window: self.config.window,
            },
            clock.clone(),
        )
        .map_err(|e| e.within("max_extra_load"))?;
        Ok(Hedge::from_parts(
            &self.config,
            cap,
            self.budget,
            clock,
            self.listener,
        ))
    }
}

crate::settings::settings_method!(HedgeBuilder);
