//! The rules written for configs with and without each policy.

use super::*;
use crate::config::parse;

const HEAD: &str = r#"
[listener]
address = "127.0.0.1:8080"
"#;

/// An upstream with every policy a rule watches, breakers per endpoint.
const RICH: &str = r#"
[[upstream]]
name = "inventory"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]
backup = ["127.0.0.1:9003"]
[upstream.retry]
budget = { ratio = 0.2 }
[upstream.bulkhead]
max_concurrent = 40
[upstream.rate_limit]
per_second = 100
[upstream.load_shedding]
max_concurrent = 32
[upstream.health_check]
path = "/health"

[[upstream]]
name = "payments"
endpoints = ["127.0.0.1:9101"]
[upstream.circuit_breaker]
scope = "upstream"

[[route]]
path_prefix = "/inventory"
upstream = "inventory"

[[route]]
path_prefix = "/pay"
upstream = "payments"
"#;

const SAGA: &str = r#"
[saga_store]
url = "sqlite://sagas.db"
[[saga]]
name = "checkout"
[[saga.step]]
name = "charge"
upstream = "payments"
method = "POST"
path = "/charges"
[[route]]
path_prefix = "/checkout"
saga = "checkout"
"#;

fn checked(text: &str) -> Checked {
    parse("test.toml", &format!("{HEAD}{text}")).unwrap_or_else(|p| panic!("{p}"))
}

fn rules_of(text: &str) -> Vec<Rule> {
    groups(&checked(text), DEFAULT_SLO, &Scope::default())
        .into_iter()
        .flat_map(|g| g.rules)
        .collect()
}

/// The rules raising `alert` with label `label` = `value`.
fn find<'a>(rules: &'a [Rule], alert: Alert, label: (&str, &str)) -> Vec<&'a Rule> {
    rules
        .iter()
        .filter(|r| r.alert == alert)
        .filter(|r| r.labels.iter().any(|(k, v)| *k == label.0 && v == label.1))
        .collect()
}

/// `expr` on one line, its whitespace single spaces.
fn flat(expr: &str) -> String {
    expr.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn alerts_of(rules: &[Rule]) -> BTreeSet<&'static str> {
    rules.iter().map(|r| r.alert.name()).collect()
}

#[test]
fn an_upstream_with_every_policy_gets_every_upstream_rule() {
    let rules = rules_of(RICH);
    let inventory: BTreeSet<_> = rules
        .iter()
        .filter(|r| r.labels.contains(&("upstream", "inventory".to_owned())))
        .map(|r| r.alert)
        .map(Alert::name)
        .collect();
    let expected: BTreeSet<_> = [
        Alert::CircuitOpen,
        Alert::RetryBudgetExhausted,
        Alert::BulkheadSaturated,
        Alert::RateLimited,
        Alert::LoadShedding,
        Alert::NoHealthyEndpoint,
    ]
    .map(Alert::name)
    .into_iter()
    .collect();
    assert_eq!(inventory, expected);
}

#[test]
fn an_upstream_with_defaults_gets_its_breaker_rule_only() {
    let rules = rules_of(RICH);
    let payments: Vec<_> = rules
        .iter()
        .filter(|r| r.labels.contains(&("upstream", "payments".to_owned())))
        .map(|r| r.alert)
        .collect();
    assert_eq!(
        payments,
        [Alert::CircuitOpen],
        "defaults: a breaker, no budget, no limits"
    );
}

#[test]
fn the_breaker_rule_selects_each_endpoint_breaker_or_the_upstream_one() {
    let rules = rules_of(RICH);
    let per_endpoint = find(&rules, Alert::CircuitOpen, ("upstream", "inventory"));
    let [rule] = per_endpoint.as_slice() else {
        panic!("one breaker rule: {per_endpoint:?}");
    };
    let selector = r#"palisade_circuit_state{policy=~"(inventory/127\\.0\\.0\\.1:9001|inventory/127\\.0\\.0\\.1:9002|inventory/127\\.0\\.0\\.1:9003)"}"#;
    assert_eq!(
        flat(&rule.expr),
        format!("{selector} == 1 or {selector} == 2")
    );
    assert_eq!((rule.hold, rule.severity), (Some("1m"), Severity::Warning));
    let upstream_wide = find(&rules, Alert::CircuitOpen, ("upstream", "payments"));
    assert!(
        upstream_wide[0]
            .expr
            .starts_with(r#"palisade_circuit_state{policy="payments"} == 1"#),
        "{:?}",
        upstream_wide[0].expr
    );
    assert_eq!(
        upstream_wide[0].severity,
        Severity::Critical,
        "every request refused"
    );
}

#[test]
fn policies_that_cannot_act_get_no_rule() {
    let rules = rules_of(
        r#"
[[upstream]]
name = "a"
endpoints = ["127.0.0.1:9001"]
[upstream.retry]
max_attempts = 1
budget = { ratio = 0.2 }
[upstream.circuit_breaker]
mode = "disabled"
[[route]]
path_prefix = "/"
upstream = "a"
"#,
    );
    assert_eq!(
        alerts_of(&rules),
        [Alert::ErrorBudgetFastBurn, Alert::ErrorBudgetSlowBurn]
            .map(Alert::name)
            .into_iter()
            .collect(),
        "no breaker, no retries: only the route's rules"
    );
}

#[test]
fn every_route_gets_a_fast_and_a_slow_burn_rule_once() {
    let rules = rules_of(&format!(
        "{RICH}\n[[route]]\npath_prefix = \"/pay\"\nupstream = \"inventory\"\n"
    ));
    for route in ["/inventory", "/pay"] {
        let fast = find(&rules, Alert::ErrorBudgetFastBurn, ("route", route));
        let slow = find(&rules, Alert::ErrorBudgetSlowBurn, ("route", route));
        assert_eq!((fast.len(), slow.len()), (1, 1), "{route}");
    }
    let fast = find(&rules, Alert::ErrorBudgetFastBurn, ("route", "/pay"))[0];
    let ratio = |w: &str| {
        format!(
            r#"sum by (route) (rate(palisade_requests_total{{route="/pay",status=~"5.."}}[{w}])) / sum by (route) (rate(palisade_requests_total{{route="/pay"}}[{w}]))"#
        )
    };
    let threshold = "14.4 * (100 - 99.9) / 100";
    assert_eq!(
        flat(&fast.expr),
        format!(
            "{} > {threshold} and {} > {threshold}",
            ratio("1h"),
            ratio("5m")
        )
    );
    assert_eq!(fast.severity, Severity::Critical);
    let slow = find(&rules, Alert::ErrorBudgetSlowBurn, ("route", "/pay"))[0];
    assert!(slow.expr.contains("[6h]") && slow.expr.contains("[30m]"));
    assert!(
        slow.expr.contains("6 * (100 - 99.9) / 100"),
        "{}",
        slow.expr
    );
    assert!(
        slow.description.contains("the 0.1% of errors"),
        "{}",
        slow.description
    );
}

#[test]
fn sagas_get_their_parked_rule_and_their_routes_a_budget() {
    let rules = rules_of(&format!("{RICH}{SAGA}"));
    let parked = find(&rules, Alert::SagaParked, ("saga", "checkout"));
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].expr,
        r#"max by (saga) (palisade_sagas_parked{saga="checkout"}) > 0"#
    );
    assert_eq!(
        find(&rules, Alert::ErrorBudgetFastBurn, ("route", "/checkout")).len(),
        1
    );
    assert!(
        !alerts_of(&rules_of(RICH)).contains(Alert::SagaParked.name()),
        "no sagas, no saga rule"
    );
}

