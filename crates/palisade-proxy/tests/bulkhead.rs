//! Bulkhead: a full bulkhead rejects at once; the queue timeout applies only to calls
//! that were queued.

mod support;

use support::*;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{endpoints}]
[upstream.timeout]
total = "10s"
per_try = "10s"
[upstream.retry]
max_attempts = 1
[upstream.bulkhead]
max_concurrent = 2
max_queue = 1
queue_timeout = "300ms"

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        endpoints = list(&[up])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_overflow_is_rejected_at_once_and_queued_calls_time_out() {
    let up = Upstream::start("api", Behaviour::Gate).await;
    let proxy = std::sync::Arc::new(Proxy::start(&config(&up)).await);

    // Two calls take both slots and wait at the upstream.
    let running: Vec<_> = (0..2)
        .map(|i| {
            let p = proxy.clone();
            tokio::spawn(async move { p.get(&format!("/api/running/{i}")).await })
        })
        .collect();
    up.wait_for(2, secs(5)).await;

    // A third waits in the queue (the queue holds one).
    let p = proxy.clone();
    let queued = tokio::spawn(async move { p.get("/api/queued").await });
    // Give it time to be queued; nothing else can signal that from outside.
    tokio::time::sleep(ms(50)).await;

    // A fourth finds slots and queue full: rejected at once.
    let r = proxy.get("/api/overflow").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.reason(), Some("bulkhead-full"), "{r:?}");
    assert!(
        r.elapsed < ms(50),
        "a full bulkhead took {:?} to reject",
        r.elapsed
    );

    // The queued call gives up after the queue timeout, not at once.
    let q = queued.await.expect("queued task");
    assert_eq!(q.status, 503, "{q:?}");
    assert_eq!(q.reason(), Some("bulkhead-full"), "{q:?}");
    assert!(
        q.elapsed >= ms(250),
        "the queued call was rejected after only {:?}",
        q.elapsed
    );
    assert!(
        q.elapsed < secs(3),
        "the queued call waited {:?}",
        q.elapsed
    );

    assert_eq!(
        up.count(),
        2,
        "rejected calls reached the upstream: {:?}",
        up.requests()
    );

    let m = proxy.metrics().await;
    assert!(
        sum(&m, "palisade_bulkhead_rejected_total", &[]) >= 2.0,
        "palisade_bulkhead_rejected_total: {:?}",
        matching(&m, "palisade_bulkhead_rejected_total", &[])
    );
    assert!(
        sum(&m, "palisade_bulkhead_active", &[]) >= 2.0,
        "palisade_bulkhead_active with two calls running: {:?}",
        matching(&m, "palisade_bulkhead_active", &[])
    );

    up.open_gate();
    for t in running {
        let r = t.await.expect("running task");
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = proxy.get("/api/after").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_call_is_served_when_a_slot_frees() {
    let up = Upstream::start("api", Behaviour::Gate).await;
    let proxy = std::sync::Arc::new(Proxy::start(&config(&up)).await);
    let running: Vec<_> = (0..2)
        .map(|i| {
            let p = proxy.clone();
            tokio::spawn(async move { p.get(&format!("/api/running/{i}")).await })
        })
        .collect();
    up.wait_for(2, secs(5)).await;
    let p = proxy.clone();
    let queued = tokio::spawn(async move { p.get("/api/queued").await });
    tokio::time::sleep(ms(50)).await;
    assert_eq!(up.count(), 2, "the third call was not held in the queue");

    // Well within the 300 ms queue timeout, the slots free up.
    up.open_gate();
    for t in running {
        assert_eq!(t.await.expect("task").status, 200);
    }
    let q = queued.await.expect("queued task");
    assert_eq!(q.status, 200, "{q:?}");
    assert_eq!(up.count(), 3);
}
