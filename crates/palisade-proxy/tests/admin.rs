//! The admin port: health, metrics, state, circuit control and the token.

mod support;

use support::*;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{endpoints}]
[upstream.retry]
max_attempts = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        endpoints = list(&[up])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_state() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up)).await;

    assert_eq!(proxy.admin_get("/health/live").await.status, 200);
    let ready = proxy.admin_get("/health/ready").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let deep = proxy.admin_get("/health/deep").await;
    assert_eq!(deep.status, 200, "{deep:?}");
    let _ = deep.json();

    for _ in 0..3 {
        assert_eq!(proxy.get("/api/x").await.status, 200);
    }
    let m = proxy.metrics().await;
    let requests = matching(
        &m,
        "palisade_requests_total",
        &[("upstream", "api"), ("status", "200")],
    );
    assert!(
        !requests.is_empty(),
        "no palisade_requests_total for api/200"
    );
    assert_eq!(
        requests.iter().map(|s| s.value).sum::<f64>(),
        3.0,
        "{requests:?}"
    );
    for s in &requests {
        for label in ["route", "upstream", "status", "reason"] {
            assert!(
                s.labels.contains_key(label),
                "palisade_requests_total without {label}: {s:?}"
            );
        }
    }
    assert!(
        has_metric(&m, "palisade_request_duration_seconds"),
        "no palisade_request_duration_seconds"
    );

    let state = proxy.state().await;
    let eps = endpoints_of(&state, "api");
    assert_eq!(eps.len(), 1, "{state}");
    assert_eq!(eps[0]["address"], up.addr().to_string(), "{state}");
    assert_eq!(eps[0]["role"], "primary", "{state}");
    assert_eq!(eps[0]["healthy"], true, "{state}");
    assert_eq!(eps[0]["breaker"]["state"], "closed", "{state}");
    let route = &state["routes"][0];
    assert_eq!(route["index"], 0, "{state}");
    assert_eq!(route["path_prefix"], "/api", "{state}");
    assert_eq!(route["upstream"], "api", "{state}");
    assert!(route["fault"].is_object(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_the_circuit_open_closed_and_auto() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up)).await;

    let r = proxy
        .admin_post("/admin/upstream/nope/circuit", r#"{"state":"open"}"#)
        .await;
    assert_eq!(r.status, 404, "unknown upstream: {r:?}");
    let r = proxy
        .admin_post("/admin/upstream/api/circuit", r#"{"state":"sideways"}"#)
        .await;
    assert_eq!(r.status, 400, "bad state: {r:?}");
    let r = proxy
        .admin_post("/admin/upstream/api/circuit", "not json")
        .await;
    assert_eq!(r.status, 400, "bad body: {r:?}");

    let r = proxy
        .admin_post("/admin/upstream/api/circuit", r#"{"state":"open"}"#)
        .await;
    assert!((200..300).contains(&r.status), "{r:?}");
    let states = proxy.all_breaker_states("api").await;
    assert!(states.values().all(|s| s == "forced-open"), "{states:?}");
    // Every endpoint's breaker is held open by the operator: the breakers refuse.
    let r = proxy.get("/api/x").await;
    assert_eq!((r.status, r.reason()), (503, Some("circuit-open")), "{r:?}");
    assert_eq!(up.count(), 0, "a forced-open circuit let a call through");

    let r = proxy
        .admin_post("/admin/upstream/api/circuit", r#"{"state":"closed"}"#)
        .await;
    assert!((200..300).contains(&r.status), "{r:?}");
    let states = proxy.all_breaker_states("api").await;
    assert!(states.values().all(|s| s == "forced-closed"), "{states:?}");
    // Forced closed: failures do not open it.
    up.set_behaviour(Behaviour::Status(500));
    for _ in 0..30 {
        assert_eq!(proxy.get("/api/x").await.status, 500);
    }
    assert_eq!(up.count(), 30);

    let r = proxy
        .admin_post("/admin/upstream/api/circuit", r#"{"state":"auto"}"#)
        .await;
    assert!((200..300).contains(&r.status), "{r:?}");
    up.set_behaviour(Behaviour::Ok);
    let states = proxy.all_breaker_states("api").await;
    assert!(
        states
            .values()
            .all(|s| s == "closed" || s == "open" || s == "half-open"),
        "after auto: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_post_endpoints() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let sections = Sections {
        admin: "token = \"s3cret\"".into(),
        ..Sections::default()
    };
    let proxy = Proxy::start_with(&sections, &config(&up)).await;

    let body = r#"{"state":"open"}"#;
    let r = proxy.admin_post("/admin/upstream/api/circuit", body).await;
    assert!(matches!(r.status, 401 | 403), "no token: {r:?}");
    let r = proxy
        .admin_post_with(
            "/admin/upstream/api/circuit",
            &[("authorization", "Bearer wrong")],
            body,
        )
        .await;
    assert!(matches!(r.status, 401 | 403), "wrong token: {r:?}");
    assert_eq!(
        proxy.get("/api/x").await.status,
        200,
        "a refused POST changed the circuit"
    );

    let r = proxy
        .admin_post_with(
            "/admin/upstream/api/circuit",
            &[("authorization", "Bearer s3cret")],
            body,
        )
        .await;
    assert!((200..300).contains(&r.status), "right token: {r:?}");
    assert_eq!(proxy.get("/api/x").await.status, 503);

    // GETs need no token.
    assert_eq!(proxy.admin_get("/admin/state").await.status, 200);
    assert_eq!(proxy.admin_get("/metrics").await.status, 200);
}

/// `/admin/state` prints each upstream's policies in the order a request meets them —
/// the order `runtime/pipeline.rs` declares — with only the policies its config turns on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_prints_each_upstreams_pipeline_in_order() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let every = format!(
        r#"
[[upstream]]
name = "every"
endpoints = [{endpoints}]
[upstream.throttle]
k = 2.0
[upstream.rate_limit]
per_second = 1000
burst = 100
[upstream.load_shedding]
max_concurrent = 10
[upstream.adaptive_concurrency]
initial_limit = 5
[upstream.bulkhead]
max_concurrent = 10
[upstream.hedge]
delay = "50ms"
learn = false

[[upstream]]
name = "per_endpoint"
endpoints = [{endpoints}]
[upstream.load_shedding]
[upstream.adaptive_concurrency]
scope = "endpoint"

[[upstream]]
name = "plain"
endpoints = [{endpoints}]
[upstream.circuit_breaker]
scope = "upstream"
[upstream.timeout.adaptive]
percentile = 0.99

[[route]]
path_prefix = "/every"
upstream = "every"

[[route]]
path_prefix = "/plain"
upstream = "plain"

[[route]]
path_prefix = "/per_endpoint"
upstream = "per_endpoint"
"#,
        endpoints = list(&[&up])
    );
    let proxy = Proxy::start(&every).await;
    let state = proxy.state().await;
    let order = |name: &str| -> Vec<String> {
        let upstream = state["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no upstream {name}: {state}"));
        serde_json::from_value(upstream["pipeline"].clone()).unwrap()
    };
    assert_eq!(
        order("every"),
        [
            "route_fault",
            "certain_refusal",
            "throttle",
            "rate_limit",
            "read_body",
            "load_shedding",
            "adaptive_concurrency",
            "bulkhead",
            "total_timeout",
            "retry",
            "hedge",
            "balancer_with_endpoint_breakers",
            "per_try_timeout",
        ]
    );
    assert_eq!(
        order("plain"),
        [
            "route_fault",
            "certain_refusal",
            "read_body",
            "total_timeout",
            "retry",
            "upstream_breaker",
            "balancer",
            "adaptive_per_try_timeout",
        ]
    );
    // Limits per endpoint: the shedder admits what they add up to, the balancer
    // consults each endpoint's as it picks.
    assert_eq!(
        order("per_endpoint"),
        [
            "route_fault",
            "certain_refusal",
            "read_body",
            "load_shedding",
            "total_timeout",
            "retry",
            "balancer_with_endpoint_breakers",
            "endpoint_adaptive_limits",
            "per_try_timeout",
        ]
    );
    // The order is what requests meet: every upstream serves.
    assert_eq!(proxy.get("/every/x").await.status, 200);
    assert_eq!(proxy.get("/plain/x").await.status, 200);
    assert_eq!(proxy.get("/per_endpoint/x").await.status, 200);
    // Each endpoint's limit is in the state: the sidecar's first limit, 4.
    let state = proxy.state().await;
    let per_endpoint = state["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "per_endpoint")
        .unwrap();
    assert_eq!(
        per_endpoint["endpoints"][0]["concurrency_limit"], 4,
        "{per_endpoint}"
    );
    let every = &state["upstreams"][0];
    assert_eq!(
        every["endpoints"][0]["concurrency_limit"],
        serde_json::Value::Null
    );
}
