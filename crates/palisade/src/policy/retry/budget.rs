//! A retry budget shared across calls: retries may add at most a fixed share of load.
//!
//! Like Finagle's and linkerd's: every call *deposits* `ratio` of a token, every retry
//! *withdraws* one, and a reserve of `min_per_second × window` tokens lets a quiet
//! service still retry. Deposits and withdrawals expire after `window`. Within any
//! window, retries therefore stay below `ratio × calls + min_per_second × window`, so a
//! fleet whose dependency is down sends at most `1 + ratio` times its normal load instead
//! of `max_attempts` times.
//!
//! Counts live in a lock-free [bucket ring](crate::window) of 10 buckets. Concurrent
//! withdrawals that race for the last token may both succeed; the overshoot is bounded
//! by the number of threads racing at that instant.
//!
//! ```
//! use std::time::Duration;
//! use palisade::policy::retry::{RetryBudget, RetryBudgetConfig};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let budget = RetryBudget::new(&RetryBudgetConfig { ratio: 0.1, min_per_second: 0, window: Duration::from_secs(10) }).unwrap();
//! for _ in 0..20 { budget.deposit(); }
//! assert!(budget.try_withdraw());
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw(), "20 calls × 0.1 = 2 retries");
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{ConfigError, in_range};
use crate::window::BucketRing;

const BUCKETS: u32 = 10;
const MILLI: u64 = 1000;

/// Settings of a [`RetryBudget`] (defaults as linkerd's).
///
/// | field | default | why |
/// |---|---|---|
/// | `ratio` | `0.2` | retries add at most 20% load |
/// | `min_per_second` | `10` | a low-traffic service can still retry |
/// | `window` | `10s` | long enough to smooth bursts, short enough to recover quickly |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries allowed per call, 0 to 10.
    pub ratio: f64,
    /// Retries per second allowed regardless of traffic, 0 to 1,000,000.
    pub min_per_second: u32,
    /// How long deposits and withdrawals count, 1 s to 10 min.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("ratio", self.ratio, 0.0, 10.0)?;
        in_range("min_per_second", self.min_per_second, 0, 1_000_000)?;
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "window",
                format!("{:?} is out of range", self.window),
                "1s to 10min",
            ));
        }
        Ok(())
    }
}

/// A retry budget; clones share it, and one budget may serve many retry policies.
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    /// `a` = deposits (calls), `b` = withdrawals (retries).
    ring: BucketRing,
    ratio_milli: u64,
    reserve_milli: u64,
    clock: Clock,
}

impl RetryBudget {
    /// A budget on tokio's clock.
    pub fn new(config: &RetryBudgetConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Clock::tokio())
    }

    /// A budget on `clock`.
    pub fn with_clock(config: &RetryBudgetConfig, clock: Clock) -> Result<Self, ConfigError> {
        config.validate()?;
        let window_secs = config.window.as_secs_f64();
        Ok(Self {
            shared: Arc::new(Shared {
                ring: BucketRing::new(BUCKETS as usize, config.window / BUCKETS),
                ratio_milli: (config.ratio * MILLI as f64).round() as u64,
                reserve_milli: (f64::from(config.min_per_second) * window_secs * MILLI as f64)
                    as u64,
                clock,
            }),
        })
    }

    /// Counts one call.
    #[inline]
    pub fn deposit(&self) {
        self.shared.ring.add(self.shared.clock.now(), 1, 0);
    }

    /// Takes one retry from the budget if it has one.
    pub fn try_withdraw(&self) -> bool {
        let now = self.shared.clock.now();
        if self.balance_milli(now) < MILLI {
            return false;
        }
        self.shared.ring.add(now, 0, 1);
        true
    }

    /// Whole retries available now.
    pub fn available(&self) -> u64 {
        self.balance_milli(self.shared.clock.now()) / MILLI
    }

    fn balance_milli(&self, now: u64) -> u64 {
        let (deposits, withdrawals) = self.shared.ring.sum(now);
        let earned = self.shared.reserve_milli + deposits.saturating_mul(self.shared.ratio_milli);
        earned.saturating_sub(withdrawals.saturating_mul(MILLI))
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("available", &self.available())
            .finish()
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    proptest::proptest! {
        /// At every accepted retry at time t: retries in (t − window + bucket, t] ≤
        /// ratio × calls in [t − window, t] + min_per_second × window.
        #[test]
        fn retries_never_exceed_ratio_plus_floor(
            ratio in 0.0f64..1.0,
            min_per_second in 0u32..5,
            steps in proptest::collection::vec((0u64..300, proptest::bool::ANY), 1..400),
        ) {
            let config = RetryBudgetConfig { ratio, min_per_second, window: Duration::from_secs(1) };
            let (clock, hand) = Clock::manual();
            let budget = RetryBudget::with_clock(&config, clock).unwrap();
            let mut now_ms = 0u64;
            let mut calls = Vec::new();
            let mut retries = Vec::new();
            for (gap, is_call) in steps {
                hand.advance(Duration::from_millis(gap));
                now_ms += gap;
                if is_call {
                    budget.deposit();
                    calls.push(now_ms);
                } else if budget.try_withdraw() {
                    retries.push(now_ms);
                    let window = 1000;
                    let bucket = 100;
                    let recent_retries = retries.iter().filter(|&&r| r + window - bucket > now_ms).count() as f64;
                    let recent_calls = calls.iter().filter(|&&c| c + window >= now_ms).count() as f64;
                    // The budget counts the ratio in thousandths.
                    let effective_ratio = (ratio * 1000.0).round() / 1000.0;
                    let allowed = effective_ratio * recent_calls + f64::from(min_per_second) + 1e-9;
                    proptest::prop_assert!(recent_retries <= allowed,
                        "{recent_retries} retries > {ratio} × {recent_calls} + {min_per_second}");
                }
            }
        }
    }

    #[test]
    fn a_quiet_service_still_gets_its_floor() {
        let (clock, hand) = Clock::manual();
        let config = RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 2,
            window: Duration::from_secs(10),
        };
        let budget = RetryBudget::with_clock(&config, clock).unwrap();
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 20, "2/s over a 10 s window");
        hand.advance(Duration::from_secs(11));
        assert_eq!(budget.available(), 20, "withdrawals expire with the window");
    }
}
