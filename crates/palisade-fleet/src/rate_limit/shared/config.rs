//! Configuration of the [`SharedRateLimit`](super::SharedRateLimit): what it limits, how
//! (every decision in Redis, or leases), and what decides while Redis is down.

use std::time::Duration;

use palisade::ConfigError;
use palisade::clock::Clock;
use palisade::policy::rate_limit::Quota;
use serde::{Deserialize, Serialize};

use super::SharedRateLimit;
use crate::membership::Membership;
use crate::rate_limit::FleetLimit;
use crate::rate_limit::limit::check_name;
use crate::store::RedisStore;

/// How the fleet's decisions are made while Redis answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every request is one script call in Redis: never more than
    /// `per_second × t + burst`, at one round trip per request.
    #[default]
    Exact,
    /// Each instance takes a few tokens ahead from Redis and decides locally while it
    /// holds some: no round trip per request, at the price of at most
    /// `live × lease size` more (see `docs/FLEET.md`). For hot limits.
    Lease,
}

/// What decides while Redis fails (any [`FleetError`](crate::FleetError) whose
/// `is_store_failure()` is true: a timeout, an unreachable server, a malformed answer,
/// the store's breaker open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreDown {
    /// Each instance enforces its share of the limit locally, `per_second / live`
    /// with a burst of `max(1, burst / live)`, `live` being the instances the
    /// [`Membership`] last counted: the fleet stays near its limit.
    #[default]
    LocalShare,
    /// Admit every request: availability over the limit.
    Open,
    /// Refuse every request (with a `retry_after`): the limit over availability.
    Closed,
}

/// Settings of a [`SharedRateLimit`]. Defaults, and why:
///
/// | field | default | why |
/// |---|---|---|
/// | `name` | `default` | names metrics and logs, and is the limit's name in its Redis keys; set it to the upstream or route |
/// | `scope` | the name | the Redis Cluster hash tag; limits of one scope live in one slot |
/// | `per_second` | `1000` | a placeholder (palisade's local default): set it to what the dependency takes, fleet-wide |
/// | `burst` | `100` | a tenth of a second of traffic may arrive at once |
/// | `mode` | `exact` | never over the limit; lease mode trades a bounded excess for no round trip, so it is chosen per hot limit |
/// | `on_store_down` | `local_share` | while Redis is down the fleet stays near its limit, instead of admitting everything (`open`) or nothing (`closed`) |
/// | `lease_fraction` | `0.02` | lease mode's excess is at most 2% of a second's quota, while a hot limit still costs one round trip per many requests |
/// | `lease_ttl` | `1s` | a lease held by an instance that went quiet is given up within a second (its tokens are lost, never admitted late) |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedRateLimitConfig {
    /// Names metrics and logs; also the limit's name in its Redis keys
    /// (`{palisade:<scope>}:rl:<name>[:<key>]`), so 1 to 64 visible ASCII characters,
    /// none of `{`, `}`, `:`.
    pub name: String,
    /// The hash tag of the keys: `{palisade:<scope>}`; 1 to 64 visible ASCII characters,
    /// no `{` or `}`. `None`: the name. Also the [`Membership`]'s scope in the sidecar.
    pub scope: Option<String>,
    /// Sustained requests per second for the whole fleet; more than 0 and at most
    /// 1,000,000 (the script counts whole microseconds).
    pub per_second: f64,
    /// Requests admitted at once from idle, fleet-wide; 1 to 1,000,000.
    pub burst: u32,
    /// `exact` or `lease`; see [`Mode`].
    pub mode: Mode,
    /// `local_share`, `open` or `closed`; see [`OnStoreDown`].
    pub on_store_down: OnStoreDown,
    /// Lease mode: the share of a second's quota that the fleet's leases may hold at
    /// once; each instance leases `max(1, ⌊lease_fraction × per_second / live⌋)` tokens
    /// (at most `burst`). More than 0 and at most 1.
    pub lease_fraction: f64,
    /// Lease mode: how long leased tokens stay usable after the instance received them;
    /// unused ones are then dropped (under-admission, never over). 10 ms to 60 s.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for SharedRateLimitConfig {
    fn default() -> Self {
        let quota = Quota::default();
        Self {
            name: "default".to_owned(),
            scope: None,
            per_second: quota.per_second,
            burst: quota.burst,
            mode: Mode::default(),
            on_store_down: OnStoreDown::default(),
            lease_fraction: 0.02,
            lease_ttl: Duration::from_secs(1),
        }
    }
}

