//! Configuration of the [`Retry`](super::Retry) policy.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Backoff, BackoffKind, Jitter, Retry, RetryBudget, RetryBudgetConfig};
use crate::clock::Clock;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range, positive_duration};
use crate::events::{Event, Listener};

/// Settings of a [`Retry`]. Defaults, and why (resilience4j and Polly beside them):
///
/// | field | default | resilience4j | Polly v8 | why |
/// |---|---|---|---|---|
/// | `max_attempts` | `3` | 3 | 4 (3 retries) | two retries catch most transient faults; more multiplies load |
/// | `backoff` | `exponential` | fixed | constant | spreads retries out as trouble lasts |
/// | `base` | `50ms` | 500ms | 2s | a quick first retry for a blip |
/// | `multiplier` | `2.0` | 1.5 (exp.) | 2 (exp.) | doubling is the usual curve |
/// | `max_delay` | `5s` | — | 30s | no caller waits longer than this between attempts |
/// | `jitter` | `full` | off | off | AWS: full jitter spreads a herd best |
/// | `jitter_factor` | `0.2` | 0.5 | — | for `proportional` only |
/// | `max_retry_after` | `10s` | — | honours any | a `Retry-After` hint is followed up to this |
/// | `max_elapsed` | none | none | none | use a `Timeout` or deadline for a total budget |
/// | `budget` | none | none | none | opt-in: share one [`RetryBudget`] across calls |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Name used in events and metrics.
    pub name: String,
    /// Attempts including the first, 1 to 100.
    pub max_attempts: u32,
    /// The delay curve.
    pub backoff: BackoffKind,
    /// First delay; more than 0 and at most `max_delay`.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Growth factor for exponential backoff, 1 to 100.
    pub multiplier: f64,
    /// Cap on every delay, jitter included; at least `base`, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// The spread over the curve.
    pub jitter: Jitter,
    /// `f` for proportional jitter: greater than 0, at most 1.
    pub jitter_factor: f64,
    /// Longest `Retry-After` hint followed; 0 to 1 day.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Give up when the next attempt would start later than this after the first.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Option<Duration>,
    /// Seed for jitter; random when absent.
    pub seed: Option<u64>,
    /// A retry budget for this policy alone (share one with [`RetryBuilder::budget`]).
    pub budget: Option<RetryBudgetConfig>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            max_attempts: 3,
            backoff: BackoffKind::Exponential,
            base: Duration::from_millis(50),
            multiplier: 2.0,
            max_delay: Duration::from_secs(5),
            jitter: Jitter::Full,
            jitter_factor: 0.2,
            max_retry_after: Duration::from_secs(10),
            max_elapsed: None,
            seed: None,
            budget: None,
        }
    }
}

impl RetryConfig {
    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("max_attempts", self.max_attempts, 1, 100)?;
        positive_duration("max_delay", self.max_delay, ONE_DAY)?;
        positive_duration("base", self.base, self.max_delay).map_err(|_| {
            ConfigError::new(
                "base",
                format!("{:?} is out of range", self.base),
                format!("more than 0 and at most max_delay ({:?})", self.max_delay),
            )
        })?;
        in_range("multiplier", self.multiplier, 1.0, 100.0)?;
        if !(self.jitter_factor > 0.0 && self.jitter_factor <= 1.0) {
            return Err(ConfigError::new(
                "jitter_factor",
                format!("{} is out of range", self.jitter_factor),
                "greater than 0 and at most 1",
            ));
        }
        if self.max_retry_after > ONE_DAY {
            return Err(ConfigError::new(
                "max_retry_after",
                format!("{:?} is out of range", self.max_retry_after),
                "0 to 1 day",
            ));
        }
        if let Some(max) = self.max_elapsed {
            positive_duration("max_elapsed", max, ONE_DAY)?;
        }
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|e| e.within("budget"))?;
        }
        Ok(())
    }

    /// The backoff curve these settings describe.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            kind: self.backoff,
            base: self.base,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            jitter: self.jitter,
            jitter_factor: self.jitter_factor,
        }
    }

    /// Validates and builds.
    pub fn build(&self) -> Result<Retry, ConfigError> {
        RetryBuilder {
            config: self.clone(),
            ..RetryBuilder::default()
        }
        .build()
    }
}

/// Builds a [`Retry`]; defaults as in [`RetryConfig`].
#[derive(Clone, Default)]
pub struct RetryBuilder {
    pub(super) config: RetryConfig,
    pub(super) budget: Option<RetryBudget>,
    pub(super) listener: Option<Listener>,
    pub(super) clock: Option<Clock>,
}

impl RetryBuilder {
    /// Starts from a config.
    pub fn from_config(config: RetryConfig) -> Self {
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

    /// Sets attempts including the first.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// Sets the curve, its first delay and its cap.
    pub fn backoff(mut self, kind: BackoffKind, base: Duration, max_delay: Duration) -> Self {
        self.config.backoff = kind;
        self.config.base = base;
        self.config.max_delay = max_delay;
        self
    }

    /// Sets the exponential growth factor.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.config.multiplier = multiplier;
        self
    }

    /// Sets the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Sets the factor of proportional jitter.
    pub fn jitter_factor(mut self, factor: f64) -> Self {
        self.config.jitter_factor = factor;
        self
    }

    /// Sets the longest `Retry-After` hint followed.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Gives up when the next attempt would start later than `max` after the first.
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.config.max_elapsed = Some(max);
        self
    }

    /// Seeds the jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Charges retries to `budget`, which other policies may share.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Uses `clock` for the budget (when built from the config) and elapsed time.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives [`Event::Retry`], [`Event::RetryBudgetExhausted`] and
    /// [`Event::RetriesExhausted`].
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Retry, ConfigError> {
        self.config.validate()?;
        let clock = self.clock.unwrap_or_default();
        let budget = match (self.budget, &self.config.budget) {
            (Some(shared), _) => Some(shared),
            (None, Some(config)) => Some(RetryBudget::with_clock(config, clock.clone())?),
            (None, None) => None,
        };
        Ok(Retry::from_parts(self.config, budget, clock, self.listener))
    }
}

crate::settings::settings_method!(RetryBuilder);
