//! SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0.

mod support;

use support::*;

fn config(slow: &Upstream, fast: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "slow"
endpoints = [{slow}]
[upstream.timeout]
total = "10s"
per_try = "10s"

[[upstream]]
name = "fast"
endpoints = [{fast}]

[[route]]
path_prefix = "/slow"
upstream = "slow"

[[route]]
path_prefix = "/fast"
upstream = "fast"
"#,
        slow = list(&[slow]),
        fast = list(&[fast]),
    )
}

/// A request on a new connection, bounded at 500 ms.
async fn fresh_get(url: &str) -> Result<Resp, String> {
    match tokio::time::timeout(ms(500), Http::new().try_send("GET", url, &[], "")).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 500 ms".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_refuses_new_ones() {
    let slow = Upstream::start("slow", Behaviour::Gate).await;
    let fast = Upstream::start("fast", Behaviour::Ok).await;
    let sections = Sections {
        listener: "drain_timeout = \"10s\"".into(),
        ..Sections::default()
    };
    let mut proxy = Proxy::start_with(&sections, &config(&slow, &fast)).await;
    let addr = proxy.addr;

    let http = proxy.http.clone();
    let url = proxy.url("/slow/x");
    let in_flight = tokio::spawn(async move { http.try_send("GET", &url, &[], "").await });
    slow.wait_for(1, secs(5)).await;

    proxy.signal("TERM");

    // Once the signal is handled, new connections are not served (before it, they may be).
    let url = format!("http://{addr}/fast/new");
    let u = &url;
    let served_before =
        eventually(
            "new connections to be refused",
            secs(3),
            async || match fresh_get(u).await {
                Ok(r) if r.status == 200 => None,
                Ok(r) => panic!("a new connection during shutdown got {r:?}"),
                Err(_) => Some(fast.count()),
            },
        )
        .await;
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before it was let through"
    );
    assert!(
        proxy.try_wait().is_none(),
        "palisade exited with a request in flight"
    );

    // The in-flight request completes.
    slow.open_gate();
    let r = in_flight
        .await
        .expect("task")
        .expect("the in-flight request was dropped");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok from slow");

    let status = proxy.wait_exit(secs(10)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_eq!(
        fast.count(),
        served_before,
        "a refused request reached the upstream"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is still open after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_an_idle_proxy_exits_0_promptly() {
    let slow = Upstream::start("slow", Behaviour::Ok).await;
    let fast = Upstream::start("fast", Behaviour::Ok).await;
    let mut proxy = Proxy::start(&config(&slow, &fast)).await;
    assert_eq!(proxy.get("/fast/x").await.status, 200);
    proxy.signal("INT");
    let status = proxy.wait_exit(secs(5)).await;
    assert!(status.success(), "exit status after SIGINT: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown() {
    let slow = Upstream::start("slow", Behaviour::Hang).await;
    let fast = Upstream::start("fast", Behaviour::Ok).await;
    let sections = Sections {
        listener: "drain_timeout = \"300ms\"".into(),
        ..Sections::default()
    };
    let mut proxy = Proxy::start_with(&sections, &config(&slow, &fast)).await;
    let http = proxy.http.clone();
    let url = proxy.url("/slow/hang");
    let hanging = tokio::spawn(async move { http.try_send("GET", &url, &[], "").await });
    slow.wait_for(1, secs(5)).await;

    proxy.signal("TERM");
    let start = tokio::time::Instant::now();
    proxy.wait_exit(secs(5)).await;
    assert!(
        start.elapsed() < secs(3),
        "shutdown took {:?} with a 300 ms drain_timeout",
        start.elapsed()
    );
    let r = hanging.await.expect("task");
    assert!(r.as_ref().map_or(true, |r| r.status != 200), "{r:?}");
}
