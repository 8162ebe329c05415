//! Configuration of [`Membership`](super::Membership).

use std::time::Duration;

use palisade::ConfigError;
use serde::{Deserialize, Serialize};

/// How often an instance beats and how long a beat counts. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `interval` | `500ms` | a count at most half a second old; one tiny script call per instance and interval |
/// | `expire_after` | `1.5s` | three missed beats: a dead instance's share returns to the others within 1.5 s, one slow beat does not drop a live one |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipConfig {
    /// Time between two heartbeats, 50 ms to 60 s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a heartbeat counts: at least twice `interval`, at most 10 min.
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            expire_after: Duration::from_millis(1500),
        }
    }
}

impl MembershipConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(50) || self.interval > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "interval",
                format!("{:?} is out of range", self.interval),
                "50ms to 60s",
            ));
        }
        if self.expire_after < self.interval * 2 || self.expire_after > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "expire_after",
                format!("{:?} is out of range", self.expire_after),
                format!(
                    "at least twice interval ({:?}) and at most 10min",
                    self.interval
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        MembershipConfig::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let fast = MembershipConfig {
            interval: Duration::from_millis(10),
            ..MembershipConfig::default()
        };
        assert_eq!(fast.validate().unwrap_err().field, "interval");
        let short = MembershipConfig {
            expire_after: Duration::from_millis(900),
            ..MembershipConfig::default()
        };
        assert_eq!(short.validate().unwrap_err().field, "expire_after");
    }
}
