//! Configuration of the [`FleetRateLimiter`](super::FleetRateLimiter).

use serde::{Deserialize, Serialize};

use palisade::ConfigError;

use super::FleetRateLimiter;
use super::limit::check_name;
use crate::store::RedisStore;

/// Settings of a [`FleetRateLimiter`]. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `name` | `default` | names errors and metrics; set it to the upstream or route |
/// | `scope` | the name | every limit of one limiter shares one Redis Cluster slot (below) |
///
/// The quotas are not here: each [`FleetLimit`](super::FleetLimit) carries its own, and
/// one decision may check several (route, client, global).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetRateLimitConfig {
    /// Name used in errors and metrics.
    pub name: String,
    /// The hash tag of every key of this limiter: keys are
    /// `{palisade:<scope>}:rl:<limit>[:<key>]`, so Redis Cluster puts all of a scope's
    /// limits in one slot and one script call can decide them together. The price: one
    /// scope's decisions all go to one node. 1 to 64 visible ASCII characters, no `{`
    /// or `}`. `None`: the name.
    pub scope: Option<String>,
}

impl Default for FleetRateLimitConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            scope: None,
        }
    }
}

impl FleetRateLimitConfig {
    /// The scope in use: the one set, or the name.
    pub fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(&self.name)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "is empty", "a non-empty name"));
        }
        check_name("scope", self.scope(), &['{', '}'])
    }
}

/// Builds a [`FleetRateLimiter`]; defaults as in [`FleetRateLimitConfig`]. A store is
/// required.
#[derive(Clone, Debug, Default)]
pub struct FleetRateLimiterBuilder {
    pub(super) config: FleetRateLimitConfig,
    pub(super) store: Option<RedisStore>,
}

impl FleetRateLimiterBuilder {
    /// Starts from a config.
    pub fn from_config(config: FleetRateLimitConfig) -> Self {
        Self {
            config,
            store: None,
        }
    }

    /// Sets the name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the scope (the keys' hash tag).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.config.scope = Some(scope.into());
        self
    }

    /// The Redis the decisions are made in.
    #[must_use]
    pub fn store(mut self, store: RedisStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<FleetRateLimiter, ConfigError> {
        self.config.validate()?;
        let Some(store) = self.store else {
            return Err(ConfigError::new(
                "store",
                "no Redis store given",
                "a RedisStore (FleetRateLimiterBuilder::store)",
            ));
        };
        Ok(FleetRateLimiter::from_parts(self.config, store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_defaults_to_the_name() {
        let config = FleetRateLimitConfig {
            name: "checkout".into(),
            scope: None,
        };
        assert_eq!(config.scope(), "checkout");
        config.validate().unwrap();
    }

    #[test]
    fn a_scope_that_breaks_the_hash_tag_is_refused() {
        for scope in ["", "a}b", "{a", "a b", &"s".repeat(65)] {
            let config = FleetRateLimitConfig {
                name: "n".into(),
                scope: Some(scope.into()),
            };
            assert_eq!(config.validate().unwrap_err().field, "scope", "{scope:?}");
        }
        // A name unfit for a key needs a scope that is fit.
        let config = FleetRateLimitConfig {
            name: "my route".into(),
            scope: None,
        };
        assert_eq!(config.validate().unwrap_err().field, "scope");
    }

    #[test]
    fn a_store_is_required() {
        let err = FleetRateLimiterBuilder::default().build().unwrap_err();
        assert_eq!(err.field, "store");
    }

    #[test]
    fn reads_from_toml() {
        let config: FleetRateLimitConfig =
            toml::from_str("name = \"api\"\nscope = \"tenant-7\"").unwrap();
        assert_eq!(config.scope(), "tenant-7");
        assert!(toml::from_str::<FleetRateLimitConfig>("nme = \"x\"").is_err());
    }
}
