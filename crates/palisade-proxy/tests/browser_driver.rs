//! The browser driver itself (tests/support/browser.rs and tests/browser/driver.mjs), on
//! pages served here: it waits for, clicks and reads what a page's script changes, writes
//! a screenshot, reports a page's console errors, uncaught errors and failed requests (and
//! not a clean page's), and answers a bad command with an error and goes on. Skipped
//! loudly without node, playwright-core or Chromium; a failure in CI.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::json;
use support::*;

/// A page whose script marks it ready 200 ms after it runs, and whose button changes an
/// attribute. No `<link rel=icon>`: the browser's own /favicon.ico fetch gets a 404.
const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>driver test</title></head>
<body>
  <div id="state" data-state="idle">idle</div>
  <button id="go" onclick="const s = document.getElementById('state'); s.dataset.state = 'clicked'; s.textContent = 'clicked';">go</button>
  <select id="pick"><option value="a">A</option><option value="b">B</option></select>
  <ul><li>one</li><li>two</li><li>three</li></ul>
  <script>setTimeout(() => { document.body.dataset.ready = 'yes'; }, 200);</script>
</body></html>"#;

/// A page that logs a console error, throws, and loads an image from a dead port.
fn erring_page(dead: SocketAddr) -> String {
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>erring</title></head>
<body>
  <img src="http://{dead}/missing.png">
  <script>console.error('the erring page says so');</script>
  <script>null.explode();</script>
</body></html>"#
    )
}

/// Serves `/` (PAGE) and `/erring` on a free loopback port until the test ends.
async fn serve() -> SocketAddr {
    let erring = erring_page(dead_addr());
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/erring", get(move || async move { Html(erring) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

#[tokio::test]
async fn the_driver_waits_clicks_reads_and_takes_a_screenshot() {
    let Some(mut browser) = Browser::start().await else {
        return;
    };
    let addr = serve().await;
    assert_eq!(browser.goto(&format!("http://{addr}/")).await, 200);

    // Set by a timer after the load: found by polling.
    browser
        .wait("body", Some("data-ready"), Some("yes"), secs(5))
        .await
        .expect("the page marks itself ready");
    assert_eq!(
        browser.attr("#state", "data-state").await.as_deref(),
        Some("idle")
    );
    assert_eq!(browser.attr("#state", "data-missing").await, None);
    assert_eq!(browser.attr("#nothing", "data-state").await, None);

    browser.click("#go").await;
    let waited = browser
        .wait("#state", Some("data-state"), Some("clicked"), secs(5))
        .await
        .expect("the click changes the attribute");
    assert!(waited < secs(5), "{waited:?}");
    assert_eq!(browser.text("#state").await, "clicked");
    assert_eq!(browser.count("li").await, 3);
    assert_eq!(browser.count("table").await, 0);

    browser.select("#pick", "b").await;
    assert_eq!(
        browser.eval("document.querySelector('#pick').value").await,
        json!("b")
    );
    assert_eq!(
        browser
            .eval("({ sum: 1 + 2, title: document.title })")
            .await,
        json!({"sum": 3, "title": "driver test"})
    );

    // A wait that cannot succeed ends at its limit and says what it last saw.
    let missed = browser
        .wait("#state", Some("data-state"), Some("never"), ms(200))
        .await
        .expect_err("the attribute never takes that value");
    assert!(
        missed.contains("timeout") && missed.contains("clicked"),
        "{missed}"
    );

    // A reload starts the page again.
    assert_eq!(browser.reload().await, 200);
    assert_eq!(
        browser.attr("#state", "data-state").await.as_deref(),
        Some("idle")
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-driver/page.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {shot:?}");

    // A clean page (and the browser's favicon fetch, a 404) reports nothing.
    assert_eq!(browser.errors().await, Vec::<String>::new());
    browser.quit().await;
}

#[tokio::test]
async fn the_driver_reports_a_pages_errors_and_survives_bad_commands() {
    let Some(mut browser) = Browser::start().await else {
        return;
    };
    let addr = serve().await;
    assert_eq!(browser.goto(&format!("http://{addr}/erring")).await, 200);

    let errors = eventually("the erring page's three errors", secs(5), async || {
        let errors = browser.errors().await;
        let seen = |needle: &str| errors.iter().any(|e| e.contains(needle));
        let all = seen("console.error: the erring page says so")
            && seen("pageerror:")
            && seen("requestfailed: GET http://");
        all.then_some(errors)
    })
    .await;
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("pageerror:") && e.contains("explode")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("requestfailed:") && e.contains("/missing.png")),
        "{errors:#?}"
    );

    // Bad commands get an error line each, and the driver goes on.
    for line in [
        "not json",
        "[1, 2]",
        r#"{"cmd": "fly"}"#,
        r#"{"cmd": "goto"}"#,
        r#"{"cmd": "count", "selector": "[["}"#,
        r#"{"cmd": "eval", "js": "throw new Error('thrown in eval')"}"#,
    ] {
        let reply = browser.raw(line).await;
        assert_eq!(reply["ok"], json!(false), "{line} → {reply}");
        assert!(reply["error"].is_string(), "{line} → {reply}");
    }
    assert_eq!(browser.count("img").await, 1);
    browser.quit().await;
}
