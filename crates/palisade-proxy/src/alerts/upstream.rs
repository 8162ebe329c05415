//! The rules of one upstream, each only when the upstream has the policy it watches.
//!
//! | alert | written when | fires when | for | severity |
//! |---|---|---|---|---|
//! | `PalisadeCircuitOpen` | the breaker is not `disabled` | a breaker is open or half-open | 1m | critical for `scope = "upstream"`, warning per endpoint |
//! | `PalisadeRetryBudgetExhausted` | `retry.budget` is set and `max_attempts` > 1 | the budget refused a retry in the last 5m | 5m | warning |
//! | `PalisadeBulkheadSaturated` | `[upstream.bulkhead]` | on average 90% of its slots taken over 5m, or a refusal in the last 5m | 5m | warning |
//! | `PalisadeRateLimited` | `[upstream.rate_limit]` | more than 5% of its decisions over 5m were refusals | 5m | warning |
//! | `PalisadeLoadShedding` | `[upstream.load_shedding]` | a request of a class was shed in the last 5m | 5m | warning |
//! | `PalisadeNoHealthyEndpoint` | `[upstream.health_check]` | every endpoint (backups too) fails its checks, or requests were refused for it in the last 5m | 1m | critical |
//!
//! The series are the policies' own, labelled `policy` with the upstream's name (an
//! endpoint's breaker: `{upstream}/{endpoint}`), and the proxy's per upstream.

use palisade::policy::circuit_breaker::{BreakerMode, CircuitState};

use super::promql::{Scope, eq, one_of};
use super::rule::{Alert, Rule, Severity};
use crate::config::load::UpstreamPolicies;
use crate::config::{BreakerScope, Upstream};

/// How long a breaker may stay open or half-open before its alert fires.
pub const BREAKER_OPEN_FOR: &str = "1m";
/// The window of every rate, and how long a saturation must last.
pub const WINDOW: &str = "5m";
/// The share of a bulkhead's slots, taken on average over [`WINDOW`], that saturates it.
pub const BULKHEAD_BUSY_SHARE: f64 = 0.9;
/// The share of a rate limiter's decisions that are refusals, over [`WINDOW`], that alerts.
pub const RATE_LIMITED_SHARE: f64 = 0.05;
/// How long every endpoint may fail its checks before the alert fires.
pub const NO_ENDPOINT_FOR: &str = "1m";

