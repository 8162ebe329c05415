//! Active-passive: with every primary down the backup serves; when primaries return,
//! traffic goes back to them.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_backup_and_back() {
    let p1 = Upstream::start("p1", Behaviour::Ok).await;
    let p2 = Upstream::start("p2", Behaviour::Ok).await;
    let backup = Upstream::start("backup", Behaviour::Ok).await;
    let body = format!(
        r#"
[[upstream]]
name = "api"
endpoints = [{primaries}]
backup = [{backup}]
balance = "round_robin"
[upstream.timeout]
total = "3s"
per_try = "1s"
[upstream.retry]
max_attempts = 3
base = "5ms"
max_delay = "20ms"
[upstream.circuit_breaker]
window = "consecutive"
size = 2
open_for = "200ms"
max_open_for = "1s"
half_open_calls = 1
[upstream.health_check]
path = "/health/ready"
interval = "50ms"
timeout = "40ms"
healthy_after = 1
unhealthy_after = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        primaries = list(&[&p1, &p2]),
        backup = list(&[&backup]),
    );
    let proxy = Proxy::start(&body).await;

    // Roles as configured.
    let state = proxy.state().await;
    let eps = endpoints_of(&state, "api");
    assert_eq!(eps.len(), 3, "{state}");
    for e in &eps {
        let want = if e["address"] == backup.addr().to_string() {
            "backup"
        } else {
            "primary"
        };
        assert_eq!(e["role"], want, "{e}");
    }

    for i in 0..6 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_ne!(
            r.text(),
            "ok from backup",
            "request {i} went to the backup while primaries are up"
        );
    }
    assert_eq!(backup.count(), 0);
    assert!(
        p1.count() > 0 && p2.count() > 0,
        "round robin over both primaries"
    );

    // Both primaries go away: the backup takes over.
    p1.stop().await;
    p2.stop().await;
    let p = &proxy;
    eventually("the backup to serve", secs(5), async || {
        let r = p.get("/api/x").await;
        (r.status == 200 && r.text() == "ok from backup").then_some(())
    })
    .await;
    for i in 0..5 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "request {i} during failover: {r:?}");
        assert_eq!(r.text(), "ok from backup");
    }
    // The breakers eject the primaries after two failures; the health checks (every
    // 50 ms) mark them unhealthy on their own schedule, which may come a little later.
    eventually(
        "the stopped primaries to be shown unhealthy",
        secs(5),
        async || {
            let state = p.state().await;
            endpoints_of(&state, "api")
                .iter()
                .filter(|e| e["role"] == "primary")
                .all(|e| e["healthy"] == false)
                .then_some(())
        },
    )
    .await;

    // The primaries come back on the same ports: traffic returns to them.
    p1.restart().await;
    p2.restart().await;
    eventually("traffic to return to the primaries", secs(5), async || {
        let r = p.get("/api/x").await;
        (r.status == 200 && r.text() != "ok from backup").then_some(())
    })
    .await;
    let on_backup = backup.count();
    let (c1, c2) = (p1.count(), p2.count());
    for i in 0..6 {
        let r = proxy.get("/api/x").await;
        assert_eq!(r.status, 200, "request {i} after recovery: {r:?}");
    }
    assert_eq!(
        backup.count(),
        on_backup,
        "the backup still gets traffic after the primaries recovered"
    );
    assert_eq!(p1.count() + p2.count(), c1 + c2 + 6);
}
