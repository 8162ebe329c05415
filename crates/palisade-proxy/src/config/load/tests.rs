use super::*;

/// The example from the config contract, verbatim.
pub(crate) const CONTRACT: &str = r#"
[listener]
address = "127.0.0.1:8080"
[admin]
address = "127.0.0.1:9901"          # loopback by default
# token = "..."                     # required for POST endpoints when not on loopback

[[upstream]]
name = "inventory"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]   # active-active
backup = ["127.0.0.1:9003"]         # active-passive: used only when no primary is healthy
balance = "p2c"                     # p2c (peak-EWMA) | round_robin | random
[upstream.timeout]
total = "2s"                        # whole request: every attempt and every backoff
per_try = "500ms"
[upstream.retry]
max_attempts = 3
backoff = "exponential"             # constant | linear | fibonacci | exponential | decorrelated
base = "25ms"
max_delay = "250ms"
jitter = "full"                     # none | full | equal | proportional
on = ["connect-failure", "reset", "timeout", "502", "503", "504"]
methods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]  # plus any request with Idempotency-Key
budget = { ratio = 0.2, min_per_second = 10 }
[upstream.circuit_breaker]
scope = "endpoint"                  # endpoint (outlier ejection) | upstream
window = "count"                    # count | time | consecutive
size = 20                           # calls, seconds or consecutive failures
failure_rate = 0.5
minimum_calls = 10
slow_call_duration = "1s"
slow_call_rate = 1.0
open_for = "5s"                     # grows while probes keep failing, jittered
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
[route.fallback]                    # served instead of an error when resilience gives up
status = 200
body = '{"items": [], "degraded": true}'
content_type = "application/json"
[route.fault]                       # fault injection; absent = off
abort_percent = 0.0
abort_status = 503
delay_percent = 0.0
delay = "0ms"
"#;

pub(super) const MINIMAL: &str = r#"
[listener]
address = "127.0.0.1:8080"
[[upstream]]
name = "api"
endpoints = ["127.0.0.1:9001"]
[[route]]
path_prefix = "/"
upstream = "api"
"#;

