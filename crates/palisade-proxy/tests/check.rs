//! `palisade check --config FILE`: `ok` and exit 0, or every problem as
//! `FILE:LINE: key: what is wrong; allowed: …` on stderr and a non-zero exit.

mod support;

use support::*;

const GOOD: &str = r#"[listener]
address = "127.0.0.1:8080"
[admin]
address = "127.0.0.1:9901"
[[upstream]]
name = "inventory"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]
backup = ["127.0.0.1:9003"]
balance = "p2c"
[upstream.timeout]
total = "2s"
per_try = "500ms"
[upstream.retry]
max_attempts = 3
backoff = "exponential"
base = "25ms"
max_delay = "250ms"
jitter = "full"
on = ["connect-failure", "reset", "timeout", "502", "503", "504"]
methods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
budget = { ratio = 0.2, min_per_second = 10 }
[upstream.circuit_breaker]
scope = "endpoint"
window = "count"
size = 20
failure_rate = 0.5
minimum_calls = 10
open_for = "5s"
max_open_for = "60s"
half_open_calls = 1
[upstream.bulkhead]
max_concurrent = 64
max_queue = 64
queue_timeout = "100ms"
[upstream.rate_limit]
per_second = 1000
burst = 100
[upstream.health_check]
path = "/health/ready"
interval = "2s"
timeout = "1s"
healthy_after = 2
unhealthy_after = 3
[[route]]
path_prefix = "/inventory"
upstream = "inventory"
[route.fallback]
status = 200
body = '{"items": [], "degraded": true}'
content_type = "application/json"
[route.fault]
abort_percent = 0.0
abort_status = 503
delay_percent = 0.0
delay = "0ms"
"#;

/// 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
        + 1
}

/// Runs check on `text` and returns its stderr lines, after asserting it failed.
async fn problems(text: &str) -> (String, Vec<String>) {
    let out = check(text).await;
    assert!(!out.status.success(), "an invalid config passed: {out:?}");
    assert!(
        !out.stdout.trim().starts_with("ok"),
        "printed ok for an invalid config: {out:?}"
    );
    let lines: Vec<String> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "nothing on stderr: {out:?}");
    (out.path, lines)
}

fn find<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no problem mentions {needle:?}: {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_config_prints_ok() {
    let out = check(GOOD).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.trim().starts_with("ok"), "{out:?}");
}

/// `palisade check --config FILE --strict` on `text`.
async fn check_strict(text: &str) -> CheckOutput {
    let path = temp_path("check-strict", "toml");
    std::fs::write(&path, text).expect("write config");
    let mut out = palisade(&[
        "check".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
        "--strict".as_ref(),
    ])
    .await;
    let _ = std::fs::remove_file(&path);
    out.path = path.display().to_string();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_mistakes_gets_no_advice_even_when_strict() {
    for out in [check(GOOD).await, check_strict(GOOD).await] {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "ok", "{out:?}");
        assert_eq!(out.stderr, "", "no warning: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_warns_with_its_line_and_fails_the_check_only_when_strict() {
    let text = GOOD.replace("jitter = \"full\"", "jitter = \"none\"");
    let line = line_of(&text, "jitter");
    let warning = |path: &str| {
        format!("{path}:{line}: warning: upstream[0].retry.jitter: jitter = \"none\": ")
    };
    let out = check(&text).await;
    assert!(out.status.success(), "a warning keeps exit 0: {out:?}");
    assert_eq!(out.stdout.trim(), "ok, with 1 warning(s)", "{out:?}");
    assert!(out.stderr.starts_with(&warning(&out.path)), "{out:?}");
    assert!(
        out.stderr
            .contains("RUNBOOKS.md#advice-retry-without-jitter]"),
        "{out:?}"
    );
    let strict = check_strict(&text).await;
    assert_eq!(
        strict.status.code(),
        Some(1),
        "--strict fails on a warning: {strict:?}"
    );
    assert!(
        strict.stderr.starts_with(&warning(&strict.path)),
        "{strict:?}"
    );
    assert!(strict.stderr.contains("--strict"), "{strict:?}");
    assert!(!strict.stdout.contains("ok"), "{strict:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_gets_its_problems_and_no_advice() {
    let text = GOOD
        .replace("jitter = \"full\"", "jitter = \"none\"")
        .replace("failure_rate = 0.5", "failure_rate = 1.5");
    let out = check_strict(&text).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("failure_rate: 1.5 is out of range"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("warning"),
        "advice waits for a valid file: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_value_names_file_line_key_and_what_is_allowed() {
    let text = GOOD.replace("failure_rate = 0.5", "failure_rate = 1.5");
    let line = line_of(&text, "failure_rate");
    let (path, lines) = problems(&text).await;
    let want = format!(
        "{path}:{line}: upstream[0].circuit_breaker.failure_rate: 1.5 is out of range; allowed: greater than 0 and at most 1"
    );
    assert!(
        lines.iter().any(|l| l.trim() == want),
        "want {want:?} in {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_semantic_problem_is_reported() {
    let text = GOOD
        .replace("failure_rate = 0.5", "failure_rate = 1.5")
        .replace("upstream = \"inventory\"", "upstream = \"missing\"")
        .replace("address = \"127.0.0.1:9901\"", "address = \"0.0.0.0:9901\"");
    let (path, lines) = problems(&text).await;
    let admin = find(&lines, "admin.address");
    assert!(
        admin.starts_with(&format!(
            "{path}:{}: admin.address: ",
            line_of(&text, "address = \"0.0.0.0")
        )),
        "{admin}"
    );
    assert!(admin.contains("; allowed: "), "{admin}");
    let rate = find(&lines, "failure_rate");
    assert!(
        rate.starts_with(&format!("{path}:{}: ", line_of(&text, "failure_rate"))),
        "{rate}"
    );
    let route = find(&lines, "route[0].upstream");
    assert!(
        route.starts_with(&format!(
            "{path}:{}: route[0].upstream: ",
            line_of(&text, "upstream = \"missing\"")
        )),
        "{route}"
    );
    assert!(
        route.contains("missing") && route.contains("; allowed: "),
        "{route}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_reported_with_its_line() {
    let text = GOOD.replace("balance = \"p2c\"", "balance = \"p2c\"\nbalancer = \"p2c\"");
    let (path, lines) = problems(&text).await;
    let p = find(&lines, "balancer");
    assert!(
        p.starts_with(&format!("{path}:{}: ", line_of(&text, "balancer"))),
        "{p}"
    );
    assert!(
        p.contains("unknown key") && p.contains("; allowed: "),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_is_reported_with_its_line() {
    let text = GOOD.replace("name = \"inventory\"", "name = 7");
    let (path, lines) = problems(&text).await;
    let p = find(&lines, "name");
    assert!(
        p.starts_with(&format!("{path}:{}: ", line_of(&text, "name = 7"))),
        "{p}"
    );
    assert!(p.contains("; allowed"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_duration_is_reported_with_its_line() {
    let text = GOOD.replace("total = \"2s\"", "total = \"5 parsecs\"");
    let (path, lines) = problems(&text).await;
    let p = find(&lines, "total");
    assert!(
        p.starts_with(&format!(
            "{path}:{}: ",
            line_of(&text, "total = \"5 parsecs\"")
        )),
        "{p}"
    );
    assert!(p.contains("; allowed"), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_an_error() {
    let path = temp_path("missing", "toml");
    let out = check_file(&path).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&out.path), "{out:?}");
}
