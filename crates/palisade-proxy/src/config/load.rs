//! Reading and validating a config file, reporting every problem with its line.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use http::Method;
use http::uri::Authority;
use palisade::ConfigError;
use palisade::policy::circuit_breaker::CircuitBreakerConfig;
use palisade::policy::rate_limit::RateLimitConfig;
use palisade::policy::retry::RetryConfig;
use palisade_fleet::FleetRetryBudgetConfig;
use palisade_http::classify::RetryOn;
use serde::de::DeserializeOwned;

pub use adaptive::AdaptivePolicy;
pub use fleet::RateLimitPolicy;

use super::fleet::Scope;
use super::spans::{Locator, Step};
use super::{Config, Upstream};

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file.
    pub line: usize,
    /// The key, as a path (`upstream[0].retry.max_attempts`).
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Every problem found in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems {
    /// The file, as given.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}: {}", self.file, p.line, p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A config that passed every check, with the library configs it contains, built.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The file as read.
    pub config: Config,
    /// Per upstream, in order: the policies' configs.
    pub upstreams: Vec<UpstreamPolicies>,
    /// Warnings on mistakes a valid file may still hold (see [`super::advice`]).
    pub advice: Vec<super::advice::Advice>,
}

/// An upstream's policy configs, validated.
#[derive(Clone, Debug)]
pub struct UpstreamPolicies {
    /// Retry settings.
    pub retry: RetryConfig,
    /// What is retried.
    pub retry_on: RetryOn,
    /// Methods that may be replayed.
    pub methods: Vec<Method>,
    /// Breaker settings.
    pub breaker: CircuitBreakerConfig,
    /// The rate limit, this sidecar's or the fleet's.
    pub rate_limit: Option<RateLimitPolicy>,
    /// The retry budget, when it is the fleet's (`budget = { …, scope = "fleet" }`);
    /// an instance's budget stays in `retry`.
    pub fleet_budget: Option<FleetRetryBudgetConfig>,
    /// The adaptive concurrency limit, the upstream's or each endpoint's.
    pub adaptive: Option<AdaptivePolicy>,
}

impl UpstreamPolicies {
    /// Whether any of its policies is counted in `[fleet]`'s Redis.
    pub fn uses_fleet(&self) -> bool {
        self.fleet_budget.is_some() || matches!(self.rate_limit, Some(RateLimitPolicy::Fleet(_)))
    }
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<Checked, Problems> {
    let (file, text) = read(path)?;
    parse(&file, &text)
}

/// The file at `path` as named in messages, and its text; a file that cannot be read is
/// a problem of its own.
pub(crate) fn read(path: &Path) -> Result<(String, String), Problems> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(e) => Err(Problems {
            file,
            problems: vec![Problem {
                line: 1,
                key: "-".into(),
                message: format!("cannot read the file: {e}; allowed: a readable TOML file"),
            }],
        }),
    }
}

/// Checks `text`, read from `file`.
pub fn parse(file: &str, text: &str) -> Result<Checked, Problems> {
    let locator = Locator::new(text);
    let config: Config = toml::from_str(text).map_err(|e| Problems {
        file: file.to_owned(),
        problems: vec![syntax_problem(&locator, text, &e, "docs/CONFIG.md")],
    })?;
    let mut checker = Checker {
        locator: &locator,
        problems: Vec::new(),
    };
    let upstreams = checker.check(&config);
    let mut problems = checker.problems;
    if problems.is_empty() {
        let advice = super::advice::advise(file, &locator, &config, &upstreams);
        return Ok(Checked {
            config,
            upstreams,
            advice,
        });
    }
    problems.sort_by_key(|p| p.line);
    Err(Problems {
        file: file.to_owned(),
        problems,
    })
}

