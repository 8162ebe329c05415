//! Checks of `[fleet]` and of an upstream's fleet-scoped rate limit and retry budget.
//!
//! A fleet scope needs a `[fleet]` section; its keys that only mean something for a
//! fleet (`mode`, `on_store_down`, `lease_fraction`) are refused on an instance's limit,
//! so a file never says more than the sidecar does.

use palisade::policy::rate_limit::RateLimitConfig;
use palisade::policy::retry::RetryBudgetConfig;
use palisade_fleet::{FleetRetryBudgetConfig, SharedRateLimitConfig};

use super::{Checker, Step, key};
use crate::config::fleet::{RateLimitSection, Scope};
use crate::config::{Config, Upstream};

/// An upstream's rate limit, validated: this sidecar's or the fleet's.
#[derive(Clone, Debug)]
pub enum RateLimitPolicy {
    /// `scope = "instance"`: the library's local limiter.
    Instance(RateLimitConfig),
    /// `scope = "fleet"`: shared through `[fleet]`'s Redis.
    Fleet(SharedRateLimitConfig),
}

impl Checker<'_> {
    /// `[fleet]`: its Redis address parses and its times are in range.
    pub(super) fn check_fleet(&mut self, config: &Config) {
        let Some(fleet) = &config.fleet else { return };
        let at = |k: &str| vec![key("fleet"), key(k)];
        if let Err(e) = fleet.store_config().validate() {
            let field = if e.field == "timeout" || e.field == "connect_timeout" {
                e.field.clone()
            } else {
                "redis".to_owned()
            };
            self.problem(
                &at(&field),
                format!("{}; allowed: {}", e.problem, e.allowed),
            );
        }
        if let Err(e) = fleet.membership().validate() {
            let field = match e.field.as_str() {
                "interval" => "heartbeat",
                _ => "heartbeat_expiry",
            };
            self.problem(&at(field), format!("{}; allowed: {}", e.problem, e.allowed));
        }
    }

    /// `[upstream.rate_limit]`, read into the library config its scope calls for.
    pub(super) fn check_rate_limit(
        &mut self,
        config: &Config,
        i: usize,
        upstream: &Upstream,
    ) -> Option<RateLimitPolicy> {
        let section = upstream.rate_limit.as_ref()?;
        let at = vec![key("upstream"), Step::Index(i), key("rate_limit")];
        let local: RateLimitConfig = self.library_config(&at, &section.policy);
        match section.scope {
            Scope::Instance => {
                self.refuse_fleet_keys(&at, section);
                Some(RateLimitPolicy::Instance(local))
            }
            Scope::Fleet => {
                self.needs_fleet(config, &at);
                if !local.max_wait.is_zero() {
                    let path: Vec<_> = at.iter().cloned().chain([key("max_wait")]).collect();
                    self.problem(
                        &path,
                        "a fleet limit answers at once; allowed: 0s (or scope = \"instance\")",
                    );
                }
                let shared = SharedRateLimitConfig {
                    name: upstream.name.clone(),
                    scope: None,
                    per_second: local.per_second,
                    burst: local.burst,
                    mode: section.mode.unwrap_or_default(),
                    on_store_down: section.on_store_down.unwrap_or_default(),
                    lease_fraction: section
                        .lease_fraction
                        .unwrap_or(SharedRateLimitConfig::default().lease_fraction),
                    ..SharedRateLimitConfig::default()
                };
                if let Err(e) = shared.validate() {
                    // The scope of a fleet limit is the upstream's name: a name that
                    // cannot be part of a Redis key is the name's problem.
                    if e.field == "scope" || e.field == "name" {
                        self.problem(
                            &[key("upstream"), Step::Index(i), key("name")],
                            format!(
                                "{} (a fleet limit's Redis key holds it); allowed: {}",
                                e.problem, e.allowed
                            ),
                        );
                    } else {
                        self.config_error(&at, e);
                    }
                }
                Some(RateLimitPolicy::Fleet(shared))
            }
        }
    }

    /// Takes `scope` out of `[upstream.retry] budget = { … }` (the library's budget has
    /// no such key) and returns the rest with the scope.
    pub(super) fn budget_scope(&mut self, i: usize, retry: &toml::Table) -> (toml::Table, Scope) {
        let mut retry = retry.clone();
        let Some(toml::Value::Table(budget)) = retry.get_mut("budget") else {
            return (retry, Scope::Instance);
        };
        let Some(scope) = budget.remove("scope") else {
            return (retry, Scope::Instance);
        };
        match scope.as_str() {
            Some("instance") => (retry, Scope::Instance),
            Some("fleet") => (retry, Scope::Fleet),
            _ => {
                let path = [
                    key("upstream"),
                    Step::Index(i),
                    key("retry"),
                    key("budget"),
                    key("scope"),
                ];
                self.problem(
                    &path,
                    format!("{scope} is not a scope; allowed: \"instance\" or \"fleet\""),
                );
                (retry, Scope::Instance)
            }
        }
    }

    /// The fleet budget for a retry budget with `scope = "fleet"`.
    pub(super) fn fleet_budget(
        &mut self,
        config: &Config,
        i: usize,
        budget: &RetryBudgetConfig,
    ) -> FleetRetryBudgetConfig {
        let at = [key("upstream"), Step::Index(i), key("retry"), key("budget")];
        self.needs_fleet(config, &at);
        FleetRetryBudgetConfig {
            ratio: budget.ratio,
            min_per_second: budget.min_per_second,
            window: budget.window,
            ..FleetRetryBudgetConfig::default()
        }
    }

    /// A fleet scope without `[fleet]` cannot count anywhere.
    fn needs_fleet(&mut self, config: &Config, at: &[Step]) {
        if config.fleet.is_none() {
            let path: Vec<_> = at.iter().cloned().chain([key("scope")]).collect();
            self.problem(
                &path,
                "\"fleet\" needs a [fleet] section; allowed: add [fleet] redis = \"redis://host:6379\", or scope = \"instance\"",
            );
        }
    }

    /// `mode`, `on_store_down` and `lease_fraction` mean something only for a fleet.
    fn refuse_fleet_keys(&mut self, at: &[Step], section: &RateLimitSection) {
        let set = [
            ("mode", section.mode.is_some()),
            ("on_store_down", section.on_store_down.is_some()),
            ("lease_fraction", section.lease_fraction.is_some()),
        ];
        for (name, present) in set {
            if present {
                let path: Vec<_> = at.iter().cloned().chain([key(name)]).collect();
                self.problem(
                    &path,
                    "applies to a fleet limit only; allowed: scope = \"fleet\" with it, or remove it",
                );
            }
        }
    }
}
