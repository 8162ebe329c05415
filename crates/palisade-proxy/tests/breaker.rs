//! Circuit breakers: open, fast rejection, half-open probe, close; per-endpoint ejection.

mod support;

use support::*;

fn config(endpoints: &str, scope: &str, open_for: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{endpoints}]
balance = "round_robin"
[upstream.timeout]
total = "5s"
per_try = "2s"
[upstream.retry]
max_attempts = 1
[upstream.circuit_breaker]
scope = "{scope}"
window = "consecutive"
size = 3
open_for = "{open_for}"
max_open_for = "60s"
open_jitter = 0.0
half_open_calls = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_rejects_fast_then_half_opens_and_closes() {
    let up = Upstream::start("api", Behaviour::Status(500)).await;
    let proxy = Proxy::start(&config(&list(&[&up]), "upstream", "200ms")).await;

    for i in 0..3 {
        let r = proxy.get("/api/x").await;
        assert_eq!(
            r.status, 500,
            "call {i} is the upstream's own answer: {r:?}"
        );
    }
    assert_eq!(up.count(), 3);

    // Three failures in a row: open. The next call is rejected without reaching the upstream.
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.reason(), Some("circuit-open"), "{r:?}");
    assert!(
        r.elapsed < ms(50),
        "an open breaker took {:?} to reject",
        r.elapsed
    );
    assert_eq!(up.count(), 3, "a rejected call reached the upstream");
    let opened = tokio::time::Instant::now();

    let states = proxy.all_breaker_states("api").await;
    assert!(
        states.values().all(|s| s == "open"),
        "admin/state after tripping: {states:?} in {}",
        proxy.state().await
    );
    let m = proxy.metrics().await;
    assert!(
        has_metric(&m, "palisade_circuit_state"),
        "no palisade_circuit_state in /metrics"
    );

    // The dependency recovers; after open_for a probe goes through and closes the breaker.
    up.set_behaviour(Behaviour::Ok);
    let p = &proxy;
    let first_ok = eventually("a half-open probe to succeed", secs(5), async || {
        let r = p.get("/api/x").await;
        match r.status {
            200 => Some(r),
            503 => {
                assert_eq!(r.reason(), Some("circuit-open"), "{r:?}");
                None
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
    })
    .await;
    assert_eq!(first_ok.text(), "ok from api");
    let waited = opened.elapsed();
    assert!(
        waited >= ms(150),
        "the breaker let a call through after {waited:?}, before open_for"
    );
    assert_eq!(
        up.count(),
        4,
        "only the probe reached the upstream while open"
    );

    let states = proxy.all_breaker_states("api").await;
    assert!(
        states.values().all(|s| s == "closed"),
        "after the probe: {states:?}"
    );
    for _ in 0..5 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(up.count(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_reopens_the_breaker() {
    let up = Upstream::start("api", Behaviour::Status(500)).await;
    let proxy = Proxy::start(&config(&list(&[&up]), "upstream", "200ms")).await;
    for _ in 0..3 {
        proxy.get("/api/x").await;
    }
    let p = &proxy;
    // Wait for the probe (still failing) to reach the upstream.
    eventually("a half-open probe", secs(5), async || {
        let r = p.get("/api/x").await;
        (r.status == 500).then_some(())
    })
    .await;
    assert_eq!(up.count(), 4);
    let r = proxy.get("/api/x").await;
    assert_eq!((r.status, r.reason()), (503, Some("circuit-open")), "{r:?}");
    assert_eq!(up.count(), 4, "the failed probe did not reopen the breaker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_breaker_ejects_only_that_endpoint() {
    let bad = Upstream::start("bad", Behaviour::Status(500)).await;
    let good = Upstream::start("good", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&list(&[&bad, &good]), "endpoint", "30s")).await;

    let p = &proxy;
    let b = &bad;
    eventually("three failures at the bad endpoint", secs(5), async || {
        let r = p.get("/api/x").await;
        assert!(matches!(r.status, 200 | 500), "{r:?}");
        (b.count() >= 3).then_some(())
    })
    .await;
    assert_eq!(bad.count(), 3);

    let before = good.count();
    for i in 0..10 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "request {i} after ejection: {r:?}");
        assert_eq!(r.text(), "ok from good");
    }
    assert_eq!(bad.count(), 3, "the ejected endpoint still got traffic");
    assert_eq!(good.count(), before + 10);

    let states = proxy.all_breaker_states("api").await;
    assert_eq!(
        states.get(&bad.addr().to_string()).map(String::as_str),
        Some("open"),
        "{states:?}"
    );
    assert_eq!(
        states.get(&good.addr().to_string()).map(String::as_str),
        Some("closed"),
        "{states:?}"
    );
}
