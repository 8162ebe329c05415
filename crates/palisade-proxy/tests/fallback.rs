//! A route's fallback replaces the proxy's own error responses.

mod support;

use support::*;

const FALLBACK: &str = r#"{"items": [], "degraded": true}"#;

fn config(endpoints: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "inventory"
endpoints = [{endpoints}]
[upstream.timeout]
total = "2s"
per_try = "500ms"
[upstream.retry]
max_attempts = 2
base = "5ms"
max_delay = "10ms"

[[route]]
path_prefix = "/inventory"
upstream = "inventory"
[route.fallback]
status = 200
body = '{FALLBACK}'
content_type = "application/json"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_is_served_when_the_upstream_is_unreachable() {
    let proxy = Proxy::start(&config(&format!("\"{}\"", dead_addr()))).await;
    let r = proxy.get("/inventory/items").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), FALLBACK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-palisade-fallback"), Some("1"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_replaces_an_open_circuit_and_healthy_answers_pass_through() {
    let up = Upstream::start("inventory", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&list(&[&up]))).await;

    let r = proxy.get("/inventory/items").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok from inventory");
    assert_eq!(
        r.header("x-palisade-fallback"),
        None,
        "a real answer marked as fallback"
    );

    proxy.set_circuit("inventory", "open").await;

    let r = proxy.get("/inventory/items").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), FALLBACK);
    assert_eq!(r.header("x-palisade-fallback"), Some("1"), "{r:?}");
    assert_eq!(up.count(), 1, "the forced-open circuit let a call through");
}
