//! Configuration of the [`CircuitBreaker`](super::CircuitBreaker).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CircuitBreaker;
use crate::clock::Clock;
use crate::config::{ConfigError, DEFAULT_NAME, ONE_DAY, in_range, positive_duration, unit_rate};
use crate::events::{Event, Listener};

/// How the breaker judges the dependency's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// The last `size` calls.
    Count,
    /// The calls of the last `size` seconds, kept in `buckets` buckets.
    Time,
    /// `size` failures (or slow calls) in a row trip the breaker; a success resets.
    Consecutive,
}

/// Whether the breaker protects, only observes, or does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerMode {
    /// Trips and rejects.
    Normal,
    /// Runs the state machine and reports it, but never rejects a call: for trying a
    /// configuration on production traffic before enforcing it.
    MetricsOnly,
    /// Admits every call and records nothing.
    Disabled,
}

/// Settings of a [`CircuitBreaker`]. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `mode` | `normal` | |
/// | `window` | `count` | a count window reacts at the same speed at any traffic level |
/// | `size` | `100` | enough calls that a 50% rate is not noise |
/// | `buckets` | `10` | time window only: 1 s buckets for a 10 s window |
/// | `failure_rate` | `0.5` | a dependency failing half its calls is unusable |
/// | `minimum_calls` | `20` | no verdict on a handful of calls |
/// | `slow_call_duration` | off | slowness is judged only when you say what slow is |
/// | `slow_call_rate` | `1.0` | with a duration set: trip when every call in the window is slow |
/// | `open_for` | `5s` | long enough for a restart to begin, short enough to notice recovery |
/// | `max_open_for` | `60s` | a dependency that keeps failing probes is probed at least each minute |
/// | `open_backoff` | `2.0` | the wait doubles per `half_open_calls` probes failed in a row; once a probe has succeeded since the last close it stays `open_for` until the breaker closes |
/// | `open_jitter` | `0.1` | ±10% so that a fleet of breakers does not probe in lockstep |
/// | `half_open_calls` | `3` | probes admitted per half-open period |
/// | `half_open_concurrency` | `1` | probes in flight at once: one probe at a time cannot stampede |
/// | `half_open_successes` | `half_open_calls` | successful probes needed to close: every probe of the period |
/// | `max_half_open` | `30s` | a probe that never answers cannot keep the breaker half-open |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Name used in errors, events and metrics.
    pub name: String,
    /// Normal, metrics-only or disabled.
    pub mode: BreakerMode,
    /// Count, time or consecutive.
    pub window: WindowKind,
    /// Calls (count), seconds (time) or failures in a row (consecutive). 1 to 100,000.
    pub size: u32,
    /// Buckets of a time window, 1 to 600 (and at most one per 10 ms of window).
    pub buckets: u32,
    /// Failure rate that trips the breaker, greater than 0 and at most 1.
    pub failure_rate: f64,
    /// Calls in the window before any rate is judged; 1 to `size` (count window).
    pub minimum_calls: u32,
    /// A call at least this long is slow. Off when absent.
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Option<Duration>,
    /// Slow-call rate that trips the breaker, greater than 0 and at most 1.
    pub slow_call_rate: f64,
    /// Time open before the first probe. More than 0, at most 1 day.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Cap on the growing open time; at least `open_for`.
    #[serde(with = "humantime_serde")]
    pub max_open_for: Duration,
    /// Factor applied to the open time per `half_open_calls` probes failed in a row
    /// (none once a probe has succeeded since the last close), 1 to 100.
    pub open_backoff: f64,
    /// Random spread of the open time, as a fraction: 0 to 1.
    pub open_jitter: f64,
    /// Probes admitted per half-open period, 1 to 1000.
    pub half_open_calls: u32,
    /// Probes in flight at once, 1 to `half_open_calls`.
    pub half_open_concurrency: u32,
    /// Successful probes that close the breaker, 1 to `half_open_calls`; absent: all of
    /// them (`half_open_calls`).
    pub half_open_successes: Option<u32>,
    /// Longest time in half-open before unanswered probes count as failed.
    #[serde(with = "humantime_serde")]
    pub max_half_open: Duration,
    /// Seed for the open-time jitter; random when absent.
    pub seed: Option<u64>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            mode: BreakerMode::Normal,
            window: WindowKind::Count,
            size: 100,
            buckets: 10,
            failure_rate: 0.5,
            minimum_calls: 20,
            slow_call_duration: None,
            slow_call_rate: 1.0,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
            open_backoff: 2.0,
            open_jitter: 0.1,
            half_open_calls: 3,
            half_open_concurrency: 1,
            half_open_successes: None,
            max_half_open: Duration::from_secs(30),
            seed: None,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("size", self.size, 1, 100_000)?;
        if self.window == WindowKind::Time {
            in_range("buckets", self.buckets, 1, 600)?;
            if u64::from(self.size) * 100 < u64::from(self.buckets) {
                return Err(ConfigError::new(
                    "buckets",
                    format!(
                        "{} buckets over {} s are narrower than 10 ms",
                        self.buckets, self.size
                    ),
                    "at most 100 buckets per second of window",
                ));
            }
        }
        unit_rate("failure_rate", self.failure_rate)?;
        if self.window == WindowKind::Count {
            in_range("minimum_calls", self.minimum_calls, 1, self.size)?;
        } else {
            in_range("minimum_calls", self.minimum_calls, 1, u32::MAX)?;
        }
        if let Some(slow) = self.slow_call_duration {
            positive_duration("slow_call_duration", slow, ONE_DAY)?;
        }
        unit_rate("slow_call_rate", self.slow_call_rate)?;
        positive_duration("open_for", self.open_for, ONE_DAY)?;
        if self.max_open_for < self.open_for || self.max_open_for > ONE_DAY {
            return Err(ConfigError::new(
                "max_open_for",
                format!("{:?} is out of range", self.max_open_for),
                format!("at least open_for ({:?}) and at most 1 day", self.open_for),
            ));
        }
        in_range("open_backoff", self.open_backoff, 1.0, 100.0)?;
        in_range("open_jitter", self.open_jitter, 0.0, 1.0)?;
        in_range("half_open_calls", self.half_open_calls, 1, 1000)?;
        in_range(
            "half_open_concurrency",
            self.half_open_concurrency,
            1,
            self.half_open_calls,
        )?;
        if let Some(successes) = self.half_open_successes {
            in_range("half_open_successes", successes, 1, self.half_open_calls)?;
        }
        positive_duration("max_half_open", self.max_half_open, ONE_DAY)?;
        Ok(())
    }

    /// Validates and builds the breaker on tokio's clock.
    pub fn build(&self) -> Result<CircuitBreaker, ConfigError> {
        CircuitBreakerBuilder {
            config: self.clone(),
            ..CircuitBreakerBuilder::default()
        }
        .build()
    }
}

