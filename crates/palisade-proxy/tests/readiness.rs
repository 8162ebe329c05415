//! Readiness follows active health checks: 503 when every endpoint of an upstream is
//! down, 200 again when one recovers.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_to_503_when_all_endpoints_are_down_and_back() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let b = Upstream::start("b", Behaviour::Ok).await;
    let other = Upstream::start("other", Behaviour::Ok).await;
    let body = format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{ab}]
[upstream.health_check]
path = "/health/ready"
interval = "50ms"
timeout = "40ms"
healthy_after = 1
unhealthy_after = 2

[[upstream]]
name = "other"
endpoints = [{other}]

[[route]]
path_prefix = "/api"
upstream = "api"

[[route]]
path_prefix = "/other"
upstream = "other"
"#,
        ab = list(&[&a, &b]),
        other = list(&[&other]),
    );
    let proxy = Proxy::start(&body).await;
    let p = &proxy;

    eventually("/health/ready to be 200", secs(5), async || {
        (p.admin_get("/health/ready").await.status == 200).then_some(())
    })
    .await;
    a.wait_for_health_checks(1).await;
    for rec in a.health_checks() {
        assert_eq!(
            (rec.method.as_str(), rec.path.as_str()),
            ("GET", "/health/ready")
        );
    }

    // One endpoint down: still ready.
    a.set_healthy(false);
    eventually("endpoint a to be marked unhealthy", secs(5), async || {
        let eps = endpoints_of(&p.state().await, "api");
        eps.iter()
            .any(|e| e["address"] == a.addr().to_string() && e["healthy"] == false)
            .then_some(())
    })
    .await;
    assert_eq!(
        proxy.admin_get("/health/ready").await.status,
        200,
        "one endpoint is still up"
    );

    // Both down: not ready, with a JSON reason.
    b.set_healthy(false);
    let r = eventually("/health/ready to be 503", secs(5), async || {
        let r = p.admin_get("/health/ready").await;
        (r.status == 503).then_some(r)
    })
    .await;
    let reason = r.json();
    assert!(
        reason.to_string().contains("api"),
        "the reason does not name the upstream: {reason}"
    );
    let eps = endpoints_of(&proxy.state().await, "api");
    assert!(eps.iter().all(|e| e["healthy"] == false), "{eps:?}");
    let m = proxy.metrics().await;
    let healthy = matching(&m, "palisade_endpoint_healthy", &[]);
    assert!(
        !healthy.is_empty(),
        "no palisade_endpoint_healthy in /metrics"
    );
    assert!(healthy.iter().any(|s| s.value == 0.0), "{healthy:?}");
    let deep = proxy.admin_get("/health/deep").await;
    let _ = deep.json();

    // The other upstream is unaffected.
    assert_eq!(proxy.get("/other/x").await.status, 200);

    // One recovers: ready again.
    b.set_healthy(true);
    eventually("/health/ready to be 200 again", secs(5), async || {
        (p.admin_get("/health/ready").await.status == 200).then_some(())
    })
    .await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.text(),
        "ok from b",
        "traffic went to the unhealthy endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_is_found_by_health_checks() {
    let a = Upstream::start("a", Behaviour::Ok).await;
    let body = format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{a}]
[upstream.health_check]
interval = "50ms"
timeout = "40ms"
healthy_after = 1
unhealthy_after = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        a = list(&[&a]),
    );
    let proxy = Proxy::start(&body).await;
    let p = &proxy;
    eventually("ready", secs(5), async || {
        (p.admin_get("/health/ready").await.status == 200).then_some(())
    })
    .await;

    a.stop().await;
    eventually("not ready", secs(5), async || {
        (p.admin_get("/health/ready").await.status == 503).then_some(())
    })
    .await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.reason(), Some("no-healthy-endpoint"), "{r:?}");

    a.restart().await;
    eventually("ready again", secs(5), async || {
        (p.admin_get("/health/ready").await.status == 200).then_some(())
    })
    .await;
    assert_eq!(proxy.get("/api/x").await.status, 200);
}
