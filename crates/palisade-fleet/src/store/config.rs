//! Configuration of the [`RedisStore`](super::RedisStore).

use std::time::Duration;

use palisade::ConfigError;
use serde::{Deserialize, Serialize};

/// Where Redis is and how long a call to it may take. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `url` | `redis://127.0.0.1:6379` | a Redis beside the service |
/// | `timeout` | `5ms` | a decision on loopback or in one zone takes well under 1 ms; a Redis slower than 5 ms is failing, and the request must not wait for it |
/// | `connect_timeout` | `1s` | connecting happens at start and after a loss, off the per-call budget |
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
}

/// The default of [`StoreConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
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
    fn reads_from_toml() {
        let config: StoreConfig =
            toml::from_str("url = \"redis://10.0.0.1:6380/2\"\ntimeout = \"2ms\"").unwrap();
        assert_eq!(config.timeout, Duration::from_millis(2));
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        config.validate().unwrap();
        assert!(toml::from_str::<StoreConfig>("urll = \"x\"").is_err());
    }
}