/// A file that does not parse as its schema: the line, the key and what is wrong, with
/// `doc` (the page listing every key) named where the message cannot say what is allowed.
pub(crate) fn syntax_problem(
    locator: &Locator<'_>,
    text: &str,
    error: &toml::de::Error,
    doc: &str,
) -> Problem {
    let offset = error.span().map_or(0, |s| s.start);
    let line = locator.line_of(offset);
    let message = error.message().trim().to_owned();
    let key = backticked(&message)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
        .or_else(|| key_on_line(text, line))
        .unwrap_or_else(|| "-".to_owned());
    Problem {
        line,
        key,
        message: humanize(&message, doc),
    }
}

/// The first `name` in backticks.
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

/// The key assigned on `line` (`key = value`), if any.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let content = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = content.split_once('=')?;
    Some(key.trim().to_owned()).filter(|k| !k.is_empty())
}

/// Serde's "unknown field `x`, expected one of `a`, `b`" as "unknown key; allowed: a, b".
fn humanize(message: &str, doc: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field") {
        let allowed = rest.split_once("expected").map_or("", |(_, a)| a);
        let allowed = allowed.trim_start_matches(" one of").replace('`', "");
        return format!("unknown key; allowed: {}", allowed.trim());
    }
    if message.starts_with("missing field") {
        return format!("required, and missing; allowed: see {doc} for its values");
    }
    if message.contains("; allowed") {
        return message.to_owned();
    }
    format!("{message}; allowed: see {doc}")
}

struct Checker<'a> {
    locator: &'a Locator<'a>,
    problems: Vec<Problem>,
}

fn key(k: &str) -> Step {
    Step::Key(k.to_owned())
}

