//! `palisade alerts --config FILE`: Prometheus alerting rules for a config's upstreams,
//! routes and sagas, each with a `runbook_url` to its section of docs/RUNBOOKS.md.
//!
//! A rule is written only where it applies: no breaker rule for an upstream whose breaker
//! is disabled, no bulkhead rule without a bulkhead, no saga rule without sagas. Each
//! selects its series by the names the config gives them (an upstream's policies are
//! labelled with its name, a route's requests with its path prefix), plus the matchers of
//! `--selector` (e.g. `job="checkout"`) so that one Prometheus can hold the rules of
//! several sidecars. Every threshold is a constant beside its rule, listed in
//! docs/RUNBOOKS.md.
//!
//! - `mod.rs` (here): the options, and the groups of rules for a config;
//! - `rule.rs`: an alert (name, runbook anchor), a rule, a group;
//! - `upstream.rs`: an upstream's rules (breaker, retry budget, bulkhead, rate limit,
//!   shedding, healthy endpoints);
//! - `route.rs`: a route's error-budget burn (multiwindow, multi-burn-rate);
//! - `saga.rs`: a saga's parked sagas;
//! - `promql.rs`: label matchers, escaped, and the `--selector` scope;
//! - `yaml.rs`: the rule file Prometheus loads (`groups:`).
//!
//! ```
//! use palisade_proxy::alerts::{Options, write};
//! let checked = palisade_proxy::config::parse("f.toml", r#"
//!     [listener]
//!     address = "127.0.0.1:8080"
//!     [[upstream]]
//!     name = "inventory"
//!     endpoints = ["127.0.0.1:9001"]
//!     [[route]]
//!     path_prefix = "/inventory"
//!     upstream = "inventory"
//! "#).unwrap();
//! let rules = write("f.toml", &checked, &Options::default()).unwrap();
//! assert!(rules.contains("alert: \"PalisadeCircuitOpen\""));
//! assert!(!rules.contains("PalisadeBulkheadSaturated"), "no bulkhead, no rule");
//! ```

mod promql;
mod route;
mod rule;
mod saga;
mod upstream;
mod yaml;

pub use promql::Scope;
pub use rule::{Alert, Group, Rule, Severity};

use std::collections::BTreeSet;

use crate::config::Checked;

/// The SLO of every route unless `--slo` says otherwise: 99.9% of answers not 5xx.
pub const DEFAULT_SLO: f64 = 99.9;

/// The SLOs `--slo` accepts, in percent: from 95 (below about 93.1, a fast burn of 14.4
/// times the budget would be more errors than requests) to under 100 (an SLO of 100% has
/// no budget).
pub const SLO_RANGE: std::ops::Range<f64> = 95.0..100.0;

/// What `palisade alerts` takes beside the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Where docs/RUNBOOKS.md is read; each rule links a section of it.
    pub runbook_base: String,
    /// Every route's SLO: the percent of answers that are not 5xx.
    pub slo: f64,
    /// Matchers added to every series selector, e.g. `job="checkout"`.
    pub selector: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runbook_base: crate::runbooks::DEFAULT_BASE.to_owned(),
            slo: DEFAULT_SLO,
            selector: None,
        }
    }
}

/// The rule file for `checked` (read from `source`), or what is wrong with the options.
pub fn write(source: &str, checked: &Checked, options: &Options) -> Result<String, String> {
    let scope = match &options.selector {
        Some(selector) => Scope::parse(selector).map_err(|e| format!("--selector: {e}"))?,
        None => Scope::default(),
    };
    if !SLO_RANGE.contains(&options.slo) {
        return Err(format!(
            "--slo: {} is out of range; allowed: {} to under {} (percent)",
            options.slo, SLO_RANGE.start, SLO_RANGE.end
        ));
    }
    let groups = groups(checked, options.slo, &scope);
    Ok(yaml::render(source, &groups, &options.runbook_base))
}

/// The groups of rules for `checked`: one per upstream that has any, one for the routes,
/// one for the sagas if there are any.
pub fn groups(checked: &Checked, slo: f64, scope: &Scope) -> Vec<Group> {
    let config = &checked.config;
    let mut groups: Vec<Group> = config
        .upstream
        .iter()
        .zip(&checked.upstreams)
        .map(|(u, p)| Group {
            name: format!("palisade-upstream-{}", u.name),
            rules: upstream::rules(u, p, scope),
        })
        .collect();
    let mut seen = BTreeSet::new();
    groups.push(Group {
        name: "palisade-routes".to_owned(),
        rules: config
            .route
            .iter()
            .filter(|r| seen.insert(r.path_prefix.as_str()))
            .flat_map(|r| route::rules(&r.path_prefix, slo, scope))
            .collect(),
    });
    groups.push(Group {
        name: "palisade-sagas".to_owned(),
        rules: config
            .saga
            .iter()
            .map(|s| saga::rule(&s.name, scope))
            .collect(),
    });
    groups.retain(|g| !g.rules.is_empty());
    groups
}

#[cfg(test)]
mod tests;
