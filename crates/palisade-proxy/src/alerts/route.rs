//! Each route's error budget, watched as the Google SRE workbook's "multiwindow,
//! multi-burn-rate alerts" (chapter "Alerting on SLOs"): an alert fires when the share of
//! 5xx answers, over a long window *and* over a short one, is above `burn rate × (1 −
//! SLO)`. The long window keeps a blip from paging; the short one ends the alert soon
//! after the errors stop.
//!
//! | alert | burn rate | windows | budget (30 days) gone in | severity |
//! |---|---|---|---|---|
//! | `PalisadeErrorBudgetFastBurn` | 14.4 | 1h and 5m | about 2 days (2% of it spent in the hour) | critical |
//! | `PalisadeErrorBudgetSlowBurn` | 6 | 6h and 30m | about 5 days (5% of it spent in 6 hours) | warning |
//!
//! Errors are the answers with a 5xx status in `palisade_requests_total{route}`: relayed
//! ones and the proxy's own (502, 503, 504), summed over every instance. A route's
//! fallback answers with its own status, so requests it saves count as it answers them.

use super::promql::{Scope, eq, matches};
use super::rule::{Alert, Rule, Severity};

/// One alert of the pair.
#[derive(Clone, Copy, Debug)]
pub struct Burn {
    /// The alert it raises.
    pub alert: Alert,
    /// How many times faster than the budget allows errors come.
    pub rate: f64,
    /// The window that keeps a blip from firing it.
    pub long: &'static str,
    /// The window that ends it soon after the errors stop.
    pub short: &'static str,
    /// How urgent.
    pub severity: Severity,
    /// The 30-day budget lasts this long at that rate.
    pub budget_lasts: &'static str,
}

/// The fast burn: pages.
pub const FAST: Burn = Burn {
    alert: Alert::ErrorBudgetFastBurn,
    rate: 14.4,
    long: "1h",
    short: "5m",
    severity: Severity::Critical,
    budget_lasts: "about 2 days",
};

/// The slow burn: a ticket.
pub const SLOW: Burn = Burn {
    alert: Alert::ErrorBudgetSlowBurn,
    rate: 6.0,
    long: "6h",
    short: "30m",
    severity: Severity::Warning,
    budget_lasts: "about 5 days",
};

/// The two rules of the route at `prefix`, for an SLO of `slo` percent of answers that
/// are not 5xx (95 to under 100).
pub(super) fn rules(prefix: &str, slo: f64, scope: &Scope) -> Vec<Rule> {
    [FAST, SLOW]
        .into_iter()
        .map(|burn| rule(prefix, slo, burn, scope))
        .collect()
}

fn rule(prefix: &str, slo: f64, burn: Burn, scope: &Scope) -> Rule {
    let threshold = format!("{} * (100 - {slo}) / 100", burn.rate);
    let expr = format!(
        "{long}\n  > {threshold}\nand\n{short}\n  > {threshold}",
        long = error_ratio(prefix, burn.long, scope),
        short = error_ratio(prefix, burn.short, scope),
    );
    Rule {
        alert: burn.alert,
        expr,
        hold: None,
        severity: burn.severity,
        labels: vec![("route", prefix.to_owned())],
        summary: format!(
            "Route {prefix} burns its error budget {}x too fast",
            burn.rate
        ),
        description: format!(
            "Over the last {} and {}, more than {}x the {}% of errors an SLO of {slo}% allows \
             were 5xx answers on route {prefix} ({{{{ $value | humanizePercentage }}}} over \
             {}): at this rate the 30-day error budget lasts {}.",
            burn.long,
            burn.short,
            burn.rate,
            round(100.0 - slo),
            burn.long,
            burn.budget_lasts
        ),
    }
}

/// The share of 5xx answers on the route over `window`, summed over instances.
fn error_ratio(prefix: &str, window: &str, scope: &Scope) -> String {
    let route = eq("route", prefix);
    let errors = scope.select(
        "palisade_requests_total",
        &[route.clone(), matches("status", "5..")],
    );
    let all = scope.select("palisade_requests_total", &[route]);
    format!("sum by (route) (rate({errors}[{window}]))\n  / sum by (route) (rate({all}[{window}]))")
}

/// `x` without the noise of binary fractions (`100 - 99.9` is `0.1`, not
/// `0.09999999999999432`).
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