fn problems(text: &str) -> Vec<String> {
    parse("c.toml", text)
        .unwrap_err()
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_contract_example_is_valid() {
    let checked = parse("c.toml", CONTRACT).unwrap();
    let u = &checked.upstreams[0];
    assert_eq!(u.retry.max_attempts, 3);
    assert_eq!(u.retry.budget.as_ref().unwrap().min_per_second, 10);
    assert_eq!(u.breaker.size, 20);
    assert_eq!(u.breaker.half_open_calls, 1);
    assert_eq!(checked.config.upstream[0].backup, ["127.0.0.1:9003"]);
}

#[test]
fn a_minimal_file_takes_every_default() {
    let checked = parse("c.toml", MINIMAL).unwrap();
    assert_eq!(
        checked.config.upstream[0].timeout.per_try,
        Duration::from_secs(5)
    );
    assert_eq!(checked.upstreams[0].methods.len(), 5);
}

#[test]
fn unknown_keys_name_the_key_and_the_line() {
    let text = MINIMAL.replace("name = \"api\"", "name = \"api\"\nendpoint = [\"x\"]");
    assert_eq!(problems(&text).len(), 1);
    let p = &problems(&text)[0];
    assert!(
        p.starts_with("c.toml:6: endpoint: unknown key; allowed:"),
        "{p}"
    );
}

#[test]
fn unknown_keys_inside_policy_sections_are_found_too() {
    let text = format!("{MINIMAL}[upstream.circuit_breaker]\nfailure_ratio = 0.5\n");
    let p = problems(&text);
    assert!(
        p[0].starts_with(
            "c.toml:11: upstream[0].circuit_breaker.failure_ratio: unknown key; allowed:"
        ),
        "{p:?}"
    );
}

#[test]
fn wrong_types_and_bad_durations_name_the_line() {
    let text = MINIMAL.replace(
        "endpoints = [\"127.0.0.1:9001\"]",
        "endpoints = [\"127.0.0.1:9001\"]\n[upstream.timeout]\ntotal = \"5 parsecs\"",
    );
    let p = problems(&text);
    assert!(p[0].starts_with("c.toml:8: total:"), "{p:?}");
    let text = MINIMAL.replace("name = \"api\"", "name = 7");
    let p = problems(&text);
    assert!(p[0].starts_with("c.toml:5: name: invalid type"), "{p:?}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let text = r#"
[listener]
address = "127.0.0.1:8080"
[admin]
address = "0.0.0.0:9901"
[[upstream]]
name = "api"
endpoints = ["nowhere"]
[upstream.retry]
max_attempts = 0
on = ["sometimes"]
[upstream.circuit_breaker]
failure_rate = 1.5
[[route]]
path_prefix = "/"
upstream = "missing"
"#;
    let p = problems(text);
    assert_eq!(
        p,
        [
            "c.toml:5: admin.address: 0.0.0.0:9901 is not loopback and no token is set; allowed: a loopback address, or set admin.token",
            "c.toml:8: upstream[0].endpoints: \"nowhere\" is not host:port; allowed: e.g. \"127.0.0.1:9001\"",
            "c.toml:10: upstream[0].retry.max_attempts: 0 is out of range; allowed: 1 to 100",
            "c.toml:11: upstream[0].retry.on: \"sometimes\" is not a retry condition; allowed: \"connect-failure\", \"reset\", \"timeout\", \"5xx\" or a status code from 400 to 527",
            "c.toml:13: upstream[0].circuit_breaker.failure_rate: 1.5 is out of range; allowed: greater than 0 and at most 1",
            "c.toml:16: route[0].upstream: \"missing\" is not a defined upstream; allowed: api",
        ]
    );
}

#[test]
fn missing_required_sections_are_reported() {
    let p = problems("[listener]\naddress = \"127.0.0.1:1\"\n");
    assert_eq!(p.len(), 2, "{p:?}");
    let p = problems("");
    assert!(p[0].contains("listener"), "{p:?}");
}

#[test]
fn a_blank_admin_token_is_refused() {
    let text = "[listener]\naddress = \"127.0.0.1:8080\"\n[admin]\naddress = \"0.0.0.0:9901\"\ntoken = \" \"\n[[upstream]]\nname = \"api\"\nendpoints = [\"127.0.0.1:9001\"]\n[[route]]\npath_prefix = \"/\"\nupstream = \"api\"\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("c.toml:5: admin.token: the token is blank"),
        "{p:?}"
    );
}

#[test]
fn informational_statuses_are_refused_for_fallbacks_and_aborts() {
    let text = "[listener]\naddress = \"127.0.0.1:8080\"\n[[upstream]]\nname = \"api\"\nendpoints = [\"127.0.0.1:9001\"]\n[[route]]\npath_prefix = \"/\"\nupstream = \"api\"\n[route.fallback]\nstatus = 103\n[route.fault]\nabort_status = 100\n";
    let p = problems(text);
    assert_eq!(
        p,
        [
            "c.toml:10: route[0].fallback.status: 103 is not a final HTTP status; allowed: 200 to 599",
            "c.toml:12: route[0].fault.abort_status: 100 is not a final HTTP status; allowed: 200 to 599",
        ]
    );
}

#[test]
fn connection_bounds_out_of_range_are_refused() {
    for (max, line) in [("0", "0"), ("1000001", "1000001")] {
        let text = MINIMAL.replace(
            "address = \"127.0.0.1:8080\"",
            &format!("address = \"127.0.0.1:8080\"\nmax_connections = {max}"),
        );
        assert_eq!(
            problems(&text),
            [format!(
                "c.toml:4: listener.max_connections: {line} is out of range; allowed: 1 to 1000000"
            )]
        );
    }
}

#[test]
fn connection_bounds_have_defaults_and_take_their_extremes() {
    let checked = parse("c.toml", MINIMAL).unwrap();
    assert_eq!(checked.config.listener.max_connections, 10_000);
    for listener in [1, 1_000_000] {
        let text = MINIMAL.replace(
            "address = \"127.0.0.1:8080\"",
            &format!("address = \"127.0.0.1:8080\"\nmax_connections = {listener}"),
        );
        let checked = parse("c.toml", &text).unwrap();
        assert_eq!(checked.config.listener.max_connections, listener);
    }
}

#[test]
fn admin_connection_bounds_out_of_range_are_refused() {
    let admin = |keys: &str| {
        MINIMAL.replace(
            "address = \"127.0.0.1:8080\"",
            &format!("address = \"127.0.0.1:8080\"\n[admin]\n{keys}"),
        )
    };
    assert_eq!(
        problems(&admin("header_timeout = \"0s\"\nmax_connections = 10001")),
        [
            "c.toml:5: admin.header_timeout: is 0; allowed: more than 0",
            "c.toml:6: admin.max_connections: 10001 is out of range; allowed: 1 to 10000",
        ]
    );
    assert_eq!(
        problems(&admin("max_connections = 0")),
        ["c.toml:5: admin.max_connections: 0 is out of range; allowed: 1 to 10000"]
    );
}

#[test]
fn admin_connection_bounds_have_defaults_and_take_their_extremes() {
    let checked = parse("c.toml", MINIMAL).unwrap();
    assert_eq!(checked.config.admin.max_connections, 64);
    assert_eq!(checked.config.admin.header_timeout, Duration::from_secs(10));
    for max in [1, 10_000] {
        let text = MINIMAL.replace(
            "address = \"127.0.0.1:8080\"",
            &format!(
                "address = \"127.0.0.1:8080\"\n[admin]\nmax_connections = {max}\nheader_timeout = \"1ms\""
            ),
        );
        let checked = parse("c.toml", &text).unwrap();
        assert_eq!(checked.config.admin.max_connections, max);
        assert_eq!(
            checked.config.admin.header_timeout,
            Duration::from_millis(1)
        );
    }
}

const FLEET: &str = "[fleet]\nredis = \"redis://127.0.0.1:6379\"\n";

#[test]
fn a_fleet_rate_limit_reads_into_the_fleet_policy() {
    let text = format!(
        "{FLEET}{MINIMAL}[upstream.rate_limit]\nscope = \"fleet\"\nper_second = 50\nburst = 5\nmode = \"lease\"\non_store_down = \"closed\"\n"
    );
    let checked = parse("c.toml", &text).unwrap();
    let Some(RateLimitPolicy::Fleet(limit)) = &checked.upstreams[0].rate_limit else {
        panic!("not a fleet limit: {:?}", checked.upstreams[0].rate_limit);
    };
    assert_eq!(
        (limit.name.as_str(), limit.per_second, limit.burst),
        ("api", 50.0, 5)
    );
    assert_eq!(limit.mode, palisade_fleet::Mode::Lease);
    assert_eq!(limit.on_store_down, palisade_fleet::OnStoreDown::Closed);
    // Without a scope it stays the sidecar's own.
    let own = format!("{MINIMAL}[upstream.rate_limit]\nper_second = 50\n");
    let checked = parse("c.toml", &own).unwrap();
    assert!(matches!(
        checked.upstreams[0].rate_limit,
        Some(RateLimitPolicy::Instance(_))
    ));
}

#[test]
fn a_fleet_scope_needs_a_fleet_section() {
    let text = format!("{MINIMAL}[upstream.rate_limit]\nscope = \"fleet\"\nper_second = 50\n");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("c.toml:11: upstream[0].rate_limit.scope: \"fleet\" needs a [fleet] section; allowed: add [fleet] redis"),
        "{p:?}"
    );
    let budget = MINIMAL.replace(
        "[[route]]",
        "[upstream.retry]\nbudget = { ratio = 0.1, scope = \"fleet\" }\n[[route]]",
    );
    let p = problems(&budget);
    assert!(
        p[0].contains("upstream[0].retry.budget.scope: \"fleet\" needs a [fleet] section"),
        "{p:?}"
    );
}