#[test]
fn the_rich_configs_raise_every_alert() {
    let all: BTreeSet<_> = Alert::ALL.map(Alert::name).into_iter().collect();
    assert_eq!(alerts_of(&rules_of(&format!("{RICH}{SAGA}"))), all);
}

#[test]
fn the_selector_goes_into_every_series_selector() {
    let checked = checked(&format!("{RICH}{SAGA}"));
    let options = Options {
        selector: Some(r#"job="shop""#.to_owned()),
        ..Options::default()
    };
    let text = write("f.toml", &checked, &options).unwrap();
    let selectors = text.matches("palisade_").count();
    let scoped = text.matches(r#",job="shop"}"#).count();
    assert!(selectors > 20, "{text}");
    assert_eq!(
        scoped, selectors,
        "every series selector is scoped:\n{text}"
    );
}

#[test]
fn bad_options_are_refused_with_the_option_named() {
    let checked = checked(RICH);
    for (options, says) in [
        (
            Options {
                slo: 100.0,
                ..Options::default()
            },
            "--slo: 100 is out of range",
        ),
        (
            Options {
                slo: 90.0,
                ..Options::default()
            },
            "--slo: 90 is out of range",
        ),
        (
            Options {
                selector: Some("job=shop".to_owned()),
                ..Options::default()
            },
            "--selector: expected a double-quoted value",
        ),
    ] {
        let error = write("f.toml", &checked, &options).unwrap_err();
        assert!(error.starts_with(says), "{error}");
    }
}

#[test]
fn every_rule_links_its_runbook_section() {
    let checked = checked(&format!("{RICH}{SAGA}"));
    let options = Options {
        runbook_base: "https://docs.example/RUNBOOKS.md".to_owned(),
        ..Options::default()
    };
    let text = write("f.toml", &checked, &options).unwrap();
    let alerts = text.matches("      - alert: ").count();
    let links = text
        .matches("          runbook_url: \"https://docs.example/RUNBOOKS.md#palisade")
        .count();
    assert_eq!(alerts, links, "{text}");
    assert!(text.contains("RUNBOOKS.md#palisadesagaparked\""));
}

#[test]
fn the_runbooks_table_gives_each_alerts_hold_and_severity() {
    let runbooks = include_str!("../../../../docs/RUNBOOKS.md");
    for rule in rules_of(&format!("{RICH}{SAGA}")) {
        let row = runbooks
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", rule.alert.name())))
            .unwrap_or_else(|| panic!("no row for {}", rule.alert.name()));
        let hold = format!("| {} |", rule.hold.unwrap_or("—"));
        assert!(row.contains(&hold), "{row} lacks {hold}");
        assert!(row.contains(rule.severity.as_str()), "{row}");
    }
    let row = |alert: Alert| {
        let start = format!("| `{}` |", alert.name());
        runbooks
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or("")
    };
    for burn in [route::FAST, route::SLOW] {
        let said = format!(
            "{} × (100 − SLO)% over {} and over {}",
            burn.rate, burn.long, burn.short
        );
        assert!(row(burn.alert).contains(&said), "{said}");
    }
    let busy = format!("{}%", upstream::BULKHEAD_BUSY_SHARE * 100.0);
    assert!(row(Alert::BulkheadSaturated).contains(&busy), "{busy}");
    let limited = format!("> {}%", upstream::RATE_LIMITED_SHARE * 100.0);
    assert!(row(Alert::RateLimited).contains(&limited), "{limited}");
}
