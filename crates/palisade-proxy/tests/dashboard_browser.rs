//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`; see `tests/browser/`) against the real binary.
//!
//! One scenario, in order: the page loads and goes live with no console error; an
//! outage of the upstream shows its breaker open within 2 s; its recovery shows it
//! closed within 2 s; the page's button forces the breaker open and the proxy refuses,
//! and back; its fault select aborts every request of a route, and back; a reload
//! shows the run's past from the sidecar's history; screenshots go under `target/`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::*;

fn config(up: &Upstream) -> String {
    format!(
        r#"
[[upstream]]
name = "api"
endpoints = ["{}"]
[upstream.timeout]
total = "1s"
per_try = "1s"
[upstream.retry]
max_attempts = 1
[upstream.circuit_breaker]
scope = "upstream"
window = "consecutive"
size = 3
open_for = "300ms"
max_open_for = "300ms"
open_jitter = 0.0
half_open_calls = 1

[[route]]
path_prefix = "/api"
upstream = "api"
"#,
        up.addr()
    )
}

const BREAKER: &str = r#".card[data-upstream="api"] [data-breaker]"#;

/// Where the screenshots go, under the target directory.
fn screenshot(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_an_outage_acts_on_the_breaker_and_keeps_the_past() {
    let Some(mut browser) = Browser::start().await else {
        return;
    };
    let up = Upstream::start("api", Behaviour::Ok).await;
    let proxy = Arc::new(Proxy::start(&config(&up)).await);
    let started = tokio::time::Instant::now();
    // Steady traffic: 20 requests a second, so that failures reach the breaker.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (proxy, stop) = (proxy.clone(), stop.clone());
        async move {
            let mut ticks = tokio::time::interval(ms(50));
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let _ = proxy.get("/api/x").await;
            }
        }
    });

    let url = proxy.admin_url("/dashboard");
    assert_eq!(browser.goto(&url).await, 200, "the page loads");
    browser
        .wait("#status", Some("data-connected"), Some("true"), secs(5))
        .await
        .expect("the stream connects");
    browser
        .wait(BREAKER, Some("data-state"), Some("closed"), secs(3))
        .await
        .expect("the breaker shows closed");
    let errors = browser.errors().await;
    assert!(errors.is_empty(), "console errors on load: {errors:?}");

    // The outage: the upstream's port refuses; its breaker opens.
    up.stop().await;
    let shown = browser
        .wait(BREAKER, Some("data-state"), Some("open"), secs(2))
        .await
        .unwrap_or_else(|e| panic!("the page did not show the breaker open within 2 s: {e}"));
    println!("outage: breaker shown open after {shown:?}");
    browser.screenshot(&screenshot("outage.png")).await;

    // Recovery: the probe succeeds, the breaker closes.
    up.restart().await;
    let shown = browser
        .wait(BREAKER, Some("data-state"), Some("closed"), secs(2))
        .await
        .unwrap_or_else(|e| {
            panic!("the page did not show the breaker closed within 2 s of recovery: {e}")
        });
    println!("recovery: breaker shown closed after {shown:?}");

    // The page's button forces the breaker open: the proxy refuses without calling.
    browser
        .click(r#"button[data-action="breaker"][data-upstream="api"][data-state="open"]"#)
        .await;
    browser
        .wait(BREAKER, Some("data-state"), Some("forced-open"), secs(3))
        .await
        .expect("the page shows the breaker forced open");
    let refused = proxy.get("/api/x").await;
    assert_eq!(
        (refused.status, refused.reason()),
        (503, Some("circuit-open")),
        "{refused:?}"
    );
    browser.screenshot(&screenshot("forced-open.png")).await;
    browser
        .click(r#"button[data-action="breaker"][data-upstream="api"][data-state="auto"]"#)
        .await;
    browser
        .wait(BREAKER, Some("data-state"), Some("closed"), secs(3))
        .await
        .expect("back to automatic");
    assert_eq!(proxy.get("/api/x").await.status, 200);

    // The route's fault select: every request aborted, then off again.
    browser
        .select(
            r#"select[data-action="fault"][data-route="0"]"#,
            "abort-100",
        )
        .await;
    browser
        .wait(
            r#"tr[data-route="0"]"#,
            Some("data-fault"),
            Some("on"),
            secs(3),
        )
        .await
        .expect("the page shows the route's fault on");
    let aborted = proxy.get("/api/x").await;
    assert_eq!(
        (aborted.status, aborted.reason()),
        (503, Some("fault-injected")),
        "{aborted:?}"
    );
    browser
        .select(r#"select[data-action="fault"][data-route="0"]"#, "off")
        .await;
    browser
        .wait(
            r#"tr[data-route="0"]"#,
            Some("data-fault"),
            Some("off"),
            secs(3),
        )
        .await
        .expect("the page shows the route's fault off");
    assert_eq!(proxy.get("/api/x").await.status, 200);

    // A reload shows the past: the history comes from the sidecar, from its start.
    assert_eq!(browser.reload().await, 200, "the page reloads");
    browser
        .wait("#status", Some("data-connected"), Some("true"), secs(5))
        .await
        .expect("the stream connects again");
    let seconds: u64 = browser
        .attr("#history", "data-seconds")
        .await
        .and_then(|s| s.parse().ok())
        .expect("the history's length");
    let ran = started.elapsed().as_secs();
    assert!(
        seconds + 2 >= ran,
        "after a reload the page holds {seconds} s of a {ran} s run"
    );
    let transitions: u64 = browser
        .attr(
            r#".card[data-upstream="api"] [data-breaker-timeline]"#,
            "data-transitions",
        )
        .await
        .and_then(|s| s.parse().ok())
        .expect("the timeline's transitions");
    assert!(
        transitions >= 2,
        "the breaker's timeline shows the outage (closed → open → … → closed): {transitions}"
    );
    browser.screenshot(&screenshot("dashboard.png")).await;
    let errors = browser.errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
}
