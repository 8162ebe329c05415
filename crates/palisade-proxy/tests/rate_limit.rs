//! Rate limiting: over the rate, 429 with Retry-After, without calling the upstream.

mod support;

use support::*;

/// One upstream `api` behind `/api`, rate limited to 1 per second with a burst of 2.
fn config(up: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{endpoints}]
[upstream.rate_limit]
per_second = 1
burst = 2

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        endpoints = list(&[up])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_is_429_with_retry_after() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up)).await;

    for i in 0..2 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "request {i} within the burst: {r:?}");
    }
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.reason(), Some("rate-limited"), "{r:?}");
    let retry_after = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {r:?}"));
    let secs: u64 = retry_after
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After {retry_after:?} is not whole seconds: {e}"));
    assert!(
        secs <= 2,
        "at 1/s the next slot is within a second or so, Retry-After says {secs}"
    );
    assert!(
        r.elapsed < ms(50),
        "a rate-limit rejection took {:?}",
        r.elapsed
    );
    assert_eq!(up.count(), 2, "the rejected call reached the upstream");

    let m = proxy.metrics().await;
    assert!(
        has_metric(&m, "palisade_rate_limit_decisions_total"),
        "no palisade_rate_limit_decisions_total in /metrics"
    );
    assert!(sum(&m, "palisade_rate_limit_decisions_total", &[]) >= 3.0);
    assert!(
        sum(
            &m,
            "palisade_requests_total",
            &[("status", "429"), ("reason", "rate-limited")]
        ) >= 1.0,
        "{:?}",
        matching(&m, "palisade_requests_total", &[])
    );
}

/// The breaker is asked before the rate limiter (as resilience4j orders them): requests
/// it refuses spend no token, so the rate is left whole for when it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_refuses_without_spending_the_rate() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up)).await;
    proxy.set_circuit("api", "open").await;
    for i in 0..5 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 503, "request {i}: {r:?}");
        assert_eq!(r.reason(), Some("circuit-open"), "request {i}: {r:?}");
    }
    proxy.set_circuit("api", "auto").await;
    for i in 0..2 {
        let r = proxy.get("/api/x").await;
        assert_eq!(
            r.status, 200,
            "request {i} within the burst the refusals left: {r:?}"
        );
    }
    assert_eq!(up.count(), 2, "a refused request reached the upstream");
}
