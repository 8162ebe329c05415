//! One fleet limit ([`FleetLimit`]: a name and a quota, in the script's units) and one
//! limit as a request meets it ([`Check`]: the limit and, for a keyed limit, the key).

use std::sync::Arc;

use palisade::ConfigError;
use palisade::policy::rate_limit::Quota;

use crate::error::FleetError;

/// The most limits one decision may name.
pub const MAX_CHECKS: usize = 8;

/// The longest key a keyed check may carry, in bytes (longer client keys should be
/// hashed by the caller).
pub const MAX_KEY_BYTES: usize = 256;

/// The highest rate a fleet limit takes: the script counts whole microseconds.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;

/// A named rate limit shared by the fleet: `per_second` sustained, `burst` at once.
///
/// The script counts time in whole microseconds of the server's clock, so the emission
/// interval `T = 1/per_second` is rounded *up* to a whole microsecond: the limit never
/// admits more than its quota, and admits less by under 1% up to 10,000/s (exact for
/// every rate that divides 1,000,000).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetLimit {
    name: Arc<str>,
    quota: Quota,
    interval_micros: u64,
    tolerance_micros: u64,
}

impl FleetLimit {
    /// A limit named `name` (1 to 64 visible ASCII characters, none of `{`, `}`, `:`; the
    /// name is part of its Redis key) with `quota` (as [`Quota::validate`], and at most
    /// 1,000,000 per second).
    pub fn new(name: impl Into<String>, quota: Quota) -> Result<Self, ConfigError> {
        let name = name.into();
        check_name("name", &name, &['{', '}', ':'])?;
        quota.validate()?;
        if quota.per_second > MAX_PER_SECOND {
            return Err(ConfigError::new(
                "per_second",
                format!("{} is above what a fleet limit counts", quota.per_second),
                "more than 0 and at most 1000000 (whole microseconds)",
            ));
        }
        // validate() bounds the interval to a year and burst to 1,000,000, so these fit.
        let interval_micros = ((1e6 / quota.per_second).ceil() as u64).max(1);
        let tolerance_micros = interval_micros.saturating_mul(u64::from(quota.burst - 1));
        Ok(Self {
            name: name.into(),
            quota,
            interval_micros,
            tolerance_micros,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota as given.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// `T`, the emission interval, in whole microseconds (rounded up).
    pub fn interval_micros(&self) -> u64 {
        self.interval_micros
    }

    /// `τ = (burst − 1)·T`, in microseconds.
    pub fn tolerance_micros(&self) -> u64 {
        self.tolerance_micros
    }
}

/// One limit of a decision: a [`FleetLimit`] for everyone ([`Check::global`]) or per key
/// ([`Check::keyed`]: per client, per tenant).
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    pub(crate) limit: &'a FleetLimit,
    pub(crate) key: Option<&'a str>,
}

impl<'a> Check<'a> {
    /// The limit, one for every request that names it.
    pub fn global(limit: &'a FleetLimit) -> Self {
        Self { limit, key: None }
    }

    /// The limit, one per `key` (any bytes up to [`MAX_KEY_BYTES`]).
    pub fn keyed(limit: &'a FleetLimit, key: &'a str) -> Self {
        Self {
            limit,
            key: Some(key),
        }
    }

    /// The limit.
    pub fn limit(&self) -> &'a FleetLimit {
        self.limit
    }

    /// The key, for a keyed check.
    pub fn key(&self) -> Option<&'a str> {
        self.key
    }
}

/// Checks the calls's limits before anything is sent.
pub(crate) fn validate_checks(checks: &[Check<'_>]) -> Result<(), FleetError> {
    if checks.is_empty() {
        return Err(FleetError::InvalidCheck {
            reason: "a decision needs at least one limit",
        });
    }
    if checks.len() > MAX_CHECKS {
        return Err(FleetError::InvalidCheck {
            reason: "a decision names at most 8 limits",
        });
    }
    if checks
        .iter()
        .any(|c| c.key.is_some_and(|k| k.len() > MAX_KEY_BYTES))
    {
        return Err(FleetError::InvalidCheck {
            reason: "a key is longer than 256 bytes",
        });
    }
    Ok(())
}

/// Checks a name that becomes part of a Redis key: 1 to 64 visible ASCII characters,
/// none of `banned`.
pub(crate) fn check_name(field: &str, value: &str, banned: &[char]) -> Result<(), ConfigError> {
    let visible = value
        .chars()
        .all(|c| c.is_ascii_graphic() && !banned.contains(&c));
    if value.is_empty() || value.len() > 64 || !visible {
        let banned: String = banned.iter().collect();
        return Err(ConfigError::new(
            field,
            format!("{value:?} cannot be part of a Redis key"),
            format!("1 to 64 visible ASCII characters, none of {banned:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_whole_microseconds_rounded_up() {
        let l = FleetLimit::new("a", Quota::new(1000.0, 10)).unwrap();
        assert_eq!((l.interval_micros(), l.tolerance_micros()), (1000, 9000));
        let l = FleetLimit::new("a", Quota::new(3.0, 1)).unwrap();
        assert_eq!((l.interval_micros(), l.tolerance_micros()), (333_334, 0));
        let l = FleetLimit::new("a", Quota::new(1_000_000.0, 2)).unwrap();
        assert_eq!(l.interval_micros(), 1);
    }

    #[test]
    fn bad_limits_are_config_errors() {
        let q = Quota::new(10.0, 1);
        for name in ["", "a:b", "{a}", "a b", "é", &"x".repeat(65)] {
            assert_eq!(
                FleetLimit::new(name, q).unwrap_err().field,
                "name",
                "{name:?}"
            );
        }
        let fast = FleetLimit::new("a", Quota::new(2e6, 1)).unwrap_err();
        assert_eq!(fast.field, "per_second");
        assert_eq!(
            FleetLimit::new("a", Quota::new(10.0, 0)).unwrap_err().field,
            "burst"
        );
        assert_eq!(
            FleetLimit::new("a", Quota::new(f64::NAN, 1))
                .unwrap_err()
                .field,
            "per_second"
        );
    }

    #[test]
    fn checks_are_bounded() {
        let l = FleetLimit::new("a", Quota::new(10.0, 1)).unwrap();
        assert!(validate_checks(&[]).is_err());
        assert!(validate_checks(&[Check::global(&l); 9]).is_err());
        assert!(validate_checks(&[Check::global(&l); 8]).is_ok());
        let long = "k".repeat(257);
        assert!(validate_checks(&[Check::keyed(&l, &long)]).is_err());
        assert!(validate_checks(&[Check::keyed(&l, &long[..256])]).is_ok());
    }
}
