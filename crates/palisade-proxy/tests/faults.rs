//! Fault injection, from the config and switched at run time through the admin port.

mod support;

use support::*;

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
