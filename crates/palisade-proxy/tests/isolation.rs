//! A hanging upstream does not slow a healthy one behind the same proxy.

mod support;

use std::sync::Arc;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_does_not_slow_a_healthy_one() {
    let slow = Upstream::start("slow", Behaviour::Hang).await;
    let fast = Upstream::start("fast", Behaviour::Ok).await;
    let body = format!(
        r#"
[[upstream]]
name = "slow"
endpoints = [{slow}]
[upstream.timeout]
total = "1500ms"
per_try = "1500ms"
[upstream.retry]
max_attempts = 1
[upstream.bulkhead]
max_concurrent = 4
max_queue = 2
queue_timeout = "100ms"

[[upstream]]
name = "fast"
endpoints = [{fast}]
[upstream.retry]
max_attempts = 1

[[route]]
path_prefix = "/slow"
upstream = "slow"

[[route]]
path_prefix = "/fast"
upstream = "fast"
"#,
        slow = list(&[&slow]),
        fast = list(&[&fast]),
    );
    let proxy = Arc::new(Proxy::start(&body).await);

    let hanging: Vec<_> = (0..10)
        .map(|i| {
            let p = proxy.clone();
            tokio::spawn(async move { p.get(&format!("/slow/{i}")).await })
        })
        .collect();
    slow.wait_for(4, secs(5)).await;
    let started = tokio::time::Instant::now();

    for i in 0..20 {
        let r = proxy.get(&format!("/fast/{i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "ok from fast");
        assert!(
            r.elapsed < ms(300),
            "fast request {i} took {:?} while slow hangs",
            r.elapsed
        );
    }
    assert!(
        started.elapsed() < ms(1500),
        "twenty fast requests were not done before the slow ones timed out: {:?}",
        started.elapsed()
    );
    assert_eq!(fast.count(), 20);

    for t in hanging {
        let r = t.await.expect("slow task");
        assert!(
            matches!(
                (r.status, r.reason()),
                (504, Some("timeout" | "deadline-exceeded")) | (503, Some("bulkhead-full"))
            ),
            "a hanging call answered {r:?}"
        );
    }
    assert!(
        slow.count() <= 4,
        "the bulkhead let {} calls through",
        slow.count()
    );
}