#[test]
fn a_fleet_retry_budget_leaves_the_instance_budget_out() {
    let text = format!(
        "{FLEET}{}",
        MINIMAL.replace(
            "[[route]]",
            "[upstream.retry]\nbudget = { ratio = 0.1, min_per_second = 3, scope = \"fleet\" }\n[[route]]",
        )
    );
    let checked = parse("c.toml", &text).unwrap();
    let u = &checked.upstreams[0];
    assert!(u.retry.budget.is_none(), "the local budget is not built");
    let fleet = u.fleet_budget.as_ref().unwrap();
    assert_eq!((fleet.ratio, fleet.min_per_second), (0.1, 3));
    let bad = text.replace("scope = \"fleet\"", "scope = \"galaxy\"");
    let p = problems(&bad);
    assert!(
        p[0].contains("upstream[0].retry.budget.scope: \"galaxy\" is not a scope; allowed: \"instance\" or \"fleet\""),
        "{p:?}"
    );
}

#[test]
fn bad_fleet_settings_name_their_key_and_line() {
    let url = "[fleet]\nredis = \"http://127.0.0.1:6379\"\n";
    let p = problems(&format!("{url}{MINIMAL}"));
    assert!(p[0].starts_with("c.toml:2: fleet.redis: "), "{p:?}");
    assert!(p[0].contains("redis://"), "the fix is named: {p:?}");
    let slow = format!("{FLEET}timeout = \"0s\"\n{MINIMAL}");
    assert!(problems(&slow)[0].starts_with("c.toml:3: fleet.timeout: "));
    let beat = format!("{FLEET}heartbeat = \"1s\"\nheartbeat_expiry = \"1s\"\n{MINIMAL}");
    assert!(
        problems(&beat)[0].contains("fleet.heartbeat_expiry: "),
        "{:?}",
        problems(&beat)
    );
    // Fleet-only keys on the sidecar's own limit are refused, and so is a wait.
    let own = format!("{MINIMAL}[upstream.rate_limit]\nper_second = 5\nmode = \"lease\"\n");
    assert!(
        problems(&own)[0].contains("upstream[0].rate_limit.mode: applies to a fleet limit only"),
        "{:?}",
        problems(&own)
    );
    let wait = format!(
        "{FLEET}{MINIMAL}[upstream.rate_limit]\nscope = \"fleet\"\nper_second = 5\nmax_wait = \"1s\"\n"
    );
    assert!(
        problems(&wait)[0].contains("rate_limit.max_wait: a fleet limit answers at once"),
        "{:?}",
        problems(&wait)
    );
    // The upstream's name is the limit's Redis key.
    let name = format!("{FLEET}{MINIMAL}[upstream.rate_limit]\nscope = \"fleet\"\n")
        .replace("name = \"api\"", "name = \"a{b}\"")
        .replace("upstream = \"api\"", "upstream = \"a{b}\"");
    assert!(
        problems(&name)[0].contains("upstream[0].name: "),
        "{:?}",
        problems(&name)
    );
}

#[test]
fn a_list_of_nodes_is_a_cluster() {
    let text = format!(
        "[fleet]\nredis = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7001\"]\n{MINIMAL}"
    );
    let checked = parse("c.toml", &text).unwrap();
    let store = checked.config.fleet.as_ref().unwrap().store_config();
    assert_eq!(store.nodes.as_ref().map(Vec::len), Some(2));
    assert!(store.url.is_none());
    let bad = text.replace("redis://10.0.0.2:7001", "nonsense");
    assert!(
        problems(&bad)[0].contains("fleet.redis: "),
        "{:?}",
        problems(&bad)
    );
}
