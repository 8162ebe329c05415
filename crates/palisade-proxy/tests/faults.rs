//! Fault injection, from the config and switched at run time through the admin port.

mod support;

use support::*;
use tokio::time::{Instant, sleep};

fn config(up: &Upstream, fault: &str) -> String {
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
{fault}
"#,
        endpoints = list(&[up])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_switched_on_at_run_time_then_off() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up, "")).await;

    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.count(), 1);

    proxy.set_fault(0, 100, 0, "0ms").await;
    let state = proxy.state().await;
    assert_eq!(state["routes"][0]["index"], 0, "{state}");
    assert_eq!(state["routes"][0]["path_prefix"], "/api", "{state}");
    assert_eq!(state["routes"][0]["upstream"], "api", "{state}");
    assert_eq!(
        state["routes"][0]["fault"]["abort_percent"].as_f64(),
        Some(100.0),
        "{state}"
    );

    for i in 0..5 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 503, "request {i}: {r:?}");
        assert_eq!(r.reason(), Some("fault-injected"), "{r:?}");
    }
    assert_eq!(up.count(), 1, "an aborted request reached the upstream");
    let m = proxy.metrics().await;
    assert!(
        sum(&m, "palisade_faults_injected_total", &[]) >= 5.0,
        "{:?}",
        matching(&m, "palisade_faults_injected_total", &[])
    );

    proxy.set_fault(0, 0, 0, "0ms").await;
    for i in 0..5 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "request {i} after clearing: {r:?}");
    }
    assert_eq!(up.count(), 6);

    // An informational status is no answer: refused, and the fault stays off.
    for status in [100, 103, 199] {
        let json = format!(r#"{{"abort_percent":100,"abort_status":{status}}}"#);
        let r = proxy.admin_post("/admin/route/0/fault", &json).await;
        assert_eq!(r.status, 400, "abort_status {status}: {r:?}");
    }
    assert_eq!(proxy.get("/api/x").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_delay_delays_then_forwards() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up, "")).await;
    proxy.set_fault(0, 0, 100, "300ms").await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.elapsed >= ms(280),
        "a 300 ms injected delay took {:?}",
        r.elapsed
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_from_the_config_aborts_with_its_status() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let fault = "[route.fault]\nabort_percent = 100.0\nabort_status = 418\n";
    let proxy = Proxy::start(&config(&up, fault)).await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 418, "{r:?}");
    assert_eq!(r.reason(), Some("fault-injected"), "{r:?}");
    assert_eq!(up.count(), 0);
}

/// A delayed request asks the breakers when its delay is over: a breaker opened meanwhile
/// refuses it there, before the rate limiter, so the upstream never sees it and the
/// rate's one token is left for the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_during_an_injected_delay_refuses_after_it() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let limited = config(&up, "").replace(
        "[upstream.retry]",
        "[upstream.rate_limit]\nper_second = 1\nburst = 1\n[upstream.retry]",
    );
    let proxy = std::sync::Arc::new(Proxy::start(&limited).await);
    proxy.set_fault(0, 0, 100, "500ms").await;
    let delayed = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.get("/api/x").await }
    });
    tokio::time::sleep(ms(100)).await;
    proxy.set_circuit("api", "open").await;
    let r = delayed.await.expect("the request task");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.reason(), Some("circuit-open"), "{r:?}");
    assert!(
        r.elapsed >= ms(480),
        "refused before its delay was over: {:?}",
        r.elapsed
    );
    assert_eq!(up.count(), 0, "the refused request reached the upstream");

    proxy.set_fault(0, 0, 0, "0ms").await;
    proxy.set_circuit("api", "auto").await;
    let r = proxy.get("/api/x").await;
    assert_eq!(r.status, 200, "the refusal spent the rate's token: {r:?}");
}

