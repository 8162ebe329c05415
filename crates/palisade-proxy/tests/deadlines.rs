//! Deadlines: the caller's budget is honoured, shrinks across the hop, and an exhausted
//! budget is answered without calling the upstream.

mod support;

use support::*;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{endpoints}]
[upstream.timeout]
total = "2s"
per_try = "2s"
[upstream.retry]
max_attempts = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        endpoints = list(&[up])
    )
}

/// Unix time in milliseconds, `offset_ms` from now.
#[allow(clippy::disallowed_methods)] // the header is wall-clock time by definition
fn unix_ms(offset_ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    (now + offset_ms).to_string()
}

fn forwarded_timeout(rec: &Recorded) -> u64 {
    rec.header("x-request-timeout")
        .unwrap_or_else(|| panic!("no X-Request-Timeout forwarded: {rec:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("X-Request-Timeout not whole ms ({e}): {rec:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_shrinks_across_the_hop() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up)).await;

    // X-Request-Timeout: the upstream sees less than the caller sent.
    let r = proxy
        .send("GET", "/api/a", &[("x-request-timeout", "800")], "")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = forwarded_timeout(&up.requests()[0]);
    assert!(
        seen > 0 && seen < 800,
        "caller sent 800 ms, upstream saw {seen}"
    );

    // No header: the route's total is the budget.
    let r = proxy.get("/api/b").await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = forwarded_timeout(&up.requests()[1]);
    assert!(seen > 0 && seen < 2000, "total is 2 s, upstream saw {seen}");

    // A caller budget larger than total is cut to total.
    proxy
        .send("GET", "/api/c", &[("x-request-timeout", "60000")], "")
        .await;
    let seen = forwarded_timeout(&up.requests()[2]);
    assert!(seen > 0 && seen < 2000, "total is 2 s, upstream saw {seen}");

    // grpc-timeout (600 ms).
    proxy
        .send("GET", "/api/d", &[("grpc-timeout", "600m")], "")
        .await;
    let seen = forwarded_timeout(&up.requests()[3]);
    assert!(
        seen > 0 && seen < 600,
        "grpc-timeout 600m, upstream saw {seen}"
    );

    // X-Request-Deadline 700 ms from now.
    let deadline = unix_ms(700);
    proxy
        .send("GET", "/api/e", &[("x-request-deadline", &deadline)], "")
        .await;
    let rec = &up.requests()[4];
    let seen = forwarded_timeout(rec);
    assert!(
        seen > 0 && seen < 700,
        "deadline 700 ms away, upstream saw {seen}"
    );

    // Several: the smallest wins.
    proxy
        .send(
            "GET",
            "/api/f",
            &[("x-request-timeout", "900"), ("grpc-timeout", "300m")],
            "",
        )
        .await;
    let seen = forwarded_timeout(&up.requests()[5]);
    assert!(
        seen > 0 && seen < 300,
        "smallest budget 300 ms, upstream saw {seen}"
    );
    assert_eq!(up.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_deadline_is_504_without_calling_the_upstream() {
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Proxy::start(&config(&up)).await;

    let r = proxy
        .send("GET", "/api/x", &[("x-request-timeout", "0")], "")
        .await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.reason(), Some("deadline-exceeded"), "{r:?}");

    let past = unix_ms(-1000);
    let r = proxy
        .send("GET", "/api/x", &[("x-request-deadline", &past)], "")
        .await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.reason(), Some("deadline-exceeded"), "{r:?}");

    assert_eq!(
        up.count(),
        0,
        "the upstream was called: {:?}",
        up.requests()
    );

    let m = proxy.metrics().await;
    assert!(
        sum(
            &m,
            "palisade_requests_total",
            &[("reason", "deadline-exceeded")]
        ) >= 2.0,
        "palisade_requests_total by reason: {:?}",
        matching(&m, "palisade_requests_total", &[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_budget_cuts_a_slow_call_short() {
    let up = Upstream::start("api", Behaviour::Delay(secs(3))).await;
    let proxy = Proxy::start(&config(&up)).await;
    let r = proxy
        .send("GET", "/api/x", &[("x-request-timeout", "300")], "")
        .await;
    // The caller's deadline, nearer than the route's timeouts, is what ran out.
    assert_eq!(
        (r.status, r.reason()),
        (504, Some("deadline-exceeded")),
        "{r:?}"
    );
    assert!(
        r.elapsed >= ms(250),
        "answered after {:?}, before the budget",
        r.elapsed
    );
    assert!(r.elapsed < ms(1500), "a 300 ms budget took {:?}", r.elapsed);
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_total_timeout_is_a_timeout_whatever_budget_the_caller_sent() {
    let up = Upstream::start("api", Behaviour::Hang).await;
    let body = config(&up).replace(
        "total = \"2s\"\nper_try = \"2s\"",
        "total = \"200ms\"\nper_try = \"200ms\"",
    );
    let proxy = Proxy::start(&body).await;
    // The per-try timeout takes what is left of the total as its deadline and notices
    // first that it ran out; the time that ran out is the route's total timeout.
    for headers in [&[][..], &[("x-request-timeout", "60000")][..]] {
        let r = proxy.send("GET", "/api/x", headers, "").await;
        assert_eq!((r.status, r.reason()), (504, Some("timeout")), "{r:?}");
        assert!(r.elapsed < ms(1500), "a 200 ms total took {:?}", r.elapsed);
    }
    assert_eq!(up.count(), 2);
}
