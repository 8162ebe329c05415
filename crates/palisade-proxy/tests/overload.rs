//! Adaptive overload protection in the sidecar: criticality from a header, load shedding,
//! an adaptive concurrency limit and client-side throttling, all from the config file.

mod support;

use std::sync::Arc;

use support::*;

fn config(upstream: &Upstream, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{}"]
[upstream.retry]
max_attempts = 1
{extra}

[[route]]
path_prefix = "/api"
upstream = "api"
criticality_header = "x-criticality"
"#,
        upstream.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheddable_requests_are_shed_first_and_critical_ones_take_the_freed_slot() {
    let up = Upstream::start("api", Behaviour::Gate).await;
    let proxy = Arc::new(
        Proxy::start(&config(
            &up,
            "[upstream.load_shedding]\nmax_concurrent = 1\nmax_queue = 1\ntarget = \"50ms\"\ninterval = \"2s\"",
        ))
        .await,
    );
    // One request holds the only slot.
    let holder = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.get("/api/hold").await }
    });
    up.wait_for(1, secs(5)).await;
    // A sheddable request queues; a critical one displaces it from the full queue.
    let sheddable = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            proxy
                .send("GET", "/api/low", &[("x-criticality", "sheddable")], "")
                .await
        }
    });
    tokio::time::sleep(ms(100)).await;
    let critical = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            proxy
                .send("GET", "/api/high", &[("x-criticality", "critical")], "")
                .await
        }
    });
    let low = sheddable.await.unwrap();
    assert_eq!((low.status, low.reason()), (503, Some("shed")), "{low:?}");
    up.open_gate();
    assert_eq!(holder.await.unwrap().status, 200);
    assert_eq!(critical.await.unwrap().status, 200);
    let paths: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        !paths.iter().any(|p| p == "/api/low"),
        "the shed request never reached the upstream: {paths:?}"
    );
    let metrics = samples(&proxy.admin_get("/metrics").await.text());
    assert!(
        sum(
            &metrics,
            "palisade_shed_total",
            &[("criticality", "sheddable")]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_limit_and_the_throttle_are_built_from_the_file() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(
        &up,
        // No breaker: an open one refuses before the throttle is asked (see
        // `forward`), and this test is about the throttle alone.
        "[upstream.adaptive_concurrency]\ninitial_limit = 5\nalgorithm = { kind = \"vegas\" }\n[upstream.throttle]\nk = 2.0\n[upstream.circuit_breaker]\nmode = \"disabled\"",
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(proxy.get("/api/x").await.status, 200);
    }
    let metrics = samples(&proxy.admin_get("/metrics").await.text());
    assert!(
        has_metric(&metrics, "palisade_concurrency_limit"),
        "the limiter reports its limit"
    );
    // A backend refusing everything gets throttled locally.
    up.set_behaviour(Behaviour::Status(503));
    let mut throttled = 0;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let r = proxy.get("/api/x").await;
        *seen
            .entry((r.status, r.reason().map(str::to_owned)))
            .or_insert(0) += 1;
        if r.reason() == Some("throttled") {
            throttled += 1;
        }
    }

    assert!(throttled > 50, "{throttled} of 200 throttled: {seen:?}");
    assert!(
        up.count() < 20 + 200 - 50,
        "throttled requests never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_overload_settings_are_config_errors_with_lines() {
    let text = format!(
        "[listener]\naddress = \"127.0.0.1:1\"\n{}",
        config(
            &Upstream::start("api", Behaviour::Ok).await,
            "[upstream.adaptive_concurrency]\nmin_limit = 0"
        )
    );
    let path = temp_path("overload", "toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(":10: upstream[0].adaptive_concurrency.min_limit: 0 is out of range"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_hedged_to_another_for_idempotent_requests() {
    let slow = Upstream::start("slow", Behaviour::Delay(secs(2))).await;
    let fast = Upstream::start("fast", Behaviour::Ok).await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{}", "{}"]
balance = "round_robin"
[upstream.retry]
max_attempts = 1
[upstream.hedge]
delay = "50ms"
learn = false
max_extra_load = 1.0

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        slow.addr(),
        fast.addr()
    ))
    .await;
    for _ in 0..6 {
        let started = tokio::time::Instant::now();
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            started.elapsed() < ms(1000),
            "answered by the hedge, not after the slow endpoint's 2 s"
        );
    }
    let metrics = samples(&proxy.admin_get("/metrics").await.text());
    assert!(
        sum(&metrics, "palisade_hedges_total", &[]) >= 1.0,
        "round robin sent some first attempts to the slow endpoint"
    );
    // A POST without Idempotency-Key is never hedged.
    let hedges_before = sum(&metrics, "palisade_hedges_total", &[]);
    for _ in 0..2 {
        let _ = proxy.send("POST", "/api/x", &[], "body").await;
    }
    let metrics = samples(&proxy.admin_get("/metrics").await.text());
    assert_eq!(sum(&metrics, "palisade_hedges_total", &[]), hedges_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_per_try_timeout_follows_observed_latency() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{}"]
[upstream.timeout]
total = "10s"
per_try = "5s"
adaptive = {{ percentile = 0.99, factor = 1.5, min = "50ms", max = "2s", min_samples = 10, window = "2s" }}
[upstream.retry]
max_attempts = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        up.addr()
    ))
    .await;
    for _ in 0..30 {
        assert_eq!(proxy.get("/api/x").await.status, 200);
    }
    // The percentile is recomputed every window/100 (20 ms here): let one refresh pass.
    tokio::time::sleep(ms(100)).await;
    assert_eq!(proxy.get("/api/x").await.status, 200);
    // Fast so far: the learned timeout is near its 50 ms floor, far below the static 5 s.
    up.set_behaviour(Behaviour::Delay(ms(800)));
    let started = tokio::time::Instant::now();
    let r = proxy.get("/api/x").await;
    assert_eq!((r.status, r.reason()), (504, Some("timeout")), "{r:?}");
    assert!(
        started.elapsed() < ms(600),
        "cut off by the learned timeout: {:?}",
        started.elapsed()
    );
}
