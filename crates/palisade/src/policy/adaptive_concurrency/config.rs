//! Configuration of [`AdaptiveConcurrency`](super::AdaptiveConcurrency).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::algorithm::AlgorithmConfig;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range, positive_duration};
use crate::criticality::Criticality;

/// A share of the limit reserved for one criticality class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// The class.
    pub criticality: Criticality,
    /// Its reserved share of the limit, in (0, 1].
    pub share: f64,
}

/// Settings of an adaptive concurrency limiter.
///
/// | field | default | why |
/// |---|---|---|
/// | `algorithm` | `vegas` | reacts to latency with no drop signal and no known RTT, and keeps the queue it lets build at the dependency small and bounded |
/// | `initial_limit` | `20` | a safe start; the algorithm finds the real one within seconds |
/// | `min_limit` | `1` | never refuse everything |
/// | `max_limit` | `1000` | a bound on how wrong it can be upwards |
/// | `max_queue` | `0` | beyond the limit, reject at once (the limit *is* the backpressure) |
/// | `queue_timeout` | `100ms` | when a queue is configured |
/// | `partitions` | none | reserve capacity per criticality class |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConcurrencyConfig {
    /// Name used in errors, events and metrics.
    pub name: String,
    /// How the limit moves.
    pub algorithm: AlgorithmConfig,
    /// The limit before any sample, `min_limit` to `max_limit`.
    pub initial_limit: u32,
    /// The lowest limit, at least 1.
    pub min_limit: u32,
    /// The highest limit, at most 1,000,000.
    pub max_limit: u32,
    /// Calls waiting beyond the limit, 0 to 1,000,000 (0 with partitions).
    pub max_queue: usize,
    /// Longest wait in the queue.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Reserved shares per class; they sum to at most 1.
    pub partitions: Vec<PartitionConfig>,
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            algorithm: AlgorithmConfig::default(),
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            max_queue: 0,
            queue_timeout: Duration::from_millis(100),
            partitions: Vec::new(),
        }
    }
}

impl AdaptiveConcurrencyConfig {
    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("max_limit", self.max_limit, 1, 1_000_000)?;
        in_range("min_limit", self.min_limit, 1, self.max_limit)?;
        in_range(
            "initial_limit",
            self.initial_limit,
            self.min_limit,
            self.max_limit,
        )?;
        in_range("max_queue", self.max_queue, 0, 1_000_000)?;
        if self.max_queue > 0 {
            positive_duration("queue_timeout", self.queue_timeout, ONE_DAY)?;
        }
        self.validate_algorithm()
            .map_err(|e| e.within("algorithm"))?;
        let mut total = 0.0;
        for (i, p) in self.partitions.iter().enumerate() {
            in_range(
                &format!("partitions[{i}].share"),
                p.share,
                f64::MIN_POSITIVE,
                1.0,
            )?;
            if self.partitions[..i]
                .iter()
                .any(|q| q.criticality == p.criticality)
            {
                return Err(ConfigError::new(
                    format!("partitions[{i}].criticality"),
                    format!("{} appears twice", p.criticality.as_str()),
                    "one partition per class",
                ));
            }
            total += p.share;
        }
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "partitions",
                format!("shares sum to {total}"),
                "at most 1",
            ));
        }
        if !self.partitions.is_empty() && self.max_queue > 0 {
            return Err(ConfigError::new(
                "max_queue",
                "is above 0 with partitions",
                "0 when partitions are set",
            ));
        }
        Ok(())
    }

    fn validate_algorithm(&self) -> Result<(), ConfigError> {
        match self.algorithm {
            AlgorithmConfig::Aimd {
                backoff_ratio,
                latency_threshold,
            } => {
                in_range("backoff_ratio", backoff_ratio, 0.01, 0.99)?;
                if let Some(t) = latency_threshold {
                    positive_duration("latency_threshold", t, ONE_DAY)?;
                }
            }
            AlgorithmConfig::Vegas {
                alpha,
                beta,
                baseline_window,
            } => {
                in_range("alpha", alpha, 0.1, 100.0)?;
                in_range("beta", beta, alpha, 100.0)?;
                positive_duration("baseline_window", baseline_window, ONE_DAY)?;
            }
            AlgorithmConfig::Gradient2 {
                tolerance,
                long_window,
                queue_size,
                smoothing,
                baseline_cap,
                baseline_window,
            } => {
                in_range("tolerance", tolerance, 1.0, 10.0)?;
                in_range("long_window", long_window, 1, 1_000_000)?;
                in_range("queue_size", queue_size, 0.0, 1000.0)?;
                in_range("smoothing", smoothing, 0.01, 1.0)?;
                in_range("baseline_cap", baseline_cap, 1.0, 100.0)?;
                positive_duration("baseline_window", baseline_window, ONE_DAY)?;
            }
        }
        Ok(())
    }
}

/// Builds a [`AdaptiveConcurrency`](super::AdaptiveConcurrency) step by step; see [`AdaptiveConcurrencyConfig`] for defaults.
#[derive(Clone, Default)]
pub struct AdaptiveConcurrencyBuilder {
    config: AdaptiveConcurrencyConfig,
    clock: Option<crate::clock::Clock>,
    listener: Option<crate::events::Listener>,
}

// === impl AdaptiveConcurrencyBuilder ===

impl AdaptiveConcurrencyBuilder {
    /// Starts from a config.
    pub fn from_config(config: AdaptiveConcurrencyConfig) -> Self {
        Self {
            config,
            clock: None,
            listener: None,
        }
    }

    /// Validates and builds.
    pub fn build(self) -> Result<super::AdaptiveConcurrency, ConfigError> {
        let clock = self.clock.unwrap_or_else(crate::clock::Clock::tokio);
        super::AdaptiveConcurrency::from_parts(self.config, clock, self.listener)
    }
}

crate::settings::builder_methods!(AdaptiveConcurrencyBuilder);
