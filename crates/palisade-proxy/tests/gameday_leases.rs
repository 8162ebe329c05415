//! A route fault a game day sets on a sidecar is a lease the runner renews: while the
//! runner runs the fault holds past its lease, and a runner killed outright (SIGKILL,
//! which runs no cleanup) leaves it on for one lease at most — 20 times over.

mod support;

use tokio::time::{Instant, sleep};

use support::{Behaviour, Proxy, Upstream, list, ms, secs, spawn_runner, temp_path};

/// The abort percent of route 0 and whether it holds a lease.
async fn route_fault(proxy: &Proxy) -> (f64, bool) {
    let state = proxy.state().await;
    let route = &state["routes"][0];
    (
        route["fault"]["abort_percent"].as_f64().unwrap_or(-1.0),
        !route["fault_lease_ms"].is_null(),
    )
}

#[tokio::test]
async fn a_runner_killed_outright_leaves_no_route_fault_after_its_lease() {
    let up = Upstream::start("app", Behaviour::Ok).await;
    let proxy = Proxy::start(&format!(
        "[[upstream]]\nname = \"app\"\nendpoints = [{}]\n[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        list(&[&up])
    ))
    .await;
    let file = temp_path("gameday-lease", "toml");
    std::fs::write(
        &file,
        format!(
            r#"
title = "a leased route fault"
duration = "30s"
[load]
url = "{url}"
rate = 10
[[fault]]
at = "0s"
for = "25s"
route = {{ admin = "http://{admin}", route = 0, abort_percent = 100, lease = "1s" }}
"#,
            url = proxy.url("/data"),
            admin = proxy.admin
        ),
    )
    .expect("write the experiment");
    for round in 0..20 {
        let out = temp_path("gameday-lease-out", "d");
        let mut runner = spawn_runner(&file, &out);
        let started = Instant::now();
        while route_fault(&proxy).await != (100.0, true) {
            assert!(started.elapsed() < secs(10), "round {round}: no fault set");
            sleep(ms(20)).await;
        }
        if round == 0 {
            // Renewed: on well past its 1 s lease.
            sleep(ms(2500)).await;
            assert_eq!(route_fault(&proxy).await, (100.0, true), "renewed");
            assert_eq!(proxy.get("/data").await.status, 503);
        }
        runner.start_kill().expect("SIGKILL");
        runner.wait().await.expect("reaped");
        let killed = Instant::now();
        while route_fault(&proxy).await != (0.0, false) {
            assert!(
                killed.elapsed() < ms(1500),
                "round {round}: the fault outlived its lease: {:?}",
                route_fault(&proxy).await
            );
            sleep(ms(20)).await;
        }
        assert_eq!(proxy.get("/data").await.status, 200, "round {round}");
        let _ = std::fs::remove_dir_all(&out);
    }
    let _ = std::fs::remove_file(&file);
}
