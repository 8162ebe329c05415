//! Validation errors shared by every policy's configuration.
//!
//! Every policy has a serde config struct (durations written as `"250ms"`, `"5s"`) whose
//! `build()` validates it. A nonsense value never becomes a policy: it becomes a
//! [`ConfigError`] that names the field, says what is wrong and what is allowed.
//!
//! ```
//! use palisade::policy::circuit_breaker::CircuitBreakerConfig;
//! let config: CircuitBreakerConfig = toml::from_str("failure_rate = 1.5").unwrap();
//! let err = config.build().unwrap_err();
//! assert_eq!(err.field, "failure_rate");
//! assert_eq!(err.to_string(), "failure_rate: 1.5 is out of range; allowed: greater than 0 and at most 1");
//! ```

use std::fmt::Display;
use std::time::Duration;

/// A configuration value that cannot make a working policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}; allowed: {allowed}")]
pub struct ConfigError {
    /// The field, as written in the config (`retry.max_attempts`).
    pub field: String,
    /// What is wrong with the value.
    pub problem: String,
    /// What would be accepted.
    pub allowed: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(
        field: impl Into<String>,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }

    /// Prefixes the field with the section it sits in (`retry` + `base` → `retry.base`).
    pub fn within(mut self, section: &str) -> Self {
        self.field = format!("{section}.{}", self.field);
        self
    }
}

/// Checks `low <= value <= high` (and that a float is finite).
pub(crate) fn in_range<T>(field: &str, value: T, low: T, high: T) -> Result<(), ConfigError>
where
    T: PartialOrd + Display + Copy,
{
    // `!(a <= b)` rather than `a > b` so that NaN fails the check.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(value >= low && value <= high) {
        return Err(ConfigError::new(
            field,
            format!("{value} is out of range"),
            format!("{low} to {high}"),
        ));
    }
    Ok(())
}

/// Checks `0 < value <= 1`, the range of every rate and ratio threshold.
pub(crate) fn unit_rate(field: &str, value: f64) -> Result<(), ConfigError> {
    if !(value > 0.0 && value <= 1.0) {
        return Err(ConfigError::new(
            field,
            format!("{value} is out of range"),
            "greater than 0 and at most 1",
        ));
    }
    Ok(())
}

/// Checks that a duration is positive and at most `max`.
pub(crate) fn positive_duration(
    field: &str,
    value: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value.is_zero() || value > max {
        return Err(ConfigError::new(
            field,
            format!("{value:?} is out of range"),
            format!("more than 0 and at most {max:?}"),
        ));
    }
    Ok(())
}

/// A name for a policy when the config gives none.
pub(crate) const DEFAULT_NAME: &str = "default";

/// One day: the largest duration any policy accepts for a wait or a window.
pub(crate) const ONE_DAY: Duration = Duration::from_secs(86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_out_of_every_range() {
        assert!(in_range("x", f64::NAN, 0.0, 1.0).is_err());
        assert!(unit_rate("x", f64::NAN).is_err());
        assert!(unit_rate("x", 0.0).is_err());
        assert!(unit_rate("x", 1.0).is_ok());
    }

    #[test]
    fn errors_name_the_section() {
        let e = ConfigError::new("base", "0ns is too small", "more than 0").within("retry");
        assert_eq!(
            e.to_string(),
            "retry.base: 0ns is too small; allowed: more than 0"
        );
    }
}