/// The shortest [`SharedRateLimitConfig::lease_ttl`].
const MIN_LEASE_TTL: Duration = Duration::from_millis(10);
/// The longest [`SharedRateLimitConfig::lease_ttl`].
const MAX_LEASE_TTL: Duration = Duration::from_secs(60);

impl SharedRateLimitConfig {
    /// The defaults, named `name`, with `per_second` and `burst`.
    pub fn new(name: impl Into<String>, per_second: f64, burst: u32) -> Self {
        Self {
            name: name.into(),
            per_second,
            burst,
            ..Self::default()
        }
    }

    /// The scope in use: the one set, or the name.
    pub fn scope(&self) -> &str {
        self.scope.as_deref().unwrap_or(&self.name)
    }

    /// The fleet-wide quota.
    pub fn quota(&self) -> Quota {
        Quota::new(self.per_second, self.burst)
    }

    /// Checks every field; the error names the field and what it may be.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limit().map(|_| ())
    }

    /// Validates and returns the fleet limit (name and quota in the scripts' units).
    pub(super) fn limit(&self) -> Result<FleetLimit, ConfigError> {
        check_name("name", &self.name, &['{', '}', ':'])?;
        check_name("scope", self.scope(), &['{', '}'])?;
        let limit = FleetLimit::new(self.name.as_str(), self.quota())?;
        if !(self.lease_fraction > 0.0 && self.lease_fraction <= 1.0) {
            return Err(ConfigError::new(
                "lease_fraction",
                format!("{} is out of range", self.lease_fraction),
                "more than 0 and at most 1 (0.02: leases hold at most 2% of a second's quota)",
            ));
        }
        if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&self.lease_ttl) {
            return Err(ConfigError::new(
                "lease_ttl",
                format!("{:?} is out of range", self.lease_ttl),
                "10ms to 60s",
            ));
        }
        Ok(limit)
    }
}

/// Builds a [`SharedRateLimit`]; defaults as in [`SharedRateLimitConfig`]. A store and a
/// membership are required.
#[derive(Clone, Debug, Default)]
pub struct SharedRateLimitBuilder {
    pub(super) config: SharedRateLimitConfig,
    pub(super) store: Option<RedisStore>,
    pub(super) membership: Option<Membership>,
    pub(super) clock: Option<Clock>,
}

