//! `palisade alerts --config FILE`, black-box: the rules it writes for a config with every
//! policy load in Prometheus (`promtool check rules`), fire on series in trouble and stay
//! silent on healthy ones (`promtool test rules`), and those series are the ones the
//! running proxy exports, names and labels.
//!
//! `promtool` comes with Debian's `prometheus` package; without it the promtool tests say
//! loudly that they skipped, and fail when `CI` is set (`.ci/run` installs it).

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use support::*;

/// Upstreams with every policy a rule watches (`inventory` with breakers per endpoint,
/// `payments` with one for the upstream), three routes, a saga.
fn rich(endpoints: &[String; 3], payments: &str, store: &Path) -> String {
    let [a, b, backup] = endpoints;
    format!(
        r#"
[[upstream]]
name = "inventory"
endpoints = ["{a}", "{b}"]
backup = ["{backup}"]
[upstream.retry]
budget = {{ ratio = 0.2 }}
[upstream.bulkhead]
max_concurrent = 40
[upstream.rate_limit]
per_second = 100
[upstream.load_shedding]
max_concurrent = 32
[upstream.health_check]
path = "/health"
interval = "1s"

[[upstream]]
name = "payments"
endpoints = ["{payments}"]
[upstream.circuit_breaker]
scope = "upstream"

[[route]]
path_prefix = "/inventory"
upstream = "inventory"

[[route]]
path_prefix = "/pay"
upstream = "payments"

[saga_store]
url = "sqlite://{store}"

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
"#,
        store = store.display()
    )
}

/// Addresses for the rich config's endpoints and payments.
fn addresses() -> ([String; 3], String) {
    let dead = || dead_addr().to_string();
    ([dead(), dead(), dead()], dead())
}

