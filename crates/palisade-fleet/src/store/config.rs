//! Configuration of the [`RedisStore`](super::RedisStore).

use std::time::Duration;

use palisade::ConfigError;
use serde::{Deserialize, Serialize};

/// Where Redis is, how long a call to it may take, and when to stop asking it.
/// Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `url` | `redis://127.0.0.1:6379` | a Redis beside the service |
/// | `timeout` | `5ms` | a decision on loopback or in one zone takes well under 1 ms; a Redis slower than 5 ms is failing, and the request must not wait for it |
/// | `connect_timeout` | `1s` | connecting happens at start and after a loss, off the per-call budget |
/// | `breaker` | `{ failures = 3, open_for = "250ms" }` | see [`StoreBreakerConfig`] |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The server, `redis://[user:password@]host:port[/db]`. TLS (`rediss://`) is not
    /// built in yet.
    pub url: String,
    /// The longest one call (one decision) may take, from sending it to reading the
    /// answer; more than 0 and at most 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The longest connecting may take; more than 0 and at most 60 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The breaker around every call.
    pub breaker: StoreBreakerConfig,
}

/// The store's circuit breaker: after `failures` calls in a row that timed out or found
/// Redis unavailable, calls answer [`FleetError::CircuitOpen`](crate::FleetError) at once
/// for `open_for`, then one call probes Redis (success closes the breaker, failure opens
/// it for `open_for` again). Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `failures` | `3` | one lost packet or one slow call is not an outage; three in a row, at a 5 ms timeout, is 15 ms of requests that waited for nothing |
/// | `open_for` | `250ms` | fixed, never growing: one probe per 250 ms is nothing for Redis, and a fleet is back on shared counting within 250 ms (plus the probe) of Redis answering again, well within 1 s |
///
/// A malformed answer is not a failure here: Redis answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreBreakerConfig {
    /// Failed calls in a row (timeouts or unavailable) that open the breaker, 1 to 100.
    pub failures: u32,
    /// How long the breaker stays open before one call probes Redis; 10 ms to 10 s.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

/// The default of [`StoreConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            breaker: StoreBreakerConfig::default(),
        }
    }
}

impl StoreConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the breaker.
    #[must_use]
    pub fn breaker(mut self, breaker: StoreBreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Checks every field; a URL Redis's client cannot read is an error here, not at the
    /// first call.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.client()?;
        duration("timeout", self.timeout, Duration::from_secs(10))?;
        duration(
            "connect_timeout",
            self.connect_timeout,
            Duration::from_secs(60),
        )?;
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        Ok(())
    }

    /// The client for the URL.
    pub(crate) fn client(&self) -> Result<redis::Client, ConfigError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            ConfigError::new(
                "url",
                format!("{:?} is not a Redis URL ({e})", self.url),
                "redis://host:port[/db]",
            )
        })?;
        Ok(client)
    }
}

// === impl StoreBreakerConfig ===

impl Default for StoreBreakerConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            open_for: Duration::from_millis(250),
        }
    }
}

impl StoreBreakerConfig {
    /// Checks both fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.failures) {
            return Err(ConfigError::new(
                "failures",
                format!("{} is out of range", self.failures),
                "1 to 100 failed calls in a row",
            ));
        }
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(10));
        if self.open_for < min || self.open_for > max {
            return Err(ConfigError::new(
                "open_for",
                format!("{:?} is out of range", self.open_for),
                "10ms to 10s",
            ));
        }
        Ok(())
    }
}

fn duration(field: &str, value: Duration, max: Duration) -> Result<(), ConfigError> {
    if value.is_zero() || value > max {
        return Err(ConfigError::new(
            field,
            format!("{value:?} is out of range"),
            format!("more than 0 and at most {max:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let config = StoreConfig::default();
        assert_eq!(config.timeout, Duration::from_millis(5));
        assert_eq!(config.breaker.failures, 3);
        assert_eq!(config.breaker.open_for, Duration::from_millis(250));
        config.validate().unwrap();
    }

    #[test]
    fn a_bad_url_is_a_config_error() {
        for url in ["", "http://x", "redis://host:notaport", "nonsense"] {
            let err = StoreConfig::new(url).validate().unwrap_err();
            assert_eq!(err.field, "url", "{url}");
        }
    }

    #[test]
    fn timeouts_have_ranges() {
        let zero = StoreConfig::default().timeout(Duration::ZERO);
        assert_eq!(zero.validate().unwrap_err().field, "timeout");
        let long = StoreConfig::default().connect_timeout(Duration::from_secs(61));
        assert_eq!(long.validate().unwrap_err().field, "connect_timeout");
    }

    #[test]
    fn the_breaker_has_ranges() {
        let with = |failures, open_for| {
            StoreConfig::new("redis://127.0.0.1:6379")
                .breaker(StoreBreakerConfig { failures, open_for })
        };
        let ms = Duration::from_millis;
        with(1, ms(10)).validate().unwrap();
        with(100, ms(10_000)).validate().unwrap();
        for (failures, open_for, field) in [
            (0, ms(250), "breaker.failures"),
            (101, ms(250), "breaker.failures"),
            (3, ms(9), "breaker.open_for"),
            (3, ms(10_001), "breaker.open_for"),
        ] {
            let err = with(failures, open_for).validate().unwrap_err();
            assert_eq!(err.field, field, "{failures} {open_for:?}");
        }
    }

    #[test]
    fn reads_from_toml() {
        let config: StoreConfig =
            toml::from_str("url = \"redis://10.0.0.1:6380/2\"\ntimeout = \"2ms\"").unwrap();
        assert_eq!(config.timeout, Duration::from_millis(2));
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.breaker, StoreBreakerConfig::default());
        config.validate().unwrap();
        assert!(toml::from_str::<StoreConfig>("urll = \"x\"").is_err());
        let config: StoreConfig =
            toml::from_str("breaker = { failures = 5, open_for = \"100ms\" }").unwrap();
        assert_eq!(config.breaker.failures, 5);
        assert_eq!(config.breaker.open_for, Duration::from_millis(100));
        // A breaker table with one field takes the other's default.
        let config: StoreConfig = toml::from_str("breaker = { failures = 7 }").unwrap();
        assert_eq!(config.breaker.open_for, Duration::from_millis(250));
        assert!(toml::from_str::<StoreConfig>("breaker = { failure = 7 }").is_err());
    }
}