/// The rules of upstream `u` (policies `p`).
pub(super) fn rules(u: &Upstream, p: &UpstreamPolicies, scope: &Scope) -> Vec<Rule> {
    [
        breaker(u, p, scope),
        retry_budget(u, p, scope),
        bulkhead(u, scope),
        rate_limit(u, scope),
        shedding(u, scope),
        endpoints(u, scope),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A rule about upstream `u`, labelled with its name.
fn rule(u: &Upstream, alert: Alert, expr: String, hold: &'static str) -> Rule {
    Rule {
        alert,
        expr,
        hold: Some(hold),
        severity: Severity::Warning,
        labels: vec![("upstream", u.name.clone())],
        summary: String::new(),
        description: String::new(),
    }
}

fn breaker(u: &Upstream, p: &UpstreamPolicies, scope: &Scope) -> Option<Rule> {
    if p.breaker.mode == BreakerMode::Disabled {
        return None;
    }
    let (policy, severity, what) = match u.circuit_breaker.scope {
        BreakerScope::Upstream => (
            eq("policy", &u.name),
            Severity::Critical,
            "every request to it is refused",
        ),
        BreakerScope::Endpoint => {
            let names: Vec<String> = u
                .endpoints
                .iter()
                .chain(&u.backup)
                .map(|e| format!("{}/{e}", u.name))
                .collect();
            (
                one_of("policy", names.iter().map(String::as_str)),
                Severity::Warning,
                "that endpoint is out of balancing; the others take its share",
            )
        }
    };
    let series = scope.select("palisade_circuit_state", &[policy]);
    let expr = format!(
        "{series} == {}\nor {series} == {}",
        CircuitState::Open.gauge(),
        CircuitState::HalfOpen.gauge()
    );
    Some(Rule {
        severity,
        summary: format!(
            "Breaker {{{{ $labels.policy }}}} of upstream {} open for over {BREAKER_OPEN_FOR}",
            u.name
        ),
        description: format!(
            "The breaker {{{{ $labels.policy }}}} on {{{{ $labels.instance }}}} has been open or \
             probing (half-open) for over {BREAKER_OPEN_FOR}: {what}. Its failures tripped it \
             and its probes keep failing."
        ),
        ..rule(u, Alert::CircuitOpen, expr, BREAKER_OPEN_FOR)
    })
}

fn retry_budget(u: &Upstream, p: &UpstreamPolicies, scope: &Scope) -> Option<Rule> {
    if p.retry.budget.is_none() || p.retry.max_attempts < 2 {
        return None;
    }
    let series = scope.select(
        "palisade_retry_budget_exhausted_total",
        &[eq("policy", &u.name)],
    );
    Some(Rule {
        summary: format!("Retries to upstream {} refused by their budget", u.name),
        description: format!(
            "The retry budget of upstream {} on {{{{ $labels.instance }}}} has refused retries \
             for over {WINDOW}: more requests fail than the budget lets be retried, so \
             clients see the first failure.",
            u.name
        ),
        ..rule(
            u,
            Alert::RetryBudgetExhausted,
            format!("rate({series}[{WINDOW}]) > 0"),
            WINDOW,
        )
    })
}

fn bulkhead(u: &Upstream, scope: &Scope) -> Option<Rule> {
    let bulkhead = u.bulkhead.as_ref()?;
    let policy = [eq("policy", &u.name)];
    let active = scope.select("palisade_bulkhead_active", &policy);
    let rejected = scope.select("palisade_bulkhead_rejected_total", &policy);
    let expr = format!(
        "avg_over_time({active}[{WINDOW}]) >= {BULKHEAD_BUSY_SHARE} * {max}\n\
         or rate({rejected}[{WINDOW}]) > 0",
        max = bulkhead.max_concurrent
    );
    Some(Rule {
        summary: format!("Bulkhead of upstream {} saturated", u.name),
        description: format!(
            "The bulkhead of upstream {} on {{{{ $labels.instance }}}} has had {} of its {} \
             slots taken on average, or refused requests (503 bulkhead-full), for over \
             {WINDOW}: the upstream is slower or busier than its limit allows for.",
            u.name,
            percent(BULKHEAD_BUSY_SHARE),
            bulkhead.max_concurrent
        ),
        ..rule(u, Alert::BulkheadSaturated, expr, WINDOW)
    })
}

fn rate_limit(u: &Upstream, scope: &Scope) -> Option<Rule> {
    u.rate_limit.as_ref()?;
    let limited = scope.select(
        "palisade_rate_limit_decisions_total",
        &[eq("policy", &u.name), eq("decision", "limited")],
    );
    let all = scope.select(
        "palisade_rate_limit_decisions_total",
        &[eq("policy", &u.name)],
    );
    let expr = format!(
        "sum without (decision, counting) (rate({limited}[{WINDOW}]))\n  \
         / sum without (decision, counting) (rate({all}[{WINDOW}]))\n  \
         > {RATE_LIMITED_SHARE}"
    );
    Some(Rule {
        summary: format!("Rate limit of upstream {} refuses requests", u.name),
        description: format!(
            "Over {} of the requests to upstream {} on {{{{ $labels.instance }}}} have been \
             refused by its rate limit (429 rate-limited) for over {WINDOW}.",
            percent(RATE_LIMITED_SHARE),
            u.name
        ),
        ..rule(u, Alert::RateLimited, expr, WINDOW)
    })
}

fn shedding(u: &Upstream, scope: &Scope) -> Option<Rule> {
    u.load_shedding.as_ref()?;
    let shed = scope.select("palisade_shed_total", &[eq("policy", &u.name)]);
    Some(Rule {
        summary: format!(
            "Upstream {} sheds {{{{ $labels.criticality }}}} requests",
            u.name
        ),
        description: format!(
            "Load shedding of upstream {} on {{{{ $labels.instance }}}} has dropped \
             {{{{ $labels.criticality }}}} requests (503 shed) for over {WINDOW}: more \
             arrive than the upstream serves.",
            u.name
        ),
        ..rule(
            u,
            Alert::LoadShedding,
            format!("rate({shed}[{WINDOW}]) > 0"),
            WINDOW,
        )
    })
}

fn endpoints(u: &Upstream, scope: &Scope) -> Option<Rule> {
    u.health_check.as_ref()?;
    let healthy = scope.select("palisade_endpoint_healthy", &[eq("upstream", &u.name)]);
    let refused = scope.select(
        "palisade_requests_total",
        &[
            eq("upstream", &u.name),
            eq("reason", crate::respond::Reason::NoHealthyEndpoint.as_str()),
        ],
    );
    let expr = format!(
        "max without (endpoint) ({healthy}) == 0\n\
         or sum without (route, status, reason) (rate({refused}[{WINDOW}])) > 0"
    );
    Some(Rule {
        severity: Severity::Critical,
        summary: format!("Upstream {} has no healthy endpoint", u.name),
        description: format!(
            "Every endpoint of upstream {} (backups too) fails its health checks on \
             {{{{ $labels.instance }}}}, or requests were refused for it \
             (503 no-healthy-endpoint): requests to it get errors or fallbacks.",
            u.name
        ),
        ..rule(u, Alert::NoHealthyEndpoint, expr, NO_ENDPOINT_FOR)
    })
}

/// `0.9` as `"90%"`.
fn percent(share: f64) -> String {
    format!("{}%", (share * 100.0).round())
}