/// Builds a [`CircuitBreaker`]; every setting defaults as in [`CircuitBreakerConfig`].
#[derive(Clone, Default)]
pub struct CircuitBreakerBuilder {
    pub(super) config: CircuitBreakerConfig,
    pub(super) listener: Option<Listener>,
    pub(super) clock: Option<Clock>,
}

impl CircuitBreakerBuilder {
    /// Starts from a config (e.g. one read from a file).
    pub fn from_config(config: CircuitBreakerConfig) -> Self {
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

    /// Sets the mode.
    pub fn mode(mut self, mode: BreakerMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Judges the last `calls` calls.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.config.window = WindowKind::Count;
        self.config.size = calls;
        self
    }

    /// Judges the calls of the last `seconds` seconds, kept in `buckets` buckets.
    pub fn time_window(mut self, seconds: u32, buckets: u32) -> Self {
        self.config.window = WindowKind::Time;
        self.config.size = seconds;
        self.config.buckets = buckets;
        self
    }

    /// Trips after `failures` failures in a row.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.window = WindowKind::Consecutive;
        self.config.size = failures;
        self.config.minimum_calls = 1;
        self
    }

    /// Sets the failure rate that trips the breaker.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.config.failure_rate = rate;
        self
    }

    /// Sets the calls needed before any rate is judged.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Calls lasting at least `duration` are slow; `rate` of slow calls trips.
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.config.slow_call_duration = Some(duration);
        self.config.slow_call_rate = rate;
        self
    }

    /// Sets the first open time, its cap, the growth factor and the jitter.
    pub fn open_for(mut self, first: Duration, max: Duration, backoff: f64, jitter: f64) -> Self {
        self.config.open_for = first;
        self.config.max_open_for = max;
        self.config.open_backoff = backoff;
        self.config.open_jitter = jitter;
        self
    }

    /// Sets probes per half-open period, probes in flight, and successes to close.
    pub fn half_open(mut self, calls: u32, concurrency: u32, successes: u32) -> Self {
        self.config.half_open_calls = calls;
        self.config.half_open_concurrency = concurrency;
        self.config.half_open_successes = Some(successes);
        self
    }

    /// Sets the longest time the breaker stays half-open waiting for probes.
    pub fn max_half_open(mut self, max: Duration) -> Self {
        self.config.max_half_open = max;
        self
    }

    /// Seeds the open-time jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Uses `clock` instead of tokio's.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Receives an [`Event`] on every transition and rejection.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Sets the listener from a shared one.
    pub fn listener(mut self, listener: Option<Listener>) -> Self {
        self.listener = listener;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        Ok(CircuitBreaker::from_builder(self))
    }
}

crate::settings::settings_method!(CircuitBreakerBuilder);
