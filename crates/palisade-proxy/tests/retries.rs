//! Retries: which requests are replayed, where to, and when the proxy gives up.

mod support;

use support::*;

fn upstream_toml(endpoints: &str, max_attempts: u32) -> String {
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
max_attempts = {max_attempts}
backoff = "exponential"
base = "5ms"
max_delay = "20ms"
jitter = "none"
[upstream.circuit_breaker]
window = "count"
size = 100
minimum_calls = 100

[[route]]
path_prefix = "/api"
upstream = "api"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_retries_hide_a_failing_endpoint() {
    let bad = Upstream::start("bad", Behaviour::Status(503)).await;
    let good = Upstream::start("good", Behaviour::Ok).await;
    let proxy = Proxy::start(&upstream_toml(&list(&[&bad, &good]), 3)).await;

    for i in 0..10 {
        let r = proxy.get(&format!("/api/items/{i}?q=1")).await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.text(), "ok from good", "request {i}");
        assert_eq!(r.reason(), None, "request {i} was answered by the upstream");
    }

    // Every client request reached the good endpoint exactly once, path unchanged.
    let served = good.requests();
    assert_eq!(served.len(), 10, "{served:?}");
    for (i, rec) in served.iter().enumerate() {
        assert_eq!(rec.method, "GET");
        assert_eq!(rec.path, format!("/api/items/{i}?q=1"));
    }
    // Round robin sent some first attempts to the bad endpoint; each was retried
    // elsewhere, never on the bad endpoint again.
    let failed = bad.count();
    assert!(
        failed >= 1,
        "the failing endpoint was never tried, so nothing was retried"
    );
    assert!(
        failed <= 10,
        "a retry went back to the failing endpoint: {failed} attempts there"
    );

    let m = proxy.metrics().await;
    let retries = sum(&m, "palisade_retry_attempts_total", &[]);
    assert!(
        retries >= failed as f64,
        "palisade_retry_attempts_total = {retries}, want >= {failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_without_idempotency_key_is_never_replayed() {
    let up = Upstream::start("orders", Behaviour::fail_first(1, 503)).await;
    let proxy = Proxy::start(&upstream_toml(&list(&[&up]), 3)).await;

    let r = proxy
        .send(
            "POST",
            "/api/orders",
            &[("content-type", "text/plain")],
            "order-1",
        )
        .await;
    assert_eq!(
        r.status, 503,
        "the upstream's 503 comes back, not replayed: {r:?}"
    );
    assert_eq!(up.count(), 1, "a POST without Idempotency-Key was replayed");
    assert_eq!(up.requests()[0].body.as_ref(), b"order-1");

    // The same with an Idempotency-Key is retried, body and key intact.
    up.clear();
    up.set_behaviour(Behaviour::fail_first(1, 503));
    let r = proxy
        .send(
            "POST",
            "/api/orders",
            &[("content-type", "text/plain"), ("idempotency-key", "k-42")],
            "order-2",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok from orders");
    let got = up.requests();
    assert_eq!(
        got.len(),
        2,
        "want the first attempt and one retry: {got:?}"
    );
    for rec in &got {
        assert_eq!(rec.method, "POST");
        assert_eq!(rec.path, "/api/orders");
        assert_eq!(rec.body.as_ref(), b"order-2", "the replayed body differs");
        assert_eq!(rec.header("idempotency-key"), Some("k-42"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_is_retried_like_get() {
    let up = Upstream::start("api", Behaviour::fail_first(2, 502)).await;
    let proxy = Proxy::start(&upstream_toml(&list(&[&up]), 3)).await;
    let r = proxy.send("PUT", "/api/doc/1", &[], "v2").await;
    assert_eq!(r.status, 200, "{r:?}");
    let got = up.requests();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter()
            .all(|r| r.body.as_ref() == b"v2" && r.method == "PUT")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_after_a_connect_failure() {
    // Nothing was sent to the dead endpoint, so even a POST may go elsewhere.
    let dead = dead_addr();
    let good = Upstream::start("good", Behaviour::Ok).await;
    let endpoints = format!("\"{dead}\", \"{}\"", good.addr());
    let proxy = Proxy::start(&upstream_toml(&endpoints, 3)).await;

    for i in 0..6 {
        let r = proxy
            .send("POST", "/api/orders", &[], format!("order-{i}"))
            .await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    let got = good.requests();
    assert_eq!(
        got.len(),
        6,
        "every POST reaches the live endpoint exactly once: {got:?}"
    );
    for (i, rec) in got.iter().enumerate() {
        assert_eq!(rec.body.as_ref(), format!("order-{i}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_returns_the_last_answer_after_max_attempts() {
    let up = Upstream::start("api", Behaviour::Status(503)).await;
    let proxy = Proxy::start(&upstream_toml(&list(&[&up]), 3)).await;
    let r = proxy.get("/api/x").await;
    assert!(matches!(r.status, 502 | 503), "{r:?}");
    if r.status == 502 {
        assert_eq!(r.reason(), Some("retries-exhausted"), "{r:?}");
    }
    assert_eq!(up.count(), 3, "max_attempts = 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_retries_exhausted() {
    let dead = dead_addr();
    let proxy = Proxy::start(&upstream_toml(&format!("\"{dead}\""), 3)).await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.reason(), Some("retries-exhausted"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_the_upstream_is_honoured() {
    let first = Behaviour::Respond {
        status: 503,
        headers: vec![("retry-after".into(), "1".into())],
        body: "busy".into(),
    };
    let up = Upstream::start("api", Behaviour::FailFirst(1, Box::new(first))).await;
    let proxy = Proxy::start(&upstream_toml(&list(&[&up]), 2)).await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    let got = up.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= ms(900),
        "Retry-After: 1 was not honoured: retried after {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_try_timeout_is_retried_then_504() {
    let up = Upstream::start("api", Behaviour::Hang).await;
    let body = upstream_toml(&list(&[&up]), 3).replace(
        "total = \"5s\"\nper_try = \"2s\"",
        "total = \"3s\"\nper_try = \"200ms\"",
    );
    let proxy = Proxy::start(&body).await;
    let r = proxy.get("/api/x").await;
    // Timeouts on every attempt: a 504 timeout, or a 502/504 naming exhausted retries.
    assert!(
        matches!(
            (r.status, r.reason()),
            (504, Some("timeout")) | (502 | 504, Some("retries-exhausted"))
        ),
        "{r:?}"
    );
    assert_eq!(
        up.count(),
        3,
        "each timed-out attempt is retried up to max_attempts"
    );
    assert!(
        r.elapsed < secs(2),
        "three 200ms attempts took {:?}",
        r.elapsed
    );
}