impl SharedRateLimitBuilder {
    /// Starts from a config.
    pub fn from_config(config: SharedRateLimitConfig) -> Self {
        Self {
            config,
            ..Self::default()
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

    /// Sets the fleet-wide quota.
    #[must_use]
    pub fn quota(mut self, quota: Quota) -> Self {
        self.config.per_second = quota.per_second;
        self.config.burst = quota.burst;
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Sets what decides while Redis fails.
    #[must_use]
    pub fn on_store_down(mut self, on_store_down: OnStoreDown) -> Self {
        self.config.on_store_down = on_store_down;
        self
    }

    /// Sets the lease fraction (lease mode).
    #[must_use]
    pub fn lease_fraction(mut self, lease_fraction: f64) -> Self {
        self.config.lease_fraction = lease_fraction;
        self
    }

    /// Sets the lease TTL (lease mode).
    #[must_use]
    pub fn lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.config.lease_ttl = lease_ttl;
        self
    }

    /// The Redis the decisions are made in.
    #[must_use]
    pub fn store(mut self, store: RedisStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The fleet's live instances, whose count divides the limit into local shares and
    /// leases. Start it on the same scope as this limit.
    #[must_use]
    pub fn membership(mut self, membership: Membership) -> Self {
        self.membership = Some(membership);
        self
    }

    /// Uses `clock` (for lease expiry and the return window after an outage) instead of
    /// tokio's.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: any of the config's, or `store` /
    /// `membership` when not given.
    pub fn build(self) -> Result<SharedRateLimit, ConfigError> {
        let limit = self.config.limit()?;
        let Some(store) = self.store else {
            return Err(ConfigError::new(
                "store",
                "no Redis store given",
                "a RedisStore (SharedRateLimitBuilder::store)",
            ));
        };
        let Some(membership) = self.membership else {
            return Err(ConfigError::new(
                "membership",
                "no membership given: the local share needs the fleet's size",
                "a Membership of the same scope (SharedRateLimitBuilder::membership)",
            ));
        };
        SharedRateLimit::from_parts(
            self.config,
            limit,
            store,
            membership,
            self.clock.unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(config: &SharedRateLimitConfig) -> String {
        config.validate().unwrap_err().field
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let config = SharedRateLimitConfig::default();
        config.validate().unwrap();
        assert_eq!(config.mode, Mode::Exact);
        assert_eq!(config.on_store_down, OnStoreDown::LocalShare);
        assert_eq!(config.lease_fraction, 0.02);
        assert_eq!(config.lease_ttl, Duration::from_secs(1));
        assert_eq!((config.per_second, config.burst), (1000.0, 100));
        assert_eq!(config.scope(), "default");
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = SharedRateLimitConfig::new("api", 100.0, 10);
        let with = |f: &dyn Fn(&mut SharedRateLimitConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c
        };
        for name in ["", "a:b", "{a}", "a b", "é"] {
            assert_eq!(field(&with(&|c| c.name = name.into())), "name", "{name:?}");
        }
        for scope in ["", "a}", "{a", "a b"] {
            assert_eq!(
                field(&with(&|c| c.scope = Some(scope.into()))),
                "scope",
                "{scope:?}"
            );
        }
        // A scope may hold a ':', a name may not (the name is part of the key's tail).
        with(&|c| c.scope = Some("tenant:7".into()))
            .validate()
            .unwrap();
        for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert_eq!(
                field(&with(&|c| c.per_second = per_second)),
                "per_second",
                "{per_second}"
            );
        }
        for burst in [0, 1_000_001] {
            assert_eq!(field(&with(&|c| c.burst = burst)), "burst", "{burst}");
        }
        for fraction in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field(&with(&|c| c.lease_fraction = fraction)),
                "lease_fraction",
                "{fraction}"
            );
        }
        for ttl in [
            Duration::ZERO,
            Duration::from_millis(9),
            Duration::from_secs(61),
        ] {
            assert_eq!(field(&with(&|c| c.lease_ttl = ttl)), "lease_ttl", "{ttl:?}");
        }
        // Each error says what would be accepted.
        let err = with(&|c| c.lease_fraction = 2.0).validate().unwrap_err();
        assert!(err.allowed.contains("at most 1"), "{err}");
    }

    #[test]
    fn a_store_and_a_membership_are_required() {
        let err = SharedRateLimitBuilder::default().build().unwrap_err();
        assert_eq!(err.field, "store");
        // A bad field is found before a missing part.
        let err = SharedRateLimitBuilder::default()
            .lease_fraction(0.0)
            .build()
            .unwrap_err();
        assert_eq!(err.field, "lease_fraction");
    }

    #[test]
    fn reads_from_toml() {
        let config: SharedRateLimitConfig = toml::from_str(
            "name = \"checkout\"\nper_second = 200.0\nburst = 20\nmode = \"lease\"\n\
             on_store_down = \"closed\"\nlease_fraction = 0.05\nlease_ttl = \"500ms\"",
        )
        .unwrap();
        assert_eq!(config.mode, Mode::Lease);
        assert_eq!(config.on_store_down, OnStoreDown::Closed);
        assert_eq!(config.lease_ttl, Duration::from_millis(500));
        config.validate().unwrap();
        for (text, mode) in [("exact", Mode::Exact), ("lease", Mode::Lease)] {
            let c: SharedRateLimitConfig = toml::from_str(&format!("mode = \"{text}\"")).unwrap();
            assert_eq!(c.mode, mode);
        }
        for (text, down) in [
            ("local_share", OnStoreDown::LocalShare),
            ("open", OnStoreDown::Open),
            ("closed", OnStoreDown::Closed),
        ] {
            let c: SharedRateLimitConfig =
                toml::from_str(&format!("on_store_down = \"{text}\"")).unwrap();
            assert_eq!(c.on_store_down, down);
        }
        assert!(toml::from_str::<SharedRateLimitConfig>("mode = \"Exact\"").is_err());
        assert!(toml::from_str::<SharedRateLimitConfig>("per_secnd = 1.0").is_err());
        assert!(toml::from_str::<SharedRateLimitConfig>("on_store_down = \"local\"").is_err());
    }
}