/// Route faults are the library's fault injection: at most `max_concurrent` injected
/// faults are in progress at once (beyond it requests pass untouched), and they are
/// counted in the library's metric, labelled by the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_delays_are_capped_by_max_concurrent() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let fault = "[route.fault]\ndelay_percent = 100.0\ndelay = \"30s\"\nmax_concurrent = 1\n";
    let proxy = std::sync::Arc::new(Proxy::start(&config(&up, fault)).await);

    let delayed = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.get("/api/slow").await }
    });
    eventually("the first request's delay to start", secs(5), async || {
        let m = proxy.metrics().await;
        let started = sum(
            &m,
            "palisade_faults_injected_total",
            &[("policy", "/api"), ("kind", "latency")],
        );
        (started >= 1.0).then_some(())
    })
    .await;
    // The one fault slot is taken: this request is not delayed.
    let r = proxy.get("/api/fast").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!delayed.is_finished(), "the delayed request ended first");
    assert_eq!(
        up.count(),
        1,
        "only the undelayed request reached the upstream"
    );
    delayed.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_section_with_a_bad_cap_is_a_config_error() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let fault = "[route.fault]\ndelay_percent = 100.0\nmax_concurrent = 0\n";
    let text = config_text(
        dead_addr(),
        dead_addr(),
        &Sections::default(),
        &config(&up, fault),
    );
    let out = check(&text).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("route[0].fault.max_concurrent: 0 is out of range"),
        "{out:?}"
    );
}

/// A fault set with `?lease=` holds for the lease, renewed by posting it again, and the
/// config's own fault is back when it runs out; one set without a lease stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_fault_holds_while_renewed_and_the_configured_one_is_back_after() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let configured = "[route.fault]\ndelay_percent = 100.0\ndelay = \"1ms\"\n";
    let proxy = Proxy::start(&config(&up, configured)).await;
    let abort = r#"{"abort_percent":100,"abort_status":503}"#;
    for _ in 0..4 {
        let r = proxy
            .admin_post("/admin/route/0/fault?lease=600ms", abort)
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(proxy.get("/api/x").await.status, 503, "leased and renewed");
        sleep(ms(300)).await;
    }
    let state = proxy.state().await;
    let left = state["routes"][0]["fault_lease_ms"]
        .as_u64()
        .expect("a lease");
    assert!(left <= 600, "{left} ms left");
    let over = Instant::now();
    while proxy.get("/api/x").await.status != 200 {
        assert!(over.elapsed() < ms(1500), "the lease never ran out");
        sleep(ms(20)).await;
    }
    let state = proxy.state().await;
    let fault = &state["routes"][0];
    assert_eq!(fault["fault_lease_ms"], serde_json::Value::Null);
    assert_eq!(fault["fault"]["abort_percent"].as_f64(), Some(0.0));
    assert_eq!(
        fault["fault"]["delay_percent"].as_f64(),
        Some(100.0),
        "{fault}"
    );

    // Set without a lease, a fault stays: it drops the lease before it.
    proxy
        .admin_post("/admin/route/0/fault?lease=300ms", abort)
        .await;
    proxy.set_fault(0, 100, 0, "0ms").await;
    sleep(ms(700)).await;
    assert_eq!(proxy.get("/api/x").await.status, 503, "no lease, no end");
    assert_eq!(
        proxy.state().await["routes"][0]["fault_lease_ms"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_bad_lease_is_refused_and_changes_nothing() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up, "")).await;
    let abort = r#"{"abort_percent":100}"#;
    for query in [
        "lease=soon",
        "lease=10ms",
        "lease=2days",
        "ttl=10s",
        "lease",
    ] {
        let r = proxy
            .admin_post(&format!("/admin/route/0/fault?{query}"), abort)
            .await;
        assert_eq!(r.status, 400, "{query}: {r:?}");
        assert!(r.text().contains("lease"), "{query}: {}", r.text());
    }
    assert_eq!(proxy.get("/api/x").await.status, 200, "no fault was set");
}