/// A key path as messages write it: `upstream[0].retry.max_attempts`.
pub(crate) fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Checker<'_> {
    fn problem(&mut self, path: &[Step], message: impl Into<String>) {
        self.problems.push(Problem {
            line: self.locator.line(path),
            key: render(path),
            message: message.into(),
        });
    }

    fn config_error(&mut self, section: &[Step], error: ConfigError) {
        let mut path = section.to_vec();
        path.extend(error.field.split('.').map(key));
        self.problem(
            &path,
            format!("{}; allowed: {}", error.problem, error.allowed),
        );
    }

    fn check(&mut self, config: &Config) -> Vec<UpstreamPolicies> {
        self.check_admin(config);
        self.check_connections(config);
        if config.upstream.is_empty() {
            self.problem(
                &[key("upstream")],
                "no [[upstream]] is defined; allowed: at least one, with endpoints",
            );
        }
        if config.route.is_empty() {
            self.problem(
                &[key("route")],
                "no [[route]] is defined; allowed: at least one",
            );
        }
        let policies = config
            .upstream
            .iter()
            .enumerate()
            .map(|(i, u)| self.check_upstream(config, i, u))
            .collect();
        self.check_routes(config);
        self.check_sagas(config);
        self.check_fleet(config);
        policies
    }

    fn check_admin(&mut self, config: &Config) {
        let admin = &config.admin;
        if admin.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            self.problem(
                &[key("admin"), key("token")],
                "the token is blank; allowed: a token of visible characters, or no token (then only on a loopback address)".to_owned(),
            );
        } else if !admin.address.ip().is_loopback() && admin.token.is_none() {
            self.problem(
                &[key("admin"), key("address")],
                format!("{} is not loopback and no token is set; allowed: a loopback address, or set admin.token", admin.address),
            );
        }
        let interval = admin.dashboard_interval;
        if !(Duration::from_millis(100)..=Duration::from_secs(10)).contains(&interval) {
            self.problem(
                &[key("admin"), key("dashboard_interval")],
                format!(
                    "{} is out of range; allowed: 100ms (10 frames a second) to 10s",
                    humantime::format_duration(interval)
                ),
            );
        }
        if !(8192..=1_048_576).contains(&config.listener.max_header_bytes) {
            self.problem(
                &[key("listener"), key("max_header_bytes")],
                format!(
                    "{} is out of range; allowed: 8192 to 1048576",
                    config.listener.max_header_bytes
                ),
            );
        }
        if config.listener.header_timeout.is_zero() {
            self.problem(
                &[key("listener"), key("header_timeout")],
                "is 0; allowed: more than 0",
            );
        }
        if config.listener.body_timeout.is_zero() {
            self.problem(
                &[key("listener"), key("body_timeout")],
                "is 0; allowed: more than 0",
            );
        }
    }

    /// The bounds on both ports' connections.
    fn check_connections(&mut self, config: &Config) {
        if !(1..=1_000_000).contains(&config.listener.max_connections) {
            self.problem(
                &[key("listener"), key("max_connections")],
                format!(
                    "{} is out of range; allowed: 1 to 1000000",
                    config.listener.max_connections
                ),
            );
        }
        if config.admin.header_timeout.is_zero() {
            self.problem(
                &[key("admin"), key("header_timeout")],
                "is 0; allowed: more than 0",
            );
        }
        if !(1..=10_000).contains(&config.admin.max_connections) {
            self.problem(
                &[key("admin"), key("max_connections")],
                format!(
                    "{} is out of range; allowed: 1 to 10000",
                    config.admin.max_connections
                ),
            );
        }
    }

    fn check_upstream(
        &mut self,
        config: &Config,
        i: usize,
        upstream: &Upstream,
    ) -> UpstreamPolicies {
        let at = |k: &str| vec![key("upstream"), Step::Index(i), key(k)];
        if upstream.name.is_empty() {
            self.problem(&at("name"), "is empty; allowed: a name routes can refer to");
        }
        if upstream.slow_start > Duration::from_secs(3600) {
            self.problem(
                &at("slow_start"),
                format!(
                    "{:?} is out of range; allowed: 0 (off) to 1 hour",
                    upstream.slow_start
                ),
            );
        }
        if config.upstream[..i].iter().any(|u| u.name == upstream.name) {
            self.problem(
                &at("name"),
                format!(
                    "{:?} is defined twice; allowed: unique names",
                    upstream.name
                ),
            );
        }
        if upstream.endpoints.is_empty() {
            self.problem(
                &at("endpoints"),
                "is empty; allowed: at least one host:port",
            );
        }
        for (field, list) in [
            ("endpoints", &upstream.endpoints),
            ("backup", &upstream.backup),
        ] {
            for endpoint in list {
                let valid = endpoint
                    .parse::<Authority>()
                    .is_ok_and(|a| a.port_u16().is_some());
                if !valid {
                    self.problem(
                        &at(field),
                        format!("{endpoint:?} is not host:port; allowed: e.g. \"127.0.0.1:9001\""),
                    );
                }
            }
        }
        self.check_timeouts(i, upstream);
        self.check_health(i, upstream);
        if let Some(bulkhead) = &upstream.bulkhead {
            if let Err(e) = bulkhead.validate() {
                self.config_error(&at("bulkhead"), e);
            }
        }
        let rate_limit = self.check_rate_limit(config, i, upstream);
        let adaptive = self.check_adaptive(i, upstream);
        if let Some(throttle) = &upstream.throttle {
            if let Err(e) = throttle.validate() {
                self.config_error(&at("throttle"), e);
            }
        }
        if let Some(shedding) = &upstream.load_shedding {
            if let Err(e) = shedding.validate() {
                self.config_error(&at("load_shedding"), e);
            }
        }
        if let Some(hedge) = &upstream.hedge {
            if let Err(e) = hedge.validate() {
                self.config_error(&at("hedge"), e);
            }
        }
        if let Some(adaptive) = &upstream.timeout.adaptive {
            let section: Vec<_> = at("timeout").into_iter().chain([key("adaptive")]).collect();
            if let Err(e) = adaptive.validate() {
                self.config_error(&section, e);
            }
        }
        let retry_section = &upstream.retry;
        let (retry_table, budget_scope) = self.budget_scope(i, &retry_section.policy);
        let mut retry: RetryConfig = self.library_config(&at("retry"), &retry_table);
        let fleet_budget = match (budget_scope, retry.budget.take()) {
            (Scope::Fleet, Some(budget)) => Some(self.fleet_budget(config, i, &budget)),
            (_, budget) => {
                retry.budget = budget;
                None
            }
        };
        let retry_on = RetryOn::parse(&retry_section.on).unwrap_or_else(|e| {
            self.problem(
                &at("retry")
                    .into_iter()
                    .chain([key("on")])
                    .collect::<Vec<_>>(),
                format!("{e}; allowed: {}", RetryOn::ALLOWED),
            );
            RetryOn::default()
        });
        let methods = retry_section
            .methods
            .iter()
            .filter_map(|m| match Method::from_bytes(m.as_bytes()) {
                Ok(method) if m.chars().all(|c| c.is_ascii_uppercase()) => Some(method),
                _ => {
                    let path: Vec<_> = at("retry").into_iter().chain([key("methods")]).collect();
                    self.problem(&path, format!("{m:?} is not an HTTP method; allowed: upper-case methods such as \"GET\""));
                    None
                }
            })
            .collect();
        let breaker: CircuitBreakerConfig =
            self.library_config(&at("circuit_breaker"), &upstream.circuit_breaker.policy);
        UpstreamPolicies {
            retry,
            retry_on,
            methods,
            breaker,
            rate_limit,
            fleet_budget,
            adaptive,
        }
    }

    /// Reads a library config from a section's remaining keys and validates it.
    fn library_config<T>(&mut self, section: &[Step], table: &toml::Table) -> T
    where
        T: DeserializeOwned + Default + Validate,
    {
        match toml::Value::Table(table.clone()).try_into::<T>() {
            Ok(config) => {
                if let Err(e) = config.check() {
                    self.config_error(section, e);
                }
                config
            }
            Err(e) => {
                let message = e.message().trim().to_owned();
                let mut path = section.to_vec();
                if let Some(name) = backticked(&message) {
                    path.push(key(&name));
                } else if let Some(k) = table.keys().next().filter(|_| table.len() == 1) {
                    path.push(key(k));
                }
                self.problem(&path, humanize(&message, "docs/CONFIG.md"));
                T::default()
            }
        }
    }

    fn check_timeouts(&mut self, i: usize, upstream: &Upstream) {
        let at = |k: &str| vec![key("upstream"), Step::Index(i), key("timeout"), key(k)];
        let t = &upstream.timeout;
        let day = Duration::from_secs(86_400);
        if t.total.is_zero() || t.total > day {
            self.problem(
                &at("total"),
                format!(
                    "{:?} is out of range; allowed: more than 0 and at most 1 day",
                    t.total
                ),
            );
        }
        if t.per_try.is_zero() || t.per_try > t.total {
            self.problem(
                &at("per_try"),
                format!(
                    "{:?} is out of range; allowed: more than 0 and at most total ({:?})",
                    t.per_try, t.total
                ),
            );
        }
        if t.margin >= t.per_try {
            self.problem(
                &at("margin"),
                format!("{:?} is out of range; allowed: less than per_try", t.margin),
            );
        }
        if t.body_idle.is_zero() || t.body_idle > day {
            self.problem(
                &at("body_idle"),
                format!(
                    "{:?} is out of range; allowed: more than 0 and at most 1 day",
                    t.body_idle
                ),
            );
        }
    }

    fn check_health(&mut self, i: usize, upstream: &Upstream) {
        let Some(h) = &upstream.health_check else {
            return;
        };
        let at = |k: &str| vec![key("upstream"), Step::Index(i), key("health_check"), key(k)];
        if !h.path.starts_with('/') {
            self.problem(
                &at("path"),
                format!(
                    "{:?} does not start with '/'; allowed: an absolute path",
                    h.path
                ),
            );
        }
        if h.interval < Duration::from_millis(10) {
            self.problem(
                &at("interval"),
                format!("{:?} is out of range; allowed: at least 10ms", h.interval),
            );
        }
        if h.timeout.is_zero() || h.timeout > h.interval {
            self.problem(
                &at("timeout"),
                format!(
                    "{:?} is out of range; allowed: more than 0 and at most interval",
                    h.timeout
                ),
            );
        }
        for (name, value) in [
            ("healthy_after", h.healthy_after),
            ("unhealthy_after", h.unhealthy_after),
        ] {
            if !(1..=100).contains(&value) {
                self.problem(
                    &at(name),
                    format!("{value} is out of range; allowed: 1 to 100"),
                );
            }
        }
    }

    /// `name` (at `path`) names a defined upstream.
    fn check_upstream_named(&mut self, config: &Config, path: &[Step], name: &str) {
        if !config.upstream.iter().any(|u| u.name == name) {
            let names: Vec<_> = config.upstream.iter().map(|u| u.name.as_str()).collect();
            self.problem(
                path,
                format!(
                    "{name:?} is not a defined upstream; allowed: {}",
                    names.join(", ")
                ),
            );
        }
    }

    fn check_routes(&mut self, config: &Config) {
        for (i, route) in config.route.iter().enumerate() {
            let at = |k: &str| vec![key("route"), Step::Index(i), key(k)];
            if !route.path_prefix.starts_with('/') {
                self.problem(
                    &at("path_prefix"),
                    format!(
                        "{:?} does not start with '/'; allowed: a path such as \"/api\"",
                        route.path_prefix
                    ),
                );
            }
            if let Some(header) = &route.criticality_header {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    self.problem(
                        &at("criticality_header"),
                        format!("{header:?} is not a header name; allowed: e.g. \"x-criticality\""),
                    );
                }
            }
            if let Some(saga) = &route.saga {
                self.check_saga_route(config, i, saga, route);
                continue;
            }
            self.check_upstream_named(config, &at("upstream"), &route.upstream);
            if let Some(f) = &route.fallback {
                if !super::FINAL_STATUSES.contains(&f.status) {
                    let path: Vec<_> = at("fallback").into_iter().chain([key("status")]).collect();
                    self.problem(
                        &path,
                        format!(
                            "{} is not a final HTTP status; allowed: 200 to 599",
                            f.status
                        ),
                    );
                }
            }
            if let Some(f) = &route.fault {
                let at_fault =
                    |k: &str| at("fault").into_iter().chain([key(k)]).collect::<Vec<_>>();
                for (name, value) in [
                    ("abort_percent", f.abort_percent),
                    ("delay_percent", f.delay_percent),
                    ("body_percent", f.body_percent),
                ] {
                    if !(0.0..=100.0).contains(&value) {
                        self.problem(
                            &at_fault(name),
                            format!("{value} is out of range; allowed: 0 to 100"),
                        );
                    }
                }
                if !super::BODY_RATES.contains(&f.body_rate) {
                    self.problem(
                        &at_fault("body_rate"),
                        format!(
                            "{} is out of range; allowed: {} to {} (bytes per second)",
                            f.body_rate,
                            super::BODY_RATES.start(),
                            super::BODY_RATES.end()
                        ),
                    );
                }
                if !(1..=1_000_000).contains(&f.max_concurrent) {
                    self.problem(
                        &at_fault("max_concurrent"),
                        format!(
                            "{} is out of range; allowed: 1 to 1000000",
                            f.max_concurrent
                        ),
                    );
                }
                if !super::FINAL_STATUSES.contains(&f.abort_status) {
                    self.problem(
                        &at_fault("abort_status"),
                        format!(
                            "{} is not a final HTTP status; allowed: 200 to 599",
                            f.abort_status
                        ),
                    );
                }
            }
        }
    }
}

/// A library config that can validate itself.
trait Validate {
    fn check(&self) -> Result<(), ConfigError>;
}

impl Validate for RetryConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

impl Validate for RateLimitConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

impl Validate for CircuitBreakerConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

impl Validate for palisade::policy::adaptive_concurrency::AdaptiveConcurrencyConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.validate()
    }
}

mod adaptive;
mod fleet;
mod sagas;
#[cfg(test)]
mod tests;