/// The rules `palisade alerts` writes for `body` (after a `[listener]`), in a file.
async fn rules_file(body: &str, args: &[&str]) -> PathBuf {
    let config = temp_path("alerts-config", "toml");
    std::fs::write(
        &config,
        config_text(dead_addr(), dead_addr(), &Sections::default(), body),
    )
    .expect("write config");
    let mut all: Vec<&OsStr> = vec!["alerts".as_ref(), "--config".as_ref(), config.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    let out = palisade(&all).await;
    let _ = std::fs::remove_file(&config);
    assert!(out.status.success(), "palisade alerts failed: {out:?}");
    let rules = temp_path("alerts-rules", "yml");
    std::fs::write(&rules, &out.stdout).expect("write rules");
    rules
}

#[tokio::test]
async fn the_rules_of_a_config_with_every_policy_load_in_prometheus() {
    if !installed("promtool", "prometheus") {
        return;
    }
    let (endpoints, payments) = addresses();
    let body = rich(&endpoints, &payments, Path::new("/tmp/sagas.db"));
    for args in [
        &[][..],
        &[
            "--selector",
            r#"job="shop", env=~"prod|staging""#,
            "--slo",
            "99.5",
        ],
    ] {
        let rules = rules_file(&body, args).await;
        let text = std::fs::read_to_string(&rules).expect("read rules");
        let alerts = text.matches("      - alert: ").count();
        let (ok, said) = promtool(&["check".as_ref(), "rules".as_ref(), rules.as_os_str()]).await;
        let _ = std::fs::remove_file(&rules);
        assert!(
            ok,
            "promtool check rules refused them ({args:?}):\n{said}\n{text}"
        );
        assert!(
            said.contains(&format!("SUCCESS: {alerts} rules found")),
            "{said}"
        );
        assert!(alerts >= 14, "{text}");
    }
}

/// The series of the rich config's metrics over 30 minutes, in trouble or healthy, as
/// `promtool test rules` takes them: labelled as the proxy labels them (and by the
/// scrape, `instance` and `job`).
fn series(endpoints: &[String; 3], trouble: bool) -> Vec<(String, String)> {
    let pick = |bad: &str, good: &str| if trouble { bad } else { good }.to_owned();
    let mut all = vec![
        (
            format!(r#"palisade_circuit_state{{policy="inventory/{}"}}"#, endpoints[0]),
            pick("1x30", "0x30"),
        ),
        (
            r#"palisade_circuit_state{policy="payments"}"#.to_owned(),
            pick("2x30", "0x30"),
        ),
        (
            r#"palisade_retry_budget_exhausted_total{policy="inventory"}"#.to_owned(),
            pick("0+5x30", "0x30"),
        ),
        (
            r#"palisade_bulkhead_active{policy="inventory"}"#.to_owned(),
            pick("40x30", "3x30"),
        ),
        (
            r#"palisade_bulkhead_rejected_total{policy="inventory"}"#.to_owned(),
            "0x30".to_owned(),
        ),
        (
            r#"palisade_rate_limit_decisions_total{policy="inventory",decision="limited"}"#
                .to_owned(),
            pick("0+10x30", "0x30"),
        ),
        (
            r#"palisade_rate_limit_decisions_total{policy="inventory",decision="allowed"}"#
                .to_owned(),
            "0+90x30".to_owned(),
        ),
        (
            r#"palisade_shed_total{policy="inventory",criticality="sheddable"}"#.to_owned(),
            pick("0+3x30", "0x30"),
        ),
        (
            r#"palisade_requests_total{route="/inventory",upstream="inventory",status="200",reason="upstream"}"#
                .to_owned(),
            "0+900x30".to_owned(),
        ),
        (
            r#"palisade_requests_total{route="/inventory",upstream="inventory",status="503",reason="circuit-open"}"#
                .to_owned(),
            pick("0+100x30", "0x30"),
        ),
        (
            r#"palisade_sagas_parked{saga="checkout"}"#.to_owned(),
            pick("1x30", "0x30"),
        ),
    ];
    for endpoint in endpoints {
        all.push((
            format!(r#"palisade_endpoint_healthy{{upstream="inventory",endpoint="{endpoint}"}}"#),
            pick("0x30", "1x30"),
        ));
    }
    for endpoint in &endpoints[1..] {
        all.push((
            format!(r#"palisade_circuit_state{{policy="inventory/{endpoint}"}}"#),
            "0x30".to_owned(),
        ));
    }
    all
}

/// A `promtool test rules` file: `rules` over the series of both scenarios, with what
/// must be firing after 10 minutes.
fn rule_test(rules: &Path, endpoints: &[String; 3]) -> String {
    let scenario = |trouble: bool, expected: &str| {
        let input: String = series(endpoints, trouble)
            .into_iter()
            .map(|(name, values)| {
                let labelled = name.replacen('{', r#"{instance="sidecar:9901",job="shop","#, 1);
                format!("      - series: '{labelled}'\n        values: '{values}'\n")
            })
            .collect();
        format!("  - interval: 1m\n    input_series:\n{input}    promql_expr_test:\n{expected}")
    };
    let firing: String = [
        "PalisadeCircuitOpen",
        "PalisadeErrorBudgetFastBurn",
        "PalisadeErrorBudgetSlowBurn",
        "PalisadeRetryBudgetExhausted",
        "PalisadeBulkheadSaturated",
        "PalisadeRateLimited",
        "PalisadeLoadShedding",
        "PalisadeNoHealthyEndpoint",
        "PalisadeSagaParked",
    ]
    .iter()
    .map(|a| format!("          - labels: '{{alertname=\"{a}\"}}'\n            value: 1\n"))
    .collect();
    let trouble = format!(
        "      - expr: group by (alertname) (ALERTS{{alertstate=\"firing\"}})\n        eval_time: 10m\n        exp_samples:\n{firing}"
    );
    let healthy = "      - expr: count(ALERTS) or vector(0)\n        eval_time: 10m\n        exp_samples:\n          - labels: '{}'\n            value: 0\n";
    format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n{}{}",
        rules.display(),
        scenario(true, &trouble),
        scenario(false, healthy)
    )
}

#[tokio::test]
async fn every_alert_fires_on_series_in_trouble_and_none_on_healthy_ones() {
    if !installed("promtool", "prometheus") {
        return;
    }
    let (endpoints, payments) = addresses();
    let rules = rules_file(&rich(&endpoints, &payments, Path::new("/tmp/s.db")), &[]).await;
    let test = temp_path("alerts-test", "yml");
    let text = rule_test(&rules, &endpoints);
    std::fs::write(&test, &text).expect("write the rule test");
    let (ok, said) = promtool(&["test".as_ref(), "rules".as_ref(), test.as_os_str()]).await;
    for file in [&rules, &test] {
        let _ = std::fs::remove_file(file);
    }
    assert!(ok, "promtool test rules:\n{said}\n--- test file:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_the_rules_read_are_the_ones_the_proxy_exports() {
    let (endpoints, payments) = addresses();
    let store = temp_path("alerts-sagas", "db");
    let proxy = Proxy::start(&rich(&endpoints, &payments, &store)).await;
    // A request creates its route's counter (the others exist from the start).
    let answer = proxy.get("/inventory").await;
    assert!(answer.status >= 500, "{answer:?}");
    let exported = proxy.metrics().await;
    for (name, _) in series(&endpoints, true) {
        let (metric, labels) = name.split_once('{').expect("a selector with labels");
        let labels: Vec<(&str, &str)> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let wanted: Vec<(&str, &str)> = if metric == "palisade_requests_total" {
            // Its status and reason are this request's; the names are what matters.
            let found = matching(&exported, metric, &labels[..2]);
            let keys: Vec<&str> = found
                .first()
                .map(|s| s.labels.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(keys, ["reason", "route", "status", "upstream"], "{found:?}");
            labels[..2].to_vec()
        } else {
            labels
        };
        assert!(
            !matching(&exported, metric, &wanted).is_empty(),
            "the proxy exports no {metric} with {wanted:?}; it has {:?}",
            matching(&exported, metric, &[])
        );
    }
    drop(proxy);
    let _ = std::fs::remove_file(&store);
}

#[tokio::test]
async fn a_bad_config_or_option_exits_non_zero_with_the_reason() {
    let (endpoints, payments) = addresses();
    let config = temp_path("alerts-bad", "toml");
    let body = rich(&endpoints, &payments, Path::new("/tmp/s.db"));
    std::fs::write(
        &config,
        config_text(dead_addr(), dead_addr(), &Sections::default(), &body),
    )
    .expect("write config");
    let run = |args: Vec<&'static str>| {
        let config = config.clone();
        async move {
            let mut all: Vec<&OsStr> =
                vec!["alerts".as_ref(), "--config".as_ref(), config.as_os_str()];
            all.extend(args.iter().map(OsStr::new));
            palisade(&all).await
        }
    };
    let slo = run(vec!["--slo", "100"]).await;
    assert_eq!(slo.status.code(), Some(2), "{slo:?}");
    assert!(slo.stderr.contains("--slo: 100 is out of range"), "{slo:?}");
    let selector = run(vec!["--selector", "job=shop"]).await;
    assert_eq!(selector.status.code(), Some(2), "{selector:?}");
    assert!(
        selector.stdout.is_empty(),
        "no rules on a bad option: {selector:?}"
    );
    std::fs::write(
        &config,
        "[listener]\naddress = \"127.0.0.1:1\"\nbogus = 1\n",
    )
    .expect("write");
    let bad = run(vec![]).await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(bad.stderr.contains(":3: bogus: unknown key"), "{bad:?}");
    let _ = std::fs::remove_file(&config);
}
