//! A rate limit's quota: calls per second and burst.

use serde::{Deserialize, Serialize};

use super::gcra::Cell;
use crate::config::{ConfigError, in_range};

/// Calls per second and how many may come at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Sustained calls per second; more than 0 and at most 1,000,000,000
    /// (fractions allowed: `0.5` is one call every two seconds).
    pub per_second: f64,
    /// Calls admitted at once from idle, 1 to 1,000,000.
    pub burst: u32,
}

impl Quota {
    /// `per_second` calls per second with a burst of `burst`.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// Checks both fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.per_second > 0.0 && self.per_second <= 1e9) {
            return Err(ConfigError::new(
                "per_second",
                format!("{} is out of range", self.per_second),
                "more than 0 and at most 1000000000",
            ));
        }
        in_range("burst", self.burst, 1, 1_000_000)?;
        // One call per at most a year keeps every product within u64 nanoseconds.
        if 1.0 / self.per_second > 31_536_000.0 {
            return Err(ConfigError::new(
                "per_second",
                format!("{} is slower than one call a year", self.per_second),
                "at least 0.0000000317 (one call a year)",
            ));
        }
        Ok(())
    }

    pub(crate) fn cell(&self) -> Cell {
        let interval = ((1e9 / self.per_second).round() as u64).max(1);
        Cell {
            interval,
            tolerance: interval.saturating_mul(u64::from(self.burst.saturating_sub(1))),
        }
    }
}

impl Default for Quota {
    fn default() -> Self {
        Self::new(1000.0, 100)
    }
}
